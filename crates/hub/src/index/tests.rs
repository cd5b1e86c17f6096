use super::*;
use crate::desired::{Changed, REASON_INVALID, REASON_TOO_LARGE};
use crate::objects::{WORK_FINALIZER, WorkSpec};

fn meta(ns: &str, name: &str, uid: &str, generation: i64) -> Meta {
    Meta {
        namespace: ns.into(),
        name: name.into(),
        uid: uid.into(),
        generation,
        resource_version: format!("rv-{generation}"),
        ..Default::default()
    }
}

fn work(ns: &str, name: &str, generation: i64, finalized: bool) -> WorkObject {
    let mut m = meta(ns, name, &format!("{name}-uid"), generation);
    if finalized {
        m.finalizers.push(WORK_FINALIZER.into());
    }
    WorkObject {
        meta: m,
        spec: Ok(WorkSpec {
            manifests: vec![br#"{"apiVersion":"v1","kind":"Namespace"}"#.to_vec()],
            ..Default::default()
        }),
        conditions: vec![],
        status: Default::default(),
    }
}

fn view(ns: &str, name: &str, generation: i64) -> ViewObject {
    ViewObject {
        meta: meta(ns, name, &format!("{name}-uid"), generation),
        scope: pb::ViewScope {
            kind: "VolumeReplicationGroup".into(),
            name: "x".into(),
            ..Default::default()
        },
        conditions: vec![],
        status: Default::default(),
    }
}

fn cluster(name: &str) -> ClusterObject {
    ClusterObject {
        meta: meta("", name, &format!("{name}-uid"), 1),
        conditions: vec![],
        claims: vec![],
    }
}

struct Fixture {
    index: Index,
    intents: mpsc::Receiver<Intent>,
}

impl Fixture {
    fn new() -> Self {
        Self::with_limits(Limits::default())
    }

    fn with_limits(limits: Limits) -> Self {
        let (tx, rx) = mpsc::channel(100);
        Self {
            index: Index::new(limits, Some(tx), Metrics::default()),
            intents: rx,
        }
    }

    /// Lists everything, as the three watches do at start-up.
    fn synced(mut self, clusters: &[&str], works: Vec<WorkObject>, views: Vec<ViewObject>) -> Self {
        self.index.reset_works(works);
        self.index.reset_views(views);
        self.index
            .reset_clusters(clusters.iter().map(|c| cluster(c)).collect());
        self
    }

    fn intents(&mut self) -> Vec<Intent> {
        let mut out = vec![];
        while let Ok(i) = self.intents.try_recv() {
            out.push(i);
        }
        out
    }
}

fn names<T>(m: &BTreeMap<String, T>) -> Vec<&str> {
    m.keys().map(String::as_str).collect()
}

#[test]
fn nothing_before_every_watch_listed() {
    let mut f = Fixture::new();
    assert_eq!(
        f.index.subscribe("dr1").unwrap_err(),
        SubscribeError::NotReady
    );
    f.index.reset_works(vec![work("dr1", "a", 1, true)]);
    f.index.reset_clusters(vec![cluster("dr1")]);
    assert_eq!(
        f.index.subscribe("dr1").unwrap_err(),
        SubscribeError::NotReady
    );
    assert!(!*f.index.ready().borrow());
    assert!(
        f.intents().is_empty(),
        "no intents before the index is whole"
    );
    f.index.reset_views(vec![]);
    assert!(*f.index.ready().borrow());
    let rx = f.index.subscribe("dr1").unwrap();
    assert_eq!(names(&rx.borrow().works), vec!["a"]);
}

#[test]
fn unregistered_cluster_is_refused() {
    let mut f = Fixture::new().synced(&["dr1"], vec![work("dr2", "a", 1, true)], vec![]);
    assert_eq!(
        f.index.subscribe("dr2").unwrap_err(),
        SubscribeError::NotRegistered("dr2".into())
    );
    assert!(f.index.subscribe("dr1").is_ok());
}

#[test]
fn each_cluster_sees_only_its_namespace() {
    let mut f = Fixture::new().synced(
        &["dr1", "dr2"],
        vec![work("dr1", "a", 1, true), work("dr2", "b", 1, true)],
        vec![view("dr1", "v1", 1), view("dr2", "v2", 1)],
    );
    let d1 = f.index.subscribe("dr1").unwrap().borrow().clone();
    let d2 = f.index.subscribe("dr2").unwrap().borrow().clone();
    assert_eq!(names(&d1.works), vec!["a"]);
    assert_eq!(names(&d1.views), vec!["v1"]);
    assert_eq!(names(&d2.works), vec!["b"]);
    assert_eq!(names(&d2.views), vec!["v2"]);
    assert!(d1.registered && d2.registered);
}

#[test]
fn only_finalized_works_are_dispatched_and_finalizer_is_requested() {
    let mut f = Fixture::new().synced(&["dr1"], vec![work("dr1", "a", 1, false)], vec![]);
    assert_eq!(
        f.intents(),
        vec![Intent::AddFinalizer(ObjectKey::new("dr1", "a"))]
    );
    let mut rx = f.index.subscribe("dr1").unwrap();
    assert!(rx.borrow_and_update().works.is_empty());

    f.index.apply_work(work("dr1", "a", 1, true));
    assert!(rx.has_changed().unwrap());
    assert_eq!(names(&rx.borrow_and_update().works), vec!["a"]);
    assert!(f.intents().is_empty());
}

#[test]
fn unchanged_apply_does_not_wake_subscribers() {
    let mut f = Fixture::new().synced(&["dr1", "dr2"], vec![work("dr1", "a", 1, true)], vec![]);
    let mut rx1 = f.index.subscribe("dr1").unwrap();
    let mut rx2 = f.index.subscribe("dr2").unwrap();
    rx1.borrow_and_update();
    rx2.borrow_and_update();
    // A status write changes resourceVersion but not generation.
    let mut w = work("dr1", "a", 1, true);
    w.meta.resource_version = "rv-99".into();
    f.index.apply_work(w);
    assert!(!rx1.has_changed().unwrap());
    // A spec change wakes only dr1.
    f.index.apply_work(work("dr1", "a", 2, true));
    assert!(rx1.has_changed().unwrap());
    assert!(!rx2.has_changed().unwrap());
    assert_eq!(rx1.borrow_and_update().works["a"].generation, 2);
}

#[test]
fn deleting_work_is_sent_without_manifests() {
    let mut f = Fixture::new().synced(&["dr1"], vec![work("dr1", "a", 1, true)], vec![]);
    let mut rx = f.index.subscribe("dr1").unwrap();
    let mut w = work("dr1", "a", 1, true);
    w.meta.deleting = true;
    f.index.apply_work(w);
    let d = rx.borrow_and_update().clone();
    assert!(d.works["a"].deleting);
    assert!(d.works["a"].manifests.is_empty());
    assert!(d.works["a"].delete_option.is_some());
    // Not released before the agent confirms.
    assert!(f.intents().is_empty());
}

#[test]
fn finalizer_released_only_after_confirmation_of_that_uid() {
    let mut f = Fixture::new().synced(&["dr1"], vec![], vec![]);
    let mut w = work("dr1", "a", 1, true);
    w.meta.deleting = true;
    f.index.apply_work(w.clone());
    let key = ObjectKey::new("dr1", "a");
    assert!(!f.index.mark_gone(&key, "other-uid"));
    assert!(f.index.mark_gone(&key, "a-uid"));
    assert!(f.index.work(&key).unwrap().gone_confirmed);
    // The index emits the release itself; the writer only patches.
    assert_eq!(f.intents(), vec![Intent::ReleaseFinalizer(key.clone())]);
    // The confirmation survives later events for the same uid.
    w.meta.resource_version = "rv-2".into();
    f.index.apply_work(w);
    assert_eq!(f.intents(), vec![Intent::ReleaseFinalizer(key.clone())]);
    assert!(f.index.work(&key).unwrap().gone_confirmed);
}

#[test]
fn mark_gone_ignores_live_works() {
    let mut f = Fixture::new().synced(&["dr1"], vec![work("dr1", "a", 1, true)], vec![]);
    assert!(!f.index.mark_gone(&ObjectKey::new("dr1", "a"), "a-uid"));
}

#[test]
fn unregistering_ends_streams_and_releases_deleting_works() {
    let mut deleting = work("dr1", "b", 1, true);
    deleting.meta.deleting = true;
    let mut f = Fixture::new().synced(&["dr1"], vec![work("dr1", "a", 1, true), deleting], vec![]);
    let mut rx = f.index.subscribe("dr1").unwrap();
    rx.borrow_and_update();
    f.intents();
    f.index.delete_cluster("dr1");
    assert!(rx.has_changed().unwrap());
    assert!(!rx.borrow_and_update().registered);
    // Nobody can confirm any more: the deleting work is let go, the live one is kept.
    assert_eq!(
        f.intents(),
        vec![Intent::ReleaseFinalizer(ObjectKey::new("dr1", "b"))]
    );
}

#[test]
fn registering_later_publishes_and_requests_finalizers() {
    let mut f = Fixture::new().synced(
        &[],
        vec![work("dr1", "a", 1, false)],
        vec![view("dr1", "v", 1)],
    );
    assert!(
        f.intents().is_empty(),
        "no finalizer outside registered namespaces"
    );
    f.index.apply_cluster(cluster("dr1"));
    assert_eq!(
        f.intents(),
        vec![Intent::AddFinalizer(ObjectKey::new("dr1", "a"))]
    );
    let rx = f.index.subscribe("dr1").unwrap();
    assert_eq!(names(&rx.borrow().views), vec!["v"]);
}

#[test]
fn relist_is_one_change() {
    let mut f = Fixture::new().synced(
        &["dr1"],
        vec![work("dr1", "a", 1, true), work("dr1", "b", 1, true)],
        vec![],
    );
    let mut rx = f.index.subscribe("dr1").unwrap();
    rx.borrow_and_update();
    // b disappeared while the watch was down, c appeared, a unchanged.
    f.index
        .reset_works(vec![work("dr1", "a", 1, true), work("dr1", "c", 1, true)]);
    assert!(rx.has_changed().unwrap());
    assert_eq!(names(&rx.borrow_and_update().works), vec!["a", "c"]);
    // The same list again changes nothing.
    f.index
        .reset_works(vec![work("dr1", "a", 1, true), work("dr1", "c", 1, true)]);
    assert!(!rx.has_changed().unwrap());
}

#[test]
fn malformed_work_is_rejected_with_an_intent_and_others_carry_on() {
    let mut bad = work("dr1", "bad", 3, true);
    bad.spec = Err("spec.workload.manifests must be a list, found an object".into());
    let mut f = Fixture::new().synced(&["dr1"], vec![bad, work("dr1", "good", 1, true)], vec![]);
    let rx = f.index.subscribe("dr1").unwrap();
    assert_eq!(names(&rx.borrow().works), vec!["good"]);
    assert_eq!(
        f.intents(),
        vec![Intent::Reject(ObjectKey::new("dr1", "bad"))]
    );
    let entry = f.index.work(&ObjectKey::new("dr1", "bad")).unwrap();
    let rej = entry.payload.as_ref().unwrap_err();
    assert_eq!(rej.reason, REASON_INVALID);
    assert!(
        rej.message
            .contains("spec.workload.manifests must be a list")
    );
}

#[test]
fn rejection_not_repeated_once_recorded() {
    let mut bad = work("dr1", "bad", 3, true);
    bad.spec = Err("boom".into());
    let mut f = Fixture::new().synced(&["dr1"], vec![bad.clone()], vec![]);
    f.intents();
    let rej = f
        .index
        .work(&ObjectKey::new("dr1", "bad"))
        .unwrap()
        .payload
        .clone()
        .unwrap_err();
    bad.conditions = vec![serde_json::json!({
        "type": "Applied", "status": "False", "reason": rej.reason,
        "message": rej.message, "observedGeneration": 3,
    })];
    f.index.apply_work(bad.clone());
    assert!(f.intents().is_empty());
    // A new generation, still bad: reject again.
    bad.meta.generation = 4;
    f.index.apply_work(bad);
    assert_eq!(
        f.intents(),
        vec![Intent::Reject(ObjectKey::new("dr1", "bad"))]
    );
}

#[test]
fn oversize_work_is_rejected_but_can_still_be_deleted() {
    let mut f = Fixture::with_limits(Limits {
        max_work_bytes: 1024,
    })
    .synced(&["dr1"], vec![], vec![]);
    let mut big = work("dr1", "big", 1, true);
    big.spec.as_mut().unwrap().manifests = vec![vec![b'x'; 2048]];
    f.index.apply_work(big.clone());
    f.index.apply_work(work("dr1", "small", 1, true));
    let mut rx = f.index.subscribe("dr1").unwrap();
    assert_eq!(names(&rx.borrow_and_update().works), vec!["small"]);
    let rej = f
        .index
        .work(&ObjectKey::new("dr1", "big"))
        .unwrap()
        .payload
        .clone()
        .unwrap_err();
    assert_eq!(rej.reason, REASON_TOO_LARGE);
    assert!(
        rej.message
            .contains("more than the hub's limit of 1024 bytes"),
        "{}",
        rej.message
    );
    assert!(
        f.intents()
            .contains(&Intent::Reject(ObjectKey::new("dr1", "big")))
    );

    big.meta.deleting = true;
    f.index.apply_work(big);
    assert!(rx.borrow_and_update().works["big"].deleting);
}

#[test]
fn deleted_views_and_deleting_views_leave_the_desired_state() {
    let mut f = Fixture::new().synced(
        &["dr1"],
        vec![],
        vec![view("dr1", "v1", 1), view("dr1", "v2", 1)],
    );
    let mut rx = f.index.subscribe("dr1").unwrap();
    rx.borrow_and_update();
    f.index.delete_view("dr1", "v1");
    let mut v2 = view("dr1", "v2", 1);
    v2.meta.deleting = true;
    f.index.apply_view(v2);
    assert!(rx.borrow_and_update().views.is_empty());
}

#[test]
fn sweep_repeats_every_implied_intent() {
    let mut deleting = work("dr1", "gone", 1, true);
    deleting.meta.deleting = true;
    let f = Fixture::new().synced(&[], vec![work("dr1", "new", 1, false), deleting], vec![]);
    let mut sweep = f.index.sweep();
    sweep.sort_by_key(|i| format!("{i:?}"));
    assert_eq!(
        sweep,
        vec![Intent::ReleaseFinalizer(ObjectKey::new("dr1", "gone"))]
    );
}

#[test]
fn metrics_count_objects() {
    let m = Metrics::default();
    let mut index = Index::new(Limits::default(), None, m.clone());
    index.reset_works(vec![work("dr1", "a", 1, true), work("dr2", "b", 1, true)]);
    index.reset_views(vec![view("dr1", "v", 1)]);
    index.reset_clusters(vec![cluster("dr1")]);
    assert_eq!(m.works_indexed.get(), 2);
    assert_eq!(m.views_indexed.get(), 1);
    assert_eq!(m.clusters_registered.get(), 1);
    index.delete_work("dr2", "b");
    assert_eq!(m.works_indexed.get(), 1);
}

/// Issue 17 item 4: a spec without `workload` is not "a work with no manifests" (which would
/// make the agent delete every object the work applied): it is rejected with a condition, and
/// the agent keeps the generation it holds (a work left out of the desired state is never
/// removed by omission).
#[test]
fn a_spec_without_workload_is_invalid_not_an_empty_work() {
    let mut f = Fixture::new().synced(&["dr1"], vec![work("dr1", "vrg", 1, true)], vec![]);
    let mut rx = f.index.subscribe("dr1").unwrap();
    assert_eq!(rx.borrow_and_update().works["vrg"].manifests.len(), 1);
    f.intents();

    let mut broken = work("dr1", "vrg", 2, true);
    broken.spec = WorkSpec::from_json(Some(
        &serde_json::json!({"deleteOption": {"propagationPolicy": "Orphan"}}),
    ));
    f.index.apply_work(broken.clone());
    let desired = rx.borrow_and_update().clone();
    assert!(
        !desired.works.values().any(|w| w.manifests.is_empty()),
        "an empty work was dispatched: {desired:?}"
    );
    let entry = f.index.work(&ObjectKey::new("dr1", "vrg")).unwrap();
    let rej = entry.payload.as_ref().unwrap_err();
    assert_eq!(rej.reason, REASON_INVALID);
    assert!(rej.message.contains("spec.workload"), "{}", rej.message);
    assert_eq!(
        f.intents(),
        vec![Intent::Reject(ObjectKey::new("dr1", "vrg"))]
    );

    // Deleting it still reaches the agent (which deletes what its own record says).
    broken.meta.deleting = true;
    f.index.apply_work(broken);
    assert!(rx.borrow_and_update().works["vrg"].deleting);

    // An explicit empty list (how Go clients encode one) stays a valid, empty work.
    let explicit = WorkSpec::from_json(Some(&serde_json::json!({"workload": {}}))).unwrap();
    assert!(explicit.manifests.is_empty());
}

/// A work's event publishes that work alone: the log names it, other clusters are not
/// woken, and the counts follow without a recount.
#[test]
fn a_work_event_is_logged_as_that_work_alone() {
    let works = (0..50)
        .map(|i| work("dr1", &format!("w{i}"), 1, true))
        .chain([work("dr2", "b", 1, true)])
        .collect();
    let mut f = Fixture::new().synced(&["dr1", "dr2"], works, vec![view("dr1", "v", 1)]);
    let mut rx1 = f.index.subscribe("dr1").unwrap();
    let mut rx2 = f.index.subscribe("dr2").unwrap();
    let v1 = rx1.borrow_and_update().version();
    rx2.borrow_and_update();
    f.index.apply_work(work("dr1", "w7", 2, true));
    f.index.delete_work("dr1", "w9");
    f.index.apply_work(work("dr1", "new", 1, true));
    f.index.apply_view(view("dr1", "v", 2));
    assert!(!rx2.has_changed().unwrap());
    let d = rx1.borrow_and_update().clone();
    assert_eq!(
        d.changed_since(v1),
        Some(vec![
            Changed::Work("new".into()),
            Changed::Work("w7".into()),
            Changed::Work("w9".into()),
            Changed::View("v".into()),
        ])
    );
    assert!(!d.works.contains_key("w9"));
    assert_eq!(f.index.metrics.works_indexed.get(), 51);
    assert_eq!(f.index.metrics.views_indexed.get(), 1);
    // A work the hub may not dispatch yet (no finalizer) is no change for the agent.
    let v = d.version();
    f.index.apply_work(work("dr1", "unfinalized", 1, false));
    assert!(!rx1.has_changed().unwrap());
    assert_eq!(rx1.borrow().version(), v);
}

/// The finalizer taken off a dispatched work (a user, or a relist without it) takes it out
/// of the desired state as a change event: never sent as anything the agent would delete.
#[test]
fn a_work_leaving_the_desired_state_is_logged_not_emptied() {
    let mut f = Fixture::new().synced(&["dr1"], vec![work("dr1", "a", 1, true)], vec![]);
    let mut rx = f.index.subscribe("dr1").unwrap();
    let v = rx.borrow_and_update().version();
    f.index.apply_work(work("dr1", "a", 1, false));
    let d = rx.borrow_and_update().clone();
    assert_eq!(d.changed_since(v), Some(vec![Changed::Work("a".into())]));
    assert!(d.works.is_empty(), "left out, not sent without manifests");
    // The cluster deregistered and registered again: a whole-state change, every work
    // logged, none dispatched empty.
    f.index.apply_work(work("dr1", "a", 1, true));
    let v = rx.borrow_and_update().version();
    f.index.delete_cluster("dr1");
    assert!(!rx.borrow_and_update().registered);
    f.index.apply_cluster(cluster("dr1"));
    let d = rx.borrow_and_update().clone();
    assert!(d.registered);
    assert_eq!(d.changed_since(v), Some(vec![Changed::Work("a".into())]));
    assert!(!d.works["a"].manifests.is_empty());
}
