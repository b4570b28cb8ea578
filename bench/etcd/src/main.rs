//! `etcd-bench`: closed-loop load against an etcd cluster that measures what `kvraft bench`
//! measures (impl/src/bench.rs in the kvraft workspace), with the same options and the same
//! three output lines, so the two can be compared back to back.
//!
//! - N clients, each with its own connection (its own `etcd_client::Client`, hence its own
//!   gRPC channel and TCP connection) and one operation in flight, one tokio task each, on a
//!   multi-threaded runtime with 2 worker threads.
//! - All clients talk to the leader only (as kvraft's clerks do): the leader is found with the
//!   Maintenance/Status API (a member whose status says `leader == its own member id`), falling
//!   back to the Cluster/MemberList API for the leader's client URL.
//! - Gets are linearizable (etcd's default, `serializable = false`); puts are plain puts.
//!   etcd has no append, so a mix with `append` is refused.
//! - Keys `k000…0`..`k…999` (uniform), values unique per operation, both padded to the given
//!   sizes exactly as kvraft does. Every key is written once before the run, so gets hit.
//! - Operations that *start* during the warm-up are not measured; after warm-up + duration no
//!   new operation starts, operations in flight finish and count, and the rate is
//!   completed / duration. Percentiles are nearest-rank over all measured latencies.

use clap::Parser;
use etcd_client::{Client, ConnectOptions};
use kvraft::bench::{key_name, value, BenchReport as Report, Mix};
use kvraft::config::parse_duration;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Closed-loop load against an etcd cluster: throughput and latency percentiles.
#[derive(Parser, Debug)]
#[command(name = "etcd-bench", version, about)]
struct Args {
    /// Client URLs of the cluster's members, comma-separated; the load goes to the leader only.
    #[arg(long, env = "ETCD_ENDPOINTS", value_delimiter = ',', default_value = "http://127.0.0.1:2379")]
    endpoints: Vec<String>,
    /// Concurrent clients, each with its own connection and one operation in flight.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Operation mix as weights, e.g. get=50,put=50 (etcd has no append).
    #[arg(long, default_value = "put=1", value_parser = parse_mix)]
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
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Run this many operations in total instead of a duration.
    #[arg(long)]
    ops: Option<u64>,
    /// Before a timed run, run this long without measuring.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    warmup: Duration,
    /// Give up on one operation after this long and count it as failed.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,
    /// Do not write every key once before the run.
    #[arg(long)]
    no_populate: bool,
}

/// kvraft's mix syntax, without append (etcd has none).
fn parse_mix(s: &str) -> Result<Mix, String> {
    let mix = Mix::parse(s)?;
    if mix.append > 0 {
        return Err("etcd has no append operation: use get and put only (compare kvraft's append=1 with put=1 here)".into());
    }
    Ok(mix)
}

fn with_scheme(endpoint: &str) -> String {
    if endpoint.contains("://") {
        endpoint.to_string()
    } else {
        format!("http://{endpoint}")
    }
}

fn connect_options(timeout: Duration) -> ConnectOptions {
    ConnectOptions::new().with_connect_timeout(Duration::from_secs(2)).with_timeout(timeout)
}

/// The client URL of the current leader: the first endpoint whose own member id is the leader
/// its Status reports; failing that, the leader's first client URL from MemberList. Retries for
/// up to 10 s while there is no leader.
async fn find_leader(endpoints: &[String]) -> Result<(String, u64), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last_error = String::from("no endpoint answered");
    loop {
        let mut fallback: Option<(String, u64)> = None;
        for ep in endpoints {
            let mut client = match Client::connect([ep.as_str()], Some(connect_options(Duration::from_secs(2)))).await {
                Ok(c) => c,
                Err(e) => {
                    last_error = format!("{ep}: {e}");
                    continue;
                }
            };
            let status = match client.status().await {
                Ok(s) => s,
                Err(e) => {
                    last_error = format!("{ep}: status: {e}");
                    continue;
                }
            };
            let leader = status.leader();
            let me = status.header().map_or(0, |h| h.member_id());
            if leader == 0 {
                last_error = format!("{ep}: no leader");
                continue;
            }
            if me == leader {
                return Ok((ep.clone(), leader));
            }
            if fallback.is_none() {
                if let Ok(members) = client.member_list().await {
                    if let Some(url) = members.members().iter().find(|m| m.id() == leader).and_then(|m| m.client_urls().first()) {
                        fallback = Some((url.clone(), leader));
                    }
                }
            }
        }
        if let Some(found) = fallback {
            return Ok(found);
        }
        if Instant::now() >= deadline {
            return Err(format!("cannot find the leader: {last_error}"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Writes every key once, 32 at a time over one connection.
async fn populate(leader: &str, args: &Args) -> Result<(), String> {
    let client = Client::connect([leader], Some(connect_options(args.timeout)))
        .await
        .map_err(|e| format!("populate: connect to {leader}: {e}"))?;
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let (mut client, next) = (client.clone(), Arc::clone(&next));
        let (keys, key_size, value_size) = (args.keys as u64, args.key_size, args.value_size);
        tasks.spawn(async move {
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= keys {
                    return Ok::<(), String>(());
                }
                let key = key_name(k as usize, key_size);
                client.put(key.clone(), value(usize::MAX, k, value_size), None).await.map_err(|e| format!("populate: put {key}: {e}"))?;
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.map_err(|e| format!("populate task: {e}"))??;
    }
    Ok(())
}

struct Worker {
    completed: u64,
    failed: u64,
    latencies: Vec<u64>,
}

struct Shared {
    leader: String,
    mix: Mix,
    keys: usize,
    key_size: usize,
    value_size: usize,
    timeout: Duration,
    ops: Option<u64>,
    measure_from: Instant,
    stop: AtomicBool,
    issued: AtomicU64,
    reported_error: AtomicBool,
}

async fn work(w: usize, s: Arc<Shared>) -> Worker {
    let mut out = Worker { completed: 0, failed: 0, latencies: Vec::new() };
    let mut rng = StdRng::from_os_rng();
    let mut client = loop {
        match Client::connect([s.leader.as_str()], Some(connect_options(s.timeout))).await {
            Ok(c) => break c,
            Err(e) => {
                report_error(&s, &format!("connect to {}: {e}", s.leader));
                if s.stop.load(Ordering::Relaxed) {
                    return out;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    for n in 0.. {
        if s.stop.load(Ordering::Relaxed) {
            break;
        }
        if let Some(total) = s.ops {
            if s.issued.fetch_add(1, Ordering::Relaxed) >= total {
                break;
            }
        }
        let key = key_name(rng.random_range(0..s.keys.max(1)), s.key_size);
        let get = s.mix.pick(rng.random()) == 0;
        let call = Instant::now();
        let result = if get {
            tokio::time::timeout(s.timeout, client.get(key, None)).await.map(|r| r.map(drop))
        } else {
            let v = value(w, n, s.value_size);
            tokio::time::timeout(s.timeout, client.put(key, v, None)).await.map(|r| r.map(drop))
        };
        let latency = call.elapsed();
        let ok = match result {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                report_error(&s, &e.to_string());
                false
            }
            Err(_) => {
                report_error(&s, &format!("no answer within {:?}", s.timeout));
                false
            }
        };
        if call >= s.measure_from {
            if ok {
                out.completed += 1;
                out.latencies.push(u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX));
            } else {
                out.failed += 1;
            }
        }
        if !ok {
            // Do not spin on an error that comes back at once (e.g. a refused connection).
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    out
}

fn report_error(s: &Shared, what: &str) {
    if !s.reported_error.swap(true, Ordering::Relaxed) {
        eprintln!("etcd-bench: first failed operation: {what}");
    }
}

async fn run(args: &Args) -> Result<Report, String> {
    let endpoints: Vec<String> = args.endpoints.iter().map(|e| e.trim()).filter(|e| !e.is_empty()).map(with_scheme).collect();
    if endpoints.is_empty() {
        return Err("no --endpoints".into());
    }
    let (leader, leader_id) = find_leader(&endpoints).await?;
    eprintln!("etcd-bench: leader is member {leader_id:x} at {leader}");
    if !args.no_populate {
        populate(&leader, args).await?;
    }
    let warmup = if args.ops.is_some() { Duration::ZERO } else { args.warmup };
    let start = Instant::now();
    let shared = Arc::new(Shared {
        leader,
        mix: args.mix,
        keys: args.keys,
        key_size: args.key_size,
        value_size: args.value_size,
        timeout: args.timeout,
        ops: args.ops,
        measure_from: start + warmup,
        stop: AtomicBool::new(false),
        issued: AtomicU64::new(0),
        reported_error: AtomicBool::new(false),
    });
    let tasks: Vec<_> = (0..args.clients).map(|w| tokio::spawn(work(w, Arc::clone(&shared)))).collect();
    let mut measured = None;
    if args.ops.is_none() {
        tokio::time::sleep_until((start + warmup + args.duration).into()).await;
        shared.stop.store(true, Ordering::SeqCst);
        measured = Some(args.duration);
    }
    let mut report = Report { completed: 0, failed: 0, elapsed: Duration::ZERO, latencies: Vec::new(), history: Vec::new() };
    for t in tasks {
        let w = t.await.map_err(|e| format!("a client task failed: {e}"))?;
        report.completed += w.completed;
        report.failed += w.failed;
        report.latencies.extend(w.latencies);
    }
    report.elapsed = measured.unwrap_or_else(|| start.elapsed());
    report.latencies.sort_unstable();
    Ok(report)
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.keys == 0 || args.clients == 0 {
        eprintln!("etcd-bench: error: --keys and --clients must be positive");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("etcd-bench: error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&args)) {
        Ok(report) => {
            println!(
                "{} clients, mix get={} put={}, {} keys, {}-byte keys, {}-byte values",
                args.clients, args.mix.get, args.mix.put, args.keys, args.key_size, args.value_size
            );
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(reason) => {
            eprintln!("etcd-bench: error: {reason}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixes_parse_and_refuse_append() {
        assert_eq!(parse_mix("get=50,put=50").unwrap(), Mix { get: 50, put: 50, append: 0 });
        assert_eq!(parse_mix("put=1,append=0").unwrap(), Mix { get: 0, put: 1, append: 0 });
        assert!(parse_mix("append=1").unwrap_err().contains("no append"));
        assert!(parse_mix("get=0").is_err());
    }
}
