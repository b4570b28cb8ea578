//! Clerks: creating them, invoking operations (recorded in the history), the course's blocking
//! `Put`/`Get`/`check`, client loops, and the clerk's steps through `model::clerk_step`.

use super::{clerk_id, node_id, Scheduled, Sim, SimClerk, SimResult, TimerSlot};
use crate::trace::Event;
use crate::workload::ClientLoop;
use model::{clerk_step, Clerk, ClerkInput, ClientId, Envelope, NodeId, Op, OpOutput};
use rand::seq::SliceRandom;
use specs::{TimedOp, Verdict};

impl Sim {
    /// A new clerk with a fresh id, given every server in a shuffled order (the course's
    /// `random_handles`); with `reachable`, only those servers' links are enabled.
    pub fn new_clerk(&mut self, reachable: Option<&[usize]>) -> usize {
        let c = self.clerks.len();
        let mut order: Vec<NodeId> = (0..self.servers.len()).map(node_id).collect();
        order.shuffle(&mut self.rng);
        let clerk = Clerk::new(clerk_id(c), &order);
        self.clerks.push(SimClerk {
            clerk,
            retry: TimerSlot::default(),
            in_flight: None,
            last_output: None,
            driver: None,
        });
        if let Some(to) = reachable {
            self.connect_clerk(c, to);
        }
        c
    }

    pub fn clerk_id(c: usize) -> ClientId {
        clerk_id(c)
    }

    /// Clerk `c` starts `op` (it must be idle); the invocation is recorded now.
    ///
    /// # Errors
    /// When the clerk is busy, or a check fails in the step.
    pub fn invoke(&mut self, c: usize, op: Op) -> SimResult<()> {
        if self.clerks[c].in_flight.is_some() {
            return Err(format!("scenario error: clerk {} invoked while busy", clerk_id(c)));
        }
        let call = self.next_tick();
        self.history.push(TimedOp { client: clerk_id(c).0, op: op.clone(), output: None, call, ret: None });
        let slot = &mut self.clerks[c];
        slot.in_flight = Some(self.history.len() - 1);
        slot.last_output = None;
        self.step_clerk(c, ClerkInput::Invoke(op))
    }

    fn next_tick(&mut self) -> i64 {
        self.tick += 1;
        self.tick
    }

    pub fn is_idle(&self, c: usize) -> bool {
        self.clerks[c].in_flight.is_none()
    }

    /// Runs `op` on clerk `c` to completion (the course's blocking `Put`/`Get`).
    ///
    /// # Errors
    /// When it does not complete by the scenario's time limit, or a check fails meanwhile.
    pub fn call(&mut self, c: usize, op: Op) -> SimResult<OpOutput> {
        let what = op.to_string();
        self.invoke(c, op)?;
        if !self.run_while(self.cfg.time_limit, |s| !s.is_idle(c))? {
            return Err(format!(
                "{} {what} did not complete within the {} s limit",
                clerk_id(c),
                self.cfg.time_limit / crate::SEC
            ));
        }
        Ok(self.clerks[c].last_output.clone().expect("completed"))
    }

    /// `Get(key)` through clerk `c`.
    ///
    /// # Errors
    /// As [`Sim::call`].
    pub fn get(&mut self, c: usize, key: &str) -> SimResult<String> {
        match self.call(c, Op::Get { key: key.to_string() })? {
            OpOutput::Value(v) => Ok(v),
            OpOutput::Done => Err(format!("Get {key} answered without a value")),
        }
    }

    /// `Put(key, value)` through clerk `c`.
    ///
    /// # Errors
    /// As [`Sim::call`].
    pub fn put(&mut self, c: usize, key: &str, value: &str) -> SimResult<()> {
        self.call(c, Op::Put { key: key.to_string(), value: value.to_string() }).map(|_| ())
    }

    /// The course's `check(ck, key, value)`.
    ///
    /// # Errors
    /// When the value differs, or as [`Sim::call`].
    pub fn check(&mut self, c: usize, key: &str, want: &str) -> SimResult<()> {
        let v = self.get(c, key)?;
        if v != want {
            return Err(format!("Get({key}): expected:\n{want}\nreceived:\n{v}"));
        }
        Ok(())
    }

    /// Puts a client loop on clerk `c` and starts its first operation.
    ///
    /// # Errors
    /// As [`Sim::invoke`].
    pub fn start_loop(&mut self, c: usize, mut client: ClientLoop) -> SimResult<()> {
        let first = client.next_op(&mut self.rng);
        self.clerks[c].driver = Some(client);
        match first {
            Some(op) => self.invoke(c, op),
            None => Ok(()),
        }
    }

    /// Sets the stop flag of clerk `c`'s loop; an idle loop finishes at once.
    pub fn stop_loop(&mut self, c: usize) {
        let idle = self.is_idle(c);
        if let Some(client) = &mut self.clerks[c].driver {
            client.stop();
            if idle {
                client.finished = true;
            }
        }
    }

    /// Whether clerk `c`'s loop has exited.
    pub fn loop_finished(&self, c: usize) -> bool {
        self.clerks[c].driver.as_ref().is_none_or(|d| d.finished)
    }

    pub(super) fn step_clerk(&mut self, c: usize, input: ClerkInput) -> SimResult<()> {
        let id = clerk_id(c);
        self.hash.record(&(self.now, 1u8, c, &input));
        self.recent.push(Event::Clerk { at: self.now, clerk: id, input: input.clone() });
        if self.verbose {
            println!("{}", Event::Clerk { at: self.now, clerk: id, input: input.clone() });
        }
        let (clerk, mut out) = clerk_step(&self.clerks[c].clerk, input);
        self.hash.record(&out);
        if self.verbose {
            println!("  {out}");
        }
        self.stats.clerk_steps += 1;
        self.clerks[c].clerk = clerk;
        match out.retry_timer {
            Some(true) => {
                if let Some(at) = self.clerks[c].retry.set(self.now + self.cfg.clerk_retry) {
                    self.push(at, Scheduled::ClerkTimer { clerk: c });
                }
            }
            Some(false) => self.clerks[c].retry.cancel(),
            None => {}
        }
        if let Some(e) = Envelope::from_clerk(id, &mut out) {
            self.send(e);
        }
        if let Some(output) = out.done {
            self.complete(c, output)?;
        }
        Ok(())
    }

    fn complete(&mut self, c: usize, output: OpOutput) -> SimResult<()> {
        let k = self.clerks[c].in_flight.take().expect("a completed operation was invoked");
        let ret = self.next_tick();
        let record = &mut self.history[k];
        record.output = Some(output.clone());
        record.ret = Some(ret);
        let op = record.op.clone();
        self.stats.ops += 1;
        self.clerks[c].last_output = Some(output.clone());
        let Some(mut client) = self.clerks[c].driver.take() else { return Ok(()) };
        let checked = client.completed(&op, &output);
        let next = checked.is_ok().then(|| client.next_op(&mut self.rng)).flatten();
        self.clerks[c].driver = Some(client);
        checked?;
        match next {
            Some(op) => self.invoke(c, op),
            None => Ok(()),
        }
    }

    /// The history in docs/history-format.md's terms, with ticks (the total order of
    /// invocations and returns) as times.
    pub fn timed_ops(&self) -> &[TimedOp] {
        &self.history
    }

    /// The verdict on the whole history, per key, at most `budget` search steps per key.
    pub fn linearizability(&self, budget: u64) -> Verdict {
        specs::check_timed(self.timed_ops(), budget)
    }
}
