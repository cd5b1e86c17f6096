use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ManagedNamespaceConfig;

/// ManagedClusterSet: a named set of managed clusters (cluster-scoped).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[kube(
    group = "cluster.open-cluster-management.io",
    version = "v1beta2",
    kind = "ManagedClusterSet",
    status = "ManagedClusterSetStatus",
    shortname = "mclset",
    shortname = "mclsets",
    derive = "PartialEq",
    derive = "Default",
    printcolumn = r#"{"name":"Empty","type":"string","jsonPath":".status.conditions[?(@.type==\"ClusterSetEmpty\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    doc = "ManagedClusterSet: a named set of managed clusters."
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("default" = {"clusterSelector": {"selectorType": "ExclusiveClusterSetLabel"}}))]
pub struct ManagedClusterSetSpec {
    /// How clusters are selected into the set.
    #[serde(default)]
    #[schemars(
        skip_serializing_if = "crate::schema::no_default",
        extend("default" = {"selectorType": "ExclusiveClusterSetLabel"})
    )]
    pub cluster_selector: ManagedClusterSelector,
    /// Namespaces to create on every cluster of the set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub managed_namespaces: Vec<ManagedNamespaceConfig>,
}

/// How clusters are selected into a set.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManagedClusterSelector {
    /// ExclusiveClusterSetLabel (the `cluster.open-cluster-management.io/clusterset` label) or
    /// LabelSelector. The API server defaults it to ExclusiveClusterSetLabel.
    #[schemars(extend("default" = "ExclusiveClusterSetLabel"))]
    pub selector_type: SelectorType,
    /// The selector, for LabelSelector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::label_selector")]
    pub label_selector: Option<LabelSelector>,
}

/// `ManagedClusterSelector.selectorType`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default, JsonSchema)]
pub enum SelectorType {
    /// Clusters labelled `cluster.open-cluster-management.io/clusterset=<set>`.
    #[default]
    ExclusiveClusterSetLabel,
    /// Clusters matching `labelSelector`.
    LabelSelector,
}

/// Status of a cluster set.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManagedClusterSetStatus {
    /// Conditions: ClusterSetEmpty.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::schema::null_as_default"
    )]
    #[schemars(schema_with = "crate::schema::conditions_list")]
    pub conditions: Vec<Condition>,
}

/// ManagedClusterSetBinding: makes a cluster set usable by placements in its namespace.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[kube(
    group = "cluster.open-cluster-management.io",
    version = "v1beta2",
    kind = "ManagedClusterSetBinding",
    namespaced,
    status = "ManagedClusterSetBindingStatus",
    shortname = "mclsetbinding",
    shortname = "mclsetbindings",
    derive = "PartialEq",
    derive = "Default",
    doc = "ManagedClusterSetBinding: makes a cluster set usable by placements in its namespace."
)]
#[serde(rename_all = "camelCase")]
pub struct ManagedClusterSetBindingSpec {
    /// Name of the cluster set; the binding's name must be the same.
    #[serde(default)]
    #[schemars(skip_serializing_if = "crate::schema::no_default", length(min = 1))]
    pub cluster_set: String,
}

/// Status of a cluster set binding.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManagedClusterSetBindingStatus {
    /// Conditions: Bound.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::schema::null_as_default"
    )]
    #[schemars(schema_with = "crate::schema::conditions_list")]
    pub conditions: Vec<Condition>,
}
