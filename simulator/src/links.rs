//! The simulated network: labrpc's fault model (docs/lab-tests.md, "Fault parameters") for
//! messages instead of RPCs, and its links ("Ends, calls and reordering" and "Partitions"
//! there).
//!
//! - Every message takes a base latency (`base_delay`), standing for a hop on a LAN plus the
//!   sender's fsync (the runtime persists before it sends).
//! - Unreliable: a *request* (RequestVote, AppendEntries, InstallSnapshot, a clerk's request)
//!   first waits U[0, 27) ms, as labrpc sleeps before delivering; then every message, request
//!   or reply, is lost with probability 10% (labrpc drops 10% of requests before the handler
//!   and 10% of replies after it). Both server↔server and clerk↔server traffic.
//! - Long reordering (labrpc `LongReordering`): 600 of 900 *replies* wait a further
//!   200 + U[0, U[0, 2000]] ms.
//! - Duplication (labrpc never duplicates; TCP reconnects can): each message gets an extra
//!   copy with this probability, with its own delay.
//! - A reliable network keeps each directed link first-in first-out, as the runtime's TCP
//!   connections do (the jitter then delays but never reorders); an unreliable one, or one with
//!   long reordering, reorders freely (labrpc runs every call in its own goroutine).
//! - Links are directed and enabled unless disabled: a message on a disabled link is silently
//!   black-holed, at sending and again at arrival (a link cut while a message is in flight
//!   loses it, as labrpc's check after the handler does).

use super::Micros;
use model::{Endpoint, PeerMsg, Wire};
use rand::Rng;
use std::collections::BTreeSet;

use specs::labrpc::{UNRELIABLE_DELAY_MAX_MICROS as UNRELIABLE_DELAY, UNRELIABLE_DROP};

/// The fault parameters of one scenario.
#[derive(Clone, Debug, PartialEq)]
pub struct NetConfig {
    /// Latency of every message, uniform in `[min, max)` microseconds.
    pub base_delay: (Micros, Micros),
    /// labrpc's unreliable mode: U[0, 27) ms more for requests, 10% loss of everything.
    pub unreliable: bool,
    /// labrpc's long reordering of replies.
    pub long_reordering: bool,
    /// Probability that a message is delivered twice (0: never).
    pub duplicate: f64,
}

impl Default for NetConfig {
    /// Reliable: 1-5 ms per message, nothing lost, reordered only by the jitter.
    fn default() -> NetConfig {
        NetConfig { base_delay: (1_000, 5_000), unreliable: false, long_reordering: false, duplicate: 0.0 }
    }
}

/// What the network decided for one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transit {
    /// Lost to the unreliable network.
    Dropped,
    /// Delivered after each of these delays (one, or two when duplicated).
    Delayed(Vec<Micros>),
}

/// Whether `wire` answers another message (labrpc's reply path) rather than asking.
pub fn is_reply(wire: &Wire) -> bool {
    match wire {
        Wire::Reply(_) | Wire::Peer(PeerMsg::VoteReply { .. } | PeerMsg::AppendReply { .. }) => true,
        Wire::Request(_)
        | Wire::Peer(PeerMsg::RequestVote { .. } | PeerMsg::AppendEntries { .. } | PeerMsg::InstallSnapshot { .. }) => {
            false
        }
    }
}

impl NetConfig {
    /// Whether each link delivers in send order.
    pub fn fifo(&self) -> bool {
        !self.unreliable && !self.long_reordering
    }

    /// Draws the fate of one message on an enabled link.
    pub fn fate(&self, reply: bool, rng: &mut impl Rng) -> Transit {
        if self.unreliable && rng.random_bool(UNRELIABLE_DROP) {
            return Transit::Dropped;
        }
        let copies = if self.duplicate > 0.0 && rng.random_bool(self.duplicate) { 2 } else { 1 };
        Transit::Delayed((0..copies).map(|_| self.delay(reply, rng)).collect())
    }

    fn delay(&self, reply: bool, rng: &mut impl Rng) -> Micros {
        let (lo, hi) = self.base_delay;
        let mut delay = if hi > lo { rng.random_range(lo..hi) } else { lo };
        if self.unreliable && !reply {
            delay += rng.random_range(0..UNRELIABLE_DELAY);
        }
        if self.long_reordering && reply && rng.random_range(0..900) < 600 {
            // labrpc: 200 + rand.Intn(1 + rand.Intn(2000)) ms
            let spread = rng.random_range(0..2000u64);
            delay += (200 + rng.random_range(0..=spread)) * 1000;
        }
        delay
    }
}

/// The directed links that are cut; every other link is enabled.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Links {
    disabled: BTreeSet<(Endpoint, Endpoint)>,
}

impl Links {
    pub fn enabled(&self, from: Endpoint, to: Endpoint) -> bool {
        self.disabled.is_empty() || !self.disabled.contains(&(from, to))
    }

    /// Enables or disables both directions between `a` and `b`.
    pub fn set(&mut self, a: Endpoint, b: Endpoint, enabled: bool) {
        for link in [(a, b), (b, a)] {
            if enabled {
                self.disabled.remove(&link);
            } else {
                self.disabled.insert(link);
            }
        }
    }

    /// How many directed links are cut.
    pub fn cut(&self) -> usize {
        self.disabled.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::{ClientId, NodeId};
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn unreliable_requests_wait_and_replies_do_not() {
        let net = NetConfig { base_delay: (0, 1), unreliable: true, ..NetConfig::default() };
        let mut rng = StdRng::seed_from_u64(1);
        let (mut dropped, mut slow_requests, mut slow_replies) = (0, 0, 0);
        for _ in 0..10_000 {
            match net.fate(false, &mut rng) {
                Transit::Dropped => dropped += 1,
                Transit::Delayed(d) => slow_requests += usize::from(d[0] > 0),
            }
            if let Transit::Delayed(d) = net.fate(true, &mut rng) {
                slow_replies += usize::from(d[0] > 0);
            }
        }
        assert!((800..1200).contains(&dropped), "about 10% lost: {dropped}");
        assert!(slow_requests > 8_000 && slow_replies == 0);
    }

    #[test]
    fn links_are_directed_pairs() {
        let mut links = Links::default();
        let (a, c) = (Endpoint::Server(NodeId(1)), Endpoint::Clerk(ClientId(3)));
        links.set(a, c, false);
        assert!(!links.enabled(a, c) && !links.enabled(c, a));
        assert!(links.enabled(a, Endpoint::Server(NodeId(2))));
        links.set(c, a, true);
        assert_eq!(links.cut(), 0);
    }
}
