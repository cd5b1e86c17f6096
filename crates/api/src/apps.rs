//! `apps.open-cluster-management.io/v1` PlacementRule (from
//! `open-cluster-management.io/multicloud-operators-subscription` `pkg/apis/apps/placementrule/v1`)
//! and Channel (from `open-cluster-management.io/multicloud-operators-channel` `pkg/apis/apps/v1`).
//!
//! Ramen's hub must be able to watch PlacementRules even when only Placements are used, and
//! writes `status.decisions` of PlacementRule-based DRPCs itself. Channel is only created by
//! Ramen's e2e tests.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// API group.
pub const GROUP: &str = "apps.open-cluster-management.io";
/// API version.
pub const VERSION: &str = "v1";

/// PlacementRule: the older (ACM) way to select clusters.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[kube(
    group = "apps.open-cluster-management.io",
    version = "v1",
    kind = "PlacementRule",
    namespaced,
    status = "PlacementRuleStatus",
    derive = "PartialEq",
    derive = "Default",
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Replicas","type":"integer","jsonPath":".spec.clusterReplicas"}"#,
    doc = "PlacementRule is the Schema for the placementrules API"
)]
#[serde(rename_all = "camelCase")]
pub struct PlacementRuleSpec {
    /// Scheduler name; empty means the default (mcm) scheduler.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub scheduler_name: String,
    /// Number of clusters to select.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_replicas: Option<i32>,
    /// Explicit list of clusters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clusters: Vec<GenericClusterReference>,
    /// Label selector for clusters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::label_selector")]
    pub cluster_selector: Option<LabelSelector>,
    /// Filters on cluster conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cluster_conditions: Vec<ClusterConditionFilter>,
    /// Sort hint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_hint: Option<ResourceHint>,
    /// Policy filters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<ObjectReference>,
}

/// A cluster by name.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GenericClusterReference {
    /// Cluster name.
    pub name: String,
}

/// A filter on a cluster condition.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterConditionFilter {
    /// Condition type.
    #[serde(rename = "type", default, skip_serializing_if = "String::is_empty")]
    pub type_: String,
    /// Condition status.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub status: String,
}

/// How to sort candidate clusters.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceHint {
    /// `cpu` or `memory`.
    #[serde(rename = "type", default, skip_serializing_if = "String::is_empty")]
    pub type_: String,
    /// `asc` or `desc`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub order: String,
}

/// Status of a PlacementRule.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlacementRuleStatus {
    /// Selected clusters. Ramen writes these for PlacementRule-based DRPCs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub decisions: Vec<PlacementRuleDecision>,
}

/// One selected cluster (`PlacementDecision` in Go).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlacementRuleDecision {
    /// Cluster name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cluster_name: String,
    /// Hub namespace of the cluster (same as the name).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cluster_namespace: String,
}

/// Channel: a source of deployables for subscriptions. The Go type has an empty `status`, and
/// the CRD has no status subresource; this type has no status.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[kube(
    group = "apps.open-cluster-management.io",
    version = "v1",
    kind = "Channel",
    namespaced,
    derive = "PartialEq",
    derive = "Default",
    printcolumn = r#"{"name":"Type","type":"string","jsonPath":".spec.type"}"#,
    printcolumn = r#"{"name":"Pathname","type":"string","jsonPath":".spec.pathname"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    doc = "Channel: a source of deployables for subscriptions."
)]
#[serde(rename_all = "camelCase")]
pub struct ChannelSpec {
    /// Channel type; see [`consts::CHANNEL_TYPES`].
    #[serde(rename = "type")]
    #[schemars(extend("enum" = [
        "Namespace", "HelmRepo", "ObjectBucket", "GitHub", "Git",
        "namespace", "helmrepo", "objectbucket", "github", "git"
    ]))]
    pub type_: String,
    /// Location: a namespace, a URL or a bucket.
    pub pathname: String,
    /// Skip TLS verification of the source.
    #[serde(default, skip_serializing_if = "crate::schema::is_false")]
    pub insecure_skip_verify: bool,
    /// Secret with credentials for the source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::object_reference")]
    pub secret_ref: Option<ObjectReference>,
    /// ConfigMap with settings for the source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::object_reference")]
    pub config_map_ref: Option<ObjectReference>,
    /// Gates for promoting deployables into the channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gates: Option<ChannelGate>,
    /// Namespaces whose deployables the channel takes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub source_namespaces: Vec<String>,
}

/// Gates for promoting deployables into a channel.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChannelGate {
    /// Gate name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Deployables must match this selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::label_selector")]
    pub label_selector: Option<LabelSelector>,
    /// Deployables must carry these annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// Names and strings of the apps API.
pub mod consts {
    /// Every accepted `Channel.spec.type`.
    pub const CHANNEL_TYPES: [&str; 10] = [
        "Namespace",
        "HelmRepo",
        "ObjectBucket",
        "GitHub",
        "Git",
        "namespace",
        "helmrepo",
        "objectbucket",
        "github",
        "git",
    ];
    /// `PlacementRuleSpec.schedulerName` of the default scheduler.
    pub const SCHEDULER_NAME_DEFAULT: &str = "default";
    /// `PlacementRuleSpec.schedulerName` of the mcm scheduler.
    pub const SCHEDULER_NAME_MCM: &str = "mcm";
}
