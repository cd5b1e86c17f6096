//! Delivery latency: from the hub seeing a ManifestWork generation to the cluster's agent
//! reporting it applied (`drbridge_hub_work_delivery_seconds`). It covers the whole path a
//! change takes: finalizer, sync, the agent's apply and record, its report.
//!
//! The clock starts only for a generation the hub saw change while running. Works found by
//! a list (start, relist, a new leader) are not timed: when they changed is unknown, and the
//! agent applied most of them long ago. Each generation is measured once, by its first
//! applied report. A pure state machine with explicit times.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use crate::objects::ObjectKey;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    uid: String,
    generation: i64,
    at: Instant,
}

/// The generations on their way, at most one per work (the newest).
#[derive(Debug, Default)]
pub struct DeliveryClock {
    pending: HashMap<ObjectKey, Seen>,
}

impl DeliveryClock {
    /// The hub's watch delivered `generation` of a work, newer than what it held.
    pub fn seen(&mut self, key: &ObjectKey, uid: &str, generation: i64, at: Instant) {
        self.pending.insert(
            key.clone(),
            Seen {
                uid: uid.to_string(),
                generation,
                at,
            },
        );
    }

    /// The agent reports `generation` applied: the time since the hub saw it, the first
    /// time only. A report of an older generation leaves the clock running for the newer.
    pub fn applied(
        &mut self,
        key: &ObjectKey,
        uid: &str,
        generation: i64,
        at: Instant,
    ) -> Option<Duration> {
        let seen = self.pending.get(key)?;
        if seen.uid != uid || generation < seen.generation {
            return None;
        }
        let took = at.saturating_duration_since(seen.at);
        self.pending.remove(key);
        Some(took)
    }

    /// The work is gone, or was relisted: nothing of it is timed any more.
    pub fn forget(&mut self, key: &ObjectKey) {
        self.pending.remove(key);
    }

    /// After a relist: keeps only the clocks of works still there at the same generation.
    pub fn retain(&mut self, mut still: impl FnMut(&ObjectKey, &str, i64) -> bool) {
        self.pending
            .retain(|k, s| still(k, s.uid.as_str(), s.generation));
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ObjectKey {
        ObjectKey::new("dr1", "vrg")
    }

    #[test]
    fn measures_the_first_applied_report_of_the_generation() {
        let t0 = Instant::now();
        let mut c = DeliveryClock::default();
        c.seen(&key(), "u", 2, t0);
        assert_eq!(
            c.applied(&key(), "u", 1, t0 + Duration::from_millis(10)),
            None
        );
        assert_eq!(
            c.applied(&key(), "u", 2, t0 + Duration::from_millis(40)),
            Some(Duration::from_millis(40))
        );
        assert_eq!(
            c.applied(&key(), "u", 2, t0 + Duration::from_millis(90)),
            None,
            "measured once"
        );
        assert!(c.is_empty());
    }

    #[test]
    fn a_newer_generation_restarts_the_clock_and_another_incarnation_does_not_stop_it() {
        let t0 = Instant::now();
        let mut c = DeliveryClock::default();
        c.seen(&key(), "u", 1, t0);
        c.seen(&key(), "u", 2, t0 + Duration::from_millis(50));
        assert_eq!(
            c.applied(&key(), "old", 2, t0 + Duration::from_millis(60)),
            None
        );
        // A report already at a newer generation than the one seen also counts.
        assert_eq!(
            c.applied(&key(), "u", 3, t0 + Duration::from_millis(70)),
            Some(Duration::from_millis(20))
        );
    }

    #[test]
    fn forgotten_and_relisted_works_are_not_timed() {
        let t0 = Instant::now();
        let mut c = DeliveryClock::default();
        c.seen(&key(), "u", 1, t0);
        c.seen(&ObjectKey::new("dr1", "other"), "v", 4, t0);
        c.forget(&key());
        assert_eq!(c.applied(&key(), "u", 1, t0), None);
        c.retain(|_, _, g| g == 5);
        assert_eq!(c.len(), 0);
    }
}
