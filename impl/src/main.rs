//! The `kvraft` command: run a server, talk to a cluster, start a local cluster, measure.

use clap::{Args, Parser, Subcommand};
use kvraft::bench::{self, BenchConfig, Mix, Stop};
use kvraft::config::{self, ClusterMap, Limits, ServerConfig, Timing};
use kvraft::{Clerk, ClerkConfig, LocalCluster, LocalOptions};
use model::{NodeId, Op, OpOutput};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Duration;

/// A fault-tolerant, linearizable key/value store on Raft.
#[derive(Parser, Debug)]
#[command(name = "kvraft", version, about, propagate_version = true)]
struct Cli {
    /// Log filter (tracing's syntax, e.g. `info`, `kvraft=debug`); RUST_LOG is used when unset.
    #[arg(long, global = true)]
    log: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run one server of a cluster.
    Server(ServerArgs),
    /// Read a key and print its value ("" when missing).
    Get(GetArgs),
    /// Set a key's value.
    Put(WriteArgs),
    /// Append to a key's value.
    Append(WriteArgs),
    /// Run a whole cluster on this machine in one process, until Ctrl-C.
    Local(LocalArgs),
    /// Closed-loop load against a cluster: throughput and latency percentiles.
    Bench(BenchArgs),
}

#[derive(Args, Debug, Clone)]
struct TimerArgs {
    /// Election timeout range; each timeout is drawn uniformly from it.
    #[arg(long, default_value = "300ms..600ms", value_parser = config::parse_duration_range)]
    election_timeout: (Duration, Duration),
    /// Leader heartbeat interval (at most half the minimum election timeout).
    #[arg(long, default_value = "50ms", value_parser = config::parse_duration)]
    heartbeat: Duration,
    /// Largest client request accepted, in bytes.
    #[arg(long, default_value_t = Limits::default().max_request_bytes)]
    max_request_bytes: usize,
    /// Most log entries carried by one AppendEntries.
    #[arg(long, default_value_t = Limits::default().max_entries_per_append)]
    max_entries_per_append: usize,
    /// Take a snapshot (and compact the log) when the persisted Raft state (term, vote and
    /// log, as encoded on disk) reaches BYTES, e.g. 1000, 64KiB, 4MiB. Default: never
    /// snapshot, so the write-ahead log grows without bound.
    #[arg(long, value_name = "BYTES", value_parser = config::parse_max_raft_state)]
    max_raft_state: Option<u64>,
    /// Largest snapshot (about the size of the key/value data) a server writes, reads or sends
    /// in one InstallSnapshot message. A server whose snapshot outgrows it stops with an error
    /// saying so; restart it with a larger limit.
    #[arg(long, value_name = "BYTES", default_value_t = Limits::default().max_snapshot_bytes, value_parser = config::parse_bytes_usize)]
    max_snapshot_bytes: usize,
}

impl TimerArgs {
    fn timing(&self) -> Timing {
        Timing {
            election_min: self.election_timeout.0,
            election_max: self.election_timeout.1,
            heartbeat: self.heartbeat,
        }
    }

    fn limits(&self) -> Limits {
        Limits {
            max_request_bytes: self.max_request_bytes,
            max_entries_per_append: self.max_entries_per_append,
            max_raft_state: self.max_raft_state,
            max_snapshot_bytes: self.max_snapshot_bytes,
            ..Limits::default()
        }
    }
}

#[derive(Args, Debug)]
struct ServerArgs {
    /// This server's node id (a key of --cluster).
    #[arg(long)]
    id: u32,
    /// Every member's peer address: ID=HOST:PORT,...
    #[arg(long, value_parser = config::parse_cluster)]
    cluster: ClusterMap,
    /// Address for clerks.
    #[arg(long)]
    client_addr: SocketAddr,
    /// Data directory (created if missing; locked while the server runs).
    #[arg(long)]
    data: PathBuf,
    /// Cluster id; servers and clients of other clusters are refused.
    #[arg(long, default_value_t = 1)]
    cluster_id: u64,
    #[command(flatten)]
    timers: TimerArgs,
}

#[derive(Args, Debug, Clone)]
struct ClientArgs {
    /// Every server's client address: ID=HOST:PORT,...
    #[arg(long, value_parser = config::parse_cluster)]
    cluster: ClusterMap,
    /// Cluster id the servers must have.
    #[arg(long, default_value_t = 1)]
    cluster_id: u64,
    /// Ask the next server when one does not answer within this time.
    #[arg(long, default_value = "1s", value_parser = config::parse_duration)]
    retry_timeout: Duration,
    /// Give up after this long (0: keep trying).
    #[arg(long, default_value = "10s", value_parser = config::parse_duration)]
    timeout: Duration,
}

impl ClientArgs {
    fn clerk_config(&self) -> ClerkConfig {
        let mut c = ClerkConfig::new(self.cluster_id, self.cluster.clone());
        c.retry_timeout = self.retry_timeout;
        c.deadline = (!self.timeout.is_zero()).then_some(self.timeout);
        c
    }
}

#[derive(Args, Debug)]
struct GetArgs {
    key: String,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args, Debug)]
struct WriteArgs {
    key: String,
    value: String,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args, Debug)]
struct LocalArgs {
    /// Number of servers.
    #[arg(long, default_value_t = 3)]
    nodes: u32,
    /// Keep data in DIR/node-N (and find it there next time); default: a temporary directory
    /// removed on exit.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Client ports are BASE+N, peer ports BASE+100+N; 0 picks free ports.
    #[arg(long, default_value_t = 7000)]
    base_port: u16,
    #[arg(long, default_value_t = 1)]
    cluster_id: u64,
    #[command(flatten)]
    timers: TimerArgs,
}

#[derive(Args, Debug)]
struct BenchArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Concurrent clerks, each with one operation in flight.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Operation mix as weights, e.g. get=50,put=50 or append=1.
    #[arg(long, default_value = "put=1", value_parser = Mix::parse)]
    mix: Mix,
    /// Number of distinct keys (chosen uniformly).
    #[arg(long, default_value_t = 1000)]
    keys: usize,
    /// Key length in bytes.
    #[arg(long, default_value_t = 16)]
    key_size: usize,
    /// Value length in bytes.
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Run for this long (unless --ops is given).
    #[arg(long, default_value = "10s", value_parser = config::parse_duration)]
    duration: Duration,
    /// Run this many operations in total instead of a duration.
    #[arg(long)]
    ops: Option<u64>,
    /// Before a timed run, run this long without measuring.
    #[arg(long, default_value = "1s", value_parser = config::parse_duration)]
    warmup: Duration,
    /// Write every operation to FILE (JSON Lines, see docs/history-format.md).
    #[arg(long)]
    history: Option<PathBuf>,
}

fn init_logging(filter: Option<&str>, default: &str) {
    let filter =
        filter.map(str::to_string).or_else(|| std::env::var("RUST_LOG").ok()).unwrap_or_else(|| default.to_string());
    let filter =
        tracing_subscriber::EnvFilter::try_new(&filter).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_log = match cli.command {
        Command::Server(_) | Command::Local(_) => "info",
        _ => {
            // A one-shot command piped into `head` ends quietly when the pipe closes, as Unix
            // tools do, instead of panicking in `println!`. (Servers keep Rust's default, where
            // a closed pipe is an error to handle; every socket write passes MSG_NOSIGNAL.)
            sigpipe::reset();
            "warn"
        }
    };
    init_logging(cli.log.as_deref(), default_log);
    let result = match cli.command {
        Command::Server(args) => run_server(args),
        Command::Get(args) => run_op(&args.client, Op::Get { key: args.key }),
        Command::Put(args) => run_op(&args.client, Op::Put { key: args.key, value: args.value }),
        Command::Append(args) => run_op(&args.client, Op::Append { key: args.key, value: args.value }),
        Command::Local(args) => run_local(&args),
        Command::Bench(args) => run_bench(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(reason) => {
            eprintln!("kvraft: error: {reason}");
            ExitCode::FAILURE
        }
    }
}

/// A channel that receives one message per Ctrl-C.
fn ctrl_c() -> Result<mpsc::Receiver<()>, String> {
    let (tx, rx) = mpsc::channel();
    ctrlc::set_handler(move || {
        let _ = tx.send(());
    })
    .map_err(|e| format!("cannot handle Ctrl-C: {e}"))?;
    Ok(rx)
}

fn run_server(args: ServerArgs) -> Result<(), String> {
    let config = ServerConfig {
        id: NodeId(args.id),
        cluster_id: args.cluster_id,
        members: args.cluster,
        client_addr: args.client_addr,
        data_dir: args.data,
        timing: args.timers.timing(),
        limits: args.timers.limits(),
        faults: kvraft::Faults::default(),
    };
    let interrupted = ctrl_c()?;
    let handle = kvraft::start(config).map_err(|e| e.to_string())?;
    loop {
        match interrupted.recv_timeout(Duration::from_millis(200)) {
            Ok(()) => break,
            Err(mpsc::RecvTimeoutError::Timeout) if !handle.is_finished() => {}
            Err(_) => break,
        }
    }
    handle.stop().map_err(|e| e.to_string())
}

fn run_op(args: &ClientArgs, op: Op) -> Result<(), String> {
    let mut clerk = Clerk::new(args.clerk_config());
    match clerk.call(op).map_err(|e| e.to_string())? {
        OpOutput::Value(v) => println!("{v}"),
        OpOutput::Done => {}
    }
    Ok(())
}

fn run_local(args: &LocalArgs) -> Result<(), String> {
    let options = LocalOptions {
        nodes: args.nodes,
        cluster_id: args.cluster_id,
        data: args.data.clone(),
        base_port: args.base_port,
        timing: args.timers.timing(),
        limits: args.timers.limits(),
        ..LocalOptions::default()
    };
    options.timing.validate()?;
    options.limits.validate()?;
    let interrupted = ctrl_c()?;
    let mut cluster = LocalCluster::start(options).map_err(|e| e.to_string())?;
    println!(
        "kvraft local: {} servers of cluster {}, data in {}",
        args.nodes,
        cluster.cluster_id(),
        cluster.data_root().display()
    );
    for (id, addr) in cluster.client_addrs() {
        println!("  {id}: clients {addr}, peers {}", cluster.peer_addrs()[id]);
    }
    let list = config::format_cluster(cluster.client_addrs());
    println!("try:   kvraft put hello world --cluster {list}");
    println!("       kvraft get hello --cluster {list}");
    println!("Ctrl-C stops the cluster.");
    loop {
        match interrupted.recv_timeout(Duration::from_millis(200)) {
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let dead: Vec<NodeId> = cluster
                    .running()
                    .into_iter()
                    .filter(|&id| cluster.server(id).is_some_and(kvraft::ServerHandle::is_finished))
                    .collect();
                if !dead.is_empty() {
                    let errors = cluster.stop_all();
                    let why: Vec<String> = errors.iter().map(|(id, e)| format!("{id}: {e}")).collect();
                    return Err(format!("a server stopped: {}", why.join("; ")));
                }
            }
        }
    }
    println!("stopping");
    let errors = cluster.stop_all();
    match errors.first() {
        None => Ok(()),
        Some((id, e)) => Err(format!("{id}: {e}")),
    }
}

fn run_bench(args: &BenchArgs) -> Result<(), String> {
    if args.keys == 0 || args.clients == 0 {
        return Err("--keys and --clients must be positive".into());
    }
    let config = BenchConfig {
        clerk: args.client.clerk_config(),
        clients: args.clients,
        mix: args.mix,
        keys: args.keys,
        key_size: args.key_size,
        value_size: args.value_size,
        stop: args.ops.map_or(Stop::After(args.duration), Stop::Ops),
        warmup: args.warmup,
        record: args.history.is_some(),
    };
    let history_file = match &args.history {
        Some(path) => Some(std::fs::File::create(path).map_err(|e| format!("cannot create {}: {e}", path.display()))?),
        None => None,
    };
    let report = bench::run(&config);
    println!(
        "{} clients, mix get={} put={} append={}, {} keys, {}-byte keys, {}-byte values",
        args.clients, args.mix.get, args.mix.put, args.mix.append, args.keys, args.key_size, args.value_size
    );
    println!("{report}");
    if let (Some(file), Some(path)) = (history_file, &args.history) {
        kvraft::history::write_jsonl(std::io::BufWriter::new(file), &report.history)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        println!("history: {} operations in {}", report.history.len(), path.display());
    }
    Ok(())
}
