//! The agent against a real API server (drbridge-localenv: etcd, kube-apiserver and
//! kube-controller-manager on loopback): Update merge, adoption, dropped manifests,
//! Orphan, Foreground with a finalizer, views, the AppliedWork record and ClusterClaims.
//!
//! One cluster for the whole file (starting one costs seconds on a 2-core machine), one
//! namespace per scenario.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use drbridge_agent::pb;
use drbridge_agent::{Agent, KubeCluster, KubeRecordStore, RecordStore};
use drbridge_api::applied_work::AppliedWork;
use drbridge_model::DeletePolicy;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

type H = Harness<KubeCluster, KubeRecordStore>;

async fn install_crds(client: &kube::Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in drbridge_api::crds::agent() {
        crds.create(&PostParams::default(), &crd).await.unwrap();
    }
    for crd in drbridge_api::crds::agent() {
        let name = crd.metadata.name.clone().unwrap();
        let c = crds.clone();
        eventually(&format!("CRD {name} established"), async || {
            c.get(&name)
                .await
                .ok()
                .and_then(|o| o.status)
                .and_then(|s| s.conditions)
                .is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c.type_ == "Established" && c.status == "True")
                })
        })
        .await;
    }
}

async fn exists_cm(client: &kube::Client, ns: &str, name: &str) -> Option<ConfigMap> {
    Api::<ConfigMap>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_against_a_real_api_server() {
    let env = drbridge_localenv::Env::start_for_test(&["dr1"])
        .await
        .expect("local control plane");
    let client = env.client("dr1").await.unwrap();
    install_crds(&client).await;
    let cluster = KubeCluster::new(client.clone());
    let store = KubeRecordStore::new(client.clone(), "dr1");
    let agent = Arc::new(
        Agent::start(
            Arc::new(cluster.clone()),
            Arc::new(store.clone()),
            "dr1",
            cfg(),
            Default::default(),
        )
        .await
        .unwrap(),
    );
    // Claims: id.k8s.io is the kube-system UID, also written as a spoke ClusterClaim.
    let ks = Api::<Namespace>::all(client.clone())
        .get("kube-system")
        .await
        .unwrap();
    assert_eq!(
        agent.claims()["id.k8s.io"],
        ks.metadata.uid.clone().unwrap()
    );
    let claims: Api<kube::api::DynamicObject> = Api::all_with(
        client.clone(),
        &kube::api::ApiResource::erase::<drbridge_api::cluster::ClusterClaim>(&()),
    );
    assert_eq!(
        claims.get("id.k8s.io").await.unwrap().data["spec"]["value"],
        json!(ks.metadata.uid.unwrap())
    );

    let mut h = connect(agent, cluster, store.clone(), 1).await;
    // The accepted hub epoch is kept in an AppliedWork of its own, which is no work's record.
    let s = store.clone();
    eventually("hub epoch stored", async || {
        s.load_epoch().await.unwrap_or(0) == 1
    })
    .await;
    store.save_epoch(3).await.unwrap();
    assert_eq!(store.load_epoch().await.unwrap(), 3);
    assert!(store.list().await.unwrap().is_empty());
    create_update_and_foreground_delete(&mut h, &client).await;
    adoption_and_dropped_manifest(&mut h, &client).await;
    orphan_keeps_objects(&mut h, &client).await;
    views(&mut h, &client).await;
    h.stop().await;
}

async fn create_update_and_foreground_delete(h: &mut H, client: &kube::Client) {
    let ns = b(
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "app1", "creationTimestamp": null}, "spec": {}, "status": {}}),
    );
    let cm1 = b(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "cfg", "namespace": "app1", "labels": {"a": "1"}, "annotations": {"x": "1"}, "uid": "from-the-hub"},
        "data": {"k": "v"}}));
    // Manifest order puts the ConfigMap first; the Namespace must still be created first.
    let id = h
        .sync(
            vec![work("w1", "u1", 1, vec![cm1, ns.clone()])],
            vec![],
            vec![],
            true,
        )
        .await;
    h.ack(id).await;
    let s = h.status("w1", all_available).await;
    assert_eq!(cond(&s.conditions, "Applied").status, "True", "{s:?}");
    let live = exists_cm(client, "app1", "cfg").await.expect("created");
    let uid = live.metadata.uid.clone().unwrap();

    // The durable record, as an AppliedWork.
    let rec = Api::<AppliedWork>::all(client.clone())
        .get("dr1.w1")
        .await
        .unwrap();
    assert_eq!(rec.spec.work_uid, "u1");
    assert_eq!(rec.spec.applied_resources.len(), 2);
    assert!(rec.spec.applied_resources.iter().any(|r| r.uid == uid));

    // Someone else adds a label, an annotation and a finalizer.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "app1");
    cms.patch(
        "cfg",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"other": "keep"}, "annotations": {"ext": "1"}, "finalizers": ["example.com/hold"]}})),
    )
    .await
    .unwrap();
    // Generation 2 changes a label and the data, and no longer sends annotation x.
    let cm2 = b(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "cfg", "namespace": "app1", "labels": {"a": "2"}}, "data": {"k": "v2"}}));
    let id = h
        .sync(
            vec![work("w1", "u1", 2, vec![cm2, ns])],
            vec![],
            vec![],
            false,
        )
        .await;
    h.ack(id).await;
    h.status("w1", |s| s.generation == 2 && all_available(s))
        .await;
    let live = exists_cm(client, "app1", "cfg").await.unwrap();
    assert_eq!(
        live.metadata.uid.as_deref(),
        Some(uid.as_str()),
        "updated in place"
    );
    assert_eq!(live.data.unwrap()["k"], "v2");
    let labels = live.metadata.labels.unwrap();
    assert_eq!(
        (labels["a"].as_str(), labels["other"].as_str()),
        ("2", "keep")
    );
    let ann = live.metadata.annotations.unwrap();
    assert_eq!(
        (ann["x"].as_str(), ann["ext"].as_str()),
        ("1", "1"),
        "annotations merged, none removed"
    );
    assert_eq!(
        live.metadata.finalizers.unwrap(),
        vec!["example.com/hold".to_string()]
    );

    // Foreground: the ConfigMap's finalizer holds the deletion, and so WorkGone.
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
            false,
        )
        .await;
    h.ack(id).await;
    let c = client.clone();
    eventually("ConfigMap terminating", async || {
        exists_cm(&c, "app1", "cfg")
            .await
            .is_some_and(|o| o.metadata.deletion_timestamp.is_some())
    })
    .await;
    let early = h
        .next_within(Duration::from_millis(1500), |b| {
            matches!(b, pb::agent_message::Body::WorkGone(g) if g.name == "w1").then_some(())
        })
        .await;
    assert!(
        early.is_none(),
        "WorkGone while a finalizer still holds an object"
    );
    cms.patch(
        "cfg",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    let g = h.gone("w1").await;
    assert_eq!(g.uid, "u1");
    assert!(exists_cm(client, "app1", "cfg").await.is_none());
    assert!(
        Api::<Namespace>::all(client.clone())
            .get_opt("app1")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        Api::<AppliedWork>::all(client.clone())
            .get_opt("dr1.w1")
            .await
            .unwrap()
            .is_none()
    );
}

async fn adoption_and_dropped_manifest(h: &mut H, client: &kube::Client) {
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "app2"}})).unwrap(),
    )
    .await
    .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "app2");
    let pre = cms
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "adopt", "labels": {"mine": "yes"}}, "data": {"old": "1"}})).unwrap(),
        )
        .await
        .unwrap();
    let id = h
        .sync(
            vec![work(
                "w2",
                "u2",
                1,
                vec![
                    cm_in("app2", "adopt", json!({"new": "1"})),
                    cm_in("app2", "extra", json!({})),
                ],
            )],
            vec![],
            vec![],
            false,
        )
        .await;
    h.ack(id).await;
    h.status("w2", all_available).await;
    let live = exists_cm(client, "app2", "adopt").await.unwrap();
    assert_eq!(
        live.metadata.uid, pre.metadata.uid,
        "adopted in place, not re-created"
    );
    assert_eq!(live.data.clone().unwrap().get("old"), None, "data replaced");
    assert_eq!(live.metadata.labels.unwrap()["mine"], "yes");

    // Generation 2 drops "extra": it is deleted; "adopt" stays.
    let id = h
        .sync(
            vec![work(
                "w2",
                "u2",
                2,
                vec![cm_in("app2", "adopt", json!({"new": "1"}))],
            )],
            vec![],
            vec![],
            false,
        )
        .await;
    h.ack(id).await;
    h.status("w2", |s| s.generation == 2).await;
    let c = client.clone();
    eventually("dropped ConfigMap deleted", async || {
        exists_cm(&c, "app2", "extra").await.is_none()
    })
    .await;
    assert!(exists_cm(client, "app2", "adopt").await.is_some());
    let rec = h
        .store
        .list()
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.name == "w2")
        .unwrap();
    assert_eq!(rec.resources.len(), 1);
}

async fn orphan_keeps_objects(h: &mut H, client: &kube::Client) {
    let ns = b(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "app3"}}));
    let mut w = work(
        "w3",
        "u3",
        1,
        vec![ns, cm_in("app3", "o", json!({"k": "v"}))],
    );
    w.delete_option = Some(pb::DeleteOption {
        propagation_policy: pb::delete_option::Policy::Orphan as i32,
        orphaning_rules: vec![],
    });
    let id = h.sync(vec![w], vec![], vec![], false).await;
    h.ack(id).await;
    h.status("w3", all_available).await;
    let rec = h
        .store
        .list()
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.name == "w3")
        .unwrap();
    assert_eq!(rec.delete_policy, DeletePolicy::Orphan);
    let id = h
        .sync(
            vec![deleting("w3", "u3", 1, pb::delete_option::Policy::Orphan)],
            vec![],
            vec![],
            false,
        )
        .await;
    h.ack(id).await;
    h.gone("w3").await;
    assert!(
        exists_cm(client, "app3", "o").await.is_some(),
        "orphaned ConfigMap kept"
    );
    assert!(
        Api::<Namespace>::all(client.clone())
            .get_opt("app3")
            .await
            .unwrap()
            .is_some(),
        "orphaned Namespace kept"
    );
}

async fn views(h: &mut H, client: &kube::Client) {
    let cases = [
        view("found", 1, "", "v1", "ConfigMap", "app3", "o"),
        view("cm-missing", 1, "", "v1", "ConfigMap", "app3", "nope"),
        view("ns-missing", 1, "", "v1", "Namespace", "", "x"),
        view("unknown", 1, "example.com", "v1", "Foo", "", "x"),
        view("unknown-kind", 1, "apps", "v1", "Foo", "", "x"),
        view("secret", 1, "", "v1", "Secret", "app3", "s"),
    ];
    h.sync(vec![], cases.to_vec(), vec![], false).await;
    let s = h.view("found", |s| view_object(s).is_some()).await;
    let obj = view_object(&s).unwrap();
    assert_eq!(
        (obj["apiVersion"].as_str(), obj["kind"].as_str()),
        (Some("v1"), Some("ConfigMap"))
    );
    assert_eq!(obj["data"]["k"], "v");
    assert!(
        obj["metadata"]["resourceVersion"].is_string()
            && obj["metadata"]["managedFields"].is_array()
    );
    let expect = [
        (
            "cm-missing",
            "GetResourceFailed",
            "failed to get resource with err: configmaps \"nope\" not found",
        ),
        (
            "ns-missing",
            "GetResourceFailed",
            "failed to get resource with err: namespaces \"x\" not found",
        ),
        (
            "unknown",
            "ResourceGVKInvalid",
            "failed to get resource with err: no matches for kind \"Foo\" in version \"example.com/v1\"",
        ),
        (
            "unknown-kind",
            "ResourceGVKInvalid",
            "failed to get resource with err: no matches for kind \"Foo\" in version \"apps/v1\"",
        ),
        (
            "secret",
            "ResourceTypeInvalid",
            "viewing secrets is not allowed",
        ),
    ];
    for (name, reason, message) in expect {
        let s = h.view(name, |s| view_error(s).is_some()).await;
        assert_eq!(
            view_error(&s).unwrap(),
            (reason.to_string(), message.to_string()),
            "{name}"
        );
    }
    // A change to the object is pushed.
    Api::<ConfigMap>::namespaced(client.clone(), "app3")
        .patch(
            "o",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"k": "changed"}})),
        )
        .await
        .unwrap();
    h.view("found", |s| {
        view_object(s).is_some_and(|o| o["data"]["k"] == "changed")
    })
    .await;
    // Created later: the not-found view turns into the object.
    Api::<ConfigMap>::namespaced(client.clone(), "app3")
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "nope"}})).unwrap(),
        )
        .await
        .unwrap();
    h.view("cm-missing", |s| view_object(s).is_some()).await;
}
