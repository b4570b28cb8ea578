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
    /// A server grants its vote without the election restriction (§5.4.1).
    VoteIgnoresLog,
    /// The up-to-date check compares last log indices only, not (last term, last index).
    VoteCompareIndexOnly,
    /// A candidate counts a duplicated vote reply as a second vote.
    CountDuplicateVotes,
    /// A follower truncates its log after the entries of any AppendEntries, even one whose
    /// entries all match (a stale or duplicated request then cuts off newer entries).
    TruncateOnAnyAppend,
    /// The leader sets `match_index` from its optimistic `next_index` instead of from what the
    /// reply acknowledged.
    MatchFromNextIndex,
    /// A follower advances its commit index to the leader's, past the prefix the request
    /// verified.
    CommitWithoutMatch,
    /// One vote or acknowledgement short of a majority counts as a majority.
    QuorumMinusOne,
    /// No duplicate table: every applied command executes, retries included.
    NoDedup,
    /// A leader answers a request when *some* entry is applied at the index it started: the
    /// term is not checked, and stepping down does not fail what it waits for.
    ReplyByIndexOnly,
    /// A duplicate request is answered with an empty value instead of the cached reply.
    DedupReturnsOk,
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
    pub const ALL: [Bug; 16] = [
        Bug::CommitOldTermByCount,
        Bug::ForgetVoteOnRestart,
        Bug::VoteIgnoresLog,
        Bug::VoteCompareIndexOnly,
        Bug::CountDuplicateVotes,
        Bug::TruncateOnAnyAppend,
        Bug::MatchFromNextIndex,
        Bug::CommitWithoutMatch,
        Bug::QuorumMinusOne,
        Bug::NoDedup,
        Bug::ReplyByIndexOnly,
        Bug::DedupReturnsOk,
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
            Bug::VoteIgnoresLog => "vote_ignores_log",
            Bug::VoteCompareIndexOnly => "vote_compare_index_only",
            Bug::CountDuplicateVotes => "count_duplicate_votes",
            Bug::TruncateOnAnyAppend => "truncate_on_any_append",
            Bug::MatchFromNextIndex => "match_from_next_index",
            Bug::CommitWithoutMatch => "commit_without_match",
            Bug::QuorumMinusOne => "quorum_minus_one",
            Bug::ReplyByIndexOnly => "reply_by_index_only",
            Bug::DedupReturnsOk => "dedup_returns_ok",
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

/// Parses a bug's name (as the command lines take it); the error lists the known names.
impl std::str::FromStr for Bug {
    type Err = String;

    fn from_str(name: &str) -> Result<Bug, String> {
        Bug::from_name(name).ok_or_else(|| {
            let names: Vec<&str> = Bug::ALL.iter().map(|b| b.name()).collect();
            format!("unknown bug {name:?}; known: {}", names.join(", "))
        })
    }
}

impl fmt::Display for Bug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether broken variants were compiled into this build.
pub const BUGS_COMPILED: bool = cfg!(feature = "bugs");
