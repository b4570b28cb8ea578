//! kvraft's properties, written once and used everywhere: by the model checker on every
//! explored state, by the simulator after every step, and by the runtime's tests on recorded
//! histories. Each property is a pure function returning `Result<(), Violation>`; the
//! statements and their sources are in specs/README.md.
//!
//! - [`KvSpec`]: the naive sequential key/value specification (independent of `model::kv`).
//! - Raft safety (paper Figure 3), one module each: [`election_safety`], [`log_matching`],
//!   [`leader_completeness`], [`state_machine_safety`]; plus [`commit_bounds`],
//!   [`applied_monotonic`] (per step) and [`at_most_once`] (Raft §8).
//! - [`Ghost`]: what the checks must remember beyond the current states.
//! - [`linearizability`]: per-key history checking with an explicit "unknown", and
//!   [`Summary`], its incremental and canonical form for model-checker states.
//!
//! Pure: no clocks, threads, IO or randomness; only ordered collections are iterated.

#![forbid(unsafe_code)]
#![warn(clippy::pedantic)]
#![allow(clippy::module_name_repetitions, clippy::must_use_candidate, clippy::doc_markdown)]

pub mod applied_monotonic;
pub mod at_most_once;
pub mod commit_bounds;
pub mod election_safety;
pub mod ghost;
pub mod history_line;
pub mod kv_spec;
pub mod lab_appends;
pub mod labrpc;
pub mod leader_completeness;
pub mod linearizability;
pub mod log_matching;
pub mod snapshot_content;
pub mod state_machine_safety;
pub mod violation;

#[cfg(test)]
mod fixtures;

pub use applied_monotonic::applied_monotonic;
pub use at_most_once::at_most_once;
pub use commit_bounds::commit_bounds;
pub use election_safety::election_safety;
pub use ghost::Ghost;
pub use kv_spec::KvSpec;
pub use leader_completeness::leader_completeness;
pub use linearizability::{appends_in_order, check, check_timed, History, Operation, Summary, TimedOp, Verdict};
pub use log_matching::log_matching;
pub use snapshot_content::snapshot_content;
pub use state_machine_safety::state_machine_safety;
pub use violation::Violation;

use model::Server;

/// Raft Figure 3 / §5.2: at most one leader can be elected in a given term.
pub const ELECTION_SAFETY: &str = "election safety";
/// Raft Figure 3 / §5.3: same index and term means identical logs up through that index.
pub const LOG_MATCHING: &str = "log matching";
/// Raft Figure 3 / §5.4: a committed entry is in the logs of all later terms' leaders.
pub const LEADER_COMPLETENESS: &str = "leader completeness";
/// Raft Figure 3 / §5.4.3: no two servers apply different entries at one index.
pub const STATE_MACHINE_SAFETY: &str = "state machine safety";
/// Raft Figure 2: term, commit index and last applied never decrease within an incarnation.
pub const APPLIED_MONOTONIC: &str = "applied state never goes back";
/// Raft §8 / thesis §6.3: no (client, seq) changes a server's state machine twice.
pub const AT_MOST_ONCE: &str = "at most once";
/// Raft Figure 2 / §7: `start_index <= last_applied <= commit_index <= last_index`.
pub const COMMIT_BOUNDS: &str = "last_applied <= commit_index <= last log index";
/// Raft §7 and §8: a snapshot is the state machine (data and duplicate table) of the committed
/// prefix it claims.
pub const SNAPSHOT_CONTENT: &str = "a snapshot is the state machine of its committed prefix";
/// Herlihy & Wing 1990: the clients' history has a legal sequential order respecting real time.
pub const LINEARIZABLE: &str = "linearizable";

/// A property of one state of a cluster: every server's current state, and the ghost.
#[derive(Clone, Copy, Debug)]
pub struct Invariant {
    pub name: &'static str,
    pub check: fn(&[Server], &Ghost) -> Result<(), Violation>,
}

/// Every single-state invariant, cheapest first. This is the one list: [`check_all`], the
/// model checker's properties and its violation details, and the simulator all read it.
/// ([`applied_monotonic`] relates two states, and [`LINEARIZABLE`] a whole history, so they
/// are checked apart.) Bounds come before the rest, whose checks index logs by them.
pub const INVARIANTS: [Invariant; 7] = [
    Invariant { name: AT_MOST_ONCE, check: |_, ghost| at_most_once(ghost) },
    Invariant { name: COMMIT_BOUNDS, check: |servers, _| commit_bounds(servers) },
    Invariant { name: ELECTION_SAFETY, check: election_safety },
    Invariant { name: LOG_MATCHING, check: |servers, _| log_matching(servers) },
    Invariant { name: LEADER_COMPLETENESS, check: leader_completeness },
    Invariant { name: STATE_MACHINE_SAFETY, check: state_machine_safety },
    Invariant { name: SNAPSHOT_CONTENT, check: snapshot_content },
];

/// The invariant called `name`.
pub fn invariant(name: &str) -> Option<&'static Invariant> {
    INVARIANTS.iter().find(|i| i.name == name)
}

/// Checks every [`INVARIANTS`] entry, in order.
///
/// # Errors
/// The first [`Violation`] found.
pub fn check_all(servers: &[Server], ghost: &Ghost) -> Result<(), Violation> {
    INVARIANTS.iter().try_for_each(|i| (i.check)(servers, ghost))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{applied, entry, leader, server};

    #[test]
    fn a_consistent_cluster_passes_everything() {
        let log = [entry(1, 1, "a"), entry(2, 2, "b")];
        let servers = [leader(applied(server(1, 2, &log), 2)), applied(server(2, 2, &log), 1), server(3, 2, &[])];
        assert_eq!(check_all(&servers, &Ghost::of(&servers)), Ok(()));
    }

    #[test]
    fn check_all_reports_the_first_broken_property() {
        let log = [entry(1, 1, "a")];
        let mut broken = applied(server(2, 1, &log), 1);
        broken.commit_index = model::LogIndex(0);
        let servers = [leader(server(1, 1, &log)), leader(server(3, 1, &log)), broken];
        let err = check_all(&servers, &Ghost::new()).unwrap_err();
        assert_eq!(err.property, COMMIT_BOUNDS, "bounds are checked before election safety");
    }
}
