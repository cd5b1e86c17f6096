//! The hub's view of the Kubernetes objects it watches, decoded from JSON.
//!
//! The hub never trusts a ManifestWork to be well formed: watches read objects as
//! `DynamicObject` (which only needs valid `metadata`), and this module decodes the
//! parts the hub needs. A spec that does not decode becomes `Err(message)` on the
//! object instead of an error in the watch, which is the `DeserializeGuard` idea
//! with a message precise enough to show to a user on the object itself.

use drbridge_api::cluster::ManagedCluster;
use drbridge_api::view::ManagedClusterView;
use drbridge_api::work::ManifestWork;
use drbridge_proto::v1 as pb;
use kube::api::ApiResource;
use serde_json::Value;

/// Finalizer the hub keeps on every dispatched ManifestWork until its agent has
/// removed or orphaned the work's objects (OCM's name, so tools that know OCM see
/// the usual finalizer).
pub const WORK_FINALIZER: &str = drbridge_api::work::consts::MANIFEST_WORK_FINALIZER;

/// The one field manager of every write the hub makes.
pub const FIELD_MANAGER: &str = "drbridge-hub";

/// Annotation set on the ManifestWorks and ManagedClusterViews of a cluster the hub
/// cannot reach. Its value is the RFC 3339 time the hub last heard from the cluster's
/// agent: status on the object is at least that old. Removed when the agent is back.
/// See docs/presence.md.
pub const UNREACHABLE_SINCE_ANNOTATION: &str = "drbridge.io/unreachable-since";
/// On a ManagedCluster: since when (RFC 3339) a change sent to its agent has gone
/// unacknowledged for longer than the hub's threshold; removed once everything is acknowledged.
pub const UNACKNOWLEDGED_SINCE_ANNOTATION: &str = "drbridge.io/oldest-unacknowledged-since";

/// The watched kinds as the API server serves them, from `drbridge-api`'s types.
pub fn work_resource() -> ApiResource {
    ApiResource::erase::<ManifestWork>(&())
}

pub fn view_resource() -> ApiResource {
    ApiResource::erase::<ManagedClusterView>(&())
}

pub fn cluster_resource() -> ApiResource {
    ApiResource::erase::<ManagedCluster>(&())
}

/// Namespace and name of a namespaced object.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// The metadata every watched object carries.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Meta {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub generation: i64,
    pub resource_version: String,
    pub deleting: bool,
    pub finalizers: Vec<String>,
    /// Value of [`UNREACHABLE_SINCE_ANNOTATION`], if present.
    pub unreachable_since: Option<String>,
    /// Value of [`UNACKNOWLEDGED_SINCE_ANNOTATION`] (on ManagedClusters), if present.
    pub unacknowledged_since: Option<String>,
}

impl Meta {
    pub fn key(&self) -> ObjectKey {
        ObjectKey::new(&self.namespace, &self.name)
    }

    pub fn has_finalizer(&self) -> bool {
        self.finalizers.iter().any(|f| f == WORK_FINALIZER)
    }

    /// Reads the metadata of a Kubernetes object. Only `metadata.name` is required.
    pub fn from_object_meta(
        meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    ) -> Option<Self> {
        Some(Self {
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone()?,
            uid: meta.uid.clone().unwrap_or_default(),
            generation: meta.generation.unwrap_or_default(),
            resource_version: meta.resource_version.clone().unwrap_or_default(),
            deleting: meta.deletion_timestamp.is_some(),
            finalizers: meta.finalizers.clone().unwrap_or_default(),
            unreachable_since: meta
                .annotations
                .as_ref()
                .and_then(|a| a.get(UNREACHABLE_SINCE_ANNOTATION).cloned()),
            unacknowledged_since: meta
                .annotations
                .as_ref()
                .and_then(|a| a.get(UNACKNOWLEDGED_SINCE_ANNOTATION).cloned()),
        })
    }
}

/// A condition as stored on an object (metav1.Condition), kept as JSON so a write
/// can carry every field the hub did not set through unchanged.
pub type ConditionJson = Value;

/// A ManifestWork as the hub sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkObject {
    pub meta: Meta,
    /// The decoded spec, or why it could not be decoded.
    pub spec: Result<WorkSpec, String>,
    /// `status.conditions` as stored.
    pub conditions: Vec<ConditionJson>,
    /// The whole `status` as stored, digested.
    pub status: StatusDigest,
}

/// The parts of a ManifestWork spec that an agent needs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WorkSpec {
    /// `spec.workload.manifests`, each re-encoded as JSON, in spec order.
    pub manifests: Vec<Vec<u8>>,
    /// `spec.workload` is absent. Not the same as an empty list (which Go clients encode as
    /// `workload: {}`): dispatched as a work without manifests, it would make the agent delete
    /// every object the work applied. The index refuses to dispatch it.
    pub missing_workload: bool,
    pub delete_option: pb::DeleteOption,
    /// JSON of `spec.manifestConfigs`, empty when unset or empty.
    pub manifest_configs: Vec<u8>,
}

/// A ManagedClusterView as the hub sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct ViewObject {
    pub meta: Meta,
    pub scope: pb::ViewScope,
    /// `status.conditions` as stored (the real controller keeps exactly one).
    pub conditions: Vec<ConditionJson>,
    /// The whole `status` as stored, digested.
    pub status: StatusDigest,
}

/// A ManagedCluster as the hub sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterObject {
    pub meta: Meta,
    pub conditions: Vec<ConditionJson>,
    /// `status.clusterClaims` as stored (name, value).
    pub claims: Vec<(String, String)>,
}

fn str_field(v: &Value, field: &str) -> Result<String, String> {
    match v.get(field) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(format!("{field} must be a string, found {other}")),
    }
}

/// A digest of an object's `status`: enough to tell that a status patch would change nothing,
/// without keeping every status in memory. Equal JSON values have equal digests whatever
/// their key order; an absent status digests as `null`, which no planned status equals.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct StatusDigest(u64);

impl StatusDigest {
    pub fn of(status: Option<&Value>) -> Self {
        use std::hash::{Hash, Hasher};
        fn feed(v: &Value, h: &mut std::hash::DefaultHasher) {
            match v {
                Value::Null => 0u8.hash(h),
                Value::Bool(b) => (1u8, b).hash(h),
                // Display is canonical: 3 read from the API and 3 built here print alike.
                Value::Number(n) => (2u8, n.to_string()).hash(h),
                Value::String(s) => (3u8, s).hash(h),
                Value::Array(items) => {
                    (4u8, items.len()).hash(h);
                    items.iter().for_each(|i| feed(i, h));
                }
                Value::Object(map) => {
                    (5u8, map.len()).hash(h);
                    let mut keys: Vec<&String> = map.keys().collect();
                    keys.sort_unstable();
                    for k in keys {
                        k.hash(h);
                        feed(&map[k], h);
                    }
                }
            }
        }
        // SipHash with fixed keys: the same value digests alike for the life of the process.
        let mut h = std::hash::DefaultHasher::new();
        feed(status.unwrap_or(&Value::Null), &mut h);
        Self(h.finish())
    }
}

fn conditions_of(data: &Value) -> Vec<ConditionJson> {
    data.pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

impl WorkSpec {
    /// Decodes `spec` of a ManifestWork. The errors name the offending field.
    pub fn from_json(spec: Option<&Value>) -> Result<Self, String> {
        let spec = match spec {
            Some(Value::Object(_)) => spec.expect("matched Some"),
            Some(other) => return Err(format!("spec must be an object, found {other}")),
            None => return Err("spec is missing".to_string()),
        };
        let missing_workload = matches!(spec.get("workload"), None | Some(Value::Null));
        let manifests = match spec.pointer("/workload/manifests") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    if !item.is_object() {
                        return Err(format!(
                            "spec.workload.manifests[{i}] must be an object, found {}",
                            kind_of(item)
                        ));
                    }
                    for field in ["apiVersion", "kind"] {
                        if !item.get(field).is_some_and(Value::is_string) {
                            return Err(format!(
                                "spec.workload.manifests[{i}] has no string field {field}"
                            ));
                        }
                    }
                    out.push(serde_json::to_vec(item).map_err(|e| e.to_string())?);
                }
                out
            }
            Some(other) => {
                return Err(format!(
                    "spec.workload.manifests must be a list, found {}",
                    kind_of(other)
                ));
            }
        };
        let delete_option = match spec.get("deleteOption") {
            None | Some(Value::Null) => pb::DeleteOption::default(),
            Some(opt @ Value::Object(_)) => decode_delete_option(opt)?,
            Some(other) => {
                return Err(format!(
                    "spec.deleteOption must be an object, found {}",
                    kind_of(other)
                ));
            }
        };
        let manifest_configs = match spec.get("manifestConfigs") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) if a.is_empty() => Vec::new(),
            Some(v @ Value::Array(_)) => serde_json::to_vec(v).map_err(|e| e.to_string())?,
            Some(other) => {
                return Err(format!(
                    "spec.manifestConfigs must be a list, found {}",
                    kind_of(other)
                ));
            }
        };
        Ok(Self {
            manifests,
            missing_workload,
            delete_option,
            manifest_configs,
        })
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn decode_delete_option(opt: &Value) -> Result<pb::DeleteOption, String> {
    use pb::delete_option::Policy;
    let policy = match str_field(opt, "propagationPolicy")
        .map_err(|e| format!("spec.deleteOption.{e}"))?
        .as_str()
    {
        "" | "Foreground" => Policy::Foreground,
        "Orphan" => Policy::Orphan,
        "SelectivelyOrphan" => Policy::SelectivelyOrphan,
        other => {
            return Err(format!(
                "spec.deleteOption.propagationPolicy {other:?} is not one of Foreground, Orphan, SelectivelyOrphan"
            ));
        }
    };
    let mut orphaning_rules = Vec::new();
    if let Some(rules) = opt.pointer("/selectivelyOrphans/orphaningRules") {
        let rules = rules.as_array().ok_or_else(|| {
            "spec.deleteOption.selectivelyOrphans.orphaningRules must be a list".to_string()
        })?;
        for (i, r) in rules.iter().enumerate() {
            let f = |field| {
                str_field(r, field).map_err(|e| {
                    format!("spec.deleteOption.selectivelyOrphans.orphaningRules[{i}].{e}")
                })
            };
            orphaning_rules.push(pb::OrphaningRule {
                group: f("group")?,
                resource: f("resource")?,
                namespace: f("namespace")?,
                name: f("name")?,
            });
        }
    }
    Ok(pb::DeleteOption {
        propagation_policy: policy as i32,
        orphaning_rules,
    })
}

/// Decodes a ManagedClusterView's `spec.scope`. Missing fields stay empty; the agent
/// reports them with the real controller's reasons (ResourceNameInvalid, ...).
pub fn view_scope_from_json(spec: Option<&Value>) -> pb::ViewScope {
    let scope = spec.and_then(|s| s.get("scope"));
    let f = |field: &str| {
        scope
            .and_then(|s| s.get(field))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    pb::ViewScope {
        api_group: f("apiGroup"),
        version: f("version"),
        kind: f("kind"),
        resource: f("resource"),
        name: f("name"),
        namespace: f("namespace"),
    }
}

impl WorkObject {
    pub fn from_dynamic(obj: &kube::api::DynamicObject) -> Option<Self> {
        let meta = Meta::from_object_meta(&obj.metadata)?;
        Some(Self {
            meta,
            spec: WorkSpec::from_json(obj.data.get("spec")),
            conditions: conditions_of(&obj.data),
            status: StatusDigest::of(obj.data.get("status")),
        })
    }
}

impl ViewObject {
    pub fn from_dynamic(obj: &kube::api::DynamicObject) -> Option<Self> {
        let meta = Meta::from_object_meta(&obj.metadata)?;
        Some(Self {
            meta,
            scope: view_scope_from_json(obj.data.get("spec")),
            conditions: conditions_of(&obj.data),
            status: StatusDigest::of(obj.data.get("status")),
        })
    }
}

impl ClusterObject {
    pub fn from_dynamic(obj: &kube::api::DynamicObject) -> Option<Self> {
        let meta = Meta::from_object_meta(&obj.metadata)?;
        let claims = obj
            .data
            .pointer("/status/clusterClaims")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .filter_map(|c| {
                        Some((
                            c.get("name")?.as_str()?.to_string(),
                            c.get("value")?.as_str()?.to_string(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some(Self {
            meta,
            conditions: conditions_of(&obj.data),
            claims,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_resources_are_the_served_kinds() {
        let served = [
            (
                work_resource(),
                "work.open-cluster-management.io/v1",
                "ManifestWork",
            ),
            (
                view_resource(),
                "view.open-cluster-management.io/v1beta1",
                "ManagedClusterView",
            ),
            (
                cluster_resource(),
                "cluster.open-cluster-management.io/v1",
                "ManagedCluster",
            ),
        ];
        for (r, api_version, kind) in served {
            assert_eq!(
                (r.api_version.as_str(), r.kind.as_str()),
                (api_version, kind)
            );
            assert_eq!(r.plural, format!("{}s", kind.to_lowercase()));
        }
    }
    use serde_json::json;

    #[test]
    fn decodes_ramen_ns_work() {
        let spec = json!({
            "workload": {"manifests": [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "app"}}]},
            "deleteOption": {"propagationPolicy": "Orphan"}
        });
        let s = WorkSpec::from_json(Some(&spec)).unwrap();
        assert_eq!(s.manifests.len(), 1);
        let m: Value = serde_json::from_slice(&s.manifests[0]).unwrap();
        assert_eq!(m["kind"], "Namespace");
        assert_eq!(
            s.delete_option.propagation_policy,
            pb::delete_option::Policy::Orphan as i32
        );
        assert!(s.manifest_configs.is_empty());
    }

    #[test]
    fn selective_orphan_rules() {
        let spec = json!({"workload": {"manifests": []}, "deleteOption": {
            "propagationPolicy": "SelectivelyOrphan",
            "selectivelyOrphans": {"orphaningRules": [{"group": "", "resource": "namespaces", "name": "x"}]}}});
        let s = WorkSpec::from_json(Some(&spec)).unwrap();
        assert_eq!(s.delete_option.orphaning_rules.len(), 1);
        assert_eq!(s.delete_option.orphaning_rules[0].resource, "namespaces");
    }

    #[test]
    fn malformed_specs_name_the_field() {
        let cases = [
            (
                json!({"workload": {"manifests": {}}}),
                "spec.workload.manifests must be a list",
            ),
            (
                json!({"workload": {"manifests": [3]}}),
                "spec.workload.manifests[0] must be an object",
            ),
            (
                json!({"workload": {"manifests": [{"kind": "X"}]}}),
                "manifests[0] has no string field apiVersion",
            ),
            (
                json!({"deleteOption": {"propagationPolicy": "Later"}}),
                "propagationPolicy \"Later\"",
            ),
            (json!("x"), "spec must be an object"),
        ];
        for (spec, want) in cases {
            let err = WorkSpec::from_json(Some(&spec)).unwrap_err();
            assert!(err.contains(want), "{err:?} should contain {want:?}");
        }
        assert!(WorkSpec::from_json(None).is_err());
    }

    #[test]
    fn manifest_configs_kept_as_json() {
        let spec = json!({"manifestConfigs": [{"resourceIdentifier": {"name": "a"}, "updateStrategy": {"type": "ServerSideApply"}}]});
        let s = WorkSpec::from_json(Some(&spec)).unwrap();
        let v: Value = serde_json::from_slice(&s.manifest_configs).unwrap();
        assert_eq!(v[0]["updateStrategy"]["type"], "ServerSideApply");
    }

    #[test]
    fn view_scope() {
        let spec = json!({"scope": {"apiGroup": "ramendr.openshift.io", "version": "v1alpha1",
            "kind": "VolumeReplicationGroup", "name": "a", "namespace": "b"}});
        let s = view_scope_from_json(Some(&spec));
        assert_eq!(s.kind, "VolumeReplicationGroup");
        assert_eq!(s.namespace, "b");
        assert_eq!(s.resource, "");
        assert_eq!(view_scope_from_json(None), pb::ViewScope::default());
    }

    #[test]
    fn status_digest_is_of_the_value_not_its_spelling() {
        let parse = |s: &str| serde_json::from_str::<Value>(s).unwrap();
        let a = parse(r#"{"conditions":[{"type":"Applied","observedGeneration":3}],"x":{}}"#);
        let b = parse(r#"{"x":{},"conditions":[{"observedGeneration":3,"type":"Applied"}]}"#);
        assert_eq!(StatusDigest::of(Some(&a)), StatusDigest::of(Some(&b)));
        let built =
            json!({"conditions": [{"type": "Applied", "observedGeneration": 3i64}], "x": {}});
        assert_eq!(StatusDigest::of(Some(&a)), StatusDigest::of(Some(&built)));

        let differs = [
            r#"{"conditions":[{"type":"Applied","observedGeneration":4}],"x":{}}"#,
            r#"{"conditions":[{"type":"Applied","observedGeneration":"3"}],"x":{}}"#,
            r#"{"conditions":[{"type":"Applied","observedGeneration":3}]}"#,
            r#"{"conditions":[{"type":"Applied","observedGeneration":3}],"x":{"y":null}}"#,
            r#"{"conditions":[],"x":{}}"#,
        ];
        for d in differs {
            assert_ne!(
                StatusDigest::of(Some(&a)),
                StatusDigest::of(Some(&parse(d))),
                "{d}"
            );
        }
        let two = parse(r#"[{"type":"A"},{"type":"B"}]"#);
        let swapped = parse(r#"[{"type":"B"},{"type":"A"}]"#);
        assert_ne!(
            StatusDigest::of(Some(&two)),
            StatusDigest::of(Some(&swapped))
        );
        // No status at all is not an empty one, and neither is what a patch would write.
        assert_ne!(StatusDigest::of(None), StatusDigest::of(Some(&json!({}))));
        assert_eq!(StatusDigest::of(None), StatusDigest::of(Some(&Value::Null)));
    }
}
