//! Objects as Ramen's Go client (and OCM's Go agents) write them must read into our types and
//! serialize back to the same JSON: nothing lost, nothing added.

use drbridge_api::apps::PlacementRule;
use drbridge_api::cluster::{ManagedCluster, Placement, PlacementDecision, consts::claim};
use drbridge_api::policy::{PlacementBinding, Policy};
use drbridge_api::raw::EmbeddedObject;
use drbridge_api::view::{ManagedClusterView, ViewScope, ViewSpec, ViewStatus};
use drbridge_api::work::{
    DeleteOption, DeletePropagationPolicyType, ManifestWork, ManifestWorkSpec, ManifestWorkStatus,
    ManifestsTemplate, UpdateStrategyType,
};
use kube::api::ObjectMeta;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Go's `metav1.ObjectMeta` writes `creationTimestamp: null` for an unset time; k8s-openapi's
/// leaves it out. The API server stores neither, so this one difference is expected at the top
/// level. Inside embedded objects (manifests, view results) nothing may change.
fn without_top_level_null_creation_timestamp(mut v: Value) -> Value {
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut)
        && meta.get("creationTimestamp") == Some(&Value::Null)
    {
        meta.remove("creationTimestamp");
    }
    v
}

/// Deserializes the fixture, serializes it back and checks the JSON is unchanged.
fn roundtrip<T: DeserializeOwned + Serialize>(name: &str) -> T {
    let original = fixture(name);
    let typed: T =
        serde_json::from_value(original.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
    let back = serde_json::to_value(&typed).unwrap();
    let expected = without_top_level_null_creation_timestamp(original);
    assert_eq!(
        back,
        expected,
        "{name} changed in a round trip:\n got: {}\nwant: {}",
        serde_json::to_string_pretty(&back).unwrap(),
        serde_json::to_string_pretty(&expected).unwrap()
    );
    typed
}

#[test]
fn vrg_manifestwork_as_ramen_writes_it() {
    let mw: ManifestWork = roundtrip("vrg-manifestwork.json");
    assert!(mw.spec.delete_option.is_none());
    let vrg = &mw.spec.workload.manifests[0];
    assert_eq!(vrg.kind(), "VolumeReplicationGroup");
    assert_eq!(vrg.name(), "busybox-drpc");
    assert_eq!(vrg.namespace(), "busybox-sample");
    // Kept byte-for-byte, including what Go's json.Marshal of the typed VRG adds.
    assert_eq!(vrg.0["metadata"]["creationTimestamp"], Value::Null);
    assert_eq!(
        vrg.0["status"],
        serde_json::json!({"lastUpdateTime": null, "kubeObjectProtection": {}})
    );
    assert_eq!(mw.status, Some(ManifestWorkStatus::default()));
}

#[test]
fn namespace_manifestwork_with_orphan_delete_option() {
    let mw: ManifestWork = roundtrip("ns-manifestwork.json");
    assert_eq!(
        mw.spec.delete_option,
        Some(DeleteOption {
            propagation_policy: DeletePropagationPolicyType::Orphan,
            ..Default::default()
        })
    );
    // Ramen's merge patch for old namespace works parses as a DeleteOption too.
    let patch: DeleteOption = serde_json::from_str(r#"{"propagationPolicy":"Orphan"}"#).unwrap();
    assert_eq!(
        patch.propagation_policy,
        DeletePropagationPolicyType::Orphan
    );
}

#[test]
fn manifestwork_built_in_rust_serializes_like_go() {
    // What Ramen's newManifestWork + json.Marshal produce for the namespace work.
    let fixture = without_top_level_null_creation_timestamp(fixture("ns-manifestwork.json"));
    let manifest =
        EmbeddedObject::from_value(fixture["spec"]["workload"]["manifests"][0].clone()).unwrap();
    let meta: ObjectMeta = serde_json::from_value(fixture["metadata"].clone()).unwrap();
    let mut mw = ManifestWork::new(
        "busybox-drpc-busybox-sample-ns-mw",
        ManifestWorkSpec {
            workload: ManifestsTemplate {
                manifests: vec![manifest],
            },
            delete_option: Some(DeleteOption {
                propagation_policy: DeletePropagationPolicyType::Orphan,
                ..Default::default()
            }),
            ..Default::default()
        },
    );
    mw.metadata = meta;
    mw.status = Some(ManifestWorkStatus::default());
    assert_eq!(serde_json::to_value(&mw).unwrap(), fixture);
}

#[test]
fn manifestwork_with_agent_status() {
    let mw: ManifestWork = roundtrip("manifestwork-with-status.json");
    let status = mw.status.unwrap();
    assert_eq!(status.conditions.len(), 2);
    let manifest = &status.resource_status.manifests[0];
    assert_eq!(manifest.resource_meta.resource, "drclusterconfigs");
    assert_eq!(
        manifest.status_feedbacks.values[0].value.string.as_deref(),
        Some("Ready")
    );
    let strategy = mw.spec.manifest_configs[0]
        .update_strategy
        .as_ref()
        .unwrap();
    assert_eq!(strategy.type_, UpdateStrategyType::ServerSideApply);
}

#[test]
fn vrg_view_as_ramen_writes_it() {
    let mcv: ManagedClusterView = roundtrip("vrg-view.json");
    assert_eq!(
        mcv.spec,
        ViewSpec {
            scope: ViewScope {
                group: "ramendr.openshift.io".into(),
                version: "v1alpha1".into(),
                kind: "VolumeReplicationGroup".into(),
                name: "busybox-drpc".into(),
                namespace: "busybox-sample".into(),
                ..Default::default()
            }
        }
    );
    // No `resource`, no `updateIntervalSeconds`: Go leaves empty values out, and so do we.
    let scope = serde_json::to_value(&mcv.spec.scope).unwrap();
    assert!(scope.get("resource").is_none());
    assert!(scope.get("updateIntervalSeconds").is_none());
    // Go writes `result: null` for an empty RawExtension, and so do we.
    assert_eq!(mcv.status, Some(ViewStatus::default()));
    assert_eq!(
        serde_json::to_value(ViewStatus::default()).unwrap(),
        serde_json::json!({"result": null})
    );
}

#[test]
fn namespace_view_with_result() {
    let mcv: ManagedClusterView = roundtrip("ns-view-with-status.json");
    assert!(mcv.spec.scope.group.is_empty());
    let status = mcv.status.unwrap();
    assert_eq!(status.conditions[0].type_, "Processing");
    let result = status.result.unwrap();
    assert_eq!(result.kind(), "Namespace");
    let ns: k8s_openapi::api::core::v1::Namespace = result.to_typed().unwrap();
    assert_eq!(ns.metadata.name.as_deref(), Some("busybox-sample"));
}

#[test]
fn managed_cluster_with_claims() {
    let mc: ManagedCluster = roundtrip("managedcluster.json");
    let status = mc.status.unwrap();
    let id = status
        .cluster_claims
        .iter()
        .find(|c| c.name == claim::ID)
        .unwrap();
    assert_eq!(id.value, "0b5e9c1a-8d3f-4e2b-a7c6-5d4e3f2a1b0c");
    assert!(mc.spec.taints[0].time_added.is_none());
}

#[test]
fn go_nulls_read_as_empty() {
    // Go writes `null` for nil slices without omitempty; such objects must still parse.
    let mc: ManagedCluster = serde_json::from_value(serde_json::json!({
        "apiVersion": "cluster.open-cluster-management.io/v1",
        "kind": "ManagedCluster",
        "metadata": {"name": "dr1"},
        "spec": {"hubAcceptsClient": false},
        "status": {"conditions": null, "version": {}}
    }))
    .unwrap();
    assert!(mc.status.unwrap().conditions.is_empty());
}

#[test]
fn placement_and_decision() {
    let _: Placement = roundtrip("placement.json");
    let pd: PlacementDecision = roundtrip("placementdecision.json");
    let decisions = &pd.status.unwrap().decisions;
    assert_eq!(decisions[1].reason, "RetainedForFailover");
}

#[test]
fn placement_rule() {
    let plr: PlacementRule = roundtrip("placementrule.json");
    assert_eq!(plr.status.unwrap().decisions[0].cluster_namespace, "dr1");
}

#[test]
fn policy_and_binding() {
    let policy: Policy = roundtrip("policy.json");
    assert_eq!(policy.spec.policy_templates.len(), 1);
    let pb: PlacementBinding = roundtrip("placementbinding.json");
    assert_eq!(pb.spec.placement_ref.kind, "PlacementRule");
    assert_eq!(pb.spec.subjects[0].name, "busybox-drpc-vs-secret");
}

#[test]
fn applied_work_shape() {
    use drbridge_api::applied_work::{AppliedResource, AppliedWork, AppliedWorkSpec};
    let name = AppliedWork::name_for("dr1", "busybox-drpc-busybox-sample-ns-mw");
    let aw = AppliedWork::new(
        &name,
        AppliedWorkSpec {
            cluster: "dr1".into(),
            work_namespace: "dr1".into(),
            work_name: "busybox-drpc-busybox-sample-ns-mw".into(),
            work_uid: "u1".into(),
            generation: 1,
            hub_epoch: 3,
            delete_option: Some(DeleteOption {
                propagation_policy: DeletePropagationPolicyType::Orphan,
                ..Default::default()
            }),
            applied_resources: vec![AppliedResource {
                version: "v1".into(),
                kind: "Namespace".into(),
                resource: "namespaces".into(),
                name: "busybox-sample".into(),
                uid: "abc".into(),
                ..Default::default()
            }],
        },
    );
    assert_eq!(
        serde_json::to_value(&aw).unwrap(),
        serde_json::json!({
            "apiVersion": "drbridge.io/v1alpha1",
            "kind": "AppliedWork",
            "metadata": {"name": "dr1.busybox-drpc-busybox-sample-ns-mw"},
            "spec": {
                "cluster": "dr1",
                "workNamespace": "dr1",
                "workName": "busybox-drpc-busybox-sample-ns-mw",
                "workUid": "u1",
                "generation": 1,
                "hubEpoch": 3,
                "deleteOption": {"propagationPolicy": "Orphan"},
                "appliedResources": [{
                    "version": "v1", "kind": "Namespace", "resource": "namespaces",
                    "name": "busybox-sample", "uid": "abc", "ordinal": 0
                }]
            }
        })
    );
}
