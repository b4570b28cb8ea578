//! What the integration test files share (not every file uses every helper).
#![allow(dead_code)]

use std::sync::{Mutex, MutexGuard, PoisonError};

static SERIAL: Mutex<()> = Mutex::new(());

/// Runs a file's tests one at a time (real servers on real ports and disks), with logs
/// (captured by the harness) filtered by `KVRAFT_TEST_LOG`, `default` when it is unset.
pub fn serial(default: &str) -> MutexGuard<'static, ()> {
    let filter = std::env::var("KVRAFT_TEST_LOG").unwrap_or_else(|_| default.into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_test_writer()
        .try_init();
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A recorded history in the form `specs`' linearizability checker takes.
pub fn to_timed(ops: &[kvraft::history::HistoryOp]) -> Vec<specs::TimedOp> {
    ops.iter()
        .map(|o| specs::TimedOp {
            client: o.client,
            op: o.op.clone(),
            output: o.output.clone().map(model::OpOutput::Value),
            call: o.call,
            ret: o.ret,
        })
        .collect()
}

/// The lab's `checkClntAppends`: each of `count` items `x <client> <j> y` is in `value` exactly
/// once and after the previous one; unknown extra items are allowed. The error says which item
/// is missing, doubled or out of order.
pub fn client_appends(client: usize, value: &str, count: usize) -> Result<(), String> {
    let mut last = None;
    for j in 0..count {
        let item = format!("x {client} {j} y");
        let first =
            value.find(&item).ok_or_else(|| format!("client {client}: missing element {item:?} in {}", tail(value)))?;
        if value.rfind(&item) != Some(first) {
            return Err(format!("client {client}: duplicate element {item:?} in {}", tail(value)));
        }
        if last.is_some_and(|l| first <= l) {
            return Err(format!("client {client}: wrong order at {item:?} in {}", tail(value)));
        }
        last = Some(first);
    }
    Ok(())
}

/// The tail of a long value.
fn tail(value: &str) -> String {
    let start = value.char_indices().rev().nth(59).map_or(0, |(i, _)| i);
    format!("{} bytes ending {:?}", value.len(), &value[start..])
}
