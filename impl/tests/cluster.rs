//! Real servers on ephemeral loopback ports with temporary data directories: the clerk, leader
//! failure, restart from disk, WAL damage, handshake refusal, bad frames, the bench's history,
//! the CLI, and log compaction (bounded disk, restart from snapshots, a follower catching up
//! by InstallSnapshot).
//!
//! The tests run one at a time (a shared lock): they are about correctness under generous
//! timing, on a machine that may be busy. Waits are for conditions, with deadlines.

use kvraft::bench::{self, BenchConfig, Mix, Stop};
use kvraft::frame::{self, DialError, Dialer, Hello};
use kvraft::history::{self, Clock, HistoryOp};
use kvraft::storage::{self, Identity, Storage, StorageError, RECORD_HEADER_LEN};
use kvraft::{Clerk, LocalCluster, LocalOptions, ServerConfig, ServerError};
use model::{NodeId, Op};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, MutexGuard};
use std::time::{Duration, Instant};

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

fn to_timed(ops: &[HistoryOp]) -> Vec<specs::TimedOp> {
    common::to_timed(ops)
}

fn assert_linearizable(ops: &[HistoryOp]) {
    let verdict = specs::check_timed(&to_timed(ops), 5_000_000);
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
    let ops: Vec<HistoryOp> = workers.into_iter().flat_map(|w| w.join().expect("worker")).collect();
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

#[test]
fn every_acknowledged_write_survives_a_full_restart() {
    let _serial = serial();
    let mut cluster = start(3);
    write_some(&cluster, 25);
    restart_all(&mut cluster);
    check_some(&cluster, 25);
    // And the restarted cluster keeps working, durably.
    let mut c = clerk(&cluster);
    c.append("all", "more").unwrap();
    restart_all(&mut cluster);
    assert!(clerk(&cluster).get("all").unwrap().ends_with("24,more"));
}

/// A record header that claims more payload than the file holds: what a crash in the middle of
/// a write leaves behind.
fn torn_record() -> Vec<u8> {
    let payload_len: u32 = 300;
    let mut header = Vec::new();
    header.extend_from_slice(&payload_len.to_le_bytes());
    header.extend_from_slice(&crc32fast::hash(&[7; 300]).to_le_bytes());
    let header_crc = crc32fast::hash(&header);
    header.extend_from_slice(&header_crc.to_le_bytes());
    assert_eq!(header.len(), RECORD_HEADER_LEN);
    header.extend_from_slice(&[7; 120]);
    header
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

#[test]
fn a_torn_wal_tail_is_cut_off_and_the_server_recovers() {
    let _serial = serial();
    let mut cluster = start(3);
    write_some(&cluster, 10);
    assert!(cluster.stop_all().is_empty());
    let wal = wal_path(&cluster, NodeId(1));
    let identity = Identity { cluster_id: cluster.cluster_id(), node: NodeId(1) };
    let limits = cluster.server_config(NodeId(1)).limits.storage();
    let open = || Storage::open(&cluster.data_dir(NodeId(1)), identity, limits).unwrap();
    let intact = open().0.records_end();
    // A write torn by a crash: a record cut short where the next record would go (over the
    // zero bytes written ahead of the records).
    let tear = || {
        let f = std::fs::OpenOptions::new().write(true).open(&wal).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&f, &torn_record(), intact).unwrap();
    };
    tear();
    let (storage, recovered) = open();
    drop(storage);
    let after = file_len(&wal);
    let (path, offset, removed) = recovered.torn.clone().expect("the torn record is found");
    assert_eq!((path, offset), (wal.clone(), intact));
    assert!(removed >= (RECORD_HEADER_LEN + 120) as u64, "{removed} bytes cut");
    assert_eq!(after, intact, "the file is cut at the torn record");
    assert!(recovered.records > 0);

    // Once more with the torn bytes, through a real server start.
    tear();
    for id in 1..=3 {
        cluster.restart_server(NodeId(id)).expect("restarts");
    }
    check_some(&cluster, 10);
}

#[test]
fn a_flipped_byte_inside_the_wal_is_refused_with_file_and_offset() {
    let _serial = serial();
    let mut cluster = start(3);
    write_some(&cluster, 20);
    assert!(cluster.stop_all().is_empty());
    let wal = wal_path(&cluster, NodeId(1));
    let identity = Identity { cluster_id: cluster.cluster_id(), node: NodeId(1) };
    let limits = cluster.server_config(NodeId(1)).limits.storage();
    let records_end = Storage::open(&cluster.data_dir(NodeId(1)), identity, limits).unwrap().0.records_end();
    let mut bytes = std::fs::read(&wal).unwrap();
    let middle = records_end as usize / 2;
    bytes[middle] ^= 0x5a;
    std::fs::write(&wal, &bytes).unwrap();

    let err = cluster.restart_server(NodeId(1)).expect_err("a corrupt log must stop the server");
    let message = err.to_string();
    assert!(message.contains(&wal.display().to_string()), "{message}");
    assert!(message.contains("offset"), "{message}");
    match err {
        ServerError::Storage(StorageError::Corrupt { file, offset, .. }) => {
            assert_eq!(file, wal);
            assert!(offset <= middle as u64 && offset + 4096 > middle as u64, "offset {offset}, flip at {middle}");
        }
        other => panic!("expected a corrupt-log error, got {other}"),
    }
    // Nothing was cut: the damage is still there for a person to look at.
    assert_eq!(std::fs::read(&wal).unwrap(), bytes);
    // The two healthy servers still form a majority.
    cluster.restart_server(NodeId(2)).unwrap();
    cluster.restart_server(NodeId(3)).unwrap();
    check_some(&cluster, 20);
}

#[test]
fn a_second_server_on_the_same_data_directory_is_refused() {
    let _serial = serial();
    let cluster = start(3);
    let config = cluster.server_config(NodeId(2));
    let any = || TcpListener::bind("127.0.0.1:0").unwrap();
    let err = kvraft::start_with_listeners(config, any(), any()).expect_err("the directory is locked");
    assert!(matches!(err, ServerError::Storage(StorageError::Locked { .. })), "{err}");
    assert!(err.to_string().contains("in use"), "{err}");
}

#[test]
fn a_peer_of_another_cluster_is_refused() {
    let _serial = serial();
    let mut cluster = start(3);
    let n1 = cluster.peer_addrs()[&NodeId(1)];
    let hello = Hello::new(99, Dialer::Peer { from: NodeId(2), to: NodeId(1) });
    match frame::dial(n1, &hello, NodeId(1), Duration::from_secs(5)) {
        Err(DialError::Refused(reason)) => assert!(reason.contains("cluster id 99"), "{reason}"),
        other => panic!("expected a refusal, got {other:?}"),
    }

    // A whole server of cluster 99 in node 3's place: its elections never reach nodes 1 and 2.
    cluster.stop_server(NodeId(3)).unwrap();
    let rogue_dir = tempfile::tempdir().unwrap();
    let rogue_config =
        ServerConfig { cluster_id: 99, data_dir: rogue_dir.path().to_path_buf(), ..cluster.server_config(NodeId(3)) };
    let rogue = start_retrying(rogue_config);
    cluster.wait_for_leader(LONG).expect("nodes 1 and 2 elect a leader");
    let term_of = |id: u32| cluster.statuses()[&NodeId(id)].term;
    let base = term_of(1).max(term_of(2));
    wait_until("the rogue ran three elections", LONG, || rogue.status().term >= base + 3);
    assert!(term_of(1) < rogue.status().term && term_of(2) < rogue.status().term, "rogue votes reached the cluster");
    assert_ne!(rogue.status().role, "leader");
    write_some(&cluster, 3);
    rogue.stop().unwrap();
}

/// Starts a server on its configured ports, which a stopped server may have just released.
fn start_retrying(config: ServerConfig) -> kvraft::ServerHandle {
    let deadline = Instant::now() + LONG;
    loop {
        match kvraft::start(config.clone()) {
            Ok(h) => return h,
            Err(ServerError::Bind { .. }) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => panic!("{e}"),
        }
    }
}

/// Reads until the server closes the connection; fails after 10 s.
fn assert_closed(mut s: TcpStream, what: &str) {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                panic!("{what}: the server did not close the connection")
            }
            Err(_) => return, // reset
        }
    }
}

fn bad_connections(addr: SocketAddr, hello: &Hello, node: NodeId) {
    let mut raw = TcpStream::connect(addr).unwrap();
    raw.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_closed(raw, "garbage instead of a hello");

    let mut s = frame::dial(addr, hello, node, Duration::from_secs(5)).unwrap();
    s.write_all(&u32::MAX.to_be_bytes()).unwrap();
    assert_closed(s, "an oversized frame");

    let mut s = frame::dial(addr, hello, node, Duration::from_secs(5)).unwrap();
    s.write_all(&[0, 0, 0, 6, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).unwrap();
    assert_closed(s, "an undecodable frame");
}

#[test]
fn bad_frames_close_that_connection_and_nothing_else() {
    let _serial = serial();
    let cluster = start(3);
    let mut c = clerk(&cluster);
    c.put("x", "before").unwrap();
    let leader = cluster.leader().unwrap();
    let term = cluster.statuses()[&leader].term;

    for id in [NodeId(1), NodeId(2), NodeId(3)] {
        let client = Hello::new(cluster.cluster_id(), Dialer::Client);
        bad_connections(cluster.client_addrs()[&id], &client, id);
        let other = if id == NodeId(1) { NodeId(2) } else { NodeId(1) };
        let peer = Hello::new(cluster.cluster_id(), Dialer::Peer { from: other, to: id });
        bad_connections(cluster.peer_addrs()[&id], &peer, id);
    }
    // The clerk's connection and the peer links were not disturbed.
    c.append("x", "+after").unwrap();
    assert_eq!(c.get("x").unwrap(), "before+after");
    assert_eq!(cluster.leader(), Some(leader));
    assert_eq!(cluster.statuses()[&leader].term, term, "no election was caused");
}

#[test]
fn a_clerk_gives_up_at_its_deadline_when_no_server_answers() {
    let _serial = serial();
    let dead: SocketAddr = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut config = kvraft::ClerkConfig::new(1, [(NodeId(1), dead)].into_iter().collect());
    config.deadline = Some(Duration::from_millis(500));
    let mut c = Clerk::new(config);
    let started = Instant::now();
    let err = c.put("k", "v").expect_err("nobody is there");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(err.to_string().contains("no answer"), "{err}");
}

#[test]
fn the_bench_history_is_linearizable() {
    let _serial = serial();
    let cluster = start(3);
    let mut clerk = cluster.clerk_config();
    clerk.deadline = Some(LONG);
    let config = BenchConfig {
        clerk,
        clients: 4,
        mix: Mix::parse("get=2,put=1,append=1").unwrap(),
        keys: 3,
        key_size: 4,
        value_size: 8,
        stop: Stop::Ops(300),
        warmup: Duration::ZERO,
        record: true,
    };
    let report = bench::run(&config);
    assert_eq!((report.completed, report.failed), (300, 0));
    assert_eq!(report.history.len(), 300);
    assert!(report.percentile_ms(0.5) <= report.percentile_ms(0.99));

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.jsonl");
    history::write_jsonl(std::fs::File::create(&path).unwrap(), &report.history).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let parsed: Vec<HistoryOp> = text.lines().map(parse_history_line).collect();
    assert_eq!(parsed.len(), 300);
    assert_linearizable(&parsed);
}

/// Reads one line of docs/history-format.md's format (strictly enough for what we write).
fn parse_history_line(line: &str) -> HistoryOp {
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    let s = |f: &str| v[f].as_str().map(str::to_string);
    let key = s("key").unwrap();
    let op = match v["op"].as_str().unwrap() {
        "get" => {
            assert!(v.get("value").is_none());
            Op::Get { key }
        }
        "put" => Op::Put { key, value: s("value").unwrap() },
        "append" => Op::Append { key, value: s("value").unwrap() },
        other => panic!("op {other}"),
    };
    assert!(v.get("return").is_some(), "return must be present: {line}");
    HistoryOp {
        client: v["client"].as_u64().unwrap(),
        op,
        output: s("output"),
        call: v["call"].as_i64().unwrap(),
        ret: v["return"].as_i64(),
    }
}

fn kvraft_cli(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_kvraft")).args(args).output().unwrap()
}

#[test]
fn the_cli_talks_to_a_cluster_and_explains_failures() {
    let _serial = serial();
    let cluster = start(3);
    let list = kvraft::config::format_cluster(cluster.client_addrs());
    for sub in ["server", "get", "put", "append", "local", "bench"] {
        let out = kvraft_cli(&[sub, "--help"]);
        assert!(out.status.success(), "{sub} --help");
    }
    assert!(kvraft_cli(&["put", "greeting", "hello", "--cluster", &list]).status.success());
    assert!(kvraft_cli(&["append", "greeting", " world", "--cluster", &list]).status.success());
    let out = kvraft_cli(&["get", "greeting", "--cluster", &list]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello world\n");

    let out = kvraft_cli(&["get", "greeting", "--cluster", &list, "--cluster-id", "5", "--timeout", "1s"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err.lines().last().unwrap_or_default();
    assert!(last.starts_with("kvraft: error: ") && last.contains("cluster id 5"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let out = kvraft_cli(&[
        "server",
        "--id",
        "4",
        "--cluster",
        "1=127.0.0.1:1",
        "--client-addr",
        "127.0.0.1:0",
        "--data",
        data,
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.trim_end().ends_with("is not in the cluster list 1=127.0.0.1:1"), "{err}");

    for sub in ["server", "local"] {
        let help = String::from_utf8_lossy(&kvraft_cli(&[sub, "--help"]).stdout).into_owned();
        assert!(help.contains("--max-raft-state <BYTES>") && help.contains("never snapshot"), "{sub}: {help}");
    }
    let server = ["server", "--id", "1", "--cluster", "1=127.0.0.1:1", "--client-addr", "127.0.0.1:0", "--data", data];
    let out = kvraft_cli(&[&server[..], &["--max-raft-state", "0"]].concat());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--max-raft-state must be at least 1 byte"), "{err}");
    let out = kvraft_cli(&["local", "--max-raft-state", "0"]);
    assert!(!out.status.success());
}

// ---- Snapshots: bounded disk, restart, catch-up by InstallSnapshot ----

/// Small enough that a server snapshots every 7 or 8 writes of the workload below.
const MAX_RAFT_STATE: u64 = 1000;
/// Writes of the workload: 100-byte values put to 20 keys, and a short token appended to
/// `trail` with every 10th put (so that at-most-once across snapshots is checked too).
const WRITES: usize = 2000;
const KEYS: usize = 20;
/// The bound on each data directory, at every sample. Why 64 KiB: the live data is about
/// 3 KiB (20 × 100-byte values, a ~1 KiB trail, the clerk's session), so the snapshot file is
/// about 3 KiB, and the WAL segment holds at most about `MAX_RAFT_STATE` plus one batch, and 16
/// KiB of zeros written ahead; during a rotation two of each exist for a moment: about 40 KiB
/// in all. Without compaction the WAL
/// alone would pass 64 KiB after about 500 of the 2,200 writes (~125 bytes per entry), and
/// reach ~270 KiB by the end; so the bound proves compaction, with room for timing.
const DISK_BOUND: u64 = 64 << 10;

fn start_compacting() -> LocalCluster {
    let mut options = LocalOptions { nodes: 3, ..LocalOptions::default() };
    options.limits.max_raft_state = Some(MAX_RAFT_STATE);
    let cluster = LocalCluster::start(options).expect("cluster starts");
    cluster.wait_for_leader(LONG).expect("a leader is elected");
    cluster
}

fn value(i: usize) -> String {
    let v = format!("{i:06}-{}", "x".repeat(93));
    debug_assert_eq!(v.len(), 100);
    v
}

/// The key/value data after writes `0..n` of the workload.
fn expected_data(n: usize) -> std::collections::BTreeMap<String, String> {
    let mut data = std::collections::BTreeMap::new();
    let mut trail = String::new();
    for i in 0..n {
        data.insert(format!("k{}", i % KEYS), value(i));
        if i % 10 == 0 {
            trail.push_str(&format!("{i},"));
        }
    }
    if !trail.is_empty() {
        data.insert("trail".to_string(), trail);
    }
    data
}

/// Bytes of the files in `dir` (a file removed while it is listed counts as gone).
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries.filter_map(|e| e.ok()?.metadata().ok()).filter(std::fs::Metadata::is_file).map(|m| m.len()).sum()
}

/// The largest data directory of the cluster right now.
fn largest_dir(cluster: &LocalCluster) -> (NodeId, u64) {
    (1..=3).map(|n| (NodeId(n), dir_bytes(&cluster.data_dir(NodeId(n))))).max_by_key(|&(_, b)| b).unwrap()
}

/// Writes `range` of the workload through one clerk, sampling the data directories' sizes
/// every 25 writes; returns the largest sample.
fn write_workload(cluster: &LocalCluster, c: &mut Clerk, range: std::ops::Range<usize>) -> u64 {
    let mut largest = 0;
    for i in range {
        c.put(&format!("k{}", i % KEYS), &value(i)).unwrap();
        if i % 10 == 0 {
            c.append("trail", &format!("{i},")).unwrap();
        }
        if i % 25 == 0 {
            let (node, bytes) = largest_dir(cluster);
            assert!(bytes < DISK_BOUND, "after {i} writes the data directory of {node} holds {bytes} bytes");
            largest = largest.max(bytes);
        }
    }
    largest
}

fn check_data(cluster: &LocalCluster, n: usize) {
    let mut c = clerk(cluster);
    for (key, want) in expected_data(n) {
        assert_eq!(c.get(&key).unwrap(), want, "{key}");
    }
}

/// Waits until every running server has applied everything the leader has committed.
fn wait_applied_everywhere(cluster: &LocalCluster) {
    wait_until("every server applied the leader's commit index", LONG, || {
        let Some(leader) = cluster.leader() else { return false };
        let commit = cluster.statuses()[&leader].commit_index;
        cluster.statuses().values().all(|s| s.last_applied >= commit)
    });
}

fn snapshot_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "snap"))
        .collect();
    files.sort();
    files
}

#[test]
fn with_snapshots_disk_use_stays_bounded_and_a_full_restart_keeps_every_write() {
    let _serial = serial();
    let mut cluster = start_compacting();
    let mut c = clerk(&cluster);
    let largest = write_workload(&cluster, &mut c, 0..WRITES);
    wait_applied_everywhere(&cluster);
    for (id, s) in cluster.statuses() {
        assert!(s.snapshots_taken > 10 && s.snapshot_index > 0, "{id} compacted its log: {s:?}");
    }
    // At rest, each directory holds one snapshot of about the live data and one segment of
    // about `max_raft_state`: what is on disk follows the data, not the number of writes.
    let live: usize = expected_data(WRITES).iter().map(|(k, v)| k.len() + v.len()).sum();
    let mut at_end = Vec::new();
    for n in 1..=3 {
        let dir = cluster.data_dir(NodeId(n));
        let bytes = dir_bytes(&dir);
        assert!(bytes < DISK_BOUND, "n{n}: {bytes} bytes");
        let snapshots = snapshot_files(&dir);
        assert_eq!(snapshots.len(), 1, "n{n}: one snapshot file");
        let snapshot = file_len(&snapshots[0]);
        let segments: Vec<u64> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .map(|p| file_len(&p))
            .collect();
        assert_eq!(segments.len(), 1, "n{n}: one WAL segment");
        assert!(snapshot < live as u64 + 512, "n{n}: snapshot of {snapshot} bytes for {live} bytes of data");
        // Records of at most about `MAX_RAFT_STATE` plus one batch, and the zeros written
        // ahead of them.
        let bound = 2 * MAX_RAFT_STATE + 512 + storage::PREALLOCATE_MIN;
        assert!(segments[0] < bound, "n{n}: segment of {} bytes", segments[0]);
        at_end.push((bytes, snapshot, segments[0]));
    }
    println!(
        "{live} bytes of live data; largest data directory sampled during {WRITES} writes: {largest} bytes; \
         at the end (directory, snapshot, segment): {at_end:?}"
    );

    restart_all(&mut cluster);
    check_data(&cluster, WRITES);
    // The restarted servers keep compacting and keep every write.
    let mut c = clerk(&cluster);
    write_workload(&cluster, &mut c, WRITES..WRITES + 100);
    restart_all(&mut cluster);
    check_data(&cluster, WRITES + 100);
    let (node, bytes) = largest_dir(&cluster);
    assert!(bytes < DISK_BOUND, "{node}: {bytes} bytes");
}

#[test]
fn a_follower_restarted_after_the_leader_compacted_catches_up_by_install_snapshot() {
    let _serial = serial();
    let mut cluster = start_compacting();
    let mut c = clerk(&cluster);
    write_workload(&cluster, &mut c, 0..300);
    let leader = cluster.leader().expect("leader");
    let follower = if leader == NodeId(1) { NodeId(2) } else { NodeId(1) };
    cluster.stop_server(follower).unwrap();
    let identity = Identity { cluster_id: cluster.cluster_id(), node: follower };
    let limits = cluster.server_config(follower).limits.storage();
    let behind = Storage::open(&cluster.data_dir(follower), identity, limits).unwrap().1.durable.log.last_index();

    write_workload(&cluster, &mut c, 300..WRITES);
    let compacted = cluster.statuses().values().map(|s| s.snapshot_index).min().unwrap();
    assert!(compacted > behind.0, "both running servers compacted past {behind} (to {compacted})");

    cluster.restart_server(follower).expect("the follower restarts");
    wait_until("the follower installed a snapshot and applied everything", LONG, || {
        let Some(leader) = cluster.leader() else { return false };
        let statuses = cluster.statuses();
        let f = &statuses[&follower];
        f.snapshots_installed > 0 && f.last_applied >= statuses[&leader].commit_index
    });
    let status = cluster.statuses()[&follower].clone();
    assert!(status.snapshot_index > behind.0, "{status:?}");

    // What the follower holds on disk is every write: its snapshot plus its log, applied.
    cluster.stop_server(follower).unwrap();
    let (storage, recovered) = Storage::open(&cluster.data_dir(follower), identity, limits).unwrap();
    drop(storage);
    let mut kv = recovered.durable.snapshot.state.clone();
    for (_, entry) in recovered.durable.log.iter() {
        kv.apply(&entry.command);
    }
    let held: std::collections::BTreeMap<String, String> = kv.data.into_iter().collect();
    assert_eq!(held, expected_data(WRITES));
    assert!(dir_bytes(&cluster.data_dir(follower)) < DISK_BOUND);

    // And the cluster now needs it: with the old leader stopped, it answers with the follower.
    cluster.restart_server(follower).unwrap();
    let current = cluster.wait_for_leader(LONG).expect("leader");
    let other = [NodeId(1), NodeId(2), NodeId(3)].into_iter().find(|&n| n != follower && n != current).unwrap();
    cluster.stop_server(if current == follower { other } else { current }).unwrap();
    check_data(&cluster, WRITES);
}
