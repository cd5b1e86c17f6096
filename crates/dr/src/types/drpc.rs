use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// DRPlacementControl (DRPC): DR protection of one application
/// (`api/v1alpha1/drplacementcontrol_types.go`).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[kube(
    group = "ramendr.openshift.io",
    version = "v1alpha1",
    kind = "DRPlacementControl",
    namespaced,
    status = "DRPlacementControlStatus",
    shortname = "drpc",
    derive = "PartialEq",
    derive = "Default",
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"preferredCluster","type":"string","jsonPath":".spec.preferredCluster"}"#,
    printcolumn = r#"{"name":"failoverCluster","type":"string","jsonPath":".spec.failoverCluster"}"#,
    printcolumn = r#"{"name":"desiredState","type":"string","jsonPath":".spec.action"}"#,
    printcolumn = r#"{"name":"currentState","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"progression","type":"string","jsonPath":".status.progression","priority":2}"#,
    printcolumn = r#"{"name":"start time","type":"string","jsonPath":".status.actionStartTime","priority":2}"#,
    printcolumn = r#"{"name":"duration","type":"string","jsonPath":".status.actionDuration","priority":2}"#,
    printcolumn = r#"{"name":"peer ready","type":"string","jsonPath":".status.conditions[1].status","priority":2}"#,
    doc = "DRPlacementControl is the Schema for the drplacementcontrols API"
)]
#[serde(rename_all = "camelCase")]
pub struct DRPlacementControlSpec {
    /// The Placement (or PlacementRule) of the application.
    #[schemars(schema_with = "crate::schema::placement_ref")]
    pub placement_ref: ObjectReference,
    /// Namespaces protected by the DRPC (discovered applications). When set, the DRPC and its
    /// Placement must be in the RamenConfig's `ramenOpsNamespace`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protected_namespaces: Option<Vec<String>>,
    /// The DRPolicy of the application.
    #[serde(rename = "drPolicyRef")]
    #[schemars(schema_with = "crate::schema::dr_policy_ref")]
    pub dr_policy_ref: ObjectReference,
    /// Where the application should run (initially and after a relocate).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub preferred_cluster: String,
    /// Where a failover should restore the application.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub failover_cluster: String,
    /// Selects the PVCs to protect.
    #[serde(rename = "pvcSelector")]
    #[schemars(schema_with = "crate::schema::pvc_selector")]
    pub pvc_selector: LabelSelector,
    /// Failover or Relocate; none means "deploy to the preferred cluster".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<DRAction>,
    /// A non-destructive test failover.
    #[serde(default, skip_serializing_if = "drbridge_api::schema::is_false")]
    pub dry_run: bool,
    /// Kube object capture and recovery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kube_object_protection: Option<KubeObjectProtectionSpec>,
    /// VolSync settings, kept as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::opaque_object")]
    pub vol_sync_spec: Option<Value>,
    /// Keep SCC annotations on namespaces created on peers.
    #[serde(
        rename = "retainNamespaceSCCAcrossPeers",
        default,
        skip_serializing_if = "drbridge_api::schema::is_false"
    )]
    pub retain_namespace_scc_across_peers: bool,
}

/// `spec.action`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum DRAction {
    /// Restore on `spec.failoverCluster`, accepting data loss since the last sync.
    Failover,
    /// Move to `spec.preferredCluster` after a final sync.
    Relocate,
}

impl DRAction {
    /// The spelling in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            DRAction::Failover => crate::consts::action::FAILOVER,
            DRAction::Relocate => crate::consts::action::RELOCATE,
        }
    }

    /// The phase the DRPC reaches when the action is done.
    pub fn done_phase(self) -> &'static str {
        match self {
            DRAction::Failover => crate::consts::phase::FAILED_OVER,
            DRAction::Relocate => crate::consts::phase::RELOCATED,
        }
    }

    /// The phase while the action runs.
    pub fn running_phase(self) -> &'static str {
        match self {
            DRAction::Failover => crate::consts::phase::FAILING_OVER,
            DRAction::Relocate => crate::consts::phase::RELOCATING,
        }
    }

    /// The action as a noun ("Failover", "Relocation").
    pub fn noun(self) -> &'static str {
        match self {
            DRAction::Failover => "Failover",
            DRAction::Relocate => "Relocation",
        }
    }

    /// Lower-case verb for messages ("failover", "relocate").
    pub fn verb(self) -> &'static str {
        match self {
            DRAction::Failover => "failover",
            DRAction::Relocate => "relocate",
        }
    }
}

impl std::fmt::Display for DRAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Kube object protection (`KubeObjectProtectionSpec`, shared with the VRG).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KubeObjectProtectionSpec {
    /// Time between captures (Go duration, default 5m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::optional_duration")]
    pub capture_interval: Option<String>,
    /// The Recipe for capture, recovery and volume selection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipe_ref: Option<RecipeRef>,
    /// Recipe parameters.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub recipe_parameters: BTreeMap<String, Vec<String>>,
    /// Selects the kube objects to protect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::optional_label_selector")]
    pub kube_object_selector: Option<LabelSelector>,
}

/// A Recipe reference.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecipeRef {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// Observed state of a DRPC.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DRPlacementControlStatus {
    /// High-level state: see [`crate::consts::phase`].
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub phase: String,
    /// The DRPC generation the phase was set for.
    #[serde(default, skip_serializing_if = "drbridge_api::schema::is_zero_i64")]
    pub observed_generation: i64,
    /// When the current action started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action_start_time: Option<Time>,
    /// How long the current action took (Go duration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::duration")]
    pub action_duration: Option<String>,
    /// Current step: see [`crate::consts::progression`].
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub progression: String,
    /// The cluster Ramen last decided on. Go always writes it.
    #[serde(default)]
    #[schemars(skip_serializing_if = "drbridge_api::schema::no_default")]
    pub preferred_decision: PlacementDecision,
    /// Available, PeerReady, Protected.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "drbridge_api::schema::null_as_default"
    )]
    #[schemars(schema_with = "drbridge_api::schema::conditions_list")]
    pub conditions: Vec<Condition>,
    /// The VRG's conditions from the cluster the workload runs on. Go always writes it.
    #[serde(default)]
    #[schemars(skip_serializing_if = "drbridge_api::schema::no_default")]
    pub resource_conditions: VRGConditions,
    /// Last status update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update_time: Option<Time>,
    /// Last successful sync of every PVC: the recovery point of a failover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_group_sync_time: Option<Time>,
    /// Longest sync time of the last sync (Go duration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::duration")]
    pub last_group_sync_duration: Option<String>,
    /// Bytes transferred by the last sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_group_sync_bytes: Option<i64>,
    /// Last kube object capture.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_kube_object_protection_time: Option<Time>,
}

/// `status.preferredDecision`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlacementDecision {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cluster_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cluster_namespace: String,
}

/// `status.resourceConditions`: the VRG's conditions as Ramen last saw them.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VRGConditions {
    /// Which VRG. Go always writes it.
    #[serde(default)]
    #[schemars(skip_serializing_if = "drbridge_api::schema::no_default")]
    pub resource_meta: VRGResourceMeta,
    /// The VRG's conditions.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "drbridge_api::schema::null_as_default"
    )]
    #[schemars(schema_with = "drbridge_api::schema::conditions_list")]
    pub conditions: Vec<Condition>,
}

/// The VRG behind `resourceConditions`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VRGResourceMeta {
    // Go always writes these four (no omitempty) and Ramen's CRD requires them.
    pub kind: String,
    pub name: String,
    pub namespace: String,
    pub generation: i64,
    #[serde(
        rename = "protectedpvcs",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub protected_pvcs: Vec<String>,
    #[serde(rename = "pvcgroups", default, skip_serializing_if = "Vec::is_empty")]
    pub pvc_groups: Vec<Groups>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub resource_version: String,
    #[serde(
        rename = "protectedStaticIPVMs",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    #[schemars(schema_with = "crate::schema::opaque_list")]
    pub protected_static_ip_vms: Vec<Value>,
}

/// A consistency group of PVCs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Groups {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grouped: Vec<String>,
}
