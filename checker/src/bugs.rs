//! The bug zoo: for every deliberately broken rule of the core (`model::Bug`), the smallest
//! configuration found that exposes it, the property expected to catch it, and how to explore
//! it. Used by `checker bugs` (a table) and by the CI test that keeps every bug caught.

use crate::run::{self, Outcome, PropertyStatus, RunOptions, Strategy};
use crate::setup::{Delivery, Setup};
use crate::system::System;
use model::Bug;
use std::time::Duration;

/// One bug and where it shows.
#[derive(Clone, Debug)]
pub struct BugCase {
    pub bug: Bug,
    /// The property that must catch it.
    pub property: &'static str,
    /// The configuration, without the bug (the correct core must pass it).
    pub setup: Setup,
    pub options: RunOptions,
}

/// What one hunt found.
#[derive(Clone, Debug)]
pub struct Finding {
    pub case: BugCase,
    pub outcome: Outcome,
}

impl Finding {
    /// The counterexample for the expected property, if it was violated.
    pub fn trace(&self) -> Option<&[crate::Action]> {
        match self.outcome.status(self.case.property) {
            Some(PropertyStatus::Violated { trace }) => Some(trace),
            _ => None,
        }
    }
}

/// Breadth-first until the first violation (short counterexamples, not always the shortest:
/// stateright's breadth-first search finishes a block of states before it stops).
fn shortest() -> RunOptions {
    RunOptions { strategy: Strategy::Bfs, threads: 1, stop_at_violation: true, ..RunOptions::default() }
}

/// Depth-first until the first violation: exhaustive, in the order stateright's depth-first
/// search takes (the counterexample is not the shortest).
fn exhaustive() -> RunOptions {
    RunOptions { stop_at_violation: true, ..RunOptions::default() }
}

fn quiet(servers: u32, clerks: u32, ops: u32) -> Setup {
    Setup::quiet(servers, clerks, ops)
}

/// Every bug, each with its configuration.
#[allow(clippy::too_many_lines)] // a table: one case per bug
pub fn catalog() -> Vec<BugCase> {
    use Bug::*;
    let case = |bug, property, setup, options| BugCase { bug, property, setup, options };
    let snapshots = Setup { max_log: 2, max_raft_state: Some(1), ..quiet(3, 1, 2) };
    let leader_change = Setup { max_term: 2, max_elections: Some(2), ..quiet(3, 2, 1) };
    let three_terms =
        Setup { delivery: Delivery::Fifo, max_term: 3, max_elections: Some(3), max_log: 2, ..quiet(3, 1, 1) };
    vec![
        // Figure 8 needs four terms (n3 writes e1 in t1, n1 writes e2 in t2, n3 counts e1
        // committed in t3, n1 overwrites it in t4): the named run `--suite figure8`, where
        // only n1 and n3 stand for election.
        case(CommitOldTermByCount, specs::LEADER_COMPLETENESS, crate::suite::figure8().1, exhaustive()),
        case(
            ForgetVoteOnRestart,
            specs::ELECTION_SAFETY,
            Setup { max_crashes: 1, max_log: 0, ..quiet(3, 0, 0) },
            shortest(),
        ),
        case(VoteIgnoresLog, specs::LEADER_COMPLETENESS, Setup { max_term: 2, ..quiet(3, 1, 1) }, shortest()),
        // The default suite's first run (terms <= 3) finds it depth-first.
        case(VoteCompareIndexOnly, specs::LEADER_COMPLETENESS, three_terms.clone(), exhaustive()),
        case(
            CountDuplicateVotes,
            specs::ELECTION_SAFETY,
            Setup { delivery: Delivery::Duplicate, max_log: 0, ..quiet(4, 0, 0) },
            shortest(),
        ),
        case(
            TruncateOnAnyAppend,
            specs::COMMIT_BOUNDS,
            Setup { max_log: 2, heartbeats: true, ..quiet(2, 1, 2) },
            shortest(),
        ),
        case(MatchFromNextIndex, specs::LEADER_COMPLETENESS, three_terms, exhaustive()),
        // A follower needs a stale entry after a prefix the leader's request verifies, and a
        // request that stops short of it: one entry per AppendEntries. Depth-first finds it
        // after 1.5-2 M states; random walks did not within 200,000 walks.
        case(
            CommitWithoutMatch,
            specs::STATE_MACHINE_SAFETY,
            Setup {
                lossy: true,
                max_term: 2,
                max_elections: Some(2),
                max_log: 2,
                heartbeats: true,
                max_entries_per_append: Some(1),
                ..quiet(3, 1, 2)
            },
            exhaustive(),
        ),
        case(QuorumMinusOne, specs::ELECTION_SAFETY, Setup { max_log: 0, ..quiet(3, 0, 0) }, shortest()),
        case(
            NoDedup,
            specs::AT_MOST_ONCE,
            Setup { max_term: 2, max_log: 2, clerk_timeouts: true, heartbeats: true, ..quiet(2, 1, 1) },
            shortest(),
        ),
        // The deposed leader must learn that the other clerk's entry, at the index it waits on,
        // committed: heartbeats carry the commit index to it.
        case(
            ReplyByIndexOnly,
            specs::LINEARIZABLE,
            Setup { heartbeats: true, delivery: Delivery::Fifo, max_log: 1, ..leader_change.clone() },
            exhaustive(),
        ),
        case(
            DedupReturnsOk,
            specs::LINEARIZABLE,
            Setup {
                delivery: Delivery::Fifo,
                lossy: true,
                max_log: 3,
                clerk_timeouts: true,
                heartbeats: true,
                ..quiet(2, 1, 2)
            },
            shortest(),
        ),
        // The default suite's second run (a crash, snapshots, FIFO) finds it depth-first.
        case(
            LocalReads,
            specs::LINEARIZABLE,
            Setup {
                delivery: Delivery::Fifo,
                max_term: 2,
                max_elections: Some(2),
                max_crashes: 1,
                ..snapshots.clone()
            },
            exhaustive(),
        ),
        case(SnapshotWithoutSessions, specs::SNAPSHOT_CONTENT, snapshots.clone(), shortest()),
        case(AcceptStaleSnapshot, specs::APPLIED_MONOTONIC, snapshots, shortest()),
        // An InstallSnapshot must reach a follower whose suffix conflicts: the AppendEntries
        // that would have repaired it first is lost. Without loss the space is exhausted
        // (6.5 M states) without a violation.
        case(
            TruncateWrongSuffix,
            specs::LOG_MATCHING,
            Setup {
                delivery: Delivery::Fifo,
                lossy: true,
                max_term: 2,
                max_elections: Some(2),
                max_log: 2,
                max_raft_state: Some(1),
                ..quiet(3, 2, 1)
            },
            exhaustive(),
        ),
    ]
}

/// The case for `bug`.
///
/// # Panics
/// If the catalog lacks it (a test keeps the catalog complete).
pub fn case(bug: Bug) -> BugCase {
    catalog().into_iter().find(|c| c.bug == bug).expect("every bug is in the catalog")
}

/// Explores `case` with its bug switched on.
pub fn hunt(case: &BugCase) -> Finding {
    let setup = Setup { bug: Some(case.bug), ..case.setup.clone() };
    let outcome = run::check(&System::new(setup), &case.options, &mut std::io::sink());
    Finding { case: case.clone(), outcome }
}

/// Explores `case`'s configuration with the correct core: random walks run their full count;
/// exhaustive searches run depth-first to the end, or for `budget` when the space is larger
/// than that (the outcome then says it is incomplete).
pub fn control(case: &BugCase, budget: Duration) -> Outcome {
    let options = match case.options.strategy {
        Strategy::Random => RunOptions { stop_at_violation: false, ..case.options.clone() },
        Strategy::Bfs | Strategy::Dfs => RunOptions { timeout: Some(budget), ..RunOptions::default() },
    };
    run::check(&System::new(case.setup.clone()), &options, &mut std::io::sink())
}
