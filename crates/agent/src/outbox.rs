//! What the agent owes the hub, as state: the latest status of every work and view,
//! works that are gone, and sync acks. A session drains it; a new session resends
//! everything. Repeated changes coalesce to the latest value.

use std::collections::{BTreeMap, BTreeSet};

use crate::{pb, report_size};
use parking_lot::Mutex;
use tokio::sync::Notify;
use tracing::warn;

/// A status the outbox holds, one per name.
trait Status: Clone + PartialEq {
    fn name(&self) -> &str;
    fn observed_time(&self) -> &str;
    fn set_observed_time(&mut self, t: String);
}

// Both messages have these fields under the same names.
macro_rules! impl_status {
    ($($t:ty),*) => {$(
        impl Status for $t {
            fn name(&self) -> &str {
                &self.name
            }
            fn observed_time(&self) -> &str {
                &self.observed_time
            }
            fn set_observed_time(&mut self, t: String) {
                self.observed_time = t;
            }
        }
    )*};
}
impl_status!(pb::WorkStatus, pb::ViewStatus);

/// The latest status of each work (or view), and the names whose status is still to send.
#[derive(Debug)]
struct Latest<T> {
    held: BTreeMap<String, T>,
    dirty: BTreeSet<String>,
}

impl<T> Default for Latest<T> {
    fn default() -> Self {
        Self {
            held: BTreeMap::new(),
            dirty: BTreeSet::new(),
        }
    }
}

impl<T: Status> Latest<T> {
    /// Holds `status` and marks it to send; false when it differs from the one held only
    /// in its observed time: the time of the first report of a status is when it changed.
    fn put(&mut self, status: T) -> bool {
        if let Some(old) = self.held.get(status.name()) {
            let mut a = old.clone();
            a.set_observed_time(status.observed_time().to_string());
            if a == status {
                return false;
            }
        }
        self.dirty.insert(status.name().to_string());
        self.held.insert(status.name().to_string(), status);
        true
    }

    /// Marks a held status to send again; false when none is held.
    fn touch(&mut self, name: &str) -> bool {
        let held = self.held.contains_key(name);
        if held {
            self.dirty.insert(name.to_string());
        }
        held
    }

    fn get(&self, name: &str) -> Option<T> {
        self.held.get(name).cloned()
    }

    fn remove(&mut self, name: &str) {
        self.held.remove(name);
        self.dirty.remove(name);
    }

    fn resend_all(&mut self) {
        self.dirty = self.held.keys().cloned().collect();
    }

    /// The statuses to send, in name order; none is marked any more.
    fn take_dirty(&mut self) -> Vec<T> {
        std::mem::take(&mut self.dirty)
            .iter()
            .filter_map(|name| self.held.get(name).cloned())
            .collect()
    }
}

#[derive(Debug, Default)]
struct Inner {
    works: Latest<pb::WorkStatus>,
    views: Latest<pb::ViewStatus>,
    gone: BTreeMap<String, String>,
    acks: Vec<u64>,
}

#[derive(Debug, Default)]
pub struct Outbox {
    inner: Mutex<Inner>,
    notify: Notify,
}

impl Outbox {
    /// Stores a work's status; it is sent if it differs from the last one stored in more than
    /// its observed time.
    pub fn put_work(&self, mut status: pb::WorkStatus) {
        if report_size::fit_work(&mut status, drbridge_proto::MAX_REPORT_BYTES) {
            warn!(work = %status.name, "work status too large for the hub; sent shortened");
        }
        let put = self.inner.lock().works.put(status);
        self.wake_if(put);
    }

    /// Sends a work's current status again (for example after a stale resend).
    pub fn touch_work(&self, name: &str) {
        let touched = self.inner.lock().works.touch(name);
        self.wake_if(touched);
    }

    pub fn work(&self, name: &str) -> Option<pb::WorkStatus> {
        self.inner.lock().works.get(name)
    }

    /// Stores a view's status; the observed time alone is not a change.
    pub fn put_view(&self, mut status: pb::ViewStatus) {
        if report_size::fit_view(&mut status, drbridge_proto::MAX_REPORT_BYTES) {
            warn!(view = %status.name, "viewed object too large for the hub; reported as an error");
        }
        let put = self.inner.lock().views.put(status);
        self.wake_if(put);
    }

    pub fn touch_view(&self, name: &str) {
        let touched = self.inner.lock().views.touch(name);
        self.wake_if(touched);
    }

    pub fn view(&self, name: &str) -> Option<pb::ViewStatus> {
        self.inner.lock().views.get(name)
    }

    pub fn remove_view(&self, name: &str) {
        self.inner.lock().views.remove(name);
    }

    pub fn gone(&self, name: &str, uid: &str) {
        let mut i = self.inner.lock();
        i.works.remove(name);
        i.gone.insert(name.to_string(), uid.to_string());
        drop(i);
        self.notify.notify_one();
    }

    pub fn ack(&self, sync_id: u64) {
        self.inner.lock().acks.push(sync_id);
        self.notify.notify_one();
    }

    /// A new session: everything known is sent again, except the acks of the old stream.
    /// Sync ids restart with each stream, so an old id would acknowledge the new stream's
    /// sync of that number before its works are recorded; what the old stream left
    /// unacknowledged, the new stream's resync sends again.
    pub fn resend_all(&self) {
        let mut i = self.inner.lock();
        i.acks.clear();
        i.works.resend_all();
        i.views.resend_all();
        drop(i);
        self.notify.notify_one();
    }

    /// Resolves when something may be waiting.
    pub async fn changed(&self) {
        self.notify.notified().await
    }

    /// Takes everything waiting, in the order: statuses, gone works, acks (an ack
    /// follows the statuses it may cover). What a broken stream loses comes back with the
    /// next session: statuses by [`Outbox::resend_all`], a `WorkGone` because the hub offers
    /// the deleting work again and the agent, holding no record of it, answers gone again.
    pub fn drain(&self) -> Vec<pb::AgentMessage> {
        use pb::agent_message::Body;
        let mut i = self.inner.lock();
        let mut out = Vec::new();
        out.extend(i.works.take_dirty().into_iter().map(Body::WorkStatus));
        out.extend(i.views.take_dirty().into_iter().map(Body::ViewStatus));
        for (name, uid) in std::mem::take(&mut i.gone) {
            out.push(Body::WorkGone(pb::WorkGone { name, uid }));
        }
        for sync_id in std::mem::take(&mut i.acks) {
            out.push(Body::SyncAck(pb::SyncAck { sync_id }));
        }
        out.into_iter()
            .map(|b| pb::AgentMessage { body: Some(b) })
            .collect()
    }

    /// Wakes the session, called after the lock is released.
    fn wake_if(&self, changed: bool) {
        if changed {
            self.notify.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb::agent_message::Body;

    fn ws(name: &str, generation: i64) -> pb::WorkStatus {
        pb::WorkStatus {
            name: name.into(),
            uid: "u".into(),
            generation,
            ..Default::default()
        }
    }

    #[test]
    fn coalesces_and_resends() {
        let o = Outbox::default();
        o.put_work(ws("a", 1));
        o.put_work(ws("a", 2));
        o.put_work(ws("b", 1));
        o.ack(7);
        let out = o.drain();
        assert_eq!(out.len(), 3);
        assert!(matches!(&out[0].body, Some(Body::WorkStatus(s)) if s.generation == 2));
        assert!(matches!(&out[2].body, Some(Body::SyncAck(a)) if a.sync_id == 7));
        assert!(o.drain().is_empty());
        o.put_work(ws("a", 2));
        assert!(o.drain().is_empty(), "same status is not resent");
        o.resend_all();
        assert_eq!(o.drain().len(), 2);
        o.gone("a", "u");
        let out = o.drain();
        assert!(matches!(&out[0].body, Some(Body::WorkGone(g)) if g.name == "a"));
        assert!(o.work("a").is_none());
    }

    /// A stream that ended between an ack and the next drain left the ack behind: sent on
    /// the next stream, it would acknowledge that stream's sync of the same id.
    #[test]
    fn a_new_session_does_not_send_the_old_streams_acks() {
        let o = Outbox::default();
        o.put_work(ws("a", 1));
        o.ack(1);
        o.resend_all();
        let out = o.drain();
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(matches!(&out[0].body, Some(Body::WorkStatus(_))));
        o.ack(1);
        assert!(matches!(&o.drain()[..], [m] if matches!(&m.body, Some(Body::SyncAck(_)))));
    }

    #[test]
    fn every_drained_message_fits_the_hubs_limit() {
        let o = Outbox::default();
        o.put_view(pb::ViewStatus {
            name: "big".into(),
            outcome: Some(pb::view_status::Outcome::Object(vec![
                b'x';
                drbridge_proto::MAX_REPORT_BYTES
                    + 1
            ])),
            ..Default::default()
        });
        let out = o.drain();
        assert_eq!(out.len(), 1);
        assert!(prost::Message::encoded_len(&out[0]) <= drbridge_proto::MAX_REPORT_BYTES);
        assert!(matches!(
            &out[0].body,
            Some(Body::ViewStatus(pb::ViewStatus {
                outcome: Some(pb::view_status::Outcome::Error(_)),
                ..
            }))
        ));
    }

    #[test]
    fn work_time_alone_is_no_change() {
        let o = Outbox::default();
        let mut w = ws("a", 1);
        w.observed_time = "t1".into();
        o.put_work(w.clone());
        assert_eq!(o.drain().len(), 1);
        w.observed_time = "t2".into();
        o.put_work(w.clone());
        assert!(o.drain().is_empty(), "only the time differs");
        assert_eq!(o.work("a").unwrap().observed_time, "t1", "when it changed");
        w.generation = 2;
        o.put_work(w);
        assert_eq!(o.drain().len(), 1);
        assert_eq!(o.work("a").unwrap().observed_time, "t2");
    }

    #[test]
    fn view_time_alone_is_no_change() {
        let o = Outbox::default();
        let mut v = pb::ViewStatus {
            name: "v".into(),
            observed_time: "t1".into(),
            ..Default::default()
        };
        o.put_view(v.clone());
        assert_eq!(o.drain().len(), 1);
        v.observed_time = "t2".into();
        o.put_view(v.clone());
        assert!(o.drain().is_empty());
        v.generation = 2;
        o.put_view(v);
        assert_eq!(o.drain().len(), 1);
    }
}
