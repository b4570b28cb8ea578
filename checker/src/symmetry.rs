//! Symmetry reduction over servers.
//!
//! Servers are interchangeable: nothing in the core depends on a server's id except through
//! the state itself (votes, leader hints, `next_index` keys, the clerks' lists of servers,
//! message endpoints). So renaming the servers everywhere in a state by a permutation σ gives a
//! state whose behaviours are exactly the σ-renamed behaviours of the original, and every
//! property checked is invariant under renaming (none mentions a server by id). Exploring one
//! representative per class of renamed states is therefore sound for all properties.
//!
//! The representative is the renaming whose state has the smallest hash, over all n!
//! permutations (n ≤ 5; beyond that the state is returned unchanged, which is sound but does
//! not reduce). Equal hashes within one class would only make the choice non-canonical, which
//! loses reduction, never soundness. Clerks are not interchangeable (their scripts differ).

use crate::system::{ClerkSlot, Network, Node, SysState};
use model::{ClientReply, ClientResult, Endpoint, Envelope, LeaderState, NodeId, Role, Server, Wire};
use specs::Ghost;
use std::hash::{BuildHasher, Hash};

/// A renaming of servers 1..=n: `map[k]` is the new id of server `k + 1`.
struct Renaming<'a> {
    map: &'a [u32],
}

impl Renaming<'_> {
    fn id(&self, n: NodeId) -> NodeId {
        self.map.get(n.0 as usize - 1).map_or(n, |&m| NodeId(m))
    }

    fn end(&self, e: Endpoint) -> Endpoint {
        match e {
            Endpoint::Server(n) => Endpoint::Server(self.id(n)),
            clerk @ Endpoint::Clerk(_) => clerk,
        }
    }

    fn server(&self, s: &Server) -> Server {
        let mut s = s.clone();
        s.config.id = self.id(s.config.id);
        let mut peers: Vec<NodeId> = s.config.peers.iter().map(|&p| self.id(p)).collect();
        peers.sort_unstable();
        s.config.peers = peers.into_iter().collect();
        s.durable.voted_for = s.durable.voted_for.map(|v| self.id(v));
        s.role = match s.role {
            Role::Follower { leader } => Role::Follower { leader: leader.map(|l| self.id(l)) },
            Role::Candidate { votes } => Role::Candidate { votes: votes.iter().map(|&v| self.id(v)).collect() },
            Role::Leader(l) => Role::Leader(LeaderState {
                next_index: l.next_index.iter().map(|(&p, &i)| (self.id(p), i)).collect(),
                match_index: l.match_index.iter().map(|(&p, &i)| (self.id(p), i)).collect(),
            }),
        };
        s
    }

    fn wire(&self, w: &Wire) -> Wire {
        match w {
            Wire::Reply(ClientReply { client, seq, result: ClientResult::WrongLeader { hint } }) => {
                Wire::Reply(ClientReply {
                    client: *client,
                    seq: *seq,
                    result: ClientResult::WrongLeader { hint: hint.map(|h| self.id(h)) },
                })
            }
            other => other.clone(),
        }
    }

    fn ghost(&self, g: &Ghost) -> Ghost {
        let mut g = g.clone();
        g.leaders = g.leaders.iter().map(|(&t, &n)| (t, self.id(n))).collect();
        if let Some(d) = &mut g.double_leader {
            d.first = self.id(d.first);
            d.second = self.id(d.second);
        }
        if let Some(c) = &mut g.commit_conflict {
            c.server = self.id(c.server);
        }
        if let Some(d) = &mut g.double_execution {
            d.server = self.id(d.server);
        }
        g
    }

    fn state(&self, s: &SysState, fifo: bool) -> SysState {
        let mut nodes: Vec<Node> = s
            .nodes
            .iter()
            .map(|n| Node { server: self.server(&n.server), ..n.clone() })
            .collect();
        nodes.sort_by_key(|n| n.server.id());
        let clerks: Vec<ClerkSlot> = s
            .clerks
            .iter()
            .map(|c| {
                let mut c = c.clone();
                c.clerk.servers = c.clerk.servers.iter().map(|&n| self.id(n)).collect();
                c
            })
            .collect();
        let mut network: Network = s
            .network
            .iter()
            .map(|e| Envelope { from: self.end(e.from), to: self.end(e.to), wire: self.wire(&e.wire) })
            .collect();
        if fifo {
            network.sort_by_key(|e| (e.from, e.to)); // stable: keeps each link's order
        } else {
            network.sort();
        }
        SysState { nodes, clerks, network, ghost: self.ghost(&s.ghost), ..s.clone() }
    }
}

/// All permutations of `1..=n`, in lexicographic order.
fn permutations(n: u32) -> Vec<Vec<u32>> {
    fn extend(prefix: &mut Vec<u32>, n: u32, out: &mut Vec<Vec<u32>>) {
        if prefix.len() == n as usize {
            out.push(prefix.clone());
            return;
        }
        for k in 1..=n {
            if !prefix.contains(&k) {
                prefix.push(k);
                extend(prefix, n, out);
                prefix.pop();
            }
        }
    }
    let mut out = Vec::new();
    extend(&mut Vec::new(), n, &mut out);
    out
}

fn fingerprint(s: &SysState) -> u64 {
    // Any fixed hasher will do: only the order of hashes within one class matters.
    let hasher = std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default();
    let mut h = hasher.build_hasher();
    s.hash(&mut h);
    std::hash::Hasher::finish(&h)
}

/// The representative of `s`'s class under server renaming.
pub fn representative(s: &SysState, fifo: bool) -> SysState {
    let n = u32::try_from(s.nodes.len()).unwrap_or(u32::MAX);
    if n <= 1 || n > 5 {
        return s.clone();
    }
    thread_local! {
        static PERMUTATIONS: std::cell::RefCell<Vec<(u32, Vec<Vec<u32>>)>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    PERMUTATIONS.with(|cache| {
        let mut cache = cache.borrow_mut();
        if !cache.iter().any(|(k, _)| *k == n) {
            cache.push((n, permutations(n)));
        }
        let perms = &cache.iter().find(|(k, _)| *k == n).expect("cached").1;
        perms
            .iter()
            .map(|map| Renaming { map }.state(s, fifo))
            .min_by_key(fingerprint)
            .expect("at least one permutation")
    })
}

/// `representative` for the reordering/duplicating networks (sorted).
pub fn representative_sorted(s: &SysState) -> SysState {
    representative(s, false)
}

/// `representative` for the FIFO network (per-link order kept).
pub fn representative_fifo(s: &SysState) -> SysState {
    representative(s, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutations_of_three() {
        assert_eq!(permutations(3).len(), 6);
        assert_eq!(permutations(3)[0], vec![1, 2, 3]);
        assert_eq!(permutations(3)[5], vec![3, 2, 1]);
    }
}
