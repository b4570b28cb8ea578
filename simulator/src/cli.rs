//! `checker simulate`: runs scenarios over seeds, a progress line per run, a summary table,
//! and for each failure the reason, the last events and the replay command.

use super::{all, find, run, seconds, Failure, Scenario, ScenarioOptions};
use std::process::ExitCode;
use std::time::Duration;

/// Run the course's kvraft (and some Raft) tests in the deterministic simulator: virtual time,
/// labrpc's fault model, the real core, every invariant after every step, linearizability at
/// the end. The same seed replays the same run exactly.
#[derive(clap::Args, Debug)]
pub struct SimulateArgs {
    /// Scenarios to run (repeat or separate with commas; default: all). `--list` names them.
    #[arg(long, value_delimiter = ',')]
    scenario: Vec<String>,
    /// Runs per scenario, with seeds SEED, SEED+1, ...
    #[arg(long, default_value_t = 1)]
    seeds: u64,
    /// The first seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Switch on a deliberately broken rule of the core (needs `--features bugs`).
    #[arg(long)]
    bug: Option<model::Bug>,
    /// Print every event and the core's output (for replaying one seed).
    #[arg(long)]
    trace: bool,
    /// List the scenarios and the course tests they port.
    #[arg(long)]
    list: bool,
}

#[derive(Default)]
struct Row {
    runs: u64,
    passed: u64,
    failed: u64,
    virtual_us: u64,
    real: Duration,
    ops: u64,
}

/// The entry point of `checker simulate`.
pub fn main(cli: SimulateArgs) -> ExitCode {
    if cli.list {
        for s in all() {
            println!("{:<68} {}", s.name, s.lab);
        }
        return ExitCode::SUCCESS;
    }
    let scenarios = match chosen(&cli.scenario) {
        Ok(scenarios) => scenarios,
        Err(reason) => {
            eprintln!("checker simulate: {reason}");
            return ExitCode::from(2);
        }
    };
    if let (Some(bug), false) = (cli.bug, model::BUGS_COMPILED) {
        eprintln!("checker simulate: --bug {bug} needs the broken variants compiled in: cargo run --release -p checker --features bugs -- simulate --bug {bug} ...");
        return ExitCode::from(2);
    }
    let options = ScenarioOptions { bug: cli.bug, verbose: cli.trace };
    let mut rows: Vec<(&'static str, Row)> = Vec::new();
    let mut failures = Vec::new();
    for scenario in &scenarios {
        rows.push((scenario.name, run_seeds(scenario, &cli, &options, &mut failures)));
    }
    print_summary(&rows);
    if failures.is_empty() {
        return ExitCode::SUCCESS;
    }
    println!("\n{} failed run(s); replay with:", failures.len());
    for f in &failures {
        println!("  {}", f.replay_command());
    }
    ExitCode::from(1)
}

/// The scenarios named on the command line, or every scenario when none is.
fn chosen(names: &[String]) -> Result<Vec<Scenario>, String> {
    if names.is_empty() {
        return Ok(all());
    }
    names
        .iter()
        .map(|name| find(name).ok_or_else(|| format!("unknown scenario {name:?} (--list names them)")))
        .collect()
}

/// Runs `scenario` for each of the command line's seeds, printing a line per run; failed runs
/// are added to `failures`.
fn run_seeds(scenario: &Scenario, cli: &SimulateArgs, options: &ScenarioOptions, failures: &mut Vec<Failure>) -> Row {
    let mut row = Row::default();
    for seed in cli.seed..cli.seed.saturating_add(cli.seeds) {
        row.runs += 1;
        match run(scenario, seed, options) {
            Ok(r) => {
                row.passed += 1;
                row.virtual_us += r.virtual_time;
                row.real += r.real_time;
                row.ops += r.stats.ops;
                let notes = if r.notes.is_empty() { String::new() } else { format!("  [{}]", r.notes.join("; ")) };
                let lin = if r.linearizability == "linearizable" {
                    String::new()
                } else {
                    format!("  [{}]", r.linearizability)
                };
                println!(
                    "{:<40} seed {seed:<5} ok {:>12} virtual {:>6.2} s real {:>6} ops {:>7} steps {:>3} leaders {:>5}/{:<3} snapshots taken/installed {:>4} full checks  hash {:016x}{lin}{notes}",
                    scenario.name,
                    seconds(r.virtual_time),
                    r.real_time.as_secs_f64(),
                    r.stats.ops,
                    r.stats.server_steps,
                    r.stats.elections,
                    r.stats.snapshots_taken,
                    r.stats.snapshots_installed,
                    r.stats.full_checks,
                    r.trace_hash
                );
            }
            Err(f) => {
                row.failed += 1;
                println!("{:<40} seed {seed:<5} FAILED: {}", scenario.name, f.reason.lines().next().unwrap_or(""));
                println!("{f}");
                failures.push(f);
            }
        }
    }
    row
}

fn print_summary(rows: &[(&'static str, Row)]) {
    println!();
    println!(
        "{:<66} {:>5} {:>6} {:>6} {:>11} {:>9} {:>9}",
        "scenario", "seeds", "passed", "failed", "virtual s", "real s", "ops"
    );
    let mut total = Row::default();
    for (name, r) in rows {
        print_row(name, r);
        total.runs += r.runs;
        total.passed += r.passed;
        total.failed += r.failed;
        total.virtual_us += r.virtual_us;
        total.real += r.real;
        total.ops += r.ops;
    }
    print_row("total", &total);
}

fn print_row(name: &str, r: &Row) {
    println!(
        "{name:<66} {:>5} {:>6} {:>6} {:>11.1} {:>9.2} {:>9}",
        r.runs,
        r.passed,
        r.failed,
        r.virtual_us as f64 / 1e6,
        r.real.as_secs_f64(),
        r.ops
    );
}
