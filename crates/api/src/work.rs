//! `work.open-cluster-management.io/v1` ManifestWork, as in `open-cluster-management.io/api`
//! v1.2.0 `work/v1/types.go`.
//!
//! The hub namespace of a ManifestWork is the name of the managed cluster it targets.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::raw::EmbeddedObject;

/// API group.
pub const GROUP: &str = "work.open-cluster-management.io";
/// API version.
pub const VERSION: &str = "v1";

/// ManifestWork: resources to apply on one managed cluster.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[kube(
    group = "work.open-cluster-management.io",
    version = "v1",
    kind = "ManifestWork",
    namespaced,
    status = "ManifestWorkStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "ManifestWork: a list of resources to apply on the managed cluster named by its namespace."
)]
#[serde(rename_all = "camelCase")]
pub struct ManifestWorkSpec {
    /// The resources to apply, in order.
    #[serde(default)]
    #[schemars(skip_serializing_if = "crate::schema::no_default")]
    pub workload: ManifestsTemplate,

    /// What happens to the applied resources when the work is deleted. Unset means Foreground.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_option: Option<DeleteOption>,

    /// Per-resource configuration (update strategy, feedback rules, condition rules).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub manifest_configs: Vec<ManifestConfigOption>,

    /// The identity the agent applies the resources as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor: Option<ManifestWorkExecutor>,
}

/// One manifest: a whole object as raw JSON (`Manifest{runtime.RawExtension}` in Go).
pub type Manifest = EmbeddedObject;

/// The resources of a work.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManifestsTemplate {
    /// The objects to apply. Their order matters: Ramen reads `manifests[0]` back.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub manifests: Vec<Manifest>,
}

/// Delete behaviour of a work.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeleteOption {
    /// Foreground (delete applied resources), Orphan (keep all) or SelectivelyOrphan.
    #[serde(default)]
    pub propagation_policy: DeletePropagationPolicyType,

    /// The resources to keep when the policy is SelectivelyOrphan.
    #[serde(
        rename = "selectivelyOrphans",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub selectively_orphan: Option<SelectivelyOrphan>,

    /// Delete the work this many seconds after it reports `Complete`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds_after_finished: Option<i64>,
}

/// `spec.deleteOption.propagationPolicy`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default, JsonSchema)]
pub enum DeletePropagationPolicyType {
    /// Delete every applied resource, wait until they are gone, then release the work.
    #[default]
    Foreground,
    /// Leave every applied resource in place.
    Orphan,
    /// Leave the resources listed in `selectivelyOrphans` in place, delete the others.
    SelectivelyOrphan,
}

/// Resources to keep when a work is deleted with SelectivelyOrphan.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SelectivelyOrphan {
    /// The resources to keep.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub orphaning_rules: Vec<OrphaningRule>,
}

/// Identifies one resource on the managed cluster by group, resource, namespace and name.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceIdentifier {
    /// API group; `""` for the core group.
    #[serde(default)]
    #[schemars(skip_serializing_if = "crate::schema::no_default")]
    pub group: String,
    /// Plural resource name, e.g. `configmaps`.
    pub resource: String,
    /// Object name.
    pub name: String,
    /// Namespace; `""` for cluster-scoped objects.
    #[serde(default)]
    #[schemars(skip_serializing_if = "crate::schema::no_default")]
    pub namespace: String,
}

/// A resource to keep on SelectivelyOrphan deletion (same shape as [`ResourceIdentifier`]).
pub type OrphaningRule = ResourceIdentifier;

/// Configuration for the manifest that `resource_identifier` selects.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManifestConfigOption {
    /// The manifest this configuration applies to.
    pub resource_identifier: ResourceIdentifier,

    /// Status fields to copy into `status.resourceStatus.manifests[].statusFeedback`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub feedback_rules: Vec<FeedbackRule>,

    /// How the agent updates the resource. Unset means Update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_strategy: Option<UpdateStrategy>,

    /// Rules that compute extra per-manifest conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["condition"]))]
    pub condition_rules: Vec<ConditionRule>,

    /// Poll or Watch the resource for feedback. The API server defaults it to Poll.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "Poll"))]
    pub feedback_scrape_type: Option<FeedbackScrapeType>,
}

/// A rule that sets one condition on a manifest.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "message": "Condition is required for CEL rules",
    "rule": "self.type != 'CEL' || self.condition != \"\"",
}]))]
pub struct ConditionRule {
    /// The condition type to set.
    pub condition: String,
    /// WellKnownConditions or CEL.
    #[serde(rename = "type")]
    pub type_: ConditionRuleType,
    /// CEL expressions, all of which must be true for the condition to be True.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::schema::null_as_default"
    )]
    pub cel_expressions: Vec<String>,
    /// Message of the condition.
    #[serde(default)]
    #[schemars(skip_serializing_if = "crate::schema::no_default")]
    pub message: String,
    /// CEL expression that computes the message.
    #[serde(default)]
    #[schemars(skip_serializing_if = "crate::schema::no_default")]
    pub message_expression: String,
}

/// `ConditionRule.type`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default, JsonSchema)]
pub enum ConditionRuleType {
    /// Built-in conditions for well-known kinds.
    #[default]
    WellKnownConditions,
    /// CEL expressions.
    #[serde(rename = "CEL")]
    Cel,
}

/// `ManifestConfigOption.feedbackScrapeType`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default, JsonSchema)]
pub enum FeedbackScrapeType {
    /// Read the resource periodically.
    #[default]
    Poll,
    /// Watch the resource.
    Watch,
}

/// How the agent updates an existing resource.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateStrategy {
    /// Update, CreateOnly, ServerSideApply or ReadOnly. The API server defaults it to Update.
    #[serde(rename = "type")]
    #[schemars(extend("default" = "Update"))]
    pub type_: UpdateStrategyType,
    /// Options for ServerSideApply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_side_apply: Option<ServerSideApplyConfig>,
}

/// `UpdateStrategy.type`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default, JsonSchema)]
pub enum UpdateStrategyType {
    /// Create, or merge metadata and replace everything else (OCM's default).
    #[default]
    Update,
    /// Create if absent, never update.
    CreateOnly,
    /// Server-side apply with the agent's field manager.
    ServerSideApply,
    /// Only read the resource (for status feedback); never create or update it.
    ReadOnly,
}

/// Options of the ServerSideApply update strategy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServerSideApplyConfig {
    /// Force the apply and take ownership of conflicting fields.
    #[serde(default)]
    #[schemars(skip_serializing_if = "crate::schema::no_default")]
    pub force: bool,
    /// Field manager; must start with `work-agent`. The API server defaults it to `work-agent`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(extend("default" = "work-agent", "pattern" = "^work-agent"))]
    pub field_manager: String,
    /// Fields the agent leaves alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["condition"]))]
    pub ignore_fields: Vec<IgnoreField>,
}

/// Fields to ignore under a condition.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IgnoreField {
    /// OnSpokePresent or OnSpokeChange. The API server defaults it to OnSpokePresent.
    #[schemars(extend("default" = "OnSpokePresent"))]
    pub condition: IgnoreFieldsCondition,
    /// JSON paths of the ignored fields.
    #[serde(deserialize_with = "crate::schema::null_as_default")]
    #[schemars(length(min = 1))]
    pub json_paths: Vec<String>,
}

/// `IgnoreField.condition`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default, JsonSchema)]
pub enum IgnoreFieldsCondition {
    /// Ignore the fields once the resource exists on the managed cluster.
    #[default]
    OnSpokePresent,
    /// Ignore the fields when they were changed on the managed cluster.
    OnSpokeChange,
}

/// Which status to copy back to the hub.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FeedbackRule {
    /// WellKnownStatus or JSONPaths.
    #[serde(rename = "type")]
    pub type_: FeedBackType,
    /// The paths to read, for JSONPaths.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub json_paths: Vec<JsonPath>,
}

/// `FeedbackRule.type`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default, JsonSchema)]
pub enum FeedBackType {
    /// Built-in status fields for well-known kinds.
    #[default]
    WellKnownStatus,
    /// The paths in `jsonPaths`.
    #[serde(rename = "JSONPaths")]
    JsonPaths,
}

/// One status value to read.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JsonPath {
    /// Name of the value in the feedback.
    pub name: String,
    /// API version to read the resource as.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    /// JSON path of the value.
    pub path: String,
}

/// Executor of a work: the identity the agent applies resources as.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManifestWorkExecutor {
    /// The subject.
    #[serde(default)]
    #[schemars(skip_serializing_if = "crate::schema::no_default")]
    pub subject: ManifestWorkExecutorSubject,
}

/// The subject of an executor.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManifestWorkExecutorSubject {
    /// Only ServiceAccount.
    #[serde(rename = "type")]
    pub type_: ManifestWorkExecutorSubjectType,
    /// The service account, when the type is ServiceAccount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<ManifestWorkSubjectServiceAccount>,
}

/// `ManifestWorkExecutorSubject.type`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default, JsonSchema)]
pub enum ManifestWorkExecutorSubjectType {
    /// A service account on the managed cluster.
    #[default]
    ServiceAccount,
}

const DNS1123_SUBDOMAIN: &str =
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)$";

/// A service account on the managed cluster.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManifestWorkSubjectServiceAccount {
    /// Namespace of the service account.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS1123_SUBDOMAIN))]
    pub namespace: String,
    /// Name of the service account.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS1123_SUBDOMAIN))]
    pub name: String,
}

/// Status of a work, written by the agent side.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManifestWorkStatus {
    /// Work-level conditions: Applied, Available, Degraded, Progressing, Deleting.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::schema::conditions_map")]
    pub conditions: Vec<Condition>,

    /// Per-manifest status.
    #[serde(default)]
    #[schemars(skip_serializing_if = "crate::schema::no_default")]
    pub resource_status: ManifestResourceStatus,
}

/// Per-manifest status of a work.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManifestResourceStatus {
    /// One entry per manifest, keyed by `resourceMeta.ordinal`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub manifests: Vec<ManifestCondition>,
}

/// Status of one manifest.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManifestCondition {
    /// Which manifest this is.
    pub resource_meta: ManifestResourceMeta,

    /// Values read by the feedback rules.
    #[serde(rename = "statusFeedback", default)]
    #[schemars(skip_serializing_if = "crate::schema::no_default")]
    pub status_feedbacks: StatusFeedbackResult,

    /// Conditions of this manifest: Applied, Available, StatusFeedbackSynced, ...
    #[serde(deserialize_with = "crate::schema::null_as_default")]
    #[schemars(schema_with = "crate::schema::conditions_map")]
    pub conditions: Vec<Condition>,
}

/// Identity of a manifest in the status: its index in `spec.workload.manifests` and the resource
/// it became. Go writes every field, empty or not.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManifestResourceMeta {
    /// Index of the manifest in `spec.workload.manifests`.
    pub ordinal: i32,
    /// API group, `""` for core.
    #[serde(default)]
    #[schemars(skip_serializing_if = "crate::schema::no_default")]
    pub group: String,
    /// API version.
    #[serde(default)]
    #[schemars(skip_serializing_if = "crate::schema::no_default")]
    pub version: String,
    /// Kind.
    #[serde(default)]
    #[schemars(skip_serializing_if = "crate::schema::no_default")]
    pub kind: String,
    /// Plural resource name.
    #[serde(default)]
    #[schemars(skip_serializing_if = "crate::schema::no_default")]
    pub resource: String,
    /// Object name.
    #[serde(default)]
    #[schemars(skip_serializing_if = "crate::schema::no_default")]
    pub name: String,
    /// Namespace, `""` for cluster-scoped objects.
    #[serde(default)]
    #[schemars(skip_serializing_if = "crate::schema::no_default")]
    pub namespace: String,
}

/// Values read by feedback rules.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusFeedbackResult {
    /// The values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub values: Vec<FeedbackValue>,
}

/// One feedback value.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FeedbackValue {
    /// Name from the feedback rule.
    pub name: String,
    /// The value.
    #[serde(rename = "fieldValue")]
    pub value: FieldValue,
}

/// A typed feedback value: exactly one of the value fields is set, as `type` says.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FieldValue {
    /// Integer, String, Boolean or JsonRaw.
    #[serde(rename = "type")]
    pub type_: ValueType,
    /// Set for Integer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integer: Option<i64>,
    /// Set for String.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub string: Option<String>,
    /// Set for Boolean.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boolean: Option<bool>,
    /// Set for JsonRaw: JSON text of at most 1024 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub json_raw: Option<String>,
}

/// `FieldValue.type`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default, JsonSchema)]
pub enum ValueType {
    /// An int64.
    #[default]
    Integer,
    /// A string.
    String,
    /// A bool.
    Boolean,
    /// Raw JSON text.
    JsonRaw,
}

/// Names and strings of the work API and of the OCM work agent.
pub mod consts {
    /// Finalizer the agent side puts on every ManifestWork; removed once the applied resources
    /// are gone (Foreground) or released (Orphan).
    pub const MANIFEST_WORK_FINALIZER: &str =
        "cluster.open-cluster-management.io/manifest-work-cleanup";
    /// Finalizer OCM's agent puts on AppliedManifestWorks (not used by drbridge; listed for
    /// recognising objects left by OCM).
    pub const APPLIED_MANIFEST_WORK_FINALIZER: &str =
        "cluster.open-cluster-management.io/applied-manifest-work-cleanup";
    /// Annotation OCM's agent puts on applied objects with the hash of the manifest.
    pub const OBJECT_SPEC_HASH_ANNOTATION: &str = "open-cluster-management.io/object-hash";
    /// Annotation with the hash of the config spec.
    pub const MANIFEST_CONFIG_SPEC_HASH_ANNOTATION: &str =
        "open-cluster-management.io/config-spec-hash";
    /// Default field manager of the ServerSideApply strategy.
    pub const DEFAULT_FIELD_MANAGER: &str = "work-agent";

    /// Condition types (work and manifest level).
    pub mod condition {
        /// Work/manifest is being applied.
        pub const PROGRESSING: &str = "Progressing";
        /// Every manifest applied (work); this manifest applied (manifest).
        pub const APPLIED: &str = "Applied";
        /// Every resource exists (work); this resource exists (manifest).
        pub const AVAILABLE: &str = "Available";
        /// Current state does not match the desired state. Ramen treats True as not applied.
        pub const DEGRADED: &str = "Degraded";
        /// Completed (for jobs and condition rules).
        pub const COMPLETE: &str = "Complete";
        /// The work is being deleted.
        pub const DELETING: &str = "Deleting";
        /// Manifest level: the feedback values were read.
        pub const STATUS_FEEDBACK_SYNCED: &str = "StatusFeedbackSynced";
    }

    /// Reasons and messages of work-level conditions, as OCM's agent writes them.
    pub mod work {
        /// `Applied=True` reason.
        pub const REASON_APPLIED_COMPLETE: &str = "AppliedManifestWorkComplete";
        /// `Applied=True` message.
        pub const MESSAGE_APPLIED_COMPLETE: &str = "Apply manifest work complete";
        /// `Applied=False` reason.
        pub const REASON_APPLIED_FAILED: &str = "AppliedManifestWorkFailed";
        /// `Applied=False` message.
        pub const MESSAGE_APPLIED_FAILED: &str = "Failed to apply manifest work";
        /// `Available=True` reason.
        pub const REASON_RESOURCES_AVAILABLE: &str = "ResourcesAvailable";
        /// `Available=True` message.
        pub const MESSAGE_RESOURCES_AVAILABLE: &str = "All resources are available";
        /// `Available=False` reason; message is `"{n} of {total} resources are not available"`.
        pub const REASON_RESOURCES_NOT_AVAILABLE: &str = "ResourcesNotAvailable";
        /// `Available=Unknown` reason; message is `"{n} of {total} resources have unknown status"`
        /// or [`MESSAGE_NO_AVAILABLE_RESOURCE`].
        pub const REASON_RESOURCES_STATUS_UNKNOWN: &str = "ResourcesStatusUnknown";
        /// `Available=Unknown` message when no resource is available (trailing space is OCM's).
        pub const MESSAGE_NO_AVAILABLE_RESOURCE: &str = "cannot get any available resource ";
        /// `Deleting=True` reason.
        pub const REASON_DELETING: &str = "WorkDeleting";
        /// `Deleting=True` message.
        pub const MESSAGE_DELETING: &str = "ManifestWork is being deleted";
        /// `Complete=True` reason.
        pub const REASON_MANIFESTS_COMPLETE: &str = "ManifestsComplete";
        /// `Progressing` reasons.
        pub const REASON_PROGRESSING_APPLYING: &str = "Applying";
        /// `Progressing` reason when done.
        pub const REASON_PROGRESSING_COMPLETED: &str = "Completed";
        /// `Progressing` reason on failure.
        pub const REASON_PROGRESSING_FAILED: &str = "Failed";
    }

    /// Reasons and messages of manifest-level conditions, as OCM's agent writes them.
    pub mod manifest {
        /// `Applied=True` reason.
        pub const REASON_APPLIED_COMPLETE: &str = "AppliedManifestComplete";
        /// `Applied=True` message.
        pub const MESSAGE_APPLIED_COMPLETE: &str = "Apply manifest complete";
        /// `Applied=False` reason; message is `"Failed to apply manifest: {err}"`.
        pub const REASON_APPLIED_FAILED: &str = "AppliedManifestFailed";
        /// Prefix of the `Applied=False` message (followed by the error text).
        pub const MESSAGE_APPLIED_FAILED_PREFIX: &str = "Failed to apply manifest: ";
        /// `Available=True` reason.
        pub const REASON_AVAILABLE: &str = "ResourceAvailable";
        /// `Available=True` message.
        pub const MESSAGE_AVAILABLE: &str = "Resource is available";
        /// `Available=False` reason.
        pub const REASON_NOT_AVAILABLE: &str = "ResourceNotAvailable";
        /// `Available=False` message.
        pub const MESSAGE_NOT_AVAILABLE: &str = "Resource is not available";
        /// `Available=Unknown` reason; message is `"Failed to fetch resource: {err}"`.
        pub const REASON_FETCHING_FAILED: &str = "FetchingResourceFailed";
        /// Prefix of the `Available=Unknown` message (followed by the error text).
        pub const MESSAGE_FETCHING_FAILED_PREFIX: &str = "Failed to fetch resource: ";
        /// `Available=Unknown` reason when the resource meta is incomplete.
        pub const REASON_INCOMPLETE_RESOURCE_META: &str = "IncompleteResourceMeta";
        /// `StatusFeedbackSynced=True` reason when there are no feedback rules.
        pub const REASON_NO_STATUS_FEEDBACK_SYNCED: &str = "NoStatusFeedbackSynced";
        /// `StatusFeedbackSynced=True` reason when values were read.
        pub const REASON_STATUS_FEEDBACK_SYNCED: &str = "StatusFeedbackSynced";
        /// Condition-rule reasons.
        pub const REASON_CONDITION_RULE_EVALUATED: &str = "ConditionRuleEvaluated";
        /// Condition-rule reason: invalid rule.
        pub const REASON_CONDITION_RULE_INVALID: &str = "ConditionRuleInvalid";
        /// Condition-rule reason: expression error.
        pub const REASON_CONDITION_RULE_EXPRESSION_ERROR: &str = "ConditionRuleExpressionError";
        /// Condition-rule reason: internal error.
        pub const REASON_CONDITION_RULE_INTERNAL_ERROR: &str = "ConditionRuleInternalError";
    }
}
