//! Client interaction (Raft §8) on the server side: a request becomes a log entry at the
//! leader; every committed entry is applied, in order, on every server (Figure 2, Rules for
//! Servers: "If commitIndex > lastApplied: increment lastApplied, apply log[lastApplied] to
//! state machine"); and the leader answers a request only when the very entry it appended
//! (same index, same term) is applied.
//!
//! Why index *and* term: the leader appends at index i in term t, is deposed, and a new leader
//! overwrites i with another command. If the old leader, back as follower, answered when
//! "something" was applied at i, the clerk would believe its operation executed when it did
//! not. Stepping down fails the pending request instead (see `become_follower`), and a
//! mismatch at apply time fails it too.

use crate::bug::Bug;
use crate::io::{Note, Output};
use crate::kv::Applied;
use crate::message::{ClientReply, ClientRequest, ClientResult};
use crate::state::{Pending, Server};
use crate::types::{Command, Entry, LogIndex, Op, OpOutput};

impl Server {
    /// A clerk's request: a follower or candidate redirects; the leader appends the command,
    /// remembers who waits for it, and replicates it at once (not on the next heartbeat), so
    /// one sequential clerk can complete many operations per heartbeat interval.
    pub(crate) fn on_client_request(&mut self, request: ClientRequest, out: &mut Output) {
        if !self.is_leader() {
            let hint = self.leader_hint();
            return out.reply(ClientReply {
                client: request.client,
                seq: request.seq,
                result: ClientResult::WrongLeader { hint },
            });
        }
        if let (true, Op::Get { key }) = (self.config.has_bug(Bug::LocalReads), &request.op) {
            let value = OpOutput::Value(self.kv.get(key).to_string());
            let (client, seq) = (request.client, request.seq);
            return out.reply(ClientReply { client, seq, result: ClientResult::Ok(value) });
        }
        let term = self.current_term();
        let ClientRequest { client, seq, op } = request;
        let index = self.append_to_log(Entry { term, command: Command { client, seq, op } }, out);
        self.pending.insert(index, Pending { term, client, seq });
        self.broadcast_append(out);
        self.maybe_advance_commit();
    }

    /// Applies every committed entry not yet applied, in log order, and answers the requests
    /// this leader appended for them.
    pub(crate) fn maybe_apply(&mut self, out: &mut Output) {
        while self.last_applied < self.commit_index {
            let index = self.last_applied.next();
            let entry = self.log().get(index).cloned().expect("committed entries are held");
            if self.config.has_bug(Bug::NoDedup) {
                self.kv.sessions.remove(&entry.command.client);
            }
            let applied = self.kv.apply(&entry.command);
            self.last_applied = index;
            let Command { client, seq, .. } = entry.command;
            let result = match applied {
                Applied::Executed(output) => {
                    let command = entry.command.clone();
                    out.note(Note::Applied { index, command, output: output.clone() });
                    ClientResult::Ok(output)
                }
                Applied::Duplicate(output) => {
                    out.note(Note::DuplicateSuppressed { index, client, seq });
                    let is_get = matches!(entry.command.op, Op::Get { .. });
                    if is_get && self.config.has_bug(Bug::DedupReturnsOk) {
                        ClientResult::Ok(OpOutput::Value(String::new()))
                    } else {
                        ClientResult::Ok(output)
                    }
                }
                Applied::Stale => {
                    out.note(Note::StaleSuppressed { index, client, seq });
                    ClientResult::Stale
                }
            };
            self.answer_pending(index, &entry, result, out);
        }
    }

    /// If this leader waits on `index`, answers it: with the result when the applied entry is
    /// the one it appended (same term and command), with `WrongLeader` otherwise.
    fn answer_pending(&mut self, index: LogIndex, entry: &Entry, result: ClientResult, out: &mut Output) {
        let Some(pending) = self.pending.remove(&index) else { return };
        let Pending { term, client, seq } = pending;
        let same = term == entry.term && client == entry.command.client && seq == entry.command.seq;
        let same = same || self.config.has_bug(Bug::ReplyByIndexOnly);
        let result = if same {
            result
        } else {
            out.note(Note::RequestFailed { client, seq, index });
            ClientResult::WrongLeader { hint: None }
        };
        out.reply(ClientReply { client, seq, result });
    }
}
