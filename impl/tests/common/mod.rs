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
