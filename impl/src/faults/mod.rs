//! Injected faults, for tests that run the lab's scenarios on the real runtime: a [`Faults`]
//! handle shared by every server of a cluster (and by the test that drives it), which the
//! transport consults for each frame it receives, and the event loop at each flush.
//!
//! - *Unreliable mode* (labrpc's): each peer frame, and each client request and reply, is dropped
//!   with a probability (10%), and each delivered request waits an extra delay (0..27 ms) on its
//!   own thread, so delayed frames may overtake each other as labrpc's goroutines do.
//! - *Partitions*: a set of disabled directed server→server links. A frame on a disabled link is
//!   black-holed: the connection stays open and nothing reports an error, so the sender times out
//!   as it would behind a real partition, instead of failing fast.
//! - *Client cuts*: a (client id, server) pair whose requests and replies are black-holed, to
//!   confine a clerk to part of the cluster (the lab's `makeClient(to)`) and widen it again.
//! - *Power cuts*: a set of servers whose disk is gone. Such a server's event loop stops with
//!   [`crate::ServerError::PowerCut`] at its next flush, before writing, sending or replying
//!   anything of that batch: what is on disk is exactly what the last completed fsync covered, as
//!   after a real power cut (which `kill -9` does not emulate: the OS page cache survives it).
//!   The test then stops and restarts the server from its data directory.
//!
//! Frames are judged where they are received (a peer link's reader thread, a client connection's
//! reader and writer), so the sender's queue and socket behave as with a real network. Each
//! server draws from its own RNG seeded from the handle's seed and its id; thread scheduling
//! still decides which frame draws first, so a run is reproducible only in distribution.
//!
//! The injector is compiled only with the `faults` cargo feature, which the crate's own tests
//! turn on (a dev-dependency of the crate on itself); a build without it, such as the `kvraft`
//! binary, has a [`Faults`] with nothing inside that delivers every frame and never touches a
//! flush. With the feature, a handle without faults costs one branch on an `Option` (no
//! handle) or one atomic load (a handle with nothing configured), per frame and per flush.
//!
//! `Faults::set_send_before_fsync` (with the feature) is not a fault of the environment but a deliberately broken
//! runtime (messages and replies leave before the fsync), which exists only so that the
//! power-cut test (`impl/tests/crash/`) can show it catches that bug.

#[cfg(not(feature = "faults"))]
use model::{ClientId, NodeId};
use std::time::Duration;

#[cfg(feature = "faults")]
mod injected;
#[cfg(feature = "faults")]
pub use injected::{Faults, UNRELIABLE_DELAY_MAX, UNRELIABLE_DROP};

/// What happens to one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    Deliver,
    /// Deliver after this long (on another thread: later frames are not held up).
    Delay(Duration),
    /// Black-hole it: no error, no closed connection.
    Drop,
}

/// Without the `faults` feature: no fault can be configured, so every frame is delivered and
/// every flush writes before it sends.
#[cfg(not(feature = "faults"))]
#[derive(Clone, Debug, Default)]
pub struct Faults(());

#[cfg(not(feature = "faults"))]
impl Faults {
    pub(crate) fn disk(&self, _me: NodeId) -> Disk {
        Disk::default()
    }

    pub(crate) fn peer_frame(&self, _from: NodeId, _to: NodeId) -> Fate {
        Fate::Deliver
    }

    pub(crate) fn client_request(&self, _me: NodeId, _client: ClientId) -> Fate {
        Fate::Deliver
    }

    pub(crate) fn client_reply(&self, _me: NodeId, _client: ClientId) -> Fate {
        Fate::Deliver
    }
}

/// What a flush does about the disk faults (see [`Faults::disk`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Disk {
    /// Stop before writing, sending or replying anything of the batch.
    pub power_cut: bool,
    /// Send and reply before writing (deliberately broken; tests only).
    pub send_before_fsync: bool,
}

/// Runs `deliver` now, later on its own thread, or never, as `fate` says.
pub(crate) fn apply<F: FnOnce() + Send + 'static>(fate: Fate, deliver: F) {
    match fate {
        Fate::Deliver => deliver(),
        Fate::Drop => {}
        Fate::Delay(d) => {
            let spawned = std::thread::Builder::new().name("delayed-frame".into()).spawn(move || {
                std::thread::sleep(d);
                deliver();
            });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "cannot delay a frame: dropped");
            }
        }
    }
}
