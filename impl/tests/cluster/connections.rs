//! Who may talk, and how: handshakes from another cluster, bad frames, a clerk with no server to
//! answer it, and the bench's recorded history.

use super::*;

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
    let parsed: Vec<TimedOp> = text.lines().map(|l| TimedOp::from_line(l).unwrap()).collect();
    assert_eq!(parsed.len(), 300);
    assert_linearizable(&parsed);
}
