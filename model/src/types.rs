//! Newtypes and messages shared by every part of the core: Raft's terms and 1-based log
//! indices (Raft §5, Figure 2), node and client identities, the key/value operations, and the
//! peer and client messages that cross the network.
//!
//! Everything here is plain data: `Clone + Eq + Ord + Hash + Debug + serde`, so it can live in
//! model-checker states, be written to disk and be sent over the wire.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! newtype {
    ($(#[$meta:meta])* $name:ident($inner:ty), $prefix:literal) => {
        $(#[$meta])*
        #[derive(
            Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub $inner);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }
    };
}

newtype!(
    /// A Raft term (§5.1). Terms start at 0 and only grow on a server.
    Term(u64),
    "t"
);
newtype!(
    /// A 1-based position in the Raft log; 0 means "before the first entry".
    LogIndex(u64),
    "i"
);
newtype!(
    /// A server of the cluster. Ids are small positive numbers chosen by the operator.
    NodeId(u32),
    "n"
);
newtype!(
    /// A clerk (client). Unique across the clerks that talk to one cluster.
    ClientId(u64),
    "c"
);
newtype!(
    /// A clerk's request number. A clerk's first request has seq 1; 0 means "none yet".
    Seq(u64),
    "#"
);

impl Term {
    /// The next term, as a candidate starts it (§5.2).
    #[must_use]
    pub fn next(self) -> Term {
        Term(self.0 + 1)
    }
}

impl LogIndex {
    #[must_use]
    pub fn next(self) -> LogIndex {
        LogIndex(self.0 + 1)
    }

    /// The index before this one; `LogIndex(0).prev()` stays 0.
    #[must_use]
    pub fn prev(self) -> LogIndex {
        LogIndex(self.0.saturating_sub(1))
    }
}

impl Seq {
    #[must_use]
    pub fn next(self) -> Seq {
        Seq(self.0 + 1)
    }
}

/// A key/value operation as a clerk asks for it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Op {
    /// Read the key; a missing key reads as `""`.
    Get { key: String },
    /// Replace the key's value.
    Put { key: String, value: String },
    /// Concatenate to the key's value; a missing key acts as `Put`.
    Append { key: String, value: String },
}

impl Op {
    #[must_use]
    pub fn key(&self) -> &str {
        match self {
            Op::Get { key } | Op::Put { key, .. } | Op::Append { key, .. } => key,
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Get { key } => write!(f, "get {key}"),
            Op::Put { key, value } => write!(f, "put {key} {value:?}"),
            Op::Append { key, value } => write!(f, "append {key} {value:?}"),
        }
    }
}

/// What an executed operation returns: the value for a `Get`, nothing for `Put`/`Append`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum OpOutput {
    Value(String),
    Done,
}

impl fmt::Display for OpOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpOutput::Value(v) => write!(f, "value {v:?}"),
            OpOutput::Done => write!(f, "ok"),
        }
    }
}

/// One replicated command: a clerk's operation tagged with its (client, seq).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Command {
    pub client: ClientId,
    pub seq: Seq,
    pub op: Op,
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{} {}", self.client, self.seq, self.op)
    }
}

/// A log entry (Figure 2: "each entry contains command for state machine, and term when entry
/// was received by leader").
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Entry {
    pub term: Term,
    pub command: Command,
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.term, self.command)
    }
}

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
    InstallSnapshot { term: Term, snapshot: crate::snapshot::Snapshot },
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

/// A clerk's request to a server.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ClientRequest {
    pub client: ClientId,
    pub seq: Seq,
    pub op: Op,
}

impl fmt::Display for ClientRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{} {}", self.client, self.seq, self.op)
    }
}

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

/// The server's timers. Their durations belong to the environment (runtime, simulator,
/// checker); the core only says when each is (re)armed or cancelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Timer {
    /// Followers and candidates: fires when no leader was heard from for a while (§5.2).
    Election,
    /// Leaders: fires to send the next round of AppendEntries (§5.2 heartbeats).
    Heartbeat,
}

impl fmt::Display for Timer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Timer::Election => write!(f, "election"),
            Timer::Heartbeat => write!(f, "heartbeat"),
        }
    }
}
