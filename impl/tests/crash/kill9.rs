//! Rolling kill -9 of server processes: five `kvraft server` OS processes, one killed and
//! restarted at a time under the client load.

use super::*;

// Rolling kill -9 of server processes.

/// Ephemeral loopback addresses: bound to port 0 together (so they differ), then released.
fn free_addrs(n: usize) -> Vec<SocketAddr> {
    let listeners: Vec<TcpListener> = (0..n).map(|_| TcpListener::bind("127.0.0.1:0").expect("bind port 0")).collect();
    listeners.iter().map(|l| l.local_addr().expect("local address")).collect()
}

/// A cluster of `kvraft server` processes, each logging to `DIR/node-N.log`.
struct Processes {
    dir: tempfile::TempDir,
    peers: ClusterMap,
    clients: ClusterMap,
    children: BTreeMap<NodeId, Child>,
    /// Set when the test ends (or panics): no server is started again.
    closed: bool,
    /// Restarts after a server could not listen on its ports.
    rebinds: usize,
}

impl Processes {
    fn start(n: u32) -> Processes {
        let dir = tempfile::Builder::new().prefix("kvraft-crash-").tempdir().expect("temp dir");
        let addrs = free_addrs(2 * n as usize);
        let ids = (1..=n).map(NodeId);
        let peers: ClusterMap = ids.clone().zip(addrs[..n as usize].iter().copied()).collect();
        let clients: ClusterMap = ids.clone().zip(addrs[n as usize..].iter().copied()).collect();
        let mut p = Processes { dir, peers, clients, children: BTreeMap::new(), closed: false, rebinds: 0 };
        for id in ids {
            p.spawn(id);
        }
        p
    }

    fn log_path(&self, id: NodeId) -> PathBuf {
        self.dir.path().join(format!("node-{}.log", id.0))
    }

    fn spawn(&mut self, id: NodeId) {
        let log = OpenOptions::new().create(true).append(true).open(self.log_path(id)).expect("log file");
        let filter = std::env::var("KVRAFT_TEST_SERVER_LOG").unwrap_or_else(|_| "info".into());
        let child = Command::new(env!("CARGO_BIN_EXE_kvraft"))
            .args(["--log", &filter, "server", "--id", &id.0.to_string()])
            .args(["--cluster", &config::format_cluster(&self.peers)])
            .args(["--client-addr", &self.clients[&id].to_string()])
            .arg("--data")
            .arg(self.dir.path().join(format!("node-{}", id.0)))
            .args(["--max-raft-state", &MAX_RAFT_STATE.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("kvraft server starts");
        self.children.insert(id, child);
    }

    /// SIGKILL, then reap (so its ports and its data directory's lock are free again).
    fn kill(&mut self, id: NodeId) {
        if let Some(mut child) = self.children.remove(&id) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn kill_all(&mut self) {
        self.closed = true;
        let ids: Vec<NodeId> = self.children.keys().copied().collect();
        for id in ids {
            self.kill(id);
        }
    }

    /// Servers that exited although nobody killed them. One that could not listen on its
    /// ports again (a connection elsewhere may take a released port as its ephemeral source
    /// port while the server is down) is started again instead, a few times.
    fn exited(&mut self) -> Vec<Problem> {
        let mut dead = Vec::new();
        let ids: Vec<NodeId> = self.children.keys().copied().collect();
        for id in ids {
            let Some(Ok(Some(status))) = self.children.get_mut(&id).map(Child::try_wait) else { continue };
            let log = fs::read_to_string(self.log_path(id)).unwrap_or_default();
            if log.lines().last().is_some_and(|l| l.contains("cannot listen on")) && self.rebinds < 3 {
                eprintln!("rolling_kill_9: server {id} could not listen on its ports; starting it again");
                self.rebinds += 1;
                std::thread::sleep(Duration::from_millis(100));
                self.spawn(id);
                continue;
            }
            dead.push(Problem::other(format!("server {id} exited on its own ({status}); see its log")));
        }
        dead
    }

    /// The server that logged "became leader" in the highest term (it may have been killed
    /// since: this is a cheap guess from outside, good enough to aim at leaders), and how many
    /// elections were won so far.
    fn leader_from_logs(&self) -> (Option<NodeId>, usize) {
        let (mut best, mut elections): (Option<(u64, NodeId)>, usize) = (None, 0);
        for &id in self.peers.keys() {
            let Ok(file) = File::open(self.log_path(id)) else { continue };
            for line in BufReader::new(file).lines().map_while(Result::ok) {
                let Some(rest) = line.split("became leader term=t").nth(1) else { continue };
                elections += 1;
                let term: u64 = rest.chars().take_while(char::is_ascii_digit).collect::<String>().parse().unwrap_or(0);
                if best.is_none_or(|(t, _)| term > t) {
                    best = Some((term, id));
                }
            }
        }
        (best.map(|(_, id)| id), elections)
    }

    /// The last `lines` lines of every server's log.
    fn tails(&self, lines: usize) -> String {
        let mut out = String::new();
        for &id in self.peers.keys() {
            let text = fs::read_to_string(self.log_path(id)).unwrap_or_default();
            let all: Vec<&str> = text.lines().collect();
            out.push_str(&format!("--- server {id}, last {lines} lines of its log ---\n"));
            for line in &all[all.len().saturating_sub(lines)..] {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }

    /// Snapshot files, and the highest WAL segment number, over every data directory.
    fn compaction_evidence(&self) -> (usize, u64) {
        let (mut snaps, mut segment) = (0, 0);
        for &id in self.peers.keys() {
            let Ok(entries) = fs::read_dir(self.dir.path().join(format!("node-{}", id.0))) else { continue };
            for name in entries.filter_map(Result::ok).map(|e| e.file_name().to_string_lossy().into_owned()) {
                if name.starts_with("snap-") {
                    snaps += 1;
                }
                if let Some(n) = name.strip_prefix("wal-").and_then(|s| s.strip_suffix(".log")) {
                    segment = segment.max(n.parse().unwrap_or(0));
                }
            }
        }
        (snaps, segment)
    }
}

/// Kills every server process when the test ends, panicking or not, and on a panic prints the
/// tail of each server's log.
struct KillOnDrop {
    processes: Arc<Mutex<Processes>>,
    stop: Arc<AtomicBool>,
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let mut p = lock(&self.processes);
        p.kill_all();
        if std::thread::panicking() {
            eprintln!("{}", p.tails(30));
        }
    }
}

#[derive(Debug, Default)]
struct KillCounts {
    kills: usize,
    leader_kills: usize,
    restarts: usize,
    /// Servers that died on their own, noticed by the killer.
    problems: Vec<Problem>,
}

fn sleep_unless(stop: &AtomicBool, d: Duration) {
    let until = Instant::now() + d;
    while Instant::now() < until && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Every 0.5–1 s: SIGKILL one server (every other time the leader, as the logs tell), wait
/// 0–500 ms, start it again on its ports and data directory. One server down at a time, so a
/// majority always exists.
fn killer(processes: &Mutex<Processes>, stop: &AtomicBool, seed: u64) -> KillCounts {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut counts = KillCounts::default();
    loop {
        sleep_unless(stop, Duration::from_millis(rng.random_range(500..1000)));
        if stop.load(Ordering::Relaxed) {
            return counts;
        }
        let victim = {
            let mut p = lock(processes);
            let dead = p.exited();
            if !dead.is_empty() || p.closed {
                counts.problems.extend(dead);
                return counts;
            }
            let aimed = if counts.kills % 2 == 1 { p.leader_from_logs().0 } else { None };
            let victim = aimed.unwrap_or_else(|| NodeId(rng.random_range(1..=SERVERS)));
            p.kill(victim);
            counts.kills += 1;
            counts.leader_kills += usize::from(aimed.is_some());
            victim
        };
        // Down for 0–500 ms, even if the test is stopping: the final reads want every server.
        std::thread::sleep(Duration::from_millis(rng.random_range(0..=500)));
        let mut p = lock(processes);
        if p.closed {
            return counts;
        }
        p.spawn(victim);
        counts.restarts += 1;
    }
}

/// Five `kvraft server` processes, five GenericTest clients for 9 s, a server SIGKILLed and
/// restarted every 0.5–1 s; then every acknowledged append is present exactly once and in
/// order, and the history is linearizable.
#[test]
fn rolling_kill_9_of_server_processes() {
    let _serial = serial();
    let started = Instant::now();
    let processes = Arc::new(Mutex::new(Processes::start(SERVERS)));
    let stop = Arc::new(AtomicBool::new(false));
    let guard = KillOnDrop { processes: Arc::clone(&processes), stop: Arc::clone(&stop) };
    let client_addrs = lock(&processes).clients.clone();
    let clients = Clients::start(&client_addrs, 0xc4a5);
    let killer = {
        let (p, s) = (Arc::clone(&processes), Arc::clone(&stop));
        std::thread::spawn(move || killer(&p, &s, 0x911))
    };
    std::thread::sleep(Duration::from_secs(9));
    stop.store(true, Ordering::Relaxed);
    let counts = killer.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
    let result = clients.finish(&client_addrs, "rolling_kill_9");
    let (snaps, segment) = lock(&processes).compaction_evidence();
    let elections = lock(&processes).leader_from_logs().1;
    let dead = lock(&processes).exited();
    eprintln!(
        "rolling_kill_9: {} kills ({} aimed at the leader), {} restarts, {elections} elections won; \
         {snaps} snapshot files, WAL segment numbers up to {segment}; {:.1?}",
        counts.kills,
        counts.leader_kills,
        counts.restarts,
        started.elapsed()
    );
    let mut problems: Vec<Problem> = counts.problems.into_iter().chain(dead).collect();
    if let Err(found) = result {
        problems.extend(found);
    }
    assert!(problems.is_empty(), "rolling_kill_9:\n{}", lines(&problems));
    assert!(counts.kills >= 5, "only {} kills", counts.kills);
    assert!(segment > 1, "no WAL rotation happened: max_raft_state {MAX_RAFT_STATE} did not trigger snapshots");
    drop(guard);
}
