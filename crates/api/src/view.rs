//! `view.open-cluster-management.io/v1beta1` ManagedClusterView, as in
//! `open-cluster-management.io/multicloud-operators-subscription` `pkg/apis/view/v1beta1` (the
//! import path Ramen uses; identical to `stolostron/cluster-lifecycle-api/view/v1beta1`).
//!
//! A view lives in the hub namespace of the managed cluster it reads from. The agent side keeps
//! exactly one condition, [`consts::CONDITION_PROCESSING`], and puts the whole viewed object in
//! `status.result`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::raw::EmbeddedObject;

/// API group.
pub const GROUP: &str = "view.open-cluster-management.io";
/// API version.
pub const VERSION: &str = "v1beta1";

/// ManagedClusterView: a read of one object on a managed cluster.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[kube(
    group = "view.open-cluster-management.io",
    version = "v1beta1",
    kind = "ManagedClusterView",
    namespaced,
    status = "ViewStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "ManagedClusterView is the view of resources on a managed cluster"
)]
#[serde(rename_all = "camelCase")]
pub struct ViewSpec {
    /// The object to view.
    #[serde(default)]
    #[schemars(skip_serializing_if = "crate::schema::no_default")]
    pub scope: ViewScope,
}

/// The object a view reads: either `apiGroup`/`version`/`kind` or `resource`, plus the name and
/// (for namespaced objects) the namespace. Every field is left out of the JSON when empty, as
/// in Go. Ramen never sets `resource` or `updateIntervalSeconds`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ViewScope {
    /// API group; `""` for the core group.
    #[serde(rename = "apiGroup", default, skip_serializing_if = "String::is_empty")]
    pub group: String,
    /// API version.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    /// Kind.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// Plural resource name (alternative to `kind`), optionally `resource.group` or
    /// `resource.version.group`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub resource: String,
    /// Object name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Object namespace.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Refresh interval in seconds; 0 means [`consts::DEFAULT_UPDATE_INTERVAL_SECONDS`].
    #[serde(default, skip_serializing_if = "crate::schema::is_zero_i32")]
    pub update_interval_seconds: i32,
}

/// Status of a view.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ViewStatus {
    /// Exactly one condition, `Processing`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::schema::conditions_list")]
    pub conditions: Vec<Condition>,
    /// The viewed object, whole (metadata, spec, status). Go writes `null` when there is none,
    /// and so do we; the CRD marks it nullable. On a failed read it keeps its previous value.
    #[serde(default)]
    pub result: Option<EmbeddedObject>,
}

/// Names and strings of the view API and of the stolostron view controller.
pub mod consts {
    /// The only condition type of a view.
    pub const CONDITION_PROCESSING: &str = "Processing";

    /// `Processing=False`: `scope.name` is empty.
    pub const REASON_RESOURCE_NAME_INVALID: &str = "ResourceNameInvalid";
    /// `Processing=False`: no `resource` and `kind` or `version` empty, or the `resource` form
    /// did not map, or the resource is `secrets`.
    pub const REASON_RESOURCE_TYPE_INVALID: &str = "ResourceTypeInvalid";
    /// `Processing=False`: (apiGroup, kind, version) does not map to a resource on the managed
    /// cluster (for example the CRD is missing). Ramen treats this as a failed query, not as
    /// "not found".
    pub const REASON_RESOURCE_GVK_INVALID: &str = "ResourceGVKInvalid";
    /// `Processing=False`: the read failed. If the message ends with `not found` (or
    /// `the server could not find the requested resource`) Ramen treats the object as absent.
    pub const REASON_GET_RESOURCE_FAILED: &str = "GetResourceFailed";
    /// `Processing=True`: the object is in `status.result`.
    pub const REASON_GET_RESOURCE: &str = "GetResourceProcessing";

    /// Prefix of every failure message except the secrets one; followed by the error text.
    pub const MESSAGE_FAILED_PREFIX: &str = "failed to get resource with err: ";
    /// Message for [`REASON_RESOURCE_NAME_INVALID`].
    pub const MESSAGE_INVALID_RESOURCE_NAME: &str =
        "failed to get resource with err: invalid resource name";
    /// Message for [`REASON_RESOURCE_TYPE_INVALID`] when kind/version are missing.
    pub const MESSAGE_INVALID_RESOURCE_TYPE: &str =
        "failed to get resource with err: invalid resource type";
    /// Message for [`REASON_RESOURCE_TYPE_INVALID`] when the resource is `secrets`.
    pub const MESSAGE_SECRETS_NOT_ALLOWED: &str = "viewing secrets is not allowed";
    /// Message for [`REASON_GET_RESOURCE`].
    pub const MESSAGE_WATCHING: &str = "Watching resources successfully";

    /// Default refresh interval of a view.
    pub const DEFAULT_UPDATE_INTERVAL_SECONDS: i32 = 30;
}
