//! Log compaction: bounded disk, a full restart from snapshots, and a lagging follower caught up
//! by InstallSnapshot.

use super::*;

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
