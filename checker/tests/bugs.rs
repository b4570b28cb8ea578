//! The bug zoo in CI: every broken variant of the core (`model::Bug`) is caught, in the
//! configuration `checker::bugs::catalog` gives it, by the property named for it, with a
//! counterexample that replays to a state `specs` explains; and the correct core passes the
//! same configuration.

use checker::bugs::{self, BugCase};
use checker::run;
use checker::{Setup, System};
use model::Bug;
use std::time::Duration;

fn assert_caught(bug: Bug) {
    let case: BugCase = bugs::case(bug);
    let finding = bugs::hunt(&case);
    let Some(trace) = finding.trace() else {
        panic!("{bug} not caught by {:?}: {:?}", case.property, finding.outcome.properties);
    };
    let broken = System::new(Setup { bug: Some(bug), ..case.setup.clone() });
    let text = run::describe_trace(&broken, trace);
    assert!(!text.contains("does not replay"), "{text}");
    let detail = run::violation_detail(&broken, case.property, trace);
    assert!(detail.is_some(), "the trace should end in a violation of {}:\n{text}", case.property);

    let control = bugs::control(&case, Duration::from_secs(30));
    assert!(
        control.violations().is_empty(),
        "the correct core fails {bug}'s configuration: {:?}",
        control.violations()
    );
}

#[test]
fn the_catalog_covers_every_bug() {
    let catalog = bugs::catalog();
    for bug in Bug::ALL {
        assert_eq!(catalog.iter().filter(|c| c.bug == bug).count(), 1, "{bug}");
    }
}

macro_rules! caught {
    ($($name:ident: $bug:ident,)*) => {
        $(
            #[test]
            fn $name() {
                assert_caught(Bug::$bug);
            }
        )*
    };
}

caught! {
    commit_old_term_by_count: CommitOldTermByCount,
    forget_vote_on_restart: ForgetVoteOnRestart,
    vote_ignores_log: VoteIgnoresLog,
    vote_compare_index_only: VoteCompareIndexOnly,
    count_duplicate_votes: CountDuplicateVotes,
    truncate_on_any_append: TruncateOnAnyAppend,
    match_from_next_index: MatchFromNextIndex,
    commit_without_match: CommitWithoutMatch,
    quorum_minus_one: QuorumMinusOne,
    no_dedup: NoDedup,
    reply_by_index_only: ReplyByIndexOnly,
    dedup_returns_ok: DedupReturnsOk,
    local_reads: LocalReads,
    snapshot_without_sessions: SnapshotWithoutSessions,
    accept_stale_snapshot: AcceptStaleSnapshot,
    truncate_wrong_suffix: TruncateWrongSuffix,
}
