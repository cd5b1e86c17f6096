//! A workload cluster runs a scheduler and the deployment and replicaset
//! controllers: a Deployment gets a ReplicaSet and a pod bound to a node.
//! Other clusters run neither.

use std::time::Duration;

use drbridge_localenv::{Env, eventually};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};

const WAIT: Duration = Duration::from_secs(60);

fn from_json<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).expect("valid object")
}

#[tokio::test(flavor = "multi_thread")]
async fn workload_cluster_schedules_deployment_pods() {
    let env = Env::start_for_test_with(&["hub", "dr1"], |o| {
        o.workload_clusters = vec!["dr1".into()];
    })
    .await
    .expect("environment starts");
    let state = env.state();
    let pids = |c: &str| {
        state
            .clusters
            .iter()
            .find(|s| s.name == c)
            .unwrap()
            .pids
            .clone()
    };
    assert!(pids("dr1").contains_key("kube-scheduler"), "{state:?}");
    assert!(!pids("hub").contains_key("kube-scheduler"), "{state:?}");

    let dr1 = env.client("dr1").await.unwrap();
    // A node without a kubelet, as KWOK makes them: schedulable once the
    // not-ready taint the API server adds on creation is gone.
    let nodes: Api<Node> = Api::all(dr1.clone());
    nodes
        .create(
            &PostParams::default(),
            &from_json(serde_json::json!({
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": "n1"},
            })),
        )
        .await
        .unwrap();
    nodes
        .patch(
            "n1",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"taints": null}})),
        )
        .await
        .unwrap();
    let allocatable = serde_json::json!({"cpu": "4", "memory": "8Gi", "pods": "110"});
    nodes
        .patch_status(
            "n1",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"status": {
                "capacity": allocatable, "allocatable": allocatable,
                "conditions": [{"type": "Ready", "status": "True"}],
            }})),
        )
        .await
        .unwrap();

    let deployments: Api<Deployment> = Api::namespaced(dr1.clone(), "default");
    deployments
        .create(
            &PostParams::default(),
            &from_json(serde_json::json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "busybox"},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": {"app": "busybox"}},
                    "template": {
                        "metadata": {"labels": {"app": "busybox"}},
                        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
                    },
                },
            })),
        )
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(dr1, "default");
    let node = eventually("the deployment's pod bound to n1", WAIT, || async {
        let list = pods
            .list(&ListParams::default().labels("app=busybox"))
            .await
            .ok()?;
        list.items.first()?.spec.as_ref()?.node_name.clone()
    })
    .await;
    assert_eq!(node, "n1");
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_workload_cluster_is_refused() {
    let err = Env::start_for_test_with(&["hub"], |o| {
        o.workload_clusters = vec!["dr9".into()];
    })
    .await
    .expect_err("dr9 is not a cluster of the environment");
    assert!(err.to_string().contains("dr9"), "{err}");
}
