//! The fault injector proper (the `faults` feature): a shared, mutable configuration that
//! tests set and the runtime consults.

use super::{Disk, Fate};
use model::{ClientId, NodeId};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use specs::labrpc::UNRELIABLE_DROP;
/// labrpc's unreliable mode: a request waits U[0, 27 ms) before delivery.
pub const UNRELIABLE_DELAY_MAX: Duration = Duration::from_micros(specs::labrpc::UNRELIABLE_DELAY_MAX_MICROS);

#[derive(Debug)]
struct State {
    seed: u64,
    drop_rate: f64,
    delay_max: Duration,
    /// Disabled directed links (from, to).
    cut: BTreeSet<(NodeId, NodeId)>,
    /// Clients whose frames to and from a server are black-holed.
    client_cut: BTreeSet<(ClientId, NodeId)>,
    rngs: BTreeMap<NodeId, StdRng>,
    /// Servers whose power is cut: their loop stops at its next flush.
    power_cut: BTreeSet<NodeId>,
    /// The deliberately broken flush order (tests only).
    send_before_fsync: bool,
}

impl State {
    fn quiet(&self) -> bool {
        self.drop_rate <= 0.0
            && self.delay_max.is_zero()
            && self.cut.is_empty()
            && self.client_cut.is_empty()
            && self.power_cut.is_empty()
            && !self.send_before_fsync
    }

    fn rng(&mut self, me: NodeId) -> &mut StdRng {
        let seed = self.seed ^ u64::from(me.0).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.rngs.entry(me).or_insert_with(|| StdRng::seed_from_u64(seed))
    }

    /// Drop with `drop_rate`, else delay (when `delay`) by U[0, delay_max).
    fn draw(&mut self, me: NodeId, delay: bool) -> Fate {
        let (drop_rate, delay_max) = (self.drop_rate, self.delay_max);
        let rng = self.rng(me);
        if drop_rate > 0.0 && rng.random::<f64>() < drop_rate {
            return Fate::Drop;
        }
        if delay && !delay_max.is_zero() {
            return Fate::Delay(delay_max.mul_f64(rng.random::<f64>()));
        }
        Fate::Deliver
    }
}

#[derive(Debug)]
struct Shared {
    /// False while nothing is configured: the per-frame check is this one load.
    active: AtomicBool,
    state: Mutex<State>,
}

/// A cluster's fault configuration; clones share it. [`Faults::default`] is "no faults" and
/// costs nothing.
#[derive(Clone, Default)]
pub struct Faults {
    shared: Option<Arc<Shared>>,
}

impl fmt::Debug for Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.shared {
            None => f.write_str("Faults(none)"),
            Some(s) => write!(f, "Faults({:?})", crate::tracker::lock(&s.state)),
        }
    }
}

impl Faults {
    /// A handle with nothing configured yet; per-server RNGs derive from `seed`.
    #[must_use]
    pub fn new(seed: u64) -> Faults {
        let state = State {
            seed,
            drop_rate: 0.0,
            delay_max: Duration::ZERO,
            cut: BTreeSet::new(),
            client_cut: BTreeSet::new(),
            rngs: BTreeMap::new(),
            power_cut: BTreeSet::new(),
            send_before_fsync: false,
        };
        Faults { shared: Some(Arc::new(Shared { active: AtomicBool::new(false), state: Mutex::new(state) })) }
    }

    fn update(&self, change: impl FnOnce(&mut State)) {
        let Some(shared) = &self.shared else {
            panic!("Faults::default() cannot be configured; use Faults::new(seed)")
        };
        let mut state = crate::tracker::lock(&shared.state);
        change(&mut state);
        shared.active.store(!state.quiet(), Ordering::Release);
    }

    /// labrpc's unreliable mode on (10% drops each way, 0..27 ms delay) or off.
    pub fn set_unreliable(&self, on: bool) {
        let (rate, delay) = if on { (UNRELIABLE_DROP, UNRELIABLE_DELAY_MAX) } else { (0.0, Duration::ZERO) };
        self.set_drop_rate(rate);
        self.set_delay_max(delay);
    }

    /// Probability of dropping each frame (peer frames, client requests, client replies).
    pub fn set_drop_rate(&self, rate: f64) {
        self.update(|s| s.drop_rate = rate.clamp(0.0, 1.0));
    }

    /// Delivered peer frames and client requests wait U[0, `max`).
    pub fn set_delay_max(&self, max: Duration) {
        self.update(|s| s.delay_max = max);
    }

    /// Splits the servers into `groups`: links within a group work, links across groups are
    /// black-holed (both directions). Replaces any earlier partition; client links are untouched.
    pub fn partition(&self, groups: &[&[NodeId]]) {
        self.update(|s| {
            s.cut.clear();
            for (i, a) in groups.iter().enumerate() {
                for (j, b) in groups.iter().enumerate() {
                    if i != j {
                        s.cut.extend(a.iter().flat_map(|&from| b.iter().map(move |&to| (from, to))));
                    }
                }
            }
        });
    }

    /// Black-holes the directed link `from` → `to`.
    pub fn cut_link(&self, from: NodeId, to: NodeId) {
        self.update(|s| {
            s.cut.insert((from, to));
        });
    }

    /// Black-holes everything between `client` and `servers` (confines a clerk to the others).
    pub fn cut_client(&self, client: ClientId, servers: &[NodeId]) {
        self.update(|s| s.client_cut.extend(servers.iter().map(|&n| (client, n))));
    }

    /// Reconnects every server↔server and client↔server link (drops and delays stay).
    pub fn heal(&self) {
        self.update(|s| {
            s.cut.clear();
            s.client_cut.clear();
        });
    }

    /// Cuts the power of `nodes`: from now on, each one's event loop stops at its next flush,
    /// before writing anything of that batch to disk and before sending or replying anything of
    /// it (unless [`Faults::set_send_before_fsync`] broke that order), with
    /// [`crate::ServerError::PowerCut`]. A flush already past that point (writing or
    /// fsyncing) completes, as if the fsync returned just before the power went. The data
    /// directory then holds exactly what the last completed fsync covered; stop the server
    /// (its `stop` returns the error), call [`Faults::restore_power`], and start it again from
    /// that directory.
    pub fn cut_power(&self, nodes: &[NodeId]) {
        self.update(|s| s.power_cut.extend(nodes.iter().copied()));
    }

    /// Powers `nodes` back on, so that servers started on them again run normally (a server
    /// started while its power is still cut stops at its first flush).
    pub fn restore_power(&self, nodes: &[NodeId]) {
        self.update(|s| {
            for n in nodes {
                s.power_cut.remove(n);
            }
        });
    }

    /// **Deliberately broken, for `impl/tests/crash/` only.** When on, every server's flush
    /// sends its batch's messages and client replies *before* writing and fsyncing the batch:
    /// the classic "acknowledge before durability" bug, which breaks the core's Output contract
    /// (`model::io`). A power cut then loses writes that were already acknowledged, to clients
    /// or to the leader; the power-cut test turns this on to show that it catches the bug.
    /// Never turn it on anywhere else.
    pub fn set_send_before_fsync(&self, on: bool) {
        self.update(|s| s.send_before_fsync = on);
    }

    /// What the event loop of `me` does about its disk at this flush (nothing, unless a test
    /// set a power cut or the broken order).
    pub(crate) fn disk(&self, me: NodeId) -> Disk {
        match self.state() {
            None => Disk::default(),
            Some(s) => Disk { power_cut: s.power_cut.contains(&me), send_before_fsync: s.send_before_fsync },
        }
    }

    fn state(&self) -> Option<std::sync::MutexGuard<'_, State>> {
        let shared = self.shared.as_ref()?;
        if !shared.active.load(Ordering::Acquire) {
            return None;
        }
        Some(crate::tracker::lock(&shared.state))
    }

    /// The fate of a peer frame `from` → `to`, judged at `to`.
    pub(crate) fn peer_frame(&self, from: NodeId, to: NodeId) -> Fate {
        self.judge(to, true, |s| s.cut.contains(&(from, to)))
    }

    /// The fate of a request from `client` at server `me`.
    pub(crate) fn client_request(&self, me: NodeId, client: ClientId) -> Fate {
        self.judge(me, true, |s| s.client_cut.contains(&(client, me)))
    }

    /// The fate of a reply from server `me` to `client` (dropped or sent at once).
    pub(crate) fn client_reply(&self, me: NodeId, client: ClientId) -> Fate {
        self.judge(me, false, |s| s.client_cut.contains(&(client, me)))
    }

    /// Delivers when no fault is set; drops a frame on a cut link; otherwise draws from `at`'s
    /// generator (a delay only where `may_delay`).
    fn judge(&self, at: NodeId, may_delay: bool, is_cut: impl FnOnce(&State) -> bool) -> Fate {
        let Some(mut s) = self.state() else {
            return Fate::Deliver;
        };
        if is_cut(&s) {
            return Fate::Drop;
        }
        s.draw(at, may_delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::{Disk, Fate};

    #[test]
    fn partitions_cut_across_groups_only() {
        let f = Faults::new(7);
        let (a, b, c) = (NodeId(1), NodeId(2), NodeId(3));
        assert_eq!(f.peer_frame(a, b), Fate::Deliver);
        f.partition(&[&[a, b], &[c]]);
        assert_eq!(f.peer_frame(a, b), Fate::Deliver);
        assert_eq!(f.peer_frame(a, c), Fate::Drop);
        assert_eq!(f.peer_frame(c, b), Fate::Drop);
        f.cut_client(ClientId(9), &[a]);
        assert_eq!(f.client_request(a, ClientId(9)), Fate::Drop);
        assert_eq!(f.client_reply(b, ClientId(9)), Fate::Deliver);
        f.heal();
        assert_eq!(f.peer_frame(c, b), Fate::Deliver);
        assert_eq!(f.client_reply(a, ClientId(9)), Fate::Deliver);
        assert_eq!(Faults::default().peer_frame(a, c), Fate::Deliver);
    }

    #[test]
    fn unreliable_mode_drops_about_a_tenth_and_delays_within_range() {
        let f = Faults::new(1);
        f.set_unreliable(true);
        let fates: Vec<Fate> = (0..10_000).map(|_| f.peer_frame(NodeId(1), NodeId(2))).collect();
        let drops = fates.iter().filter(|&&x| x == Fate::Drop).count();
        assert!((800..1200).contains(&drops), "{drops} drops");
        assert!(fates.iter().all(|x| match x {
            Fate::Delay(d) => *d < UNRELIABLE_DELAY_MAX,
            _ => true,
        }));
        f.set_unreliable(false);
        assert_eq!(f.peer_frame(NodeId(1), NodeId(2)), Fate::Deliver);
    }

    #[test]
    fn power_cuts_affect_only_the_nodes_cut_until_restored() {
        let f = Faults::new(3);
        let (a, b) = (NodeId(1), NodeId(2));
        assert_eq!(f.disk(a), Disk::default());
        f.cut_power(&[a]);
        assert!(f.disk(a).power_cut);
        assert!(!f.disk(b).power_cut);
        f.restore_power(&[a]);
        assert_eq!(f.disk(a), Disk::default());
        f.set_send_before_fsync(true);
        assert_eq!(f.disk(b), Disk { power_cut: false, send_before_fsync: true });
        f.set_send_before_fsync(false);
        assert_eq!(f.shared.as_ref().map(|s| s.active.load(Ordering::Relaxed)), Some(false));
        assert_eq!(Faults::default().disk(a), Disk::default());
    }
}
