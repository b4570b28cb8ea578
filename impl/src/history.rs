//! Recording what clients saw, as `specs::TimedOp`s timed in nanoseconds on one monotonic
//! clock, and writing them in the JSON Lines format of `docs/history-format.md`
//! (`TimedOp::to_line`, one line per operation).

use crate::clerk::{Clerk, ClerkError};
use model::{Op, OpOutput};
pub use specs::TimedOp;
use std::io::{self, Write};
use std::time::Instant;

/// One monotonic clock shared by every recording client of a run.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    base: Instant,
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::new()
    }
}

impl Clock {
    #[must_use]
    pub fn new() -> Clock {
        Clock { base: Instant::now() }
    }

    /// Nanoseconds since the clock was made.
    #[must_use]
    pub fn now_ns(&self) -> i64 {
        i64::try_from(self.base.elapsed().as_nanos()).unwrap_or(i64::MAX)
    }
}

/// Runs `op` on `clerk`, timing it on `clock`: call just before the first send, return just
/// after the final reply.
///
/// # Errors
/// The clerk's error; the recorded operation then has no return.
pub fn timed_call(clerk: &mut Clerk, clock: &Clock, op: Op) -> (TimedOp, Result<OpOutput, ClerkError>) {
    let client = clerk.id().0;
    let call = clock.now_ns();
    let result = clerk.call(op.clone());
    let ret = result.is_ok().then(|| clock.now_ns());
    let output = match &result {
        Ok(output @ OpOutput::Value(_)) => Some(output.clone()),
        _ => None,
    };
    (TimedOp { client, op, output, call, ret }, result)
}

/// Writes `ops` as JSON Lines, in call order.
///
/// # Errors
/// Any IO error.
pub fn write_jsonl<W: Write>(mut w: W, ops: &[TimedOp]) -> io::Result<()> {
    let mut sorted: Vec<&TimedOp> = ops.iter().collect();
    sorted.sort_by_key(|o| (o.call, o.client));
    for op in sorted {
        writeln!(w, "{}", op.to_line())?;
    }
    w.flush()
}
