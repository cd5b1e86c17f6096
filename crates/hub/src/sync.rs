//! What to send an agent: the difference between the cluster's desired state and
//! what the agent holds, cut into `Sync` messages of bounded size.
//!
//! After `Hello`, the baseline is the agent's durable record (`known_works`); views
//! have no record, so the first resync carries every view and ends with
//! `initial_sync_done`. Later changes are diffed against what this stream sent: only the
//! works and views the desired state's log names ([`delta_sync`]), or all of them when the
//! stream fell behind the log ([`incremental_sync`]).
//! Nothing is ever removed by omission: a work absent from the desired state is
//! not mentioned (its deletion travels as `deleting=true` while the hub's finalizer
//! holds the object), only views are removed explicitly (`removed_views`).

use std::collections::HashMap;

use drbridge_proto::v1 as pb;
use prost::Message;

use crate::desired::{Changed, Desired, SYNC_OVERHEAD, work_version};

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

/// Messages for the works and views in `changed` (from [`Desired::changed_since`]): the same
/// as [`incremental_sync`] would send, in O(change) instead of O(state). A work that left the
/// desired state is forgotten, never mentioned.
pub fn delta_sync(
    sent: &mut Sent,
    desired: &Desired,
    changed: &[Changed],
    max_bytes: usize,
    next_id: &mut u64,
) -> Vec<pb::Sync> {
    let mut chunker = Chunker::new(max_bytes, next_id);
    let views = || {
        changed.iter().filter_map(|c| match c {
            Changed::View(n) => Some(n),
            Changed::Work(_) => None,
        })
    };
    // In incremental_sync's order: removed views, then views, then works, each by name.
    for name in views() {
        if !desired.views.contains_key(name) && sent.views.remove(name).is_some() {
            chunker.push_removed_view(name);
        }
    }
    for name in views() {
        if let Some(view) = desired.views.get(name) {
            let ver = (view.uid.clone(), view.generation);
            if sent.views.get(name) != Some(&ver) {
                chunker.push_view(view);
                sent.views.insert(name.clone(), ver);
            }
        }
    }
    for c in changed {
        let Changed::Work(name) = c else { continue };
        match desired.works.get(name) {
            Some(work) => push_if_changed(sent, work, &mut chunker),
            None => {
                sent.works.remove(name);
            }
        }
    }
    chunker.finish(false)
}

fn push_if_changed(sent: &mut Sent, work: &pb::Work, chunker: &mut Chunker<'_>) {
    let (uid, generation, deleting) = work_version(work);
    let ver = (uid.to_string(), generation, deleting);
    if sent.works.get(&work.name) != Some(&ver) {
        chunker.push_work(work);
        sent.works.insert(work.name.clone(), ver);
    }
}

fn push_changed_works(sent: &mut Sent, desired: &Desired, chunker: &mut Chunker<'_>) {
    for work in desired.works.values() {
        push_if_changed(sent, work, chunker);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::DEFAULT_MAX_SYNC_BYTES;
    use std::collections::BTreeMap;
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
        Desired::new(
            works.iter().map(|w| (w.name.clone(), w.clone())).collect(),
            views.iter().map(|v| (v.name.clone(), v.clone())).collect(),
        )
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

    /// What a stream's agent holds after applying `syncs` (works are never removed: an agent
    /// removes nothing by omission), checking that each message is exactly what `desired`
    /// holds now: the hub never sends a stale version, and never mentions a work that is not
    /// in the desired state (such as one the agent knows and the hub does not).
    fn deliver(
        agent: &mut BTreeMap<String, WorkVer>,
        views: &mut BTreeMap<String, ViewVer>,
        syncs: &[pb::Sync],
        desired: &Desired,
    ) {
        for s in syncs {
            for w in &s.works {
                let want = desired
                    .works
                    .get(&w.name)
                    .expect("a work not desired was sent");
                assert_eq!(w, want.as_ref(), "a stale version was sent");
                // The same version again is harmless (the agent holds it): it happens, as with
                // the full diff, when a work left the desired state and came back.
                agent.insert(w.name.clone(), (w.uid.clone(), w.generation, w.deleting));
            }
            for n in &s.removed_views {
                assert!(!desired.views.contains_key(n), "desired view {n} removed");
                views.remove(n);
            }
            for v in &s.views {
                views.insert(v.name.clone(), (v.uid.clone(), v.generation));
            }
        }
    }

    /// The stream's view of the agent agrees with the desired state on everything desired.
    fn converged(
        agent: &BTreeMap<String, WorkVer>,
        views: &BTreeMap<String, ViewVer>,
        d: &Desired,
    ) {
        for (n, w) in &d.works {
            assert_eq!(
                agent.get(n),
                Some(&(w.uid.clone(), w.generation, w.deleting)),
                "{n}"
            );
        }
        let want: BTreeMap<String, ViewVer> = d
            .views
            .iter()
            .map(|(n, v)| (n.clone(), (v.uid.clone(), v.generation)))
            .collect();
        assert_eq!(views, &want);
    }

    /// Random change events (works and views added, bumped, deleting, gone), read by a
    /// stream that sometimes falls behind the log: every read leaves the agent holding
    /// exactly the desired versions, sends nothing stale or undesired, and never drops a
    /// work the agent holds (its record, and works that left the desired state, stay).
    #[test]
    fn change_events_deliver_what_a_full_diff_would_and_never_delete_by_omission() {
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        for round in 0..50 {
            let mut d = desired(&[work("w0", "u0", 1, 10)], &[view("v0", 1)]);
            // The agent's record holds a work the hub does not know: never mentioned.
            let known = [known("z", "uz", 3, false), known("w0", "u0", 1, false)];
            let mut id = 0;
            let (syncs, mut sent) = initial_sync(&known, &d, 1 << 20, &mut id);
            let mut agent: BTreeMap<String, WorkVer> = known
                .iter()
                .map(|k| (k.name.clone(), (k.uid.clone(), k.generation, k.deleting)))
                .collect();
            let mut views = BTreeMap::new();
            deliver(&mut agent, &mut views, &syncs, &d);
            converged(&agent, &views, &d);
            let mut seen = d.version();
            for _ in 0..200 {
                let name = format!("w{}", next(8));
                match next(10) {
                    0..=3 => {
                        let g = d.works.get(&name).map_or(1, |w| w.generation + 1);
                        d.set_work(&name, Some(work(&name, &format!("u-{name}"), g, 10)));
                    }
                    4 => {
                        if let Some(w) = d.works.get(&name) {
                            let mut w = (**w).clone();
                            w.deleting = true;
                            w.manifests.clear();
                            d.set_work(&name, Some(Arc::new(w)));
                        }
                    }
                    5 => {
                        d.set_work(&name, None);
                    }
                    6 => {
                        // Re-created under the same name: another uid.
                        let uid = format!("u-{name}-{}", next(1000));
                        d.set_work(&name, Some(work(&name, &uid, 1, 10)));
                    }
                    7 => {
                        let v = format!("v{}", next(4));
                        let g = d.views.get(&v).map_or(1, |x| x.generation + 1);
                        d.set_view(&v, Some(view(&v, g)));
                    }
                    _ => {
                        d.set_view(&format!("v{}", next(4)), None);
                    }
                }
                // The stream reads only now and then: changes coalesce, as on a watch.
                if next(3) != 0 {
                    continue;
                }
                let before: BTreeMap<String, WorkVer> = agent.clone();
                let syncs = match d.changed_since(seen) {
                    Some(changed) => delta_sync(&mut sent, &d, &changed, 1 << 20, &mut id),
                    None => incremental_sync(&mut sent, &d, 1 << 20, &mut id),
                };
                seen = d.version();
                deliver(&mut agent, &mut views, &syncs, &d);
                converged(&agent, &views, &d);
                assert!(
                    before.keys().all(|n| agent.contains_key(n)),
                    "round {round}: the agent lost a work"
                );
                assert!(!syncs.iter().any(|s| s.works.iter().any(|w| w.name == "z")));
                // Nothing left undone: a full diff on top finds nothing to send.
                let mut other = 0;
                let extra = incremental_sync(&mut sent.clone(), &d, 1 << 20, &mut other);
                assert!(
                    extra.is_empty(),
                    "round {round}: the delta missed {extra:?}"
                );
            }
        }
    }

    /// A work leaves the desired state by a change event (its watch saw it deleted, or its
    /// finalizer was taken off): the stream says nothing about it, and neither does the
    /// resync of the agent's next stream, whose record still holds it.
    #[test]
    fn a_resync_after_a_change_event_never_omits_to_delete() {
        let mut d = desired(&[work("a", "ua", 1, 10), work("b", "ub", 1, 10)], &[]);
        let mut id = 0;
        let (_, mut sent) = initial_sync(&[], &d, 1 << 20, &mut id);
        let v = d.version();
        assert!(d.set_work("a", None));
        let changed = d.changed_since(v).unwrap();
        let syncs = delta_sync(&mut sent, &d, &changed, 1 << 20, &mut id);
        assert!(syncs.is_empty(), "nothing to say about a: {syncs:?}");
        // The agent's next stream: its record holds both; the hub only b.
        let record = [known("a", "ua", 1, false), known("b", "ub", 1, false)];
        let (syncs, _) = initial_sync(&record, &d, 1 << 20, &mut id);
        assert_eq!(names(&syncs), vec![Vec::<String>::new()]);
        assert!(syncs[0].initial_sync_done);
        // It comes back unchanged: sent again (harmless, the agent holds that version), as
        // a full diff would; a newer generation is sent whole, manifests included.
        let v = d.version();
        d.set_work("a", Some(work("a", "ua", 1, 10)));
        let syncs = delta_sync(
            &mut sent,
            &d,
            &d.changed_since(v).unwrap(),
            1 << 20,
            &mut id,
        );
        assert_eq!(
            names(&syncs),
            vec![vec!["a".to_string()]],
            "resent once forgotten"
        );
        let v = d.version();
        d.set_work("a", Some(work("a", "ua", 2, 10)));
        let syncs = delta_sync(
            &mut sent,
            &d,
            &d.changed_since(v).unwrap(),
            1 << 20,
            &mut id,
        );
        assert_eq!(syncs[0].works[0].generation, 2);
        assert!(!syncs[0].works[0].manifests.is_empty());
    }
}
