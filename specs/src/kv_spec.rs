//! The sequential specification of the key/value service, deliberately naive and written
//! independently of the model's state machine (`model::kv`), so that the two can check each
//! other: a `BTreeMap<String, String>` where
//! - `Get(k)` returns the value of `k`, `""` when `k` was never written;
//! - `Put(k, v)` sets `k` to `v`;
//! - `Append(k, x)` sets `k` to its value followed by `x` (on a missing key, a `Put`).
//!
//! [`KvSpec::replay_dedup`] adds the at-most-once session rule of Raft §8 (thesis §6.3): a
//! command runs only if its seq is newer than the last one its client ran.

use model::{ClientId, Command, Op, OpOutput, Seq};
use std::collections::BTreeMap;

/// The whole store as a sequential object.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct KvSpec {
    data: BTreeMap<String, String>,
}

/// One key as a sequential register of strings: the per-key semantics shared by [`KvSpec`] and
/// the linearizability checker (the key of `op` is not looked at).
pub fn apply_to_register(value: &mut String, op: &Op) -> OpOutput {
    match op {
        Op::Get { .. } => OpOutput::Value(value.clone()),
        Op::Put { value: new, .. } => {
            new.clone_into(value);
            OpOutput::Done
        }
        Op::Append { value: suffix, .. } => {
            value.push_str(suffix);
            OpOutput::Done
        }
    }
}

impl KvSpec {
    #[must_use]
    pub fn new() -> KvSpec {
        KvSpec::default()
    }

    /// Executes one operation and returns what it returns.
    pub fn apply(&mut self, op: &Op) -> OpOutput {
        if let Op::Get { key } = op {
            return OpOutput::Value(self.get(key).to_string());
        }
        let slot = self.data.entry(op.key().to_string()).or_default();
        apply_to_register(slot, op)
    }

    /// The value of `key`; `""` when it was never written.
    #[must_use]
    pub fn get(&self, key: &str) -> &str {
        self.data.get(key).map_or("", String::as_str)
    }

    /// Every key written so far with its value (a key written with `""` may appear).
    #[must_use]
    pub fn data(&self) -> &BTreeMap<String, String> {
        &self.data
    }

    /// The at-most-once reference: runs `commands` in order, skipping every command whose seq
    /// is not greater than the last seq run for its client (a retry or an older request).
    pub fn replay_dedup<'a>(commands: impl IntoIterator<Item = &'a Command>) -> KvSpec {
        KvSpec::replay_sessions(commands).0
    }

    /// [`KvSpec::replay_dedup`], also returning the session table it implies: for each client,
    /// the last seq run and what that run returned (what a retry must be answered with).
    pub fn replay_sessions<'a>(
        commands: impl IntoIterator<Item = &'a Command>,
    ) -> (KvSpec, BTreeMap<ClientId, (Seq, OpOutput)>) {
        let mut spec = KvSpec::new();
        let mut last: BTreeMap<ClientId, (Seq, OpOutput)> = BTreeMap::new();
        for command in commands {
            let seen = last.get(&command.client).map_or(Seq(0), |(seq, _)| *seq);
            if command.seq > seen {
                let output = spec.apply(&command.op);
                last.insert(command.client, (command.seq, output));
            }
        }
        (spec, last)
    }

    /// The first key on which this store and `other` read differently (a missing key and a key
    /// holding `""` read the same), with both values; `None` when they agree on every key.
    pub fn first_difference<'a>(
        &'a self,
        other: &'a im::OrdMap<String, String>,
    ) -> Option<(&'a str, &'a str, &'a str)> {
        let theirs = |key: &str| other.get(key).map_or("", String::as_str);
        let mine = self.data.iter().map(|(k, v)| (k.as_str(), v.as_str(), theirs(k)));
        let only_theirs = other
            .iter()
            .filter(|(k, _)| !self.data.contains_key(k.as_str()))
            .map(|(k, v)| (k.as_str(), "", v.as_str()));
        mine.chain(only_theirs).find(|(_, a, b)| a != b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{append, cmd, get, put};

    fn value(s: &str) -> OpOutput {
        OpOutput::Value(s.to_string())
    }

    #[test]
    fn missing_key_reads_empty() {
        let mut kv = KvSpec::new();
        assert_eq!(kv.apply(&get("x")), value(""));
        assert_eq!(kv.get("x"), "");
        assert!(kv.data().is_empty(), "a get writes nothing");
    }

    #[test]
    fn put_replaces_and_append_concatenates() {
        let mut kv = KvSpec::new();
        assert_eq!(kv.apply(&put("x", "a")), OpOutput::Done);
        assert_eq!(kv.apply(&append("x", "b")), OpOutput::Done);
        assert_eq!(kv.apply(&get("x")), value("ab"));
        assert_eq!(kv.apply(&put("x", "c")), OpOutput::Done);
        assert_eq!(kv.apply(&get("x")), value("c"));
        assert_eq!(kv.get("y"), "");
    }

    #[test]
    fn append_to_missing_key_acts_as_put() {
        let mut kv = KvSpec::new();
        kv.apply(&append("k", "v"));
        let mut other = KvSpec::new();
        other.apply(&put("k", "v"));
        assert_eq!(kv, other);
    }

    #[test]
    fn keys_are_independent() {
        let mut kv = KvSpec::new();
        kv.apply(&put("x", "1"));
        kv.apply(&append("y", "2"));
        assert_eq!((kv.get("x"), kv.get("y")), ("1", "2"));
    }

    #[test]
    fn replay_dedup_runs_each_client_seq_once() {
        let commands = [
            cmd(1, 1, append("x", "a")),
            cmd(2, 1, append("x", "b")),
            cmd(1, 1, append("x", "a")), // retry of c1#1: skipped
            cmd(1, 2, append("x", "c")),
            cmd(2, 1, append("x", "b")), // late retry of c2#1: skipped
            cmd(1, 1, append("x", "a")), // older than c1#2: skipped
        ];
        assert_eq!(KvSpec::replay_dedup(&commands).get("x"), "abc");
    }

    #[test]
    fn replay_sessions_keeps_each_clients_last_run_and_reply() {
        let commands = [
            cmd(1, 1, put("x", "a")),
            cmd(2, 4, get("x")),
            cmd(1, 2, append("x", "b")),
            cmd(2, 4, get("x")), // retry: keeps the first reply
            cmd(2, 5, get("x")),
        ];
        let (spec, sessions) = KvSpec::replay_sessions(&commands);
        assert_eq!(spec.get("x"), "ab");
        assert_eq!(sessions.get(&ClientId(1)), Some(&(Seq(2), OpOutput::Done)));
        assert_eq!(sessions.get(&ClientId(2)), Some(&(Seq(5), value("ab"))));
        assert_eq!(sessions.len(), 2);
    }

    #[test]
    fn replay_dedup_skips_seq_zero_and_gaps_are_fine() {
        let commands = [cmd(1, 0, put("x", "never")), cmd(1, 5, put("x", "five"))];
        assert_eq!(KvSpec::replay_dedup(&commands).get("x"), "five");
    }

    #[test]
    fn first_difference_treats_missing_as_empty() {
        let mut kv = KvSpec::new();
        kv.apply(&put("x", ""));
        kv.apply(&put("y", "1"));
        let mut other: im::OrdMap<String, String> = im::OrdMap::new();
        other.insert("y".into(), "1".into());
        assert_eq!(kv.first_difference(&other), None);
        other.insert("z".into(), "2".into());
        assert_eq!(kv.first_difference(&other), Some(("z", "", "2")));
        other.remove("z");
        other.insert("y".into(), "9".into());
        assert_eq!(kv.first_difference(&other), Some(("y", "1", "9")));
    }
}
