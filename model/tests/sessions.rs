//! §8 of the Raft extended paper, client interaction, one test per rule (docs/design.md, "How
//! the contract is tested", layer 2): redirection, the session table, and the clerk. The
//! server rules of Figure 2 are in `figure2.rs` and `figure2_receivers.rs`. Each test quotes
//! its rule and asserts the exact `Output`.
//!
//! Server 1 is always the server under test; builders are in `common`.

#![warn(clippy::pedantic)]
#![allow(clippy::wildcard_imports, reason = "the builders in `common` are this file's vocabulary")]
#![allow(clippy::doc_markdown, reason = "doc comments quote the paper: commitIndex, AppendEntries")]

// Shared by the Figure-2 and session tests; each uses some of the builders.
#[allow(dead_code)]
mod common;

use common::*;
use model::{
    clerk_step, step, Clerk, ClerkInput, ClerkOutput, ClientId, ClientRequest,
    ClientResult::{self, Stale, WrongLeader},
    LogIndex, NodeId, Note, OpOutput, Seq,
};

// =============================================================================================
// Client interaction (§8): redirection and the session table
// =============================================================================================

/// §8: "If the client's first choice is not the leader, that server will reject the client's
/// request and supply information about the most recent leader it has heard from". Nothing is
/// appended; a candidate or a fresh follower knows no leader.
#[test]
fn client_request_to_follower_gets_wrong_leader_with_leader_hint() {
    let s = follower_of(3, 2, &[1]);
    let (next, out) = step(&s, client(7, 1, put_op("x", "y")));
    assert_eq!(effects(&out), (vec![], vec![], vec![wrong_leader(7, 1, Some(3))], vec![]));
    assert_eq!(next, s);

    for s in [candidate(3, 2, &[1]), follower(2, None, &[1])] {
        let (next, out) = step(&s, client(7, 1, put_op("x", "y")));
        assert_eq!(effects(&out), (vec![], vec![], vec![wrong_leader(7, 1, None)], vec![]));
        assert_eq!(next, s);
    }
}

/// §8: "the state machine tracks the latest serial number processed for each client, along
/// with the associated response. If it receives a command whose serial number has already been
/// executed, it responds immediately without re-executing the request." A retried (client,
/// seq) that landed in the log twice executes once; both replies carry the first execution's
/// output, even when the state has changed since.
#[test]
fn session_table_executes_a_duplicated_request_once_and_repeats_its_output() {
    let s = leader_of_term(2, &[]);
    let s = drive(
        &s,
        vec![
            client(7, 1, append_op("x", "a")),
            client(7, 2, get_op("x")),
            client(8, 1, append_op("x", "b")),
            client(7, 2, get_op("x")),         // retry of c7 #2, after x changed
            client(8, 1, append_op("x", "b")), // retry of c8 #1
        ],
    );
    let (s, out) = step(&s, recv(2, append_ok(2, 5)));
    let replies = vec![
        ok(7, 1, OpOutput::Done),
        ok(7, 2, value("a")),
        ok(8, 1, OpOutput::Done),
        ok(7, 2, value("a")),
        ok(8, 1, OpOutput::Done),
    ];
    assert_eq!(effects(&out), (vec![], vec![], replies, vec![]));
    assert_eq!(s.kv.get("x"), "ab", "each append executed once");
    assert_eq!(s.last_applied, LogIndex(5));
    let duplicates: Vec<&Note> =
        out.notes.iter().filter(|note| matches!(note, Note::DuplicateSuppressed { .. })).collect();
    assert_eq!(
        duplicates,
        [
            &Note::DuplicateSuppressed { index: LogIndex(4), client: ClientId(7), seq: Seq(2) },
            &Note::DuplicateSuppressed { index: LogIndex(5), client: ClientId(8), seq: Seq(1) },
        ]
    );
}

/// §8 session table: a command older than its client's latest executed one was answered long
/// ago and its clerk has moved on; it must not execute again, and is answered `Stale`.
#[test]
fn session_table_answers_an_older_seq_stale_without_effect() {
    let s = leader_of_term(2, &[]);
    let s = drive(
        &s,
        vec![
            client(7, 1, append_op("x", "a")),
            client(7, 2, append_op("x", "b")),
            client(7, 1, append_op("x", "a")), // a very late retry of #1
        ],
    );
    let (s, out) = step(&s, recv(3, append_ok(2, 3)));
    assert_eq!(
        effects(&out),
        (vec![], vec![], vec![ok(7, 1, OpOutput::Done), ok(7, 2, OpOutput::Done), reply(7, 1, Stale)], vec![],)
    );
    assert_eq!(s.kv.get("x"), "ab");
    assert_eq!(s.kv.sessions[&ClientId(7)].seq, Seq(2), "the session keeps the latest seq");
    let stale = Note::StaleSuppressed { index: LogIndex(3), client: ClientId(7), seq: Seq(1) };
    assert!(out.notes.contains(&stale));
}

// =============================================================================================
// The clerk (§8, client side)
// =============================================================================================

fn clerk() -> Clerk {
    Clerk::new(ClientId(7), &[n(1), n(2), n(3)])
}

/// Clerk 7's `put x y` with `seq`, addressed to server `to`.
fn request(to: u32, seq: u64) -> (NodeId, ClientRequest) {
    (n(to), ClientRequest { client: ClientId(7), seq: Seq(seq), op: put_op("x", "y") })
}

/// A clerk output that does nothing.
fn nothing() -> ClerkOutput {
    ClerkOutput::default()
}

/// A clerk that has invoked `put x y` (seq 1) and sent it to server 1.
fn busy_clerk() -> Clerk {
    let (c, out) = clerk_step(&clerk(), ClerkInput::Invoke(put_op("x", "y")));
    let sent = ClerkOutput { send: Some(request(1, 1)), retry_timer: Some(true), ..nothing() };
    assert_eq!(out, sent);
    c
}

fn answer(from: u32, seq: u64, result: ClientResult) -> ClerkInput {
    ClerkInput::Reply { from: n(from), reply: reply(7, seq, result) }
}

fn resent(to: u32) -> ClerkOutput {
    ClerkOutput { send: Some(request(to, 1)), retry_timer: Some(true), retried: true, done: None }
}

/// §8: a server that cannot serve the request redirects; without a hint the clerk tries the
/// next server, with the same (client, seq) so the operation still executes at most once.
#[test]
fn clerk_rotates_on_wrong_leader_without_hint() {
    let (c, out) = clerk_step(&busy_clerk(), answer(1, 1, WrongLeader { hint: None }));
    assert_eq!(out, resent(2));
    assert_eq!((c.target(), c.seq), (n(2), Seq(1)));

    let (c, out) = clerk_step(&c, answer(2, 1, WrongLeader { hint: Some(n(2)) }));
    assert_eq!(out, resent(3), "a hint naming the refusing server itself is no hint");
    let (c, out) = clerk_step(&c, answer(3, 1, WrongLeader { hint: None }));
    assert_eq!(out, ClerkOutput::default(), "a whole round of refusals: wait for the retry timer");
    assert_eq!((c.target(), c.redirects), (n(1), 0), "wraps around, and the next round starts afresh");
    let (c, out) = clerk_step(&c, ClerkInput::Timeout);
    assert_eq!(out, resent(2), "the timer sends again, to the next server");
    assert_eq!(c.target(), n(2));
}

/// §8: the refusing server supplies "the most recent leader it has heard from"; the clerk goes
/// there next. A refusal from a server the clerk already left is out of date and ignored.
#[test]
fn clerk_follows_leader_hint() {
    let (c, out) = clerk_step(&busy_clerk(), answer(1, 1, WrongLeader { hint: Some(n(3)) }));
    assert_eq!(out, resent(3));
    assert_eq!(c.target(), n(3));

    let (next, out) = clerk_step(&c, answer(1, 1, WrongLeader { hint: Some(n(2)) }));
    assert_eq!(out, nothing());
    assert_eq!(next, c);
}

/// §8: "If the leader crashes, client requests will time out; clients then try again with
/// randomly-chosen servers" — here the next server, with the same seq.
#[test]
fn clerk_resends_same_seq_on_timeout() {
    let (c, out) = clerk_step(&busy_clerk(), ClerkInput::Timeout);
    assert_eq!(out, resent(2));
    assert_eq!((c.target(), c.seq, c.pending.clone()), (n(2), Seq(1), Some(put_op("x", "y"))));

    // Idle: a stray timeout does nothing.
    let (idle, _) = clerk_step(&c, answer(2, 1, ClientResult::Ok(OpOutput::Done)));
    let (next, out) = clerk_step(&idle, ClerkInput::Timeout);
    assert_eq!(out, nothing());
    assert_eq!(next, idle);
}

/// §8: each operation has its own serial number; a reply to another seq (an earlier
/// operation's late answer, or some other client's) says nothing about this one.
#[test]
fn clerk_ignores_replies_for_other_seqs() {
    let c = busy_clerk();
    for input in [
        answer(1, 0, ClientResult::Ok(OpOutput::Done)),
        answer(1, 2, ClientResult::Ok(value("z"))),
        ClerkInput::Reply { from: n(1), reply: ok(8, 1, OpOutput::Done) },
        answer(1, 0, WrongLeader { hint: None }),
    ] {
        let (next, out) = clerk_step(&c, input);
        assert_eq!(out, nothing());
        assert_eq!(next, c);
    }
}

/// §8: the operation completes on the first `Ok` for its seq, from whichever server sent it;
/// the clerk keeps talking to that server, stops its retry timer, and the next operation
/// gets the next seq.
#[test]
fn clerk_completes_on_ok() {
    let (c, _) = clerk_step(&busy_clerk(), ClerkInput::Timeout); // now targets server 2
    let (c, out) = clerk_step(&c, answer(3, 1, ClientResult::Ok(OpOutput::Done)));
    let done = ClerkOutput { done: Some(OpOutput::Done), retry_timer: Some(false), ..nothing() };
    assert_eq!(out, done);
    assert_eq!((c.target(), c.pending.clone()), (n(3), None));

    let (next, out) = clerk_step(&c, answer(2, 1, ClientResult::Ok(OpOutput::Done)));
    assert_eq!(out, nothing(), "a second answer to a finished operation");
    assert_eq!(next, c);

    let (c, out) = clerk_step(&c, ClerkInput::Invoke(get_op("x")));
    let get = ClientRequest { client: ClientId(7), seq: Seq(2), op: get_op("x") };
    assert_eq!(out, ClerkOutput { send: Some((n(3), get)), retry_timer: Some(true), ..nothing() });
    assert_eq!(c.seq, Seq(2));
}
