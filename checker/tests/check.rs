//! The checker on small configurations: exhaustive runs with pinned state counts and every
//! interesting state reached; each broken variant of the core caught by the property expected
//! (and the correct core passing the very same configuration); the web explorer answering.
//!
//! A change in a pinned count must be explained in the commit that changes it.

use checker::properties::{
    CRASH_RECOVERED, DUPLICATE_SUPPRESSED, GET_SEES_APPEND, LEADER_ELECTED, OPERATION_COMPLETES,
    RESTORED_FROM_SNAPSHOT, RETRIED_AT_NEW_LEADER, SNAPSHOT_INSTALLED,
};
use checker::run::{self, Outcome, RunOptions, Status, Strategy};
use checker::{Delivery, Setup, System};
use model::Bug;

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
            matches!(outcome.status(name), Some(Status::Reached { .. })),
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
    assert_eq!(outcome.unique_states, 2_964);
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
    assert_eq!(outcome.unique_states, 6_150);
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
    let setup = Setup { delivery: Delivery::Fifo, lossy: true, max_log: 2, clerk_timeouts: true, heartbeats: true, ..small(2, 1, 2) };
    let outcome = exhaust(setup, false);
    assert_passes(&outcome, &[LEADER_ELECTED, OPERATION_COMPLETES, DUPLICATE_SUPPRESSED, GET_SEES_APPEND]);
    assert_eq!(outcome.unique_states, FIFO);
}
const FIFO: usize = 3_600;

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

// ---- broken variants: each caught, by the property expected; the correct core passes ----

fn with_bug(setup: &Setup, bug: Bug) -> Setup {
    Setup { bug: Some(bug), ..setup.clone() }
}

/// Runs `setup` with `bug` and without; the broken run must violate `property` with a trace
/// that replays to a state `specs` explains, and the correct run must violate nothing.
fn assert_caught(setup: &Setup, bug: Bug, property: &str, options: &RunOptions) {
    let broken = System::new(with_bug(setup, bug));
    let outcome = run::check(&broken, options, &mut std::io::sink());
    let Some(Status::Violated { trace }) = outcome.status(property) else {
        panic!("{bug} not caught by {property:?}: {:?}", outcome.properties);
    };
    let text = run::describe_trace(&broken, trace);
    assert!(!text.contains("does not replay"), "{text}");
    let detail = run::violation_detail(&broken, property, trace);
    assert!(detail.is_some(), "the trace's last state should violate {property}:\n{text}");

    let correct = run::check(&System::new(setup.clone()), options, &mut std::io::sink());
    assert!(correct.violations().is_empty(), "the correct core fails the same configuration: {:?}", correct.violations());
}

fn exhaustive_until_violation() -> RunOptions {
    RunOptions { stop_at_violation: true, ..RunOptions::default() }
}

fn walks(seed: u64, count: u64, depth: usize) -> RunOptions {
    RunOptions {
        strategy: Strategy::Random,
        seed,
        max_walks: Some(count),
        depth: Some(depth),
        timeout: Some(std::time::Duration::from_secs(3_600)),
        ..RunOptions::default()
    }
}

#[test]
fn forget_vote_on_restart_is_caught_by_election_safety() {
    let setup = Setup { max_crashes: 1, max_log: 0, ..small(3, 0, 0) };
    assert_caught(&setup, Bug::ForgetVoteOnRestart, specs::ELECTION_SAFETY, &exhaustive_until_violation());
}

#[test]
fn no_dedup_is_caught_by_at_most_once() {
    let setup = Setup { max_term: 2, max_log: 2, clerk_timeouts: true, heartbeats: true, ..small(2, 1, 1) };
    assert_caught(&setup, Bug::NoDedup, specs::AT_MOST_ONCE, &exhaustive_until_violation());
}

/// A stale leader (term 1, cut off by term 2's election) answers a Get after an Append
/// completed at the new leader. Found by seeded random walks: the exhaustive space of this
/// configuration has over ten million states.
#[test]
fn local_reads_are_caught_by_linearizability() {
    let setup = Setup { max_term: 2, max_elections: Some(2), ..small(3, 2, 1) };
    assert_caught(&setup, Bug::LocalReads, specs::LINEARIZABLE, &walks(3, 5_000, 40));
}

/// Raft Figure 8 with three servers and four elections: a term-3 leader counts replicas of its
/// term-1 entry, commits it, and the term-4 leader lacks it. Seeded random walks over FIFO
/// links (the scenario needs no reordering within a link).
#[test]
fn commit_old_term_by_count_is_caught_by_leader_completeness() {
    let setup = Setup {
        delivery: Delivery::Fifo,
        max_term: 4,
        max_elections: Some(4),
        ..small(3, 2, 1)
    };
    assert_caught(&setup, Bug::CommitOldTermByCount, specs::LEADER_COMPLETENESS, &walks(1, 400_000, 60));
}

#[test]
fn snapshot_without_sessions_is_caught_by_snapshot_content() {
    let setup = snapshot_every_entry();
    assert_caught(&setup, Bug::SnapshotWithoutSessions, specs::SNAPSHOT_CONTENT, &exhaustive_until_violation());
}

/// A follower installs the leader's snapshot at i1, applies i2 and compacts it, and then a
/// second copy of the i1 snapshot (sent again after a rejection) arrives.
#[test]
fn accept_stale_snapshot_is_caught_by_applied_monotonic() {
    let setup = snapshot_every_entry();
    assert_caught(&setup, Bug::AcceptStaleSnapshot, specs::APPLIED_MONOTONIC, &exhaustive_until_violation());
}

/// The term-1 leader appends two requests and is cut off; the term-2 leader commits and
/// compacts a different entry at i1 and sends its snapshot; the old leader, installing it,
/// keeps its own i2 of term 1 after a term-2 snapshot point. Seeded random walks over FIFO
/// links (the exhaustive space has tens of millions of states).
#[test]
fn truncate_wrong_suffix_is_caught_by_log_matching() {
    let setup = Setup {
        delivery: Delivery::Fifo,
        lossy: true,
        max_term: 2,
        max_elections: Some(2),
        max_log: 2,
        clerk_timeouts: true,
        max_raft_state: Some(1),
        ..small(3, 2, 1)
    };
    assert_caught(&setup, Bug::TruncateWrongSuffix, specs::LOG_MATCHING, &walks(4, 100_000, 50));
}
