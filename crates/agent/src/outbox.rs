//! What the agent owes the hub, as state: the latest status of every work and view,
//! works that are gone, and sync acks. A session drains it; a new session resends
//! everything. Repeated changes coalesce to the latest value.

use std::collections::{BTreeMap, BTreeSet};

use crate::{pb, report_size};
use parking_lot::Mutex;
use tokio::sync::Notify;
use tracing::warn;

#[derive(Debug, Default)]
struct Inner {
    works: BTreeMap<String, pb::WorkStatus>,
    dirty_works: BTreeSet<String>,
    views: BTreeMap<String, pb::ViewStatus>,
    dirty_views: BTreeSet<String>,
    gone: BTreeMap<String, String>,
    acks: Vec<u64>,
}

#[derive(Debug, Default)]
pub struct Outbox {
    inner: Mutex<Inner>,
    notify: Notify,
}

impl Outbox {
    /// Stores a work's status; it is sent if it differs from the last one stored.
    pub fn put_work(&self, mut status: pb::WorkStatus) {
        if report_size::fit_work(&mut status, drbridge_proto::MAX_REPORT_BYTES) {
            warn!(work = %status.name, "work status too large for the hub; sent shortened");
        }
        let mut i = self.inner.lock();
        // The observed time alone is not a change: the time of the first report of a
        // status is when it changed.
        if let Some(old) = i.works.get(&status.name) {
            let mut a = old.clone();
            a.observed_time = status.observed_time.clone();
            if a == status {
                return;
            }
        }
        i.dirty_works.insert(status.name.clone());
        i.works.insert(status.name.clone(), status);
        drop(i);
        self.notify.notify_one();
    }

    /// Sends a work's current status again (for example after a stale resend).
    pub fn touch_work(&self, name: &str) {
        let mut i = self.inner.lock();
        if i.works.contains_key(name) {
            i.dirty_works.insert(name.to_string());
            drop(i);
            self.notify.notify_one();
        }
    }

    pub fn work(&self, name: &str) -> Option<pb::WorkStatus> {
        self.inner.lock().works.get(name).cloned()
    }

    /// Stores a view's status; the observed time alone is not a change.
    pub fn put_view(&self, mut status: pb::ViewStatus) {
        if report_size::fit_view(&mut status, drbridge_proto::MAX_REPORT_BYTES) {
            warn!(view = %status.name, "viewed object too large for the hub; reported as an error");
        }
        let mut i = self.inner.lock();
        if let Some(old) = i.views.get(&status.name) {
            let mut a = old.clone();
            a.observed_time = status.observed_time.clone();
            if a == status {
                return;
            }
        }
        i.dirty_views.insert(status.name.clone());
        i.views.insert(status.name.clone(), status);
        drop(i);
        self.notify.notify_one();
    }

    pub fn touch_view(&self, name: &str) {
        let mut i = self.inner.lock();
        if i.views.contains_key(name) {
            i.dirty_views.insert(name.to_string());
            drop(i);
            self.notify.notify_one();
        }
    }

    pub fn view(&self, name: &str) -> Option<pb::ViewStatus> {
        self.inner.lock().views.get(name).cloned()
    }

    pub fn remove_view(&self, name: &str) {
        let mut i = self.inner.lock();
        i.views.remove(name);
        i.dirty_views.remove(name);
    }

    pub fn gone(&self, name: &str, uid: &str) {
        let mut i = self.inner.lock();
        i.works.remove(name);
        i.dirty_works.remove(name);
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
        i.dirty_works = i.works.keys().cloned().collect();
        i.dirty_views = i.views.keys().cloned().collect();
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
        for name in std::mem::take(&mut i.dirty_works) {
            if let Some(s) = i.works.get(&name) {
                out.push(Body::WorkStatus(s.clone()));
            }
        }
        for name in std::mem::take(&mut i.dirty_views) {
            if let Some(s) = i.views.get(&name) {
                out.push(Body::ViewStatus(s.clone()));
            }
        }
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
