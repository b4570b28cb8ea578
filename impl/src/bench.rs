//! Closed-loop load: N clerks, each with one operation in flight, for a duration or an
//! operation count; reports throughput and latency percentiles, and can record the history.

use crate::clerk::{Clerk, ClerkConfig};
use crate::history::{self, Clock, TimedOp};
use model::Op;
use rand::Rng;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Relative weights of the operation kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mix {
    pub get: u32,
    pub put: u32,
    pub append: u32,
}

impl Mix {
    /// Parses `get=50,put=50` (kinds left out weigh 0).
    ///
    /// # Errors
    /// A one-line reason.
    pub fn parse(s: &str) -> Result<Mix, String> {
        let mut mix = Mix { get: 0, put: 0, append: 0 };
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (kind, weight) = part.split_once('=').unwrap_or((part, "1"));
            let weight: u32 = weight.trim().parse().map_err(|_| format!("bad weight in {part:?}"))?;
            match kind.trim() {
                "get" => mix.get = weight,
                "put" => mix.put = weight,
                "append" => mix.append = weight,
                other => return Err(format!("unknown operation {other:?} in the mix: use get, put, append")),
            }
        }
        if mix.get + mix.put + mix.append == 0 {
            return Err("the operation mix is empty".into());
        }
        Ok(mix)
    }

    /// Which kind the draw `r` picks: 0 get, 1 put, 2 append, in proportion to the weights.
    #[must_use]
    pub fn pick(&self, r: u32) -> usize {
        let r = r % (self.get + self.put + self.append);
        if r < self.get {
            0
        } else if r < self.get + self.put {
            1
        } else {
            2
        }
    }
}

/// When the run ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    After(Duration),
    Ops(u64),
}

#[derive(Clone, Debug)]
pub struct BenchConfig {
    pub clerk: ClerkConfig,
    pub clients: usize,
    pub mix: Mix,
    pub keys: usize,
    pub key_size: usize,
    pub value_size: usize,
    pub stop: Stop,
    /// With [`Stop::After`]: run this long first without measuring (connections, leader
    /// discovery, caches). The history still records these operations.
    pub warmup: Duration,
    /// Keep every operation for a history file.
    pub record: bool,
}

/// What a run measured.
#[derive(Clone, Debug)]
pub struct BenchReport {
    pub completed: u64,
    /// Operations abandoned at the clerk's deadline.
    pub failed: u64,
    pub elapsed: Duration,
    /// Latencies of completed operations, sorted, in nanoseconds.
    pub latencies: Vec<u64>,
    pub history: Vec<TimedOp>,
}

impl BenchReport {
    #[must_use]
    pub fn ops_per_sec(&self) -> f64 {
        self.completed as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The latency at quantile `q` (0..=1), in milliseconds.
    #[must_use]
    pub fn percentile_ms(&self, q: f64) -> f64 {
        if self.latencies.is_empty() {
            return 0.0;
        }
        let rank = (q * self.latencies.len() as f64).ceil() as usize;
        let k = rank.clamp(1, self.latencies.len()) - 1;
        self.latencies[k] as f64 / 1e6
    }
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} ops in {:.2}s: {:.0} ops/s ({} failed)",
            self.completed,
            self.elapsed.as_secs_f64(),
            self.ops_per_sec(),
            self.failed
        )?;
        write!(
            f,
            "latency ms: p50 {:.3}  p99 {:.3}  p999 {:.3}  max {:.3}",
            self.percentile_ms(0.5),
            self.percentile_ms(0.99),
            self.percentile_ms(0.999),
            self.percentile_ms(1.0)
        )
    }
}

/// The name of key number `k`, `size` bytes long (`k0…042`).
#[must_use]
pub fn key_name(k: usize, size: usize) -> String {
    let digits = size.saturating_sub(1).max(1);
    format!("k{k:0digits$}")
}

/// A value of `size` bytes that no other operation of the run uses (so a history shows exactly
/// which write a read saw): `w<worker>.<n>.` padded with `x`.
#[must_use]
pub fn value(worker: usize, n: u64, size: usize) -> String {
    let mut v = format!("w{worker}.{n}.");
    if v.len() < size {
        v.extend(std::iter::repeat_n('x', size - v.len()));
    }
    v
}

struct Worker {
    completed: u64,
    failed: u64,
    latencies: Vec<u64>,
    history: Vec<TimedOp>,
}

/// Runs the load and returns what it measured.
///
/// # Panics
/// If a worker thread panics.
#[must_use]
pub fn run(config: &BenchConfig) -> BenchReport {
    let clock = Clock::new();
    let stop = Arc::new(AtomicBool::new(false));
    let issued = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let warmup = match config.stop {
        Stop::After(_) => config.warmup,
        Stop::Ops(_) => Duration::ZERO,
    };
    let measure_from = clock.now_ns() + i64::try_from(warmup.as_nanos()).unwrap_or(i64::MAX);
    let workers: Vec<_> = (0..config.clients.max(1))
        .map(|w| {
            let (config, stop, issued) = (config.clone(), Arc::clone(&stop), Arc::clone(&issued));
            std::thread::spawn(move || work(w, &config, clock, measure_from, &stop, &issued))
        })
        .collect();
    let mut measured = None;
    if let Stop::After(d) = config.stop {
        std::thread::sleep(warmup + d);
        stop.store(true, Ordering::SeqCst);
        measured = Some(d);
    }
    let mut report =
        BenchReport { completed: 0, failed: 0, elapsed: Duration::ZERO, latencies: Vec::new(), history: Vec::new() };
    for w in workers {
        let w = w.join().expect("bench worker panicked");
        report.completed += w.completed;
        report.failed += w.failed;
        report.latencies.extend(w.latencies);
        report.history.extend(w.history);
    }
    report.elapsed = measured.unwrap_or_else(|| start.elapsed());
    report.latencies.sort_unstable();
    report
}

fn work(
    w: usize,
    config: &BenchConfig,
    clock: Clock,
    measure_from: i64,
    stop: &AtomicBool,
    issued: &AtomicU64,
) -> Worker {
    let mut clerk = Clerk::new(config.clerk.clone());
    let mut rng = rand::rng();
    let mut out = Worker { completed: 0, failed: 0, latencies: Vec::new(), history: Vec::new() };
    for n in 0.. {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        if let Stop::Ops(total) = config.stop {
            if issued.fetch_add(1, Ordering::Relaxed) >= total {
                break;
            }
        }
        let key = key_name(rng.random_range(0..config.keys.max(1)), config.key_size);
        let op = match config.mix.pick(rng.random()) {
            0 => Op::Get { key },
            1 => Op::Put { key, value: value(w, n, config.value_size) },
            _ => Op::Append { key, value: value(w, n, config.value_size) },
        };
        let (record, result) = history::timed_call(&mut clerk, &clock, op);
        match (result, record.ret) {
            _ if record.call < measure_from => {}
            (Ok(_), Some(ret)) => {
                out.completed += 1;
                out.latencies.push(u64::try_from(ret - record.call).unwrap_or(0));
            }
            _ => out.failed += 1,
        }
        if config.record {
            out.history.push(record);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixes_parse_and_pick() {
        let mix = Mix::parse("get=1,put=3").unwrap();
        assert_eq!(mix, Mix { get: 1, put: 3, append: 0 });
        let picks: Vec<usize> = (0..4).map(|r| mix.pick(r)).collect();
        assert_eq!(picks, vec![0, 1, 1, 1]);
        assert!(Mix::parse("delete=1").is_err());
        assert!(Mix::parse("get=0").is_err());
    }

    #[test]
    fn keys_and_values_have_their_sizes() {
        assert_eq!(key_name(42, 16).len(), 16);
        assert_eq!(value(3, 17, 100).len(), 100);
        assert_ne!(value(3, 17, 100), value(3, 18, 100));
    }

    #[test]
    fn percentiles_pick_ranks() {
        let r = BenchReport {
            completed: 1000,
            failed: 0,
            elapsed: Duration::from_secs(1),
            latencies: (1..=1000).map(|k| k * 1_000_000).collect(),
            history: Vec::new(),
        };
        assert!((r.percentile_ms(0.5) - 500.0).abs() < 1e-9);
        assert!((r.percentile_ms(0.99) - 990.0).abs() < 1e-9);
        assert!((r.percentile_ms(0.999) - 999.0).abs() < 1e-9);
    }
}
