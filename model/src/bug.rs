//! Deliberately broken variants of the core's rules, for proving that the checker and the
//! tests catch them (each changes as few lines as possible, at the place where the correct rule
//! lives).
//!
//! The names always exist so that tools can list and parse them, but a bug can only be switched
//! on when the crate is built with the `bugs` feature: in a normal build
//! [`Config::with_bug`](crate::Config::with_bug) refuses, and [`Config::has_bug`] is a constant
//! `false` the compiler removes.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A classic Raft or key/value-service mistake.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Bug {
    /// A leader commits an earlier term's entry by counting replicas (Raft Figure 8).
    CommitOldTermByCount,
    /// A restarted server forgets `voted_for`.
    ForgetVoteOnRestart,
    /// No duplicate table: every applied command executes, retries included.
    NoDedup,
    /// A leader answers Get from its own state at once, without going through the log.
    LocalReads,
    /// Snapshots carry the key/value map but not the duplicate table.
    SnapshotWithoutSessions,
    /// A follower installs a snapshot older than what it has applied.
    AcceptStaleSnapshot,
    /// Installing a snapshot cuts the log by index alone: the entries after the snapshot stay
    /// even when the entry at its index has another term.
    TruncateWrongSuffix,
}

impl Bug {
    pub const ALL: [Bug; 7] = [
        Bug::CommitOldTermByCount,
        Bug::ForgetVoteOnRestart,
        Bug::NoDedup,
        Bug::LocalReads,
        Bug::SnapshotWithoutSessions,
        Bug::AcceptStaleSnapshot,
        Bug::TruncateWrongSuffix,
    ];

    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Bug::CommitOldTermByCount => "commit_old_term_by_count",
            Bug::ForgetVoteOnRestart => "forget_vote_on_restart",
            Bug::NoDedup => "no_dedup",
            Bug::LocalReads => "local_reads",
            Bug::SnapshotWithoutSessions => "snapshot_without_sessions",
            Bug::AcceptStaleSnapshot => "accept_stale_snapshot",
            Bug::TruncateWrongSuffix => "truncate_wrong_suffix",
        }
    }

    /// The bug with this name, if any.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Bug> {
        Bug::ALL.into_iter().find(|b| b.name() == name)
    }
}

impl fmt::Display for Bug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether broken variants were compiled into this build.
pub const BUGS_COMPILED: bool = cfg!(feature = "bugs");
