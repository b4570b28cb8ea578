//! The ghost record: what the checks need to remember that the servers' current states alone
//! cannot show — who led each term, what was ever committed (and from which term), and which
//! commands each server's state machine has executed in its current incarnation.
//!
//! Whoever drives the servers (model checker, simulator, test) feeds it: `observe_server` for
//! states that appear without a step (initial states), `observe_step` after every step, and
//! `observe_restart` after a crash and restore. It is hashed into every explored state, so it
//! keeps only persistent `im` collections and the *first* violation of each kind.

use model::{ClientId, Entry, LogIndex, NodeId, Note, Output, Seq, Server, Term};
use serde::{Deserialize, Serialize};

/// Two different servers were seen leading the same term (Election Safety, §5.2).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DoubleLeader {
    pub term: Term,
    pub first: NodeId,
    pub second: NodeId,
}

/// Two different entries were seen committed at the same index (State Machine Safety, §5.4.3).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CommitConflict {
    pub index: LogIndex,
    /// The entry first seen committed at `index`.
    pub first: Entry,
    /// The different entry `server` committed there later, in `term`.
    pub second: Entry,
    pub server: NodeId,
    pub term: Term,
}

/// A server's state machine executed the same (client, seq) twice in one incarnation
/// (at-most-once, Raft §8).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DoubleExecution {
    pub server: NodeId,
    pub client: ClientId,
    pub seq: Seq,
    /// The log index of the second execution.
    pub index: LogIndex,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Ghost {
    /// Every term in which a leader was seen, with the first server seen leading it.
    pub leaders: im::OrdMap<Term, NodeId>,
    /// The first time a second server was seen leading a term already led by another.
    pub double_leader: Option<DoubleLeader>,
    /// For each index ever committed on any server: the entry, and the smallest term in which
    /// a server was seen to have it committed (a commit index rises only in its server's
    /// current term, so that is the term of the server whose commit index passed the index).
    pub committed: im::OrdMap<LogIndex, (Entry, Term)>,
    /// The first time a server committed an entry different from one committed before.
    pub commit_conflict: Option<CommitConflict>,
    /// Per server, the (client, seq) its state machine executed since it last (re)started.
    pub executed: im::OrdMap<NodeId, im::OrdSet<(ClientId, Seq)>>,
    /// The first time a server executed a (client, seq) it had already executed.
    pub double_execution: Option<DoubleExecution>,
}

impl Ghost {
    #[must_use]
    pub fn new() -> Ghost {
        Ghost::default()
    }

    /// A ghost that has seen `servers` (for instance a model checker's initial states).
    #[must_use]
    pub fn of(servers: &[Server]) -> Ghost {
        let mut ghost = Ghost::new();
        for s in servers {
            ghost.observe_server(s);
        }
        ghost
    }

    /// Records the leadership and the commits of a state that appeared without a step.
    pub fn observe_server(&mut self, s: &Server) {
        self.observe_leadership(s);
        self.observe_commits(s, LogIndex(0));
    }

    /// Records one step of one server: `before` and `after` are its states around the step and
    /// `out` is what the step returned (its `Note::Applied` notes are the executions).
    pub fn observe_step(&mut self, before: &Server, after: &Server, out: &Output) {
        self.observe_leadership(after);
        self.observe_commits(after, before.commit_index);
        for note in &out.notes {
            if let Note::Applied { index, command, .. } = note {
                self.observe_execution(after.id(), *index, command.client, command.seq);
            }
        }
    }

    /// Records a crash and restore of `restored.id()`: its state machine starts again from
    /// empty, so it may execute every command again.
    ///
    /// Once snapshots exist, a server restored from a snapshot starts from the snapshot's
    /// state machine instead; re-executing a command the snapshot already holds would then be
    /// missed here (the state machine's session table, restored with it, is what prevents it).
    pub fn observe_restart(&mut self, restored: &Server) {
        self.executed.remove(&restored.id());
        self.observe_server(restored);
    }

    fn observe_leadership(&mut self, s: &Server) {
        if !s.is_leader() {
            return;
        }
        let term = s.current_term();
        match self.leaders.get(&term).copied() {
            None => {
                self.leaders.insert(term, s.id());
            }
            Some(first) if first != s.id() && self.double_leader.is_none() => {
                self.double_leader = Some(DoubleLeader {
                    term,
                    first,
                    second: s.id(),
                });
            }
            Some(_) => {}
        }
    }

    /// Records the entries `s` holds committed above index `above`.
    fn observe_commits(&mut self, s: &Server, above: LogIndex) {
        let log = s.log();
        let top = s.commit_index.min(log.last_index());
        let mut index = above.max(log.start_index()).next();
        while index <= top {
            if let Some(entry) = log.get(index) {
                self.observe_commit(s, index, entry);
            }
            index = index.next();
        }
    }

    fn observe_commit(&mut self, s: &Server, index: LogIndex, entry: &Entry) {
        let term = s.current_term();
        match self.committed.get(&index) {
            None => {
                self.committed.insert(index, (entry.clone(), term));
            }
            Some((first, first_term)) if first == entry => {
                if term < *first_term {
                    self.committed.insert(index, (entry.clone(), term));
                }
            }
            Some((first, _)) => {
                if self.commit_conflict.is_none() {
                    let (first, second) = (first.clone(), entry.clone());
                    let server = s.id();
                    self.commit_conflict = Some(CommitConflict {
                        index,
                        first,
                        second,
                        server,
                        term,
                    });
                }
            }
        }
    }

    fn observe_execution(&mut self, server: NodeId, index: LogIndex, client: ClientId, seq: Seq) {
        let set = self.executed.entry(server).or_default();
        if set.insert((client, seq)).is_some() && self.double_execution.is_none() {
            self.double_execution = Some(DoubleExecution {
                server,
                client,
                seq,
                index,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{applied, entry, leader, server};

    #[test]
    fn remembers_leaders_and_flags_a_second_one() {
        let mut ghost = Ghost::new();
        ghost.observe_server(&leader(server(1, 2, &[])));
        ghost.observe_server(&leader(server(1, 2, &[])));
        ghost.observe_server(&server(2, 2, &[]));
        assert_eq!(ghost.leaders.get(&Term(2)), Some(&NodeId(1)));
        assert_eq!(ghost.double_leader, None);
        ghost.observe_server(&leader(server(3, 2, &[])));
        let d = ghost.double_leader.clone().expect("two leaders of t2");
        assert_eq!((d.term, d.first, d.second), (Term(2), NodeId(1), NodeId(3)));
    }

    #[test]
    fn commits_keep_the_smallest_term() {
        let log = [entry(1, 1, "a"), entry(1, 2, "b")];
        let mut ghost = Ghost::new();
        ghost.observe_server(&applied(server(1, 5, &log), 2));
        ghost.observe_server(&applied(server(2, 3, &log), 1));
        assert_eq!(
            ghost.committed.get(&LogIndex(1)),
            Some(&(entry(1, 1, "a"), Term(3)))
        );
        assert_eq!(
            ghost.committed.get(&LogIndex(2)),
            Some(&(entry(1, 2, "b"), Term(5)))
        );
        assert_eq!(ghost.commit_conflict, None);
    }

    #[test]
    fn a_different_entry_committed_at_an_index_is_a_conflict() {
        let mut ghost = Ghost::new();
        ghost.observe_server(&applied(server(1, 1, &[entry(1, 1, "a")]), 1));
        ghost.observe_server(&applied(server(2, 2, &[entry(2, 1, "z")]), 1));
        let c = ghost.commit_conflict.expect("conflict at i1");
        assert_eq!(
            (c.index, c.server, c.term),
            (LogIndex(1), NodeId(2), Term(2))
        );
    }

    #[test]
    fn observe_step_records_only_new_commits_in_the_servers_term() {
        let log = [entry(1, 1, "a"), entry(1, 2, "b")];
        let before = applied(server(1, 1, &log), 1);
        let after = applied(server(1, 2, &log), 2);
        let mut ghost = Ghost::new();
        ghost.observe_step(&before, &after, &Output::default());
        assert_eq!(
            ghost.committed.get(&LogIndex(1)),
            None,
            "already committed before"
        );
        assert_eq!(
            ghost.committed.get(&LogIndex(2)),
            Some(&(entry(1, 2, "b"), Term(2)))
        );
    }

    fn applied_note(index: u64, e: &Entry) -> Note {
        let output = model::OpOutput::Done;
        Note::Applied {
            index: LogIndex(index),
            command: e.command.clone(),
            output,
        }
    }

    #[test]
    fn a_second_execution_is_recorded_until_restart() {
        let e = entry(1, 1, "a");
        let s = server(2, 1, std::slice::from_ref(&e));
        let out = Output {
            notes: vec![applied_note(1, &e)],
            ..Output::default()
        };
        let mut ghost = Ghost::new();
        ghost.observe_step(&s, &s, &out);
        assert_eq!(ghost.double_execution, None);
        ghost.observe_restart(&s);
        ghost.observe_step(&s, &s, &out);
        assert_eq!(
            ghost.double_execution, None,
            "a restarted server replays from empty"
        );
        ghost.observe_step(&s, &s, &out);
        let d = ghost.double_execution.expect("executed twice");
        assert_eq!(
            (d.server, d.client, d.seq),
            (NodeId(2), ClientId(1), Seq(1))
        );
    }
}
