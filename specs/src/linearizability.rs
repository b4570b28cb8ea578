//! Linearizability (M. Herlihy, J. Wing, "Linearizability: A Correctness Condition for
//! Concurrent Objects", TOPLAS 1990): a history is linearizable if its completed operations,
//! and any subset of those that never returned, can be put in one sequential order that
//! respects real time (if A returned before B was called, A comes first) and in which every
//! operation returns what the sequential specification ([`KvSpec`]) says.
//!
//! Linearizability is local (Herlihy & Wing, Theorem 1): a history is linearizable iff each
//! object's sub-history is. Each key is an independent register, so the history is split by
//! key and each key is searched on its own, with one search (`search.rs`) for both kinds of
//! history:
//! - [`History`], built step by step by a model checker or simulator: precedence is recorded
//!   as the number of completions at the time of each invocation;
//! - [`TimedOp`]s from a recorded run (format: docs/history-format.md): precedence is
//!   `A.ret < B.call`, equal times being concurrent.
//!
//! The search is bounded: when a key needs more than `budget` steps, the verdict is
//! [`Verdict::Unknown`], never a silent pass.
//!
//! [`Summary`] (`summary.rs`) is the same property computed forward, one event at a time,
//! keeping only what the future can depend on: for a model checker's states.
//!
//! [`KvSpec`]: crate::KvSpec

mod appends;
mod search;
mod summary;

pub use appends::appends_in_order;
pub use summary::Summary;

use crate::violation::Violation;
use crate::LINEARIZABLE;
use model::{ClientId, Op, OpOutput};
use search::{KeyOp, KeyOps, Outcome};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::{self, Write as _};

/// One operation of a [`History`]; its id is its position.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Operation {
    pub client: ClientId,
    pub op: Op,
    /// What it returned; `None` while in flight (and forever if it never returns).
    pub output: Option<OpOutput>,
    /// How many operations had completed when it was invoked: exactly
    /// `completions[..completed_before]` precede it in real time.
    pub completed_before: usize,
}

/// A history of invocations and completions, recorded as they happen. Plain `im` data, so it
/// can live in a model checker's state.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct History {
    operations: im::Vector<Operation>,
    /// Ids of the completed operations, in completion order.
    completions: im::Vector<usize>,
}

impl History {
    #[must_use]
    pub fn new() -> History {
        History::default()
    }

    /// Records that `client` invoked `op`; returns the operation's id.
    ///
    /// A clerk has one operation in flight at a time; if a client overlaps two, they are
    /// simply concurrent (the history stays well-defined).
    pub fn invoke(&mut self, client: ClientId, op: Op) -> usize {
        let completed_before = self.completions.len();
        self.operations.push_back(Operation { client, op, output: None, completed_before });
        self.operations.len() - 1
    }

    /// Records that operation `id` returned `output`.
    ///
    /// # Panics
    /// If there is no operation `id` or it has already completed (a recording mistake: record
    /// only the first reply to an operation).
    pub fn complete(&mut self, id: usize, output: OpOutput) {
        let Some(operation) = self.operations.get_mut(id) else {
            panic!("complete({id}): no such operation");
        };
        assert!(operation.output.is_none(), "complete({id}): operation already completed");
        operation.output = Some(output);
        self.completions.push_back(id);
    }

    /// The latest operation of `client` still in flight.
    pub fn in_flight(&self, client: ClientId) -> Option<usize> {
        let mut ids = (0..self.operations.len()).rev();
        ids.find(|&id| self.operations[id].client == client && self.operations[id].output.is_none())
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.operations.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.operations.is_empty()
    }

    #[must_use]
    pub fn get(&self, id: usize) -> Option<&Operation> {
        self.operations.get(id)
    }

    /// The operations in invocation order (ids 0, 1, ...).
    pub fn iter(&self) -> im::vector::Iter<'_, Operation> {
        self.operations.iter()
    }

    /// Ids of the completed operations, in completion order.
    #[must_use]
    pub fn completions(&self) -> &im::Vector<usize> {
        &self.completions
    }

    fn describe(&self, id: usize) -> String {
        let o = &self.operations[id];
        match &o.output {
            Some(output) => format!("op{id} {} {} -> {output}", o.client, o.op),
            None => format!("op{id} {} {} (no reply)", o.client, o.op),
        }
    }
}

impl<'h> IntoIterator for &'h History {
    type Item = &'h Operation;
    type IntoIter = im::vector::Iter<'h, Operation>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl fmt::Display for History {
    /// One operation per line: `op2 c1 get x -> value "a" (after 1 completions)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (id, o) in self.operations.iter().enumerate() {
            writeln!(f, "{} (after {} completions)", self.describe(id), o.completed_before)?;
        }
        Ok(())
    }
}

/// One operation of a recorded run (a line of docs/history-format.md).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TimedOp {
    /// Informational only: it does not affect the verdict.
    pub client: u64,
    pub op: Op,
    /// For a get that returned: what it read (`None` accepts any value). Ignored otherwise.
    pub output: Option<OpOutput>,
    pub call: i64,
    /// `None`: it never returned, and may or may not have taken effect. A history file also
    /// has `ret >= call`; if not, the operation precedes itself and cannot be linearized.
    pub ret: Option<i64>,
}

/// The result of checking a history.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Verdict {
    Linearizable,
    /// The operations on `key` have no linearization; `detail` shows how far the search got.
    NotLinearizable {
        key: String,
        detail: String,
    },
    /// The search on `key` ran out of budget (and no other key is known not linearizable).
    Unknown {
        key: String,
    },
}

impl Verdict {
    #[must_use]
    pub fn is_linearizable(&self) -> bool {
        matches!(self, Verdict::Linearizable)
    }

    /// The [`LINEARIZABLE`] violation this verdict shows, if it is `NotLinearizable`. An
    /// `Unknown` is not a violation; the caller decides what it means for it.
    #[must_use]
    pub fn violation(&self) -> Option<Violation> {
        match self {
            Verdict::NotLinearizable { key, detail } => {
                Some(Violation::new(LINEARIZABLE, format!("key {key:?}: {detail}")))
            }
            _ => None,
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Linearizable => write!(f, "linearizable"),
            Verdict::NotLinearizable { key, detail } => {
                write!(f, "not linearizable on key {key:?}: {detail}")
            }
            Verdict::Unknown { key } => {
                write!(f, "unknown: search budget exhausted on key {key:?}")
            }
        }
    }
}

/// Checks a recorded [`History`]. `budget` bounds the search steps per key, beyond a free
/// first attempt in completion order.
pub fn check(history: &History, budget: u64) -> Verdict {
    // Without a completed get nothing can contradict: completion order is a legal order.
    let trivial = history.iter().all(|o| match (&o.op, &o.output) {
        (Op::Get { .. }, Some(_)) | (_, Some(OpOutput::Value(_))) => false,
        (_, None | Some(OpOutput::Done)) => true,
    });
    if trivial {
        return Verdict::Linearizable;
    }
    judge(&history_keys(history), budget, &|id| history.describe(id))
}

/// Checks a run recorded with times. `budget` bounds the search steps per key, beyond a free
/// first attempt in return order.
pub fn check_timed(ops: &[TimedOp], budget: u64) -> Verdict {
    let trivial = ops.iter().all(|o| match o.ret {
        None => true,
        Some(ret) => ret >= o.call && (!matches!(o.op, Op::Get { .. }) || o.output.is_none()),
    });
    if trivial {
        return Verdict::Linearizable;
    }
    let describe = |k: usize| {
        let o = &ops[k];
        let ret = o.ret.map_or_else(|| "-".to_string(), |r| r.to_string());
        match (&o.op, &o.output, o.ret) {
            (Op::Get { .. }, Some(output), Some(_)) => {
                format!("#{k} c{} {} -> {output} [{}, {ret}]", o.client, o.op, o.call)
            }
            _ => format!("#{k} c{} {} [{}, {ret}]", o.client, o.op, o.call),
        }
    };
    judge(&timed_keys(ops), budget, &describe)
}

/// Splits a [`History`] by key: completed operations in completion order, then those still in
/// flight (gets still in flight constrain nothing and are dropped).
fn history_keys(history: &History) -> BTreeMap<&str, KeyOps<'_>> {
    let mut keys: BTreeMap<&str, (Vec<usize>, KeyOps<'_>)> = BTreeMap::new();
    for (position, &id) in history.completions.iter().enumerate() {
        let o = &history.operations[id];
        let (positions, key) = keys.entry(o.op.key()).or_default();
        positions.push(position);
        let (expect, after) = (o.output.as_ref(), o.completed_before);
        key.ops.push(KeyOp { op: &o.op, expect, after, origin: id });
    }
    for (id, o) in history.operations.iter().enumerate() {
        if o.output.is_none() && !matches!(o.op, Op::Get { .. }) {
            let (_, key) = keys.entry(o.op.key()).or_default();
            key.ops.push(KeyOp { op: &o.op, expect: None, after: o.completed_before, origin: id });
        }
    }
    keys.into_iter()
        .map(|(name, (positions, mut key))| {
            key.required = positions.len();
            for op in &mut key.ops {
                op.after = positions.partition_point(|&p| p < op.after);
            }
            (name, key)
        })
        .collect()
}

/// Splits timed operations by key: returned ones by return time, then the others by call time
/// (gets that never returned constrain nothing and are dropped).
fn timed_keys(ops: &[TimedOp]) -> BTreeMap<&str, KeyOps<'_>> {
    let mut by_key: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (k, o) in ops.iter().enumerate() {
        if o.ret.is_some() || !matches!(o.op, Op::Get { .. }) {
            by_key.entry(o.op.key()).or_default().push(k);
        }
    }
    let order = |&k: &usize| (ops[k].ret.is_none(), ops[k].ret, ops[k].call, k);
    by_key
        .into_iter()
        .map(|(name, mut members)| {
            members.sort_by_key(order);
            let rets: Vec<i64> = members.iter().filter_map(|&k| ops[k].ret).collect();
            let key_ops = members.iter().map(|&k| {
                let o = &ops[k];
                let returned_get = o.ret.is_some() && matches!(o.op, Op::Get { .. });
                let expect = if returned_get { o.output.as_ref() } else { None };
                let after = rets.partition_point(|&r| r < o.call);
                KeyOp { op: &o.op, expect, after, origin: k }
            });
            (name, KeyOps { required: rets.len(), ops: key_ops.collect() })
        })
        .collect()
}

/// Searches every key: the first key with no linearization decides; otherwise the first key
/// whose search ran out of budget makes the verdict unknown.
fn judge(keys: &BTreeMap<&str, KeyOps<'_>>, budget: u64, describe: &dyn Fn(usize) -> String) -> Verdict {
    let mut unknown = None;
    for (key, ops) in keys {
        match search::search(ops, budget) {
            Outcome::Linearizable => {}
            Outcome::Exhausted => {
                unknown = unknown.or_else(|| Some((*key).to_string()));
            }
            Outcome::Stuck { path, value } => {
                let detail = report(ops, &path, &value, describe);
                return Verdict::NotLinearizable { key: (*key).to_string(), detail };
            }
        }
    }
    unknown.map_or(Verdict::Linearizable, |key| Verdict::Unknown { key })
}

/// Explains a failed search: the longest legal order found and what could not follow it.
fn report(ops: &KeyOps<'_>, path: &[usize], value: &str, describe: &dyn Fn(usize) -> String) -> String {
    const SHOWN: usize = 8;
    let hidden = path.len().saturating_sub(SHOWN);
    let mut order: Vec<String> = path[hidden..].iter().map(|&k| describe(ops.ops[k].origin)).collect();
    if hidden > 0 {
        order.insert(0, format!("{hidden} earlier operations"));
    }
    let mut stuck = Vec::new();
    for k in (0..ops.required).filter(|k| !path.contains(k)) {
        let text = describe(ops.ops[k].origin);
        if search::enabled(ops, path, k) {
            let mut after = value.to_string();
            let output = crate::kv_spec::apply_to_register(&mut after, ops.ops[k].op);
            stuck.push(format!("{text} (would return {output})"));
        } else {
            stuck.push(format!("{text} (must follow an operation not yet placed)"));
        }
    }
    let more = stuck.len().saturating_sub(SHOWN);
    stuck.truncate(SHOWN);
    let mut detail = format!(
        "{} operations ({} completed) have no legal order; longest legal prefix [{}] leaves \
         {value:?}, and no completed operation can come next: {}",
        ops.ops.len(),
        ops.required,
        order.join("; "),
        stuck.join("; ")
    );
    if more > 0 {
        let _ = write!(detail, "; and {more} more");
    }
    detail
}
