//! Linearizability decided directly for one shape of history, where the general search has
//! nothing to prune with: distinct appends to one key that all returned, read by a get that
//! follows them all. The only candidate order is the order of the appended values in what the
//! get read, so the history is linearizable iff that value is exactly the appended values, each
//! once, and every append that returned before another was called comes first in it.

use super::TimedOp;
use model::Op;

/// Checks `value`, read from `key` after every append of `ops` to `key` returned (and starting
/// from the empty value: no earlier write to `key`, or a put of `""` before every append),
/// against those appends.
///
/// # Errors
/// The first thing wrong: an append that never returned, a value read that is not exactly the
/// appended values each once, or two appends in an order real time forbids.
pub fn appends_in_order(ops: &[TimedOp], key: &str, value: &str) -> Result<(), String> {
    let mut appends = Vec::new();
    for o in ops {
        if let Op::Append { key: k, value: token } = &o.op {
            if k == key {
                let ret = o.ret.ok_or_else(|| format!("append {token:?} never returned"))?;
                let at = value.find(token.as_str()).ok_or_else(|| format!("{token:?} is missing from {value:?}"))?;
                appends.push((at, token.as_str(), o.call, ret));
            }
        }
    }
    appends.sort_unstable();
    // The values must tile what was read: each one exactly once, nothing else.
    let mut end = 0;
    for &(at, token, _, _) in &appends {
        if at != end {
            return Err(format!("{value:?} is not the appended values each once (at byte {end}, expected {token:?})"));
        }
        end += token.len();
    }
    if end != value.len() {
        return Err(format!("{value:?} holds more than the appended values ({} bytes of {})", end, value.len()));
    }
    for (k, later) in appends.iter().enumerate() {
        if let Some(earlier) = appends[k + 1..].iter().find(|e| e.3 < later.2) {
            return Err(format!(
                "not linearizable: {:?} returned before {:?} was called, but follows it in {key}",
                earlier.1, later.1
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two appends: `x 0 0 y` over [10, 20] and `x 1 0 y` over [`second_call`, 40].
    fn appends(second_call: i64) -> Vec<TimedOp> {
        let append = |value: &str, call, ret| TimedOp {
            client: 1,
            op: Op::Append { key: "k".into(), value: value.into() },
            output: None,
            call,
            ret: Some(ret),
        };
        vec![append("x 0 0 y", 10, 20), append("x 1 0 y", second_call, 40)]
    }

    #[test]
    fn accepts_an_order_concurrency_allows() {
        assert_eq!(appends_in_order(&appends(15), "k", "x 1 0 yx 0 0 y"), Ok(()));
        assert_eq!(appends_in_order(&appends(30), "k", "x 0 0 yx 1 0 y"), Ok(()));
    }

    #[test]
    fn rejects_an_order_real_time_forbids() {
        let err = appends_in_order(&appends(30), "k", "x 1 0 yx 0 0 y").unwrap_err();
        assert!(err.contains("returned before"), "{err}");
    }

    #[test]
    fn rejects_a_doubled_a_lost_and_an_unknown_append() {
        for read in ["x 0 0 yx 1 0 yx 1 0 y", "x 0 0 y", "x 0 0 yzx 1 0 y", "x 0 0 yx 1 0 yz"] {
            assert!(appends_in_order(&appends(30), "k", read).is_err(), "{read:?} accepted");
        }
    }

    #[test]
    fn an_append_that_never_returned_is_refused() {
        let mut ops = appends(30);
        ops[1].ret = None;
        assert!(appends_in_order(&ops, "k", "x 0 0 yx 1 0 y").unwrap_err().contains("never returned"));
    }
}
