//! ManagedClusterViews and cluster presence end to end, pushed not polled.

use std::time::Instant;

use drbridge_integration_tests::bridge::{Bridge, BridgeOptions};
use drbridge_integration_tests::works::*;
use drbridge_integration_tests::{eventually, init_logging};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, DynamicObject, ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

async fn create_view(hub: &kube::Client, cluster: &str, name: &str, scope: Value) {
    let mcv: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "view.open-cluster-management.io/v1beta1",
        "kind": "ManagedClusterView",
        "metadata": {"name": name, "namespace": cluster, "labels": {"ramendr.openshift.io/created-by-ramen": "true"}},
        "spec": {"scope": scope},
    }))
    .unwrap();
    mcv_api(hub, cluster)
        .create(&PostParams::default(), &mcv)
        .await
        .unwrap();
}

/// Waits for the view's single Processing condition to satisfy `f`.
async fn wait_view<F: Fn(&Value, &DynamicObject) -> bool>(
    hub: &kube::Client,
    cluster: &str,
    name: &str,
    what: &str,
    f: F,
) -> DynamicObject {
    let api = mcv_api(hub, cluster);
    eventually(&format!("view {name}: {what}"), WAIT, || async {
        let v = api.get(name).await.ok()?;
        let conds = v.data["status"]["conditions"].as_array()?.clone();
        assert!(
            conds.len() <= 1,
            "a view has exactly one condition: {conds:?}"
        );
        let c = conds.first()?;
        assert_eq!(c["type"], "Processing");
        f(c, &v).then_some(v)
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn views_follow_the_object() {
    init_logging();
    let b = Bridge::start(&["dr1"]).await;
    let hub = b.hub_client().await;
    let dr1 = b.client("dr1").await;
    create_ns(&dr1, "app").await;
    let cms: Api<ConfigMap> = Api::namespaced(dr1.clone(), "app");
    cms.create(
        &PostParams::default(),
        &ConfigMap {
            metadata: ObjectMeta {
                name: Some("watched".into()),
                ..Default::default()
            },
            data: Some([("v".to_string(), "1".to_string())].into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();

    // An existing object: True / GetResourceProcessing with the whole object.
    create_view(
        &hub,
        "dr1",
        "watched-app-cm-mcv",
        json!({"version": "v1", "kind": "ConfigMap", "name": "watched", "namespace": "app"}),
    )
    .await;
    let v = wait_view(&hub, "dr1", "watched-app-cm-mcv", "found", |c, _| {
        c["status"] == "True"
    })
    .await;
    let c = &v.data["status"]["conditions"][0];
    assert_eq!(c["reason"], "GetResourceProcessing");
    assert_eq!(c["message"], "Watching resources successfully");
    let result = &v.data["status"]["result"];
    assert_eq!(result["apiVersion"], "v1");
    assert_eq!(result["kind"], "ConfigMap");
    assert_eq!(result["metadata"]["name"], "watched");
    assert!(
        result["metadata"]["resourceVersion"].is_string(),
        "full metadata: {result}"
    );
    assert_eq!(result["data"]["v"], "1");

    // A change reaches status.result.
    let started = Instant::now();
    cms.patch(
        "watched",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"v": "2"}})),
    )
    .await
    .unwrap();
    wait_view(&hub, "dr1", "watched-app-cm-mcv", "the change", |_, v| {
        v.data["status"]["result"]["data"]["v"] == "2"
    })
    .await;
    eprintln!("object change -> view result: {:?}", started.elapsed());

    // Deleting the object turns the view into Ramen's not-found.
    cms.delete("watched", &DeleteParams::default())
        .await
        .unwrap();
    let v = wait_view(&hub, "dr1", "watched-app-cm-mcv", "not found", |c, _| {
        c["status"] == "False"
    })
    .await;
    let c = &v.data["status"]["conditions"][0];
    assert_eq!(c["reason"], "GetResourceFailed");
    assert_eq!(
        c["message"],
        r#"failed to get resource with err: configmaps "watched" not found"#
    );
    assert_eq!(
        v.data["status"]["result"]["data"]["v"], "2",
        "result is left as it was"
    );

    // An absent object from the start, of a custom kind: the message Ramen parses.
    create_view(
        &hub,
        "dr1",
        "absent-vrg-mcv",
        json!({"apiGroup": "drbridge.io", "version": "v1alpha1", "kind": "AppliedWork", "name": "busybox-drpc"}),
    )
    .await;
    let v = wait_view(&hub, "dr1", "absent-vrg-mcv", "not found", |c, _| {
        c["status"] == "False"
    })
    .await;
    let c = &v.data["status"]["conditions"][0];
    assert_eq!(c["reason"], "GetResourceFailed");
    assert_eq!(
        c["message"],
        r#"failed to get resource with err: appliedworks.drbridge.io "busybox-drpc" not found"#
    );

    // An unknown kind, as the real controller reports it.
    create_view(&hub, "dr1", "unknown-mcv", json!({"apiGroup": "ramendr.openshift.io", "version": "v1alpha1", "kind": "VolumeReplicationGroup", "name": "x", "namespace": "app"})).await;
    let v = wait_view(&hub, "dr1", "unknown-mcv", "unknown kind", |c, _| {
        c["status"] == "False"
    })
    .await;
    assert_eq!(
        v.data["status"]["conditions"][0]["reason"],
        "ResourceGVKInvalid"
    );

    // Secrets are never returned.
    create_view(
        &hub,
        "dr1",
        "secret-mcv",
        json!({"version": "v1", "kind": "Secret", "name": "x", "namespace": "app"}),
    )
    .await;
    let v = wait_view(&hub, "dr1", "secret-mcv", "refused", |c, _| {
        c["status"] == "False"
    })
    .await;
    let c = &v.data["status"]["conditions"][0];
    assert_eq!(c["reason"], "ResourceTypeInvalid");
    assert!(
        c["message"]
            .as_str()
            .unwrap()
            .contains("viewing secrets is not allowed")
    );
    assert!(v.data["status"]["result"].is_null() || v.data["status"].get("result").is_none());

    // A view deleted and created again for another object follows the new one.
    mcv_api(&hub, "dr1")
        .delete("watched-app-cm-mcv", &DeleteParams::default())
        .await
        .unwrap();
    create_view(
        &hub,
        "dr1",
        "ns-mcv",
        json!({"version": "v1", "kind": "Namespace", "name": "app"}),
    )
    .await;
    let v = wait_view(&hub, "dr1", "ns-mcv", "found", |c, _| c["status"] == "True").await;
    assert_eq!(v.data["status"]["result"]["metadata"]["name"], "app");
}

#[tokio::test(flavor = "multi_thread")]
async fn presence_turns_unknown_within_15s_and_back() {
    init_logging();
    let mut b = Bridge::start(&["dr1", "dr2"]).await;
    let hub = b.hub_client().await;
    let mcs: Api<drbridge_api::cluster::ManagedCluster> = Api::all(hub.clone());
    let mc = mcs.get("dr1").await.unwrap();
    let status = mc.status.unwrap();
    let claims: Vec<_> = status
        .cluster_claims
        .iter()
        .map(|c| (c.name.clone(), c.value.clone()))
        .collect();
    assert!(
        claims
            .iter()
            .any(|(n, v)| n == "id.k8s.io" && !v.is_empty()),
        "id.k8s.io claim: {claims:?}"
    );
    assert!(
        claims.iter().any(|(n, v)| n == "name" && v == "dr1"),
        "name claim: {claims:?}"
    );
    let joined = status
        .conditions
        .iter()
        .find(|c| c.type_ == "ManagedClusterJoined")
        .unwrap();
    assert_eq!(joined.status, "True");
    let dr2_id = mcs
        .get("dr2")
        .await
        .unwrap()
        .status
        .unwrap()
        .cluster_claims
        .into_iter()
        .find(|c| c.name == "id.k8s.io")
        .unwrap()
        .value;
    assert!(
        claims.iter().all(|(n, v)| n != "id.k8s.io" || *v != dr2_id),
        "cluster ids are unique"
    );

    create_ns(&b.client("dr1").await, "app").await;
    create_view(
        &hub,
        "dr1",
        "ns-mcv",
        json!({"version": "v1", "kind": "Namespace", "name": "app"}),
    )
    .await;
    wait_view(&hub, "dr1", "ns-mcv", "found", |c, _| c["status"] == "True").await;

    // The agent dies without a goodbye (its connection simply stops).
    let lost = Instant::now();
    b.crash_agent("dr1").await;
    let available = |s: &'static str| {
        let mcs = mcs.clone();
        move || {
            let mcs = mcs.clone();
            async move {
                let mc = mcs.get("dr1").await.ok()?;
                mc.status?
                    .conditions
                    .into_iter()
                    .find(|c| c.type_ == "ManagedClusterConditionAvailable" && c.status == s)
            }
        }
    };
    // The 15 s presence timeout itself is unit-tested on a paused clock in the
    // hub; here the deadline is that timeout plus the time any single
    // expectation may take (the condition write) on a loaded machine.
    eventually(
        "dr1 Available Unknown",
        BridgeOptions::default().hub.presence_timeout + WAIT,
        available("Unknown"),
    )
    .await;
    eprintln!("agent lost -> Available=Unknown: {:?}", lost.elapsed());

    // The view keeps its last answer (never NotFound) and says since when it is stale.
    let v = mcv_api(&hub, "dr1").get("ns-mcv").await.unwrap();
    assert_eq!(v.data["status"]["conditions"][0]["status"], "True");
    assert!(
        v.metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key("drbridge.io/unreachable-since")),
        "stale data is marked: {:?}",
        v.metadata.annotations
    );
    // dr2 is unaffected.
    let dr2 = mcs.get("dr2").await.unwrap();
    assert!(
        dr2.status
            .unwrap()
            .conditions
            .iter()
            .any(|c| c.type_ == "ManagedClusterConditionAvailable" && c.status == "True")
    );

    b.start_agent("dr1").await;
    eventually("dr1 Available True again", WAIT, available("True")).await;
    eventually("the stale mark is removed", WAIT, || async {
        let v = mcv_api(&hub, "dr1").get("ns-mcv").await.ok()?;
        (!v.metadata
            .annotations
            .unwrap_or_default()
            .contains_key("drbridge.io/unreachable-since"))
        .then_some(())
    })
    .await;
}
