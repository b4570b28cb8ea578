//! The one search behind `check` and `check_timed`: Wing & Gong's backtracking search for a
//! linearization (J. Wing, C. Gong, "Testing and Verifying Concurrent Objects", 1993) with
//! Lowe's memoization of visited configurations (G. Lowe, "Testing for Linearizability",
//! 2017), over the operations of one key.
//!
//! The input is one key's operations in *return order*: every completed operation first,
//! ordered by when it returned, then the ones that never returned. Real-time precedence ("A
//! returned before B was called") is then always a prefix: the operations that precede B are
//! the first `B.after` ones. A configuration is the set of operations already linearized and
//! the register's value; an operation may come next when it is not yet linearized and the
//! first `after` operations are. The search succeeds once every completed operation is in.

use crate::kv_spec::apply_to_register;
use model::{Op, OpOutput};
use std::collections::hash_map::DefaultHasher;
use std::hash::BuildHasherDefault;

/// One operation on the key being checked.
#[derive(Clone, Debug)]
pub(super) struct KeyOp<'a> {
    pub op: &'a Op,
    /// The output it must produce; `None` accepts any (it never returned, or its output is
    /// not recorded).
    pub expect: Option<&'a OpOutput>,
    /// This many operations at the front of the list precede it in real time.
    pub after: usize,
    /// Its position in the caller's history, for reports.
    pub origin: usize,
}

/// One key's operations. Invariant: `ops[..required]` are the completed operations in return
/// order and must all be linearized; the rest never returned and may be left out.
#[derive(Clone, Debug, Default)]
pub(super) struct KeyOps<'a> {
    pub ops: Vec<KeyOp<'a>>,
    pub required: usize,
}

/// How the search ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Outcome {
    Linearizable,
    /// No linearization exists. `path` is the longest legal order found (positions in the key's
    /// list), leaving the register at `value`.
    Stuck {
        path: Vec<usize>,
        value: String,
    },
    /// The budget ran out first.
    Exhausted,
}

/// Decides whether `ops` can be linearized, trying at most `budget` operations after a free
/// first attempt in return order (which is a legal order, and the right one for most correct
/// histories, so they cost no allocation beyond the register's value).
pub(super) fn search(ops: &KeyOps<'_>, budget: u64) -> Outcome {
    if fits_in_return_order(ops) {
        return Outcome::Linearizable;
    }
    Search::new(ops, budget).run()
}

fn fits_in_return_order(ops: &KeyOps<'_>) -> bool {
    let mut value = String::new();
    ops.ops[..ops.required].iter().enumerate().all(|(position, op)| op.after <= position && fits(&mut value, op))
}

/// Runs `op` on the register; whether its output is the expected one.
fn fits(value: &mut String, op: &KeyOp<'_>) -> bool {
    let output = apply_to_register(value, op.op);
    op.expect.is_none_or(|e| *e == output)
}

/// A set of positions in the key's list.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Bits(Box<[u64]>);

impl Bits {
    fn new(len: usize) -> Bits {
        Bits(vec![0; len.div_ceil(64)].into_boxed_slice())
    }

    fn contains(&self, k: usize) -> bool {
        self.0[k / 64] & (1 << (k % 64)) != 0
    }

    fn insert(&mut self, k: usize) {
        self.0[k / 64] |= 1 << (k % 64);
    }

    /// The first position not in the set.
    fn front(&self) -> usize {
        let mut front = 0;
        for word in &self.0 {
            front += word.trailing_ones() as usize;
            if *word != u64::MAX {
                break;
            }
        }
        front
    }
}

/// A configuration on the search path.
struct Frame {
    done: Bits,
    value: String,
    /// The next position to try from here.
    next: usize,
}

/// Configurations already explored. Only membership is asked (never iteration order), and the
/// hasher has fixed keys, so the search is deterministic and draws no randomness.
#[allow(clippy::disallowed_types)]
type Seen = std::collections::HashSet<(Bits, String), BuildHasherDefault<DefaultHasher>>;

struct Search<'k, 'a> {
    ops: &'k KeyOps<'a>,
    budget: u64,
    steps: u64,
    stack: Vec<Frame>,
    /// The operation that led to each frame above the root.
    path: Vec<usize>,
    seen: Seen,
    best: Vec<usize>,
    best_value: String,
}

impl<'k, 'a> Search<'k, 'a> {
    fn new(ops: &'k KeyOps<'a>, budget: u64) -> Search<'k, 'a> {
        let root = Frame { done: Bits::new(ops.ops.len()), value: String::new(), next: 0 };
        Search {
            ops,
            budget,
            steps: 0,
            stack: vec![root],
            path: Vec::new(),
            seen: Seen::default(),
            best: Vec::new(),
            best_value: String::new(),
        }
    }

    fn run(mut self) -> Outcome {
        let ops = self.ops;
        while let Some(top) = self.stack.last_mut() {
            let front = top.done.front();
            if front >= ops.required {
                return Outcome::Linearizable;
            }
            let Some(k) = next_candidate(ops, &top.done, front, top.next) else {
                self.stack.pop();
                self.path.pop();
                continue;
            };
            top.next = k + 1;
            self.steps += 1;
            if self.steps > self.budget {
                return Outcome::Exhausted;
            }
            let mut value = top.value.clone();
            if !fits(&mut value, &ops.ops[k]) {
                continue;
            }
            let mut done = top.done.clone();
            done.insert(k);
            if self.seen.insert((done.clone(), value.clone())) {
                self.descend(k, done, value);
            }
        }
        Outcome::Stuck { path: self.best, value: self.best_value }
    }

    fn descend(&mut self, k: usize, done: Bits, value: String) {
        self.path.push(k);
        if self.path.len() > self.best.len() {
            self.best.clone_from(&self.path);
            self.best_value.clone_from(&value);
        }
        self.stack.push(Frame { done, value, next: 0 });
    }
}

/// The first position at or after `from` that may be linearized next.
fn next_candidate(ops: &KeyOps<'_>, done: &Bits, front: usize, from: usize) -> Option<usize> {
    (from.max(front)..ops.ops.len()).find(|&k| !done.contains(k) && ops.ops[k].after <= front)
}

/// Whether the operation at `k` may come right after the configuration `done` (for reports).
pub(super) fn enabled(ops: &KeyOps<'_>, done: &[usize], k: usize) -> bool {
    let front = (0..=done.len()).find(|p| !done.contains(p)).unwrap_or(0);
    !done.contains(&k) && ops.ops[k].after <= front
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{append, get, put};

    fn value(s: &str) -> OpOutput {
        OpOutput::Value(s.to_string())
    }

    fn op<'a>(op: &'a Op, expect: Option<&'a OpOutput>, after: usize) -> KeyOp<'a> {
        KeyOp { op, expect, after, origin: 0 }
    }

    #[test]
    fn bits_front_crosses_words() {
        let mut bits = Bits::new(130);
        assert_eq!(bits.front(), 0);
        for k in 0..70 {
            bits.insert(k);
        }
        bits.insert(72);
        assert_eq!(bits.front(), 70);
        assert!(bits.contains(72) && !bits.contains(71));
    }

    #[test]
    fn return_order_is_tried_first_and_free() {
        let (p, g, done, a) = (put("x", "a"), get("x"), OpOutput::Done, value("a"));
        let ops = KeyOps { ops: vec![op(&p, Some(&done), 0), op(&g, Some(&a), 1)], required: 2 };
        assert_eq!(search(&ops, 0), Outcome::Linearizable);
    }

    #[test]
    fn concurrent_ops_are_reordered_when_needed() {
        // put a and get are concurrent; the get (returned first) read "a".
        let (p, g, done, a) = (put("x", "a"), get("x"), OpOutput::Done, value("a"));
        let ops = KeyOps { ops: vec![op(&g, Some(&a), 0), op(&p, Some(&done), 0)], required: 2 };
        assert_eq!(search(&ops, 0), Outcome::Exhausted);
        assert_eq!(search(&ops, 10), Outcome::Linearizable);
    }

    #[test]
    fn stuck_reports_the_longest_legal_prefix() {
        let (x, g, done, xx) = (append("x", "1"), get("x"), OpOutput::Done, value("11"));
        let ops = KeyOps { ops: vec![op(&x, Some(&done), 0), op(&g, Some(&xx), 1)], required: 2 };
        let outcome = search(&ops, 100);
        assert_eq!(outcome, Outcome::Stuck { path: vec![0], value: "1".to_string() });
    }

    #[test]
    fn operations_that_never_returned_are_optional() {
        let (x, g, one, empty) = (append("x", "1"), get("x"), value("1"), value(""));
        // Seen by a later get: it took effect.
        let seen = KeyOps { ops: vec![op(&g, Some(&one), 0), op(&x, None, 0)], required: 1 };
        assert_eq!(search(&seen, 100), Outcome::Linearizable);
        // Not seen: it never took effect (or not yet).
        let unseen = KeyOps { ops: vec![op(&g, Some(&empty), 0), op(&x, None, 0)], required: 1 };
        assert_eq!(search(&unseen, 0), Outcome::Linearizable);
    }
}
