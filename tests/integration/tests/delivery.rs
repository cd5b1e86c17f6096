//! ManifestWork delivery end to end: real hub and agents over real mTLS,
//! real control planes for the hub and two managed clusters.

use std::time::Duration;

use drbridge_integration_tests::bridge::Bridge;
use drbridge_integration_tests::works::*;
use drbridge_integration_tests::{eventually, init_logging};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn create_update_delete_and_merge_semantics() {
    init_logging();
    let b = Bridge::start(&["dr1", "dr2"]).await;
    let hub = b.hub_client().await;
    let dr1 = b.client("dr1").await;
    let dr2 = b.client("dr2").await;
    create_ns(&dr1, "app").await;

    // Create: the ConfigMap appears on dr1 only, the work reports Applied and Available.
    let cm = |data| {
        let mut m = configmap("app", "settings", data);
        m["metadata"]["labels"] = json!({"from-work": "v1"});
        m["metadata"]["annotations"] = json!({"a": "1"});
        m
    };
    create_mw(&hub, "dr1", "w1", vec![cm(json!({"k": "v1"}))], None).await;
    let mw = wait_applied(&hub, "dr1", "w1").await;
    assert!(
        mw.metadata
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == "cluster.open-cluster-management.io/manifest-work-cleanup"),
        "the hub holds the cleanup finalizer"
    );
    let manifests = &mw.data["status"]["resourceStatus"]["manifests"];
    assert_eq!(manifests[0]["resourceMeta"]["kind"], "ConfigMap");
    assert_eq!(manifests[0]["resourceMeta"]["ordinal"], 0);
    let applied = condition_in(&manifests[0], "Applied");
    assert_eq!(
        (applied["status"].as_str(), applied["reason"].as_str()),
        (Some("True"), Some("AppliedManifestComplete"))
    );
    let first = wait_cm(&dr1, "app", "settings", "created", |c| {
        c.data
            .as_ref()
            .and_then(|d| d.get("k"))
            .is_some_and(|v| v == "v1")
    })
    .await;
    assert!(
        get_cm(&dr2, "app", "settings").await.is_none(),
        "dr2 gets nothing of dr1's work"
    );

    // Someone on dr1 adds a label and a finalizer; an update of the work merges
    // labels and annotations, replaces data, keeps the finalizer, and adopts in place.
    let cms: Api<ConfigMap> = Api::namespaced(dr1.clone(), "app");
    cms.patch(
        "settings",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"local": "kept"}, "finalizers": ["test.drbridge.io/hold"]}})),
    )
    .await
    .unwrap();
    let mut v2 = cm(json!({"k": "v2"}));
    v2["metadata"]["labels"] = json!({"from-work": "v2"});
    v2["metadata"]["annotations"] = json!({"b": "2"});
    update_mw_manifests(&hub, "dr1", "w1", vec![v2]).await;
    let updated = wait_cm(&dr1, "app", "settings", "updated", |c| {
        c.data
            .as_ref()
            .and_then(|d| d.get("k"))
            .is_some_and(|v| v == "v2")
    })
    .await;
    let labels = updated.metadata.labels.clone().unwrap();
    assert_eq!(labels.get("from-work").map(String::as_str), Some("v2"));
    assert_eq!(
        labels.get("local").map(String::as_str),
        Some("kept"),
        "labels are merged, not replaced"
    );
    let ann = updated.metadata.annotations.clone().unwrap();
    assert_eq!(
        (
            ann.get("a").map(String::as_str),
            ann.get("b").map(String::as_str)
        ),
        (Some("1"), Some("2")),
        "annotations are merged"
    );
    assert_eq!(
        updated.metadata.finalizers.as_deref(),
        Some(&["test.drbridge.io/hold".to_string()][..]),
        "finalizers kept"
    );
    assert_eq!(updated.metadata.uid, first.metadata.uid, "updated in place");
    let mw = wait_applied(&hub, "dr1", "w1").await;
    assert_eq!(mw.metadata.generation, Some(2));

    // Foreground delete (the default) waits for the object's own finalizer.
    delete_mw(&hub, "dr1", "w1").await;
    let api = mw_api(&hub, "dr1");
    eventually("the object is being deleted on dr1", WAIT, || async {
        get_cm(&dr1, "app", "settings")
            .await
            .filter(|c| c.metadata.deletion_timestamp.is_some())
    })
    .await;
    let held = api
        .get("w1")
        .await
        .expect("the work lingers while its object has a finalizer");
    assert!(held.metadata.deletion_timestamp.is_some());
    cms.patch(
        "settings",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    wait_cm_gone(&dr1, "app", "settings").await;
    wait_mw_gone(&hub, "dr1", "w1").await;
}

fn condition_in<'a>(manifest: &'a serde_json::Value, t: &str) -> &'a serde_json::Value {
    manifest["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == t)
        .unwrap_or_else(|| panic!("condition {t} in {manifest}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn orphan_dropped_manifest_and_adoption() {
    init_logging();
    let b = Bridge::start(&["dr1"]).await;
    let hub = b.hub_client().await;
    let dr1 = b.client("dr1").await;

    // An object that exists before any work names it is adopted in place.
    create_ns(&dr1, "keep").await;
    let cms: Api<ConfigMap> = Api::namespaced(dr1.clone(), "keep");
    let pre = cms
        .create(
            &PostParams::default(),
            &ConfigMap {
                metadata: ObjectMeta {
                    name: Some("pre".into()),
                    labels: Some([("mine".to_string(), "yes".to_string())].into()),
                    ..Default::default()
                },
                data: Some([("old".to_string(), "x".to_string())].into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();

    // Namespace works use Orphan, as Ramen's do.
    create_mw(
        &hub,
        "dr1",
        "ns-mw",
        vec![
            namespace("keep"),
            configmap("keep", "pre", json!({"new": "y"})),
            configmap("keep", "orphan-drop", json!({})),
        ],
        Some(json!({"propagationPolicy": "Orphan"})),
    )
    .await;
    wait_applied(&hub, "dr1", "ns-mw").await;
    let adopted = wait_cm(&dr1, "keep", "pre", "adopted", |c| {
        c.data.as_ref().is_some_and(|d| d.contains_key("new"))
    })
    .await;
    assert_eq!(
        adopted.metadata.uid, pre.metadata.uid,
        "adopted in place, not recreated"
    );
    assert_eq!(adopted.data.unwrap().get("old"), None, "data replaced");
    assert_eq!(
        adopted
            .metadata
            .labels
            .unwrap()
            .get("mine")
            .map(String::as_str),
        Some("yes")
    );

    // A manifest dropped from a Foreground work is deleted on the cluster ...
    create_mw(
        &hub,
        "dr1",
        "fg",
        vec![
            configmap("keep", "a", json!({})),
            configmap("keep", "dropme", json!({})),
        ],
        None,
    )
    .await;
    wait_cm(&dr1, "keep", "dropme", "created", |_| true).await;
    update_mw_manifests(&hub, "dr1", "fg", vec![configmap("keep", "a", json!({}))]).await;
    wait_cm_gone(&dr1, "keep", "dropme").await;
    wait_applied(&hub, "dr1", "fg").await;
    assert!(get_cm(&dr1, "keep", "a").await.is_some());

    // ... and one dropped from an Orphan work is left alone, as OCM does (its
    // objects carry no owner).
    update_mw_manifests(
        &hub,
        "dr1",
        "ns-mw",
        vec![
            namespace("keep"),
            configmap("keep", "pre", json!({"new": "y"})),
        ],
    )
    .await;
    let mw = wait_applied(&hub, "dr1", "ns-mw").await;
    assert_eq!(mw.metadata.generation, Some(2));
    assert!(
        get_cm(&dr1, "keep", "orphan-drop").await.is_some(),
        "Orphan keeps a dropped manifest's object"
    );

    // Orphan: deleting the work leaves the namespace and its objects alone.
    delete_mw(&hub, "dr1", "ns-mw").await;
    wait_mw_gone(&hub, "dr1", "ns-mw").await;
    let still = get_cm(&dr1, "keep", "pre")
        .await
        .expect("orphaned object kept");
    assert!(still.metadata.deletion_timestamp.is_none());
    let ns = Api::<k8s_openapi::api::core::v1::Namespace>::all(dr1.clone())
        .get("keep")
        .await
        .unwrap();
    assert!(
        ns.metadata.deletion_timestamp.is_none(),
        "orphaned namespace kept"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn restarts_lose_nothing_and_repeat_nothing() {
    init_logging();
    let mut b = Bridge::start(&["dr1", "dr2"]).await;
    let hub = b.hub_client().await;
    let dr1 = b.client("dr1").await;
    create_ns(&dr1, "r").await;
    for i in 0..5 {
        create_mw(
            &hub,
            "dr1",
            &format!("w{i}"),
            vec![configmap(
                "r",
                &format!("c{i}"),
                json!({"i": i.to_string()}),
            )],
            None,
        )
        .await;
    }
    for i in 0..5 {
        wait_applied(&hub, "dr1", &format!("w{i}")).await;
    }
    let before: Vec<_> = futures_rv(&dr1, 5).await;

    // The agent dies mid-stream; works change while it is away.
    b.crash_agent("dr1").await;
    for i in 5..8 {
        create_mw(
            &hub,
            "dr1",
            &format!("w{i}"),
            vec![configmap(
                "r",
                &format!("c{i}"),
                json!({"i": i.to_string()}),
            )],
            None,
        )
        .await;
    }
    update_mw_manifests(
        &hub,
        "dr1",
        "w0",
        vec![configmap("r", "c0", json!({"i": "changed"}))],
    )
    .await;
    // The hub dies too, and comes back with a newer epoch.
    b.crash_hub().await;
    b.start_hub().await;
    b.start_agent("dr1").await;
    b.wait_connected("dr1").await;
    for i in 0..8 {
        wait_applied(&hub, "dr1", &format!("w{i}")).await;
    }
    wait_cm(&dr1, "r", "c0", "changed", |c| {
        c.data
            .as_ref()
            .and_then(|d| d.get("i"))
            .is_some_and(|v| v == "changed")
    })
    .await;
    let after: Vec<_> = futures_rv(&dr1, 5).await;
    // c0 changed once; c1..c4 were neither recreated nor rewritten.
    assert_eq!(before[0].0, after[0].0, "c0 updated in place");
    for i in 1..5 {
        assert_eq!(
            before[i], after[i],
            "c{i}: no repeated effect after restarts"
        );
    }
}

async fn futures_rv(dr1: &kube::Client, n: usize) -> Vec<(Option<String>, Option<String>)> {
    let mut v = Vec::new();
    for i in 0..n {
        let c = get_cm(dr1, "r", &format!("c{i}")).await.unwrap();
        v.push((c.metadata.uid, c.metadata.resource_version));
    }
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn work_deleted_while_agent_away_is_deleted_on_reconnect_and_not_before() {
    init_logging();
    let mut b = Bridge::start(&["dr1"]).await;
    let hub = b.hub_client().await;
    let dr1 = b.client("dr1").await;
    create_ns(&dr1, "away").await;
    create_mw(
        &hub,
        "dr1",
        "w",
        vec![configmap("away", "c", json!({}))],
        None,
    )
    .await;
    wait_applied(&hub, "dr1", "w").await;

    b.stop_agent("dr1").await;
    delete_mw(&hub, "dr1", "w").await;
    // The hub has seen the delete (the finalizer holds the work) ...
    let api = mw_api(&hub, "dr1");
    eventually("deletion pending", WAIT, || async {
        api.get("w")
            .await
            .ok()
            .filter(|m| m.metadata.deletion_timestamp.is_some())
    })
    .await;
    // ... and while the agent is away nothing is deleted. The agent comes back
    // with its durable record only after this check.
    assert!(
        get_cm(&dr1, "away", "c").await.is_some(),
        "nothing deleted while the agent is away"
    );
    assert!(
        api.get_opt("w").await.unwrap().is_some(),
        "the work waits for the agent"
    );

    b.start_agent("dr1").await;
    wait_cm_gone(&dr1, "away", "c").await;
    wait_mw_gone(&hub, "dr1", "w").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_a_condition_and_others_carry_on() {
    init_logging();
    let b = Bridge::start(&["dr1"]).await;
    let hub = b.hub_client().await;
    let dr1 = b.client("dr1").await;
    create_ns(&dr1, "bad").await;

    // A kind outside the agent's allowlist.
    create_mw(&hub, "dr1", "secret", vec![json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "bad"}, "data": {}})], None).await;
    // A kind the cluster does not serve.
    create_mw(&hub, "dr1", "unknown", vec![json!({"apiVersion": "example.com/v1", "kind": "Nope", "metadata": {"name": "n", "namespace": "bad"}})], None).await;
    // A manifest with no name.
    create_mw(
        &hub,
        "dr1",
        "noname",
        vec![json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"namespace": "bad"}})],
        None,
    )
    .await;
    // A large work (two ConfigMaps of 700 KiB each) is delivered.
    let big = "x".repeat(700 * 1024);
    create_mw(
        &hub,
        "dr1",
        "big",
        vec![
            configmap("bad", "big1", json!({"d": big})),
            configmap("bad", "big2", json!({"d": big})),
        ],
        None,
    )
    .await;
    // And a good one beside them.
    create_mw(
        &hub,
        "dr1",
        "good",
        vec![configmap("bad", "fine", json!({}))],
        None,
    )
    .await;

    wait_applied(&hub, "dr1", "good").await;
    wait_applied(&hub, "dr1", "big").await;
    wait_cm(&dr1, "bad", "big2", "large object applied", |_| true).await;
    let api = mw_api(&hub, "dr1");
    for (name, needle) in [
        ("secret", "allowlist"),
        ("unknown", "Nope"),
        ("noname", "name"),
    ] {
        let mw = eventually(&format!("{name}: Applied=False"), WAIT, || async {
            let mw = api.get(name).await.ok()?;
            condition(&mw, "Applied").filter(|c| c["status"] == "False")?;
            Some(mw)
        })
        .await;
        let msgs = mw.data["status"]["resourceStatus"]["manifests"][0]["conditions"].to_string();
        assert!(
            msgs.contains(needle),
            "{name}: the manifest condition explains ({needle}): {msgs}"
        );
    }
    assert!(
        Api::<k8s_openapi::api::core::v1::Secret>::namespaced(dr1.clone(), "bad")
            .get_opt("s")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_certificate_reaches_only_its_own_works() {
    use drbridge_proto::v1 as pb;
    init_logging();
    let b = Bridge::start(&["dr1", "dr2"]).await;
    let hub = b.hub_client().await;
    create_mw(
        &hub,
        "dr2",
        "secret-plans",
        vec![configmap("default", "p", json!({}))],
        None,
    )
    .await;
    let dr2_mw = wait_applied(&hub, "dr2", "secret-plans").await;
    create_mw(
        &hub,
        "dr1",
        "mine",
        vec![configmap("default", "m", json!({}))],
        None,
    )
    .await;
    wait_applied(&hub, "dr1", "mine").await;

    // A client holding dr1's certificate opens its own stream (the real dr1
    // agent steps aside, or the two would take turns replacing each other).
    let mut b = b;
    b.stop_agent("dr1").await;
    let endpoint = b.hub_endpoint();
    let channel = drbridge_tls::connect_channel(
        &endpoint,
        "localhost",
        &b.pki.agent("dr1").unwrap(),
        Default::default(),
    )
    .await
    .unwrap();
    let mut client = pb::dispatch_client::DispatchClient::new(channel);

    // Reading: a fresh stream from dr1's certificate is welcomed as dr1 and
    // carries only dr1's works.
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tx.send(pb::AgentMessage {
        body: Some(pb::agent_message::Body::Hello(pb::Hello::default())),
    })
    .await
    .unwrap();
    let mut stream = client
        .connect(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let mut seen = Vec::new();
    let mut cluster = None;
    let deadline = tokio::time::Instant::now() + WAIT;
    while let Ok(Some(msg)) = tokio::time::timeout_at(deadline, stream.message())
        .await
        .map(|r| r.unwrap())
    {
        match msg.body {
            Some(pb::hub_message::Body::Welcome(w)) => cluster = Some(w.cluster),
            Some(pb::hub_message::Body::Sync(s)) => {
                seen.extend(s.works.iter().map(|w| w.name.clone()));
                if s.initial_sync_done {
                    break;
                }
            }
            _ => {}
        }
    }
    assert_eq!(cluster.as_deref(), Some("dr1"));
    assert!(
        seen.contains(&"mine".to_string()),
        "dr1's work is sent: {seen:?}"
    );
    assert!(
        !seen.contains(&"secret-plans".to_string()),
        "dr2's work is never sent to dr1"
    );

    // Writing: a status for dr2's work sent on dr1's stream changes nothing.
    tx.send(applied_status(
        "secret-plans",
        dr2_mw.metadata.uid.clone().unwrap(),
        "False",
        "Forged",
    ))
    .await
    .unwrap();
    // A marker status for dr1's own work proves the forged one was processed first.
    let mine = mw_api(&hub, "dr1").get("mine").await.unwrap();
    tx.send(applied_status(
        "mine",
        mine.metadata.uid.clone().unwrap(),
        "True",
        "Marker",
    ))
    .await
    .unwrap();
    let api1 = mw_api(&hub, "dr1");
    eventually("the marker status", WAIT, || async {
        let m = api1.get("mine").await.ok()?;
        condition(&m, "Applied")
            .filter(|c| c["reason"] == "Marker")
            .map(|_| ())
    })
    .await;
    let dr2_now = mw_api(&hub, "dr2").get("secret-plans").await.unwrap();
    assert_eq!(
        condition(&dr2_now, "Applied").unwrap()["status"],
        "True",
        "dr1 cannot write dr2's status"
    );

    // A certificate from another CA is refused at the handshake; an unregistered
    // cluster's certificate is refused by the hub.
    let other = drbridge_tls::pki::Ca::generate("intruder").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let name = drbridge_tls::ClusterName::new("dr1").unwrap();
    other
        .issue_client(&name, Duration::from_secs(3600))
        .unwrap()
        .write(dir.path(), "x")
        .unwrap();
    let paths = drbridge_tls::TlsPaths::new(
        dir.path().join("x.crt"),
        dir.path().join("x.key"),
        b.pki.ca_cert(),
    );
    let refused =
        match drbridge_tls::connect_channel(&endpoint, "localhost", &paths, Default::default())
            .await
        {
            Err(_) => true,
            Ok(ch) => {
                let mut c = pb::dispatch_client::DispatchClient::new(ch);
                let (_tx, rx) = tokio::sync::mpsc::channel::<pb::AgentMessage>(1);
                c.connect(tokio_stream::wrappers::ReceiverStream::new(rx))
                    .await
                    .is_err()
            }
        };
    assert!(refused, "a certificate from another CA is refused");
    let stranger = b.pki.agent("dr9").unwrap();
    let ch = drbridge_tls::connect_channel(&endpoint, "localhost", &stranger, Default::default())
        .await
        .unwrap();
    let mut c = pb::dispatch_client::DispatchClient::new(ch);
    let (tx9, rx9) = tokio::sync::mpsc::channel(1);
    tx9.send(pb::AgentMessage {
        body: Some(pb::agent_message::Body::Hello(pb::Hello::default())),
    })
    .await
    .unwrap();
    let err = match c
        .connect(tokio_stream::wrappers::ReceiverStream::new(rx9))
        .await
    {
        Err(s) => s,
        Ok(r) => r.into_inner().message().await.unwrap_err(),
    };
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err}");
}

/// A WorkStatus report with one Applied condition, as an agent would send it.
fn applied_status(
    name: &str,
    uid: String,
    status: &str,
    reason: &str,
) -> drbridge_proto::v1::AgentMessage {
    use drbridge_proto::v1 as pb;
    pb::AgentMessage {
        body: Some(pb::agent_message::Body::WorkStatus(pb::WorkStatus {
            name: name.into(),
            uid,
            generation: 1,
            conditions: vec![pb::Condition {
                r#type: "Applied".into(),
                status: status.into(),
                reason: reason.into(),
                message: format!("{reason} report"),
                observed_generation: 1,
                last_transition_time: String::new(),
            }],
            manifests: vec![],
            observed_time: String::new(),
        })),
    }
}
