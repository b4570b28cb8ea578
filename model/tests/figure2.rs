//! Figure-2 unit tests (docs/design.md, "How the contract is tested", layer 2): one test per
//! rule for servers of the Raft extended paper's Figure 2, plus the §5.4 election restriction
//! and commit rule (the RPC receivers and persistence are in `figure2_receivers.rs`, §8's
//! client sessions and the clerk in `sessions.rs`). Each test is named after its rule, quotes it, and
//! asserts the exact `Output` the core produces — `persist`, `send`, `reply` and `timers`
//! compared whole — and the state fields the rule changes. Notes are checked more loosely (by
//! membership).
//!
//! Server 1 is always the server under test; builders are in `common`.

#![warn(clippy::pedantic)]
#![allow(clippy::wildcard_imports, reason = "the builders in `common` are this file's vocabulary")]
#![allow(clippy::doc_markdown, reason = "doc comments quote the paper: commitIndex, AppendEntries")]

// Shared with the receiver and session tests; each uses some of the builders.
#[allow(dead_code)]
mod common;

use common::*;
use model::{
    step, ClientId, Entry, LogIndex, Note, OpOutput, Pending, Role, Seq, Term,
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
