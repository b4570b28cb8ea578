//! What goes into a step and what comes out of it.
//!
//! # Contract (for every driver: runtime, simulator, checker)
//! For each `Output`, in this order:
//! 1. make every change in `persist` durable (one fsync may cover the outputs of several
//!    steps: group commit), and only then
//! 2. send `send` to peers and `reply` to clients (in any order, may be lost);
//! 3. apply `timers` (set = start or restart, cancel = stop);
//! 4. `notes` are observations for checking and logs; ignoring them is allowed.
//!
//! A crash loses everything but what was persisted; restart with `Server::restore`.

use crate::message::{ClientReply, ClientRequest, PeerMsg};
use crate::state::DurableChange;
use crate::types::{ClientId, Command, LogIndex, NodeId, OpOutput, Seq, Term, Timer};
use serde::{Deserialize, Serialize};

/// Everything that can happen to a server.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Input {
    /// A message from peer `from` arrived.
    Receive { from: NodeId, msg: PeerMsg },
    /// A clerk's request arrived.
    Client(ClientRequest),
    /// An armed timer fired.
    Timeout(Timer),
}

/// Start or stop a timer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum TimerCommand {
    /// Start the timer, or restart it if it is running.
    Set(Timer),
    Cancel(Timer),
}

/// Observations of what a step did: for the checker, traces and logs.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum Note {
    /// The state machine executed this command (the first and only time on this server).
    Applied {
        index: LogIndex,
        command: Command,
        output: OpOutput,
    },
    /// A retried (client, seq) reached the state machine again and was not executed.
    DuplicateSuppressed {
        index: LogIndex,
        client: ClientId,
        seq: Seq,
    },
    /// A command older than its client's last completed one was not executed.
    StaleSuppressed {
        index: LogIndex,
        client: ClientId,
        seq: Seq,
    },
    /// The server changed role (or term).
    BecameFollower {
        term: Term,
    },
    BecameCandidate {
        term: Term,
    },
    BecameLeader {
        term: Term,
    },
    /// The leader failed a request it had appended (deposed, or a different entry landed).
    RequestFailed {
        client: ClientId,
        seq: Seq,
        index: LogIndex,
    },
    /// The server compacted its log into a snapshot of its state machine at `index` (§7).
    SnapshotTaken {
        index: LogIndex,
    },
    /// The server replaced its state machine by a leader's snapshot ending at `index`.
    SnapshotInstalled {
        index: LogIndex,
    },
    /// The input was ignored, and why.
    Ignored {
        reason: &'static str,
    },
}

/// The effects of one step, grouped by kind so that ordering is not a matter of position.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize)]
pub struct Output {
    pub persist: Vec<DurableChange>,
    pub send: Vec<(NodeId, PeerMsg)>,
    pub reply: Vec<ClientReply>,
    pub timers: Vec<TimerCommand>,
    pub notes: Vec<Note>,
}

impl Output {
    pub(crate) fn send(&mut self, to: NodeId, msg: PeerMsg) {
        self.send.push((to, msg));
    }

    pub(crate) fn reply(&mut self, reply: ClientReply) {
        self.reply.push(reply);
    }

    pub(crate) fn set_timer(&mut self, timer: Timer) {
        if self.timers.last() != Some(&TimerCommand::Set(timer)) {
            self.timers.push(TimerCommand::Set(timer));
        }
    }

    pub(crate) fn cancel_timer(&mut self, timer: Timer) {
        self.timers.push(TimerCommand::Cancel(timer));
    }

    pub(crate) fn note(&mut self, note: Note) {
        self.notes.push(note);
    }

    pub(crate) fn ignore(&mut self, reason: &'static str) {
        self.notes.push(Note::Ignored { reason });
    }

    /// Records a durable change, folding consecutive term/vote changes into one.
    pub(crate) fn persist(&mut self, change: DurableChange) {
        if let (Some(DurableChange::TermAndVote { .. }), DurableChange::TermAndVote { .. }) =
            (self.persist.last(), &change)
        {
            self.persist.pop();
        }
        self.persist.push(change);
    }

    /// True when the step did nothing observable.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.persist.is_empty() && self.send.is_empty() && self.reply.is_empty() && self.timers.is_empty()
    }
}
