//! `Summary` against the full check: on many seeded random histories, after every event, the
//! incremental summary and `check` on the recorded `History` give the same verdict.
//!
//! Histories are simulated: 1-3 clients on 1-2 keys run gets, puts and appends with unique
//! one-letter values. Each operation takes effect on a hidden sequential store at a random
//! moment between its invocation and its return, and returns what the store gave (a
//! linearizable history), unless the history is perturbed: then some writes are lost or
//! applied twice, and some reads return a stale, doubled or invented value. A client may also
//! stop waiting: its operation then stays pending forever (and may still take effect).

use model::{ClientId, Op, OpOutput};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use specs::linearizability::{check, History, Verdict};
use specs::Summary;
use std::collections::BTreeMap;

const HISTORIES: u64 = 20_000;
const BUDGET: u64 = 10_000_000;

/// An operation in flight.
struct Flight {
    op: Op,
    id: usize,
    /// What it returns, once it has taken effect.
    output: Option<OpOutput>,
}

#[derive(Default)]
struct Client {
    remaining: usize,
    flight: Option<Flight>,
    /// Its operation in flight will never return.
    gave_up: bool,
    /// Its operation in flight will never take effect either.
    frozen: bool,
}

/// The simulation of one history, with both recordings.
struct Sim {
    rng: StdRng,
    keys: Vec<&'static str>,
    /// How often a step misbehaves (0 for a linearizable history).
    perturb: f64,
    /// How often a client stops waiting for its operation.
    give_up: f64,
    clients: Vec<Client>,
    /// The hidden store: every value each key has held, the current one last.
    store: BTreeMap<&'static str, Vec<String>>,
    next_letter: u8,
    history: History,
    summary: Summary,
    /// Events compared so far.
    events: u64,
}

#[derive(Clone, Copy)]
enum Step {
    Invoke(usize),
    TakeEffect(usize),
    Return(usize),
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let mut rng = StdRng::seed_from_u64(seed);
        let keys = ["x", "y"][..rng.random_range(1..=2)].to_vec();
        let perturb = [0.0, 0.3, 0.6, 0.9][rng.random_range(0..4)];
        let give_up = [0.0, 0.15][rng.random_range(0..2)];
        let clients = (0..rng.random_range(1..=3))
            .map(|_| Client { remaining: rng.random_range(1..=4), ..Client::default() })
            .collect();
        Sim {
            rng,
            keys,
            perturb,
            give_up,
            clients,
            store: BTreeMap::new(),
            next_letter: b'a',
            history: History::new(),
            summary: Summary::new(),
            events: 0,
        }
    }

    fn steps(&self) -> Vec<Step> {
        let mut steps = Vec::new();
        for (c, client) in self.clients.iter().enumerate() {
            match &client.flight {
                None if client.remaining > 0 => steps.push(Step::Invoke(c)),
                None => {}
                Some(flight) if flight.output.is_none() && !client.frozen => {
                    steps.push(Step::TakeEffect(c));
                }
                Some(flight) if flight.output.is_some() && !client.gave_up => {
                    steps.push(Step::Return(c));
                }
                Some(_) => {}
            }
        }
        steps
    }

    /// Runs the history to its end: the final verdict, the number of events, and whether an
    /// operation stayed pending forever.
    fn run(mut self) -> (Verdict, u64, bool) {
        loop {
            let steps = self.steps();
            if steps.is_empty() {
                break;
            }
            let step = steps[self.rng.random_range(0..steps.len())];
            let give_up = self.rng.random_bool(self.give_up);
            match step {
                Step::Invoke(c) => self.invoke(c),
                Step::TakeEffect(c) if give_up && !self.clients[c].gave_up => {
                    // Gives up before it takes effect: it may still, or never.
                    self.clients[c].gave_up = true;
                    self.clients[c].frozen = self.rng.random_bool(0.5);
                }
                Step::TakeEffect(c) => self.take_effect(c),
                Step::Return(c) if give_up => self.clients[c].gave_up = true,
                Step::Return(c) => self.ret(c),
            }
        }
        let pending = self.clients.iter().any(|c| c.flight.is_some());
        (check(&self.history, BUDGET), self.events, pending)
    }

    fn letter(&mut self) -> String {
        let letter = char::from(self.next_letter).to_string();
        self.next_letter += 1;
        letter
    }

    fn invoke(&mut self, c: usize) {
        let key = self.keys[self.rng.random_range(0..self.keys.len())].to_string();
        let op = match self.rng.random_range(0..3) {
            0 => Op::Get { key },
            1 => Op::Put { key, value: self.letter() },
            _ => Op::Append { key, value: self.letter() },
        };
        let client = ClientId(c as u64 + 1);
        let id = self.history.invoke(client, op.clone());
        self.summary.invoke(client, op.clone());
        self.clients[c].remaining -= 1;
        self.clients[c].flight = Some(Flight { op, id, output: None });
        self.compare();
    }

    /// The operation in flight of client `c` takes effect on the hidden store (or misbehaves).
    fn take_effect(&mut self, c: usize) {
        let op = self.clients[c].flight.as_ref().unwrap().op.clone();
        let key = self.keys.iter().copied().find(|k| *k == op.key()).unwrap();
        let values = self.store.entry(key).or_insert_with(|| vec![String::new()]);
        let mut value = values.last().unwrap().clone();
        let mut output = specs::kv_spec::apply_to_register(&mut value, &op);
        let misbehave = self.rng.random_bool(self.perturb);
        match (&op, misbehave) {
            (_, false) => values.push(value),
            (Op::Get { .. }, true) => {
                let wrong = match self.rng.random_range(0..3) {
                    // Stale (or, by chance, current).
                    0 => values[self.rng.random_range(0..values.len())].clone(),
                    // The last append seen twice.
                    1 => format!("{value}{}", value.chars().last().unwrap_or('q')),
                    _ => "z".to_string(),
                };
                output = OpOutput::Value(wrong);
            }
            (Op::Append { value: suffix, .. }, true) if self.rng.random_bool(0.5) => {
                values.push(format!("{value}{suffix}"));
            }
            (_, true) => {} // a lost write
        }
        self.clients[c].flight.as_mut().unwrap().output = Some(output);
    }

    fn ret(&mut self, c: usize) {
        let flight = self.clients[c].flight.take().unwrap();
        let output = flight.output.unwrap();
        let was_linearizable = self.summary.is_linearizable();
        self.history.complete(flight.id, output.clone());
        self.summary.complete(ClientId(c as u64 + 1), output);
        self.compare();
        if was_linearizable && !self.summary.is_linearizable() {
            // The first violation: on the key of this operation, the one `check` names.
            let (key, description) = self.summary.violation().unwrap();
            assert_eq!(key, flight.op.key());
            let blamed = match check(&self.history, BUDGET) {
                Verdict::NotLinearizable { key, .. } => key,
                verdict => panic!("check says {verdict}"),
            };
            assert_eq!(blamed, key, "{description}");
        }
    }

    /// After every event: the summary agrees with the full check.
    fn compare(&mut self) {
        self.events += 1;
        let verdict = check(&self.history, BUDGET);
        assert!(!matches!(verdict, Verdict::Unknown { .. }), "budget exhausted on\n{}", self.history);
        assert_eq!(
            self.summary.is_linearizable(),
            verdict.is_linearizable(),
            "summary {:?} but check says {verdict} on\n{}",
            self.summary.violation(),
            self.history
        );
    }
}

#[test]
fn the_summary_agrees_with_the_full_check_after_every_event() {
    let (mut linearizable, mut not, mut events, mut pending) = (0u64, 0u64, 0u64, 0u64);
    for seed in 0..HISTORIES {
        let (verdict, n, left_pending) = Sim::new(seed).run();
        events += n;
        pending += u64::from(left_pending);
        if verdict.is_linearizable() {
            linearizable += 1;
        } else {
            not += 1;
        }
    }
    println!(
        "{HISTORIES} histories, {events} events compared: {linearizable} linearizable, {not} \
         not; {pending} with an operation pending forever"
    );
    assert!(linearizable * 5 >= HISTORIES, "only {linearizable} linearizable");
    assert!(not * 5 >= HISTORIES, "only {not} not linearizable");
    assert!(pending * 10 >= HISTORIES, "only {pending} with a pending operation");
}
