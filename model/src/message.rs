//! The messages that cross the network: between servers (Figure 2's RPCs, with requests and
//! replies as separate messages) and between a clerk and a server.
//!
//! Plain data like everything in [`crate::types`]: `Clone + Eq + Ord + Hash + Debug + serde`.

use crate::snapshot::Snapshot;
use crate::types::{ClientId, Command, Entry, LogIndex, NodeId, OpOutput, Seq, Term};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Messages between servers (Figure 2's RPCs, requests and replies as separate messages).
/// Every message carries the sender's `term` first; the sender is given by the transport.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum PeerMsg {
    /// RequestVote RPC (§5.2, §5.4.1).
    RequestVote { term: Term, last_log_index: LogIndex, last_log_term: Term },
    /// RequestVote reply.
    VoteReply { term: Term, granted: bool },
    /// AppendEntries RPC (§5.3); a heartbeat when `entries` is empty.
    AppendEntries {
        term: Term,
        prev_log_index: LogIndex,
        prev_log_term: Term,
        entries: im::Vector<Entry>,
        leader_commit: LogIndex,
    },
    /// AppendEntries reply. On success `match_index` is the last index the request verified
    /// (`prev_log_index + entries.len()`), so the leader learns exactly what was acknowledged.
    /// On failure `conflict_index` is where the leader should retry from (fast back-up, §5.3).
    AppendReply { term: Term, success: bool, match_index: LogIndex, conflict_index: LogIndex },
    /// InstallSnapshot RPC (§7, Figure 13), sent instead of AppendEntries when the follower
    /// needs entries the leader has compacted away. The whole snapshot travels in one message
    /// (no chunking: a snapshot is bounded by the key/value data, and the frame limit applies).
    /// The follower answers with an `AppendReply` acknowledging `snapshot.last_index`.
    InstallSnapshot { term: Term, snapshot: Snapshot },
}

impl PeerMsg {
    #[must_use]
    pub fn term(&self) -> Term {
        match self {
            PeerMsg::RequestVote { term, .. }
            | PeerMsg::VoteReply { term, .. }
            | PeerMsg::AppendEntries { term, .. }
            | PeerMsg::AppendReply { term, .. }
            | PeerMsg::InstallSnapshot { term, .. } => *term,
        }
    }
}

impl fmt::Display for PeerMsg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerMsg::RequestVote { term, last_log_index, last_log_term } => {
                write!(f, "RequestVote {term} last={last_log_index}/{last_log_term}")
            }
            PeerMsg::VoteReply { term, granted } => {
                write!(f, "VoteReply {term} {}", if *granted { "granted" } else { "denied" })
            }
            PeerMsg::AppendEntries { term, prev_log_index, prev_log_term, entries, leader_commit } => {
                write!(f, "AppendEntries {term} prev={prev_log_index}/{prev_log_term} [")?;
                for (k, e) in entries.iter().enumerate() {
                    if k > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{e}")?;
                }
                write!(f, "] commit={leader_commit}")
            }
            PeerMsg::AppendReply { term, success, match_index, conflict_index } => {
                if *success {
                    write!(f, "AppendReply {term} ok match={match_index}")
                } else {
                    write!(f, "AppendReply {term} reject retry-from={conflict_index}")
                }
            }
            PeerMsg::InstallSnapshot { term, snapshot } => write!(f, "InstallSnapshot {term} {snapshot}"),
        }
    }
}

/// A clerk's request to a server: the command it asks the cluster to execute, as it will
/// stand in the log, `(client, seq)` and all.
pub type ClientRequest = Command;

/// How a server answers a request.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ClientResult {
    /// The operation executed (exactly once) with this output.
    Ok(OpOutput),
    /// This server cannot execute the request now; try `hint` (if known) or another server.
    /// The operation may or may not execute later: retry with the same (client, seq).
    WrongLeader { hint: Option<NodeId> },
    /// The request's seq is older than the last one this client completed: it was already
    /// answered, and the clerk has moved on. Nothing was executed.
    Stale,
}

impl fmt::Display for ClientResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientResult::Ok(out) => write!(f, "{out}"),
            ClientResult::WrongLeader { hint: Some(h) } => write!(f, "wrong-leader hint={h}"),
            ClientResult::WrongLeader { hint: None } => write!(f, "wrong-leader"),
            ClientResult::Stale => write!(f, "stale"),
        }
    }
}

/// A server's answer to a clerk.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ClientReply {
    pub client: ClientId,
    pub seq: Seq,
    pub result: ClientResult,
}

impl fmt::Display for ClientReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{} {}", self.client, self.seq, self.result)
    }
}
