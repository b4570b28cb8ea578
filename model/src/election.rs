//! Leader election: Raft §5.2 (timeouts, candidates, votes, one vote per term) and §5.4.1 (the
//! election restriction: vote only for a candidate whose log is at least as up-to-date).
//!
//! Randomised timeouts are the environment's business: here an election timeout is an input.

use crate::bug::Bug;
use crate::io::{Note, Output};
use crate::message::PeerMsg;
use crate::state::{LeaderState, Role, Server};
use crate::types::{LogIndex, NodeId, Term, Timer};

impl Server {
    /// Figure 2, Rules for Servers, Followers: "If election timeout elapses without receiving
    /// AppendEntries RPC from current leader or granting vote to candidate: convert to
    /// candidate". Candidates: "If election timeout elapses: start new election".
    pub(crate) fn on_election_timeout(&mut self, out: &mut Output) {
        if self.is_leader() {
            return out.ignore("election timeout while leader");
        }
        self.become_candidate(out);
    }

    /// Figure 2, Candidates: increment currentTerm, vote for self, reset election timer, send
    /// RequestVote RPCs to all other servers.
    fn become_candidate(&mut self, out: &mut Output) {
        let term = self.current_term().next();
        self.set_term_and_vote(term, Some(self.id()), out);
        self.role = Role::Candidate { votes: im::OrdSet::unit(self.id()) };
        out.set_timer(Timer::Election);
        out.note(Note::BecameCandidate { term });
        let request = PeerMsg::RequestVote {
            term,
            last_log_index: self.log().last_index(),
            last_log_term: self.log().last_term(),
        };
        for &peer in &self.config.peers {
            out.send(peer, request.clone());
        }
        self.maybe_win_election(out);
    }

    /// Figure 2, RequestVote RPC receiver implementation:
    /// 1. Reply false if term < currentTerm (§5.1).
    /// 2. If votedFor is null or candidateId, and candidate's log is at least as up-to-date as
    ///    receiver's log, grant vote (§5.2, §5.4).
    ///
    /// A granted vote is persisted (it is in `voted_for`) before the reply leaves, and resets
    /// the election timer.
    pub(crate) fn on_request_vote(
        &mut self,
        candidate: NodeId,
        term: Term,
        last_log_index: LogIndex,
        last_log_term: Term,
        out: &mut Output,
    ) {
        let current = self.current_term();
        let up_to_date = if self.config.has_bug(Bug::VoteCompareIndexOnly) {
            last_log_index >= self.log().last_index()
        } else {
            self.log().is_up_to_date(last_log_index, last_log_term)
        };
        let granted = term == current
            && self.durable.voted_for.is_none_or(|v| v == candidate)
            && (up_to_date || self.config.has_bug(Bug::VoteIgnoresLog));
        if granted {
            if self.durable.voted_for.is_none() {
                self.set_term_and_vote(current, Some(candidate), out);
            }
            out.set_timer(Timer::Election);
        }
        out.send(candidate, PeerMsg::VoteReply { term: current, granted });
    }

    /// Figure 2, Candidates: "If votes received from majority of servers: become leader".
    /// Votes are a set, so a duplicated reply counts once.
    pub(crate) fn on_vote_reply(&mut self, voter: NodeId, term: Term, granted: bool, out: &mut Output) {
        if term < self.current_term() {
            return out.ignore("vote reply from an older term");
        }
        let Role::Candidate { votes } = &mut self.role else {
            return out.ignore("vote reply while not a candidate");
        };
        if granted {
            let again = votes.insert(voter).is_some();
            if again && self.config.has_bug(Bug::CountDuplicateVotes) {
                // a phantom voter stands for the second count
                votes.insert(NodeId(u32::MAX - u32::try_from(votes.len()).unwrap_or(0)));
            }
            self.maybe_win_election(out);
        }
    }

    fn maybe_win_election(&mut self, out: &mut Output) {
        if let Role::Candidate { votes } = &self.role {
            if votes.len() >= self.config.quorum() {
                self.become_leader(out);
            }
        }
    }

    /// Figure 2, Leaders: "Upon election: send initial empty AppendEntries RPCs (heartbeat) to
    /// each server". `next_index` starts after the leader's last entry, `match_index` at 0.
    fn become_leader(&mut self, out: &mut Output) {
        let next = self.log().last_index().next();
        let peers = &self.config.peers;
        self.role = Role::Leader(LeaderState {
            next_index: peers.iter().map(|&p| (p, next)).collect(),
            match_index: peers.iter().map(|&p| (p, LogIndex(0))).collect(),
        });
        out.cancel_timer(Timer::Election);
        out.set_timer(Timer::Heartbeat);
        out.note(Note::BecameLeader { term: self.current_term() });
        self.broadcast_append(out);
    }
}
