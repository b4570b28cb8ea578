//! The ghost record: what the checks need to remember that the servers' current states alone
//! cannot show — who led each term, what was ever committed (and from which term), and at
//! which log index each command was executed.
//!
//! Whoever drives the servers (model checker, simulator, test) feeds it: `observe_server` for
//! states that appear without a step (initial states), `observe_step` after every step, and
//! `observe_restart` after a crash and restore. It is hashed into every explored state, so it
//! keeps only persistent `im` collections and the *first* violation of each kind.

use model::{ClientId, DurableChange, Entry, Log, LogIndex, NodeId, Note, Output, Seq, Server, Term};
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

/// A (client, seq) was executed at two different log indices (at-most-once, Raft §8): the
/// command took effect twice in the replicated state machine.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DoubleExecution {
    pub client: ClientId,
    pub seq: Seq,
    /// Where it was first executed.
    pub first: LogIndex,
    /// Where it was executed again, and by which server.
    pub second: LogIndex,
    pub server: NodeId,
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
    /// For each (client, seq) any server's state machine executed: the log index where (no
    /// server: which one ran it first is not worth telling states apart). Servers apply the same committed log, so a correct
    /// cluster executes a command at one index only, whether a server applies it once, again
    /// after a restart, or receives it inside a snapshot.
    pub executed: im::OrdMap<(ClientId, Seq), LogIndex>,
    /// The first time a (client, seq) was executed at a second index.
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
        self.observe_commits(s, s.log(), LogIndex(0));
    }

    /// Records one step of one server: `before` and `after` are its states around the step and
    /// `out` is what the step returned (its `Note::Applied` notes are the executions).
    ///
    /// When the server took a snapshot in this step, commits are read from the log as it stood
    /// before the compaction (`before`'s log with the step's other durable changes replayed),
    /// so that entries committed, applied and compacted in one step are still seen. (A
    /// snapshot *installed* from a leader is not read that way: the entries it covers were
    /// committed elsewhere, and the follower's own entries there may have been different.)
    pub fn observe_step(&mut self, before: &Server, after: &Server, out: &Output) {
        self.observe_leadership(after);
        let taken = out.notes.iter().any(|n| matches!(n, Note::SnapshotTaken { .. }));
        if taken {
            let mut durable = before.durable.clone();
            let uncompacted = out
                .persist
                .iter()
                .filter(|c| !matches!(c, DurableChange::Snapshot(_)))
                .try_for_each(|c| durable.apply(c));
            let log = if uncompacted.is_ok() { &durable.log } else { after.log() };
            self.observe_commits(after, log, before.commit_index);
        } else {
            self.observe_commits(after, after.log(), before.commit_index);
        }
        for note in &out.notes {
            if let Note::Applied { index, command, .. } = note {
                self.observe_execution(after.id(), *index, command.client, command.seq);
            }
        }
    }

    /// Records a crash and restore of `restored.id()`. Its state machine starts again from its
    /// snapshot and re-executes the entries after it, at the same indices as before.
    pub fn observe_restart(&mut self, restored: &Server) {
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
                self.double_leader = Some(DoubleLeader { term, first, second: s.id() });
            }
            Some(_) => {}
        }
    }

    /// Records the entries of `log` (`s`'s) that `s` has committed above index `above`.
    fn observe_commits(&mut self, s: &Server, log: &Log, above: LogIndex) {
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
                    self.commit_conflict = Some(CommitConflict { index, first, second, server, term });
                }
            }
        }
    }

    fn observe_execution(&mut self, server: NodeId, index: LogIndex, client: ClientId, seq: Seq) {
        match self.executed.get(&(client, seq)).copied() {
            None => {
                self.executed.insert((client, seq), index);
            }
            Some(first) if first != index && self.double_execution.is_none() => {
                self.double_execution = Some(DoubleExecution { client, seq, first, second: index, server });
            }
            Some(_) => {}
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
        assert_eq!(ghost.committed.get(&LogIndex(1)), Some(&(entry(1, 1, "a"), Term(3))));
        assert_eq!(ghost.committed.get(&LogIndex(2)), Some(&(entry(1, 2, "b"), Term(5))));
        assert_eq!(ghost.commit_conflict, None);
    }

    #[test]
    fn a_different_entry_committed_at_an_index_is_a_conflict() {
        let mut ghost = Ghost::new();
        ghost.observe_server(&applied(server(1, 1, &[entry(1, 1, "a")]), 1));
        ghost.observe_server(&applied(server(2, 2, &[entry(2, 1, "z")]), 1));
        let c = ghost.commit_conflict.expect("conflict at i1");
        assert_eq!((c.index, c.server, c.term), (LogIndex(1), NodeId(2), Term(2)));
    }

    #[test]
    fn observe_step_records_only_new_commits_in_the_servers_term() {
        let log = [entry(1, 1, "a"), entry(1, 2, "b")];
        let before = applied(server(1, 1, &log), 1);
        let after = applied(server(1, 2, &log), 2);
        let mut ghost = Ghost::new();
        ghost.observe_step(&before, &after, &Output::default());
        assert_eq!(ghost.committed.get(&LogIndex(1)), None, "already committed before");
        assert_eq!(ghost.committed.get(&LogIndex(2)), Some(&(entry(1, 2, "b"), Term(2))));
    }

    fn applied_note(index: u64, e: &Entry) -> Note {
        let output = model::OpOutput::Done;
        Note::Applied { index: LogIndex(index), command: e.command.clone(), output }
    }

    #[test]
    fn re_executing_at_the_same_index_is_fine_at_another_is_not() {
        let e = entry(1, 1, "a");
        let s = server(2, 1, std::slice::from_ref(&e));
        let at = |index| Output { notes: vec![applied_note(index, &e)], ..Output::default() };
        let mut ghost = Ghost::new();
        ghost.observe_step(&s, &s, &at(1));
        ghost.observe_restart(&s);
        ghost.observe_step(&s, &s, &at(1));
        let other = server(3, 1, std::slice::from_ref(&e));
        ghost.observe_step(&other, &other, &at(1));
        assert_eq!(ghost.double_execution, None, "a restart or another server replays i1");
        ghost.observe_step(&other, &other, &at(2));
        let d = ghost.double_execution.expect("executed at i1 and i2");
        assert_eq!((d.client, d.seq), (ClientId(1), Seq(1)));
        assert_eq!((d.first, d.second, d.server), (LogIndex(1), LogIndex(2), NodeId(3)));
    }

    #[test]
    fn commits_compacted_within_the_step_are_seen() {
        let log = [entry(1, 1, "a")];
        let before = server(1, 1, &log);
        let mut after = applied(server(1, 1, &log), 1);
        let snapshot = model::Snapshot { last_index: LogIndex(1), last_term: Term(1), state: after.kv.clone() };
        after.durable.log.compact_to(LogIndex(1));
        after.durable.snapshot = snapshot.clone();
        let out = Output {
            persist: vec![DurableChange::Snapshot(snapshot)],
            notes: vec![Note::SnapshotTaken { index: LogIndex(1) }],
            ..Output::default()
        };
        let mut ghost = Ghost::new();
        ghost.observe_step(&before, &after, &out);
        assert_eq!(ghost.committed.get(&LogIndex(1)), Some(&(log[0].clone(), Term(1))));
    }
}
