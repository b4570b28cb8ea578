//! Log replication: Raft §5.3 (AppendEntries, the consistency check, conflict resolution,
//! fast back-up of `next_index`) and §5.4.2 (a leader commits by counting replicas only entries
//! of its current term: Figure 8).

use crate::bug::Bug;
use crate::io::Output;
use crate::message::PeerMsg;
use crate::state::{Role, Server};
use crate::types::{Entry, LogIndex, NodeId, Term, Timer};

/// The fields of an AppendEntries request, as a handler argument.
pub(crate) struct AppendRequest {
    pub term: Term,
    pub prev_log_index: LogIndex,
    pub prev_log_term: Term,
    pub entries: im::Vector<Entry>,
    pub leader_commit: LogIndex,
}

impl Server {
    /// Figure 2, Leaders: "send AppendEntries RPCs (heartbeat) to each server; repeat during
    /// idle periods to prevent election timeouts".
    pub(crate) fn on_heartbeat_timeout(&mut self, out: &mut Output) {
        if !self.is_leader() {
            return out.ignore("heartbeat timeout while not leader");
        }
        out.set_timer(Timer::Heartbeat);
        self.broadcast_append(out);
    }

    /// Sends every peer an AppendEntries with the entries it is missing (possibly none).
    pub(crate) fn broadcast_append(&mut self, out: &mut Output) {
        for peer in self.config.peers.clone() {
            self.send_append(peer, out);
        }
    }

    /// Figure 2, Leaders: "If last log index >= nextIndex for a follower: send AppendEntries
    /// RPC with log entries starting at nextIndex", at most `max_entries_per_append` of them.
    ///
    /// Pipelining: `next_index` then moves past what was sent, so the next request sends only
    /// newer entries instead of everything not yet acknowledged. If a message is lost, the
    /// follower's rejection of a later one (or of a heartbeat) backs `next_index` up again.
    /// `match_index` still moves only on acknowledgement.
    pub(crate) fn send_append(&mut self, peer: NodeId, out: &mut Output) {
        let last_index = self.log().last_index();
        let Role::Leader(leader) = &mut self.role else { return };
        let log = &self.durable.log;
        let next = leader.next_index.get(&peer).copied().unwrap_or(log.last_index().next());
        if next.prev() < log.start_index() {
            // §7: the follower needs entries this leader has compacted away.
            let snapshot = self.durable.snapshot.clone();
            leader.next_index.insert(peer, snapshot.last_index.next());
            let term = self.durable.current_term;
            return out.send(peer, PeerMsg::InstallSnapshot { term, snapshot });
        }
        let prev_log_index = next.prev();
        let prev_log_term = log.term_at(prev_log_index).expect("next_index within the log");
        let mut entries = log.entries_from(next);
        let cap = self.config.max_entries_per_append.max(1);
        if entries.len() > cap {
            entries.truncate(cap); // im's truncate panics past the end
        }
        let sent_up_to = LogIndex(prev_log_index.0 + entries.len() as u64);
        debug_assert!(sent_up_to <= last_index);
        leader.next_index.insert(peer, sent_up_to.next());
        out.send(
            peer,
            PeerMsg::AppendEntries {
                term: self.current_term(),
                prev_log_index,
                prev_log_term,
                entries,
                leader_commit: self.commit_index,
            },
        );
    }

    /// Figure 2, AppendEntries RPC receiver implementation:
    /// 1. Reply false if term < currentTerm (§5.1).
    /// 2. Reply false if log doesn't contain an entry at prevLogIndex whose term matches
    ///    prevLogTerm (§5.3).
    /// 3. If an existing entry conflicts with a new one (same index but different terms),
    ///    delete the existing entry and all that follow it (§5.3).
    /// 4. Append any new entries not already in the log.
    /// 5. If leaderCommit > commitIndex, set commitIndex = min(leaderCommit, index of last new
    ///    entry).
    ///
    /// Entries up to the snapshot's index are committed and applied here, so they match the
    /// leader's (State Machine Safety): a request that starts inside the snapshot is checked
    /// from the snapshot's end on.
    pub(crate) fn on_append_entries(&mut self, leader: NodeId, mut req: AppendRequest, out: &mut Output) {
        let current = self.current_term();
        if req.term < current {
            let reply = reject(current, LogIndex(0));
            return out.send(leader, reply);
        }
        if !self.follow(leader, out) {
            return;
        }
        let Some(last_new) = req.prev_log_index.0.checked_add(req.entries.len() as u64) else {
            return out.ignore("AppendEntries past the largest index");
        };
        let start = self.log().start_index();
        if req.prev_log_index < start {
            let covered = usize::try_from(start.0 - req.prev_log_index.0).unwrap_or(usize::MAX);
            if covered > req.entries.len() {
                return out.send(leader, acknowledge(current, LogIndex(last_new)));
            }
            req.prev_log_term = req.entries[covered - 1].term;
            req.entries = req.entries.slice(covered..);
            req.prev_log_index = start;
        }
        let log = self.log();
        if log.term_at(req.prev_log_index) != Some(req.prev_log_term) {
            let retry_from = if req.prev_log_index > log.last_index() {
                log.last_index().next()
            } else {
                log.first_index_of_term_at(req.prev_log_index)
            };
            return out.send(leader, reject(current, retry_from));
        }
        self.merge_entries(req.prev_log_index, &req.entries, out);
        let last_new = LogIndex(last_new);
        let verified = if self.config.has_bug(Bug::CommitWithoutMatch) { self.log().last_index() } else { last_new };
        if req.leader_commit > self.commit_index {
            self.commit_index = self.commit_index.max(req.leader_commit.min(verified));
        }
        out.send(leader, acknowledge(current, last_new));
    }

    /// A request of the current term comes from that term's leader: a candidate steps down, a
    /// follower notes the leader and restarts its election timer (Figure 2, Followers and
    /// Candidates). Returns false, having ignored it, when this server leads the term itself.
    pub(crate) fn follow(&mut self, leader: NodeId, out: &mut Output) -> bool {
        match self.role {
            Role::Leader(_) => {
                out.ignore("request from another leader of my term");
                return false;
            }
            Role::Candidate { .. } => self.become_follower(self.current_term(), Some(leader), out),
            Role::Follower { .. } => {
                self.role = Role::Follower { leader: Some(leader) };
                out.set_timer(Timer::Election);
            }
        }
        true
    }

    /// Steps 3 and 4: skips entries already present with the same term, truncates only at the
    /// first real conflict, and appends the rest. A stale or duplicated request whose entries
    /// all match therefore changes nothing (it must never cut off newer entries).
    fn merge_entries(&mut self, prev_log_index: LogIndex, entries: &im::Vector<Entry>, out: &mut Output) {
        let after = LogIndex(prev_log_index.0 + entries.len() as u64).next();
        if self.config.has_bug(Bug::TruncateOnAnyAppend) && after <= self.log().last_index() {
            self.truncate_log(after, out);
        }
        let mut index = prev_log_index;
        for (k, entry) in entries.iter().enumerate() {
            index = index.next();
            match self.log().term_at(index) {
                Some(term) if term == entry.term => {}
                Some(_) => {
                    self.truncate_log(index, out);
                    return self.append_all(entries.clone().slice(k..), out);
                }
                None => return self.append_all(entries.clone().slice(k..), out),
            }
        }
    }

    fn append_all(&mut self, entries: im::Vector<Entry>, out: &mut Output) {
        for entry in entries {
            self.append_to_log(entry, out);
        }
    }

    /// The leader's side of an AppendEntries reply. On success `match_index` becomes what the
    /// reply acknowledged (never less than before, since replies can be stale or reordered).
    /// On failure `next_index` backs up to the follower's hint, but never to or below what is
    /// known to match; the leader then retries at once.
    pub(crate) fn on_append_reply(
        &mut self,
        peer: NodeId,
        term: Term,
        success: bool,
        match_index: LogIndex,
        conflict_index: LogIndex,
        out: &mut Output,
    ) {
        if term < self.current_term() {
            return out.ignore("append reply from an older term");
        }
        let last_index = self.log().last_index();
        let Role::Leader(leader) = &mut self.role else {
            return out.ignore("append reply while not leader");
        };
        if match_index > last_index {
            return out.ignore("append reply acknowledging entries the leader never sent");
        }
        let matched = leader.match_index.get(&peer).copied().unwrap_or_default();
        let next = leader.next_index.get(&peer).copied().unwrap_or(last_index.next());
        if success {
            let acknowledged = if self.config.has_bug(Bug::MatchFromNextIndex) { next.prev() } else { match_index };
            let matched = matched.max(acknowledged);
            leader.match_index.insert(peer, matched);
            leader.next_index.insert(peer, next.max(matched.next()));
            self.maybe_advance_commit();
            if next.max(matched.next()) <= last_index {
                self.send_append(peer, out); // entries left out by the size cap
            }
        } else {
            let backed_up = next.min(conflict_index).max(matched.next());
            if backed_up < next {
                leader.next_index.insert(peer, backed_up);
                self.send_append(peer, out);
            }
        }
    }

    /// Figure 2, Leaders: "If there exists an N such that N > commitIndex, a majority of
    /// matchIndex[i] >= N, and log[N].term == currentTerm: set commitIndex = N" (§5.3, §5.4).
    /// Entries of earlier terms are committed only indirectly, by the Log Matching property
    /// (§5.4.2, Figure 8).
    pub(crate) fn maybe_advance_commit(&mut self) {
        let Role::Leader(leader) = &self.role else { return };
        let log = self.log();
        let term = self.current_term();
        let mut n = log.last_index();
        let any_term = self.config.has_bug(Bug::CommitOldTermByCount);
        while n > self.commit_index && (any_term || log.term_at(n) == Some(term)) {
            let replicas = 1 + leader.match_index.values().filter(|&&m| m >= n).count();
            if replicas >= self.config.quorum() {
                self.commit_index = n;
                return;
            }
            n = n.prev();
        }
    }
}

/// A failed AppendEntries (or InstallSnapshot) reply: retry from `retry_from`.
pub(crate) fn reject(term: Term, retry_from: LogIndex) -> PeerMsg {
    PeerMsg::AppendReply { term, success: false, match_index: LogIndex(0), conflict_index: retry_from }
}

/// A successful reply: the follower's log matches the leader's through `match_index`.
pub(crate) fn acknowledge(term: Term, match_index: LogIndex) -> PeerMsg {
    PeerMsg::AppendReply { term, success: true, match_index, conflict_index: LogIndex(0) }
}
