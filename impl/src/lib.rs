//! kvraft's runtime: a thin threaded shell around the pure core in `model`.
//!
//! - [`server`]: the event loop that owns a [`model::Server`], steps it through peer messages,
//!   client requests and timer expiries, and executes its outputs in the contract's order
//!   (persist → fsync → send/reply → timers), with group commit; [`server::ServerHandle`]
//!   starts and stops one.
//! - [`storage`]: the data directory: lock file, checksummed write-ahead log of
//!   [`model::DurableChange`]s replayed with [`model::Durable::apply`], and the snapshot file a
//!   rotation writes (atomically, before starting a new segment and deleting the old ones).
//! - [`frame`]: length-prefixed postcard frames and the connection handshake; `peer` and
//!   `client_port` carry them over TCP, and `outbox` sends them without ever blocking the loop.
//! - [`clerk`]: the blocking client library over the core's clerk.
//! - [`local`], [`bench`](mod@bench), [`history`]: a one-process cluster, closed-loop load,
//!   and recording of what clients saw (docs/history-format.md).
//!
//! No protocol decision is made here: everything Raft or key/value is `model::step` and
//! `model::clerk_step`.

#![forbid(unsafe_code)]

pub mod bench;
pub mod clerk;
mod client_conn;
mod client_port;
pub mod config;
mod event;
pub mod faults;
pub mod frame;
pub mod history;
mod inbound;
pub mod local;
mod outbox;
mod peer;
pub mod server;
pub mod storage;
mod tracker;

pub use clerk::{Clerk, ClerkConfig, ClerkError};
pub use config::{ClusterMap, Limits, ServerConfig, Timing};
pub use faults::Faults;
pub use local::{LocalCluster, LocalOptions};
pub use server::{start, start_with_listeners, ServerError, ServerHandle, Status};
