//! The simulator's event queue: events ordered by (time, sequence number), and timers that
//! keep at most one queued event each.

use crate::Micros;
use model::{Envelope, Timer};
use std::cmp::Ordering;

/// A server's timer: the deadline the core asked for, and the one queued event that stands
/// for it. Re-arming to a later deadline queues nothing new (the queued event, when it comes,
/// moves itself to the deadline), so a follower that hears a heartbeat every few milliseconds
/// does not fill the queue with dead timers.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct TimerSlot {
    deadline: Option<Micros>,
    queued: Option<Micros>,
}

pub(super) enum Popped {
    Fire,
    Requeue(Micros),
    Ignore,
}

impl TimerSlot {
    /// Arms the timer; returns the time of an event to queue, if one is needed.
    pub(super) fn set(&mut self, deadline: Micros) -> Option<Micros> {
        self.deadline = Some(deadline);
        if self.queued.is_none_or(|q| q > deadline) {
            self.queued = Some(deadline);
            return Some(deadline);
        }
        None
    }

    pub(super) fn cancel(&mut self) {
        self.deadline = None;
    }

    pub(super) fn pop(&mut self, at: Micros) -> Popped {
        if self.queued != Some(at) {
            return Popped::Ignore; // superseded by an earlier event
        }
        self.queued = None;
        match self.deadline {
            None => Popped::Ignore,
            Some(d) if d > at => {
                self.queued = Some(d);
                Popped::Requeue(d)
            }
            Some(_) => {
                self.deadline = None;
                Popped::Fire
            }
        }
    }
}

#[derive(Debug)]
pub(super) enum Scheduled {
    Deliver { envelope: Envelope, sender: u32, receiver: u32 },
    ServerTimer { node: usize, timer: Timer, incarnation: u32 },
    ClerkTimer { clerk: usize },
}

pub(super) struct Queued {
    pub at: Micros,
    pub seq: u64,
    pub what: Scheduled,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Queued) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Queued {}

impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Queued) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Queued {
    /// Reversed, so that `BinaryHeap` pops the earliest (time, sequence number) first.
    fn cmp(&self, other: &Queued) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BinaryHeap;

    #[test]
    fn a_rearmed_timer_keeps_one_event_and_fires_at_its_last_deadline() {
        let mut slot = TimerSlot::default();
        assert_eq!(slot.set(100), Some(100));
        assert_eq!(slot.set(150), None, "later: the queued event moves itself");
        assert!(matches!(slot.pop(100), Popped::Requeue(150)));
        assert_eq!(slot.set(120), Some(120), "earlier: a new event");
        assert!(matches!(slot.pop(120), Popped::Fire));
        assert!(matches!(slot.pop(150), Popped::Ignore), "the superseded event");
        assert_eq!(slot.set(200), Some(200));
        slot.cancel();
        assert!(matches!(slot.pop(200), Popped::Ignore));
    }

    #[test]
    fn the_queue_orders_by_time_then_by_scheduling() {
        let mut heap = BinaryHeap::new();
        for (seq, at) in [(0, 5), (1, 3), (2, 5), (3, 1)] {
            heap.push(Queued { at, seq, what: Scheduled::ClerkTimer { clerk: 0 } });
        }
        let order: Vec<(u64, u64)> = std::iter::from_fn(|| heap.pop().map(|q| (q.at, q.seq))).collect();
        assert_eq!(order, [(1, 3), (3, 1), (5, 0), (5, 2)]);
    }
}
