//! Messages that can never matter, removed from the network as soon as they are dead.
//!
//! A message its receiver will ignore whenever it arrives changes nothing by being delivered,
//! so removing it loses no behaviour, and states that differ only in such messages coincide.
//! The checker does not take the core's word for which messages those are (a skip that
//! trusted a second copy of a handler's guard would hide exactly the bug in that guard). A
//! message is removed only when both hold:
//!
//! 1. **It is settled by something that never goes back.** A server's reply (VoteReply,
//!    AppendReply) of a term older than the receiver's: terms never decrease (Figure 2, and
//!    `specs::applied_monotonic` checks it on every step). A vote reply of the receiver's
//!    current term when the receiver is not a candidate, provided the core's own election
//!    timeout, stepped on a copy, moves it to a later term: a server is then a candidate of a
//!    term only when it starts it, so it can never again count that vote. A clerk's reply to an operation the
//!    clerk has completed: its seq only grows (at most one operation in flight).
//! 2. **The receiver's own handler ignores it**, stepped on copies: for a server, in each of
//!    the roles it could hold later (follower, candidate, leader of its current term; not
//!    candidate for a vote reply of the current term);
//!    for a clerk, as it is now and as it will be once its next operation is in flight. Ignored
//!    means the step returns the same state and no durable change, message, reply or timer.
//!
//! So a handler whose guard is broken (acting on a reply from an older term, or on a late reply
//! to a finished operation) keeps its message in the network, where it is delivered like any
//! other. What remains assumed is that a handler's answer to such a message does not depend on
//! parts of the state other than the role (true of every guard in the core: they compare terms
//! and seqs); `tests/reductions.rs` runs the search with and without this removal and compares.

use super::SysState;
use model::{
    clerk_step, step, Clerk, ClerkInput, ClerkOutput, ClientReply, Endpoint, Input, LeaderState, LogIndex, NodeId, Op,
    Output, PeerMsg, Role, Server, Timer, Wire,
};
use std::fmt::Write as _;

/// Removes every dead message from `s`'s network (saying which in `trace`).
pub fn remove(s: &mut SysState, trace: &mut Option<String>) {
    let (nodes, clerks) = (&s.nodes, &s.clerks);
    s.network.retain(|e| {
        let dead = match (e.from, e.to, &e.wire) {
            (Endpoint::Server(from), Endpoint::Server(n), Wire::Peer(msg)) => {
                to_server(&nodes[n.0 as usize - 1].server, from, msg)
            }
            (Endpoint::Server(from), Endpoint::Clerk(c), Wire::Reply(reply)) => {
                let k = usize::try_from(c.0).expect("small clerk ids") - 1;
                to_clerk(&clerks[k].clerk, from, reply)
            }
            _ => false,
        };
        if dead {
            if let Some(t) = trace {
                let _ = writeln!(t, "dead, removed: {e}");
            }
        }
        !dead
    });
}

/// Whether `server` ignores `msg` from `from` now and in every later state (see the module).
pub fn to_server(server: &Server, from: NodeId, msg: &PeerMsg) -> bool {
    let current = server.current_term();
    let receive = || Input::Receive { from, msg: msg.clone() };
    match msg {
        PeerMsg::VoteReply { term, .. } | PeerMsg::AppendReply { term, .. } if *term < current => {
            roles(server).iter().all(|s| ignores(s, receive()))
        }
        PeerMsg::VoteReply { term, .. } if *term == current && !matches!(server.role, Role::Candidate { .. }) => {
            // This term's candidacy is over for good if the core's own election timeout moves
            // a follower to a later term; then only the other two roles remain.
            let [follower, _, leader] = roles(server);
            let (next, _) = step(&follower, Input::Timeout(Timer::Election));
            next.current_term() > current && [follower, leader].iter().all(|s| ignores(s, receive()))
        }
        _ => false,
    }
}

/// `server` as a follower, a candidate and a leader of its current term.
fn roles(server: &Server) -> [Server; 3] {
    let peers = &server.config.peers;
    let next = server.log().last_index().next();
    let leader = LeaderState {
        next_index: peers.iter().map(|&p| (p, next)).collect(),
        match_index: peers.iter().map(|&p| (p, LogIndex(0))).collect(),
    };
    let with = |role| Server { role, ..server.clone() };
    [
        with(Role::Follower { leader: None }),
        with(Role::Candidate { votes: im::OrdSet::unit(server.id()) }),
        with(Role::Leader(leader)),
    ]
}

fn ignores(server: &Server, input: Input) -> bool {
    let (after, out) = step(server, input);
    let Output { persist, send, reply, timers, notes: _ } = &out;
    after == *server && persist.is_empty() && send.is_empty() && reply.is_empty() && timers.is_empty()
}

/// Whether `clerk` ignores `reply` from `from` now and in every later state (see the module).
pub fn to_clerk(clerk: &Clerk, from: NodeId, reply: &ClientReply) -> bool {
    let settled = reply.seq < clerk.seq || (reply.seq == clerk.seq && clerk.pending.is_none());
    if !settled {
        return false;
    }
    let busy = match clerk.pending {
        Some(_) => clerk.clone(),
        None => clerk_step(clerk, ClerkInput::Invoke(Op::Get { key: String::new() })).0,
    };
    [clerk, &busy].iter().all(|c| {
        let (after, out) = clerk_step(c, ClerkInput::Reply { from, reply: reply.clone() });
        after == **c && out == ClerkOutput::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::{ClientId, ClientResult, Config, Durable, OpOutput, Seq, Term};

    fn server_in_term(term: u64) -> Server {
        let config = Config::new(NodeId(1), &[NodeId(1), NodeId(2), NodeId(3)]);
        let durable = Durable { current_term: Term(term), ..Durable::default() };
        Server::restore(config, durable).0
    }

    #[test]
    fn older_replies_and_a_finished_candidacys_votes_are_dead() {
        let s = server_in_term(2);
        let old = PeerMsg::VoteReply { term: Term(1), granted: true };
        let now = PeerMsg::VoteReply { term: Term(2), granted: true };
        assert!(to_server(&s, NodeId(2), &old));
        // A follower of term 2 can never again be a candidate of term 2: its election timeout
        // starts term 3. So this term's vote reply is dead for it, but not for a candidate.
        assert!(to_server(&s, NodeId(2), &now));
        let (candidate, _) = step(&server_in_term(1), Input::Timeout(Timer::Election));
        assert_eq!(candidate.current_term(), Term(2));
        assert!(!to_server(&candidate, NodeId(2), &now), "it may still win with this vote");
        let request = PeerMsg::RequestVote { term: Term(1), last_log_index: LogIndex(0), last_log_term: Term(0) };
        assert!(!to_server(&s, NodeId(2), &request), "a stale request is answered, so it matters");
    }

    #[test]
    fn a_reply_to_a_finished_operation_is_dead() {
        let clerk = Clerk::new(ClientId(1), &[NodeId(1)]);
        let (clerk, _) = clerk_step(&clerk, ClerkInput::Invoke(Op::Get { key: "x".into() }));
        let reply =
            ClientReply { client: ClientId(1), seq: Seq(1), result: ClientResult::Ok(OpOutput::Value(String::new())) };
        assert!(!to_clerk(&clerk, NodeId(1), &reply), "it completes the operation in flight");
        let (done, _) = clerk_step(&clerk, ClerkInput::Reply { from: NodeId(1), reply: reply.clone() });
        assert!(to_clerk(&done, NodeId(1), &reply));
    }
}
