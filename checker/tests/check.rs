//! The checker on small configurations: exhaustive runs with pinned state counts and every
//! interesting state reached. (Broken variants: `tests/bugs.rs`.)
//!
//! A change in a pinned count must be explained in the commit that changes it.

use checker::properties::{
    CRASH_RECOVERED, DUPLICATE_SUPPRESSED, GET_SEES_APPEND, LEADER_ELECTED, OPERATION_COMPLETES,
    RESTORED_FROM_SNAPSHOT, RETRIED_AT_NEW_LEADER, SNAPSHOT_INSTALLED,
};
use checker::run::{self, Outcome, PropertyStatus, RunOptions};
use checker::{Delivery, Setup, System};

/// A small base (`Setup::quiet`): no loss, no crashes, no heartbeats, no clerk timeouts.
fn small(servers: u32, clerks: u32, ops: u32) -> Setup {
    Setup::quiet(servers, clerks, ops)
}

fn exhaust(setup: Setup, symmetry: bool) -> Outcome {
    let options = RunOptions { symmetry, ..RunOptions::default() };
    run::check(&System::new(setup), &options, &mut std::io::sink())
}

/// The run explored everything, every `always` held, and each of `reached` was reached.
fn assert_passes(outcome: &Outcome, reached: &[&str]) {
    assert!(outcome.complete, "exploration incomplete: {outcome:?}");
    assert!(outcome.violations().is_empty(), "violated: {:?}", outcome.violations());
    for name in reached {
        assert!(
            matches!(outcome.status(name), Some(PropertyStatus::Reached { .. })),
            "{name:?} not reached: {:?}",
            outcome.status(name)
        );
    }
}

#[test]
fn two_clerks_race_an_append_and_a_get() {
    let setup = Setup { servers: 2, clerks: 2, max_log: 2, ..small(2, 2, 1) };
    let outcome = exhaust(setup, false);
    assert_passes(&outcome, &[LEADER_ELECTED, OPERATION_COMPLETES, GET_SEES_APPEND]);
    // 2,964 with the raw history; the canonical summary merges the orders of recording.
    assert_eq!(outcome.unique_states, 1_566);
}

#[test]
fn a_leader_change_makes_the_clerk_retry_and_the_retry_executes_once() {
    let setup = Setup { max_term: 2, max_log: 2, clerk_timeouts: true, heartbeats: true, ..small(2, 1, 1) };
    let outcome = exhaust(setup, false);
    assert_passes(&outcome, &[LEADER_ELECTED, OPERATION_COMPLETES, DUPLICATE_SUPPRESSED, RETRIED_AT_NEW_LEADER]);
    assert_eq!(outcome.unique_states, 29_088);
}

#[test]
fn a_crashed_server_recovers_from_its_durable_state_and_catches_up() {
    let setup = Setup { lossy: true, max_crashes: 1, clerk_timeouts: true, heartbeats: true, ..small(2, 1, 1) };
    let outcome = exhaust(setup, false);
    assert_passes(&outcome, &[LEADER_ELECTED, OPERATION_COMPLETES, CRASH_RECOVERED]);
    // 6,150 with a `lose` action per message; loss folded into the timers: 4,144.
    assert_eq!(outcome.unique_states, 4_144);
}

#[test]
fn three_servers_one_clerk() {
    let outcome = exhaust(small(3, 1, 1), false);
    assert_passes(&outcome, &[LEADER_ELECTED, OPERATION_COMPLETES]);
    assert_eq!(outcome.unique_states, THREE_SERVERS_ONE_CLERK);
}
const THREE_SERVERS_ONE_CLERK: usize = 24_956;

#[test]
fn duplicating_network() {
    let setup = Setup { delivery: Delivery::Duplicate, clerk_timeouts: true, heartbeats: true, ..small(2, 1, 1) };
    let outcome = exhaust(setup, false);
    assert_passes(&outcome, &[LEADER_ELECTED, OPERATION_COMPLETES]);
    assert_eq!(outcome.unique_states, DUPLICATING);
}
const DUPLICATING: usize = 180;

#[test]
fn fifo_network_with_two_operations() {
    let setup = Setup {
        delivery: Delivery::Fifo,
        lossy: true,
        max_log: 2,
        clerk_timeouts: true,
        heartbeats: true,
        ..small(2, 1, 2)
    };
    let outcome = exhaust(setup, false);
    assert_passes(&outcome, &[LEADER_ELECTED, OPERATION_COMPLETES, DUPLICATE_SUPPRESSED, GET_SEES_APPEND]);
    assert_eq!(outcome.unique_states, FIFO);
}
/// 3,600 with a `lose` action per message; loss folded into the FIFO deliveries and timers.
const FIFO: usize = 2_236;

/// Three servers snapshot after every applied entry (`max_raft_state` of 1 byte); the second
/// operation's AppendEntries can overtake the first's on the way to a follower, which then
/// rejects it and gets the leader's snapshot instead.
#[test]
fn a_lagging_follower_installs_the_leaders_snapshot() {
    let outcome = exhaust(snapshot_every_entry(), false);
    assert_passes(&outcome, &[LEADER_ELECTED, OPERATION_COMPLETES, GET_SEES_APPEND, SNAPSHOT_INSTALLED]);
    assert_eq!(outcome.unique_states, SNAPSHOT_INSTALL);
}
const SNAPSHOT_INSTALL: usize = 285_047;

fn snapshot_every_entry() -> Setup {
    Setup { max_log: 2, max_raft_state: Some(1), ..small(3, 1, 2) }
}

/// A server crashes after compacting its log, restarts from the snapshot, and applies the
/// next entry when the leader's heartbeat tells it the commit index.
#[test]
fn a_server_restarts_from_its_snapshot_and_applies_more() {
    let setup = Setup { max_log: 2, max_crashes: 1, heartbeats: true, max_raft_state: Some(1), ..small(2, 1, 2) };
    let outcome = exhaust(setup, false);
    assert_passes(&outcome, &[OPERATION_COMPLETES, CRASH_RECOVERED, RESTORED_FROM_SNAPSHOT]);
    assert_eq!(outcome.unique_states, SNAPSHOT_RESTART);
}
const SNAPSHOT_RESTART: usize = 1_776;

/// Elections alone among three servers: renaming servers merges the six orders in which they
/// can play the same roles.
#[test]
fn symmetry_over_servers_shrinks_the_election_space() {
    let setup = Setup { max_term: 2, max_log: 0, ..small(3, 0, 0) };
    let plain = exhaust(setup.clone(), false);
    let reduced = exhaust(setup, true);
    assert_passes(&plain, &[LEADER_ELECTED]);
    assert_passes(&reduced, &[LEADER_ELECTED]);
    assert_eq!((plain.unique_states, reduced.unique_states), SYMMETRY);
}
const SYMMETRY: (usize, usize) = (596_732, 99_848);
