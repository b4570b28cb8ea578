//! The course's size bounds (6.5840 Lab 4B, `TestSnapshotSize`), on the pure core: with
//! `max_raft_state = 1000`, one clerk runs 800 operations, 200 rounds of
//! `put x 0, get x, put x 1, get x`, each to completion. After every step of every server, its
//! durable Raft state (term, vote and retained log, [`Durable::raft_state_size`]) stays within
//! 8 × 1000 bytes: the log is compacted, not kept. Its snapshot stays within 500 bytes, since
//! it holds one small key and one session per client, not one record per request.
//!
//! The driver is the simplest possible: three servers stepped by `model::step`, the clerk by
//! `model::clerk_step`, and a FIFO network that delivers every message. No timer fires except
//! the two the test fires (an election timeout at the start, a heartbeat at the end, so that
//! the followers learn the last commit), and nothing is random: every run is the same.
//!
//! `cargo test -p model --test sizes -- --nocapture` prints the largest sizes seen.

#![warn(clippy::pedantic)]
#![allow(clippy::doc_markdown, reason = "`common`'s doc comments name the paper's RPCs: AppendEntries")]

// Shared with the Figure-2 tests; this test uses only the operation builders.
#[allow(dead_code)]
mod common;

use common::{get_op, put_op, value};
use model::{
    clerk_step, step, Clerk, ClerkInput, ClientId, Config, Durable, Endpoint, Envelope, Input, NodeId, Note, Op,
    OpOutput, Seq, Server, Timer, Wire,
};
use std::collections::{BTreeMap, VecDeque};

const MAX_RAFT_STATE: u64 = 1000;
/// The course's bound on the durable Raft state: 8 × `max_raft_state`.
const RAFT_STATE_BOUND: u64 = 8 * MAX_RAFT_STATE;
/// The course's bound on a snapshot's size.
const SNAPSHOT_BOUND: u64 = 500;
const ROUNDS: usize = 200;

/// Three servers, one clerk, and every message in flight, oldest first.
struct Cluster {
    servers: BTreeMap<NodeId, Server>,
    clerk: Clerk,
    network: VecDeque<Envelope>,
    /// How many snapshots each server took itself (`Note::SnapshotTaken`).
    snapshots_taken: BTreeMap<NodeId, usize>,
    max_raft_state_seen: u64,
    max_snapshot_seen: u64,
    /// The result of the clerk's operation, once it completed.
    done: Option<OpOutput>,
}

impl Cluster {
    fn new() -> Cluster {
        let members = [NodeId(1), NodeId(2), NodeId(3)];
        let servers = members.iter().map(|&id| {
            let config = Config { max_raft_state: Some(MAX_RAFT_STATE), ..Config::new(id, &members) };
            (id, Server::restore(config, Durable::default()).0)
        });
        Cluster {
            servers: servers.collect(),
            clerk: Clerk::new(ClientId(1), &members),
            network: VecDeque::new(),
            snapshots_taken: members.iter().map(|&id| (id, 0)).collect(),
            max_raft_state_seen: 0,
            max_snapshot_seen: 0,
            done: None,
        }
    }

    /// Steps server `id`, queues what it sends, and checks the bounds on its durable state.
    fn step_server(&mut self, id: NodeId, input: Input) {
        let (server, mut out) = step(&self.servers[&id], input);
        let taken = out.notes.iter().filter(|n| matches!(n, Note::SnapshotTaken { .. })).count();
        *self.snapshots_taken.get_mut(&id).expect("a member") += taken;
        let raft_state = server.durable.raft_state_size();
        let snapshot = server.durable.snapshot.encoded_size();
        assert!(raft_state <= RAFT_STATE_BOUND, "{id}: raft state {raft_state} bytes > {RAFT_STATE_BOUND}");
        assert!(snapshot <= SNAPSHOT_BOUND, "{id}: snapshot {snapshot} bytes > {SNAPSHOT_BOUND}");
        self.max_raft_state_seen = self.max_raft_state_seen.max(raft_state);
        self.max_snapshot_seen = self.max_snapshot_seen.max(snapshot);
        self.servers.insert(id, server);
        self.network.extend(Envelope::from_server(id, &mut out));
    }

    fn step_clerk(&mut self, input: ClerkInput) {
        let (clerk, mut out) = clerk_step(&self.clerk, input);
        self.clerk = clerk;
        self.network.extend(Envelope::from_clerk(self.clerk.id, &mut out));
        if out.done.is_some() {
            self.done = out.done;
        }
    }

    /// Delivers every message, oldest first, until none is in flight.
    fn deliver_all(&mut self) {
        while let Some(Envelope { from, to, wire }) = self.network.pop_front() {
            match (from, to, wire) {
                (Endpoint::Server(from), Endpoint::Server(to), Wire::Peer(msg)) => {
                    self.step_server(to, Input::Receive { from, msg });
                }
                (_, Endpoint::Server(to), Wire::Request(request)) => {
                    self.step_server(to, Input::Client(request));
                }
                (Endpoint::Server(from), Endpoint::Clerk(_), Wire::Reply(reply)) => {
                    self.step_clerk(ClerkInput::Reply { from, reply });
                }
                (from, to, wire) => panic!("misrouted {from}->{to} {wire}"),
            }
        }
    }

    /// Runs `op` through the clerk to completion and returns its result.
    fn run(&mut self, op: Op) -> OpOutput {
        self.step_clerk(ClerkInput::Invoke(op));
        self.deliver_all();
        self.done.take().unwrap_or_else(|| panic!("operation {} did not complete", self.clerk.seq))
    }
}

#[test]
fn raft_state_and_snapshot_stay_within_the_course_bounds() {
    let mut cluster = Cluster::new();
    cluster.step_server(NodeId(1), Input::Timeout(Timer::Election));
    cluster.deliver_all();
    assert!(cluster.servers[&NodeId(1)].is_leader());

    for round in 0..ROUNDS {
        assert_eq!(cluster.run(put_op("x", "0")), OpOutput::Done);
        assert_eq!(cluster.run(get_op("x")), value("0"), "round {round}");
        assert_eq!(cluster.run(put_op("x", "1")), OpOutput::Done);
        assert_eq!(cluster.run(get_op("x")), value("1"), "round {round}");
    }
    cluster.step_server(NodeId(1), Input::Timeout(Timer::Heartbeat));
    cluster.deliver_all();

    let (raft_state, snapshot) = (cluster.max_raft_state_seen, cluster.max_snapshot_seen);
    eprintln!("max raft state {raft_state} bytes (bound {RAFT_STATE_BOUND})");
    eprintln!("max snapshot {snapshot} bytes (bound {SNAPSHOT_BOUND})");
    let operations = 4 * ROUNDS as u64;
    for (id, server) in &cluster.servers {
        let snapshot = &server.durable.snapshot;
        let taken = cluster.snapshots_taken[id];
        let (bytes, held) = (snapshot.encoded_size(), server.log().len());
        eprintln!("{id}: took {taken} snapshots; last {snapshot} ({bytes} bytes), then {held} entries");
        // Not vacuous: the bounds alone would pass without any compaction (the 800 entries take
        // 6.3 kB, under 8 kB), so check that every server applied everything and compacted its
        // log repeatedly (at least 5 snapshots at 1 kB each).
        assert_eq!(server.last_applied.0, operations, "{id} applied every operation");
        assert!(taken >= 5, "{id} took {taken} snapshots");
        assert!(snapshot.last_index.0 > operations - 200, "{id}'s last snapshot is recent");
        assert!(held < 200, "{id} dropped its log prefix");
        let data: im::OrdMap<String, String> = im::ordmap! {"x".to_string() => "1".to_string()};
        assert_eq!(snapshot.state.data, data, "{id}'s snapshot");
        let sessions: Vec<_> = snapshot.state.sessions.iter().map(|(c, s)| (*c, s.seq)).collect();
        let seq = Seq(snapshot.last_index.0); // entry k is the clerk's seq k (no retries)
        assert_eq!(sessions, [(ClientId(1), seq)], "{id}: one session, at the last seq applied");
    }
}
