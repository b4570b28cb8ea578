//! Addresses and envelopes for drivers that carry the core's messages themselves (the model
//! checker, the simulator, transcript tests): plain data, no transport.

use crate::message::{ClientReply, ClientRequest, PeerMsg};
use crate::types::{ClientId, NodeId};
use serde::{Deserialize, Serialize};
use std::fmt;

/// One end of a message: a server or a clerk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Endpoint {
    Server(NodeId),
    Clerk(ClientId),
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Server(n) => write!(f, "{}", n.0),
            Endpoint::Clerk(c) => write!(f, "c{}", c.0),
        }
    }
}

impl std::str::FromStr for Endpoint {
    type Err = String;

    /// `3` is server 3, `c7` is clerk 7.
    fn from_str(s: &str) -> Result<Endpoint, String> {
        let bad = |_| format!("bad endpoint {s:?}: expected a server number or cN for a clerk");
        match s.strip_prefix('c') {
            Some(c) => Ok(Endpoint::Clerk(ClientId(c.parse().map_err(bad)?))),
            None => Ok(Endpoint::Server(NodeId(s.parse().map_err(bad)?))),
        }
    }
}

/// What travels: a peer message, a clerk's request, or a server's reply.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Wire {
    Peer(PeerMsg),
    Request(ClientRequest),
    Reply(ClientReply),
}

impl fmt::Display for Wire {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Wire::Peer(m) => write!(f, "{m}"),
            Wire::Request(r) => write!(f, "request {r}"),
            Wire::Reply(r) => write!(f, "reply {r}"),
        }
    }
}

/// A message in flight.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Envelope {
    pub from: Endpoint,
    pub to: Endpoint,
    pub wire: Wire,
}

impl fmt::Display for Envelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}->{} {}", self.from, self.to, self.wire)
    }
}
