//! Kubernetes Events, end to end: what `kubectl describe` shows an operator on the hub's
//! ManifestWorks and ManagedClusters, and on the managed cluster for what drbridge deleted.

use std::time::Duration;

use drbridge_integration_tests::bridge::{Bridge, BridgeOptions};
use drbridge_integration_tests::works::*;
use drbridge_integration_tests::{eventually, init_logging};
use k8s_openapi::api::core::v1::Event as CoreEvent;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams};
use serde_json::json;

/// Waits for an Event of `reason` in `namespace` whose object has `uid`.
async fn wait_event(client: &kube::Client, namespace: &str, reason: &str, uid: &str) -> Event {
    let api: Api<Event> = Api::namespaced(client.clone(), namespace);
    eventually(
        &format!("Event {reason} on the object with uid {uid} in {namespace}"),
        WAIT,
        || async {
            let list = api.list(&ListParams::default()).await.ok()?;
            list.items.into_iter().find(|e| {
                e.reason.as_deref() == Some(reason)
                    && e.regarding.as_ref().and_then(|r| r.uid.as_deref()) == Some(uid)
            })
        },
    )
    .await
}

fn uid_of<K: kube::Resource>(o: &K) -> String {
    o.meta().uid.clone().expect("a stored object has a uid")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_story_of_works_and_clusters_is_told_in_events() {
    init_logging();
    let mut opts = BridgeOptions::default();
    opts.hub.presence_timeout = Duration::from_secs(3);
    let mut b = Bridge::start_with(&["dr1"], opts).await;
    let hub = b.hub_client().await;
    let dr1 = b.client("dr1").await;
    create_ns(&dr1, "app").await;

    // A manifest the agent's allowlist refuses: a Warning on the work, naming the manifest.
    let secret = json!({"apiVersion": "v1", "kind": "Secret",
                        "metadata": {"name": "creds", "namespace": "app"}, "data": {}});
    let refused = create_mw(&hub, "dr1", "refused", vec![secret], None).await;
    let e = wait_event(&hub, "dr1", "ManifestRefused", &uid_of(&refused)).await;
    assert_eq!(e.type_.as_deref(), Some("Warning"));
    assert_eq!(e.reporting_controller.as_deref(), Some("drbridge.io/hub"));
    assert_eq!(e.action.as_deref(), Some("Apply"));
    let related = e.related.as_ref().expect("the refused manifest");
    assert_eq!(
        (related.kind.as_deref(), related.name.as_deref()),
        (Some("Secret"), Some("creds"))
    );
    let note = e.note.clone().unwrap_or_default();
    assert!(
        note.contains("not allowed by the agent's allowlist"),
        "{note}"
    );
    assert!(
        get_cm(&dr1, "app", "creds").await.is_none(),
        "nothing was applied"
    );
    // What `kubectl describe manifestwork refused` lists: core/v1 Events of the object's uid.
    let described: Api<CoreEvent> = Api::namespaced(hub.clone(), "dr1");
    let found = described
        .list(&ListParams::default().fields(&format!(
            "involvedObject.uid={},involvedObject.kind=ManifestWork",
            uid_of(&refused)
        )))
        .await
        .unwrap();
    assert!(
        found
            .items
            .iter()
            .any(|e| e.reason.as_deref() == Some("ManifestRefused")),
        "kubectl describe finds it: {:?}",
        found.items.iter().map(|e| &e.reason).collect::<Vec<_>>()
    );

    // A manifest dropped from a newer generation: the agent says on dr1 why it deleted it.
    create_mw(
        &hub,
        "dr1",
        "ok",
        vec![
            configmap("app", "kept", json!({"k": "v"})),
            configmap("app", "dropped", json!({"k": "v"})),
        ],
        None,
    )
    .await;
    wait_applied(&hub, "dr1", "ok").await;
    let dropped = wait_cm(&dr1, "app", "dropped", "created", |_| true).await;
    let kept = wait_cm(&dr1, "app", "kept", "created", |_| true).await;
    update_mw_manifests(
        &hub,
        "dr1",
        "ok",
        vec![configmap("app", "kept", json!({"k": "v"}))],
    )
    .await;
    wait_cm_gone(&dr1, "app", "dropped").await;
    let e = wait_event(&dr1, "app", "DeletedByHub", &uid_of(&dropped)).await;
    assert_eq!(e.reporting_controller.as_deref(), Some("drbridge.io/agent"));
    assert_eq!(e.reporting_instance.as_deref(), Some("dr1"));
    assert_eq!(e.type_.as_deref(), Some("Normal"));
    let note = e.note.clone().unwrap_or_default();
    assert!(
        note.contains("generation 2 of ManifestWork ok no longer names it"),
        "{note}"
    );
    assert!(
        get_cm(&dr1, "app", "kept").await.is_some(),
        "only the dropped one went"
    );

    // The work deleted on the hub: its objects' deletions are told too.
    delete_mw(&hub, "dr1", "ok").await;
    wait_mw_gone(&hub, "dr1", "ok").await;
    let e = wait_event(&dr1, "app", "DeletedByHub", &uid_of(&kept)).await;
    let note = e.note.clone().unwrap_or_default();
    assert!(
        note.contains("ManifestWork ok was deleted on the hub"),
        "{note}"
    );

    // The cluster lost and back, twice: one Event per reason, its series counting repeats.
    let mcs: Api<drbridge_api::cluster::ManagedCluster> = Api::all(hub.clone());
    let mc_uid = uid_of(&mcs.get("dr1").await.unwrap());
    for round in 1..=2 {
        b.stop_agent("dr1").await;
        let lost = eventually("ClusterLost counted", WAIT, || async {
            let e = wait_event(&hub, "default", "ClusterLost", &mc_uid).await;
            let count = e.series.as_ref().map_or(1, |s| s.count);
            (count >= round).then_some(e)
        })
        .await;
        assert_eq!(lost.type_.as_deref(), Some("Warning"));
        assert_eq!(
            lost.regarding.as_ref().and_then(|r| r.kind.as_deref()),
            Some("ManagedCluster")
        );
        b.start_agent("dr1").await;
        b.wait_connected("dr1").await;
        eventually("ClusterAvailable counted", WAIT, || async {
            let e = wait_event(&hub, "default", "ClusterAvailable", &mc_uid).await;
            // The first ClusterAvailable came when the agent first connected.
            (e.series.as_ref().map_or(1, |s| s.count) > round).then_some(())
        })
        .await;
    }
    let events: Api<Event> = Api::namespaced(hub.clone(), "default");
    let lost: Vec<Event> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("ClusterLost"))
        .collect();
    assert_eq!(lost.len(), 1, "repeats aggregate into one Event");
}
