//! The key/value state machine and its client-session (duplicate) table.
//!
//! Applied state only: it changes exclusively when a committed log entry is applied (Raft §8,
//! "Client interaction": each command carries a unique serial number, and the state machine
//! tracks the latest serial number processed for each client along with the associated
//! response). Because the session table is part of the applied state, every server builds the
//! same table, and it travels with every snapshot.

use crate::types::{ClientId, Command, Op, OpOutput, Seq};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The last request a client completed, with its reply, so that a retry is answered with the
/// original result instead of executing again.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Session {
    pub seq: Seq,
    pub output: OpOutput,
}

/// What applying one command did.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Applied {
    /// First time for this (client, seq): the state machine executed it.
    Executed(OpOutput),
    /// The same (client, seq) was already executed: nothing changed; this is its reply.
    Duplicate(OpOutput),
    /// The client has already completed a later seq: nothing changed, and its reply is gone.
    Stale,
}

/// The replicated state machine: the map plus one session per client.
///
/// Invariant: `sessions` holds at most one entry per client, so its size is bounded by the
/// number of distinct clients, not by the number of operations.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct KvState {
    pub data: im::OrdMap<String, String>,
    pub sessions: im::OrdMap<ClientId, Session>,
}

impl KvState {
    #[must_use]
    pub fn new() -> KvState {
        KvState::default()
    }

    /// Applies a committed command at most once per (client, seq).
    pub fn apply(&mut self, command: &Command) -> Applied {
        if let Some(session) = self.sessions.get(&command.client) {
            if command.seq == session.seq {
                return Applied::Duplicate(session.output.clone());
            }
            if command.seq < session.seq {
                return Applied::Stale;
            }
        }
        let output = self.execute(&command.op);
        self.sessions.insert(command.client, Session { seq: command.seq, output: output.clone() });
        Applied::Executed(output)
    }

    fn execute(&mut self, op: &Op) -> OpOutput {
        match op {
            Op::Get { key } => OpOutput::Value(self.get(key).to_string()),
            Op::Put { key, value } => {
                self.data.insert(key.clone(), value.clone());
                OpOutput::Done
            }
            Op::Append { key, value } => {
                let mut current = self.get(key).to_string();
                current.push_str(value);
                self.data.insert(key.clone(), current);
                OpOutput::Done
            }
        }
    }

    /// The value of `key`, or `""` when it is missing.
    #[must_use]
    pub fn get(&self, key: &str) -> &str {
        self.data.get(key).map_or("", String::as_str)
    }
}

impl fmt::Display for KvState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{")?;
        for (k, (key, value)) in self.data.iter().enumerate() {
            if k > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{key}={value:?}")?;
        }
        write!(f, "}} sessions{{")?;
        for (k, (client, session)) in self.sessions.iter().enumerate() {
            if k > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{client}{}", session.seq)?;
        }
        write!(f, "}}")
    }
}
