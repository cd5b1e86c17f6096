//! `drbridge.io/v1alpha1` AppliedWork: drbridge's own record, on the managed cluster, of what
//! the agent applied for one ManifestWork.
//!
//! The agent writes one AppliedWork (cluster-scoped) per ManifestWork before it applies
//! anything, and updates it after each apply. It is the durable answer to "which objects does
//! this work own, and under which delete option": after a restart, a hub change or a lost
//! message, the agent can still delete (Foreground) or release (Orphan) exactly those objects,
//! and can tell the hub which works and generations it holds. It plays the role of OCM's
//! AppliedManifestWork, but drbridge does not put owner references on applied objects.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::work::DeleteOption;

/// API group.
pub const GROUP: &str = "drbridge.io";
/// API version.
pub const VERSION: &str = "v1alpha1";

/// AppliedWork: what the agent applied for one ManifestWork.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[kube(
    group = "drbridge.io",
    version = "v1alpha1",
    kind = "AppliedWork",
    status = "AppliedWorkStatus",
    derive = "PartialEq",
    derive = "Default",
    printcolumn = r#"{"name":"Work Namespace","type":"string","jsonPath":".spec.workNamespace"}"#,
    printcolumn = r#"{"name":"Work Name","type":"string","jsonPath":".spec.workName"}"#,
    printcolumn = r#"{"name":"Generation","type":"integer","jsonPath":".spec.generation"}"#,
    printcolumn = r#"{"name":"Applied","type":"string","jsonPath":".status.conditions[?(@.type==\"Applied\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    doc = "AppliedWork: drbridge's record, on the managed cluster, of what the agent applied for one ManifestWork."
)]
#[serde(rename_all = "camelCase")]
pub struct AppliedWorkSpec {
    /// Name of this managed cluster, as the hub knows it.
    pub cluster: String,
    /// Namespace of the ManifestWork on the hub (normally the cluster name).
    pub work_namespace: String,
    /// Name of the ManifestWork.
    pub work_name: String,
    /// UID of the ManifestWork. A work deleted and re-created under the same name has a new UID.
    pub work_uid: String,
    /// `metadata.generation` of the ManifestWork last applied.
    #[serde(default)]
    #[schemars(skip_serializing_if = "crate::schema::no_default")]
    pub generation: i64,
    /// Epoch of the hub that sent that generation. The agent never accepts a hub with a lower
    /// epoch than the highest it has recorded.
    #[serde(default)]
    #[schemars(
        skip_serializing_if = "crate::schema::no_default",
        extend("format" = "int64", "minimum" = 0)
    )]
    pub hub_epoch: u64,
    /// Copy of the work's `spec.deleteOption` at that generation: what to do with the applied
    /// objects when the work goes away. Unset means Foreground.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_option: Option<DeleteOption>,
    /// Every object applied for the work, in manifest order. An object that leaves the work's
    /// manifests stays here until the agent has deleted it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub applied_resources: Vec<AppliedResource>,
}

/// One object applied for a work.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppliedResource {
    /// API group; empty (left out) for the core group.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub group: String,
    /// API version.
    pub version: String,
    /// Kind.
    pub kind: String,
    /// Plural resource name.
    pub resource: String,
    /// Namespace; `""` for cluster-scoped objects.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID of the object when the agent created or last saw it; empty if unknown. Deleting with
    /// a UID precondition keeps the agent from deleting a same-named object someone re-created.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
    /// Index of the manifest in the work's `spec.workload.manifests`.
    #[serde(default)]
    #[schemars(skip_serializing_if = "crate::schema::no_default")]
    pub ordinal: i32,
}

/// Status of an AppliedWork.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppliedWorkStatus {
    /// Conditions, in OCM's work-level shape (Applied, Available, Deleting).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::schema::conditions_map")]
    pub conditions: Vec<Condition>,
}

impl AppliedWork {
    /// The name of the AppliedWork for a ManifestWork: `<namespace>.<name>`.
    ///
    /// A namespace is a DNS label and a ManifestWork name a DNS subdomain, so the result is a
    /// valid object name unless it is longer than 253 characters; then it is cut and ends in a
    /// hash of the full pair, so it stays unique.
    pub fn name_for(work_namespace: &str, work_name: &str) -> String {
        const MAX: usize = 253;
        let full = format!("{work_namespace}.{work_name}");
        if full.len() <= MAX {
            return full;
        }
        let hash = format!("{:016x}", fnv1a64(full.as_bytes()));
        // Every character of a DNS name is ASCII, so any byte index is a char boundary.
        let mut head = full[..MAX - hash.len() - 1].to_string();
        // A name must end in an alphanumeric; the separator `-` must not follow a `.` or `-`.
        while head.ends_with(['.', '-']) {
            head.pop();
        }
        format!("{head}-{hash}")
    }
}

/// 64-bit FNV-1a: a stable hash with no dependency; collisions only matter for names over 253
/// characters.
fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Names and strings of drbridge's own API.
pub mod consts {
    /// Condition types the agent writes on an AppliedWork (same names as OCM's work conditions).
    pub const CONDITION_APPLIED: &str = "Applied";
    /// Every applied object exists.
    pub const CONDITION_AVAILABLE: &str = "Available";
    /// The agent is deleting or releasing the applied objects.
    pub const CONDITION_DELETING: &str = "Deleting";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_for_short_and_long() {
        assert_eq!(AppliedWork::name_for("c1", "app-ns-mw"), "c1.app-ns-mw");
        let long_name = "a".repeat(253);
        let n1 = AppliedWork::name_for("cluster1", &long_name);
        let n2 = AppliedWork::name_for("cluster2", &long_name);
        assert_eq!(n1.len(), 253);
        assert_ne!(n1, n2);
        assert!(n1.starts_with("cluster1.aaa"));
    }
}
