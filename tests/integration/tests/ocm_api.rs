//! The generated OCM CRDs on a real API server keep every field Ramen writes
//! and reads: objects shaped exactly as Ramen's Go client sends them survive a
//! create, an update and a status update unchanged.

use std::time::Duration;

use drbridge_integration_tests::{assert_subset, install_crds, repo_root};
use drbridge_localenv::Env;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, ObjectMeta, PatchParams, PostParams,
};
use kube::discovery::{Discovery, Scope};
use serde_json::Value;

fn fixture(name: &str) -> Value {
    let p = repo_root().join("crates/api/tests/fixtures").join(name);
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

async fn api_for(client: &kube::Client, obj: &Value) -> (Api<DynamicObject>, bool) {
    let api_version = obj["apiVersion"].as_str().unwrap();
    let kind = obj["kind"].as_str().unwrap();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let discovery = Discovery::new(client.clone()).run().await.unwrap();
    let (ar, caps): (ApiResource, _) = discovery
        .resolve_gvk(&gvk)
        .unwrap_or_else(|| panic!("{gvk:?} is served"));
    let api = match (caps.scope, obj["metadata"]["namespace"].as_str()) {
        (Scope::Namespaced, Some(ns)) => Api::namespaced_with(client.clone(), ns, &ar),
        _ => Api::all_with(client.clone(), &ar),
    };
    let has_status = caps.subresources.iter().any(|(s, _)| s.plural == "status");
    (api, has_status)
}

async fn ensure_ns(client: &kube::Client, name: &str) {
    let nss: Api<Namespace> = Api::all(client.clone());
    if nss.get_opt(name).await.unwrap().is_none() {
        nss.create(
            &PostParams::default(),
            &Namespace {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ramen_shaped_objects_round_trip_unpruned() {
    drbridge_integration_tests::init_logging();
    let env = Env::start_for_test(&["hub"]).await.unwrap();
    let hub = env.client("hub").await.unwrap();
    let crds = install_crds(&hub, &repo_root().join("charts/drbridge-hub/crds")).await;
    for needed in [
        "manifestworks.work.open-cluster-management.io",
        "managedclusterviews.view.open-cluster-management.io",
        "managedclusters.cluster.open-cluster-management.io",
        "placements.cluster.open-cluster-management.io",
        "placementdecisions.cluster.open-cluster-management.io",
        "placementrules.apps.open-cluster-management.io",
        "policies.policy.open-cluster-management.io",
        "placementbindings.policy.open-cluster-management.io",
    ] {
        assert!(
            crds.iter().any(|c| c == needed),
            "the hub chart ships {needed}"
        );
    }

    let mut names: Vec<String> = std::fs::read_dir(repo_root().join("crates/api/tests/fixtures"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    assert!(names.len() >= 8, "fixtures: {names:?}");
    for name in names {
        let mut obj = fixture(&name);
        // What the server assigns is not ours to send.
        let meta = obj["metadata"].as_object_mut().unwrap();
        for k in [
            "resourceVersion",
            "uid",
            "generation",
            "managedFields",
            "selfLink",
        ] {
            meta.remove(k);
        }
        if !meta.get("creationTimestamp").is_some_and(Value::is_null) {
            meta.remove("creationTimestamp");
        }
        if let Some(ns) = obj["metadata"]["namespace"].as_str() {
            ensure_ns(&hub, ns).await;
        }
        let (api, has_status) = api_for(&hub, &obj).await;
        let status = obj.as_object_mut().unwrap().remove("status");
        let want = obj.clone();
        let dynamic: DynamicObject = serde_json::from_value(obj.clone()).unwrap();
        let created = api
            .create(&PostParams::default(), &dynamic)
            .await
            .unwrap_or_else(|e| panic!("{name}: create refused: {e}"));
        let got = serde_json::to_value(&created).unwrap();
        assert_subset(&want, &got, &name);

        // A whole-object update, as Ramen's createOrUpdate does, keeps everything too.
        let mut updated = created.clone();
        if let Some(l) = updated.metadata.labels.as_mut() {
            l.insert("drbridge.io/compat-test".into(), "updated".into());
        }
        let replaced = api
            .replace(
                &created.metadata.name.clone().unwrap(),
                &PostParams::default(),
                &updated,
            )
            .await
            .unwrap();
        assert_subset(
            &want["spec"],
            &serde_json::to_value(&replaced).unwrap()["spec"],
            &format!("{name} after update"),
        );

        // Status goes through the status subresource and is kept whole.
        if let Some(status) = status.filter(|s| !s.is_null()) {
            assert!(has_status, "{name}: status subresource");
            let patch = serde_json::json!({ "status": status });
            let patched = api
                .patch_status(
                    &created.metadata.name.clone().unwrap(),
                    &PatchParams::default(),
                    &kube::api::Patch::Merge(&patch),
                )
                .await
                .unwrap_or_else(|e| panic!("{name}: status update refused: {e}"));
            let got = serde_json::to_value(&patched).unwrap();
            assert_subset(&status, &got["status"], &format!("{name}.status"));
            // A spec update afterwards does not touch status.
            let again = api
                .get(&created.metadata.name.clone().unwrap())
                .await
                .unwrap();
            assert_subset(
                &status,
                &serde_json::to_value(&again).unwrap()["status"],
                &format!("{name}.status kept"),
            );
        }
    }
    tokio::time::timeout(Duration::from_secs(30), async { drop(env) })
        .await
        .unwrap();
}
