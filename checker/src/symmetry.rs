//! Symmetry reduction over servers.
//!
//! Servers are interchangeable: nothing in the core depends on a server's id except through
//! the state itself (votes, leader hints, `next_index` keys, the clerks' lists of servers,
//! message endpoints). So renaming the servers everywhere in a state by a permutation σ gives a
//! state whose behaviours are exactly the σ-renamed behaviours of the original, and every
//! property checked is invariant under renaming (none mentions a server by id). Exploring one
//! representative per class of renamed states is therefore sound for all properties.
//!
//! The representative is the renaming that sorts the servers by what their states say without
//! naming a server (`signature`), trying every order among servers with equal signatures and
//! keeping the one whose state hashes smallest. Any renaming is sound as a representative: two
//! states share a representative only if one is a renaming of the other; a choice that is not
//! canonical only loses reduction, never a behaviour. Clerks are not interchangeable (their scripts
//! differ).

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
        let mut nodes: Vec<Node> =
            s.nodes.iter().map(|n| Node { server: self.server(&n.server), ..n.clone() }).collect();
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

/// What a server's state says without naming any server: the key the representative sorts
/// servers by. Equal keys only make the choice among renamings less canonical (less
/// reduction), never unsound: whatever order results, the representative is a renaming.
fn signature(n: &Node) -> u64 {
    let s = &n.server;
    let hasher = std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default();
    let mut h = hasher.build_hasher();
    (s.durable.current_term, s.durable.voted_for.is_some(), s.durable.voted_for == Some(s.id())).hash(&mut h);
    (&s.durable.log, s.durable.snapshot.last_index, s.commit_index, s.last_applied, &s.pending).hash(&mut h);
    match &s.role {
        Role::Follower { leader } => (0u8, leader.is_some()).hash(&mut h),
        Role::Candidate { votes } => (1u8, votes.len()).hash(&mut h),
        Role::Leader(l) => {
            let mut matched: Vec<_> = l.match_index.values().collect();
            matched.sort_unstable();
            (2u8, matched).hash(&mut h);
        }
    }
    (n.up, n.election_armed, n.heartbeat_armed, n.restarted, n.restored_from, n.installed_snapshot).hash(&mut h);
    std::hash::Hasher::finish(&h)
}

/// The representative of `s`'s class under server renaming: servers sorted by `signature`;
/// among servers with equal signatures, the order whose renamed state hashes smallest. When
/// all signatures differ this costs one renaming instead of n!.
pub fn representative(s: &SysState, fifo: bool) -> SysState {
    let mut order: Vec<(u64, usize)> = s.nodes.iter().enumerate().map(|(k, n)| (signature(n), k)).collect();
    order.sort_unstable();
    let mut candidates: Vec<Vec<usize>> = vec![Vec::new()];
    let mut start = 0;
    while start < order.len() {
        let end = start + order[start..].iter().take_while(|x| x.0 == order[start].0).count();
        let group: Vec<usize> = order[start..end].iter().map(|x| x.1).collect();
        let orders = permutations(&group);
        candidates = candidates
            .iter()
            .flat_map(|prefix| orders.iter().map(move |o| prefix.iter().chain(o).copied().collect()))
            .collect();
        start = end;
    }
    let renamed = |positions: &Vec<usize>| {
        let mut map = vec![0u32; s.nodes.len()];
        for (rank, &k) in positions.iter().enumerate() {
            map[k] = u32::try_from(rank + 1).expect("few servers");
        }
        Renaming { map: &map }.state(s, fifo)
    };
    if candidates.len() == 1 {
        return renamed(&candidates[0]);
    }
    candidates.iter().map(renamed).min_by_key(fingerprint).expect("at least one order")
}

/// Every order of `items`.
fn permutations(items: &[usize]) -> Vec<Vec<usize>> {
    if items.len() <= 1 {
        return vec![items.to_vec()];
    }
    let mut out = Vec::new();
    for (k, &first) in items.iter().enumerate() {
        let mut rest = items.to_vec();
        rest.remove(k);
        for mut tail in permutations(&rest) {
            tail.insert(0, first);
            out.push(tail);
        }
    }
    out
}

fn fingerprint(s: &SysState) -> u64 {
    // Any fixed hasher will do: only the order of hashes within one class matters.
    let hasher = std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default();
    let mut h = hasher.build_hasher();
    s.hash(&mut h);
    std::hash::Hasher::finish(&h)
}

/// `representative` for the reordering/duplicating networks (sorted).
pub fn representative_sorted(s: &SysState) -> SysState {
    representative(s, false)
}

/// `representative` for the FIFO network (per-link order kept).
pub fn representative_fifo(s: &SysState) -> SysState {
    representative(s, true)
}
