//! The Raft lab's view of the servers: `Start(cmd)` on a server, and which servers applied what
//! (`nCommitted`).

use super::{Sim, SimResult, START_CLIENTS};
use model::{ClientId, ClientRequest, Input, LogIndex, Op, Seq, Term};

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
    /// before a crash), and its value (a [`Sim::start`] command's).
    ///
    /// # Errors
    /// When two servers applied different values there (the lab's oracle check).
    pub fn n_committed(&self, index: LogIndex) -> SimResult<(usize, Option<String>)> {
        let mut count = 0;
        let mut value: Option<String> = None;
        for (k, s) in self.servers.iter().enumerate() {
            if self.nodes[k].ever_applied < index {
                continue;
            }
            let Some(entry) = s.log().get(index) else { continue };
            let v = match &entry.command.op {
                Op::Put { value, .. } | Op::Append { value, .. } => value.clone(),
                Op::Get { key } => format!("get {key}"),
            };
            if let Some(seen) = &value {
                if *seen != v {
                    return Err(format!("committed values do not match: index {index}, {seen:?}, {v:?}"));
                }
            }
            value = Some(v);
            count += 1;
        }
        Ok((count, value))
    }

}
