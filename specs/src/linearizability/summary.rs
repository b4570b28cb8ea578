//! An incremental, canonical summary of a history for linearizability: instead of keeping
//! every operation and searching again at each completion ([`check`]), keep only what the
//! future can still depend on. It is Wing & Gong's search (J. Wing, C. Gong, "Testing and
//! Verifying Concurrent Objects", 1993) run forward, one event at a time: G. Lowe ("Testing
//! for Linearizability", 2017) calls this the just-in-time (JIT) linearizability checker.
//!
//! By locality (Herlihy & Wing 1990, Theorem 1: a history is linearizable iff each object's
//! sub-history is), each key is summarised on its own, as its *pending* operations (invoked,
//! not returned: one per client) and a *set of configurations*. A configuration is a value of
//! the register together with, for each pending operation, either "not yet linearized" or
//! "linearized, returning X" (X as [`apply_to_register`] gave it at its linearization point).
//!
//! **As strong as the full check.** Invariant: after each event, a key's set is exactly the
//! set of (value, linearized pending operations with their results) reached by the legal
//! partial linearizations of the key's history so far that respect real time and contain
//! every completed operation. It holds initially (`""`, nothing pending). Any linearization
//! can place each operation's point between two consecutive events during which it is
//! pending, and between two events the operations then pending are pairwise concurrent and
//! may take effect in any order, after what took effect earlier. So an invocation adds the new
//! operation, not yet linearized, to every configuration, and closing the set under
//! "linearize one more pending operation" adds every way pending operations can take effect
//! before the next event. A completion keeps exactly the configurations in which the
//! operation took effect before returning, with the result it returned, and forgets it (the
//! kept set is still closed: nothing new can take effect at a return). So the set is empty iff
//! the history so far has no linearization; operations that never return stay pending and
//! each may or may not take effect, as in [`check`]. Prefixes of a linearizable history are
//! linearizable, so once the set is empty no extension is linearizable: "not linearizable"
//! is final, and the summary stops recording.
//!
//! **Canonical.** The summary holds only ordered `im` collections keyed by client and key,
//! and values: no operation ids, counters or insertion order. Two histories with the same
//! pending operations and the same sets of configurations give equal (and equal-hashing)
//! summaries, however they were interleaved; a key back in its initial state (nothing pending,
//! only the value `""` possible) is dropped, so it equals a key never used. Once not
//! linearizable, only the key and the offending completion are kept. (Canonical, not minimal:
//! no attempt is made to merge different sets of configurations that would admit the same
//! futures.)
//!
//! [`check`]: super::check

use crate::kv_spec::apply_to_register;
use crate::violation::Violation;
use crate::LINEARIZABLE;
use im::{OrdMap, OrdSet};
use model::{ClientId, Op, OpOutput};
use serde::{Deserialize, Serialize};

/// What the linearizability of a history can still depend on; see the module documentation.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Summary {
    /// Keys in use: with an operation pending, or more than the initial value possible.
    keys: OrdMap<String, KeySummary>,
    /// Once not linearizable: the key, and the completion that made it so.
    violation: Option<(String, String)>,
}

/// One key: its pending operations and its (closed, never empty) set of configurations.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
struct KeySummary {
    pending: OrdMap<ClientId, Op>,
    configs: OrdSet<Config>,
}

/// A state a legal partial linearization can have reached.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct Config {
    value: String,
    /// The pending operations already linearized, with what they returned; the other
    /// pending operations are not yet linearized.
    linearized: OrdMap<ClientId, OpOutput>,
}

impl Summary {
    #[must_use]
    pub fn new() -> Summary {
        Summary::default()
    }

    /// `client` invokes `op`. Once not linearizable, nothing is recorded any more.
    ///
    /// # Panics
    /// If `client` already has an operation in flight.
    pub fn invoke(&mut self, client: ClientId, op: Op) {
        if self.violation.is_some() {
            return;
        }
        if let Some(key) = self.key_of(client) {
            panic!("{client} invokes {op} with an operation on key {key:?} in flight");
        }
        let key = self.keys.entry(op.key().to_string()).or_insert_with(KeySummary::new);
        key.pending.insert(client, op);
        key.close();
    }

    /// `client`'s operation in flight returned `output`. Once not linearizable, nothing is
    /// recorded any more.
    ///
    /// # Panics
    /// If `client` has no operation in flight.
    #[allow(clippy::needless_pass_by_value)] // by value, as for `History::complete`
    pub fn complete(&mut self, client: ClientId, output: OpOutput) {
        if self.violation.is_some() {
            return;
        }
        let Some(name) = self.key_of(client).map(str::to_string) else {
            panic!("{client} returns {output} with no operation in flight");
        };
        let key = self.keys.get_mut(&name).expect("key_of names a key in use");
        match key.complete(client, &output) {
            Ok(()) if key.is_initial() => {
                self.keys.remove(&name);
            }
            Ok(()) => {}
            Err(description) => {
                self.keys = OrdMap::new();
                self.violation = Some((name, description));
            }
        }
    }

    /// False once the history so far has no linearization (and from then on).
    #[must_use]
    pub fn is_linearizable(&self) -> bool {
        self.violation.is_none()
    }

    /// When not linearizable: the key, and a one-line description of the completion that
    /// made it so (the operation, what it returned, and what it could have returned).
    #[must_use]
    pub fn violation(&self) -> Option<(String, String)> {
        self.violation.clone()
    }

    /// The summary as a property check.
    ///
    /// # Errors
    /// A [`LINEARIZABLE`] violation once the history is not linearizable.
    pub fn check(&self) -> Result<(), Violation> {
        match &self.violation {
            None => Ok(()),
            Some((key, description)) => Err(Violation::new(LINEARIZABLE, format!("key {key:?}: {description}"))),
        }
    }

    /// The key of `client`'s operation in flight.
    fn key_of(&self, client: ClientId) -> Option<&str> {
        let mut keys = self.keys.iter();
        keys.find(|(_, key)| key.pending.contains_key(&client)).map(|(name, _)| name.as_str())
    }
}

impl KeySummary {
    /// A key never used: nothing pending, the register empty.
    fn new() -> KeySummary {
        KeySummary {
            pending: OrdMap::new(),
            configs: OrdSet::unit(Config { value: String::new(), linearized: OrdMap::new() }),
        }
    }

    fn is_initial(&self) -> bool {
        *self == KeySummary::new()
    }

    /// Closes the set under "linearize one more pending operation".
    fn close(&mut self) {
        let mut frontier: Vec<Config> = self.configs.iter().cloned().collect();
        while let Some(config) = frontier.pop() {
            for (client, op) in &self.pending {
                if config.linearized.contains_key(client) {
                    continue;
                }
                let mut next = config.clone();
                let output = apply_to_register(&mut next.value, op);
                next.linearized.insert(*client, output);
                if self.configs.insert(next.clone()).is_none() {
                    frontier.push(next);
                }
            }
        }
    }

    /// `client`'s pending operation returned `output`: keeps the configurations where it took
    /// effect with that result, and forgets it. The set stays closed (extending a kept
    /// configuration gives a kept one). On an empty set, describes the completion.
    fn complete(&mut self, client: ClientId, output: &OpOutput) -> Result<(), String> {
        let op = self.pending.remove(&client).expect("the client has an operation here");
        let mut kept = OrdSet::new();
        let mut possible = OrdSet::new();
        for config in &self.configs {
            match config.linearized.get(&client) {
                Some(result) if result == output => {
                    let mut config = config.clone();
                    config.linearized.remove(&client);
                    kept.insert(config);
                }
                Some(result) => {
                    possible.insert(result.clone());
                }
                None => {}
            }
        }
        if kept.is_empty() {
            let possible: Vec<String> = possible.iter().map(ToString::to_string).collect();
            return Err(format!(
                "{client} {op} -> {output}, but it could only have returned {}",
                possible.join(" or ")
            ));
        }
        self.configs = kept;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{append, get, put};
    use std::hash::{DefaultHasher, Hash, Hasher};

    const C1: ClientId = ClientId(1);
    const C2: ClientId = ClientId(2);
    const C3: ClientId = ClientId(3);

    fn value(s: &str) -> OpOutput {
        OpOutput::Value(s.to_string())
    }

    /// `client` runs `op` from invocation to completion with nothing in between.
    fn run(s: &mut Summary, client: ClientId, op: Op, output: OpOutput) {
        s.invoke(client, op);
        s.complete(client, output);
    }

    fn hash(s: &Summary) -> u64 {
        let mut hasher = DefaultHasher::new();
        s.hash(&mut hasher);
        hasher.finish()
    }

    #[test]
    fn a_get_concurrent_with_an_append_may_read_either() {
        for read in ["", "a"] {
            let mut s = Summary::new();
            s.invoke(C1, append("x", "a"));
            run(&mut s, C2, get("x"), value(read));
            s.complete(C1, OpOutput::Done);
            assert!(s.is_linearizable(), "reading {read:?}");
            assert_eq!(s.violation(), None);
            assert_eq!(s.check(), Ok(()));
        }
    }

    #[test]
    fn a_get_after_a_completed_append_must_see_it() {
        let mut s = Summary::new();
        run(&mut s, C1, append("x", "a"), OpOutput::Done);
        let mut missed = s.clone();
        run(&mut s, C2, get("x"), value("a"));
        assert!(s.is_linearizable());
        run(&mut missed, C2, get("x"), value(""));
        assert!(!missed.is_linearizable());
    }

    #[test]
    fn a_stale_read_after_a_completed_write_is_caught() {
        let mut s = Summary::new();
        run(&mut s, C1, put("x", "a"), OpOutput::Done);
        run(&mut s, C2, put("x", "b"), OpOutput::Done);
        run(&mut s, C1, get("x"), value("a"));
        let (key, description) = s.violation().expect("a stale read");
        assert_eq!(key, "x");
        assert_eq!(description, "c1 get x -> value \"a\", but it could only have returned value \"b\"");
        let err = s.check().unwrap_err();
        assert_eq!(err.property, LINEARIZABLE);
        assert!(err.detail.starts_with("key \"x\": c1 get x"), "{err}");
    }

    #[test]
    fn a_duplicated_append_is_caught() {
        let mut s = Summary::new();
        run(&mut s, C1, append("x", "a"), OpOutput::Done);
        run(&mut s, C2, get("x"), value("aa"));
        assert!(!s.is_linearizable());
        // Even when the append is still in flight: it takes effect once.
        let mut s = Summary::new();
        s.invoke(C1, append("x", "a"));
        run(&mut s, C2, get("x"), value("aa"));
        assert!(!s.is_linearizable());
    }

    #[test]
    fn operations_pending_forever_may_or_may_not_take_effect() {
        let mut s = Summary::new();
        s.invoke(C1, append("x", "a"));
        run(&mut s, C2, get("x"), value(""));
        assert!(s.is_linearizable(), "not yet");
        run(&mut s, C2, get("x"), value("a"));
        assert!(s.is_linearizable(), "now it has");
        run(&mut s, C2, get("x"), value(""));
        assert!(!s.is_linearizable(), "once seen, it cannot be undone");
    }

    #[test]
    fn concurrent_readers_cannot_see_a_write_come_and_go() {
        let mut s = Summary::new();
        run(&mut s, C1, put("x", "a"), OpOutput::Done);
        s.invoke(C1, put("x", "b"));
        run(&mut s, C2, get("x"), value("b"));
        run(&mut s, C3, get("x"), value("a"));
        assert!(!s.is_linearizable());
    }

    #[test]
    fn two_keys_are_independent() {
        let mut s = Summary::new();
        s.invoke(C1, append("x", "a"));
        run(&mut s, C2, get("y"), value(""));
        run(&mut s, C2, put("y", "b"), OpOutput::Done);
        run(&mut s, C3, get("x"), value("a"));
        assert!(s.is_linearizable());
        run(&mut s, C3, get("y"), value("a"));
        assert_eq!(s.violation().map(|(key, _)| key), Some("y".to_string()));
    }

    #[test]
    fn not_linearizable_is_sticky_and_keeps_only_the_violation() {
        let mut s = Summary::new();
        s.invoke(C3, put("z", "c"));
        run(&mut s, C1, get("x"), value("a"));
        let violated = s.clone();
        assert!(s.keys.is_empty());
        run(&mut s, C2, put("x", "a"), OpOutput::Done);
        run(&mut s, C1, get("x"), value("a"));
        s.complete(C3, OpOutput::Done);
        assert_eq!(s, violated);
    }

    #[test]
    fn different_interleavings_with_the_same_future_give_equal_summaries() {
        // x: two appends, in sequence or concurrent, then a read that orders them.
        let mut sequential = Summary::new();
        run(&mut sequential, C1, append("x", "a"), OpOutput::Done);
        run(&mut sequential, C2, append("x", "b"), OpOutput::Done);
        let mut concurrent = Summary::new();
        concurrent.invoke(C2, append("x", "b"));
        concurrent.invoke(C1, append("x", "a"));
        concurrent.complete(C2, OpOutput::Done);
        concurrent.complete(C1, OpOutput::Done);
        assert_ne!(sequential, concurrent, "\"ba\" is still possible");
        // y: something pending, invoked at different times.
        sequential.invoke(C3, put("y", "c"));
        run(&mut sequential, C1, get("x"), value("ab"));
        run(&mut concurrent, C1, get("x"), value("ab"));
        concurrent.invoke(C3, put("y", "c"));
        assert_eq!(sequential, concurrent);
        assert_eq!(hash(&sequential), hash(&concurrent));
    }

    #[test]
    fn a_key_back_in_its_initial_state_is_forgotten() {
        let mut s = Summary::new();
        run(&mut s, C1, get("x"), value(""));
        run(&mut s, C2, put("y", ""), OpOutput::Done);
        assert_eq!(s, Summary::new());
        assert_eq!(hash(&s), hash(&Summary::new()));
        run(&mut s, C2, put("y", "b"), OpOutput::Done);
        assert_ne!(s, Summary::new());
    }

    #[test]
    fn configurations_stay_few() {
        let mut s = Summary::new();
        s.invoke(C1, append("x", "a"));
        s.invoke(C2, append("x", "b"));
        s.invoke(C3, get("x"));
        let configs = s.keys["x"].configs.len();
        // 1 empty, 3 with one op, 6 with two, 6 with three (orders of two appends and a get).
        assert_eq!(configs, 16);
    }

    #[test]
    #[should_panic(expected = "in flight")]
    fn a_second_operation_in_flight_is_a_recording_mistake() {
        let mut s = Summary::new();
        s.invoke(C1, get("x"));
        s.invoke(C1, put("y", "a"));
    }

    #[test]
    #[should_panic(expected = "no operation in flight")]
    fn completing_nothing_is_a_recording_mistake() {
        let mut s = Summary::new();
        run(&mut s, C1, get("x"), value(""));
        s.complete(C1, value(""));
    }

    /// A deliberately broken completion that does not compare outputs.
    fn complete_ignoring_output(s: &mut Summary, client: ClientId) {
        let name = s.key_of(client).unwrap().to_string();
        let key = s.keys.get_mut(&name).unwrap();
        key.pending.remove(&client);
        let configs = key.configs.iter().filter(|c| c.linearized.contains_key(&client));
        key.configs = configs
            .map(|c| {
                let mut c = c.clone();
                c.linearized.remove(&client);
                c
            })
            .collect();
    }

    #[test]
    fn a_summary_ignoring_outputs_would_accept_what_this_one_rejects() {
        type Event = (ClientId, Op, Option<OpOutput>);
        let done = || Some(OpOutput::Done);
        let bad: [&[Event]; 3] = [
            // Stale read.
            &[(C1, put("x", "a"), done()), (C2, get("x"), Some(value("")))],
            // Duplicated append.
            &[(C1, append("x", "a"), done()), (C2, get("x"), Some(value("aa")))],
            // A write seen, then unseen.
            &[(C1, append("x", "a"), None), (C2, get("x"), Some(value("a"))), (C3, get("x"), Some(value("")))],
        ];
        for history in bad {
            let (mut good, mut broken) = (Summary::new(), Summary::new());
            for (client, op, output) in history {
                good.invoke(*client, op.clone());
                broken.invoke(*client, op.clone());
                if let Some(output) = output {
                    good.complete(*client, output.clone());
                    complete_ignoring_output(&mut broken, *client);
                }
            }
            assert!(!good.is_linearizable(), "{history:?}");
            assert!(broken.is_linearizable(), "{history:?}");
        }
    }
}
