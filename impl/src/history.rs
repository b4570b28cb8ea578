//! Recording what clients saw, in the JSON Lines format of `docs/history-format.md`: one object
//! per operation with `client`, `op`, `key`, `value` (put and append), `output` (a get that
//! returned), `call` and `return` (nanoseconds on one monotonic clock; `null` when the
//! operation never returned).

use crate::clerk::{Clerk, ClerkError};
use model::{Op, OpOutput};
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

/// One operation as a client saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryOp {
    pub client: u64,
    pub op: Op,
    /// What a get returned.
    pub output: Option<String>,
    pub call: i64,
    /// `None`: the operation never returned (outcome unknown).
    pub ret: Option<i64>,
}

/// Runs `op` on `clerk`, timing it on `clock`: call just before the first send, return just
/// after the final reply.
///
/// # Errors
/// The clerk's error; the recorded operation then has no return.
pub fn timed_call(clerk: &mut Clerk, clock: &Clock, op: Op) -> (HistoryOp, Result<OpOutput, ClerkError>) {
    let client = clerk.id().0;
    let call = clock.now_ns();
    let result = clerk.call(op.clone());
    let ret = result.is_ok().then(|| clock.now_ns());
    let output = match &result {
        Ok(OpOutput::Value(v)) => Some(v.clone()),
        _ => None,
    };
    (HistoryOp { client, op, output, call, ret }, result)
}

/// One line of the history format, field for field in its order.
#[derive(serde::Serialize)]
struct Line<'a> {
    client: u64,
    op: &'static str,
    key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<&'a str>,
    /// Only for a get that returned.
    #[serde(skip_serializing_if = "Option::is_none")]
    output: Option<&'a str>,
    call: i64,
    #[serde(rename = "return")]
    ret: Option<i64>,
}

impl HistoryOp {
    /// The operation as one JSON object (no newline).
    #[must_use]
    pub fn to_json(&self) -> String {
        let (op, key, value) = match &self.op {
            Op::Get { key } => ("get", key, None),
            Op::Put { key, value } => ("put", key, Some(value.as_str())),
            Op::Append { key, value } => ("append", key, Some(value.as_str())),
        };
        let output = self.output.as_deref().filter(|_| self.ret.is_some());
        let line = Line { client: self.client, op, key, value, output, call: self.call, ret: self.ret };
        // Strings and integers only: serde_json cannot fail on them.
        serde_json::to_string(&line).unwrap_or_default()
    }
}

/// Writes `ops` as JSON Lines, in call order.
///
/// # Errors
/// Any IO error.
pub fn write_jsonl<W: Write>(mut w: W, ops: &[HistoryOp]) -> io::Result<()> {
    let mut sorted: Vec<&HistoryOp> = ops.iter().collect();
    sorted.sort_by_key(|o| (o.call, o.client));
    for op in sorted {
        writeln!(w, "{}", op.to_json())?;
    }
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_follow_the_history_format() {
        let get = HistoryOp {
            client: 2,
            op: Op::Get { key: "x".into() },
            output: Some("ab".into()),
            call: 200,
            ret: Some(260),
        };
        assert_eq!(get.to_json(), r#"{"client":2,"op":"get","key":"x","output":"ab","call":200,"return":260}"#);
        let append = HistoryOp {
            client: 1,
            op: Op::Append { key: "x".into(), value: "b\"".into() },
            output: None,
            call: 150,
            ret: None,
        };
        assert_eq!(append.to_json(), r#"{"client":1,"op":"append","key":"x","value":"b\"","call":150,"return":null}"#);
        let lost_get = HistoryOp { ret: None, ..get };
        assert!(!lost_get.to_json().contains("output"));
    }
}
