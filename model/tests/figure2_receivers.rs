//! Figure 2's RPC receiver rules and persistent state, one test per rule (docs/design.md, "How
//! the contract is tested", layer 2): the RequestVote and AppendEntries receiver
//! implementations, and what a restart restores. The rules for servers are in `figure2.rs`,
//! the client side in `sessions.rs`. Each test quotes its rule and asserts the exact `Output`.
//!
//! Server 1 is always the server under test; builders are in `common`.

#![warn(clippy::pedantic)]
#![allow(clippy::wildcard_imports, reason = "the builders in `common` are this file's vocabulary")]
#![allow(clippy::doc_markdown, reason = "doc comments quote the paper: commitIndex, AppendEntries")]

// Shared by the Figure-2 and session tests; each uses some of the builders.
#[allow(dead_code)]
mod common;

use common::*;
use model::{step, Durable, KvState, LogIndex, Output, Role, Server, Term, Timer::Election};

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
