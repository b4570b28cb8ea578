//! The properties checked on every explored state: safety (`always`) from `specs`, and
//! reachability (`sometimes`) proving that the interesting states are actually explored, so
//! that no safety verdict holds vacuously.

use crate::setup::Setup;
use crate::system::{ClerkSlot, SysState, System};
use model::{ClientId, Seq, Server};
use stateright::{Expectation, Property};

/// Every server's current state (crashed ones as their durable state would restore them).
pub fn servers(s: &SysState) -> Vec<Server> {
    s.nodes.iter().map(|n| n.server.clone()).collect()
}

/// The properties checked under `setup`: every property, except that the snapshot
/// reachability goals are only asked of setups that take snapshots.
pub fn for_setup(setup: &Setup) -> Vec<Property<System>> {
    let snapshots = setup.max_raft_state.is_some();
    all().into_iter().filter(|p| snapshots || !SNAPSHOT_GOALS.contains(&p.name)).collect()
}

/// All properties, cheapest first.
pub fn all() -> Vec<Property<System>> {
    vec![
        Property::always(specs::LINEARIZABLE, |_, s: &SysState| s.clients.is_linearizable()),
        Property::always(specs::APPLIED_MONOTONIC, |_, s: &SysState| s.monotonic),
        always::<0>(),
        always::<1>(),
        always::<2>(),
        always::<3>(),
        always::<4>(),
        always::<5>(),
        always::<6>(),
        Property::sometimes(LEADER_ELECTED, |_, s: &SysState| s.nodes.iter().any(|n| n.server.is_leader())),
        Property::sometimes(OPERATION_COMPLETES, |_, s: &SysState| s.clerks.iter().any(completed_one)),
        Property::sometimes(GET_SEES_APPEND, |_, s: &SysState| s.get_saw_append),
        Property::sometimes(DUPLICATE_SUPPRESSED, |_, s: &SysState| s.nodes.iter().any(|n| applied_twice(&n.server))),
        Property::sometimes(RETRIED_AT_NEW_LEADER, |_, s: &SysState| retried_at_new_leader(s)),
        Property::sometimes(CRASH_RECOVERED, |_, s: &SysState| recovered_and_caught_up(s)),
        Property::sometimes(SNAPSHOT_INSTALLED, |_, s: &SysState| s.nodes.iter().any(|n| n.installed_snapshot)),
        Property::sometimes(RESTORED_FROM_SNAPSHOT, |_, s: &SysState| {
            s.nodes.iter().any(|n| n.up && n.restored_from.is_some_and(|i| n.server.last_applied > i))
        }),
    ]
}

// `all` has one `always::<K>()` line per entry of the table (a test checks each appears once).
const _: () = assert!(specs::INVARIANTS.len() == 7);

/// Entry `K` of `specs::INVARIANTS` as a property (stateright takes a function pointer, so the
/// entry is chosen by a const parameter rather than captured).
fn always<const K: usize>() -> Property<System> {
    fn holds<const K: usize>(_: &System, s: &SysState) -> bool {
        (specs::INVARIANTS[K].check)(&servers(s), &s.ghost).is_ok()
    }
    Property::always(specs::INVARIANTS[K].name, holds::<K>)
}

pub const LEADER_ELECTED: &str = "a leader is elected";
pub const OPERATION_COMPLETES: &str = "an operation completes";
pub const GET_SEES_APPEND: &str = "a Get returns a value written by an Append";
pub const DUPLICATE_SUPPRESSED: &str = "a retried request is suppressed as a duplicate";
pub const RETRIED_AT_NEW_LEADER: &str = "a leader changes with a request pending";
pub const CRASH_RECOVERED: &str = "a crashed server recovers and catches up";
pub const SNAPSHOT_INSTALLED: &str = "a follower installs a leader's snapshot";
pub const RESTORED_FROM_SNAPSHOT: &str = "a server restarts from a snapshot, then applies more entries";
/// Reachable only when servers take snapshots.
pub const SNAPSHOT_GOALS: [&str; 2] = [SNAPSHOT_INSTALLED, RESTORED_FROM_SNAPSHOT];

/// The expectation of the property with this name.
pub fn expectation(name: &str) -> Option<Expectation> {
    all().into_iter().find(|p| p.name == name).map(|p| p.expectation)
}

/// The clerk has completed at least one operation.
fn completed_one(slot: &ClerkSlot) -> bool {
    slot.invoked > 1 || (slot.invoked == 1 && slot.clerk.pending.is_none())
}

/// The server applied two log entries carrying the same (client, seq): the second was a retry
/// that the session table suppressed (or, in a broken variant, executed again).
fn applied_twice(server: &Server) -> bool {
    let mut seen: Vec<(ClientId, Seq)> = Vec::new();
    for (index, entry) in server.log().iter() {
        if index > server.last_applied {
            break;
        }
        let id = (entry.command.client, entry.command.seq);
        if seen.contains(&id) {
            return true;
        }
        seen.push(id);
    }
    false
}

/// Some (client, seq) sits in the logs under two different terms: a leader appended it, lost
/// its leadership before answering, and the clerk's retry reached the next leader.
fn retried_at_new_leader(s: &SysState) -> bool {
    let mut seen: Vec<(ClientId, Seq, model::Term)> = Vec::new();
    for node in &s.nodes {
        for (_, entry) in node.server.log().iter() {
            let (c, q, t) = (entry.command.client, entry.command.seq, entry.term);
            if seen.iter().any(|&(c2, q2, t2)| c2 == c && q2 == q && t2 != t) {
                return true;
            }
            seen.push((c, q, t));
        }
    }
    false
}

/// A server that crashed and restarted has applied entries again, up to the highest commit
/// index in the cluster.
fn recovered_and_caught_up(s: &SysState) -> bool {
    let highest = s.nodes.iter().map(|n| n.server.commit_index).max().unwrap_or_default();
    s.nodes.iter().any(|n| n.restarted && n.up && n.server.last_applied.0 > 0 && n.server.last_applied >= highest)
}

/// Why property `name` fails in `s`, in `specs`' words (for counterexample reports).
pub fn detail(name: &str, s: &SysState) -> Option<String> {
    let invariant = specs::invariant(name)?;
    (invariant.check)(&servers(s), &s.ghost).err().map(|v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_invariant_of_the_table_is_a_property_once() {
        let names: Vec<&str> = all().iter().map(|p| p.name).collect();
        for invariant in &specs::INVARIANTS {
            let times = names.iter().filter(|&&n| n == invariant.name).count();
            assert_eq!(times, 1, "{} appears {times} times", invariant.name);
        }
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "two properties share a name");
    }
}
