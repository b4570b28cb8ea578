//! The one entry point: `step(server, input) -> (server, output)`, a flat dispatcher over the
//! handlers in `election`, `replication` and `client`; plus `restore`, the only way a server
//! starts, and the role transitions and durable-state mutations every handler shares.
//!
//! Rules enforced here: "If RPC request or response contains term T > currentTerm: set
//! currentTerm = T, convert to follower" (Figure 2, Rules for Servers, §5.1), and the
//! persistence rule that every change to `current_term`, `voted_for` or the log is reported in
//! `Output::persist` (Figure 2: "updated on stable storage before responding to RPCs").

use crate::bug::Bug;
use crate::io::{Input, Note, Output};
use crate::message::{ClientReply, ClientResult, PeerMsg};
use crate::state::{Config, Durable, DurableChange, Role, Server};
use crate::types::{Entry, LogIndex, NodeId, Term, Timer};

/// Advances `server` by one input. Pure: the same arguments always give the same result.
#[must_use]
pub fn step(server: &Server, input: Input) -> (Server, Output) {
    let mut next = server.clone();
    let out = step_in_place(&mut next, input);
    (next, out)
}

/// [`step`] on a server the caller owns: the same transition, made in place. A runtime that
/// keeps one state and drops the old one uses this: the `im` collections are then uniquely
/// owned, so appending to the log or the key/value map updates them in place instead of
/// copying the chunk that the old state would still share.
pub fn step_in_place(server: &mut Server, input: Input) -> Output {
    #[cfg(debug_assertions)]
    let before = server.durable.clone();
    let mut out = Output::default();
    match input {
        Input::Receive { from, msg } => server.on_message(from, msg, &mut out),
        Input::Client(request) => server.on_client_request(request, &mut out),
        Input::Timeout(Timer::Election) => server.on_election_timeout(&mut out),
        Input::Timeout(Timer::Heartbeat) => server.on_heartbeat_timeout(&mut out),
    }
    server.maybe_apply(&mut out);
    server.maybe_snapshot(&mut out);
    #[cfg(debug_assertions)]
    debug_assert!(
        replays_to(&before, &out.persist, &server.durable),
        "{}: persisted changes do not replay to the new durable state:\n{out}",
        server.id()
    );
    out
}

/// Whether replaying `changes` onto `before` gives `after` (the persistence contract). Only
/// what the changes can touch is compared: term and vote, the snapshot when one is among the
/// changes, the log's bounds and size, and its entries from the first index a change wrote
/// (so the check costs what the step changed, not the length of the log).
#[cfg(debug_assertions)]
fn replays_to(before: &Durable, changes: &[DurableChange], after: &Durable) -> bool {
    let mut d = before.clone();
    if changes.iter().try_for_each(|c| d.apply(c)).is_err() {
        return false;
    }
    let (x, y) = (&d.log, &after.log);
    let bounds = (x.start_index(), x.start_term(), x.last_index(), x.bytes())
        == (y.start_index(), y.start_term(), y.last_index(), y.bytes());
    let snapshot_changed = changes.iter().any(|c| matches!(c, DurableChange::Snapshot(_)));
    let first_written = changes
        .iter()
        .filter_map(|c| match c {
            DurableChange::Truncate { from } => Some(*from),
            DurableChange::Append { first, .. } => Some(*first),
            DurableChange::TermAndVote { .. } | DurableChange::Snapshot(_) => None,
        })
        .min()
        .map_or(x.last_index().next(), |i| i.max(x.first_index()));
    (d.current_term, d.voted_for) == (after.current_term, after.voted_for)
        && bounds
        && (!snapshot_changed || d.snapshot == after.snapshot)
        && (d.snapshot.last_index, d.snapshot.last_term) == (after.snapshot.last_index, after.snapshot.last_term)
        && (first_written > x.last_index() || x.entries_from(first_written) == y.entries_from(first_written))
}

impl Server {
    /// Starts a server from what it persisted (a fresh server from `Durable::default()`),
    /// as a follower that knows no leader. The state machine starts from the snapshot, which
    /// is committed and applied by definition; the rest of the volatile state starts empty
    /// (Figure 2: "initialized to 0 on first boot"; "reinitialized after election"), so the
    /// entries after the snapshot are applied again once a leader shows they are committed.
    /// The output arms the election timer.
    #[must_use]
    pub fn restore(config: Config, mut durable: Durable) -> (Server, Output) {
        if config.has_bug(Bug::ForgetVoteOnRestart) {
            durable.voted_for = None;
        }
        let applied = durable.snapshot.last_index;
        let kv = durable.snapshot.state.clone();
        let server = Server {
            config,
            durable,
            commit_index: applied,
            last_applied: applied,
            role: Role::Follower { leader: None },
            kv,
            pending: im::OrdMap::new(),
        };
        let mut out = Output::default();
        out.set_timer(Timer::Election);
        (server, out)
    }

    fn on_message(&mut self, from: NodeId, msg: PeerMsg, out: &mut Output) {
        if !self.config.is_peer(from) {
            return out.ignore("message from a server outside the cluster");
        }
        if msg.term() > self.current_term() {
            // Only an AppendEntries or InstallSnapshot proves who leads the new term.
            let from_leader = matches!(msg, PeerMsg::AppendEntries { .. } | PeerMsg::InstallSnapshot { .. });
            let leader = from_leader.then_some(from);
            self.become_follower(msg.term(), leader, out);
        }
        match msg {
            PeerMsg::RequestVote { term, last_log_index, last_log_term } => {
                self.on_request_vote(from, term, last_log_index, last_log_term, out);
            }
            PeerMsg::VoteReply { term, granted } => self.on_vote_reply(from, term, granted, out),
            PeerMsg::AppendEntries { term, prev_log_index, prev_log_term, entries, leader_commit } => {
                let request =
                    crate::replication::AppendRequest { term, prev_log_index, prev_log_term, entries, leader_commit };
                self.on_append_entries(from, request, out);
            }
            PeerMsg::AppendReply { term, success, match_index, conflict_index } => {
                self.on_append_reply(from, term, success, match_index, conflict_index, out);
            }
            PeerMsg::InstallSnapshot { term, snapshot } => {
                self.on_install_snapshot(from, term, snapshot, out);
            }
        }
    }

    /// Becomes a follower of `term` (which must not be older than the current one), believing
    /// in `leader`. A leader that steps down fails every request it was waiting on, so the
    /// clerks retry elsewhere.
    pub(crate) fn become_follower(&mut self, term: Term, leader: Option<NodeId>, out: &mut Output) {
        debug_assert!(term >= self.current_term());
        if term > self.current_term() {
            self.set_term_and_vote(term, None, out);
        }
        if self.is_leader() {
            if !self.config.has_bug(Bug::ReplyByIndexOnly) {
                for (index, pending) in std::mem::take(&mut self.pending) {
                    let (client, seq) = (pending.client, pending.seq);
                    out.reply(ClientReply { client, seq, result: ClientResult::WrongLeader { hint: leader } });
                    out.note(Note::RequestFailed { client, seq, index });
                }
            }
            out.cancel_timer(Timer::Heartbeat);
        }
        self.role = Role::Follower { leader };
        out.set_timer(Timer::Election);
        out.note(Note::BecameFollower { term });
    }

    /// Sets and reports `current_term` and `voted_for`.
    pub(crate) fn set_term_and_vote(&mut self, term: Term, vote: Option<NodeId>, out: &mut Output) {
        self.durable.current_term = term;
        self.durable.voted_for = vote;
        out.persist(DurableChange::TermAndVote { current_term: term, voted_for: vote });
    }

    /// Appends one entry to the log, reports it, and returns its index.
    pub(crate) fn append_to_log(&mut self, entry: Entry, out: &mut Output) -> LogIndex {
        let index = self.durable.log.push(entry.clone());
        match out.persist.last_mut() {
            Some(DurableChange::Append { first, entries }) if first.0 + entries.len() as u64 == index.0 => {
                entries.push_back(entry);
            }
            _ => out.persist(DurableChange::Append { first: index, entries: im::Vector::unit(entry) }),
        }
        index
    }

    /// Removes the log entries at `from` and after, and reports it.
    pub(crate) fn truncate_log(&mut self, from: LogIndex, out: &mut Output) {
        self.durable.log.truncate_from(from);
        out.persist(DurableChange::Truncate { from });
    }
}
