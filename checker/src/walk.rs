//! Seeded random walks through the same system, for configurations too large to explore
//! exhaustively. (stateright 0.31's own simulation checker can report a path that does not
//! replay: it records actions the model refused, and numbers actions after it has reordered
//! their list, so its counterexample may end in a state that violates nothing.) Every state on
//! a walk is checked against every property, and a violating walk is returned as the exact list
//! of actions that replays it.

use crate::system::{Action, SysState, System};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use stateright::{Expectation, Model};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// What a batch of walks found.
#[derive(Debug, Default)]
pub struct WalkReport {
    pub walks: u64,
    pub states: u64,
    pub max_depth: usize,
    /// `always` properties violated, with the first violating walk's actions.
    pub violations: Vec<(&'static str, Vec<Action>)>,
    /// `sometimes` properties reached.
    pub reached: BTreeSet<&'static str>,
}

/// Walks from the initial state choosing uniformly among enabled actions, each walk at most
/// `depth` steps, until `duration` passes, `max_walks` walks are done, or a walk violates an
/// `always` property (every property violated on that walk is reported). With `max_walks` and no time limit hit, the result depends only
/// on the seed (the walker is single-threaded and `rand`'s version is pinned in Cargo.lock).
pub fn walk(
    system: &System,
    seed: u64,
    depth: usize,
    duration: Duration,
    max_walks: Option<u64>,
    mut progress: impl FnMut(&WalkReport),
) -> WalkReport {
    let mut rng = StdRng::seed_from_u64(seed);
    let properties = system.properties();
    let mut report = WalkReport::default();
    let start = Instant::now();
    let mut last_progress = start;
    while start.elapsed() < duration && max_walks.is_none_or(|m| report.walks < m) {
        walk_once(system, &mut rng, depth, &properties, &mut report);
        report.walks += 1;
        if last_progress.elapsed() >= Duration::from_secs(3) {
            progress(&report);
            last_progress = Instant::now();
        }
        if !report.violations.is_empty() {
            break; // the first violating walk is the counterexample
        }
    }
    report
}

fn walk_once(
    system: &System,
    rng: &mut StdRng,
    depth: usize,
    properties: &[stateright::Property<System>],
    report: &mut WalkReport,
) {
    let mut state: SysState = system.initial_state();
    let mut path: Vec<Action> = Vec::new();
    let mut actions = Vec::new();
    for step in 0..=depth {
        report.states += 1;
        report.max_depth = report.max_depth.max(step);
        for p in properties {
            let holds = (p.condition)(system, &state);
            match p.expectation {
                Expectation::Always if !holds && !report.violations.iter().any(|(n, _)| *n == p.name) => {
                    report.violations.push((p.name, path.clone()));
                }
                Expectation::Sometimes if holds => {
                    report.reached.insert(p.name);
                }
                _ => {}
            }
        }
        actions.clear();
        System::actions(system, &state, &mut actions);
        let mut next = None;
        while next.is_none() && !actions.is_empty() {
            let action = actions.swap_remove(rng.random_range(0..actions.len()));
            next = system.next_state(&state, action.clone()).filter(|s| system.within_boundary(s)).map(|s| (s, action));
        }
        let Some((s, action)) = next else { return };
        state = s;
        path.push(action);
    }
}
