//! `policy.open-cluster-management.io/v1` Policy and PlacementBinding, as in
//! `open-cluster-management.io/governance-policy-propagator` `api/v1` (the version Ramen's
//! go.mod replaces it with).
//!
//! Ramen creates these to distribute S3 and VolSync secrets, and deletes them when a DRPC is
//! deleted, so the CRDs must be served even when no policy engine runs.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::raw::PreservedObject;

/// API group.
pub const GROUP: &str = "policy.open-cluster-management.io";
/// API version.
pub const VERSION: &str = "v1";

/// Policy: templates of policies to propagate to managed clusters.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[kube(
    group = "policy.open-cluster-management.io",
    version = "v1",
    kind = "Policy",
    plural = "policies",
    namespaced,
    status = "PolicyStatus",
    shortname = "plc",
    derive = "PartialEq",
    derive = "Default",
    printcolumn = r#"{"name":"Remediation action","type":"string","jsonPath":".spec.remediationAction"}"#,
    printcolumn = r#"{"name":"Compliance state","type":"string","jsonPath":".status.compliant"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    doc = "Policy: templates of policies to propagate to managed clusters."
)]
#[serde(rename_all = "camelCase")]
pub struct PolicySpec {
    /// The policy is disabled.
    pub disabled: bool,
    /// Copy the policy's labels and annotations to the replicated policies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy_policy_metadata: Option<bool>,
    /// Inform or Enforce (either case); overrides the templates' own setting.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(extend("enum" = ["Inform", "inform", "Enforce", "enforce"]))]
    pub remediation_action: String,
    /// The policy templates.
    #[serde(
        rename = "policy-templates",
        deserialize_with = "crate::schema::null_as_default"
    )]
    pub policy_templates: Vec<PolicyTemplate>,
    /// Policies that must be in a given state before this one applies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dependencies: Vec<PolicyDependency>,
    /// Options for hub templates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hub_template_options: Option<HubTemplateOptions>,
}

/// One policy template.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyTemplate {
    /// The policy object (for example a ConfigurationPolicy), kept as raw JSON.
    pub object_definition: PreservedObject,
    /// Extra dependencies of this template.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_dependencies: Vec<PolicyDependency>,
    /// Ignore the Pending state of this template when computing compliance.
    #[serde(default, skip_serializing_if = "crate::schema::is_false")]
    pub ignore_pending: bool,
}

/// A dependency on another policy's compliance.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyDependency {
    /// API version of the dependency.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    /// Kind of the dependency.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// Name of the dependency.
    pub name: String,
    /// Namespace of the dependency.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Required compliance state.
    pub compliance: ComplianceState,
}

/// A compliance state.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default, JsonSchema)]
pub enum ComplianceState {
    /// Compliant.
    #[default]
    Compliant,
    /// Waiting for a dependency.
    Pending,
    /// Not compliant.
    NonCompliant,
}

/// Options for hub templates.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HubTemplateOptions {
    /// Service account used to resolve hub templates.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service_account_name: String,
}

/// Status of a policy (Ramen never reads it).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyStatus {
    /// Where the policy is placed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub placement: Vec<PolicyPlacement>,
    /// Compliance per cluster.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub status: Vec<CompliancePerClusterStatus>,
    /// Overall compliance.
    #[serde(rename = "compliant", default, skip_serializing_if = "Option::is_none")]
    pub compliance_state: Option<ComplianceState>,
    /// Compliance per template.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<DetailsPerTemplate>,
}

/// A placement of a policy (`Placement` in Go).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyPlacement {
    /// PlacementBinding name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub placement_binding: String,
    /// PlacementRule name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub placement_rule: String,
    /// Placement name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub placement: String,
    /// Decisions of the placement.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub decisions: Vec<PolicyPlacementDecision>,
    /// PolicySet name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub policy_set: String,
}

/// A decision of a policy placement (`PlacementDecision` in Go).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyPlacementDecision {
    /// Cluster name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cluster_name: String,
    /// Cluster namespace.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cluster_namespace: String,
}

/// Compliance on one cluster.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
pub struct CompliancePerClusterStatus {
    /// Compliance state.
    #[serde(rename = "compliant", default, skip_serializing_if = "Option::is_none")]
    pub compliance_state: Option<ComplianceState>,
    /// Cluster name.
    #[serde(
        rename = "clustername",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub cluster_name: String,
    /// Cluster namespace.
    #[serde(
        rename = "clusternamespace",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub cluster_namespace: String,
}

/// Compliance of one template.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DetailsPerTemplate {
    /// Metadata of the template object.
    #[serde(default)]
    #[schemars(skip_serializing_if = "crate::schema::no_default")]
    pub template_meta: PreservedObject,
    /// Compliance state.
    #[serde(rename = "compliant", default, skip_serializing_if = "Option::is_none")]
    pub compliance_state: Option<ComplianceState>,
    /// History of compliance events.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<ComplianceHistory>,
}

/// One compliance event.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComplianceHistory {
    /// Time of the event. Go writes `null` when unset, and so do we.
    #[serde(default)]
    pub last_timestamp: Option<Time>,
    /// Message of the event.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Name of the event.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub event_name: String,
}

/// PlacementBinding: binds policies to a placement. Its fields sit at the top level (no
/// `spec`); the Go type has an empty `status`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[kube(
    group = "policy.open-cluster-management.io",
    version = "v1",
    kind = "PlacementBinding",
    namespaced,
    no_spec,
    status = "PlacementBindingStatus",
    shortname = "pb",
    derive = "PartialEq",
    derive = "Default",
    doc = "PlacementBinding: binds policies to a placement."
)]
#[serde(rename_all = "camelCase")]
pub struct PlacementBindingSpec {
    /// The placement.
    pub placement_ref: PlacementSubject,
    /// The bound policies (at least one).
    #[serde(deserialize_with = "crate::schema::null_as_default")]
    #[schemars(length(min = 1))]
    pub subjects: Vec<Subject>,
    /// Overrides for the bound policies.
    #[serde(default)]
    #[schemars(skip_serializing_if = "crate::schema::no_default")]
    pub binding_overrides: BindingOverrides,
    /// `restricted` limits the binding to the subjects' own policy sets.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(extend("enum" = ["restricted"]))]
    pub sub_filter: String,
}

/// The placement of a binding.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlacementSubject {
    /// `apps.open-cluster-management.io` or `cluster.open-cluster-management.io`.
    #[schemars(
        length(min = 1),
        extend("enum" = ["apps.open-cluster-management.io", "cluster.open-cluster-management.io"])
    )]
    pub api_group: String,
    /// PlacementRule or Placement.
    #[schemars(length(min = 1), extend("enum" = ["PlacementRule", "Placement"]))]
    pub kind: String,
    /// Name.
    #[schemars(length(min = 1))]
    pub name: String,
}

/// A bound policy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Subject {
    /// `policy.open-cluster-management.io`.
    #[schemars(length(min = 1), extend("enum" = ["policy.open-cluster-management.io"]))]
    pub api_group: String,
    /// Policy or PolicySet.
    #[schemars(length(min = 1), extend("enum" = ["Policy", "PolicySet"]))]
    pub kind: String,
    /// Name.
    #[schemars(length(min = 1))]
    pub name: String,
}

/// Overrides for bound policies.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BindingOverrides {
    /// Enforce (either case) overrides the policies' remediation action.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(extend("enum" = ["Enforce", "enforce"]))]
    pub remediation_action: String,
}

/// Status of a binding (always empty).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, Default, JsonSchema)]
pub struct PlacementBindingStatus {}

/// Names and strings of the policy API.
pub mod consts {
    /// Annotation Ramen sets on its secret-distribution Policies to force a re-propagation.
    pub const TRIGGER_UPDATE_ANNOTATION: &str = "policy.open-cluster-management.io/trigger-update";
    /// `remediationAction` Enforce.
    pub const REMEDIATION_ENFORCE: &str = "Enforce";
    /// `remediationAction` Inform.
    pub const REMEDIATION_INFORM: &str = "Inform";
}
