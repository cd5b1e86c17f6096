//! Acknowledged delivery: which of the syncs sent to each cluster its agent has confirmed
//! (`SyncAck`, sent once everything in the sync is recorded durably on the managed cluster).
//!
//! Per cluster the hub keeps the send time of every unacknowledged sync of the open stream.
//! When a stream ends, its oldest unacknowledged change is carried over to the next stream's
//! first sync: the resync that follows a reconnect re-sends whatever the agent did not record,
//! so the change counts as unacknowledged until that resync is acknowledged. The age of the
//! oldest unacknowledged change is the gauge `drbridge_hub_oldest_unacknowledged_seconds`
//! and, past a threshold, the ManagedCluster annotation
//! [`crate::objects::UNACKNOWLEDGED_SINCE_ANNOTATION`], removed once everything is acknowledged.
//!
//! [`Acks`] is a pure state machine with explicit times, tested without a clock or Kubernetes;
//! [`run`] publishes it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info};

use crate::index::SharedIndex;
use crate::leader::Leadership;
use crate::metrics::Metrics;
use crate::status::WriteOp;
use drbridge_model::status::rfc3339;

/// When a change was first sent: on the monotonic clock (ages) and the wall clock (the
/// annotation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Since {
    pub at: Instant,
    pub wall: DateTime<Utc>,
}

impl Since {
    pub fn now() -> Self {
        Self {
            at: Instant::now(),
            wall: Utc::now(),
        }
    }

    fn min(self, other: Option<Since>) -> Since {
        match other {
            Some(o) if o.at < self.at => o,
            _ => self,
        }
    }
}

#[derive(Debug, Default)]
struct Cluster {
    /// The stream the outstanding syncs belong to (sync ids restart with each stream).
    conn: Option<u64>,
    /// The open stream has sent a sync: its resync, the first thing every stream sends.
    resync_sent: bool,
    outstanding: BTreeMap<u64, Since>,
    /// The oldest unacknowledged change of streams that ended.
    carried: Option<Since>,
}

/// Unacknowledged syncs per cluster.
#[derive(Debug, Default)]
pub struct Acks {
    clusters: BTreeMap<String, Cluster>,
}

/// [`Acks`] shared by the streams and [`run`].
pub type SharedAcks = Arc<Mutex<Acks>>;

impl Acks {
    /// Sync `sync_id` of stream `conn` is about to be sent.
    pub fn sent(&mut self, cluster: &str, conn: u64, sync_id: u64, now: Since) {
        let c = self.clusters.entry(cluster.to_string()).or_default();
        if c.conn != Some(conn) {
            if let Some(old) = c.conn {
                Self::end(c, old);
            }
            c.conn = Some(conn);
            c.resync_sent = false;
        }
        c.resync_sent = true;
        // The first sync of a stream is where a carried-over change is delivered again.
        let since = match c.carried.take() {
            Some(carried) => now.min(Some(carried)),
            None => now,
        };
        c.outstanding.entry(sync_id).or_insert(since);
    }

    /// The agent acknowledged sync `sync_id` of stream `conn`.
    pub fn acked(&mut self, cluster: &str, conn: u64, sync_id: u64) {
        if let Some(c) = self.clusters.get_mut(cluster)
            && c.conn == Some(conn)
        {
            c.outstanding.remove(&sync_id);
        }
    }

    /// Stream `conn` ended: what it left unacknowledged carries over to the next one.
    pub fn ended(&mut self, cluster: &str, conn: u64) {
        if let Some(c) = self.clusters.get_mut(cluster) {
            Self::end(c, conn);
        }
    }

    fn end(c: &mut Cluster, conn: u64) {
        if c.conn != Some(conn) {
            return;
        }
        if let Some(oldest) = c.outstanding.values().min_by_key(|s| s.at).copied() {
            c.carried = Some(oldest.min(c.carried));
        }
        c.outstanding.clear();
        c.conn = None;
        c.resync_sent = false;
    }

    /// `cluster`'s agent is connected and has acknowledged everything sent to it, its resync
    /// included: it holds the cluster's desired state as this hub knows it. After a hub
    /// restart or a change of leader, every agent in sync is the end of the reconnect.
    pub fn in_sync(&self, cluster: &str) -> bool {
        self.clusters.get(cluster).is_some_and(|c| {
            c.conn.is_some() && c.resync_sent && c.outstanding.is_empty() && c.carried.is_none()
        })
    }

    /// The oldest change sent to `cluster` that its agent has not acknowledged.
    pub fn oldest(&self, cluster: &str) -> Option<Since> {
        let c = self.clusters.get(cluster)?;
        let oldest = c.outstanding.values().min_by_key(|s| s.at).copied();
        match (oldest, c.carried) {
            (Some(o), carried) => Some(o.min(carried)),
            (None, carried) => carried,
        }
    }

    /// Forgets clusters not in `registered` (their ManagedCluster is gone).
    pub fn retain(&mut self, registered: &dyn Fn(&str) -> bool) {
        self.clusters.retain(|name, _| registered(name));
    }

    /// Clusters with something tracked.
    pub fn clusters(&self) -> impl Iterator<Item = &str> {
        self.clusters.keys().map(String::as_str)
    }
}

/// What the ManagedCluster's annotation should become, given what it is (`current`), the
/// oldest unacknowledged change and the threshold; `None`: leave it.
pub fn annotation_change(
    current: Option<&str>,
    oldest: Option<Since>,
    threshold: Duration,
    now: Instant,
) -> Option<Option<String>> {
    match oldest {
        // Everything acknowledged: the annotation goes.
        None => current.is_some().then_some(None),
        Some(s) if now.saturating_duration_since(s.at) >= threshold => {
            let since = rfc3339(s.wall);
            (current != Some(since.as_str())).then_some(Some(since))
        }
        // Unacknowledged, but not for long: leave as it is (set stays set until all is acked).
        Some(_) => None,
    }
}

/// How often the gauge and annotations are brought up to date.
const PUBLISH_INTERVAL: Duration = Duration::from_secs(1);

/// Publishes [`Acks`]: the per-cluster gauge, and the annotation (through the status writer)
/// while this replica leads. Runs until the writer is gone.
pub async fn run(
    acks: SharedAcks,
    index: SharedIndex,
    writes: mpsc::Sender<WriteOp>,
    metrics: Metrics,
    threshold: Duration,
    leadership: Leadership,
) {
    let mut tick = tokio::time::interval(PUBLISH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut published: std::collections::BTreeSet<String> = Default::default();
    loop {
        tick.tick().await;
        let now = Instant::now();
        let mut ops = Vec::new();
        {
            let idx = index.read();
            let mut acks = acks.lock();
            acks.retain(&|name| idx.is_registered(name));
            let mut in_sync = 0;
            for c in idx.clusters() {
                let name = c.meta.name.as_str();
                in_sync += i64::from(acks.in_sync(name));
                let oldest = acks.oldest(name);
                let age = oldest.map_or(0.0, |s| now.saturating_duration_since(s.at).as_secs_f64());
                metrics.unacknowledged_age(name, age);
                published.insert(name.to_string());
                if !leadership.is_leader() {
                    continue;
                }
                if let Some(since) = annotation_change(
                    c.meta.unacknowledged_since.as_deref(),
                    oldest,
                    threshold,
                    now,
                ) {
                    match &since {
                        Some(s) => {
                            info!(cluster = %name, since = %s, "changes unacknowledged by the agent")
                        }
                        None => info!(cluster = %name, "every change acknowledged by the agent"),
                    }
                    ops.push(WriteOp::Unacknowledged {
                        cluster: name.to_string(),
                        since,
                    });
                }
            }
            metrics.agents_in_sync.set(in_sync);
            published.retain(|name| {
                let keep = idx.is_registered(name);
                if !keep {
                    metrics.forget_unacknowledged(name);
                }
                keep
            });
        }
        for op in ops {
            if writes.send(op).await.is_err() {
                debug!("status writer gone; acknowledgement tracking stops");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(base: Since, secs: u64) -> Since {
        Since {
            at: base.at + Duration::from_secs(secs),
            wall: base.wall + chrono::Duration::seconds(secs as i64),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn acknowledged_syncs_are_forgotten_and_the_oldest_counts() {
        let t0 = Since::now();
        let mut a = Acks::default();
        assert_eq!(a.oldest("dr1"), None);
        a.sent("dr1", 1, 0, t0);
        a.sent("dr1", 1, 1, at(t0, 5));
        a.sent("dr1", 1, 2, at(t0, 9));
        assert_eq!(a.oldest("dr1"), Some(t0));
        // Out of order, as the agent acknowledges when each sync is recorded.
        a.acked("dr1", 1, 1);
        assert_eq!(a.oldest("dr1"), Some(t0));
        a.acked("dr1", 1, 0);
        assert_eq!(a.oldest("dr1"), Some(at(t0, 9)));
        a.acked("dr1", 1, 2);
        assert_eq!(a.oldest("dr1"), None);
        // Another cluster's acknowledgements, or another stream's, change nothing.
        a.sent("dr1", 1, 3, at(t0, 10));
        a.acked("dr2", 1, 3);
        a.acked("dr1", 7, 3);
        assert_eq!(a.oldest("dr1"), Some(at(t0, 10)));
    }

    #[tokio::test(start_paused = true)]
    async fn what_a_stream_left_unacknowledged_carries_over_to_the_resync() {
        let t0 = Since::now();
        let mut a = Acks::default();
        a.sent("dr1", 1, 0, t0);
        a.sent("dr1", 1, 1, at(t0, 3));
        a.acked("dr1", 1, 1);
        a.ended("dr1", 1);
        // Disconnected: still unacknowledged, from the first send.
        assert_eq!(a.oldest("dr1"), Some(t0));
        // A late ack of the ended stream does not count.
        a.acked("dr1", 1, 0);
        assert_eq!(a.oldest("dr1"), Some(t0));
        // The next stream's resync carries it; acknowledging that clears it.
        a.sent("dr1", 2, 0, at(t0, 20));
        a.sent("dr1", 2, 1, at(t0, 20));
        assert_eq!(a.oldest("dr1"), Some(t0));
        a.acked("dr1", 2, 0);
        assert_eq!(a.oldest("dr1"), Some(at(t0, 20)));
        a.acked("dr1", 2, 1);
        assert_eq!(a.oldest("dr1"), None);
    }

    #[tokio::test(start_paused = true)]
    async fn in_sync_once_the_resync_of_an_open_stream_is_acknowledged() {
        let t0 = Since::now();
        let mut a = Acks::default();
        assert!(!a.in_sync("dr1"), "never connected");
        a.sent("dr1", 1, 0, t0);
        assert!(!a.in_sync("dr1"), "resync sent, not acknowledged");
        a.acked("dr1", 1, 0);
        assert!(a.in_sync("dr1"));
        a.sent("dr1", 1, 1, at(t0, 1));
        assert!(!a.in_sync("dr1"), "a change outstanding");
        a.acked("dr1", 1, 1);
        assert!(a.in_sync("dr1"));
        // Disconnected with nothing outstanding: not in sync, nobody holds the stream.
        a.ended("dr1", 1);
        assert!(!a.in_sync("dr1"));
        // A new stream is in sync only once its own resync is acknowledged, and what the old
        // one left outstanding stays until then.
        a.sent("dr1", 2, 0, at(t0, 2));
        a.sent("dr1", 2, 1, at(t0, 2));
        a.ended("dr1", 2);
        a.sent("dr1", 3, 0, at(t0, 3));
        a.acked("dr1", 2, 0);
        assert!(!a.in_sync("dr1"), "an ended stream's ack does not count");
        a.acked("dr1", 3, 0);
        assert!(a.in_sync("dr1"));
        assert!(!a.in_sync("dr2"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_newer_stream_without_an_end_takes_over_the_outstanding_ones() {
        let t0 = Since::now();
        let mut a = Acks::default();
        a.sent("dr1", 1, 0, t0);
        // A reconnect can overlap: stream 2 starts before stream 1's end is seen.
        a.sent("dr1", 2, 0, at(t0, 4));
        assert_eq!(a.oldest("dr1"), Some(t0));
        a.ended("dr1", 1);
        assert_eq!(a.oldest("dr1"), Some(t0));
        a.acked("dr1", 2, 0);
        assert_eq!(a.oldest("dr1"), None);
    }

    #[tokio::test(start_paused = true)]
    async fn the_annotation_appears_past_the_threshold_and_goes_when_all_is_acked() {
        let t0 = Since::now();
        let threshold = Duration::from_secs(30);
        let stamp = rfc3339(t0.wall);
        // Nothing outstanding, nothing set: nothing to do.
        assert_eq!(annotation_change(None, None, threshold, t0.at), None);
        // Outstanding but young: nothing yet.
        assert_eq!(
            annotation_change(None, Some(t0), threshold, at(t0, 29).at),
            None
        );
        // Past the threshold: set to when it was sent.
        assert_eq!(
            annotation_change(None, Some(t0), threshold, at(t0, 30).at),
            Some(Some(stamp.clone()))
        );
        // Already set: nothing more.
        assert_eq!(
            annotation_change(Some(&stamp), Some(t0), threshold, at(t0, 60).at),
            None
        );
        // A younger change is outstanding now (the old one was acked): set stays until all is
        // acknowledged, no flapping.
        assert_eq!(
            annotation_change(Some(&stamp), Some(at(t0, 50)), threshold, at(t0, 60).at),
            None
        );
        // All acknowledged: removed.
        assert_eq!(
            annotation_change(Some(&stamp), None, threshold, at(t0, 61).at),
            Some(None)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn gone_clusters_are_forgotten() {
        let t0 = Since::now();
        let mut a = Acks::default();
        a.sent("dr1", 1, 0, t0);
        a.sent("dr2", 1, 0, t0);
        a.retain(&|n| n == "dr2");
        assert_eq!(a.clusters().collect::<Vec<_>>(), ["dr2"]);
    }
}
