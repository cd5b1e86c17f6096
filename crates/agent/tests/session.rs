//! The agent end to end over channels: hub messages in, agent messages out, against the
//! in-memory cluster and record store. No API server, no network.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use drbridge_agent::pb;
use drbridge_agent::record::{AppliedResource, WorkRecord};
use drbridge_agent::session::SessionEnd;
use drbridge_agent::testing::FakeCluster;
use drbridge_agent::{Agent, MemoryStore, RecordStore};
use drbridge_model::DeletePolicy;
use pb::agent_message::Body;
use serde_json::{Value, json};

type H = Harness<FakeCluster, MemoryStore>;

fn new_cluster() -> FakeCluster {
    let c = FakeCluster::new();
    c.put(
        "Namespace",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kube-system"}}),
    );
    c
}

async fn start(cluster: FakeCluster, store: MemoryStore, epoch: u64) -> H {
    let agent = Arc::new(
        Agent::start(
            Arc::new(cluster.clone()),
            Arc::new(store.clone()),
            "c1",
            cfg(),
            Default::default(),
        )
        .await
        .unwrap(),
    );
    connect(agent, cluster, store, epoch).await
}

#[tokio::test]
async fn applies_records_and_reports_ocm_status() {
    let mut h = start(new_cluster(), MemoryStore::default(), 1).await;
    let ns = b(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns"}}));
    let id = h
        .sync(
            vec![work("w1", "u1", 1, vec![cm("a", json!({"k": "v"})), ns])],
            vec![],
            vec![],
            true,
        )
        .await;
    h.ack(id).await;
    let s = h.status("w1", all_available).await;
    assert_eq!(s.generation, 1);
    let applied = cond(&s.conditions, "Applied");
    assert_eq!(
        (
            applied.status.as_str(),
            applied.reason.as_str(),
            applied.message.as_str()
        ),
        (
            "True",
            "AppliedManifestWorkComplete",
            "Apply manifest work complete"
        )
    );
    assert_eq!(applied.observed_generation, 1);
    assert!(!applied.last_transition_time.is_empty());
    let avail = cond(&s.conditions, "Available");
    assert_eq!(
        (avail.reason.as_str(), avail.message.as_str()),
        ("ResourcesAvailable", "All resources are available")
    );
    assert_eq!(s.manifests.len(), 2);
    let m0 = &s.manifests[0];
    let meta = m0.meta.as_ref().unwrap();
    assert_eq!(
        (
            meta.ordinal,
            meta.kind.as_str(),
            meta.resource.as_str(),
            meta.namespace.as_str()
        ),
        (0, "ConfigMap", "configmaps", "ns")
    );
    assert_eq!(
        m0.conditions
            .iter()
            .map(|c| c.r#type.as_str())
            .collect::<Vec<_>>(),
        ["Applied", "Available", "StatusFeedbackSynced"]
    );
    assert_eq!(
        cond(&m0.conditions, "Applied").message,
        "Apply manifest complete"
    );
    // The durable record lists both objects with their uids.
    let rec = h.store.snapshot()["w1"].clone();
    assert_eq!(rec.resources.len(), 2);
    assert!(rec.resources.iter().all(|r| !r.uid.is_empty()));
    assert_eq!(h.agent.works().known()[0].generation, 1);
    h.stop().await;
}

#[tokio::test]
async fn watches_report_deleted_and_recreated_objects() {
    let mut h = start(new_cluster(), MemoryStore::default(), 1).await;
    let id = h
        .sync(
            vec![work(
                "w1",
                "u1",
                1,
                vec![cm("a", json!({})), cm("b", json!({}))],
            )],
            vec![],
            vec![],
            true,
        )
        .await;
    h.ack(id).await;
    h.status("w1", all_available).await;
    h.cluster.delete_external("ConfigMap", "ns", "a");
    let s = h.status("w1", |s| !all_available(s)).await;
    let avail = cond(&s.conditions, "Available");
    assert_eq!(
        (
            avail.status.as_str(),
            avail.reason.as_str(),
            avail.message.as_str()
        ),
        (
            "False",
            "ResourcesNotAvailable",
            "1 of 2 resources are not available"
        )
    );
    let m0 = cond(&s.manifests[0].conditions, "Available");
    assert_eq!(
        (m0.reason.as_str(), m0.message.as_str()),
        ("ResourceNotAvailable", "Resource is not available")
    );
    // Applied keeps its transition time; Available flipped.
    h.cluster.put("ConfigMap", json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "ns"}}));
    h.status("w1", all_available).await;
    h.stop().await;
}

#[tokio::test]
async fn bad_manifests_do_not_stop_the_others() {
    let mut h = start(new_cluster(), MemoryStore::default(), 1).await;
    let widget = b(
        json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "namespace": "ns"}}),
    );
    let id = h
        .sync(
            vec![work(
                "w1",
                "u1",
                1,
                vec![b"{".to_vec(), widget, cm("ok", json!({}))],
            )],
            vec![],
            vec![],
            true,
        )
        .await;
    h.ack(id).await;
    let s = h.status("w1", |_| true).await;
    let applied = cond(&s.conditions, "Applied");
    assert_eq!(
        (applied.status.as_str(), applied.reason.as_str()),
        ("False", "AppliedManifestWorkFailed")
    );
    let m1 = cond(&s.manifests[1].conditions, "Applied");
    assert_eq!(m1.reason, "AppliedManifestFailed");
    assert_eq!(
        m1.message,
        "Failed to apply manifest: the server doesn't have a resource type \"Widget\""
    );
    let a1 = cond(&s.manifests[1].conditions, "Available");
    assert_eq!(
        (a1.status.as_str(), a1.reason.as_str()),
        ("Unknown", "IncompleteResourceMeta")
    );
    let avail = cond(&s.conditions, "Available");
    assert_eq!(avail.message, "2 of 3 resources have unknown status");
    assert!(h.cluster.object("ConfigMap", "ns", "ok").is_some());
    h.stop().await;
}

#[tokio::test]
async fn newer_generation_drops_and_deletes_stale_is_ignored() {
    let mut h = start(new_cluster(), MemoryStore::default(), 1).await;
    let id = h
        .sync(
            vec![work(
                "w1",
                "u1",
                2,
                vec![cm("a", json!({})), cm("b", json!({}))],
            )],
            vec![],
            vec![],
            true,
        )
        .await;
    h.ack(id).await;
    h.status("w1", all_available).await;
    // A shared object: another work lists "b" too.
    let id = h
        .sync(
            vec![work("w2", "u2", 1, vec![cm("b", json!({}))])],
            vec![],
            vec![],
            false,
        )
        .await;
    h.ack(id).await;
    // Stale generation: ignored.
    let id = h
        .sync(
            vec![work("w1", "u1", 1, vec![cm("a", json!({}))])],
            vec![],
            vec![],
            false,
        )
        .await;
    h.ack(id).await;
    assert_eq!(h.store.snapshot()["w1"].generation, 2);
    // Generation 3 drops "a" (deleted) and "b" (shared with w2: kept).
    let id = h
        .sync(vec![work("w1", "u1", 3, vec![])], vec![], vec![], false)
        .await;
    h.ack(id).await;
    h.status("w1", |s| s.generation == 3).await;
    assert!(
        h.cluster.object("ConfigMap", "ns", "a").is_none(),
        "dropped object deleted"
    );
    assert!(
        h.cluster.object("ConfigMap", "ns", "b").is_some(),
        "shared object kept"
    );
    assert!(h.store.snapshot()["w1"].resources.is_empty());
    h.stop().await;
}

#[tokio::test]
async fn foreground_delete_waits_for_finalizers() {
    let mut h = start(new_cluster(), MemoryStore::default(), 1).await;
    let vrg = b(
        json!({"apiVersion": "ramendr.openshift.io/v1alpha1", "kind": "VolumeReplicationGroup",
        "metadata": {"name": "app", "namespace": "ns", "finalizers": ["volumereplicationgroups.ramendr.openshift.io/vrg-protection"]},
        "spec": {"replicationState": "primary"}}),
    );
    let id = h
        .sync(
            vec![work("vrg-mw", "u1", 1, vec![vrg])],
            vec![],
            vec![],
            true,
        )
        .await;
    h.ack(id).await;
    h.status("vrg-mw", all_available).await;
    let id = h
        .sync(
            vec![deleting(
                "vrg-mw",
                "u1",
                1,
                pb::delete_option::Policy::Foreground,
            )],
            vec![],
            vec![],
            false,
        )
        .await;
    h.ack(id).await;
    let s = h
        .status("vrg-mw", |s| {
            s.conditions.iter().any(|c| c.r#type == "Deleting")
        })
        .await;
    assert_eq!(cond(&s.conditions, "Deleting").reason, "WorkDeleting");
    assert!(h.store.snapshot()["vrg-mw"].deleting);
    assert!(h.agent.works().known()[0].deleting);
    // The VRG is terminating but its finalizer holds it: no WorkGone yet.
    let live = h
        .cluster
        .object("VolumeReplicationGroup", "ns", "app")
        .unwrap();
    assert!(live["metadata"].get("deletionTimestamp").is_some());
    let early = tokio::time::timeout(Duration::from_millis(300), h.gone("vrg-mw")).await;
    assert!(early.is_err(), "WorkGone before the finalizer ran");
    h.cluster
        .remove_finalizers("VolumeReplicationGroup", "ns", "app");
    let g = h.gone("vrg-mw").await;
    assert_eq!(g.uid, "u1");
    assert!(h.store.snapshot().is_empty());
    assert!(
        h.cluster
            .object("VolumeReplicationGroup", "ns", "app")
            .is_none()
    );
    h.stop().await;
}

#[tokio::test]
async fn orphan_delete_keeps_objects() {
    let mut h = start(new_cluster(), MemoryStore::default(), 1).await;
    let mut w = work(
        "ns-mw",
        "u1",
        1,
        vec![b(
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "app"}}),
        )],
    );
    w.delete_option = Some(pb::DeleteOption {
        propagation_policy: pb::delete_option::Policy::Orphan as i32,
        orphaning_rules: vec![],
    });
    let id = h.sync(vec![w], vec![], vec![], true).await;
    h.ack(id).await;
    h.status("ns-mw", all_available).await;
    assert_eq!(
        h.store.snapshot()["ns-mw"].delete_policy,
        DeletePolicy::Orphan
    );
    let id = h
        .sync(
            vec![deleting(
                "ns-mw",
                "u1",
                1,
                pb::delete_option::Policy::Orphan,
            )],
            vec![],
            vec![],
            false,
        )
        .await;
    h.ack(id).await;
    h.gone("ns-mw").await;
    assert!(
        h.cluster.object("Namespace", "", "app").is_some(),
        "orphaned namespace kept"
    );
    assert!(h.store.snapshot().is_empty());
    // A delete for a work the agent does not hold is answered at once.
    let id = h
        .sync(
            vec![deleting(
                "never",
                "ux",
                1,
                pb::delete_option::Policy::Foreground,
            )],
            vec![],
            vec![],
            false,
        )
        .await;
    h.ack(id).await;
    h.gone("never").await;
    h.stop().await;
}

#[tokio::test]
async fn selectively_orphan() {
    let mut h = start(new_cluster(), MemoryStore::default(), 1).await;
    let id = h
        .sync(
            vec![work(
                "w",
                "u1",
                1,
                vec![cm("keep", json!({})), cm("drop", json!({}))],
            )],
            vec![],
            vec![],
            true,
        )
        .await;
    h.ack(id).await;
    h.status("w", all_available).await;
    let mut d = deleting("w", "u1", 1, pb::delete_option::Policy::SelectivelyOrphan);
    d.delete_option.as_mut().unwrap().orphaning_rules = vec![pb::OrphaningRule {
        group: "".into(),
        resource: "configmaps".into(),
        namespace: "ns".into(),
        name: "keep".into(),
    }];
    let id = h.sync(vec![d], vec![], vec![], false).await;
    h.ack(id).await;
    h.gone("w").await;
    assert!(h.cluster.object("ConfigMap", "ns", "keep").is_some());
    assert!(h.cluster.object("ConfigMap", "ns", "drop").is_none());
    h.stop().await;
}

#[tokio::test]
async fn nothing_is_deleted_on_absence_and_restart_asks_for_specs() {
    let cluster = new_cluster();
    let store = MemoryStore::default();
    let mut h = start(cluster.clone(), store.clone(), 1).await;
    let id = h
        .sync(
            vec![work("w1", "u1", 4, vec![cm("a", json!({}))])],
            vec![],
            vec![],
            true,
        )
        .await;
    h.ack(id).await;
    h.status("w1", all_available).await;
    h.stop().await;

    // A restarted agent: the hub resyncs and never mentions w1.
    let mut h = start(cluster.clone(), store.clone(), 1).await;
    let hello = h.agent.hello();
    let Some(Body::Hello(hello)) = hello.body else {
        panic!()
    };
    assert_eq!(hello.known_works.len(), 1);
    assert_eq!(
        hello.known_works[0].generation, 0,
        "spec needed again after a restart"
    );
    assert_eq!(hello.max_hub_epoch, 1);
    assert_eq!(hello.cluster.as_ref().unwrap().claims["name"], "c1");
    assert!(!hello.cluster.as_ref().unwrap().claims["id.k8s.io"].is_empty());
    let id = h.sync(vec![], vec![], vec![], true).await;
    h.ack(id).await;
    assert!(cluster.object("ConfigMap", "ns", "a").is_some());
    assert_eq!(store.snapshot().len(), 1);
    h.stop().await;
}

#[tokio::test]
async fn stale_hub_is_refused() {
    let cluster = new_cluster();
    let store = MemoryStore::default();
    store
        .put(&WorkRecord {
            name: "w".into(),
            uid: "u".into(),
            generation: 1,
            hub_epoch: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    let h = start(cluster, store, 5).await;
    let out = h.task.await.unwrap();
    assert_eq!(
        out.end,
        SessionEnd::StaleHub {
            offered: 5,
            accepted: 10
        }
    );
    assert!(!out.welcomed);
}

#[tokio::test]
async fn resumes_a_deletion_after_restart() {
    let cluster = new_cluster();
    let store = MemoryStore::default();
    let live = cluster.put("ConfigMap", json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "ns"}}));
    store
        .put(&WorkRecord {
            name: "w".into(),
            uid: "u".into(),
            generation: 1,
            deleting: true,
            resources: vec![AppliedResource {
                version: "v1".into(),
                kind: "ConfigMap".into(),
                resource: "configmaps".into(),
                namespace: "ns".into(),
                name: "a".into(),
                uid: live["metadata"]["uid"].as_str().unwrap().into(),
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .unwrap();
    let mut h = start(cluster.clone(), store.clone(), 1).await;
    h.gone("w").await;
    assert!(cluster.object("ConfigMap", "ns", "a").is_none());
    assert!(store.snapshot().is_empty());
    h.stop().await;
}

#[tokio::test]
async fn views_follow_the_object() {
    let mut h = start(new_cluster(), MemoryStore::default(), 1).await;
    h.cluster.put("VolumeReplicationGroup", json!({"apiVersion": "ramendr.openshift.io/v1alpha1", "kind": "VolumeReplicationGroup",
        "metadata": {"name": "busybox-drpc", "namespace": "busybox"}, "spec": {"replicationState": "primary"}, "status": {"state": "Primary"}}));
    let v = view(
        "busybox-drpc-busybox-vrg-mcv",
        1,
        "ramendr.openshift.io",
        "v1alpha1",
        "VolumeReplicationGroup",
        "busybox",
        "busybox-drpc",
    );
    let same = view(
        "second",
        1,
        "ramendr.openshift.io",
        "v1alpha1",
        "VolumeReplicationGroup",
        "busybox",
        "busybox-drpc",
    );
    h.sync(vec![], vec![v.clone(), same], vec![], true).await;
    let s = h
        .view(&v.name, |s| {
            matches!(s.outcome, Some(pb::view_status::Outcome::Object(_)))
        })
        .await;
    let Some(pb::view_status::Outcome::Object(bytes)) = s.outcome else {
        panic!()
    };
    let obj: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(obj["kind"], "VolumeReplicationGroup");
    assert_eq!(obj["status"]["state"], "Primary");
    assert!(obj["metadata"]["resourceVersion"].is_string());
    assert_eq!(s.generation, 1);
    assert!(!s.observed_time.is_empty());
    h.view("second", |s| s.outcome.is_some()).await;
    assert_eq!(
        h.agent.views().object_watches(),
        1,
        "views of one object share a watch"
    );

    // A change is pushed.
    let mut live = h
        .cluster
        .object("VolumeReplicationGroup", "busybox", "busybox-drpc")
        .unwrap();
    live["status"]["state"] = json!("Secondary");
    h.cluster.put("VolumeReplicationGroup", live);
    h.view(&v.name, |s| matches!(&s.outcome, Some(pb::view_status::Outcome::Object(b)) if String::from_utf8_lossy(b).contains("Secondary"))).await;

    // Deleted: NotFound in apimachinery's words.
    h.cluster
        .delete_external("VolumeReplicationGroup", "busybox", "busybox-drpc");
    let s = h.view(&v.name, |s| view_error(s).is_some()).await;
    assert_eq!(
        view_error(&s).unwrap(),
        (
            "GetResourceFailed".to_string(),
            "failed to get resource with err: volumereplicationgroups.ramendr.openshift.io \"busybox-drpc\" not found".to_string()
        )
    );
    h.sync(vec![], vec![], vec!["second".into()], false).await;
    h.sync(vec![], vec![], vec![v.name.clone()], false).await;
    let agent = h.agent.clone();
    eventually("object watch released", async || {
        agent.views().object_watches() == 0
    })
    .await;
    h.stop().await;
}

#[tokio::test]
async fn view_errors_match_the_real_controller() {
    let mut h = start(new_cluster(), MemoryStore::default(), 1).await;
    let cases = [
        (
            view("ns", 1, "", "v1", "Namespace", "", "x"),
            "GetResourceFailed",
            "failed to get resource with err: namespaces \"x\" not found",
        ),
        (
            view("gvk", 1, "example.com", "v1", "Foo", "", "x"),
            "ResourceGVKInvalid",
            "failed to get resource with err: no matches for kind \"Foo\" in version \"example.com/v1\"",
        ),
        (
            view("noname", 1, "", "v1", "Namespace", "", ""),
            "ResourceNameInvalid",
            "failed to get resource with err: invalid resource name",
        ),
        (
            view("notype", 1, "", "", "Namespace", "", "x"),
            "ResourceTypeInvalid",
            "failed to get resource with err: invalid resource type",
        ),
        (
            view("secret", 1, "", "v1", "Secret", "ns", "s"),
            "ResourceTypeInvalid",
            "viewing secrets is not allowed",
        ),
    ];
    h.sync(
        vec![],
        cases.iter().map(|c| c.0.clone()).collect(),
        vec![],
        true,
    )
    .await;
    for (v, reason, message) in cases.clone() {
        let s = h.view(&v.name, |s| view_error(s).is_some()).await;
        assert_eq!(
            view_error(&s).unwrap(),
            (reason.to_string(), message.to_string()),
            "{}",
            v.name
        );
    }
    assert_eq!(h.agent.views().len(), 5);
    // Next stream: views absent from the hub's initial resync are stopped.
    let (agent, cluster, store) = (h.agent.clone(), h.cluster.clone(), h.store.clone());
    h.stop().await;
    let mut h = connect(agent, cluster, store, 1).await;
    h.sync(vec![], vec![cases[0].0.clone()], vec![], true).await;
    let agent = h.agent.clone();
    eventually("views stopped", async || agent.views().len() == 1).await;
    // The kept view's status is sent again on the new stream.
    h.view("ns", |s| view_error(s).is_some()).await;
    h.stop().await;
}

#[tokio::test]
async fn reconnect_resends_status() {
    let cluster = new_cluster();
    let store = MemoryStore::default();
    let mut h = start(cluster.clone(), store.clone(), 1).await;
    let id = h
        .sync(
            vec![work("w1", "u1", 1, vec![cm("a", json!({}))])],
            vec![],
            vec![],
            true,
        )
        .await;
    h.ack(id).await;
    h.status("w1", all_available).await;
    let agent = h.agent.clone();
    let out = h.stop().await;
    assert_eq!(out.end, SessionEnd::Shutdown);
    // Same process, new stream: the known generation is reported, status is resent.
    let mut h = connect(agent, cluster, store, 2).await;
    let Some(Body::Hello(hello)) = h.agent.hello().body else {
        panic!()
    };
    assert_eq!(hello.known_works[0].generation, 1);
    h.status("w1", all_available).await;
    assert_eq!(h.agent.works().max_epoch(), 2);
    h.stop().await;
}

#[tokio::test]
async fn oversized_work_fails_clearly() {
    let cluster = new_cluster();
    let mut c = cfg();
    c.policy.max_work_bytes = 200;
    let agent = Arc::new(
        Agent::start(
            Arc::new(cluster.clone()),
            Arc::new(MemoryStore::default()),
            "c1",
            c,
            Default::default(),
        )
        .await
        .unwrap(),
    );
    let mut h = connect(agent, cluster, MemoryStore::default(), 1).await;
    let big = cm("big", json!({"k": "x".repeat(300)}));
    let id = h
        .sync(
            vec![
                work("big", "u1", 1, vec![big]),
                work("small", "u2", 1, vec![cm("s", json!({}))]),
            ],
            vec![],
            vec![],
            true,
        )
        .await;
    h.ack(id).await;
    let s = h.status("big", |_| true).await;
    let m = cond(&s.manifests[0].conditions, "Applied");
    assert!(
        m.message
            .starts_with("Failed to apply manifest: work manifests total "),
        "{}",
        m.message
    );
    assert!(
        m.message.ends_with("over the agent limit of 200 bytes"),
        "{}",
        m.message
    );
    h.status("small", all_available).await;
    h.stop().await;
}

/// Found by the simulation (crates/sim): the hub sent a work's delete, the agent (holding
/// nothing) answered gone and the hub released the work; then a new leader whose watch lagged
/// sent that uid's spec again. Applied, its objects would have stayed for ever, recorded for a
/// work the hub no longer has and so never deletes.
#[tokio::test]
async fn a_spec_after_the_delete_of_its_uid_is_not_applied() {
    let mut h = start(new_cluster(), MemoryStore::default(), 1).await;
    let id = h
        .sync(
            vec![deleting(
                "w1",
                "u1",
                2,
                pb::delete_option::Policy::Foreground,
            )],
            vec![],
            vec![],
            true,
        )
        .await;
    h.ack(id).await;
    assert_eq!(h.gone("w1").await.uid, "u1");
    h.send(vec![work("w1", "u1", 2, vec![cm("a", json!({"k": "v"}))])])
        .await;
    assert!(h.store.snapshot().is_empty(), "no record of a deleted uid");
    assert!(h.cluster.object("ConfigMap", "ns", "a").is_none());
    // Another incarnation of the name is a new work and is applied.
    h.send(vec![work("w1", "u2", 1, vec![cm("a", json!({"k": "v"}))])])
        .await;
    assert_eq!(h.store.snapshot()["w1"].uid, "u2");
    h.stop().await;
}
