use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::LocalObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// DRPolicy: the DR relationship of two clusters (`api/v1alpha1/drpolicy_types.go`).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[kube(
    group = "ramendr.openshift.io",
    version = "v1alpha1",
    kind = "DRPolicy",
    plural = "drpolicies",
    status = "DRPolicyStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "DRPolicy is the Schema for the drpolicies API"
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(oldSelf.replicationClassSelector) == has(self.replicationClassSelector)", "message": "replicationClassSelector is immutable"},
    {"rule": "has(oldSelf.volumeSnapshotClassSelector) == has(self.volumeSnapshotClassSelector)", "message": "volumeSnapshotClassSelector is immutable"},
]))]
pub struct DRPolicySpec {
    /// Replication interval, `<n>m`, `<n>h` or `<n>d`: the RPO target. Empty or `0m` means
    /// synchronous (Metro) replication.
    #[schemars(schema_with = "crate::schema::scheduling_interval")]
    pub scheduling_interval: String,
    /// Selects the VolumeReplicationClasses. Go always writes it (`{}` when empty).
    #[serde(default)]
    #[schemars(schema_with = "crate::schema::replication_class_selector")]
    pub replication_class_selector: LabelSelector,
    /// Selects the VolumeSnapshotClasses (VolSync). Go always writes it.
    #[serde(default)]
    #[schemars(schema_with = "crate::schema::volume_snapshot_class_selector")]
    pub volume_snapshot_class_selector: LabelSelector,
    /// Selects the VolumeGroupSnapshotClasses. `omitempty` on a struct: Go still writes it.
    #[serde(default)]
    #[schemars(
        schema_with = "drbridge_api::schema::label_selector",
        skip_serializing_if = "drbridge_api::schema::no_default"
    )]
    pub volume_group_snapshot_class_selector: LabelSelector,
    /// Exactly two DRCluster names.
    #[serde(
        rename = "drClusters",
        deserialize_with = "drbridge_api::schema::null_as_default"
    )]
    #[schemars(schema_with = "crate::schema::dr_clusters")]
    pub dr_clusters: Vec<String>,
    /// ConfigMap with network mappings (IP translation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::local_object_reference")]
    pub network_mapping_ref: Option<LocalObjectReference>,
}

/// Observed state of a DRPolicy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DRPolicyStatus {
    /// `Validated`.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "drbridge_api::schema::null_as_default"
    )]
    #[schemars(schema_with = "drbridge_api::schema::conditions_list")]
    pub conditions: Vec<Condition>,
    /// Asynchronous (Regional DR) peer classes.
    #[serde(default)]
    #[schemars(skip_serializing_if = "drbridge_api::schema::no_default")]
    pub r#async: PeerClasses,
    /// Synchronous (Metro DR) peer classes.
    #[serde(default)]
    #[schemars(skip_serializing_if = "drbridge_api::schema::no_default")]
    pub sync: PeerClasses,
    /// Networks found on both clusters.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "drbridge_api::schema::null_as_default"
    )]
    pub network_peers: Vec<NetworkPeer>,
}

/// `Async` / `Sync`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PeerClasses {
    /// Storage classes with a replication relationship across the two clusters.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "drbridge_api::schema::null_as_default"
    )]
    pub peer_classes: Vec<PeerClass>,
}

/// A storage class common to both clusters, with how it replicates.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PeerClass {
    #[serde(
        rename = "replicationID",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub replication_id: String,
    #[serde(
        rename = "groupreplicationID",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub group_replication_id: String,
    #[serde(rename = "storageID", default, skip_serializing_if = "Vec::is_empty")]
    pub storage_id: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub storage_class_name: String,
    #[serde(rename = "clusterIDs", default, skip_serializing_if = "Vec::is_empty")]
    pub cluster_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "drbridge_api::schema::is_false")]
    pub grouping: bool,
    #[serde(default, skip_serializing_if = "drbridge_api::schema::is_false")]
    pub offloaded: bool,
    #[serde(default, skip_serializing_if = "drbridge_api::schema::is_false")]
    pub global: bool,
}

/// A network attachment found on the clusters.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPeer {
    #[serde(rename = "nadName")]
    pub nad_name: String,
    #[serde(rename = "nadNamespace")]
    pub nad_namespace: String,
    #[serde(
        rename = "clusterCNITypes",
        default,
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub cluster_cni_types: BTreeMap<String, String>,
}
