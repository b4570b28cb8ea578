//! `cargo run --release -p checker [-- [check|explore|bugs|simulate] OPTIONS]`: explore kvraft's core
//! exhaustively and say whether Get/Put/Append stay linearizable and execute at most once.

use checker::run::{self, PropertyStatus, RunOptions, Strategy};
use checker::{Delivery, Setup, System};
use clap::Parser;
use std::process::ExitCode;
use std::time::Duration;

/// Model-check kvraft's Raft + key/value core: every interleaving of messages, timeouts,
/// losses and crashes within the bounds, against linearizability, at-most-once execution and
/// the Raft safety invariants. With no options: the default suite of configurations.
#[derive(Parser, Debug)]
#[command(name = "checker", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    check: CheckArgs,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Explore and report (what `checker` does without a command).
    Check(CheckArgs),
    /// Serve stateright's web explorer for the same configuration.
    Explore {
        #[command(flatten)]
        check: CheckArgs,
        /// Port of the web explorer (on 127.0.0.1).
        #[arg(long, default_value_t = 3000)]
        port: u16,
    },
    /// The bug zoo (needs `--features bugs`): run every broken variant in the smallest
    /// configuration that exposes it and print a table.
    Bugs {
        /// Only this bug, with its configuration and counterexample.
        #[arg(long)]
        bug: Option<model::Bug>,
    },
    /// The deterministic simulator: the course's Raft and kvraft tests in virtual time, under
    /// labrpc's faults, on the real core; a seed replays exactly.
    Simulate(simulator::cli::SimulateArgs),
}

/// The configuration explored and how: the options of `check` and `explore`.
#[derive(clap::Args, Debug, Clone)]
struct CheckArgs {
    /// Number of servers.
    #[arg(long, default_value_t = 3)]
    servers: u32,
    /// Number of clerks (clients), each running its own script.
    #[arg(long, default_value_t = 2)]
    clerks: u32,
    /// Operations per clerk: odd clerks Append then Get, alternately; even clerks Get then Put.
    #[arg(long, default_value_t = 1)]
    ops: u32,
    /// Keys the scripts use (1 or 2).
    #[arg(long, default_value_t = 1)]
    keys: u32,
    /// How the network delivers: `reorder` (any order, once), `duplicate` (any order, any number
    /// of times), `fifo` (in order per link, once).
    #[arg(long, value_enum, default_value = "reorder")]
    delivery: Delivery,
    /// Messages are never lost (by default any message may be lost).
    #[arg(long)]
    no_loss: bool,
    /// Server crashes allowed along one path (each crashed server may restart).
    #[arg(long, default_value_t = 1)]
    max_crashes: u32,
    /// Highest term explored.
    #[arg(long, default_value_t = 2)]
    max_term: u64,
    /// Election timeouts allowed along one path, over all servers (default: bounded by
    /// --max-term only).
    #[arg(long)]
    max_elections: Option<u32>,
    /// Only these servers' election timers fire, a comma-separated list of ids such as
    /// `1,3` (default: every server's). The others vote and follow but never stand: a bound
    /// that keeps a search to the rivalry it is about.
    #[arg(long, value_delimiter = ',')]
    candidates: Option<Vec<u32>>,
    /// Longest log explored.
    #[arg(long, default_value_t = 3)]
    max_log: u64,
    /// Clerks never time out (they still retry on WrongLeader).
    #[arg(long)]
    no_clerk_timeouts: bool,
    /// Leaders never send heartbeats (only client requests make them send AppendEntries).
    #[arg(long)]
    no_heartbeats: bool,
    /// Exploration strategy.
    #[arg(long, value_enum, default_value = "dfs")]
    strategy: Strategy,
    /// Worker threads (dfs, bfs).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Explore paths of at most this many steps only (exploration is then incomplete;
    /// random walks default to 60).
    #[arg(long)]
    depth: Option<usize>,
    /// Stop after this many seconds (random walks default to 60).
    #[arg(long)]
    timeout: Option<u64>,
    /// Random walks: stop after this many walks.
    #[arg(long)]
    walks: Option<u64>,
    /// Seed of the random walks.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The most entries one AppendEntries carries (default: the core's 64).
    #[arg(long)]
    max_entries_per_append: Option<usize>,
    /// Servers take a snapshot once their durable Raft state (term, vote, log) reaches this
    /// many bytes; 1 snapshots after every applied entry (default: never).
    #[arg(long)]
    max_raft_state: Option<u64>,
    /// Switch on a deliberately broken rule of the core (needs `--features bugs`); the names
    /// are those of `model::Bug` (listed by `checker bugs` and in docs/bug-zoo.md).
    #[arg(long)]
    bug: Option<model::Bug>,
    /// Symmetry reduction over servers (depth-first only): explore one state per class of
    /// states that differ only by renaming servers.
    #[arg(long)]
    symmetry: bool,
    /// Switch off the state-space reductions (the canonical history summary, loss folded into
    /// timers, removal of dead messages): the same behaviours, explored as they are, in more
    /// states. For comparing verdicts and sizes (docs/checker.md, "Reductions").
    #[arg(long)]
    unreduced: bool,
    /// Run a suite of configurations instead of one: `default` (what `checker` alone runs, a
    /// few minutes), `deep` (long: four of its six runs do not end within 10 minutes each, so
    /// give it a `--timeout` per run; docs/checker.md has the sizes) or `figure8` (Raft's
    /// Figure 8 in four terms, under a minute). The configuration options are then
    /// ignored; strategy, threads, depth, timeout, seed and symmetry apply to every run.
    #[arg(long, value_enum)]
    suite: Option<checker::suite::Which>,
    /// Stop at the first violated property instead of exploring everything.
    #[arg(long)]
    stop_at_violation: bool,
}

impl CheckArgs {
    fn setup(&self) -> Result<Setup, String> {
        if let (Some(bug), false) = (self.bug, model::BUGS_COMPILED) {
            return Err(format!("--bug {bug} needs the broken variants compiled in: cargo run --release -p checker --features bugs -- --bug {bug}"));
        }
        let setup = Setup {
            servers: self.servers,
            clerks: self.clerks,
            ops_per_clerk: self.ops,
            keys: self.keys,
            delivery: self.delivery,
            lossy: !self.no_loss,
            max_crashes: self.max_crashes,
            max_term: self.max_term,
            max_elections: self.max_elections,
            candidates: self.candidates.as_ref().map(|c| c.iter().copied().map(model::NodeId).collect()),
            max_log: self.max_log,
            clerk_timeouts: !self.no_clerk_timeouts,
            heartbeats: !self.no_heartbeats,
            max_raft_state: self.max_raft_state,
            max_entries_per_append: self.max_entries_per_append,
            bug: self.bug,
            reductions: if self.unreduced { checker::Reductions::NONE } else { checker::Reductions::ALL },
        };
        setup.validate()?;
        Ok(setup)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Some(Command::Explore { .. })) {
        // `checker | head` ends quietly when the pipe closes, as Unix tools do, instead of
        // panicking in `println!`. The explorer, a web server, keeps Rust's default.
        sigpipe::reset();
    }
    let (args, port) = match cli.command {
        Some(Command::Simulate(args)) => return simulator::cli::main(args),
        Some(Command::Bugs { bug }) => return bug_zoo(bug),
        Some(Command::Explore { check, port }) => (check, Some(port)),
        Some(Command::Check(check)) => (check, None),
        None => (cli.check, None),
    };
    if args.symmetry && args.strategy != Strategy::Dfs {
        eprintln!("checker: --symmetry works with --strategy dfs only (stateright ignores it otherwise)");
        return ExitCode::from(2);
    }
    // `checker` or `checker check` alone: the default suite.
    let plain = std::env::args_os().skip(1).all(|a| a == "check");
    if plain {
        return suite(&args, checker::suite::Which::Default);
    }
    if let (Some(which), None) = (args.suite, port) {
        return suite(&args, which);
    }
    let setup = match args.setup() {
        Ok(setup) => setup,
        Err(reason) => {
            eprintln!("checker: {reason}");
            return ExitCode::from(2);
        }
    };
    let system = System::new(setup);
    match port {
        Some(port) => explore(&system, port),
        None => check(&system, &args),
    }
}

/// `checker bugs`: every bug hunted in its own configuration, and a table of what caught it.
fn bug_zoo(only: Option<model::Bug>) -> ExitCode {
    if !model::BUGS_COMPILED {
        eprintln!("checker: the bug zoo needs the broken variants compiled in: cargo run --release -p checker --features bugs -- bugs");
        return ExitCode::from(2);
    }
    let mut cases = checker::bugs::catalog();
    if let Some(bug) = only {
        cases.retain(|c| c.bug == bug);
    }
    // "NOT CAUGHT (…)" is 13 characters longer than the property's name.
    let width = cases.iter().map(|c| c.property.len() + 13).max().unwrap_or(0).max("caught by".len());
    println!("{:<26} {:<width$} {:>6} {:>11} {:>8}  how", "bug", "caught by", "steps", "states", "seconds");
    let mut missed = 0;
    for case in &cases {
        let finding = checker::bugs::hunt(case);
        let o = &finding.outcome;
        let how = match case.options.strategy {
            Strategy::Random => format!("random walks, seed {}", case.options.seed),
            Strategy::Bfs => "breadth-first".to_string(),
            Strategy::Dfs => "depth-first".to_string(),
        };
        let states = if o.unique_states > 0 { o.unique_states } else { o.total_states };
        let steps = finding.trace().map_or_else(|| "-".to_string(), |t| t.len().to_string());
        let caught = if finding.trace().is_some() {
            case.property.to_string()
        } else {
            format!("NOT CAUGHT ({})", case.property)
        };
        missed += usize::from(finding.trace().is_none());
        println!(
            "{:<26} {caught:<width$} {:>6} {:>11} {:>8.1}  {how}",
            case.bug.name(),
            steps,
            states,
            o.elapsed.as_secs_f64()
        );
        if only.is_some() {
            if let Some(trace) = finding.trace() {
                println!("\n{}\nCounterexample ({} steps):", finding.case.setup, trace.len());
                let system = System::new(checker::Setup { bug: Some(case.bug), ..case.setup.clone() });
                print!("{}", run::describe_trace(&system, trace));
                if let Some(detail) = run::violation_detail(&system, case.property, trace) {
                    println!("violated: {detail}");
                }
            }
        }
    }
    if missed > 0 {
        println!("\n{missed} bug(s) not caught");
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

fn explore(system: &System, port: u16) -> ExitCode {
    use stateright::Model;
    println!("{}", system.setup);
    println!("serving the explorer on http://127.0.0.1:{port}/ (Ctrl-C stops)");
    system.clone().checker().serve(("127.0.0.1", port));
    ExitCode::SUCCESS
}

/// A suite (`checker` with no options: the default one; `--suite deep`: the long one): every
/// run exhaustive within its bounds. The first violation ends the suite at once, with its
/// counterexample (the runs after it are not started); otherwise the summary says, per
/// property, whether it held in all runs and where each interesting state was first reached.
fn suite(cli: &CheckArgs, which: checker::suite::Which) -> ExitCode {
    let runs = checker::suite::runs(which);
    let goals = checker::suite::goals(which);
    let mut reached: Vec<(&'static str, String)> = Vec::new();
    let mut names: Vec<(&'static str, bool)> = Vec::new();
    let mut incomplete = false;
    let started = std::time::Instant::now();
    for (k, (title, setup)) in runs.iter().enumerate() {
        println!("=== run {} of {}: {title}", k + 1, runs.len());
        let system = System::new(setup.clone());
        let (outcome, ok) = check_one(&system, &CheckArgs { stop_at_violation: true, ..cli.clone() });
        if !ok {
            println!("\nstopped at the first violation: runs {} to {} were not started", k + 2, runs.len());
            return ExitCode::from(1);
        }
        incomplete |= !outcome.complete;
        for (name, status) in &outcome.properties {
            let is_sometimes = matches!(status, PropertyStatus::Reached { .. } | PropertyStatus::NotReached);
            if !names.iter().any(|(n, _)| n == name) {
                names.push((name, is_sometimes));
            }
            if matches!(status, PropertyStatus::Reached { .. }) && !reached.iter().any(|(n, _)| n == name) {
                reached.push((name, format!("run {}", k + 1)));
            }
        }
        println!();
    }
    println!("=== summary of {} runs, {:.1}s", runs.len(), started.elapsed().as_secs_f64());
    let mut failed = incomplete;
    for (name, is_sometimes) in &names {
        if *is_sometimes {
            match reached.iter().find(|(n, _)| n == name) {
                Some((_, run)) => println!("  {:>11}  {name} (first in {run})", "reached"),
                None if goals.is_some_and(|g| !g.contains(name)) => {
                    println!("  {:>11}  {name} (not a goal of this suite)", "not reached");
                }
                None => {
                    failed = true;
                    println!("  {:>11}  {name}", "NOT REACHED");
                }
            }
        } else {
            println!("  {:>11}  {name}", "held");
        }
    }
    if incomplete {
        println!("\nsome run was INCOMPLETE (see above): 'held' means 'not violated in what was explored'");
    }
    if failed {
        return ExitCode::from(1);
    }
    let sought = if goals.is_some() { "every 'sometimes' goal of this suite" } else { "every 'sometimes'" };
    println!("\nAll properties hold in every run, and {sought} was reached.");
    ExitCode::SUCCESS
}

fn check(system: &System, cli: &CheckArgs) -> ExitCode {
    let (outcome, ok) = check_one(system, cli);
    if !ok || !outcome.passed() {
        return ExitCode::from(1);
    }
    if !outcome.complete {
        return ExitCode::from(3);
    }
    println!("\nAll properties hold and every 'sometimes' was reached.");
    ExitCode::SUCCESS
}

/// Runs one configuration, prints its summary and any counterexample; `true` when no `always`
/// property was violated.
fn check_one(system: &System, cli: &CheckArgs) -> (run::Outcome, bool) {
    let options = RunOptions {
        strategy: cli.strategy,
        threads: cli.threads,
        depth: cli.depth,
        timeout: cli.timeout.map(Duration::from_secs),
        seed: cli.seed,
        progress: true,
        stop_at_violation: cli.stop_at_violation,
        symmetry: cli.symmetry,
        max_walks: cli.walks,
    };
    println!("Checking {}", system.setup);
    let strategy = match options.strategy {
        Strategy::Dfs if options.symmetry => {
            format!("depth-first, {} thread(s), symmetry over servers", options.threads)
        }
        Strategy::Dfs => format!("depth-first, {} thread(s)", options.threads),
        Strategy::Bfs => format!("breadth-first, {} thread(s)", options.threads),
        Strategy::Random => format!("random walks, seed {}", options.seed),
    };
    println!("strategy: {strategy}");
    let outcome = run::check(system, &options, &mut std::io::stdout());
    println!();
    let rate = outcome.unique_states as f64 / outcome.elapsed.as_secs_f64().max(0.001);
    println!(
        "{} unique states, {} total, max depth {}, {:.1}s ({rate:.0} unique states/s)",
        outcome.unique_states,
        outcome.total_states,
        outcome.max_depth,
        outcome.elapsed.as_secs_f64()
    );
    if !outcome.complete {
        println!("exploration INCOMPLETE (depth bound, timeout, random walks or stopped at a violation): 'held' means 'not violated in what was explored'");
    }
    for (name, status) in &outcome.properties {
        let verdict = match status {
            PropertyStatus::Held => "held",
            PropertyStatus::Violated { .. } => "VIOLATED",
            PropertyStatus::Reached { .. } => "reached",
            PropertyStatus::NotReached => "NOT REACHED",
        };
        println!("  {verdict:>11}  {name}");
    }
    for (name, status) in &outcome.properties {
        if let PropertyStatus::Violated { trace } = status {
            println!("\nCounterexample for \"{name}\" ({} steps):", trace.len());
            print!("{}", run::describe_trace(system, trace));
            if let Some(detail) = run::violation_detail(system, name, trace) {
                println!("violated: {detail}");
            }
        }
    }
    let ok = outcome.violations().is_empty();
    (outcome, ok)
}
