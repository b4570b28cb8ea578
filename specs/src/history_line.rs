//! A history on disk: one [`TimedOp`] per line of JSON, in the format of
//! docs/history-format.md (`client`, `op`, `key`, `value` for a put or append, `output` for a
//! get that returned, `call`, `return`). The runtime writes it; anyone can read it back and
//! check it with [`crate::check_timed`].

use crate::TimedOp;
use model::{Op, OpOutput};
use serde::{Deserialize, Serialize};

/// One line, field for field in the documented order.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    client: u64,
    op: Kind,
    key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    output: Option<String>,
    call: i64,
    /// Required, `null` when the operation never returned.
    #[serde(rename = "return", deserialize_with = "required_nullable")]
    ret: Option<i64>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Kind {
    Get,
    Put,
    Append,
}

/// serde treats a missing `Option` field as `None`; the format says `return` must be there.
fn required_nullable<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Option::<i64>::deserialize(d)
}

impl TimedOp {
    /// The operation as one line of the history format (no newline). Only a get that
    /// returned carries its output.
    #[must_use]
    pub fn to_line(&self) -> String {
        let (op, key, value) = match &self.op {
            Op::Get { key } => (Kind::Get, key, None),
            Op::Put { key, value } => (Kind::Put, key, Some(value.clone())),
            Op::Append { key, value } => (Kind::Append, key, Some(value.clone())),
        };
        let output = match (&self.op, &self.output, self.ret) {
            (Op::Get { .. }, Some(OpOutput::Value(v)), Some(_)) => Some(v.clone()),
            _ => None,
        };
        let line = Line { client: self.client, op, key: key.clone(), value, output, call: self.call, ret: self.ret };
        // Strings and integers only: serializing them cannot fail.
        serde_json::to_string(&line).unwrap_or_default()
    }

    /// Reads one line of the history format.
    ///
    /// # Errors
    /// What is wrong with the line: not JSON, an unknown or missing field (`return` must be
    /// present, `null` or not), a `value` on a get or none on a put or append, an `output`
    /// on anything but a get that returned.
    pub fn from_line(text: &str) -> Result<TimedOp, String> {
        let line: Line = serde_json::from_str(text).map_err(|e| format!("bad history line {text:?}: {e}"))?;
        let bad = |why: &str| Err(format!("bad history line {text:?}: {why}"));
        let op = match (line.op, line.value) {
            (Kind::Get, None) => Op::Get { key: line.key },
            (Kind::Get, Some(_)) => return bad("a get has no value"),
            (Kind::Put, Some(value)) => Op::Put { key: line.key, value },
            (Kind::Append, Some(value)) => Op::Append { key: line.key, value },
            (Kind::Put | Kind::Append, None) => return bad("a put or append needs a value"),
        };
        if line.output.is_some() && !(matches!(op, Op::Get { .. }) && line.ret.is_some()) {
            return bad("only a get that returned has an output");
        }
        let output = line.output.map(OpOutput::Value);
        Ok(TimedOp { client: line.client, op, output, call: line.call, ret: line.ret })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(output: Option<&str>, ret: Option<i64>) -> TimedOp {
        let output = output.map(|v| OpOutput::Value(v.into()));
        TimedOp { client: 2, op: Op::Get { key: "x".into() }, output, call: 200, ret }
    }

    #[test]
    fn lines_follow_the_history_format_and_read_back() {
        let read = get(Some("ab"), Some(260));
        assert_eq!(read.to_line(), r#"{"client":2,"op":"get","key":"x","output":"ab","call":200,"return":260}"#);
        let append = TimedOp {
            client: 1,
            op: Op::Append { key: "x".into(), value: "b\"".into() },
            output: None,
            call: 150,
            ret: None,
        };
        assert_eq!(append.to_line(), r#"{"client":1,"op":"append","key":"x","value":"b\"","call":150,"return":null}"#);
        assert!(!get(Some("ab"), None).to_line().contains("output"), "a get that never returned read nothing");
        for op in [read, append, get(None, None)] {
            assert_eq!(TimedOp::from_line(&op.to_line()), Ok(op));
        }
    }

    #[test]
    fn malformed_lines_are_refused_with_the_reason() {
        let cases = [
            (r#"{"client":1,"op":"get","key":"x","call":1}"#, "return"),
            (r#"{"client":1,"op":"get","key":"x","value":"v","call":1,"return":2}"#, "a get has no value"),
            (r#"{"client":1,"op":"put","key":"x","call":1,"return":2}"#, "needs a value"),
            (r#"{"client":1,"op":"put","key":"x","value":"v","output":"v","call":1,"return":2}"#, "output"),
            (r#"{"client":1,"op":"get","key":"x","output":"v","call":1,"return":null}"#, "output"),
            (r#"{"client":1,"op":"cas","key":"x","call":1,"return":2}"#, "cas"),
            (r#"{"client":1,"op":"get","key":"x","call":1,"return":2,"extra":0}"#, "extra"),
            ("not json", "bad history line"),
        ];
        for (line, why) in cases {
            let err = TimedOp::from_line(line).expect_err(line);
            assert!(err.contains(why), "{line}: {err}");
        }
    }
}
