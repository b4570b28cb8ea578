//! The Raft lab's view of the servers: `Start(cmd)` on a server, and which servers applied what
//! (`nCommitted`).

use super::{Sim, SimResult, START_CLIENTS};
use model::{ClientId, ClientRequest, Input, LogIndex, Note, Op, Seq, Term};

impl Sim {
    /// The Raft lab's `Start(cmd)` on server `n`: if it believes it leads, it appends `value`
    /// (as a command of a client of its own, so that no duplicate table interferes) and
    /// returns the entry's index and term; otherwise `None`. Nobody waits for the reply.
    ///
    /// # Errors
    /// A broken invariant in the step.
    pub fn start(&mut self, n: usize, value: String) -> SimResult<Option<(LogIndex, Term)>> {
        if !self.nodes[n].up || !self.servers[n].is_leader() {
            return Ok(None);
        }
        self.starts += 1;
        let client = ClientId(START_CLIENTS + self.starts);
        let request = ClientRequest { client, seq: Seq(1), op: Op::Put { key: "raft".into(), value } };
        self.step_server(n, Input::Client(request))?;
        let s = &self.servers[n];
        Ok(Some((s.log().last_index(), s.current_term())))
    }

    /// The Raft lab's `nCommitted(index)`: how many servers applied an entry at `index` (now or
    /// before a crash, directly or inside a snapshot), and its value (a [`Sim::start`]
    /// command's).
    ///
    /// # Errors
    /// When two servers applied different values there (the lab's oracle check).
    pub fn n_committed(&self, index: LogIndex) -> SimResult<(usize, Option<String>)> {
        let mut count = 0;
        let mut value: Option<&String> = None;
        for meta in &self.nodes {
            let Some(v) = meta.applied.get(&index) else { continue };
            if let Some(seen) = value {
                if seen != v {
                    return Err(format!("committed values do not match: index {index}, {seen:?}, {v:?}"));
                }
            }
            value = Some(v);
            count += 1;
        }
        Ok((count, value.cloned()))
    }

    /// Records what server `n` applied in its last step (`notes`), and the snapshot it
    /// installed from a leader.
    pub(super) fn record_applied(&mut self, n: usize, notes: &[Note]) {
        for note in notes {
            match note {
                Note::Applied { index, command, .. } => {
                    self.nodes[n].applied.insert(*index, value_of(&command.op));
                }
                Note::DuplicateSuppressed { index, .. } | Note::StaleSuppressed { index, .. } => {
                    let op = self.servers[n].log().get(*index).map(|e| &e.command.op);
                    let op = op.or_else(|| self.ghost.committed.get(index).map(|(e, _)| &e.command.op));
                    if let Some(v) = op.map(value_of) {
                        self.nodes[n].applied.insert(*index, v);
                    }
                }
                Note::SnapshotInstalled { index } => self.record_snapshot(n, *index),
                _ => {}
            }
        }
    }

    /// Server `n` holds a state machine covering `1..=index` (a snapshot installed, or restored
    /// at a restart): every index there counts as applied, with the committed command. The
    /// values come from the ghost's record of committed entries, which is exactly the
    /// snapshot's content: `snapshot_content` checks that a snapshot equals the replay of that
    /// committed prefix. Indices this server applied itself keep their own values.
    pub(super) fn record_snapshot(&mut self, n: usize, index: LogIndex) {
        let covered = self.ghost.committed.range(..=index);
        let applied = &mut self.nodes[n].applied;
        for (i, (entry, _)) in covered {
            applied.entry(*i).or_insert_with(|| value_of(&entry.command.op));
        }
    }
}

/// The value the Raft lab's oracle sees for a command: a [`Sim::start`] command's value.
fn value_of(op: &Op) -> String {
    match op {
        Op::Put { value, .. } | Op::Append { value, .. } => value.clone(),
        Op::Get { key } => format!("get {key}"),
    }
}
