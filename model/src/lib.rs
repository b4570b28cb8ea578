//! kvraft's pure core: Raft (extended paper, Figure 2), the key/value state machine with its
//! client-session table, and the clerk, each as a deterministic step function.
//!
//! - [`step`]`(&Server, Input) -> (Server, Output)` advances a server by one input
//!   ([`step_in_place`] makes the same transition on a server the caller owns);
//!   [`Server::restore`] is the only way one starts (fresh or after a crash).
//! - [`clerk_step`]`(&Clerk, ClerkInput) -> (Clerk, ClerkOutput)` does the same for a client.
//!
//! No clocks, threads, IO, randomness or global state: time and chance arrive as inputs
//! (timeouts), and effects leave as an [`Output`] whose contract is in [`io`].

#![forbid(unsafe_code)]
#![warn(clippy::pedantic)]
#![allow(clippy::module_name_repetitions, clippy::must_use_candidate, clippy::doc_markdown)]

pub mod bug;
pub mod clerk;
mod client;
mod compaction;
mod display;
mod election;
pub mod envelope;
pub mod io;
pub mod kv;
pub mod log;
pub mod message;
mod replication;
pub mod snapshot;
pub mod state;
mod step;
pub mod types;

pub use bug::{Bug, BUGS_COMPILED};
pub use clerk::{clerk_step, Clerk, ClerkInput, ClerkOutput};
pub use envelope::{Endpoint, Envelope, Wire};
pub use io::{Input, Note, Output, TimerCommand};
pub use kv::{Applied, KvState, Session};
pub use log::Log;
pub use message::{ClientReply, ClientRequest, ClientResult, PeerMsg};
pub use snapshot::Snapshot;
pub use state::{Config, Durable, DurableChange, LeaderState, Pending, ReplayError, Role, Server};
pub use step::{step, step_in_place};
pub use types::{ClientId, Command, Entry, LogIndex, NodeId, Op, OpOutput, Seq, Term, Timer};
