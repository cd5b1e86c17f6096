//! What to send an agent: the difference between the cluster's desired state and
//! what the agent holds, cut into `Sync` messages of bounded size.
//!
//! After `Hello`, the baseline is the agent's durable record (`known_works`); views
//! have no record, so the first resync carries every view and ends with
//! `initial_sync_done`. Later changes are diffed against what this stream sent.
//! Nothing is ever removed by omission: a work absent from the desired state is
//! not mentioned (its deletion travels as `deleting=true` while the hub's finalizer
//! holds the object), only views are removed explicitly (`removed_views`).

use std::collections::HashMap;

use drbridge_proto::v1 as pb;
use prost::Message;

use crate::desired::{Desired, SYNC_OVERHEAD, work_version};

type WorkVer = (String, i64, bool);
type ViewVer = (String, i64);

/// What the agent holds, as far as this stream knows.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Sent {
    works: HashMap<String, WorkVer>,
    views: HashMap<String, ViewVer>,
}

impl Sent {
    /// The agent's durable record, from its `Hello`.
    pub fn from_known(known: &[pb::WorkVersion]) -> Self {
        Self {
            works: known
                .iter()
                .map(|k| (k.name.clone(), (k.uid.clone(), k.generation, k.deleting)))
                .collect(),
            views: HashMap::new(),
        }
    }
}

/// Cuts works and views into `Sync` messages no larger than `max_bytes` each.
#[derive(Debug)]
pub struct Chunker<'a> {
    max_bytes: usize,
    next_id: &'a mut u64,
    cur: pb::Sync,
    cur_bytes: usize,
    out: Vec<pb::Sync>,
}

fn field_len(len: usize) -> usize {
    1 + prost::encoding::encoded_len_varint(len as u64) + len
}

impl<'a> Chunker<'a> {
    pub fn new(max_bytes: usize, next_id: &'a mut u64) -> Self {
        Self {
            max_bytes: max_bytes.saturating_sub(SYNC_OVERHEAD),
            next_id,
            cur: pb::Sync::default(),
            cur_bytes: 0,
            out: Vec::new(),
        }
    }

    fn is_empty(&self) -> bool {
        self.cur.works.is_empty() && self.cur.views.is_empty() && self.cur.removed_views.is_empty()
    }

    fn room_for(&mut self, bytes: usize) {
        if self.cur_bytes + bytes > self.max_bytes && !self.is_empty() {
            self.cut();
        }
        self.cur_bytes += bytes;
    }

    fn cut(&mut self) {
        let mut sync = std::mem::take(&mut self.cur);
        *self.next_id += 1;
        sync.sync_id = *self.next_id;
        self.out.push(sync);
        self.cur_bytes = 0;
    }

    pub fn push_work(&mut self, work: &pb::Work) {
        self.room_for(field_len(work.encoded_len()));
        self.cur.works.push(work.clone());
    }

    pub fn push_view(&mut self, view: &pb::View) {
        self.room_for(field_len(view.encoded_len()));
        self.cur.views.push(view.clone());
    }

    pub fn push_removed_view(&mut self, name: &str) {
        self.room_for(field_len(name.len()));
        self.cur.removed_views.push(name.to_string());
    }

    /// The messages. With `initial`, the last one carries `initial_sync_done` (an
    /// empty message is sent for it when nothing differed).
    pub fn finish(mut self, initial: bool) -> Vec<pb::Sync> {
        if !self.is_empty() || initial {
            self.cut();
        }
        if initial && let Some(last) = self.out.last_mut() {
            last.initial_sync_done = true;
        }
        self.out
    }
}

/// The resync that follows `Welcome`: every desired work the agent does not hold at
/// the same (uid, generation, deleting), and every view.
pub fn initial_sync(
    known: &[pb::WorkVersion],
    desired: &Desired,
    max_bytes: usize,
    next_id: &mut u64,
) -> (Vec<pb::Sync>, Sent) {
    let mut sent = Sent::from_known(known);
    let mut chunker = Chunker::new(max_bytes, next_id);
    // Views first: they are small, and an agent that must fail over soonest needs
    // its views before megabytes of manifests.
    for view in desired.views.values() {
        chunker.push_view(view);
        sent.views
            .insert(view.name.clone(), (view.uid.clone(), view.generation));
    }
    push_changed_works(&mut sent, desired, &mut chunker);
    (chunker.finish(true), sent)
}

/// Messages for a change of the desired state after the initial resync.
pub fn incremental_sync(
    sent: &mut Sent,
    desired: &Desired,
    max_bytes: usize,
    next_id: &mut u64,
) -> Vec<pb::Sync> {
    let mut chunker = Chunker::new(max_bytes, next_id);
    let mut removed: Vec<&String> = sent
        .views
        .keys()
        .filter(|n| !desired.views.contains_key(*n))
        .collect();
    removed.sort();
    for name in removed {
        chunker.push_removed_view(name);
    }
    sent.views.retain(|n, _| desired.views.contains_key(n));
    for view in desired.views.values() {
        let ver = (view.uid.clone(), view.generation);
        if sent.views.get(&view.name) != Some(&ver) {
            chunker.push_view(view);
            sent.views.insert(view.name.clone(), ver);
        }
    }
    // A work that left the desired state is not mentioned; forgetting it here only
    // means that, should it come back unchanged, it is sent again (harmless).
    sent.works.retain(|n, _| desired.works.contains_key(n));
    push_changed_works(sent, desired, &mut chunker);
    chunker.finish(false)
}

fn push_changed_works(sent: &mut Sent, desired: &Desired, chunker: &mut Chunker<'_>) {
    for work in desired.works.values() {
        let (uid, generation, deleting) = work_version(work);
        let ver = (uid.to_string(), generation, deleting);
        if sent.works.get(&work.name) != Some(&ver) {
            chunker.push_work(work);
            sent.works.insert(work.name.clone(), ver);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::DEFAULT_MAX_SYNC_BYTES;
    use std::sync::Arc;

    fn work(name: &str, uid: &str, generation: i64, bytes: usize) -> Arc<pb::Work> {
        Arc::new(pb::Work {
            name: name.into(),
            uid: uid.into(),
            generation,
            manifests: vec![vec![b'x'; bytes]],
            ..Default::default()
        })
    }

    fn view(name: &str, generation: i64) -> Arc<pb::View> {
        Arc::new(pb::View {
            name: name.into(),
            uid: format!("{name}-uid"),
            generation,
            scope: Some(pb::ViewScope::default()),
        })
    }

    fn desired(works: &[Arc<pb::Work>], views: &[Arc<pb::View>]) -> Desired {
        Desired {
            registered: true,
            works: works.iter().map(|w| (w.name.clone(), w.clone())).collect(),
            views: views.iter().map(|v| (v.name.clone(), v.clone())).collect(),
        }
    }

    fn known(name: &str, uid: &str, generation: i64, deleting: bool) -> pb::WorkVersion {
        pb::WorkVersion {
            name: name.into(),
            uid: uid.into(),
            generation,
            deleting,
        }
    }

    fn names(syncs: &[pb::Sync]) -> Vec<Vec<String>> {
        syncs
            .iter()
            .map(|s| s.works.iter().map(|w| w.name.clone()).collect())
            .collect()
    }

    #[test]
    fn initial_sends_only_what_differs() {
        let d = desired(
            &[
                work("a", "ua", 1, 10),
                work("b", "ub", 2, 10),
                work("c", "uc", 1, 10),
            ],
            &[view("v", 1)],
        );
        let known = [
            known("a", "ua", 1, false),    // same: skipped
            known("b", "ub", 1, false),    // older generation
            known("c", "other", 1, false), // another uid (re-created work)
            known("z", "uz", 1, false),    // unknown to the hub: never deleted by omission
        ];
        let mut id = 0;
        let (syncs, _) = initial_sync(&known, &d, DEFAULT_MAX_SYNC_BYTES, &mut id);
        assert_eq!(syncs.len(), 1);
        assert_eq!(names(&syncs), vec![vec!["b".to_string(), "c".to_string()]]);
        assert_eq!(syncs[0].views.len(), 1);
        assert!(syncs[0].initial_sync_done);
        assert!(syncs[0].removed_views.is_empty());
        assert_eq!(syncs[0].sync_id, 1);
    }

    #[test]
    fn initial_with_nothing_to_send_still_marks_done() {
        let d = desired(&[work("a", "ua", 1, 10)], &[]);
        let mut id = 7;
        let (syncs, _) = initial_sync(&[known("a", "ua", 1, false)], &d, 1 << 20, &mut id);
        assert_eq!(syncs.len(), 1);
        assert!(syncs[0].works.is_empty());
        assert!(syncs[0].initial_sync_done);
        assert_eq!(syncs[0].sync_id, 8);
    }

    #[test]
    fn deleting_flag_differs() {
        let mut w = (*work("a", "ua", 1, 0)).clone();
        w.deleting = true;
        let d = desired(&[Arc::new(w)], &[]);
        let mut id = 0;
        let (syncs, _) = initial_sync(&[known("a", "ua", 1, false)], &d, 1 << 20, &mut id);
        assert_eq!(names(&syncs), vec![vec!["a".to_string()]]);
        let (syncs, _) = initial_sync(&[known("a", "ua", 1, true)], &d, 1 << 20, &mut id);
        assert_eq!(names(&syncs), vec![Vec::<String>::new()]);
    }

    #[test]
    fn chunks_respect_the_cap() {
        // Five 1.5 MiB works with a 4 MiB cap: two per message.
        let big = 1536 * 1024;
        let works: Vec<_> = (0..5)
            .map(|i| work(&format!("w{i}"), &format!("u{i}"), 1, big))
            .collect();
        let d = desired(&works, &[view("v1", 1), view("v2", 1)]);
        let cap = 4 * 1024 * 1024;
        let mut id = 0;
        let (syncs, _) = initial_sync(&[], &d, cap, &mut id);
        assert_eq!(syncs.len(), 3);
        for s in &syncs {
            assert!(s.encoded_len() <= cap, "{} > {cap}", s.encoded_len());
            let msg = pb::HubMessage {
                body: Some(pb::hub_message::Body::Sync(s.clone())),
            };
            assert!(msg.encoded_len() <= cap);
        }
        assert_eq!(syncs.iter().map(|s| s.works.len()).sum::<usize>(), 5);
        assert_eq!(syncs[0].views.len(), 2, "views go first");
        let done: Vec<bool> = syncs.iter().map(|s| s.initial_sync_done).collect();
        assert_eq!(done, vec![false, false, true]);
        let ids: Vec<u64> = syncs.iter().map(|s| s.sync_id).collect();
        assert_eq!(ids, vec![1, 2, 3]);
    }

    #[test]
    fn a_work_larger_than_the_cap_travels_alone() {
        // The index rejects such works; the chunker still never merges it with others.
        let d = desired(
            &[
                work("a", "ua", 1, 100),
                work("b", "ub", 1, 2000),
                work("c", "uc", 1, 100),
            ],
            &[],
        );
        let mut id = 0;
        let (syncs, _) = initial_sync(&[], &d, 1024 + SYNC_OVERHEAD, &mut id);
        assert_eq!(
            names(&syncs),
            vec![
                vec!["a".to_string()],
                vec!["b".to_string()],
                vec!["c".to_string()]
            ]
        );
    }

    #[test]
    fn incremental_sends_changes_and_removed_views() {
        let d1 = desired(
            &[work("a", "ua", 1, 1), work("b", "ub", 1, 1)],
            &[view("v1", 1), view("v2", 1)],
        );
        let mut id = 0;
        let (_, mut sent) = initial_sync(&[], &d1, 1 << 20, &mut id);

        // No change: nothing.
        assert!(incremental_sync(&mut sent, &d1, 1 << 20, &mut id).is_empty());

        // a bumped, b gone (not mentioned), c new, v1 changed, v2 removed, v3 new.
        let d2 = desired(
            &[work("a", "ua", 2, 1), work("c", "uc", 1, 1)],
            &[view("v1", 2), view("v3", 1)],
        );
        let syncs = incremental_sync(&mut sent, &d2, 1 << 20, &mut id);
        assert_eq!(syncs.len(), 1);
        let s = &syncs[0];
        assert!(!s.initial_sync_done);
        assert_eq!(names(&syncs), vec![vec!["a".to_string(), "c".to_string()]]);
        assert_eq!(s.removed_views, vec!["v2".to_string()]);
        let vnames: Vec<_> = s.views.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(vnames, vec!["v1", "v3"]);
        assert!(incremental_sync(&mut sent, &d2, 1 << 20, &mut id).is_empty());
    }
}
