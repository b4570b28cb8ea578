//! What a run leaves behind for replay and comparison: a running hash of every event (its time,
//! its actor, its input and the core's output), and the last few events in full, to print when
//! a run fails.
//!
//! The hash is FxHash-style (rotate, xor, multiply by a fixed odd constant, a word at a time):
//! fixed keys, no randomness, the same value for the same trace in every run of any build.
//! It is a fingerprint, not a defence against adversaries.

use super::Micros;
use model::{ClerkInput, ClientId, Input, NodeId};
use std::collections::VecDeque;
use std::fmt;
use std::hash::{Hash, Hasher};

const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;

/// A deterministic word-at-a-time hasher.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceHash(u64);

impl Default for TraceHash {
    fn default() -> TraceHash {
        TraceHash(0xcbf2_9ce4_8422_2325)
    }
}

impl TraceHash {
    fn mix(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(K);
    }

    /// Folds one value into the running hash.
    pub fn record<T: Hash + ?Sized>(&mut self, value: &T) {
        value.hash(self);
    }

    pub fn value(&self) -> u64 {
        self.0
    }
}

impl Hasher for TraceHash {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.mix(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.mix(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 56));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.mix(u64::from(i));
    }

    fn write_u32(&mut self, i: u32) {
        self.mix(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.mix(i);
    }

    fn write_usize(&mut self, i: usize) {
        self.mix(i as u64);
    }
}

/// One event, kept whole (inputs are cheap `im` clones) and rendered only when printed.
#[derive(Clone, Debug)]
pub enum Event {
    Server {
        at: Micros,
        node: NodeId,
        input: Input,
    },
    Clerk {
        at: Micros,
        clerk: ClientId,
        input: ClerkInput,
    },
    /// Something the scenario or the environment did (crash, partition, ...).
    World {
        at: Micros,
        what: String,
    },
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = |t: Micros| format!("{:>4}.{:06}", t / 1_000_000, t % 1_000_000);
        match self {
            Event::Server { at: t, node, input } => write!(f, "{} {node} <- {input}", at(*t)),
            Event::Clerk { at: t, clerk, input } => write!(f, "{} {clerk} <- {input}", at(*t)),
            Event::World { at: t, what } => write!(f, "{} ** {what}", at(*t)),
        }
    }
}

/// The last `capacity` events.
#[derive(Clone, Debug)]
pub struct Recent {
    events: VecDeque<Event>,
    capacity: usize,
}

impl Recent {
    pub fn new(capacity: usize) -> Recent {
        Recent { events: VecDeque::with_capacity(capacity), capacity }
    }

    pub fn push(&mut self, event: Event) {
        if self.events.len() == self.capacity {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }

    pub fn render(&self) -> Vec<String> {
        self.events.iter().map(|e| truncate(&e.to_string(), 300)).collect()
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{} …", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_depends_on_content_and_order() {
        let hash = |items: &[&str]| {
            let mut h = TraceHash::default();
            items.iter().for_each(|i| h.record(i));
            h.value()
        };
        assert_eq!(hash(&["a", "bc"]), hash(&["a", "bc"]));
        assert_ne!(hash(&["a", "bc"]), hash(&["bc", "a"]));
        assert_ne!(hash(&["ab", "c"]), hash(&["a", "bc"]));
    }

    #[test]
    fn recent_keeps_the_last_events() {
        let mut recent = Recent::new(2);
        for k in 0..3 {
            recent.push(Event::World { at: k, what: format!("e{k}") });
        }
        let lines = recent.render();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].ends_with("e1") && lines[1].ends_with("e2"), "{lines:?}");
    }
}
