//! A deterministic simulator: a whole cluster and its clerks in one thread, in virtual time
//! (integer microseconds), driven by one seeded RNG, running the course's kvraft tests
//! (docs/lab-tests.md, "Lab 3 kvraft tests") and a few of its Raft tests ("Lab 2 Raft tests"
//! there) with their setups, faults, durations and assertions — in a fraction of a second per
//! test, and the same way every time for a seed.
//!
//! - [`world`]: the cluster (event queue, servers through `model::step`, clerks through
//!   `model::clerk_step`, crashes, links, invariants after every step, the history).
//! - [`links`]: labrpc's fault model for messages.
//! - [`workload`]: the course's client loops and append checks.
//! - [`kv`], [`raft`], [`raft_concurrent`], [`raft_persist`], [`raft_snap`]: the scenarios; [`scenarios`] lists them.
//! - [`cli`]: `checker simulate` (the checker's binary hands its arguments to [`cli::main`]).
//!
//! A run ends with a full invariant check and the linearizability check of its whole history
//! (per key, bounded; an inconclusive search fails the run unless the scenario allows it).
//! A failure names the scenario, the seed and the reason, shows the last events, and prints
//! the command that replays it exactly.
//!
//! # Choices
//! - **Timers.** Election timeouts are drawn from U[300, 600) ms at every arming (the runtime's
//!   range): at least three heartbeats, so a follower starts an election only after three
//!   heartbeats in a row are lost or late, and short enough that split votes still resolve well
//!   within the course's "elect within 5 s" (`checkOneLeader` passes in every scenario).
//!   Heartbeats every 100 ms: the course's "at most 10 heartbeats per second" (the runtime uses
//!   50 ms). Clerks retry after 250 ms without an answer (docs/lab-tests.md, "Messages instead
//!   of RPCs", suggests 100-500 ms: labrpc fails a call to a dead end within 100 ms, a message
//!   never fails, so the clerk's timer stands for it; it is longer than an operation's usual
//!   latency even on the unreliable network, so retries mostly follow real losses).
//! - **Delays.** Every message takes U[1, 5) ms (a LAN hop plus the sender's fsync); that
//!   keeps an operation at about 11 ms (TestSpeed's bound is 33.3 ms) and the operation
//!   counts within a few times the handout's. See [`links`] for the unreliable model.
//! - **Randomness.** One `StdRng` (ChaCha12, rand 0.9 pinned in Cargo.lock) per run, seeded
//!   with the seed; draws happen in event order only, so a seed replays exactly on any machine
//!   with the same build (the trace hash is the witness).
//! - **Invariants.** See [`world::Sim`]'s `step_server` and [`Sim::full_check`]: per step the
//!   O(1) checks, on the events that can break them the O(committed) ones, and everything
//!   (`specs::check_all`) at checkpoints and on a cadence proportional to the state's size.
//!   Measured: full checks take 12-18% of a run, snapshot-content checks on change about 10%
//!   where snapshots are frequent.

#![forbid(unsafe_code)]

pub mod cli;
pub mod kv;
pub mod links;
pub mod raft;
pub mod raft_concurrent;
pub mod raft_persist;
pub mod raft_snap;
pub mod scenarios;
pub mod trace;
pub mod workload;
pub mod world;

pub use scenarios::{all, find, Scenario};
pub use world::{Sim, SimConfig, SimResult, Stats};

use model::Bug;
use specs::Verdict;
use std::fmt;
use std::time::{Duration, Instant};

/// Virtual time, in microseconds since the start of a run.
pub type Micros = u64;
pub const MS: Micros = 1_000;
pub const SEC: Micros = 1_000_000;

/// Search steps per key for the final linearizability check (porcupine has 1 s), unless the
/// scenario says otherwise.
pub const LINEARIZABILITY_BUDGET: u64 = 2_000_000;

/// How to run a scenario, beyond its seed.
#[derive(Clone, Debug, Default)]
pub struct ScenarioOptions {
    /// A deliberately broken core (needs the `bugs` feature).
    pub bug: Option<Bug>,
    /// Print every event and the core's output.
    pub verbose: bool,
}

/// A run that passed.
#[derive(Clone, Debug)]
pub struct Report {
    pub scenario: &'static str,
    pub seed: u64,
    pub virtual_time: Micros,
    pub real_time: Duration,
    pub stats: Stats,
    pub trace_hash: u64,
    /// "linearizable", or why the check was inconclusive and allowed.
    pub linearizability: String,
    /// Figures and warnings the scenario reports.
    pub notes: Vec<String>,
}

/// A run that failed.
#[derive(Clone, Debug)]
pub struct Failure {
    pub scenario: &'static str,
    pub seed: u64,
    pub bug: Option<Bug>,
    pub reason: String,
    /// Virtual time of the failure.
    pub at: Micros,
    pub trace_hash: u64,
    /// The last events before the failure.
    pub recent: Vec<String>,
}

impl Failure {
    /// The one command that replays this run exactly.
    pub fn replay_command(&self) -> String {
        match self.bug {
            None => {
                format!("cargo run --release -p checker -- simulate --scenario {} --seed {}", self.scenario, self.seed)
            }
            Some(bug) => format!(
                "cargo run --release -p checker --features bugs -- simulate --scenario {} --seed {} --bug {bug}",
                self.scenario, self.seed
            ),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bug = self.bug.map(|b| format!(" (core built with bug {b})")).unwrap_or_default();
        writeln!(f, "scenario {} seed {} FAILED at {} virtual{bug}:", self.scenario, self.seed, seconds(self.at))?;
        for line in self.reason.lines() {
            writeln!(f, "  {line}")?;
        }
        writeln!(f, "last events (trace hash so far {:016x}):", self.trace_hash)?;
        for line in &self.recent {
            writeln!(f, "  {line}")?;
        }
        write!(f, "replay: {}", self.replay_command())
    }
}

/// `12.345678 s`.
pub fn seconds(t: Micros) -> String {
    format!("{}.{:06} s", t / SEC, t % SEC)
}

/// Runs `scenario` with `seed`.
///
/// # Errors
/// A [`Failure`] naming the scenario, the seed and the reason.
pub fn run(scenario: &Scenario, seed: u64, options: &ScenarioOptions) -> Result<Report, Failure> {
    let mut cfg = scenario.config();
    cfg.bug = options.bug;
    let started = Instant::now();
    let mut sim = Sim::new(cfg, seed);
    sim.verbose = options.verbose;
    let outcome = scenario.body(&mut sim).and_then(|()| {
        sim.full_check()?;
        match sim.linearizability(scenario.budget) {
            Verdict::Linearizable => Ok("linearizable".to_string()),
            Verdict::Unknown { key } if scenario.unknown_allowed => {
                Ok(format!("unknown on key {key:?} (search budget exhausted; allowed by this scenario)"))
            }
            Verdict::Unknown { key } => Err(format!(
                "linearizability unknown: the search on key {key:?} ran out of its budget of {} steps",
                scenario.budget
            )),
            v @ Verdict::NotLinearizable { .. } => Err(v.violation().map_or_else(|| v.to_string(), |x| x.to_string())),
        }
    });
    match outcome {
        Ok(linearizability) => Ok(Report {
            scenario: scenario.name,
            seed,
            virtual_time: sim.now(),
            real_time: started.elapsed(),
            stats: sim.stats().clone(),
            trace_hash: sim.trace_hash(),
            linearizability,
            notes: std::mem::take(&mut sim.notes),
        }),
        Err(reason) => Err(Failure {
            scenario: scenario.name,
            seed,
            bug: options.bug,
            reason,
            at: sim.now(),
            trace_hash: sim.trace_hash(),
            recent: sim.recent_events(),
        }),
    }
}
