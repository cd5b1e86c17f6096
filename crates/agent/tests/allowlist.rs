//! What a compromised hub can make an agent with the default allowlist do: write only what
//! Ramen's works write, never delete a protected namespace, view only what Ramen views.

mod common;

use common::*;
use drbridge_agent::pb;
use drbridge_agent::testing::FakeCluster;
use drbridge_agent::{MemoryStore, WorkConfig};
use drbridge_model::Allowlist;
use serde_json::json;

type H = Harness<FakeCluster, MemoryStore>;

fn ramen_cfg() -> WorkConfig {
    let mut c = cfg();
    c.policy.allowlist = Allowlist::default();
    c
}

async fn start(cluster: &FakeCluster, store: &MemoryStore, c: WorkConfig) -> H {
    start_agent(cluster, store, c, 1).await
}

const VRG_ROLE: &str = "open-cluster-management:klusterlet-work-sa:agent:volrepgroup-edit";

fn role(name: &str, labels: serde_json::Value) -> Vec<u8> {
    b(
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": name, "labels": labels},
        "rules": [{"apiGroups": ["ramendr.openshift.io"], "resources": ["volumereplicationgroups"], "verbs": ["get"]}]}),
    )
}

fn namespace(name: &str, labels: serde_json::Value) -> Vec<u8> {
    b(
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}),
    )
}

/// Issue 17, item 8.
#[tokio::test]
async fn default_allowlist_writes_only_what_ramen_sends() {
    let (cluster, store) = (fake_cluster(), MemoryStore::default());
    let mut h = start(&cluster, &store, ramen_cfg()).await;
    // Ramen's DR-cluster bundle (the part the fake cluster serves).
    let bundle = work(
        "ramen-dr-cluster",
        "u1",
        1,
        vec![
            namespace("ramen-system", json!({})),
            role(
                VRG_ROLE,
                json!({"open-cluster-management.io/aggregate-to-work": "true",
                       "ramendr.openshift.io/created-by-ramen": "true"}),
            ),
            cm_in(
                "ramen-system",
                "ramen-dr-cluster-operator-config",
                json!({}),
            ),
        ],
    );
    h.send(vec![bundle]).await;
    h.status("ramen-dr-cluster", all_available).await;

    // What Ramen never sends.
    let bad = work(
        "bad",
        "u2",
        1,
        vec![
            cm_in("app", "x", json!({})),
            cm_in("kube-system", "ramen-dr-cluster-operator-config", json!({})),
            namespace(
                "app",
                json!({"pod-security.kubernetes.io/enforce": "privileged"}),
            ),
            role(
                "open-cluster-management:klusterlet-work-sa:agent:mmode-edit",
                json!({"rbac.authorization.k8s.io/aggregate-to-view": "true"}),
            ),
            role("cluster-admin", json!({})),
            b(
                json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": "open-cluster-management:klusterlet-work-sa:agent:recipe-edit"},
                "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"x": "y"}}]}}),
            ),
        ],
    );
    h.send(vec![bad]).await;
    let s = h
        .status("bad", |s| {
            s.manifests.len() == 6
                && s.manifests.iter().all(|m| {
                    m.conditions
                        .iter()
                        .any(|c| c.r#type == "Applied" && c.status == "False")
                })
        })
        .await;
    for (i, m) in s.manifests.iter().enumerate() {
        let msg = &cond(&m.conditions, "Applied").message;
        assert!(msg.contains("allowlist"), "manifest {i}: {msg}");
    }
    assert!(cluster.object("ConfigMap", "app", "x").is_none());
    assert!(cluster.object("Namespace", "", "app").is_none());
    assert!(cluster.object("ClusterRole", "", "cluster-admin").is_none());

    // Deleting the bundle (Foreground) deletes what it owns, but not the protected namespace.
    h.delete_work(
        "ramen-dr-cluster",
        "u1",
        1,
        pb::delete_option::Policy::Foreground,
    )
    .await;
    assert!(cluster.object("ClusterRole", "", VRG_ROLE).is_none());
    assert!(
        cluster
            .object(
                "ConfigMap",
                "ramen-system",
                "ramen-dr-cluster-operator-config"
            )
            .is_none()
    );
    assert!(
        cluster.object("Namespace", "", "ramen-system").is_some(),
        "a protected namespace is never deleted"
    );
    assert_eq!(cluster.deletes("Namespace"), 0);
    h.stop().await;
}

/// Issue 17, item 9: views are limited to what Ramen views, outside denied namespaces.
#[tokio::test]
async fn default_views_read_only_what_ramen_views() {
    let (cluster, store) = (fake_cluster(), MemoryStore::default());
    cluster.add_kind(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        false,
    );
    for (kind, ns, name) in [
        ("VolumeReplicationGroup", "app", "app"),
        ("ConfigMap", "app", "cm"),
        ("Namespace", "", "app"),
        ("Namespace", "", "kube-system"),
        ("ClusterRole", "", "admin"),
        (
            "CustomResourceDefinition",
            "",
            "volumegroupsnapshots.groupsnapshot.storage.k8s.io",
        ),
        ("CustomResourceDefinition", "", "secrets.example.com"),
    ] {
        let r = cluster.kind(kind);
        let mut md = json!({"name": name});
        if !ns.is_empty() {
            md["namespace"] = json!(ns);
        }
        cluster.put(
            kind,
            json!({"apiVersion": r.api_version(), "kind": kind, "metadata": md}),
        );
    }
    let mut h = start(&cluster, &store, ramen_cfg()).await;
    let ok = [
        view(
            "vrg",
            1,
            "ramendr.openshift.io",
            "v1alpha1",
            "VolumeReplicationGroup",
            "app",
            "app",
        ),
        view("ns", 1, "", "v1", "Namespace", "", "app"),
        view(
            "crd",
            1,
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            "",
            "volumegroupsnapshots.groupsnapshot.storage.k8s.io",
        ),
    ];
    let refused = [
        view("cm", 1, "", "v1", "ConfigMap", "app", "cm"),
        view("kube-system", 1, "", "v1", "Namespace", "", "kube-system"),
        view(
            "role",
            1,
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRole",
            "",
            "admin",
        ),
        view(
            "other-crd",
            1,
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            "",
            "secrets.example.com",
        ),
    ];
    h.sync(
        vec![],
        ok.iter().chain(&refused).cloned().collect(),
        vec![],
        true,
    )
    .await;
    for v in &ok {
        h.view(&v.name, |s| view_object(s).is_some()).await;
    }
    for v in &refused {
        let s = h.view(&v.name, |s| view_error(s).is_some()).await;
        let (reason, message) = view_error(&s).unwrap();
        assert_eq!(reason, "ResourceTypeInvalid", "{}", v.name);
        assert!(
            message.contains("not allowed by the agent's view allowlist"),
            "{}: {message}",
            v.name
        );
        // Ramen must not read a refusal as "absent".
        assert!(!message.ends_with("not found"), "{message}");
    }
    h.stop().await;
}
