//! Messages between send and delivery: the link and liveness checks at both ends, labrpc's
//! fate of each message, FIFO per link when the network keeps order, and the statistics.

use super::{clerk_index, node_index, Scheduled, Sim, SimResult};
use crate::links::{is_reply, Transit};
use model::{ClerkInput, Endpoint, Envelope, Input, PeerMsg, Wire};

impl Sim {
    fn incarnation(&self, e: Endpoint) -> u32 {
        match e {
            Endpoint::Server(n) => self.nodes[node_index(n)].incarnation,
            Endpoint::Clerk(_) => 0,
        }
    }

    pub(super) fn send(&mut self, envelope: Envelope) {
        let Envelope { from, to, wire } = envelope;
        self.stats.sent += 1;
        if let Wire::Peer(msg) = &wire {
            let bytes = model::log::encoded_size(msg);
            if is_reply(&wire) {
                self.stats.peer_reply_bytes += bytes;
            } else {
                self.stats.peer_request_bytes += bytes;
            }
        }
        if !self.links.enabled(from, to) {
            self.stats.cut += 1;
            return;
        }
        let receiver_gone = match to {
            Endpoint::Server(n) => !self.nodes[node_index(n)].up,
            // A reply to a command submitted with `start`: nobody waits for it.
            Endpoint::Clerk(c) => clerk_index(c) >= self.clerks.len(),
        };
        if receiver_gone {
            self.stats.dead += 1;
            return;
        }
        match self.cfg.net.fate(is_reply(&wire), &mut self.rng) {
            Transit::Dropped => self.stats.lost += 1,
            Transit::Delayed(delays) => {
                let (sender, receiver) = (self.incarnation(from), self.incarnation(to));
                for delay in delays {
                    let mut at = self.now + delay;
                    if self.cfg.net.fifo() {
                        let last = self.link_last.entry((from, to)).or_insert(0);
                        at = at.max(*last);
                        *last = at;
                    }
                    let envelope = Envelope { from, to, wire: wire.clone() };
                    self.push(at, Scheduled::Deliver { envelope, sender, receiver });
                }
            }
        }
    }

    pub(super) fn deliver(&mut self, envelope: Envelope, sender: u32, receiver: u32) -> SimResult<()> {
        let Envelope { from, to, wire } = envelope;
        if !self.links.enabled(from, to) {
            self.stats.cut += 1;
            return Ok(());
        }
        let alive = |e: Endpoint, incarnation: u32| match e {
            Endpoint::Server(n) => {
                let meta = &self.nodes[node_index(n)];
                meta.up && meta.incarnation == incarnation
            }
            Endpoint::Clerk(_) => true,
        };
        if !alive(from, sender) || !alive(to, receiver) {
            self.stats.dead += 1;
            return Ok(());
        }
        self.stats.delivered += 1;
        match &wire {
            Wire::Peer(PeerMsg::AppendReply { success: false, .. }) => self.stats.rejections += 1,
            w if matches!(from, Endpoint::Server(_)) && matches!(to, Endpoint::Server(_)) && !is_reply(w) => {
                self.stats.peer_requests += 1;
            }
            _ => {}
        }
        match (from, to, wire) {
            (Endpoint::Server(from), Endpoint::Server(to), Wire::Peer(msg)) => {
                self.step_server(node_index(to), Input::Receive { from, msg })
            }
            (_, Endpoint::Server(to), Wire::Request(request)) => {
                self.step_server(node_index(to), Input::Client(request))
            }
            (Endpoint::Server(from), Endpoint::Clerk(c), Wire::Reply(reply)) => {
                self.step_clerk(clerk_index(c), ClerkInput::Reply { from, reply })
            }
            (from, to, wire) => unreachable!("the simulator never routes {wire} from {from} to {to}"),
        }
    }
}
