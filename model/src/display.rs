//! Human-readable forms of inputs, outputs and a compact view of a server, shared by
//! transcripts, checker traces, the simulator and runtime logs.

use crate::io::{Input, Note, Output, TimerCommand};
use crate::state::{DurableChange, Role, Server};
use std::fmt;

impl fmt::Display for Input {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Input::Receive { from, msg } => write!(f, "from {from}: {msg}"),
            Input::Client(request) => write!(f, "client {request}"),
            Input::Timeout(timer) => write!(f, "timeout {timer}"),
        }
    }
}

impl fmt::Display for TimerCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TimerCommand::Set(timer) => write!(f, "set {timer}"),
            TimerCommand::Cancel(timer) => write!(f, "cancel {timer}"),
        }
    }
}

impl fmt::Display for DurableChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DurableChange::TermAndVote { current_term, voted_for: Some(v) } => {
                write!(f, "term={current_term} vote={v}")
            }
            DurableChange::TermAndVote { current_term, voted_for: None } => {
                write!(f, "term={current_term} vote=none")
            }
            DurableChange::Truncate { from } => write!(f, "truncate from {from}"),
            DurableChange::Append { first, entries } => {
                write!(f, "append at {first}:")?;
                for entry in entries {
                    write!(f, " {entry}")?;
                }
                Ok(())
            }
            DurableChange::Snapshot(snapshot) => write!(f, "{snapshot}"),
        }
    }
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Note::Applied { index, command, output } => {
                write!(f, "applied {index} {command} -> {output}")
            }
            Note::DuplicateSuppressed { index, client, seq } => {
                write!(f, "duplicate {client}{seq} at {index} suppressed")
            }
            Note::StaleSuppressed { index, client, seq } => {
                write!(f, "stale {client}{seq} at {index} suppressed")
            }
            Note::BecameFollower { term } => write!(f, "follower in {term}"),
            Note::BecameCandidate { term } => write!(f, "candidate in {term}"),
            Note::BecameLeader { term } => write!(f, "leader in {term}"),
            Note::RequestFailed { client, seq, index } => {
                write!(f, "request {client}{seq} at {index} failed")
            }
            Note::SnapshotTaken { index } => write!(f, "snapshot taken at {index}"),
            Note::SnapshotInstalled { index } => write!(f, "snapshot installed at {index}"),
            Note::Ignored { reason } => write!(f, "ignored: {reason}"),
        }
    }
}

impl fmt::Display for Output {
    /// One effect per line, prefixed by its kind; nothing at all for an empty output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for change in &self.persist {
            writeln!(f, "  persist {change}")?;
        }
        for (to, msg) in &self.send {
            writeln!(f, "  send {to} {msg}")?;
        }
        for reply in &self.reply {
            writeln!(f, "  reply {reply}")?;
        }
        for timer in &self.timers {
            writeln!(f, "  timer {timer}")?;
        }
        for note in &self.notes {
            writeln!(f, "  note {note}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Server {
    /// `n1 leader t2 vote=n1 commit=i3 applied=i3 log: 1:t1:c1#1 put x "a" ... kv {...}`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.id(), self.role_name(), self.current_term())?;
        match self.durable.voted_for {
            Some(v) => write!(f, " vote={v}")?,
            None => write!(f, " vote=none")?,
        }
        if let Role::Follower { leader: Some(l) } = &self.role {
            write!(f, " leader={l}")?;
        }
        write!(f, " commit={} applied={}", self.commit_index, self.last_applied)?;
        write!(f, " log:{}", self.log())?;
        write!(f, " kv {}", self.kv)
    }
}
