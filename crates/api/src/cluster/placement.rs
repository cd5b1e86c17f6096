use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    Condition, LabelSelector, LabelSelectorRequirement,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::CustomResource;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

use super::TaintEffect;

/// Placement: selects managed clusters. Ramen disables OCM's scheduler on the Placements it
/// manages (annotation [`super::consts::PLACEMENT_DISABLE_ANNOTATION`]) and writes the
/// [`PlacementDecision`] itself.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[kube(
    group = "cluster.open-cluster-management.io",
    version = "v1beta1",
    kind = "Placement",
    namespaced,
    status = "PlacementStatus",
    derive = "PartialEq",
    derive = "Default",
    printcolumn = r#"{"name":"Succeeded","type":"string","jsonPath":".status.conditions[?(@.type==\"PlacementSatisfied\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"PlacementSatisfied\")].reason"}"#,
    printcolumn = r#"{"name":"SelectedClusters","type":"integer","jsonPath":".status.numberOfSelectedClusters"}"#,
    doc = "Placement: selects managed clusters."
)]
#[serde(rename_all = "camelCase")]
pub struct PlacementSpec {
    /// Cluster sets to select from (bound to the Placement's namespace).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cluster_sets: Vec<String>,
    /// How many clusters to select; unset means all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number_of_clusters: Option<i32>,
    /// Cluster predicates (ORed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub predicates: Vec<ClusterPredicate>,
    /// How clusters are scored.
    #[serde(default)]
    #[schemars(skip_serializing_if = "crate::schema::no_default")]
    pub prioritizer_policy: PrioritizerPolicy,
    /// How decisions are spread over topologies.
    #[serde(default)]
    #[schemars(skip_serializing_if = "crate::schema::no_default")]
    pub spread_policy: SpreadPolicy,
    /// Taints to tolerate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// How decisions are split into groups.
    #[serde(default)]
    #[schemars(skip_serializing_if = "crate::schema::no_default")]
    pub decision_strategy: DecisionStrategy,
}

/// A cluster predicate.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterPredicate {
    /// Clusters must match this selector.
    #[serde(default)]
    #[schemars(skip_serializing_if = "crate::schema::no_default")]
    pub required_cluster_selector: ClusterSelector,
}

/// Selects clusters by labels, claims and CEL expressions (ANDed).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSelector {
    /// Label selector.
    #[serde(default)]
    #[schemars(
        schema_with = "crate::schema::label_selector",
        skip_serializing_if = "crate::schema::no_default"
    )]
    pub label_selector: LabelSelector,
    /// Claim selector.
    #[serde(default)]
    #[schemars(skip_serializing_if = "crate::schema::no_default")]
    pub claim_selector: ClusterClaimSelector,
    /// CEL selector.
    #[serde(default)]
    #[schemars(skip_serializing_if = "crate::schema::no_default")]
    pub cel_selector: ClusterCelSelector,
}

/// Selects clusters by CEL expressions.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterCelSelector {
    /// CEL expressions (ANDed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cel_expressions: Vec<String>,
}

/// Selects clusters by claims.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterClaimSelector {
    /// Requirements on claims (ANDed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::schema::selector_requirements")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

/// How clusters are scored.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrioritizerPolicy {
    /// Additive or Exact. The API server defaults it to Additive.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(extend("default" = "Additive"))]
    pub mode: String,
    /// Prioritizers and their weights.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub configurations: Vec<PrioritizerConfig>,
}

/// One prioritizer.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrioritizerConfig {
    /// The score to use.
    pub score_coordinate: ScoreCoordinate,
    /// Weight, -10 to 10. The API server defaults it to 1 (Go omits 0, so 0 also becomes 1).
    #[serde(default, skip_serializing_if = "crate::schema::is_zero_i32")]
    #[schemars(extend("default" = 1), range(min = -10, max = 10))]
    pub weight: i32,
}

/// Where a score comes from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScoreCoordinate {
    /// BuiltIn or AddOn. The API server defaults it to BuiltIn.
    #[serde(rename = "type")]
    #[schemars(extend("default" = "BuiltIn"))]
    pub type_: ScoreCoordinateType,
    /// Name of a built-in prioritizer.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub built_in: String,
    /// An AddOnPlacementScore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add_on: Option<AddOnScore>,
}

/// `ScoreCoordinate.type`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default, JsonSchema)]
pub enum ScoreCoordinateType {
    /// A built-in prioritizer.
    #[default]
    BuiltIn,
    /// A score from an AddOnPlacementScore.
    AddOn,
}

/// A score from an AddOnPlacementScore.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AddOnScore {
    /// Name of the AddOnPlacementScore.
    pub resource_name: String,
    /// Name of the score in it.
    pub score_name: String,
}

/// How decisions are spread.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SpreadPolicy {
    /// Spread constraints, at most 8.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub spread_constraints: Vec<SpreadConstraintsTerm>,
}

/// One spread constraint.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SpreadConstraintsTerm {
    /// Label or claim key of the topology.
    #[schemars(
        length(max = 316),
        regex(
            pattern = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$"
        )
    )]
    pub topology_key: String,
    /// Label or Claim.
    pub topology_key_type: TopologyKeyType,
    /// Maximum skew. The API server defaults it to 1.
    #[serde(default)]
    #[schemars(
        skip_serializing_if = "crate::schema::no_default",
        extend("default" = 1),
        range(min = 1)
    )]
    pub max_skew: i32,
    /// DoNotSchedule or ScheduleAnyway.
    #[serde(default)]
    pub when_unsatisfiable: UnsatisfiableMaxSkewAction,
}

/// `SpreadConstraintsTerm.topologyKeyType`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default, JsonSchema)]
pub enum TopologyKeyType {
    /// A cluster label.
    #[default]
    Label,
    /// A cluster claim.
    Claim,
}

/// `SpreadConstraintsTerm.whenUnsatisfiable`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default, JsonSchema)]
pub enum UnsatisfiableMaxSkewAction {
    /// Do not select clusters that would break the constraint.
    DoNotSchedule,
    /// Select them anyway, preferring those that keep the skew small.
    #[default]
    ScheduleAnyway,
}

/// A toleration of a cluster taint.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Toleration {
    /// Taint key; empty with Exists matches every taint.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 316), regex(pattern = crate::schema::QUALIFIED_NAME))]
    pub key: String,
    /// Exists or Equal. The API server defaults it to Equal.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(extend("default" = "Equal"))]
    pub operator: String,
    /// Taint value for Equal.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 1024))]
    pub value: String,
    /// Effect to tolerate; unset tolerates all effects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<TaintEffect>,
    /// How long the taint is tolerated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub toleration_seconds: Option<i64>,
}

/// How decisions are split into groups.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DecisionStrategy {
    /// Group strategy.
    #[serde(default)]
    #[schemars(skip_serializing_if = "crate::schema::no_default")]
    pub group_strategy: GroupStrategy,
}

/// Group strategy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupStrategy {
    /// Explicit decision groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub decision_groups: Vec<DecisionGroup>,
    /// Size of the other groups: a number or a percentage. The API server defaults it to
    /// `100%`. (Go writes `0` when unset; we leave it out so the default applies.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "clusters_per_decision_group")]
    pub clusters_per_decision_group: Option<IntOrString>,
}

fn clusters_per_decision_group(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "x-kubernetes-int-or-string": true,
        "default": "100%",
        "pattern": "^((100|[1-9][0-9]{0,1})%|[1-9][0-9]*)$",
    })
}

/// An explicit decision group.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DecisionGroup {
    /// Group name.
    #[serde(skip_serializing_if = "String::is_empty")]
    #[schemars(regex(pattern = r"^[a-zA-Z0-9][-A-Za-z0-9_.]{0,61}[a-zA-Z0-9]$"))]
    pub group_name: String,
    /// Clusters of the group.
    #[serde(rename = "groupClusterSelector")]
    pub cluster_selector: GroupClusterSelector,
}

/// Selects the clusters of a decision group.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupClusterSelector {
    /// Label selector.
    #[serde(default)]
    #[schemars(
        schema_with = "crate::schema::label_selector",
        skip_serializing_if = "crate::schema::no_default"
    )]
    pub label_selector: LabelSelector,
    /// Claim selector.
    #[serde(default)]
    #[schemars(skip_serializing_if = "crate::schema::no_default")]
    pub claim_selector: ClusterClaimSelector,
}

/// Status of a placement.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlacementStatus {
    /// Number of selected clusters.
    #[serde(default)]
    #[schemars(skip_serializing_if = "crate::schema::no_default")]
    pub number_of_selected_clusters: i32,
    /// Decision groups.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::schema::null_as_default"
    )]
    pub decision_groups: Vec<DecisionGroupStatus>,
    /// Conditions: PlacementSatisfied, PlacementMisconfigured.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::schema::null_as_default"
    )]
    #[schemars(schema_with = "crate::schema::conditions_map")]
    pub conditions: Vec<Condition>,
}

/// Status of one decision group.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DecisionGroupStatus {
    /// Index of the group.
    #[serde(default)]
    #[schemars(skip_serializing_if = "crate::schema::no_default")]
    pub decision_group_index: i32,
    /// Name of the group.
    #[serde(default)]
    #[schemars(skip_serializing_if = "crate::schema::no_default")]
    pub decision_group_name: String,
    /// Names of the PlacementDecisions of the group.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::schema::null_as_default"
    )]
    pub decisions: Vec<String>,
    /// Number of clusters in the group.
    #[serde(rename = "clusterCount", default)]
    pub clusters_count: i32,
}

/// PlacementDecision: the clusters a Placement selected. It has no `spec`; the decisions are
/// in `status` (status subresource). Ramen creates it for its Placements, named
/// `<placement>-decision-<n>`, labelled [`super::consts::PLACEMENT_LABEL`], and owned by the
/// Placement.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[kube(
    group = "cluster.open-cluster-management.io",
    version = "v1beta1",
    kind = "PlacementDecision",
    namespaced,
    no_spec,
    status = "PlacementDecisionStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "PlacementDecision: the clusters a Placement selected."
)]
pub struct PlacementDecisionSpec {}

/// The decisions.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlacementDecisionStatus {
    /// Selected clusters.
    #[serde(deserialize_with = "crate::schema::null_as_default")]
    pub decisions: Vec<ClusterDecision>,
}

/// One selected cluster.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterDecision {
    /// Name of the managed cluster.
    pub cluster_name: String,
    /// Why it was selected. Ramen writes the cluster name, or `RetainedForFailover` for the old
    /// primary during a failover.
    pub reason: String,
}
