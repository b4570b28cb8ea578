//! Hand-built servers and operations for the unit tests.

use model::{
    ClientId, Command, Config, Durable, Entry, KvState, LeaderState, Log, LogIndex, NodeId, Op, Role, Seq, Server, Term,
};

pub(crate) const MEMBERS: [NodeId; 3] = [NodeId(1), NodeId(2), NodeId(3)];

pub(crate) fn get(key: &str) -> Op {
    Op::Get { key: key.to_string() }
}

pub(crate) fn put(key: &str, value: &str) -> Op {
    Op::Put { key: key.to_string(), value: value.to_string() }
}

pub(crate) fn append(key: &str, value: &str) -> Op {
    Op::Append { key: key.to_string(), value: value.to_string() }
}

pub(crate) fn cmd(client: u64, seq: u64, op: Op) -> Command {
    Command { client: ClientId(client), seq: Seq(seq), op }
}

/// An entry of `term` appending `value` to key "x" as client 1 with seq `seq`.
pub(crate) fn entry(term: u64, seq: u64, value: &str) -> Entry {
    Entry { term: Term(term), command: cmd(1, seq, append("x", value)) }
}

/// Server `id` of a 3-server cluster, a follower in `term` holding `log`, nothing committed.
pub(crate) fn server(id: u32, term: u64, log: &[Entry]) -> Server {
    let mut durable = Durable { current_term: Term(term), voted_for: None, log: Log::new(), ..Durable::default() };
    for e in log {
        durable.log.push(e.clone());
    }
    Server::restore(Config::new(NodeId(id), &MEMBERS), durable).0
}

/// `s` with its first `n` entries committed and applied (the state machine computed by the
/// model's own `KvState`, so valid fixtures also cross-check it against `KvSpec`).
pub(crate) fn applied(mut s: Server, n: u64) -> Server {
    s.commit_index = LogIndex(n);
    s.last_applied = LogIndex(n);
    s.kv = KvState::new();
    for (_, e) in s.durable.log.iter().take_while(|(i, _)| i.0 <= n) {
        s.kv.apply(&e.command);
    }
    s
}

/// `s` as leader of its current term.
pub(crate) fn leader(mut s: Server) -> Server {
    let next = s.log().last_index().next();
    let peers = s.config.peers.clone();
    s.role = Role::Leader(LeaderState {
        next_index: peers.iter().map(|&p| (p, next)).collect(),
        match_index: peers.iter().map(|&p| (p, LogIndex(0))).collect(),
    });
    s
}
