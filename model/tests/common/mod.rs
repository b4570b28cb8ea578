//! Builders for the Figure-2 and session unit tests (`tests/figure2.rs`,
//! `tests/figure2_receivers.rs`, `tests/sessions.rs`).
//!
//! Every server is made the way a real one is: `Server::restore` from a `Durable` (a term, a
//! vote and a log built with `Log::push`), then driven into its role by `model::step`. Server 1
//! is always the server under test; its cluster is servers `1..=size`.
//!
//! Filler log entries are deterministic: `entry(i, t)` is the entry a test puts at index `i`
//! in term `t`, a `put k{i} v{i}` from its own client, so that applying any filler log
//! executes every entry once.

use model::{
    step, ClientId, ClientReply, ClientResult, Command, Config, Durable, DurableChange, Entry, Input, LeaderState, Log,
    LogIndex, NodeId, Op, OpOutput, Output, PeerMsg, Role, Seq, Server, Term, Timer, TimerCommand,
};

/// The four effect vectors of an output (`persist`, `send`, `reply`, `timers`), so that one
/// `assert_eq!` compares all of them whole. Notes are checked separately, and more loosely.
pub type Effects = (Vec<DurableChange>, Vec<(NodeId, PeerMsg)>, Vec<ClientReply>, Vec<TimerCommand>);

pub fn effects(out: &Output) -> Effects {
    (out.persist.clone(), out.send.clone(), out.reply.clone(), out.timers.clone())
}

/// No persist, no send, no reply, no timer.
pub fn no_effects() -> Effects {
    Effects::default()
}

pub fn n(id: u32) -> NodeId {
    NodeId(id)
}

/// Server 1's configuration in a cluster of servers `1..=size`.
pub fn cluster(size: u32) -> Config {
    let members: Vec<NodeId> = (1..=size).map(NodeId).collect();
    Config::new(NodeId(1), &members)
}

// ---------------------------------------------------------------------------------------------
// Entries and logs

/// The filler entry at `index` in `term`: client `1000 + index`, seq 1, `put k{index} v{index}`.
pub fn entry(index: u64, term: u64) -> Entry {
    command_entry(term, 1000 + index, 1, put_op(&format!("k{index}"), &format!("v{index}")))
}

/// An entry carrying a specific client command.
pub fn command_entry(term: u64, client: u64, seq: u64, op: Op) -> Entry {
    Entry { term: Term(term), command: Command { client: ClientId(client), seq: Seq(seq), op } }
}

/// A log of filler entries whose terms are `terms` (index 1 first).
pub fn log_of(terms: &[u64]) -> Log {
    let entries: Vec<Entry> = (1..).zip(terms).map(|(i, &t)| entry(i, t)).collect();
    log_from(&entries)
}

/// A log holding exactly `entries`, the first at index 1.
pub fn log_from(entries: &[Entry]) -> Log {
    let mut log = Log::new();
    for e in entries {
        log.push(e.clone());
    }
    log
}

pub fn durable(term: u64, voted_for: Option<u32>, log: Log) -> Durable {
    Durable { current_term: Term(term), voted_for: voted_for.map(NodeId), log, ..Durable::default() }
}

// ---------------------------------------------------------------------------------------------
// Servers in a role

/// A freshly restored server 1 of a 3-server cluster (a follower that knows no leader).
pub fn restored(term: u64, voted_for: Option<u32>, log: Log) -> Server {
    Server::restore(cluster(3), durable(term, voted_for, log)).0
}

/// A freshly restored follower with a filler log of `log_terms`.
pub fn follower(term: u64, voted_for: Option<u32>, log_terms: &[u64]) -> Server {
    restored(term, voted_for, log_of(log_terms))
}

/// A follower of `term` that has heard a heartbeat from `leader` (so it knows the leader).
/// It has not voted in `term`.
pub fn follower_of(leader: u32, term: u64, log_terms: &[u64]) -> Server {
    let s = follower(term, None, log_terms);
    let (last_index, last_term) = (s.log().last_index().0, s.log().last_term().0);
    let (s, _) = step(&s, recv(leader, append(term, last_index, last_term, &[], 0)));
    assert_eq!(s.role, Role::Follower { leader: Some(NodeId(leader)) });
    s
}

/// Server 1 of a `size`-server cluster, a candidate in `term` (from `term - 1` by an
/// election timeout), holding only its own vote.
pub fn candidate(size: u32, term: u64, log_terms: &[u64]) -> Server {
    assert!(term >= 1 && size >= 2);
    let (s, _) = Server::restore(cluster(size), durable(term - 1, None, log_of(log_terms)));
    let (s, _) = step(&s, Input::Timeout(Timer::Election));
    assert_eq!(s.role, votes(&[1]));
    s
}

/// Server 1 of a `size`-server cluster, leader of `term` with votes from servers
/// `2..=quorum`. Its log is the filler log of `log_terms`, none of it committed yet.
pub fn leader(size: u32, term: u64, log_terms: &[u64]) -> Server {
    let mut s = candidate(size, term, log_terms);
    let quorum = u32::try_from(s.config.quorum()).expect("small cluster");
    for voter in 2..=quorum {
        s = step(&s, recv(voter, vote(term, true))).0;
    }
    assert!(s.is_leader());
    s
}

/// Leader of `term` in a 3-server cluster.
pub fn leader_of_term(term: u64, log_terms: &[u64]) -> Server {
    leader(3, term, log_terms)
}

/// Feeds `inputs` to `s` one by one, dropping the outputs.
pub fn drive(s: &Server, inputs: Vec<Input>) -> Server {
    inputs.into_iter().fold(s.clone(), |s, input| step(&s, input).0)
}

/// The leader bookkeeping of `s`, which must be leader.
pub fn leader_state(s: &Server) -> &LeaderState {
    match &s.role {
        Role::Leader(state) => state,
        other => panic!("expected a leader, found {other:?}"),
    }
}

/// A candidate role holding the votes of `voters`.
pub fn votes(voters: &[u32]) -> Role {
    Role::Candidate { votes: voters.iter().copied().map(NodeId).collect() }
}

/// A `next_index` / `match_index` map from `(peer, index)` pairs.
pub fn index_map(pairs: &[(u32, u64)]) -> im::OrdMap<NodeId, LogIndex> {
    pairs.iter().map(|&(p, i)| (NodeId(p), LogIndex(i))).collect()
}

// ---------------------------------------------------------------------------------------------
// Inputs and messages

pub fn recv(from: u32, msg: PeerMsg) -> Input {
    Input::Receive { from: NodeId(from), msg }
}

pub fn timeout(timer: Timer) -> Input {
    Input::Timeout(timer)
}

pub fn client(client: u64, seq: u64, op: Op) -> Input {
    Input::Client(model::ClientRequest { client: ClientId(client), seq: Seq(seq), op })
}

/// An AppendEntries of `term` after `(prev_index, prev_term)`, carrying `entries`.
pub fn append(term: u64, prev_index: u64, prev_term: u64, entries: &[Entry], commit: u64) -> PeerMsg {
    PeerMsg::AppendEntries {
        term: Term(term),
        prev_log_index: LogIndex(prev_index),
        prev_log_term: Term(prev_term),
        entries: entries.iter().cloned().collect(),
        leader_commit: LogIndex(commit),
    }
}

pub fn append_ok(term: u64, match_index: u64) -> PeerMsg {
    PeerMsg::AppendReply {
        term: Term(term),
        success: true,
        match_index: LogIndex(match_index),
        conflict_index: LogIndex(0),
    }
}

pub fn append_reject(term: u64, conflict_index: u64) -> PeerMsg {
    PeerMsg::AppendReply {
        term: Term(term),
        success: false,
        match_index: LogIndex(0),
        conflict_index: LogIndex(conflict_index),
    }
}

pub fn vote_request(term: u64, last_index: u64, last_term: u64) -> PeerMsg {
    PeerMsg::RequestVote { term: Term(term), last_log_index: LogIndex(last_index), last_log_term: Term(last_term) }
}

pub fn vote(term: u64, granted: bool) -> PeerMsg {
    PeerMsg::VoteReply { term: Term(term), granted }
}

/// `msg` addressed to each of `peers`, in order.
pub fn to_each(peers: &[u32], msg: &PeerMsg) -> Vec<(NodeId, PeerMsg)> {
    peers.iter().map(|&p| (NodeId(p), msg.clone())).collect()
}

// ---------------------------------------------------------------------------------------------
// Operations, replies, durable changes, timers

pub fn put_op(key: &str, value: &str) -> Op {
    Op::Put { key: key.to_string(), value: value.to_string() }
}

pub fn append_op(key: &str, value: &str) -> Op {
    Op::Append { key: key.to_string(), value: value.to_string() }
}

pub fn get_op(key: &str) -> Op {
    Op::Get { key: key.to_string() }
}

pub fn value(v: &str) -> OpOutput {
    OpOutput::Value(v.to_string())
}

pub fn reply(client: u64, seq: u64, result: ClientResult) -> ClientReply {
    ClientReply { client: ClientId(client), seq: Seq(seq), result }
}

pub fn ok(client: u64, seq: u64, output: OpOutput) -> ClientReply {
    reply(client, seq, ClientResult::Ok(output))
}

pub fn wrong_leader(client: u64, seq: u64, hint: Option<u32>) -> ClientReply {
    reply(client, seq, ClientResult::WrongLeader { hint: hint.map(NodeId) })
}

pub fn term_and_vote(term: u64, voted_for: Option<u32>) -> DurableChange {
    DurableChange::TermAndVote { current_term: Term(term), voted_for: voted_for.map(NodeId) }
}

pub fn appended(first: u64, entries: &[Entry]) -> DurableChange {
    DurableChange::Append { first: LogIndex(first), entries: entries.iter().cloned().collect() }
}

pub fn truncated(from: u64) -> DurableChange {
    DurableChange::Truncate { from: LogIndex(from) }
}

pub fn set(timer: Timer) -> TimerCommand {
    TimerCommand::Set(timer)
}

pub fn cancel(timer: Timer) -> TimerCommand {
    TimerCommand::Cancel(timer)
}
