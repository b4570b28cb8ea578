//! The course's simulated network (labrpc) in its unreliable mode, as its tests set it: the
//! numbers that both the deterministic simulator and the runtime's fault injector reproduce,
//! kept here once so that the two cannot drift apart (docs/lab-tests.md, "Fault parameters").

/// Probability that a request is lost before its handler runs, and, separately, that a reply
/// is lost after it.
pub const UNRELIABLE_DROP: f64 = 0.1;

/// A request waits a uniform time in `[0, UNRELIABLE_DELAY_MAX_MICROS)` microseconds before
/// it is delivered (labrpc sleeps up to 27 ms).
pub const UNRELIABLE_DELAY_MAX_MICROS: u64 = 27_000;
