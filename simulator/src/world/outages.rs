//! What a scenario does to the cluster: crashes and restarts, partitions, and the labs'
//! connect/disconnect of servers and clerks.

use super::{clerk_id, names, node_id, Sim, TimerSlot};
use crate::trace::Event;
use model::{Endpoint, Server};

impl Sim {
    // ----- crashes

    /// Records something the scenario did, in the trace and its hash.
    pub fn world(&mut self, what: String) {
        self.hash.record(&(self.now, 2u8, &what));
        if self.verbose {
            println!("{}", Event::World { at: self.now, what: what.clone() });
        }
        self.recent.push(Event::World { at: self.now, what });
    }

    /// Server `n` loses everything but its `Durable`; its timers stop and messages to or from
    /// this incarnation are lost.
    pub fn crash(&mut self, n: usize) {
        if !self.nodes[n].up {
            return;
        }
        self.world(format!("crash {}", node_id(n)));
        let (restored, _) = Server::restore(self.config(n), self.servers[n].durable.clone());
        self.servers[n] = restored;
        let meta = &mut self.nodes[n];
        meta.up = false;
        meta.incarnation += 1;
        meta.election = TimerSlot::default();
        meta.heartbeat = TimerSlot::default();
        self.stats.crashes += 1;
    }

    /// Server `n` starts again from what it persisted.
    pub fn restart(&mut self, n: usize) {
        if self.nodes[n].up {
            return;
        }
        self.world(format!("restart {}", node_id(n)));
        let (server, out) = Server::restore(self.config(n), self.servers[n].durable.clone());
        self.ghost.observe_restart(&server);
        let restored = server.durable.snapshot.last_index;
        self.servers[n] = server;
        self.record_snapshot(n, restored);
        self.nodes[n].up = true;
        self.apply_timers(n, &out.timers);
    }

    // ----- links

    /// kvraft's `partition(p1, p2, ...)`: links between servers of one group are enabled, all
    /// other server↔server links are cut (clerk links are untouched).
    pub fn partition(&mut self, groups: &[Vec<usize>]) {
        let shown: Vec<String> = groups.iter().map(|g| names(g)).collect();
        self.world(format!("partition {}", shown.join(" | ")));
        let group_of = |k: usize| groups.iter().position(|g| g.contains(&k));
        let n = self.servers.len();
        for a in 0..n {
            for b in a + 1..n {
                let together = group_of(a).is_some() && group_of(a) == group_of(b);
                self.links.set(Endpoint::Server(node_id(a)), Endpoint::Server(node_id(b)), together);
            }
        }
    }

    /// kvraft's `ConnectAll`: every server↔server link enabled.
    pub fn connect_all_servers(&mut self) {
        let all: Vec<usize> = (0..self.servers.len()).collect();
        self.partition(&[all]);
    }

    /// kvraft's `ConnectClient(ck, to)`: the clerk reaches exactly the servers in `to`.
    pub fn connect_clerk(&mut self, c: usize, to: &[usize]) {
        self.world(format!("clerk {} reaches {}", clerk_id(c), names(to)));
        for k in 0..self.servers.len() {
            self.links.set(Endpoint::Clerk(clerk_id(c)), Endpoint::Server(node_id(k)), to.contains(&k));
        }
    }

    /// The Raft lab's `disconnect(i)`: every link into and out of server `i` is cut.
    pub fn disconnect(&mut self, i: usize) {
        self.world(format!("disconnect {}", node_id(i)));
        self.nodes[i].connected = false;
        for k in (0..self.servers.len()).filter(|&k| k != i) {
            self.links.set(Endpoint::Server(node_id(i)), Endpoint::Server(node_id(k)), false);
        }
    }

    /// The Raft lab's `connect(i)`: links between `i` and the connected servers are enabled.
    pub fn connect(&mut self, i: usize) {
        self.world(format!("connect {}", node_id(i)));
        self.nodes[i].connected = true;
        for k in (0..self.servers.len()).filter(|&k| k != i && self.nodes[k].connected) {
            self.links.set(Endpoint::Server(node_id(i)), Endpoint::Server(node_id(k)), true);
        }
    }

    pub fn is_connected(&self, i: usize) -> bool {
        self.nodes[i].connected
    }
}
