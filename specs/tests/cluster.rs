//! The properties as a driver uses them: a 3-server cluster run through `model::step` with a
//! FIFO network, feeding the ghost after every step and checking every invariant on every
//! state, with client retries, a crash and restart, and a change of leader. Then corrupted
//! states from the same run are shown to be rejected.

use model::{
    ClientId, ClientReply, ClientRequest, ClientResult, Config, Input, NodeId, Op, OpOutput, PeerMsg, Seq, Server,
    Timer,
};
use specs::linearizability::{check, History, Verdict};
use specs::{applied_monotonic, check_all, Ghost, AT_MOST_ONCE, STATE_MACHINE_SAFETY};
use std::collections::{BTreeMap, VecDeque};

const MEMBERS: [NodeId; 3] = [NodeId(1), NodeId(2), NodeId(3)];

struct Cluster {
    servers: Vec<Server>,
    ghost: Ghost,
    network: VecDeque<(NodeId, NodeId, PeerMsg)>,
    replies: Vec<ClientReply>,
    history: History,
    /// The history's operation id of each (client, seq) ever sent.
    recorded: BTreeMap<(ClientId, Seq), usize>,
    steps: usize,
}

impl Cluster {
    fn new() -> Cluster {
        let servers: Vec<Server> =
            MEMBERS.iter().map(|&id| Server::restore(Config::new(id, &MEMBERS), Default::default()).0).collect();
        let ghost = Ghost::of(&servers);
        let (network, replies, history) = (VecDeque::new(), Vec::new(), History::new());
        Cluster { servers, ghost, network, replies, history, recorded: BTreeMap::new(), steps: 0 }
    }

    fn step(&mut self, id: NodeId, input: Input) {
        let k = MEMBERS.iter().position(|&m| m == id).expect("a member");
        let before = self.servers[k].clone();
        let (after, out) = model::step(&before, input);
        applied_monotonic(&before, &after).unwrap();
        self.ghost.observe_step(&before, &after, &out);
        self.servers[k] = after;
        if let Err(v) = check_all(&self.servers, &self.ghost) {
            panic!("step {}: {v}", self.steps);
        }
        self.steps += 1;
        self.network.extend(out.send.into_iter().map(|(to, msg)| (id, to, msg)));
        self.replies.extend(out.reply);
    }

    fn deliver_all(&mut self) {
        while let Some((from, to, msg)) = self.network.pop_front() {
            self.step(to, Input::Receive { from, msg });
        }
    }

    fn crash_and_restart(&mut self, id: NodeId) {
        let k = MEMBERS.iter().position(|&m| m == id).expect("a member");
        let durable = self.servers[k].durable.clone();
        let (restored, _) = Server::restore(self.servers[k].config.clone(), durable);
        self.ghost.observe_restart(&restored);
        self.servers[k] = restored;
        self.network.retain(|(_, to, _)| *to != id);
        check_all(&self.servers, &self.ghost).unwrap();
    }

    /// Sends a request and delivers until quiet. Only the first send of a (client, seq) is an
    /// invocation (later ones are retries), and only its first `Ok` reply a completion.
    fn request(&mut self, to: NodeId, client: u64, seq: u64, op: Op) {
        let (client, seq_) = (ClientId(client), Seq(seq));
        let history = &mut self.history;
        let id = *self.recorded.entry((client, seq_)).or_insert_with(|| history.invoke(client, op.clone()));
        self.step(to, Input::Client(ClientRequest { client, seq: Seq(seq), op }));
        self.deliver_all();
        let answered = self.replies.iter().find_map(|r| match &r.result {
            ClientResult::Ok(output) if r.client == client && r.seq == Seq(seq) => Some(output.clone()),
            _ => None,
        });
        if let (Some(output), true) = (answered, self.history.in_flight(client) == Some(id)) {
            self.history.complete(id, output);
        }
        self.replies.clear();
    }

    fn server(&self, id: NodeId) -> &Server {
        &self.servers[MEMBERS.iter().position(|&m| m == id).expect("a member")]
    }
}

fn append(key: &str, value: &str) -> Op {
    Op::Append { key: key.to_string(), value: value.to_string() }
}

fn get(key: &str) -> Op {
    Op::Get { key: key.to_string() }
}

/// Runs the scenario, checking everything on every step.
fn scenario() -> Cluster {
    let mut c = Cluster::new();
    c.step(NodeId(1), Input::Timeout(Timer::Election));
    c.deliver_all();
    assert!(c.server(NodeId(1)).is_leader());
    c.request(NodeId(1), 7, 1, append("x", "a"));
    c.request(NodeId(1), 7, 1, append("x", "a")); // a retry: in the log twice, executed once
    c.crash_and_restart(NodeId(2)); // its state machine starts over and replays the log
    c.step(NodeId(1), Input::Timeout(Timer::Heartbeat));
    c.deliver_all();
    assert_eq!(c.server(NodeId(2)).kv.get("x"), "a");
    c.step(NodeId(2), Input::Timeout(Timer::Election));
    c.deliver_all();
    assert!(c.server(NodeId(2)).is_leader());
    c.request(NodeId(2), 8, 1, append("x", "b"));
    c.request(NodeId(2), 7, 2, get("x"));
    c
}

#[test]
fn a_correct_run_satisfies_every_property() {
    let c = scenario();
    assert_eq!(c.ghost.leaders.len(), 2, "{:?}", c.ghost.leaders);
    assert_eq!(c.history.len(), 3, "the retry is not a new operation");
    assert_eq!(c.history.get(2).and_then(|o| o.output.clone()), Some(OpOutput::Value("ab".into())));
    assert_eq!(check(&c.history, 1_000), Verdict::Linearizable, "{}", c.history);
    for s in &c.servers {
        assert_eq!(s.kv.get("x"), "ab", "{s}");
    }
}

#[test]
fn a_double_apply_in_the_same_run_is_rejected() {
    let mut c = scenario();
    // n3 "forgets" its session table and replays: its state machine runs c7#1 again.
    let n3 = c.server(NodeId(3)).clone();
    let mut replayed = n3.clone();
    replayed.kv.data.insert("x".into(), "aab".into());
    let entry = n3.log().get(model::LogIndex(1)).expect("held").clone();
    let out = model::Output {
        notes: vec![model::Note::Applied { index: model::LogIndex(2), command: entry.command, output: OpOutput::Done }],
        ..Default::default()
    };
    c.ghost.observe_step(&n3, &replayed, &out);
    c.servers[2] = replayed;
    let err = check_all(&c.servers, &c.ghost).unwrap_err();
    assert_eq!(err.property, AT_MOST_ONCE, "{err}");
    // Even without the ghost's record, the data is not the replay of the log.
    let err = check_all(&c.servers, &Ghost::of(&c.servers)).unwrap_err();
    assert_eq!(err.property, STATE_MACHINE_SAFETY, "{err}");
}

#[test]
fn a_client_reading_a_stale_value_is_caught() {
    let mut c = scenario();
    let id = c.history.invoke(ClientId(9), get("x"));
    c.history.complete(id, OpOutput::Value("a".into()));
    let verdict = check(&c.history, 1_000);
    assert!(matches!(&verdict, Verdict::NotLinearizable { key, .. } if key == "x"), "{verdict}");
}
