//! Log compaction (Raft §7, Figure 13): taking a snapshot once the durable Raft state reaches
//! `max_raft_state`, and installing a leader's snapshot on a follower that needs entries the
//! leader no longer holds. (The leader's side, choosing InstallSnapshot over AppendEntries,
//! is in `replication::send_append`.)

use crate::bug::Bug;
use crate::io::{Note, Output};
use crate::replication::{acknowledge, reject};
use crate::snapshot::Snapshot;
use crate::state::{DurableChange, Server};
use crate::types::{NodeId, Term};

impl Server {
    /// §7: "each server takes snapshots independently, covering just the committed entries in
    /// its log". When the durable Raft state has reached `max_raft_state`, the state machine
    /// at `last_applied` (map and duplicate table) becomes the snapshot and the log prefix it
    /// covers is dropped. Never waits for slow followers: they get the snapshot instead.
    pub(crate) fn maybe_snapshot(&mut self, out: &mut Output) {
        let Some(limit) = self.config.max_raft_state else { return };
        let index = self.last_applied;
        if self.durable.raft_state_size() < limit || index <= self.log().start_index() {
            return;
        }
        let last_term = self.log().term_at(index).expect("applied entries past the snapshot are held");
        let mut state = self.kv.clone();
        if self.config.has_bug(Bug::SnapshotWithoutSessions) {
            state.sessions.clear();
        }
        let snapshot = Snapshot { last_index: index, last_term, state };
        self.durable.install_snapshot(snapshot.clone());
        out.persist(DurableChange::Snapshot(snapshot));
        out.note(Note::SnapshotTaken { index });
    }

    /// Figure 13, InstallSnapshot RPC receiver implementation (the whole snapshot in one
    /// message, so steps 2-5 about chunks do not arise):
    /// 1. Reply immediately if term < currentTerm.
    /// 6. If an existing log entry has the same index and term as the snapshot's last
    ///    included entry, retain log entries following it and reply.
    /// 7. Discard the entire log.
    /// 8. Reset the state machine using snapshot contents.
    ///
    /// A snapshot that covers no more than this server has applied is not installed (that
    /// would roll the state machine back); it is acknowledged, since the committed prefix it
    /// covers is in this server's log or snapshot already.
    pub(crate) fn on_install_snapshot(&mut self, leader: NodeId, term: Term, snapshot: Snapshot, out: &mut Output) {
        let current = self.current_term();
        if term < current {
            return out.send(leader, reject(current, crate::types::LogIndex(0)));
        }
        if !self.follow(leader, out) {
            return;
        }
        let index = snapshot.last_index;
        if index <= self.last_applied && !self.config.has_bug(Bug::AcceptStaleSnapshot) {
            out.ignore("snapshot not newer than the applied state");
            return out.send(leader, acknowledge(current, index));
        }
        let log = self.log();
        let suffix_conflicts = log.last_index() > index && log.term_at(index) != Some(snapshot.last_term);
        if suffix_conflicts && !self.config.has_bug(Bug::TruncateWrongSuffix) {
            self.truncate_log(log.first_index(), out);
        }
        self.kv = snapshot.state.clone();
        self.durable.install_snapshot(snapshot.clone());
        out.persist(DurableChange::Snapshot(snapshot));
        self.last_applied = index;
        self.commit_index = self.commit_index.max(index).min(self.log().last_index());
        out.note(Note::SnapshotInstalled { index });
        out.send(leader, acknowledge(current, index));
    }
}
