//! Every reduction of the state space keeps every verdict: the reduced and the unreduced search
//! (`Reductions::NONE`: raw history, a `lose` action per message, no removal of dead
//! messages; and symmetry off) explore small configurations to the end, with the correct core
//! and with each broken variant of the zoo that both can exhaust, and must agree on which
//! `always` properties are violated and which `sometimes` are reached. The reduced search
//! must also be smaller, or the reduction is not doing anything.

use checker::bugs;
use checker::run::{self, Outcome, PropertyStatus, RunOptions};
use checker::{Delivery, Reductions, Setup, System};
use model::Bug;
use std::collections::BTreeSet;

fn explore(setup: &Setup, reductions: Reductions, symmetry: bool) -> Outcome {
    let setup = Setup { reductions, ..setup.clone() };
    let options = RunOptions { symmetry, ..RunOptions::default() };
    let outcome = run::check(&System::new(setup.clone()), &options, &mut std::io::sink());
    // A run with a violation counts as stopped early, but it still explores everything (it
    // stops only once every property has a discovery, which these configurations never give).
    assert!(outcome.complete || !outcome.violations().is_empty(), "not exhausted: {setup}");
    outcome
}

fn verdicts(o: &Outcome) -> (BTreeSet<&'static str>, BTreeSet<&'static str>) {
    let violated = o.violations().into_iter().collect();
    let reached =
        o.properties.iter().filter(|(_, s)| matches!(s, PropertyStatus::Reached { .. })).map(|(n, _)| *n).collect();
    (violated, reached)
}

/// Reduced and unreduced agree on `setup`; returns (unreduced, reduced) unique state counts.
fn agree(setup: &Setup, reduced: Reductions, symmetry: bool) -> (usize, usize) {
    let full = explore(setup, Reductions::NONE, false);
    let small = explore(setup, reduced, symmetry);
    assert_eq!(verdicts(&full), verdicts(&small), "verdicts differ on {setup}");
    (full.unique_states, small.unique_states)
}

fn quiet(servers: u32, clerks: u32, ops: u32) -> Setup {
    Setup::quiet(servers, clerks, ops)
}

/// Configurations of the correct core that exercise every reduction: loss with timers that
/// read the network, FIFO links with loss, duplication, crashes, snapshots, a leader change.
fn correct_configurations() -> Vec<Setup> {
    let timers = Setup { clerk_timeouts: true, heartbeats: true, ..quiet(2, 1, 1) };
    vec![
        Setup { lossy: true, max_crashes: 1, ..timers.clone() },
        Setup { delivery: Delivery::Fifo, lossy: true, max_log: 2, ..Setup { ops_per_clerk: 2, ..timers.clone() } },
        Setup { delivery: Delivery::Duplicate, lossy: true, ..timers.clone() },
        Setup { max_term: 2, max_log: 2, ..timers.clone() },
        Setup { max_log: 2, max_crashes: 1, heartbeats: true, max_raft_state: Some(1), ..quiet(2, 1, 2) },
        Setup { max_log: 2, ..quiet(2, 2, 1) },
        quiet(3, 1, 1),
    ]
}

#[test]
fn all_reductions_keep_the_verdicts_of_the_correct_core_and_shrink_the_space() {
    for setup in correct_configurations() {
        let (full, reduced) = agree(&setup, Reductions::ALL, false);
        assert!(reduced < full, "no reduction on {setup}: {full} states both ways");
    }
}

#[test]
fn each_reduction_alone_keeps_the_verdicts() {
    let only = [
        Reductions { summary: true, ..Reductions::NONE },
        Reductions { fold_loss: true, ..Reductions::NONE },
        Reductions { drop_inert: true, ..Reductions::NONE },
    ];
    for setup in correct_configurations().into_iter().take(4) {
        for reductions in only {
            agree(&setup, reductions, false);
        }
    }
}

#[test]
fn symmetry_keeps_the_verdicts() {
    // (Elections among three servers up to term 2 with and without symmetry: `tests/check.rs`.)
    for setup in [Setup { max_log: 0, ..quiet(3, 0, 0) }, Setup { max_term: 2, max_log: 2, ..quiet(2, 1, 1) }] {
        agree(&setup, Reductions::ALL, true);
    }
}

/// The zoo's broken variants whose catalog configurations both searches exhaust in seconds
/// (the others' configurations take minutes unreduced, too long for CI): every
/// violation the unreduced search finds, the reduced one finds too (and the other way round).
#[test]
fn all_reductions_keep_the_verdicts_of_the_broken_variants() {
    let small =
        [Bug::ForgetVoteOnRestart, Bug::TruncateOnAnyAppend, Bug::QuorumMinusOne, Bug::NoDedup, Bug::DedupReturnsOk];
    for bug in small {
        let case = bugs::case(bug);
        let setup = Setup { bug: Some(bug), ..case.setup.clone() };
        let full = explore(&setup, Reductions::NONE, false);
        let reduced = explore(&setup, Reductions::ALL, false);
        assert_eq!(verdicts(&full), verdicts(&reduced), "{bug}");
        assert!(verdicts(&full).0.contains(case.property), "{bug} not caught unreduced");
    }
}
