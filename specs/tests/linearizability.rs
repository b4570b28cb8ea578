//! Linearizability checker tests: hand-written histories with known verdicts, and a
//! cross-check of `check` and `check_timed` against brute-force enumeration on many small
//! generated histories.

use model::{ClientId, Op, OpOutput};
use specs::linearizability::{check, check_timed, History, TimedOp, Verdict};

const BUDGET: u64 = 100_000;

fn get(key: &str) -> Op {
    Op::Get { key: key.to_string() }
}

fn put(key: &str, value: &str) -> Op {
    Op::Put { key: key.to_string(), value: value.to_string() }
}

fn append(key: &str, value: &str) -> Op {
    Op::Append { key: key.to_string(), value: value.to_string() }
}

fn value(s: &str) -> OpOutput {
    OpOutput::Value(s.to_string())
}

/// Runs `op` for `client` from invocation to completion with nothing in between.
fn run(h: &mut History, client: u64, op: Op, output: OpOutput) {
    let id = h.invoke(ClientId(client), op);
    h.complete(id, output);
}

fn not_linearizable_on(verdict: &Verdict, key: &str) -> bool {
    matches!(verdict, Verdict::NotLinearizable { key: k, .. } if k == key)
}

#[test]
fn empty_and_sequential_histories_are_linearizable() {
    assert_eq!(check(&History::new(), 0), Verdict::Linearizable);
    let mut h = History::new();
    run(&mut h, 1, put("x", "a"), OpOutput::Done);
    run(&mut h, 2, append("x", "b"), OpOutput::Done);
    run(&mut h, 1, get("x"), value("ab"));
    run(&mut h, 2, get("y"), value(""));
    assert_eq!(check(&h, 0), Verdict::Linearizable, "in order: no search needed");
}

#[test]
fn a_get_that_sees_an_append_twice_is_rejected() {
    let mut h = History::new();
    run(&mut h, 1, append("x", "1"), OpOutput::Done);
    run(&mut h, 2, get("x"), value("11"));
    let verdict = check(&h, BUDGET);
    assert!(not_linearizable_on(&verdict, "x"), "{verdict}");
    let detail = verdict.violation().expect("a violation").to_string();
    assert!(detail.starts_with("linearizable violated: key \"x\""), "{detail}");
    assert!(detail.contains("op1 c2 get x -> value \"11\" (would return value \"1\")"), "{detail}");
}

#[test]
fn a_stale_read_after_a_completed_put_is_rejected() {
    let mut h = History::new();
    run(&mut h, 1, put("x", "a"), OpOutput::Done);
    run(&mut h, 1, put("x", "b"), OpOutput::Done);
    run(&mut h, 2, get("x"), value("a"));
    assert!(not_linearizable_on(&check(&h, BUDGET), "x"));
}

#[test]
fn a_put_that_returns_a_value_is_rejected() {
    let mut h = History::new();
    run(&mut h, 1, put("x", "a"), value("a"));
    assert!(not_linearizable_on(&check(&h, BUDGET), "x"));
}

#[test]
fn concurrent_operations_can_be_ordered_either_way() {
    for seen in ["a", "b"] {
        let mut h = History::new();
        let a = h.invoke(ClientId(1), put("x", "a"));
        let b = h.invoke(ClientId(2), put("x", "b"));
        h.complete(b, OpOutput::Done);
        h.complete(a, OpOutput::Done);
        run(&mut h, 3, get("x"), value(seen));
        assert_eq!(check(&h, BUDGET), Verdict::Linearizable, "reading {seen}");
    }
}

#[test]
fn concurrent_reads_cannot_see_a_write_come_and_go() {
    // A put overlaps two reads; the first read saw it and returned before the second began.
    let mut h = History::new();
    let p = h.invoke(ClientId(1), put("x", "a"));
    run(&mut h, 2, get("x"), value(""));
    run(&mut h, 3, get("x"), value("a"));
    h.complete(p, OpOutput::Done);
    assert_eq!(check(&h, BUDGET), Verdict::Linearizable);

    let mut h = History::new();
    let p = h.invoke(ClientId(1), put("x", "a"));
    run(&mut h, 2, get("x"), value("a"));
    run(&mut h, 3, get("x"), value(""));
    h.complete(p, OpOutput::Done);
    assert!(not_linearizable_on(&check(&h, BUDGET), "x"));
}

#[test]
fn an_incomplete_append_may_or_may_not_have_happened() {
    let mut seen = History::new();
    seen.invoke(ClientId(1), append("x", "1"));
    run(&mut seen, 2, get("x"), value("1"));
    assert_eq!(check(&seen, BUDGET), Verdict::Linearizable, "it took effect");
    assert_eq!(seen.in_flight(ClientId(1)), Some(0));
    assert_eq!(seen.in_flight(ClientId(2)), None);

    let mut unseen = History::new();
    unseen.invoke(ClientId(1), append("x", "1"));
    run(&mut unseen, 2, get("x"), value(""));
    assert_eq!(check(&unseen, BUDGET), Verdict::Linearizable, "it did not (yet)");

    // Once seen, it cannot be un-seen.
    run(&mut seen, 2, get("x"), value(""));
    assert!(not_linearizable_on(&check(&seen, BUDGET), "x"));

    // It was invoked after the get returned, so the get cannot have seen it.
    let mut late = History::new();
    run(&mut late, 2, get("x"), value("1"));
    late.invoke(ClientId(1), append("x", "1"));
    assert!(not_linearizable_on(&check(&late, BUDGET), "x"));
}

#[test]
fn an_incomplete_append_takes_effect_at_most_once() {
    let mut h = History::new();
    h.invoke(ClientId(1), append("x", "1"));
    run(&mut h, 2, get("x"), value("11"));
    assert!(not_linearizable_on(&check(&h, BUDGET), "x"));
}

#[test]
fn keys_are_checked_separately() {
    let mut h = History::new();
    run(&mut h, 1, put("x", "a"), OpOutput::Done);
    run(&mut h, 2, get("y"), value(""));
    run(&mut h, 2, get("x"), value("a"));
    assert_eq!(check(&h, BUDGET), Verdict::Linearizable, "writes to x do not show in y");
    run(&mut h, 1, append("y", "b"), OpOutput::Done);
    run(&mut h, 2, get("y"), value("bb"));
    run(&mut h, 2, get("z"), value("")); // a later, fine key does not hide y's failure
    let verdict = check(&h, BUDGET);
    assert!(not_linearizable_on(&verdict, "y"), "{verdict}");
}

/// Three concurrent puts completing in order a, b, c, then a read of "a": linearizable, but
/// only after backtracking past the completion order.
fn needs_search(h: &mut History, key: &str) {
    let ids: Vec<usize> =
        ["a", "b", "c"].iter().enumerate().map(|(c, v)| h.invoke(ClientId(c as u64), put(key, v))).collect();
    for id in ids {
        h.complete(id, OpOutput::Done);
    }
    run(h, 9, get(key), value("a"));
}

#[test]
fn a_tiny_budget_gives_unknown_not_a_pass() {
    let mut h = History::new();
    needs_search(&mut h, "k");
    assert_eq!(check(&h, 2), Verdict::Unknown { key: "k".to_string() });
    assert_eq!(check(&h, BUDGET), Verdict::Linearizable);
    // A key known to be broken still decides, whatever the other keys' budget did.
    run(&mut h, 1, append("m", "1"), OpOutput::Done);
    run(&mut h, 1, get("m"), value("11"));
    let verdict = check(&h, 2);
    assert!(not_linearizable_on(&verdict, "m"), "{verdict}");
}

#[test]
#[should_panic(expected = "already completed")]
fn completing_twice_is_a_recording_mistake() {
    let mut h = History::new();
    run(&mut h, 1, put("x", "a"), OpOutput::Done);
    h.complete(0, OpOutput::Done);
}

fn timed(op: Op, output: Option<&str>, call: i64, ret: Option<i64>) -> TimedOp {
    TimedOp { client: 0, op, output: output.map(value), call, ret }
}

#[test]
fn timed_equal_times_are_concurrent() {
    let mut ops = vec![timed(put("x", "a"), None, 0, Some(10)), timed(get("x"), Some(""), 10, Some(20))];
    assert_eq!(check_timed(&ops, BUDGET), Verdict::Linearizable);
    ops[1].call = 11;
    assert!(not_linearizable_on(&check_timed(&ops, BUDGET), "x"));
}

#[test]
fn timed_example_from_the_history_format_is_linearizable() {
    let ops = [
        timed(put("x", "a"), None, 100, Some(180)),
        timed(append("x", "b"), None, 150, None),
        timed(get("x"), Some("ab"), 200, Some(260)),
        timed(get("y"), Some(""), 270, Some(290)),
        timed(get("x"), None, 300, None),
    ];
    assert_eq!(check_timed(&ops, BUDGET), Verdict::Linearizable);
    // The put returned before the get began, so the get reads "a" or "ab", never "b".
    let mut ops = ops.to_vec();
    ops[2].output = Some(value("b"));
    assert!(not_linearizable_on(&check_timed(&ops, BUDGET), "x"));
}

#[test]
fn timed_gets_without_output_and_unreturned_gets_constrain_nothing() {
    let ops = [
        timed(put("x", "a"), None, 0, Some(1)),
        timed(get("x"), None, 2, Some(3)),
        timed(get("x"), Some("zzz"), 4, None),
    ];
    assert_eq!(check_timed(&ops, BUDGET), Verdict::Linearizable);
}

#[test]
fn timed_put_outputs_are_ignored_and_order_in_the_slice_does_not_matter() {
    let ops = [
        timed(get("x"), Some("ab"), 30, Some(40)),
        timed(append("x", "b"), Some("whatever"), 10, Some(20)),
        timed(put("x", "a"), None, 0, Some(5)),
    ];
    assert_eq!(check_timed(&ops, BUDGET), Verdict::Linearizable);
}

#[test]
fn timed_tiny_budget_gives_unknown() {
    let ops = [
        timed(put("k", "a"), None, 0, Some(10)),
        timed(put("k", "b"), None, 1, Some(11)),
        timed(put("k", "c"), None, 2, Some(12)),
        timed(get("k"), Some("a"), 20, Some(30)),
    ];
    assert_eq!(check_timed(&ops, 2), Verdict::Unknown { key: "k".to_string() });
    assert_eq!(check_timed(&ops, BUDGET), Verdict::Linearizable);
}

#[test]
fn long_sequential_histories_are_checked_quickly() {
    let mut h = History::new();
    let mut expected = String::new();
    for k in 0..2_000 {
        let piece = (k % 10).to_string();
        run(&mut h, k % 3, append("x", &piece), OpOutput::Done);
        expected.push_str(&piece);
        run(&mut h, k % 5, get("x"), value(&expected));
    }
    assert_eq!(check(&h, 0), Verdict::Linearizable);
}

/// A deterministic pseudo-random sequence (xorshift64) for generated tests.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// A random history of up to three clients on one or two keys, as timed operations with
/// distinct event times. Outputs of gets come from a hidden register with random
/// linearization points, and are sometimes corrupted, so both verdicts occur.
fn generate(rng: &mut Rng) -> Vec<TimedOp> {
    let mut ops: Vec<TimedOp> = Vec::new();
    let mut in_flight: [Option<usize>; 3] = [None; 3];
    let mut applied = vec![false; 0];
    let mut truth: std::collections::BTreeMap<String, String> = Default::default();
    let total = 1 + rng.below(6) as usize;
    for time in 0..40 {
        let c = rng.below(3) as usize;
        match in_flight[c] {
            None if ops.len() < total => {
                let key = ["x", "y"][rng.below(2) as usize];
                let v = ["a", "b"][rng.below(2) as usize];
                let op = match rng.below(3) {
                    0 => get(key),
                    1 => put(key, v),
                    _ => append(key, v),
                };
                ops.push(TimedOp { client: c as u64, op, output: None, call: time, ret: None });
                applied.push(false);
                in_flight[c] = Some(ops.len() - 1);
            }
            None => {}
            Some(k) => {
                let take_effect = !applied[k] && rng.below(2) == 0;
                if take_effect || rng.below(3) == 0 {
                    if !applied[k] {
                        applied[k] = true;
                        let slot = truth.entry(ops[k].op.key().to_string()).or_default();
                        let out = specs::kv_spec::apply_to_register(slot, &ops[k].op);
                        ops[k].output = Some(out);
                    }
                    if !take_effect {
                        ops[k].ret = Some(time);
                        in_flight[c] = None;
                    }
                }
            }
        }
    }
    for o in &mut ops {
        if let (Some(OpOutput::Value(v)), 0) = (&mut o.output, rng.below(4)) {
            v.push('a');
        }
    }
    ops
}

/// Brute force: some subset of the unreturned operations together with all returned ones has
/// an order that respects real time and gives every returned get its output.
fn brute_force(ops: &[TimedOp]) -> bool {
    let relevant: Vec<usize> =
        (0..ops.len()).filter(|&k| ops[k].ret.is_some() || !matches!(ops[k].op, Op::Get { .. })).collect();
    let optional: Vec<usize> = relevant.iter().copied().filter(|&k| ops[k].ret.is_none()).collect();
    (0..1u32 << optional.len()).any(|mask| {
        let chosen: Vec<usize> = relevant
            .iter()
            .copied()
            .filter(|k| optional.iter().position(|o| o == k).is_none_or(|p| mask & (1 << p) != 0))
            .collect();
        permutations(&chosen).iter().any(|order| legal(ops, order))
    })
}

fn permutations(items: &[usize]) -> Vec<Vec<usize>> {
    if items.is_empty() {
        return vec![Vec::new()];
    }
    let mut all = Vec::new();
    for (k, &first) in items.iter().enumerate() {
        let mut rest = items.to_vec();
        rest.remove(k);
        for mut tail in permutations(&rest) {
            tail.insert(0, first);
            all.push(tail);
        }
    }
    all
}

fn legal(ops: &[TimedOp], order: &[usize]) -> bool {
    let precedes = |a: &TimedOp, b: &TimedOp| a.ret.is_some_and(|r| r < b.call);
    for (p, &a) in order.iter().enumerate() {
        if order[p + 1..].iter().any(|&b| precedes(&ops[b], &ops[a])) {
            return false;
        }
    }
    let mut spec = specs::KvSpec::new();
    order.iter().all(|&k| {
        let out = spec.apply(&ops[k].op);
        let returned_get = ops[k].ret.is_some() && matches!(ops[k].op, Op::Get { .. });
        !returned_get || ops[k].output.as_ref().is_none_or(|o| *o == out)
    })
}

/// The same run as a `History`: events in time order.
fn as_history(ops: &[TimedOp]) -> History {
    let mut events: Vec<(i64, bool, usize)> = Vec::new();
    for (k, o) in ops.iter().enumerate() {
        events.push((o.call, true, k));
        if let Some(r) = o.ret {
            events.push((r, false, k));
        }
    }
    events.sort_unstable();
    let mut h = History::new();
    let mut ids = vec![0; ops.len()];
    for (_, is_call, k) in events {
        if is_call {
            ids[k] = h.invoke(ClientId(ops[k].client), ops[k].op.clone());
        } else {
            let output = ops[k].output.clone().unwrap_or(match ops[k].op {
                Op::Get { .. } => OpOutput::Value(String::new()),
                _ => OpOutput::Done,
            });
            h.complete(ids[k], output);
        }
    }
    h
}

#[test]
fn generated_histories_agree_with_brute_force() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (mut yes, mut no) = (0, 0);
    for _ in 0..3_000 {
        let mut ops = generate(&mut rng);
        for o in &mut ops {
            if o.ret.is_some() && o.output.is_none() {
                o.output = Some(match o.op {
                    Op::Get { .. } => value(""),
                    _ => OpOutput::Done,
                });
            }
        }
        let expected = brute_force(&ops);
        let timed_verdict = check_timed(&ops, BUDGET);
        let history_verdict = check(&as_history(&ops), BUDGET);
        assert_eq!(timed_verdict.is_linearizable(), expected, "{ops:#?}\n{timed_verdict}");
        assert_eq!(history_verdict.is_linearizable(), expected, "{ops:#?}\n{history_verdict}");
        assert!(!matches!(timed_verdict, Verdict::Unknown { .. }));
        if expected {
            yes += 1;
        } else {
            no += 1;
        }
    }
    assert!(yes > 300 && no > 300, "both verdicts are exercised: {yes} yes, {no} no");
}
