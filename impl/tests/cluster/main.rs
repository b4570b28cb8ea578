//! Real servers on ephemeral loopback ports with temporary data directories: the clerk, leader
//! failure, restart from disk, WAL damage, handshake refusal, bad frames, the bench's history,
//! the CLI, and log compaction (bounded disk, restart from snapshots, a follower catching up
//! by InstallSnapshot).
//!
//! The tests run one at a time (a shared lock): they are about correctness under generous
//! timing, on a machine that may be busy. Waits are for conditions, with deadlines.

use kvraft::bench::{self, BenchConfig, Mix, Stop};
use kvraft::frame::{self, DialError, Dialer, Hello};
use kvraft::history::{self, Clock, TimedOp};
use kvraft::storage::{self, Identity, Storage, StorageError, RECORD_HEADER_LEN};
use kvraft::{Clerk, LocalCluster, LocalOptions, ServerConfig, ServerError};
use model::{NodeId, Op};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, MutexGuard};
use std::time::{Duration, Instant};

#[path = "../common/mod.rs"]
mod common;

/// Runs tests one at a time (see `common::serial`).
fn serial() -> MutexGuard<'static, ()> {
    common::serial("info")
}

const LONG: Duration = Duration::from_secs(30);

fn start(nodes: u32) -> LocalCluster {
    let cluster = LocalCluster::start(LocalOptions { nodes, ..LocalOptions::default() }).expect("cluster starts");
    cluster.wait_for_leader(LONG).expect("a leader is elected");
    cluster
}

/// A clerk that gives up after 30 s, so that a broken cluster fails the test instead of
/// hanging it.
fn clerk(cluster: &LocalCluster) -> Clerk {
    let mut config = cluster.clerk_config();
    config.deadline = Some(LONG);
    Clerk::new(config)
}

fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn wal_path(cluster: &LocalCluster, id: NodeId) -> PathBuf {
    cluster.data_dir(id).join("wal-00000000000000000001.log")
}

fn assert_linearizable(ops: &[TimedOp]) {
    let verdict = specs::check_timed(ops, 5_000_000);
    assert!(verdict.is_linearizable(), "{verdict}");
}

#[test]
fn put_append_get_through_the_clerk() {
    let _serial = serial();
    let cluster = start(3);
    let mut a = clerk(&cluster);
    let mut b = clerk(&cluster);
    assert_ne!(a.id(), b.id());
    assert_eq!(a.get("missing").unwrap(), "");
    a.put("x", "1").unwrap();
    a.append("x", "2").unwrap();
    b.append("x", "3").unwrap();
    assert_eq!(b.get("x").unwrap(), "123");
    a.put("x", "fresh").unwrap();
    assert_eq!(b.get("x").unwrap(), "fresh");
    a.append("new", "a").unwrap();
    assert_eq!(a.get("new").unwrap(), "a");
    let empty_key = "";
    a.put(empty_key, "v").unwrap();
    assert_eq!(b.get(empty_key).unwrap(), "v");
}

/// Three clerks append unique tokens to one key while the leader is stopped: every acknowledged
/// append is in the final value exactly once, nothing is there twice, and the recorded history
/// is linearizable.
#[test]
fn the_workload_survives_the_leaders_death() {
    let _serial = serial();
    let mut cluster = start(3);
    let leader = cluster.leader().expect("leader");
    let clock = Clock::new();
    let done = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..3)
        .map(|w| {
            let mut config = cluster.clerk_config();
            config.deadline = Some(LONG);
            let done = Arc::clone(&done);
            std::thread::spawn(move || {
                let mut clerk = Clerk::new(config);
                let mut ops = Vec::new();
                for n in 0..40 {
                    let op = if n % 5 == 4 {
                        Op::Get { key: "log".into() }
                    } else {
                        Op::Append { key: "log".into(), value: format!("[{w}.{n}]") }
                    };
                    let (record, result) = history::timed_call(&mut clerk, &clock, op);
                    result.expect("the clerk keeps trying until the cluster answers");
                    ops.push(record);
                    done.fetch_add(1, Ordering::SeqCst);
                }
                ops
            })
        })
        .collect();
    wait_until("a third of the workload is done", LONG, || done.load(Ordering::SeqCst) >= 40);
    cluster.stop_server(leader).expect("the leader stops cleanly");
    let ops: Vec<TimedOp> = workers.into_iter().flat_map(|w| w.join().expect("worker")).collect();
    assert_eq!(ops.len(), 120);
    let new_leader = cluster.wait_for_leader(LONG).expect("a new leader");
    assert_ne!(new_leader, leader);

    let value = clerk(&cluster).get("log").unwrap();
    for op in &ops {
        if let Op::Append { value: token, .. } = &op.op {
            assert_eq!(value.matches(token.as_str()).count(), 1, "{token} in {value}");
        }
    }
    assert_eq!(value.matches('[').count(), 96, "only the appends made, each once: {value}");
    assert_linearizable(&ops);
}

fn write_some(cluster: &LocalCluster, n: usize) {
    let mut c = clerk(cluster);
    for i in 0..n {
        c.put(&format!("k{i}"), &format!("v{i}")).unwrap();
        c.append("all", &format!("{i},")).unwrap();
    }
}

fn check_some(cluster: &LocalCluster, n: usize) {
    let mut c = clerk(cluster);
    for i in 0..n {
        assert_eq!(c.get(&format!("k{i}")).unwrap(), format!("v{i}"));
    }
    let all: String = (0..n).map(|i| format!("{i},")).collect();
    assert_eq!(c.get("all").unwrap(), all);
}

fn restart_all(cluster: &mut LocalCluster) {
    let errors = cluster.stop_all();
    assert!(errors.is_empty(), "{errors:?}");
    for id in 1..=3 {
        cluster.restart_server(NodeId(id)).expect("restarts from disk");
    }
    cluster.wait_for_leader(LONG).expect("a leader after restart");
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

mod cli;
mod connections;
mod durability;
mod snapshots;
