use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// DRCluster: Ramen's per-cluster DR settings; its name is the managed cluster's name
/// (`api/v1alpha1/drcluster_types.go`).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[kube(
    group = "ramendr.openshift.io",
    version = "v1alpha1",
    kind = "DRCluster",
    status = "DRClusterStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "DRCluster is the Schema for the drclusters API"
)]
#[serde(rename_all = "camelCase")]
pub struct DRClusterSpec {
    /// CIDRs of the cluster's nodes (Metro DR fencing).
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "drbridge_api::schema::null_as_default"
    )]
    pub cidrs: Vec<String>,
    /// Unfenced, Fenced, ManuallyFenced or ManuallyUnfenced (Metro DR).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "cluster_fence")]
    pub cluster_fence: Option<ClusterFenceState>,
    /// Region of the cluster; clusters in one region are Metro peers.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(schema_with = "crate::schema::immutable_string_region")]
    pub region: String,
    /// S3 profile (in the RamenConfig) where the cluster's PV metadata is stored.
    #[serde(rename = "s3ProfileName")]
    #[schemars(schema_with = "crate::schema::immutable_string_s3_profile")]
    pub s3_profile_name: String,
}

/// `DRCluster.spec.clusterFence`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum ClusterFenceState {
    Unfenced,
    Fenced,
    ManuallyFenced,
    ManuallyUnfenced,
}

fn cluster_fence(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "string",
        "enum": ["Unfenced", "Fenced", "ManuallyFenced", "ManuallyUnfenced"],
    })
}

fn mmode_state(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "string",
        "enum": ["Unknown", "Error", "Progressing", "Completed"],
    })
}

/// Observed state of a DRCluster.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DRClusterStatus {
    /// Available, Starting, Fencing, Fenced, Unfencing or Unfenced.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub phase: String,
    /// `Validated`, `Clean`, `Fenced`, `CIDRsValidated`.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "drbridge_api::schema::null_as_default"
    )]
    #[schemars(schema_with = "drbridge_api::schema::conditions_list")]
    pub conditions: Vec<Condition>,
    /// Storage maintenance modes in effect.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "drbridge_api::schema::null_as_default"
    )]
    pub maintenance_modes: Vec<ClusterMaintenanceMode>,
}

/// A storage maintenance mode on the cluster.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterMaintenanceMode {
    pub storage_provisioner: String,
    #[serde(rename = "targetID")]
    pub target_id: String,
    /// Unknown, Error, Progressing or Completed.
    #[schemars(schema_with = "mmode_state")]
    pub state: String,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "drbridge_api::schema::null_as_default"
    )]
    #[schemars(schema_with = "drbridge_api::schema::conditions_list")]
    pub conditions: Vec<Condition>,
}
