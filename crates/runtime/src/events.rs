//! Kubernetes Events (`events.k8s.io/v1`) for what an operator must notice, so that
//! `kubectl describe` tells the story of a ManifestWork or a ManagedCluster.
//!
//! Publishing is off the hot path: callers hand an [`Announcement`] to a bounded queue and
//! go on; one task publishes through kube's `Recorder`, which folds repeats of one
//! (object, reason, related object) into the series of one Event instead of new Events. A
//! full queue drops the announcement and counts it: an event storm must never slow
//! delivery or status, and the log has every announcement too.

use std::future::Future;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::sync::mpsc;
use tracing::{Instrument, debug, info_span, warn};

/// The reporting controller of the hub's Events.
pub const HUB_REPORTER: &str = "drbridge.io/hub";
/// The reporting controller of the agent's Events.
pub const AGENT_REPORTER: &str = "drbridge.io/agent";

/// The API server refuses a note over 1 kB.
const MAX_NOTE_BYTES: usize = 1024;

/// How many announcements may wait for the API server before new ones are dropped.
pub const DEFAULT_QUEUE: usize = 1024;

/// Labels of the Events counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    /// The Event's reason (`ClusterLost`, `ManifestRefused`, ...).
    pub reason: &'static str,
    /// `published`, `dropped` (queue full) or `failed` (the API server refused it).
    pub result: &'static str,
}

/// Announcements by reason and result; each process registers it as its `events` metric.
pub type EventCounters = Family<EventLabels, Counter>;

/// One Event to publish.
#[derive(Clone, Debug, PartialEq)]
pub struct Announcement {
    /// The object the Event is about (with its uid, or `kubectl describe` does not find it).
    pub regarding: ObjectReference,
    /// A second object involved (the manifest a work failed to apply). Part of what makes
    /// two announcements one series.
    pub related: Option<ObjectReference>,
    pub warning: bool,
    /// CamelCase, stable: what alerts and people search for.
    pub reason: &'static str,
    /// CamelCase: what was being done.
    pub action: &'static str,
    pub note: String,
}

impl Announcement {
    pub fn normal(regarding: ObjectReference, reason: &'static str, action: &'static str) -> Self {
        Self {
            regarding,
            related: None,
            warning: false,
            reason,
            action,
            note: String::new(),
        }
    }

    pub fn warning(regarding: ObjectReference, reason: &'static str, action: &'static str) -> Self {
        Self {
            warning: true,
            ..Self::normal(regarding, reason, action)
        }
    }

    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = truncate(note.into(), MAX_NOTE_BYTES);
        self
    }

    pub fn related(mut self, related: ObjectReference) -> Self {
        self.related = Some(related);
        self
    }
}

/// A reference to an object, as Events carry it.
pub fn object_ref(
    api_version: &str,
    kind: &str,
    namespace: &str,
    name: &str,
    uid: &str,
) -> ObjectReference {
    let some = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    ObjectReference {
        api_version: some(api_version),
        kind: some(kind),
        namespace: some(namespace),
        name: some(name),
        uid: some(uid),
        ..Default::default()
    }
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max.saturating_sub('…'.len_utf8());
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

/// Where announcements go. Cloned freely; [`Events::disabled`] discards them (tests that do
/// not look at Events, and processes without a cluster to write them to).
#[derive(Clone, Debug)]
pub struct Events {
    tx: Option<mpsc::Sender<Announcement>>,
    counters: EventCounters,
}

impl Events {
    pub fn disabled() -> Self {
        Self {
            tx: None,
            counters: EventCounters::default(),
        }
    }

    /// A handle whose announcements arrive on the receiver instead of the API server: for
    /// tests of what is announced when.
    pub fn capture(queue: usize) -> (Self, mpsc::Receiver<Announcement>) {
        let (tx, rx) = mpsc::channel(queue.max(1));
        (
            Self {
                tx: Some(tx),
                counters: EventCounters::default(),
            },
            rx,
        )
    }

    /// The handle and the task that publishes what it is given (spawn it); the task ends
    /// when every handle is dropped.
    pub fn start(
        client: kube::Client,
        reporter: Reporter,
        queue: usize,
        counters: EventCounters,
    ) -> (Self, impl Future<Output = ()> + Send + 'static) {
        let (tx, rx) = mpsc::channel(queue.max(1));
        let recorder = Recorder::new(client, reporter.clone());
        let task = publish(recorder, rx, counters.clone())
            .instrument(info_span!("events", reporter = %reporter.controller));
        (
            Self {
                tx: Some(tx),
                counters,
            },
            task,
        )
    }

    /// Queues `a` for publishing, or drops it (counted) when the queue is full.
    pub fn announce(&self, a: Announcement) {
        let Some(tx) = &self.tx else { return };
        let reason = a.reason;
        if let Err(e) = tx.try_send(a) {
            let a = match e {
                mpsc::error::TrySendError::Full(a) | mpsc::error::TrySendError::Closed(a) => a,
            };
            debug!(reason, object = ?a.regarding.name, "event dropped: the queue is full");
            self.count(reason, "dropped");
        }
    }

    fn count(&self, reason: &'static str, result: &'static str) {
        self.counters
            .get_or_create(&EventLabels { reason, result })
            .inc();
    }
}

async fn publish(
    recorder: Recorder,
    mut rx: mpsc::Receiver<Announcement>,
    counters: EventCounters,
) {
    while let Some(a) = rx.recv().await {
        let event = Event {
            type_: if a.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: a.reason.to_owned(),
            note: (!a.note.is_empty()).then(|| a.note.clone()),
            action: a.action.to_owned(),
            secondary: a.related.clone(),
        };
        let result = match recorder.publish(&event, &a.regarding).await {
            Ok(()) => "published",
            Err(e) => {
                warn!(reason = a.reason, object = ?a.regarding.name, error = %e, "event not published");
                "failed"
            }
        };
        counters
            .get_or_create(&EventLabels {
                reason: a.reason,
                result,
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_are_cut_to_what_the_api_server_takes_at_a_char_boundary() {
        let long = "é".repeat(700);
        let a = Announcement::normal(object_ref("v1", "Pod", "ns", "p", ""), "X", "Y").note(long);
        assert!(a.note.len() <= MAX_NOTE_BYTES, "{}", a.note.len());
        assert!(a.note.ends_with('…'));
        let short = Announcement::normal(object_ref("v1", "Pod", "", "p", ""), "X", "Y").note("ok");
        assert_eq!(short.note, "ok");
        assert_eq!(
            short.regarding.namespace, None,
            "cluster-scoped: no namespace"
        );
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_instead_of_waiting() {
        let counters = EventCounters::default();
        let (tx, _rx) = mpsc::channel(1);
        let events = Events {
            tx: Some(tx),
            counters: counters.clone(),
        };
        let a = Announcement::warning(object_ref("v1", "Pod", "ns", "p", "u"), "Flood", "Test");
        for _ in 0..5 {
            events.announce(a.clone());
        }
        let dropped = counters
            .get_or_create(&EventLabels {
                reason: "Flood",
                result: "dropped",
            })
            .get();
        assert_eq!(dropped, 4, "one queued, four dropped");
        Events::disabled().announce(a);
    }
}
