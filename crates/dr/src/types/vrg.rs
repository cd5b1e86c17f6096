use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::drpc::{Groups, KubeObjectProtectionSpec};
use super::drpolicy::PeerClass;

/// VolumeReplicationGroup (VRG): the PVCs of one application on a managed cluster
/// (`api/v1alpha1/volumereplicationgroup_types.go`). The hub sees it through the view
/// `<drpc>-<namespace>-vrg-mcv`. The VolSync and static-IP parts are kept as JSON.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[kube(
    group = "ramendr.openshift.io",
    version = "v1alpha1",
    kind = "VolumeReplicationGroup",
    namespaced,
    status = "VolumeReplicationGroupStatus",
    shortname = "vrg",
    derive = "PartialEq",
    derive = "Default",
    printcolumn = r#"{"name":"desiredState","type":"string","jsonPath":".spec.replicationState"}"#,
    printcolumn = r#"{"name":"currentState","type":"string","jsonPath":".status.state"}"#,
    doc = "VolumeReplicationGroup is the Schema for the volumereplicationgroups API"
)]
#[serde(rename_all = "camelCase")]
pub struct VolumeReplicationGroupSpec {
    /// Selects the PVCs of the group.
    #[serde(rename = "pvcSelector")]
    #[schemars(schema_with = "drbridge_api::schema::label_selector")]
    pub pvc_selector: LabelSelector,
    /// `primary` or `secondary`.
    pub replication_state: String,
    /// S3 profiles the cluster data goes to.
    #[serde(deserialize_with = "drbridge_api::schema::null_as_default")]
    pub s3_profiles: Vec<String>,
    /// Regional DR parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r#async: Option<VRGAsyncSpec>,
    /// Metro DR parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<VRGSyncSpec>,
    /// VolSync settings (always written by Go), kept as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::opaque_object")]
    pub vol_sync: Option<Value>,
    #[serde(default, skip_serializing_if = "drbridge_api::schema::is_false")]
    pub prepare_for_final_sync: bool,
    #[serde(default, skip_serializing_if = "drbridge_api::schema::is_false")]
    pub run_final_sync: bool,
    /// Failover or Relocate.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(schema_with = "vrg_action")]
    pub action: String,
    #[serde(default, skip_serializing_if = "drbridge_api::schema::is_false")]
    pub dry_run: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kube_object_protection: Option<KubeObjectProtectionSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protected_namespaces: Option<Vec<String>>,
    #[serde(
        rename = "staticIPTranslationSpec",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "crate::schema::opaque_object")]
    pub static_ip_translation_spec: Option<Value>,
}

/// `VRGAsyncSpec`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VRGAsyncSpec {
    #[serde(default)]
    #[schemars(
        schema_with = "drbridge_api::schema::label_selector",
        skip_serializing_if = "drbridge_api::schema::no_default"
    )]
    pub replication_class_selector: LabelSelector,
    #[serde(default)]
    #[schemars(
        schema_with = "drbridge_api::schema::label_selector",
        skip_serializing_if = "drbridge_api::schema::no_default"
    )]
    pub volume_snapshot_class_selector: LabelSelector,
    #[serde(default)]
    #[schemars(
        schema_with = "drbridge_api::schema::label_selector",
        skip_serializing_if = "drbridge_api::schema::no_default"
    )]
    pub volume_group_snapshot_class_selector: LabelSelector,
    #[schemars(schema_with = "crate::schema::vrg_scheduling_interval")]
    pub scheduling_interval: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peer_classes: Vec<PeerClass>,
}

/// `VRGSyncSpec`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VRGSyncSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peer_classes: Vec<PeerClass>,
}

/// Observed state of a VRG.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeReplicationGroupStatus {
    /// Primary, Secondary or Unknown.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub state: String,
    /// Every protected PVC.
    #[serde(
        rename = "protectedPVCs",
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "drbridge_api::schema::null_as_default"
    )]
    pub protected_pvcs: Vec<ProtectedPVC>,
    #[serde(rename = "pvcgroups", default, skip_serializing_if = "Vec::is_empty")]
    pub pvc_groups: Vec<Groups>,
    /// VolSync destinations, kept as JSON.
    #[serde(rename = "rdInfo", default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::schema::opaque_list")]
    pub rd_info: Vec<Value>,
    /// DataReady, DataProtected, ClusterDataReady, ClusterDataProtected, ...
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "drbridge_api::schema::null_as_default"
    )]
    #[schemars(schema_with = "drbridge_api::schema::conditions_list")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "drbridge_api::schema::is_zero_i64")]
    pub observed_generation: i64,
    /// Go writes `null` for a zero time.
    #[serde(default)]
    #[schemars(schema_with = "crate::schema::nullable_time")]
    pub last_update_time: Option<Time>,
    /// Go always writes it.
    #[serde(default)]
    #[schemars(skip_serializing_if = "drbridge_api::schema::no_default")]
    pub kube_object_protection: KubeObjectProtectionStatus,
    #[serde(default, skip_serializing_if = "drbridge_api::schema::is_false")]
    pub prepare_for_final_sync_complete: bool,
    #[serde(default, skip_serializing_if = "drbridge_api::schema::is_false")]
    pub final_sync_complete: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_group_sync_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::duration")]
    pub last_group_sync_duration: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_group_sync_bytes: Option<i64>,
    #[serde(
        rename = "staticIPDiscovery",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "crate::schema::opaque_object")]
    pub static_ip_discovery: Option<Value>,
}

/// A protected PVC.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProtectedPVC {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "drbridge_api::schema::is_false")]
    pub protected_by_vol_sync: bool,
    /// `StorageIdentifiers`, inlined.
    #[serde(
        rename = "csiProvisioner",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub csi_provisioner: String,
    #[serde(rename = "storageID", default)]
    #[schemars(skip_serializing_if = "drbridge_api::schema::no_default")]
    pub storage_id: Identifier,
    #[serde(rename = "replicationID", default)]
    #[schemars(skip_serializing_if = "drbridge_api::schema::no_default")]
    pub replication_id: Identifier,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub access_modes: Vec<String>,
    /// Go always writes it.
    #[serde(default)]
    #[schemars(skip_serializing_if = "drbridge_api::schema::no_default")]
    pub resources: ResourceRequirements,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "drbridge_api::schema::null_as_default"
    )]
    #[schemars(schema_with = "drbridge_api::schema::conditions_list")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::duration")]
    pub last_sync_duration: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_bytes: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_mode: Option<String>,
}

/// A storage or replication identifier.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Identifier {
    pub id: String,
    /// Maintenance modes the storage needs (`Failover`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "mmodes")]
    pub modes: Vec<String>,
}

fn vrg_action(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": "string", "enum": ["Failover", "Relocate"]})
}

fn mmodes(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": "array", "items": {"type": "string", "enum": ["Failover"]}})
}

/// `corev1.VolumeResourceRequirements` (quantities as strings).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceRequirements {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "drbridge_api::schema::resource_list")]
    pub limits: BTreeMap<String, Quantity>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "drbridge_api::schema::resource_list")]
    pub requests: BTreeMap<String, Quantity>,
}

/// `KubeObjectProtectionStatus`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KubeObjectProtectionStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture_to_recover_from: Option<KubeObjectsCaptureIdentifier>,
}

/// A kube object capture.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KubeObjectsCaptureIdentifier {
    pub number: i64,
    #[serde(default)]
    #[schemars(schema_with = "crate::schema::nullable_time")]
    pub start_time: Option<Time>,
    #[serde(default)]
    #[schemars(schema_with = "crate::schema::nullable_time")]
    pub end_time: Option<Time>,
    #[serde(default, skip_serializing_if = "drbridge_api::schema::is_zero_i64")]
    pub start_generation: i64,
}
