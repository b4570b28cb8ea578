//! The course's client loops and value checks (docs/lab-tests.md, "GenericTest" and "The value
//! checks"), ported literally: GenericTest's client (reset its key, then 50% Append / 50% Get
//! on it, or with random keys 50% Append / 5% Put / 45% Get on a random key),
//! TestUnreliableOneKey's ten appends, and `checkClntAppends` / `checkConcurrentAppends`.
//!
//! A loop runs on one clerk: the simulator asks it for the next operation whenever the
//! previous one completes, the way the Go client goroutine calls the clerk in a loop; the stop
//! flag is read at the top of the loop, so an operation in flight always finishes.

use model::{Op, OpOutput};
use rand::Rng;

/// What a client loop does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Workload {
    /// GenericTest's client `cli` of `nclients`.
    Generic { nclients: usize, random_keys: bool },
    /// TestUnreliableOneKey: `upto` appends of `"x <cli> <n> y"` to `key`, then stop.
    Appends { key: String, upto: u64 },
}

/// One client goroutine of a lab test.
#[derive(Clone, Debug)]
pub struct ClientLoop {
    /// The client's number in its test (0-based), which names its key and its tokens.
    pub cli: usize,
    pub workload: Workload,
    /// The lab's `j`: appends (and, with random keys, puts) that completed.
    pub j: u64,
    /// The value the client expects its own key to hold (fixed keys only).
    pub last: String,
    started: bool,
    stop: bool,
    /// The loop has exited (stopped and nothing in flight).
    pub finished: bool,
}

impl ClientLoop {
    pub fn new(cli: usize, workload: Workload) -> ClientLoop {
        ClientLoop { cli, workload, j: 0, last: String::new(), started: false, stop: false, finished: false }
    }

    /// Sets the lab's `done_clients` flag.
    pub fn stop(&mut self) {
        self.stop = true;
    }

    fn token(&self, n: u64) -> String {
        format!("x {} {n} y", self.cli)
    }

    /// The next operation, or `None` when the loop exits (then `finished` is set).
    pub fn next_op(&mut self, rng: &mut impl Rng) -> Option<Op> {
        let op = self.choose(rng);
        self.finished = op.is_none();
        op
    }

    fn choose(&mut self, rng: &mut impl Rng) -> Option<Op> {
        match self.workload.clone() {
            Workload::Generic { nclients, random_keys } => {
                if !self.started {
                    self.started = true;
                    if !random_keys {
                        return Some(Op::Put { key: self.cli.to_string(), value: String::new() });
                    }
                }
                if self.stop {
                    return None;
                }
                let key = if random_keys { rng.random_range(0..nclients).to_string() } else { self.cli.to_string() };
                let value = self.token(self.j);
                if rng.random_range(0..1000) < 500 {
                    Some(Op::Append { key, value })
                } else if random_keys && rng.random_range(0..1000) < 100 {
                    Some(Op::Put { key, value })
                } else {
                    Some(Op::Get { key })
                }
            }
            Workload::Appends { key, upto } => {
                self.started = true;
                (self.j < upto).then(|| Op::Append { key, value: self.token(self.j) })
            }
        }
    }

    /// Takes note of a completed operation: counts appends, and checks a Get of the client's
    /// own key against what it appended ("get wrong value" fails the test at once).
    ///
    /// # Errors
    /// The lab's failure message.
    pub fn completed(&mut self, op: &Op, output: &OpOutput) -> Result<(), String> {
        let fixed = matches!(self.workload, Workload::Generic { random_keys: false, .. });
        match op {
            Op::Append { value, .. } => {
                if fixed {
                    self.last.push_str(value);
                }
                self.j += 1;
            }
            // With random keys the lab counts puts in `j` too (they carry a token).
            Op::Put { .. } if matches!(self.workload, Workload::Generic { random_keys: true, .. }) => self.j += 1,
            Op::Put { .. } => {}
            Op::Get { key } => {
                let OpOutput::Value(v) = output else {
                    return Err(format!("client {}: Get {key} returned {output}", self.cli));
                };
                if fixed && *v != self.last {
                    return Err(format!(
                        "client {}: get wrong value, key {key}, wanted:\n{}\n, got\n{}",
                        self.cli,
                        abbreviate(&self.last),
                        abbreviate(v)
                    ));
                }
            }
        }
        Ok(())
    }
}

fn abbreviate(v: &str) -> String {
    const MAX: usize = 400;
    if v.len() <= MAX {
        return v.to_string();
    }
    let mut start = v.len() - MAX;
    while !v.is_char_boundary(start) {
        start += 1;
    }
    format!("…({} bytes) {}", v.len(), &v[start..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn the_generic_client_resets_its_key_then_checks_its_gets() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut c = ClientLoop::new(2, Workload::Generic { nclients: 5, random_keys: false });
        let first = c.next_op(&mut rng).unwrap();
        assert_eq!(first, Op::Put { key: "2".into(), value: String::new() });
        c.completed(&first, &OpOutput::Done).unwrap();
        let append = Op::Append { key: "2".into(), value: "x 2 0 y".into() };
        c.completed(&append, &OpOutput::Done).unwrap();
        let get = Op::Get { key: "2".into() };
        assert_eq!(c.completed(&get, &OpOutput::Value("x 2 0 y".into())), Ok(()));
        assert!(c.completed(&get, &OpOutput::Value(String::new())).unwrap_err().contains("get wrong value"));
        c.stop();
        assert_eq!(c.next_op(&mut rng), None);
        assert!(c.finished && c.j == 1);
    }

    #[test]
    fn random_keys_mix_appends_puts_and_gets() {
        let mut rng = StdRng::seed_from_u64(9);
        let mut c = ClientLoop::new(0, Workload::Generic { nclients: 15, random_keys: true });
        let (mut appends, mut puts, mut gets) = (0, 0, 0);
        for _ in 0..10_000 {
            match c.next_op(&mut rng).unwrap() {
                Op::Append { .. } => appends += 1,
                Op::Put { .. } => puts += 1,
                Op::Get { .. } => gets += 1,
            }
        }
        assert!((4_700..5_300).contains(&appends) && (350..650).contains(&puts) && gets > 4_000);
    }
}
