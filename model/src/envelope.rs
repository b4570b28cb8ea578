//! Addresses and envelopes for drivers that carry the core's messages themselves (the model
//! checker, the simulator, transcript tests): plain data, no transport.

use crate::clerk::ClerkOutput;
use crate::io::Output;
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

impl Envelope {
    /// What server `from`'s step sends, addressed: its peer messages, then its replies to
    /// clerks, in the order the step produced them. Taken out of `out`, which keeps the rest
    /// (durable changes, timers, notes). Every driver that carries messages itself puts these
    /// on its network; the runtime, which has sockets instead, reads `out.send` and
    /// `out.reply` directly.
    pub fn from_server(from: NodeId, out: &mut Output) -> impl Iterator<Item = Envelope> {
        let me = Endpoint::Server(from);
        let peers = std::mem::take(&mut out.send).into_iter().map(move |(to, msg)| Envelope {
            from: me,
            to: Endpoint::Server(to),
            wire: Wire::Peer(msg),
        });
        let replies = std::mem::take(&mut out.reply).into_iter().map(move |reply| Envelope {
            from: me,
            to: Endpoint::Clerk(reply.client),
            wire: Wire::Reply(reply),
        });
        peers.chain(replies)
    }

    /// The request clerk `from`'s step sends, if any, addressed (taken out of `out`).
    pub fn from_clerk(from: ClientId, out: &mut ClerkOutput) -> Option<Envelope> {
        let (to, request) = out.send.take()?;
        Some(Envelope { from: Endpoint::Clerk(from), to: Endpoint::Server(to), wire: Wire::Request(request) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::ClientResult;
    use crate::types::{Op, OpOutput, Seq, Term};

    #[test]
    fn a_steps_messages_are_addressed_from_its_sender_and_leave_the_rest() {
        let vote = PeerMsg::VoteReply { term: Term(2), granted: true };
        let reply = ClientReply { client: ClientId(7), seq: Seq(1), result: ClientResult::Ok(OpOutput::Done) };
        let mut out = Output { send: vec![(NodeId(2), vote.clone())], reply: vec![reply.clone()], ..Output::default() };
        out.timers.push(crate::io::TimerCommand::Cancel(crate::types::Timer::Heartbeat));
        let sent: Vec<Envelope> = Envelope::from_server(NodeId(1), &mut out).collect();
        let s1 = Endpoint::Server(NodeId(1));
        assert_eq!(
            sent,
            [
                Envelope { from: s1, to: Endpoint::Server(NodeId(2)), wire: Wire::Peer(vote) },
                Envelope { from: s1, to: Endpoint::Clerk(ClientId(7)), wire: Wire::Reply(reply) },
            ]
        );
        assert!(out.send.is_empty() && out.reply.is_empty());
        assert_eq!(out.timers.len(), 1, "timers stay for the driver");

        let request = ClientRequest { client: ClientId(7), seq: Seq(1), op: Op::Get { key: "k".into() } };
        let mut out = ClerkOutput { send: Some((NodeId(3), request.clone())), ..ClerkOutput::default() };
        let e = Envelope::from_clerk(ClientId(7), &mut out).expect("a request was sent");
        assert_eq!(
            (e.from, e.to, e.wire),
            (Endpoint::Clerk(ClientId(7)), Endpoint::Server(NodeId(3)), Wire::Request(request))
        );
        assert_eq!(Envelope::from_clerk(ClientId(7), &mut out), None, "taken");
    }
}
