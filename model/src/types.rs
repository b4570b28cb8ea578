//! Newtypes shared by every part of the core: Raft's terms and 1-based log indices (Raft §5,
//! Figure 2), node and client identities, the key/value operations, log entries and timers.
//! The messages built from them are in `message.rs`.
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
