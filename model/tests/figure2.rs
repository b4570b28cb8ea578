//! Figure-2 unit tests (docs/design.md, "How the contract is tested", layer 2): one test per
//! rule of the Raft extended paper's Figure 2, plus the §5.4 election restriction and commit
//! rule, §8's client sessions and the clerk. Each test is named after its rule, quotes it, and
//! asserts the exact `Output` the core produces — `persist`, `send`, `reply` and `timers`
//! compared whole — and the state fields the rule changes. Notes are checked more loosely (by
//! membership).
//!
//! Server 1 is always the server under test; builders are in `common`.

#![warn(clippy::pedantic)]
#![allow(clippy::wildcard_imports, reason = "the builders in `common` are this file's vocabulary")]
#![allow(clippy::doc_markdown, reason = "doc comments quote the paper: commitIndex, AppendEntries")]

mod common;

use common::*;
use model::{
    clerk_step, step, Clerk, ClerkInput, ClerkOutput, ClientId, ClientRequest,
    ClientResult::{self, Stale, WrongLeader},
    Durable, Entry, KvState, LogIndex, NodeId, Note, OpOutput, Output, Pending, Role, Seq, Server, Term,
    Timer::{Election, Heartbeat},
};

/// The note for applying `entry` at `index` with `output`.
fn applied(index: u64, entry: &Entry, output: OpOutput) -> Note {
    Note::Applied { index: LogIndex(index), command: entry.command.clone(), output }
}

// =============================================================================================
// Rules for Servers — All Servers
// =============================================================================================

/// Figure 2, Rules for Servers, All Servers: "If commitIndex > lastApplied: increment
/// lastApplied, apply log[lastApplied] to state machine (§5.3)".
#[test]
fn all_servers_apply_committed_entries_in_order() {
    let log = [
        command_entry(1, 7, 1, put_op("x", "a")),
        command_entry(1, 7, 2, append_op("x", "b")),
        command_entry(1, 8, 1, get_op("x")),
    ];
    let s = restored(1, None, log_from(&log));

    let (s, out) = step(&s, recv(2, append(1, 3, 1, &[], 2)));
    assert_eq!(effects(&out), (vec![], vec![(n(2), append_ok(1, 3))], vec![], vec![set(Election)]));
    assert_eq!((s.commit_index, s.last_applied), (LogIndex(2), LogIndex(2)));
    assert_eq!(s.kv.get("x"), "ab", "entry 1 then entry 2, never the other way round");
    assert_eq!(out.notes, vec![applied(1, &log[0], OpOutput::Done), applied(2, &log[1], OpOutput::Done),]);

    let (s, out) = step(&s, recv(2, append(1, 3, 1, &[], 3)));
    assert_eq!((s.commit_index, s.last_applied), (LogIndex(3), LogIndex(3)));
    assert_eq!(out.notes, vec![applied(3, &log[2], value("ab"))]);
    assert_eq!(s.kv.sessions.get(&ClientId(7)).map(|session| session.seq), Some(Seq(2)));
    assert_eq!(s.kv.sessions[&ClientId(8)].output, value("ab"), "the cached reply of c8 #1");
    assert!(out.reply.is_empty(), "only the leader that appended an entry answers for it");
}

/// Figure 2, Rules for Servers, All Servers: "If RPC request or response contains term
/// T > currentTerm: set currentTerm = T, convert to follower (§5.1)". The new term starts with
/// no vote, and that is persisted.
///
/// Part 1: requests (RequestVote, AppendEntries) reaching a candidate that voted for itself.
#[test]
fn all_servers_adopt_higher_term_from_a_request_and_become_follower() {
    let cand = candidate(3, 2, &[1, 1]);
    assert_eq!(cand.durable.voted_for, Some(n(1)));

    // A RequestVote of term 3 whose log is behind: the term is adopted, the vote is not given.
    let (s, out) = step(&cand, recv(2, vote_request(3, 1, 1)));
    assert_eq!(
        effects(&out),
        (vec![term_and_vote(3, None)], vec![(n(2), vote(3, false))], vec![], vec![set(Election)])
    );
    assert_eq!((s.current_term(), s.durable.voted_for), (Term(3), None));
    assert_eq!(s.role, Role::Follower { leader: None });
    assert!(out.notes.contains(&Note::BecameFollower { term: Term(3) }));

    // An AppendEntries of term 4: adopted, and its sender is the leader now.
    let (s, out) = step(&cand, recv(3, append(4, 2, 1, &[], 0)));
    assert_eq!(
        effects(&out),
        (vec![term_and_vote(4, None)], vec![(n(3), append_ok(4, 2))], vec![], vec![set(Election)],)
    );
    assert_eq!((s.current_term(), s.durable.voted_for), (Term(4), None));
    assert_eq!(s.role, Role::Follower { leader: Some(n(3)) });
}

/// Figure 2, Rules for Servers, All Servers: "If RPC request or response contains term
/// T > currentTerm: set currentTerm = T, convert to follower (§5.1)".
///
/// Part 2: responses. A leader that learns of a later term from an AppendEntries reply steps
/// down, stops heartbeating, and fails the request it was waiting on (so the clerk retries
/// elsewhere); a candidate does the same from a vote reply.
#[test]
fn all_servers_adopt_higher_term_from_a_response_and_become_follower() {
    let s = leader_of_term(2, &[1]);
    let (s, _) = step(&s, client(7, 1, put_op("x", "y")));
    let (s, out) = step(&s, recv(3, append_reject(5, 0)));
    assert_eq!(
        effects(&out),
        (vec![term_and_vote(5, None)], vec![], vec![wrong_leader(7, 1, None)], vec![cancel(Heartbeat), set(Election)],)
    );
    assert_eq!((s.current_term(), s.durable.voted_for), (Term(5), None));
    assert_eq!(s.role, Role::Follower { leader: None });
    assert_eq!(s.log().last_index(), LogIndex(2), "stepping down keeps the log");
    let failed = Note::RequestFailed { client: ClientId(7), seq: Seq(1), index: LogIndex(2) };
    assert!(out.notes.contains(&failed));
    assert!(out.notes.contains(&Note::BecameFollower { term: Term(5) }));

    let (s, out) = step(&candidate(3, 2, &[]), recv(2, vote(4, false)));
    assert_eq!(effects(&out), (vec![term_and_vote(4, None)], vec![], vec![], vec![set(Election)]));
    assert_eq!((s.current_term(), s.durable.voted_for), (Term(4), None));
    assert_eq!(s.role, Role::Follower { leader: None });
}

// =============================================================================================
// Rules for Servers — Followers and Candidates (§5.2)
// =============================================================================================

/// Figure 2, Rules for Servers, Followers (§5.2): "If election timeout elapses without
/// receiving AppendEntries RPC from current leader or granting vote to candidate: convert to
/// candidate". Even a follower that knows a leader converts: the timeout is the evidence.
#[test]
fn follower_becomes_candidate_on_election_timeout() {
    let s = follower_of(2, 1, &[1]);
    let (s, out) = step(&s, timeout(Election));
    assert_eq!(
        effects(&out),
        (vec![term_and_vote(2, Some(1))], to_each(&[2, 3], &vote_request(2, 1, 1)), vec![], vec![set(Election)],)
    );
    assert_eq!(s.role, votes(&[1]));
    assert_eq!(s.current_term(), Term(2));
    assert_eq!(s.leader_hint(), None, "a candidate knows no leader");
    assert!(out.notes.contains(&Note::BecameCandidate { term: Term(2) }));
}

/// Figure 2, Rules for Servers, Candidates (§5.2): "On conversion to candidate, start
/// election: Increment currentTerm; Vote for self; Reset election timer; Send RequestVote RPCs
/// to all other servers". The new term and the self-vote are in `persist`, which the runtime
/// makes durable before any of the `send`s leave (io.rs contract).
#[test]
fn candidate_increments_term_votes_for_self_resets_timer_and_requests_votes() {
    // Voted for server 3 in term 2; its log ends at index 2, term 2.
    let s = follower(2, Some(3), &[1, 2]);
    let (s, out) = step(&s, timeout(Election));
    let request = vote_request(3, 2, 2);
    assert_eq!(out.persist, vec![term_and_vote(3, Some(1))]);
    assert_eq!(out.send, to_each(&[2, 3], &request));
    assert_eq!(out.timers, vec![set(Election)]);
    assert!(out.reply.is_empty());
    assert_eq!(s.current_term(), Term(3));
    assert_eq!(s.durable.voted_for, Some(n(1)));
    assert_eq!(s.role, votes(&[1]));
    assert_eq!(s.log(), &log_of(&[1, 2]), "starting an election does not touch the log");
}

/// Figure 2, Rules for Servers, Candidates (§5.2): "If votes received from majority of
/// servers: become leader". Leaders: "Upon election: send initial empty AppendEntries RPCs
/// (heartbeat) to each server". Volatile leader state: nextIndex "initialized to leader last
/// log index + 1", matchIndex "initialized to 0".
#[test]
fn candidate_becomes_leader_with_votes_from_majority() {
    let s = candidate(3, 2, &[1, 1]);
    let (s, out) = step(&s, recv(2, vote(2, false)));
    assert_eq!(effects(&out), no_effects());
    assert_eq!(s.role, votes(&[1]), "a denied vote is not a vote");

    let (s, out) = step(&s, recv(3, vote(2, true)));
    assert_eq!(
        effects(&out),
        (vec![], to_each(&[2, 3], &append(2, 2, 1, &[], 0)), vec![], vec![cancel(Election), set(Heartbeat)],)
    );
    let state = leader_state(&s);
    assert_eq!(state.next_index, index_map(&[(2, 3), (3, 3)]));
    assert_eq!(state.match_index, index_map(&[(2, 0), (3, 0)]));
    assert!(s.pending.is_empty());
    assert_eq!((s.current_term(), s.commit_index), (Term(2), LogIndex(0)));
    assert_eq!(s.leader_hint(), Some(n(1)));
    assert!(out.notes.contains(&Note::BecameLeader { term: Term(2) }));
}

/// Figure 2, RequestVote receiver, and §5.2: "Each server will vote for at most one candidate
/// in a given term" — so a candidate counts voters, not vote messages. In a 5-server cluster a
/// duplicated reply from server 2 must not make two votes out of one.
#[test]
fn candidate_counts_a_duplicated_vote_once() {
    let s = candidate(5, 1, &[]);
    let (s, _) = step(&s, recv(2, vote(1, true)));
    let (s, out) = step(&s, recv(2, vote(1, true)));
    assert_eq!(effects(&out), no_effects());
    assert_eq!(s.role, votes(&[1, 2]), "still two voters of the three needed");

    let (s, out) = step(&s, recv(3, vote(1, true)));
    assert_eq!(
        effects(&out),
        (vec![], to_each(&[2, 3, 4, 5], &append(1, 0, 0, &[], 0)), vec![], vec![cancel(Election), set(Heartbeat)],)
    );
    assert!(s.is_leader());
}

/// Figure 2, Rules for Servers, Candidates (§5.2): "If AppendEntries RPC received from new
/// leader: convert to follower". §5.2: "If the leader's term ... is at least as large as the
/// candidate's current term, then the candidate recognizes the leader as legitimate ... If the
/// term in the RPC is smaller ..., then the candidate rejects the RPC and continues in
/// candidate state."
#[test]
fn candidate_becomes_follower_on_append_entries_from_leader_of_same_term() {
    let cand = candidate(3, 2, &[1]);
    let (s, out) = step(&cand, recv(3, append(2, 1, 1, &[], 0)));
    assert_eq!(effects(&out), (vec![], vec![(n(3), append_ok(2, 1))], vec![], vec![set(Election)]));
    assert_eq!(s.role, Role::Follower { leader: Some(n(3)) });
    assert_eq!((s.current_term(), s.durable.voted_for), (Term(2), Some(n(1))), "vote kept");
    assert!(out.notes.contains(&Note::BecameFollower { term: Term(2) }));

    let (s, out) = step(&cand, recv(3, append(1, 1, 1, &[], 0)));
    assert_eq!(effects(&out), (vec![], vec![(n(3), append_reject(2, 0))], vec![], vec![]));
    assert_eq!(s, cand, "a leader of an older term changes nothing");
}

/// Figure 2, Rules for Servers, Candidates (§5.2): "If election timeout elapses: start new
/// election" — a new term, only its own vote (votes of the old term do not carry over), and
/// votes that arrive late for the old term are not counted.
#[test]
fn candidate_starts_new_election_on_timeout() {
    let s = candidate(5, 2, &[1]);
    let (s, _) = step(&s, recv(2, vote(2, true)));
    assert_eq!(s.role, votes(&[1, 2]));

    let (s, out) = step(&s, timeout(Election));
    assert_eq!(
        effects(&out),
        (vec![term_and_vote(3, Some(1))], to_each(&[2, 3, 4, 5], &vote_request(3, 1, 1)), vec![], vec![set(Election)],)
    );
    assert_eq!(s.current_term(), Term(3));
    assert_eq!(s.role, votes(&[1]));

    let (s, out) = step(&s, recv(3, vote(2, true)));
    assert_eq!(effects(&out), no_effects());
    assert_eq!(s.role, votes(&[1]), "a vote for term 2 is no vote for term 3");
}

/// Figure 2: the election timeout is a rule for followers and candidates only ("Followers:
/// If election timeout elapses ... convert to candidate"; "Candidates: ... start new
/// election"); a leader has no such rule.
#[test]
fn leader_ignores_election_timeout() {
    let s = leader_of_term(2, &[1]);
    let (next, out) = step(&s, timeout(Election));
    assert_eq!(effects(&out), no_effects());
    assert_eq!(next, s);
    assert!(matches!(out.notes[..], [Note::Ignored { .. }]));
}

/// Figure 2, Rules for Servers, Leaders: heartbeats are sent by leaders ("repeat during idle
/// periods"); a follower or candidate whose stale heartbeat timer fires does nothing.
#[test]
fn follower_and_candidate_ignore_heartbeat_timeout() {
    for s in [follower_of(2, 1, &[1]), candidate(3, 2, &[1])] {
        let (next, out) = step(&s, timeout(Heartbeat));
        assert_eq!(effects(&out), no_effects(), "{}", s.role_name());
        assert_eq!(next, s);
        assert!(matches!(out.notes[..], [Note::Ignored { .. }]));
    }
}

// =============================================================================================
// Rules for Servers — Leaders
// =============================================================================================

/// Figure 2, Rules for Servers, Leaders: "send initial empty AppendEntries RPCs (heartbeat) to
/// each server; repeat during idle periods to prevent election timeouts (§5.2)". §5.3: the
/// leader includes its commit index "in future AppendEntries RPCs (including heartbeats)".
#[test]
fn leader_sends_heartbeats_when_idle() {
    let s = leader_of_term(2, &[1]);
    let s = drive(&s, vec![client(7, 1, put_op("x", "y")), recv(2, append_ok(2, 2)), recv(3, append_ok(2, 2))]);
    assert_eq!(s.commit_index, LogIndex(2));

    let (next, out) = step(&s, timeout(Heartbeat));
    assert_eq!(effects(&out), (vec![], to_each(&[2, 3], &append(2, 2, 2, &[], 2)), vec![], vec![set(Heartbeat)]));
    assert_eq!(next, s, "a heartbeat changes no state");
}

/// Figure 2, Rules for Servers, Leaders: "If command received from client: append entry to
/// local log, respond after entry applied to state machine (§5.3)". The entry is persisted and
/// sent to every follower in the same step, not on the next heartbeat.
#[test]
fn leader_appends_client_command_and_replicates_at_once() {
    let s = leader_of_term(2, &[1]);
    let (s, out) = step(&s, client(7, 1, put_op("x", "y")));
    let new = [command_entry(2, 7, 1, put_op("x", "y"))];
    assert_eq!(effects(&out), (vec![appended(2, &new)], to_each(&[2, 3], &append(2, 1, 1, &new, 0)), vec![], vec![]));
    assert_eq!(s.log(), &log_from(&[entry(1, 1), new[0].clone()]));
    assert_eq!(s.pending, im::OrdMap::unit(LogIndex(2), Pending { term: Term(2), client: ClientId(7), seq: Seq(1) }));
    assert_eq!(s.commit_index, LogIndex(0), "not committed before any follower has it");
}

/// Figure 2, Rules for Servers, Leaders: "respond after entry applied to state machine
/// (§5.3)" — and each request when its own entry is applied, with that entry's result (a Get
/// answers the value the state machine had at that point of the log).
#[test]
fn leader_replies_only_when_its_entry_is_applied() {
    let s = leader_of_term(2, &[]);
    let (s, out) = step(&s, client(7, 1, put_op("x", "1")));
    assert!(out.reply.is_empty(), "no reply at append time");
    let (s, out) = step(&s, client(8, 1, get_op("x")));
    let get = command_entry(2, 8, 1, get_op("x"));
    assert_eq!(out.send, to_each(&[2, 3], &append(2, 1, 2, &[get], 0)), "pipelined");

    // Server 2 has entry 1 only: it commits and is applied; the Get at 2 still waits. Nothing
    // is sent: entry 2 is already on its way to server 2.
    let (s, out) = step(&s, recv(2, append_ok(2, 1)));
    assert_eq!(effects(&out), (vec![], vec![], vec![ok(7, 1, OpOutput::Done)], vec![]));
    assert_eq!((s.commit_index, s.last_applied), (LogIndex(1), LogIndex(1)));

    // Server 3 has both: entry 2 commits, the Get is applied and answered with its value.
    let (s, out) = step(&s, recv(3, append_ok(2, 2)));
    assert_eq!(effects(&out), (vec![], vec![], vec![ok(8, 1, value("1"))], vec![]));
    assert_eq!((s.commit_index, s.last_applied), (LogIndex(2), LogIndex(2)));
    assert!(s.pending.is_empty());
}

/// Figure 2, Rules for Servers, Leaders: "If last log index ≥ nextIndex for a follower: send
/// AppendEntries RPC with log entries starting at nextIndex" — per follower, with prevLogIndex
/// = nextIndex − 1 and its term (§5.3), and at most `max_entries_per_append` entries. With
/// pipelining, nextIndex then moves to one past the last entry sent.
#[test]
fn leader_sends_entries_from_next_index() {
    let s = leader_of_term(3, &[1, 1, 2]);
    assert_eq!(leader_state(&s).next_index, index_map(&[(2, 4), (3, 4)]));

    // Server 2's log diverges at index 2: nextIndex backs up to 2 and everything from there
    // goes out, after index 1 and its term 1; nextIndex is then past what was sent.
    let (full, out) = step(&s, recv(2, append_reject(3, 2)));
    assert_eq!(out.send, vec![(n(2), append(3, 1, 1, &[entry(2, 1), entry(3, 2)], 0))]);
    assert_eq!(leader_state(&full).next_index, index_map(&[(2, 4), (3, 4)]));
    assert_eq!(leader_state(&full).match_index, index_map(&[(2, 0), (3, 0)]));

    // So a heartbeat sends neither follower any entry.
    let (_, out) = step(&full, timeout(Heartbeat));
    assert_eq!(effects(&out), (vec![], to_each(&[2, 3], &append(3, 3, 2, &[], 0)), vec![], vec![set(Heartbeat)]));

    // At most one entry per message: only entry 2 goes, and nextIndex stops at 3.
    let mut small = s.clone();
    small.config.max_entries_per_append = 1;
    let (small, out) = step(&small, recv(2, append_reject(3, 2)));
    assert_eq!(out.send, vec![(n(2), append(3, 1, 1, &[entry(2, 1)], 0))]);
    assert_eq!(leader_state(&small).next_index, index_map(&[(2, 3), (3, 4)]));

    // A heartbeat then sends each follower what lies from its own nextIndex.
    let (after, out) = step(&small, timeout(Heartbeat));
    assert_eq!(
        effects(&out),
        (
            vec![],
            vec![(n(2), append(3, 2, 1, &[entry(3, 2)], 0)), (n(3), append(3, 3, 2, &[], 0))],
            vec![],
            vec![set(Heartbeat)],
        )
    );
    assert_eq!(leader_state(&after).next_index, index_map(&[(2, 4), (3, 4)]));

    // Or, without waiting for the heartbeat, the acknowledgement of entry 2 sends the entry
    // the size cap left out.
    let (after, out) = step(&small, recv(2, append_ok(3, 2)));
    let rest = vec![(n(2), append(3, 2, 1, &[entry(3, 2)], 0))];
    assert_eq!(effects(&out), (vec![], rest, vec![], vec![]));
    assert_eq!(leader_state(&after).next_index, index_map(&[(2, 4), (3, 4)]));
    assert_eq!(leader_state(&after).match_index, index_map(&[(2, 2), (3, 0)]));
}

/// Figure 2, Rules for Servers, Leaders: "If successful: update nextIndex and matchIndex for
/// follower (§5.3)"; matchIndex is the "index of highest log entry known to be replicated on
/// server" and "increases monotonically". Known means acknowledged: a reply's `match_index`,
/// not the leader's `next_index − 1` — which, with pipelining, is only what has been sent —
/// and a stale or reordered reply never lowers it. Commitment counts matchIndex, so it follows
/// the acknowledgements too.
#[test]
fn leader_sets_match_index_from_acknowledged_index_not_next_index() {
    let s = leader_of_term(2, &[1]);
    let s = drive(&s, vec![client(7, 1, put_op("x", "a")), client(8, 1, put_op("y", "b"))]);

    // Entries 2 and 3 have been sent to both followers, but neither has acknowledged anything.
    assert_eq!(leader_state(&s).next_index, index_map(&[(2, 4), (3, 4)]));
    assert_eq!(leader_state(&s).match_index, index_map(&[(2, 0), (3, 0)]));
    assert_eq!(s.commit_index, LogIndex(0));

    // Server 2 acknowledges index 2 (its reply to the first request): match 2, not 3. Only
    // entry 2 commits, only its client is answered, and nothing is resent (3 is in flight).
    let (s, out) = step(&s, recv(2, append_ok(2, 2)));
    assert_eq!(leader_state(&s).match_index, index_map(&[(2, 2), (3, 0)]));
    assert_eq!(leader_state(&s).next_index, index_map(&[(2, 4), (3, 4)]));
    assert_eq!(effects(&out), (vec![], vec![], vec![ok(7, 1, OpOutput::Done)], vec![]));
    assert_eq!(s.commit_index, LogIndex(2));

    let (s, out) = step(&s, recv(2, append_ok(2, 3)));
    assert_eq!(leader_state(&s).match_index[&n(2)], LogIndex(3));
    assert_eq!(effects(&out), (vec![], vec![], vec![ok(8, 1, OpOutput::Done)], vec![]));
    assert_eq!(s.commit_index, LogIndex(3));

    // A late reply acknowledging index 1 does not lower it.
    let (s, out) = step(&s, recv(2, append_ok(2, 1)));
    assert_eq!(leader_state(&s).match_index, index_map(&[(2, 3), (3, 0)]));
    assert_eq!(leader_state(&s).next_index, index_map(&[(2, 4), (3, 4)]));
    assert_eq!(effects(&out), no_effects());

    // A reply acknowledging entries the leader does not have is ignored.
    let (next, out) = step(&s, recv(3, append_ok(2, 9)));
    assert_eq!(effects(&out), no_effects());
    assert_eq!(next, s);
}

/// Figure 2, Rules for Servers, Leaders: "If AppendEntries fails because of log
/// inconsistency: decrement nextIndex and retry (§5.3)". §5.3 end: the follower can return
/// "the first index it stores for that term", so the leader backs up past a whole conflicting
/// term at once. The retry is sent in the same step (after which nextIndex is past it again:
/// pipelining), and nextIndex never goes to or below an index the follower has acknowledged
/// (matchIndex + 1 at least).
#[test]
fn leader_backs_up_next_index_on_rejection_and_retries_at_once() {
    let s = leader_of_term(3, &[1, 1, 2, 2]);
    let tail = [entry(3, 2), entry(4, 2)];

    // Server 2 rejects the election heartbeat (after index 4): back up to 3, resend 3..4.
    let (s, out) = step(&s, recv(2, append_reject(3, 3)));
    assert_eq!(effects(&out), (vec![], vec![(n(2), append(3, 2, 1, &tail, 0))], vec![], vec![]));
    assert_eq!(leader_state(&s).next_index, index_map(&[(2, 5), (3, 5)]));

    // Server 3 acknowledged index 2: entries 3..4 count as sent, nothing goes. Then a rejection
    // hints index 1: back up to 3, not 1.
    let (s, out) = step(&s, recv(3, append_ok(3, 2)));
    assert_eq!(effects(&out), no_effects());
    let (s, out) = step(&s, recv(3, append_reject(3, 1)));
    assert_eq!(effects(&out), (vec![], vec![(n(3), append(3, 2, 1, &tail, 0))], vec![], vec![]));
    assert_eq!(leader_state(&s).next_index, index_map(&[(2, 5), (3, 5)]));
    assert_eq!(leader_state(&s).match_index, index_map(&[(2, 0), (3, 2)]));

    // A duplicated rejection cannot be told from a new one while nextIndex runs ahead: it backs
    // up again and resends the same entries, which leaves the state as it was.
    let (next, out) = step(&s, recv(2, append_reject(3, 3)));
    assert_eq!(effects(&out), (vec![], vec![(n(2), append(3, 2, 1, &tail, 0))], vec![], vec![]));
    assert_eq!(next, s);

    // Once server 2 has acknowledged everything, a late rejection cannot back nextIndex up to
    // or below what it acknowledged: nothing changes and nothing is sent.
    let (s, out) = step(&s, recv(2, append_ok(3, 4)));
    assert_eq!(effects(&out), no_effects());
    assert_eq!(leader_state(&s).match_index, index_map(&[(2, 4), (3, 2)]));
    let (next, out) = step(&s, recv(2, append_reject(3, 3)));
    assert_eq!(effects(&out), no_effects());
    assert_eq!(next, s);
}

/// Pipelining (Figure 2, Leaders: "send AppendEntries RPC with log entries starting at
/// nextIndex", with nextIndex moved past what was sent): a second request in a row sends only
/// its own entry, after the first one (prevLogIndex = the first entry's index and term), not
/// everything not yet acknowledged; and a heartbeat sends no entry again.
#[test]
fn leader_pipelines_new_entries_without_resending_unacknowledged_ones() {
    let s = leader_of_term(2, &[1]);
    let first = command_entry(2, 7, 1, put_op("x", "a"));
    let second = command_entry(2, 8, 1, put_op("y", "b"));

    let (s, out) = step(&s, client(7, 1, put_op("x", "a")));
    assert_eq!(
        effects(&out),
        (
            vec![appended(2, std::slice::from_ref(&first))],
            to_each(&[2, 3], &append(2, 1, 1, std::slice::from_ref(&first), 0)),
            vec![],
            vec![],
        )
    );
    assert_eq!(leader_state(&s).next_index, index_map(&[(2, 3), (3, 3)]));

    let (s, out) = step(&s, client(8, 1, put_op("y", "b")));
    assert_eq!(
        effects(&out),
        (
            vec![appended(3, std::slice::from_ref(&second))],
            to_each(&[2, 3], &append(2, 2, 2, std::slice::from_ref(&second), 0)),
            vec![],
            vec![],
        )
    );
    assert_eq!(leader_state(&s).next_index, index_map(&[(2, 4), (3, 4)]));
    assert_eq!(leader_state(&s).match_index, index_map(&[(2, 0), (3, 0)]));

    let (next, out) = step(&s, timeout(Heartbeat));
    assert_eq!(effects(&out), (vec![], to_each(&[2, 3], &append(2, 3, 2, &[], 0)), vec![], vec![set(Heartbeat)]));
    assert_eq!(next, s);

    // Acknowledged in order, each request is answered when its own entry commits.
    let (s, out) = step(&s, recv(2, append_ok(2, 2)));
    assert_eq!(effects(&out), (vec![], vec![], vec![ok(7, 1, OpOutput::Done)], vec![]));
    let (s, out) = step(&s, recv(2, append_ok(2, 3)));
    assert_eq!(effects(&out), (vec![], vec![], vec![ok(8, 1, OpOutput::Done)], vec![]));
    assert_eq!(leader_state(&s).match_index, index_map(&[(2, 3), (3, 0)]));
    assert_eq!(s.commit_index, LogIndex(3));
}

/// Pipelining's recovery (Figure 2, Leaders: "If AppendEntries fails because of log
/// inconsistency: decrement nextIndex and retry"): when an AppendEntries is lost, the follower
/// rejects the next one (its prevLogIndex is missing there) with a hint, and the leader backs
/// nextIndex up to it and resends every missing entry at once.
#[test]
fn leader_recovers_from_a_lost_append_by_backing_up() {
    let s = leader_of_term(2, &[1]);
    let first = command_entry(2, 7, 1, put_op("x", "a"));
    let second = command_entry(2, 8, 1, put_op("y", "b"));

    // The AppendEntries carrying entry 2 to server 2 is lost.
    let (s, _) = step(&s, client(7, 1, put_op("x", "a")));
    let (s, out) = step(&s, client(8, 1, put_op("y", "b")));
    let after_first = append(2, 2, 2, std::slice::from_ref(&second), 0);
    assert_eq!(out.send, to_each(&[2, 3], &after_first));

    // Server 2 holds only entry 1, so it rejects that one: "retry from 2". (Server 1, following
    // a leader 2 with the same log, stands in for it.)
    let (_, answer) = step(&follower_of(2, 2, &[1]), recv(2, after_first));
    assert_eq!(answer.send, vec![(n(2), append_reject(2, 2))]);

    // nextIndex backs up from 4 to 2, entries 2..3 go at once, and nextIndex is past them.
    let (s, out) = step(&s, recv(2, append_reject(2, 2)));
    assert_eq!(effects(&out), (vec![], vec![(n(2), append(2, 1, 1, &[first, second], 0))], vec![], vec![]));
    assert_eq!(leader_state(&s).next_index, index_map(&[(2, 4), (3, 4)]));
    assert_eq!(leader_state(&s).match_index, index_map(&[(2, 0), (3, 0)]));

    // Server 2 acknowledges both: both commit and both clients are answered, nothing more sent.
    let (s, out) = step(&s, recv(2, append_ok(2, 3)));
    assert_eq!(effects(&out), (vec![], vec![], vec![ok(7, 1, OpOutput::Done), ok(8, 1, OpOutput::Done)], vec![]));
    assert_eq!(leader_state(&s).match_index, index_map(&[(2, 3), (3, 0)]));
    assert_eq!(s.commit_index, LogIndex(3));
}

/// Figure 2, Rules for Servers, Leaders: "If there exists an N such that N > commitIndex, a
/// majority of matchIndex[i] ≥ N, and log[N].term == currentTerm: set commitIndex = N (§5.3,
/// §5.4)". In a 5-server cluster that takes the leader and two followers; committing N also
/// commits (and applies) every entry before it.
#[test]
fn leader_commits_current_term_entry_replicated_on_majority() {
    let s = leader(5, 2, &[1]);
    let (s, _) = step(&s, client(7, 1, put_op("x", "y")));

    let (s, out) = step(&s, recv(2, append_ok(2, 2)));
    assert_eq!(effects(&out), no_effects());
    assert_eq!(s.commit_index, LogIndex(0), "2 of 5 is no majority");

    let (s, out) = step(&s, recv(3, append_ok(2, 2)));
    assert_eq!(effects(&out), (vec![], vec![], vec![ok(7, 1, OpOutput::Done)], vec![]));
    assert_eq!((s.commit_index, s.last_applied), (LogIndex(2), LogIndex(2)));
    assert_eq!((s.kv.get("k1"), s.kv.get("x")), ("v1", "y"));
    assert!(out.notes.iter().any(|note| matches!(note, Note::Applied { index: LogIndex(1), .. })));
}

/// §5.4.2 (Figure 8): "Raft never commits log entries from previous terms by counting
/// replicas. Only log entries from the leader's current term are committed by counting
/// replicas; once an entry from the current term has been committed in this way, then all
/// prior entries are committed indirectly because of the Log Matching Property."
#[test]
fn leader_does_not_commit_earlier_term_entry_by_counting() {
    // Leader of term 4 holding an uncommitted entry of term 2 at index 2.
    let s = leader_of_term(4, &[1, 2]);
    let (s, out) = step(&s, recv(2, append_ok(4, 2)));
    assert_eq!(effects(&out), no_effects());
    let (s, out) = step(&s, recv(3, append_ok(4, 2)));
    assert_eq!(effects(&out), no_effects());
    assert_eq!(leader_state(&s).match_index, index_map(&[(2, 2), (3, 2)]));
    assert_eq!(s.commit_index, LogIndex(0), "on every server, but of term 2: not committed");

    let (s, _) = step(&s, client(7, 1, put_op("x", "y")));
    let (s, out) = step(&s, recv(2, append_ok(4, 3)));
    assert_eq!(effects(&out), (vec![], vec![], vec![ok(7, 1, OpOutput::Done)], vec![]));
    assert_eq!((s.commit_index, s.last_applied), (LogIndex(3), LogIndex(3)));
    assert_eq!(s.kv.get("k2"), "v2", "the term-2 entry is committed indirectly");
}

// =============================================================================================
// RequestVote RPC — receiver implementation
// =============================================================================================

/// Figure 2, RequestVote RPC, Receiver implementation: "1. Reply false if term < currentTerm
/// (§5.1)". The reply carries currentTerm "for candidate to update itself".
#[test]
fn request_vote_rejects_older_term() {
    let s = follower(3, None, &[]);
    let (next, out) = step(&s, recv(2, vote_request(2, 5, 2)));
    assert_eq!(effects(&out), (vec![], vec![(n(2), vote(3, false))], vec![], vec![]));
    assert_eq!(next, s, "no vote recorded, no timer reset");
}

/// Figure 2, RequestVote RPC, Receiver implementation: "2. If votedFor is null or
/// candidateId, and candidate's log is at least as up-to-date as receiver's log, grant vote
/// (§5.2, §5.4)". §5.2: "each server will vote for at most one candidate in a given term, on a
/// first-come-first-served basis". Asking again (a retried request) gets the same answer.
#[test]
fn request_vote_grants_at_most_one_candidate_per_term() {
    let s = follower(2, None, &[1]);
    let (s, out) = step(&s, recv(2, vote_request(2, 1, 1)));
    assert_eq!(
        effects(&out),
        (vec![term_and_vote(2, Some(2))], vec![(n(2), vote(2, true))], vec![], vec![set(Election)])
    );
    assert_eq!(s.durable.voted_for, Some(n(2)));

    let (s, out) = step(&s, recv(3, vote_request(2, 1, 1)));
    assert_eq!(effects(&out), (vec![], vec![(n(3), vote(2, false))], vec![], vec![]));
    assert_eq!(s.durable.voted_for, Some(n(2)));

    let (s, out) = step(&s, recv(2, vote_request(2, 1, 1)));
    assert_eq!(effects(&out), (vec![], vec![(n(2), vote(2, true))], vec![], vec![set(Election)]));
    assert_eq!(s.durable.voted_for, Some(n(2)));
}

/// §5.4.1, the election restriction (Figure 2, RequestVote receiver step 2): "If the logs have
/// last entries with different terms, then the log with the later term is more up-to-date. If
/// the logs end with the same term, then whichever log is longer is more up-to-date."
#[test]
fn request_vote_rejects_candidate_with_less_up_to_date_log() {
    // Receiver's log ends at index 2, term 2.
    let s = follower(3, None, &[1, 2]);

    // Lower last term, though longer: denied.
    let (next, out) = step(&s, recv(2, vote_request(3, 3, 1)));
    assert_eq!(effects(&out), (vec![], vec![(n(2), vote(3, false))], vec![], vec![]));
    assert_eq!(next.durable.voted_for, None);

    // Same last term, shorter: denied.
    let (next, out) = step(&s, recv(2, vote_request(3, 1, 2)));
    assert_eq!(effects(&out), (vec![], vec![(n(2), vote(3, false))], vec![], vec![]));
    assert_eq!(next.durable.voted_for, None);

    // Same last term, same length: at least as up-to-date, granted.
    let (next, out) = step(&s, recv(2, vote_request(3, 2, 2)));
    assert_eq!(out.send, vec![(n(2), vote(3, true))]);
    assert_eq!(next.durable.voted_for, Some(n(2)));

    // Higher last term, though shorter: granted.
    let (next, out) = step(&s, recv(3, vote_request(3, 1, 3)));
    assert_eq!(
        effects(&out),
        (vec![term_and_vote(3, Some(3))], vec![(n(3), vote(3, true))], vec![], vec![set(Election)])
    );
    assert_eq!(next.durable.voted_for, Some(n(3)));
}

/// Figure 2, State: votedFor is persistent state, "updated on stable storage before responding
/// to RPCs"; Rules for Servers, Followers: the election timeout counts from the last time the
/// server heard from the leader "or grant[ed] vote to candidate". A vote survives a crash: the
/// restarted server (restored from the replayed `persist`) will not vote again in that term.
#[test]
fn granting_a_vote_persists_it_and_resets_the_election_timer() {
    let s = follower(2, None, &[1]);
    let (_, out) = step(&s, recv(2, vote_request(2, 1, 1)));
    assert_eq!(
        effects(&out),
        (vec![term_and_vote(2, Some(2))], vec![(n(2), vote(2, true))], vec![], vec![set(Election)])
    );

    // Crash right after the reply left: restart from what was persisted.
    let mut disk = s.durable.clone();
    for change in &out.persist {
        disk.apply(change).expect("replays");
    }
    let (restarted, _) = Server::restore(s.config.clone(), disk);
    assert_eq!(restarted.durable.voted_for, Some(n(2)));
    let (_, out) = step(&restarted, recv(3, vote_request(2, 1, 1)));
    assert_eq!(effects(&out), (vec![], vec![(n(3), vote(2, false))], vec![], vec![]));
}

// =============================================================================================
// AppendEntries RPC — receiver implementation
// =============================================================================================

/// Figure 2, AppendEntries RPC, Receiver implementation: "1. Reply false if term < currentTerm
/// (§5.1)", with currentTerm in the reply "for leader to update itself". A stale leader is not
/// the current leader: no timer reset, no change to the log or commit index.
#[test]
fn append_entries_rejects_older_term() {
    let s = follower_of(2, 3, &[1]);
    let (next, out) = step(&s, recv(3, append(2, 1, 1, &[entry(2, 2)], 2)));
    assert_eq!(effects(&out), (vec![], vec![(n(3), append_reject(3, 0))], vec![], vec![]));
    assert_eq!(next, s, "log, commit index and known leader unchanged");
}

/// Figure 2, AppendEntries RPC, Receiver implementation: "2. Reply false if log doesn't
/// contain an entry at prevLogIndex whose term matches prevLogTerm (§5.3)". The rejection hints
/// where to retry (§5.3 end): the follower's last index + 1 when its log is too short, else "the
/// first index it stores for" the conflicting term. The sender is still the current leader, so
/// the election timer is reset; nothing else changes (not even the commit index).
#[test]
fn append_entries_rejects_when_prev_entry_missing_or_mismatched() {
    let s = follower_of(2, 3, &[1, 1, 2, 2]);
    let rejected = |conflict| (vec![], vec![(n(2), append_reject(3, conflict))], vec![], vec![set(Election)]);

    // No entry at 6: retry from 5.
    let (next, out) = step(&s, recv(2, append(3, 6, 3, &[], 4)));
    assert_eq!(effects(&out), rejected(5));
    assert_eq!(next, s);

    // Entry 4 has term 2, not 3: retry from 3, where term 2 starts here.
    let (next, out) = step(&s, recv(2, append(3, 4, 3, &[entry(5, 3)], 4)));
    assert_eq!(effects(&out), rejected(3));
    assert_eq!(next, s);

    // Entry 2 has term 1, not 2: retry from 1, where term 1 starts.
    let (next, out) = step(&s, recv(2, append(3, 2, 2, &[], 0)));
    assert_eq!(effects(&out), rejected(1));
    assert_eq!(next, s);
}

/// Figure 2, AppendEntries RPC, Receiver implementation: "3. If an existing entry conflicts
/// with a new one (same index but different terms), delete the existing entry and all that
/// follow it (§5.3)" — from the first conflict, not from prevLogIndex + 1.
#[test]
fn append_entries_truncates_conflicting_entry_and_all_that_follow() {
    let s = follower_of(2, 3, &[1, 1, 2, 2]);
    let new = [entry(3, 3)];
    let expected_log = log_from(&[entry(1, 1), entry(2, 1), entry(3, 3)]);

    let (next, out) = step(&s, recv(2, append(3, 2, 1, &new, 0)));
    assert_eq!(
        effects(&out),
        (vec![truncated(3), appended(3, &new)], vec![(n(2), append_ok(3, 3))], vec![], vec![set(Election)],)
    );
    assert_eq!(next.log(), &expected_log);

    // Entry 2 matches and is kept; the conflict is at 3.
    let (next, out) = step(&s, recv(2, append(3, 1, 1, &[entry(2, 1), entry(3, 3)], 0)));
    assert_eq!(out.persist, vec![truncated(3), appended(3, &new)]);
    assert_eq!(out.send, vec![(n(2), append_ok(3, 3))]);
    assert_eq!(next.log(), &expected_log);
}

/// Figure 2, AppendEntries RPC, Receiver step 3 deletes entries only on a conflict ("same
/// index but different terms"). A delayed request whose entries all match must not cut off
/// later entries the follower has (they may already be counted toward a commit); its reply
/// acknowledges only what it verified.
#[test]
fn append_entries_does_not_truncate_on_stale_matching_request() {
    let s = follower_of(2, 2, &[1, 2, 2]);
    let (next, out) = step(&s, recv(2, append(2, 1, 1, &[entry(2, 2)], 0)));
    assert_eq!(effects(&out), (vec![], vec![(n(2), append_ok(2, 2))], vec![], vec![set(Election)]));
    assert_eq!(next.log(), &log_of(&[1, 2, 2]));
}

/// Figure 2, AppendEntries RPC, Receiver implementation: "4. Append any new entries not
/// already in the log". §5.5: "Raft RPCs are idempotent ... if a follower receives an
/// AppendEntries request that includes log entries already present in its log, it ignores
/// those entries in the new request."
#[test]
fn append_entries_appends_only_new_entries() {
    let s = follower_of(2, 2, &[1]);
    let request = recv(2, append(2, 0, 0, &[entry(1, 1), entry(2, 2), entry(3, 2)], 0));

    let (s, out) = step(&s, request.clone());
    assert_eq!(
        effects(&out),
        (vec![appended(2, &[entry(2, 2), entry(3, 2)])], vec![(n(2), append_ok(2, 3))], vec![], vec![set(Election)],)
    );
    assert_eq!(s.log(), &log_of(&[1, 2, 2]));

    let (next, out) = step(&s, request);
    assert_eq!(effects(&out), (vec![], vec![(n(2), append_ok(2, 3))], vec![], vec![set(Election)]));
    assert_eq!(next, s, "a duplicate changes nothing");
}

/// Figure 2, AppendEntries RPC, Receiver implementation: "5. If leaderCommit > commitIndex,
/// set commitIndex = min(leaderCommit, index of last new entry)". Entries after the ones the
/// request verified may differ from the leader's, so a large leaderCommit must not commit them;
/// and commitIndex never decreases.
#[test]
fn append_entries_sets_commit_index_to_min_of_leader_commit_and_last_new_entry() {
    // Entries 2..4 came from an earlier leader of term 1 and are unverified by leader 2.
    let s = follower_of(2, 2, &[1, 1, 1, 1]);

    let (s, out) = step(&s, recv(2, append(2, 1, 1, &[], 3)));
    assert_eq!(effects(&out), (vec![], vec![(n(2), append_ok(2, 1))], vec![], vec![set(Election)]));
    assert_eq!((s.commit_index, s.last_applied), (LogIndex(1), LogIndex(1)));
    assert_eq!((s.kv.get("k1"), s.kv.get("k2")), ("v1", ""));

    let (s, out) = step(&s, recv(2, append(2, 2, 1, &[entry(3, 1)], 3)));
    assert_eq!(effects(&out), (vec![], vec![(n(2), append_ok(2, 3))], vec![], vec![set(Election)]));
    assert_eq!((s.commit_index, s.last_applied), (LogIndex(3), LogIndex(3)));

    let (s, out) = step(&s, recv(2, append(2, 0, 0, &[], 1)));
    assert_eq!(effects(&out), (vec![], vec![(n(2), append_ok(2, 0))], vec![], vec![set(Election)]));
    assert_eq!(s.commit_index, LogIndex(3), "never decreases");
}

// =============================================================================================
// Persistence and restart (Figure 2, State)
// =============================================================================================

/// Figure 2, State: currentTerm, votedFor and log[] are "Persistent state on all servers";
/// commitIndex and lastApplied are volatile, "initialized to 0". The state machine is rebuilt
/// by re-applying the log once the commit index is learned again. A restarted server is a
/// follower that knows no leader, with its election timer running.
#[test]
fn restart_keeps_term_vote_and_log_only() {
    let s = leader_of_term(2, &[1]);
    let s = drive(&s, vec![client(7, 1, put_op("x", "y")), recv(2, append_ok(2, 2))]);
    assert_eq!((s.last_applied, s.kv.get("x")), (LogIndex(2), "y"));

    let (restarted, out) = Server::restore(s.config.clone(), s.durable.clone());
    let expected = Server {
        config: s.config.clone(),
        durable: s.durable.clone(),
        commit_index: LogIndex(0),
        last_applied: LogIndex(0),
        role: Role::Follower { leader: None },
        kv: KvState::new(),
        pending: im::OrdMap::new(),
    };
    assert_eq!(restarted, expected);
    assert_eq!(out, Output { timers: vec![set(Election)], ..Output::default() });
    assert_eq!(
        (restarted.current_term(), restarted.durable.voted_for, restarted.log().last_index()),
        (Term(2), Some(n(1)), LogIndex(2))
    );
}

/// Figure 2, State: persistent state is "updated on stable storage before responding to
/// RPCs". `Output::persist` is that update as a list of changes; replaying it with
/// `Durable::apply` onto the previous durable state must give exactly the new one, for every
/// kind of change: term and vote, appends, and truncation.
#[test]
fn durable_changes_replay_to_the_new_durable_state() {
    let steps = vec![
        recv(3, vote_request(2, 1, 1)),                           // term 2, vote for 3
        recv(3, append(2, 1, 1, &[entry(2, 2), entry(3, 2)], 0)), // append 2..3
        recv(2, append(3, 1, 1, &[entry(2, 3)], 1)),              // term 3, truncate, append
        timeout(Election),                                        // term 4, vote for self
    ];
    let mut s = follower(1, None, &[1]);
    let mut persisted = Vec::new();
    for input in steps {
        let (next, out) = step(&s, input);
        let mut disk: Durable = s.durable.clone();
        for change in &out.persist {
            disk.apply(change).expect("each change fits the state before it");
        }
        assert_eq!(disk, next.durable);
        persisted.push(out.persist);
        s = next;
    }
    assert_eq!(
        persisted,
        vec![
            vec![term_and_vote(2, Some(3))],
            vec![appended(2, &[entry(2, 2), entry(3, 2)])],
            vec![term_and_vote(3, None), truncated(2), appended(2, &[entry(2, 3)])],
            vec![term_and_vote(4, Some(1))],
        ]
    );
    assert_eq!(s.durable, durable(4, Some(1), log_from(&[entry(1, 1), entry(2, 3)])));
}

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
