//! Running a check: strategy, progress lines while it runs, a plain summary, and readable
//! counterexample traces.

use crate::properties;
use crate::system::{Action, SysState, System};
use crate::walk;
use stateright::report::{ReportData, ReportDiscovery, Reporter};
use stateright::{Checker, Expectation, HasDiscoveries, Model, Path};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write;
use std::time::{Duration, Instant};

/// How the state space is explored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Strategy {
    /// Depth-first, complete within the bounds, little memory (default).
    Dfs,
    /// Breadth-first: shortest counterexamples with one thread; memory grows with the frontier.
    Bfs,
    /// Seeded random walks (for spaces too large to exhaust); replayable by seed.
    Random,
}

#[derive(Clone, Debug)]
pub struct RunOptions {
    pub strategy: Strategy,
    pub threads: usize,
    /// Explore only paths of at most this many steps (incomplete exploration).
    pub depth: Option<usize>,
    /// Stop after this long (incomplete exploration when it triggers).
    pub timeout: Option<Duration>,
    pub seed: u64,
    /// Print progress lines every few seconds.
    pub progress: bool,
    /// Stop as soon as any `always` property is violated (for hunting bugs).
    pub stop_at_violation: bool,
    /// Symmetry reduction over servers (honoured by DFS only).
    pub symmetry: bool,
    /// Random walks: stop after this many walks.
    pub max_walks: Option<u64>,
}

impl Default for RunOptions {
    fn default() -> RunOptions {
        RunOptions {
            strategy: Strategy::Dfs,
            threads: 2,
            depth: None,
            timeout: None,
            seed: 0,
            progress: false,
            stop_at_violation: false,
            symmetry: false,
            max_walks: None,
        }
    }
}

/// The verdict on one property.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PropertyStatus {
    Held,
    Violated { trace: Vec<Action> },
    Reached { trace: Vec<Action> },
    NotReached,
}

/// What a check found.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub unique_states: usize,
    pub total_states: usize,
    pub max_depth: usize,
    pub elapsed: Duration,
    /// The bounded space was explored completely (no depth bound, no timeout, no early stop).
    pub complete: bool,
    pub properties: Vec<(&'static str, PropertyStatus)>,
}

impl Outcome {
    pub fn status(&self, name: &str) -> Option<&PropertyStatus> {
        self.properties.iter().find(|(n, _)| *n == name).map(|(_, s)| s)
    }

    /// Every `always` held and every `sometimes` was reached.
    pub fn passed(&self) -> bool {
        self.properties.iter().all(|(_, s)| matches!(s, PropertyStatus::Held | PropertyStatus::Reached { .. }))
    }

    pub fn violations(&self) -> Vec<&'static str> {
        self.properties.iter().filter(|(_, s)| matches!(s, PropertyStatus::Violated { .. })).map(|(n, _)| *n).collect()
    }
}

struct Progress<'a> {
    out: &'a mut dyn Write,
    enabled: bool,
    last: Duration,
}

impl Reporter<System> for Progress<'_> {
    /// Called every `delay()` (kept short so a finished check is noticed at once); prints a
    /// line every 3 seconds.
    fn report_checking(&mut self, data: ReportData) {
        if self.enabled && !data.done && data.duration >= self.last + Duration::from_secs(3) {
            self.last = data.duration;
            let secs = data.duration.as_secs_f64();
            let _ = writeln!(
                self.out,
                "  {secs:6.1}s  states={:>11}  unique={:>10}  depth={:>3}  {:>8.0} unique/s",
                data.total_states,
                data.unique_states,
                data.max_depth,
                data.unique_states as f64 / secs.max(0.001)
            );
        }
    }

    fn report_discoveries(&mut self, _: &System, _: BTreeMap<&'static str, ReportDiscovery<System>>) {}

    fn delay(&self) -> Duration {
        Duration::from_millis(20)
    }
}

/// Runs a check of `system` and returns its outcome, printing progress to `out`.
pub fn check(system: &System, options: &RunOptions, out: &mut dyn Write) -> Outcome {
    if options.strategy == Strategy::Random {
        return random(system, options, out);
    }
    let mut builder = system.clone().checker().threads(options.threads.max(1));
    if let Some(depth) = options.depth {
        // Stateright gives the initial state depth 1 and skips (does not check) states at the
        // target depth, so the states `depth` steps away are at depth `depth + 1` and need a
        // target of `depth + 2`.
        builder = builder.target_max_depth(depth + 2);
    }
    if let Some(timeout) = options.timeout {
        builder = builder.timeout(timeout);
    }
    if options.stop_at_violation {
        builder = builder.finish_when(HasDiscoveries::AnyFailures);
    }
    if options.symmetry {
        builder = builder.symmetry_fn(if system.setup.delivery == crate::Delivery::Fifo {
            crate::symmetry::representative_fifo
        } else {
            crate::symmetry::representative_sorted
        });
    }
    let start = Instant::now();
    let mut progress = Progress { out, enabled: options.progress, last: Duration::ZERO };
    match options.strategy {
        Strategy::Bfs => finish(system, builder.spawn_bfs().report(&mut progress), options, start),
        _ => finish(system, builder.spawn_dfs().report(&mut progress), options, start),
    }
}

/// `trace` cut right after the first state that violates `always` property `p`. A checker
/// reports some path to a violating state, not necessarily one that stops there (stateright's
/// breadth-first search keeps the last violating state it checked, and may go on past it).
fn first_violation(system: &System, p: &stateright::Property<System>, trace: Vec<Action>) -> Vec<Action> {
    if p.expectation != Expectation::Always {
        return trace;
    }
    let mut state = system.initial_state();
    for (k, action) in trace.iter().enumerate() {
        match system.next_state(&state, action.clone()) {
            Some(next) => state = next,
            None => return trace,
        }
        if !(p.condition)(system, &state) {
            return trace[..=k].to_vec();
        }
    }
    trace
}

fn finish(system: &System, checker: impl Checker<System>, options: &RunOptions, start: Instant) -> Outcome {
    let elapsed = start.elapsed();
    let discoveries = checker.discoveries();
    let mut stopped_early = false;
    let properties = system
        .properties()
        .into_iter()
        .map(|p| {
            let found = discoveries.get(p.name).map(|path| path.clone().into_actions());
            let status = match (&p.expectation, found) {
                (Expectation::Always | Expectation::Eventually, Some(trace)) => {
                    stopped_early = true;
                    PropertyStatus::Violated { trace: first_violation(system, &p, trace) }
                }
                (Expectation::Sometimes, Some(trace)) => PropertyStatus::Reached { trace },
                (Expectation::Sometimes, None) => PropertyStatus::NotReached,
                (_, None) => PropertyStatus::Held,
            };
            (p.name, status)
        })
        .collect();
    let timed_out = options.timeout.is_some_and(|t| elapsed >= t);
    Outcome {
        unique_states: checker.unique_state_count(),
        total_states: checker.state_count(),
        max_depth: checker.max_depth().saturating_sub(1),
        elapsed,
        complete: options.depth.is_none() && !timed_out && !stopped_early,
        properties,
    }
}

fn random(system: &System, options: &RunOptions, out: &mut dyn Write) -> Outcome {
    let start = Instant::now();
    let depth = options.depth.unwrap_or(60);
    let duration = options.timeout.unwrap_or(Duration::from_secs(60));
    let enabled = options.progress;
    let report = walk::walk(system, options.seed, depth, duration, options.max_walks, |r| {
        if enabled {
            let secs = start.elapsed().as_secs_f64();
            let _ = writeln!(
                out,
                "  {secs:6.1}s  walks={:>9}  states={:>11}  {:>8.0} states/s",
                r.walks,
                r.states,
                r.states as f64 / secs
            );
        }
    });
    let properties = system
        .properties()
        .into_iter()
        .map(|p| {
            let violation = report.violations.iter().find(|(n, _)| *n == p.name);
            let status = match (&p.expectation, violation) {
                (Expectation::Sometimes, _) if report.reached.contains(p.name) => {
                    PropertyStatus::Reached { trace: Vec::new() }
                }
                (Expectation::Sometimes, _) => PropertyStatus::NotReached,
                (_, Some((_, trace))) => PropertyStatus::Violated { trace: first_violation(system, &p, trace.clone()) },
                (_, None) => PropertyStatus::Held,
            };
            (p.name, status)
        })
        .collect();
    if enabled {
        let _ = writeln!(out, "  {} walks", report.walks);
    }
    Outcome {
        unique_states: 0,
        total_states: usize::try_from(report.states).unwrap_or(usize::MAX),
        max_depth: report.max_depth,
        elapsed: start.elapsed(),
        complete: false,
        properties,
    }
}

/// A counterexample or example as text: each step's action, what each actor received and
/// did (the core's own `Display` of inputs and outputs), and the state it left.
pub fn describe_trace(system: &System, trace: &[Action]) -> String {
    let mut text = String::new();
    let mut state: SysState = system.initial_state();
    for (k, action) in trace.iter().enumerate() {
        let _ = writeln!(text, "step {}: {action}", k + 1);
        let mut log = Some(String::new());
        match system.apply(&state, action.clone(), &mut log) {
            Some(next) => state = next,
            None => {
                let _ = writeln!(text, "  (action not enabled: the trace does not replay)");
                break;
            }
        }
        for line in log.unwrap_or_default().lines() {
            let _ = writeln!(text, "  {line}");
        }
    }
    text
}

/// The violation detail of property `name` in the last state of `trace`, when `specs` gives one.
pub fn violation_detail(system: &System, name: &str, trace: &[Action]) -> Option<String> {
    if name == specs::LINEARIZABLE {
        let history = system.history_of(trace)?;
        return match specs::linearizability::check(&history, 1_000_000) {
            specs::linearizability::Verdict::NotLinearizable { key, detail } => {
                Some(format!("key {key:?}: {detail}\nhistory:\n{history}"))
            }
            _ => None,
        };
    }
    let path = Path::from_actions(system, system.initial_state(), trace)?;
    if name == specs::APPLIED_MONOTONIC {
        // A property of a step, not of a state: find the step that went back (not always the
        // last one: the flag stays down once a step lowered it).
        let states = path.into_states();
        return states.windows(2).enumerate().find_map(|(k, pair)| {
            let went_back = pair[0].nodes.iter().zip(&pair[1].nodes).find_map(|(b, a)| {
                let same_incarnation = b.up && a.up; // a crash resets the volatile state
                same_incarnation.then(|| specs::applied_monotonic(&b.server, &a.server).err()).flatten()
            })?;
            Some(format!("{went_back} (step {})", k + 1))
        });
    }
    properties::detail(name, path.last_state())
}
