//! OCM's "Update" strategy for one object (`apply/update_apply.go:applyUnstructured`
//! plus library-go `resourcemerge`), on JSON values.
//!
//! - create: the manifest, with system fields, status and `key-` removal markers dropped;
//! - update: labels and annotations are merged into the live ones (keys absent from the
//!   manifest stay; a manifest key ending in `-` removes that key), ownerReferences are
//!   merged, live finalizers are kept, everything except metadata and status is replaced
//!   by the manifest, the live resourceVersion is carried for an optimistic update;
//! - a no-op apply is detected so that nothing is written.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// Metadata fields the server owns; a manifest must not send them.
const SYSTEM_METADATA: &[&str] = &[
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
    "managedFields",
    "selfLink",
];

/// The manifest as it is sent for a create.
pub fn prepare_create(required: &Value) -> Value {
    let mut obj = sanitize(required);
    if let Some(md) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        for key in ["labels", "annotations"] {
            if let Some(map) = md.get_mut(key).and_then(Value::as_object_mut) {
                // library-go's WithCleanLabelsAndAnnotations: removal markers are not keys.
                map.retain(|k, _| !k.ends_with('-'));
            }
        }
        if let Some(owners) = md.get_mut("ownerReferences").and_then(Value::as_array_mut) {
            owners.retain(|o| !is_removal_owner(o));
        }
    }
    obj
}

/// Removes what the server owns and the manifest's status.
pub fn sanitize(required: &Value) -> Value {
    let mut obj = required.clone();
    if let Some(map) = obj.as_object_mut() {
        map.remove("status");
        if let Some(md) = map.get_mut("metadata").and_then(Value::as_object_mut) {
            for f in SYSTEM_METADATA {
                md.remove(*f);
            }
        }
    }
    obj
}

/// The object to write over `existing`, and whether writing it changes anything.
#[derive(Clone, Debug, PartialEq)]
pub struct UpdatePlan {
    pub object: Value,
    pub changed: bool,
}

/// Builds the Update-strategy write of `required` over the live object `existing`.
pub fn merge_for_update(existing: &Value, required: &Value) -> UpdatePlan {
    let mut obj = sanitize(required);
    let empty = Map::new();
    let live_md = existing
        .get("metadata")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let mut modified = false;

    let map = obj
        .as_object_mut()
        .expect("manifests are validated to be objects");
    let md = map
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .expect("metadata is an object");

    for key in ["labels", "annotations"] {
        let mut merged = string_map(live_md.get(key));
        let req = string_map(md.get(key));
        merge_map(&mut modified, &mut merged, &req);
        set_or_remove(
            md,
            key,
            merged
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect(),
        );
    }

    let mut owners: Vec<Value> = live_md
        .get("ownerReferences")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let req_owners = md
        .get("ownerReferences")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    merge_owner_refs(&mut modified, &mut owners, &req_owners);
    if owners.is_empty() {
        md.remove("ownerReferences");
    } else {
        md.insert("ownerReferences".into(), Value::Array(owners));
    }

    match live_md.get("finalizers") {
        Some(f) => md.insert("finalizers".into(), f.clone()),
        None => md.remove("finalizers"),
    };
    if let Some(rv) = live_md.get("resourceVersion") {
        md.insert("resourceVersion".into(), rv.clone());
    }

    // A Namespace's spec (its finalizers) belongs to the server; library-go's
    // ApplyNamespace merges only metadata.
    if is_core_namespace(existing) {
        match existing.get("spec") {
            Some(s) => map.insert("spec".into(), s.clone()),
            None => map.remove("spec"),
        };
    }
    // Status is not the manifest's: keep the live one, so a kind without a status
    // subresource does not lose it either.
    if let Some(s) = existing.get("status") {
        map.insert("status".into(), s.clone());
    }

    let changed = modified || !same_content(&obj, existing);
    UpdatePlan {
        object: obj,
        changed,
    }
}

fn is_core_namespace(obj: &Value) -> bool {
    obj.get("apiVersion").and_then(Value::as_str) == Some("v1")
        && obj.get("kind").and_then(Value::as_str) == Some("Namespace")
}

/// OCM's `isSameUnstructured`: equal apiVersion, kind, name, namespace, and equal
/// content once metadata and status are removed.
pub fn same_content(a: &Value, b: &Value) -> bool {
    let field = |v: &Value, k: &str| v.get(k).cloned();
    let md = |v: &Value, k: &str| v.get("metadata").and_then(|m| m.get(k)).cloned();
    if field(a, "apiVersion") != field(b, "apiVersion")
        || field(a, "kind") != field(b, "kind")
        || md(a, "name") != md(b, "name")
        || md(a, "namespace").filter(|v| v != "") != md(b, "namespace").filter(|v| v != "")
    {
        return false;
    }
    let strip = |v: &Value| -> Map<String, Value> {
        let mut m = v.as_object().cloned().unwrap_or_default();
        m.remove("metadata");
        m.remove("status");
        m
    };
    strip(a) == strip(b)
}

fn string_map(v: Option<&Value>) -> Vec<(String, String)> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| v.to_string()),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn set_or_remove(md: &mut Map<String, Value>, key: &str, m: Map<String, Value>) {
    if m.is_empty() {
        md.remove(key);
    } else {
        md.insert(key.into(), Value::Object(m));
    }
}

/// library-go `MergeMap`: sets every required key; a key ending in `-` removes the key
/// without the dash.
fn merge_map(
    modified: &mut bool,
    existing: &mut Vec<(String, String)>,
    required: &[(String, String)],
) {
    for (k, v) in required {
        if let Some(actual) = k.strip_suffix('-') {
            let before = existing.len();
            existing.retain(|(ek, _)| ek != actual);
            *modified |= existing.len() != before;
            continue;
        }
        match existing.iter_mut().find(|(ek, _)| ek == k) {
            Some((_, ev)) if ev == v => {}
            Some((_, ev)) => {
                *ev = v.clone();
                *modified = true;
            }
            None => {
                existing.push((k.clone(), v.clone()));
                *modified = true;
            }
        }
    }
}

fn is_removal_owner(o: &Value) -> bool {
    o.get("uid")
        .and_then(Value::as_str)
        .is_some_and(|u| u.ends_with('-'))
}

fn owner_group(o: &Value) -> &str {
    let av = o.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    av.split_once('/').map(|(g, _)| g).unwrap_or("")
}

fn owner_matches(a: &Value, b: &Value) -> bool {
    a.get("name") == b.get("name")
        && a.get("kind") == b.get("kind")
        && owner_group(a) == owner_group(b)
}

/// library-go `MergeOwnerRefs`: owners match by group, kind and name; a required owner
/// whose uid ends in `-` removes the match.
fn merge_owner_refs(modified: &mut bool, existing: &mut Vec<Value>, required: &[Value]) {
    for o in required {
        let remove = is_removal_owner(o);
        match existing.iter().position(|e| owner_matches(o, e)) {
            None if !remove => {
                existing.push(o.clone());
                *modified = true;
            }
            None => {}
            Some(i) if remove => {
                existing.remove(i);
                *modified = true;
            }
            Some(i) if existing[i] != *o => {
                existing[i] = o.clone();
                *modified = true;
            }
            Some(_) => {}
        }
    }
}

/// Hash of a manifest, for [`ApplyCache`].
pub fn manifest_hash(required: &Value) -> String {
    // serde_json's Map is ordered by key, so the bytes are canonical.
    let bytes = serde_json::to_vec(required).unwrap_or_default();
    hex::encode(Sha256::digest(&bytes))
}

/// Remembers, per object, the manifest last written and the resourceVersion the write
/// produced (library-go's resource cache). When both still match, the live object is
/// exactly what our last write left, so the apply is skipped without comparing: this
/// avoids rewriting objects whose spec the server defaults.
#[derive(Debug, Default, Clone)]
pub struct ApplyCache {
    entries: HashMap<String, (String, String)>,
}

impl ApplyCache {
    pub fn safe_to_skip(
        &self,
        key: &str,
        required_hash: &str,
        live_resource_version: &str,
    ) -> bool {
        self.entries.get(key).is_some_and(|(h, rv)| {
            h == required_hash && rv == live_resource_version && !rv.is_empty()
        })
    }

    pub fn record(&mut self, key: &str, required_hash: &str, resource_version: &str) {
        self.entries.insert(
            key.to_string(),
            (required_hash.to_string(), resource_version.to_string()),
        );
    }

    pub fn forget(&mut self, key: &str) {
        self.entries.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn live_vrg() -> Value {
        json!({
            "apiVersion": "ramendr.openshift.io/v1alpha1", "kind": "VolumeReplicationGroup",
            "metadata": {
                "name": "app", "namespace": "ns", "uid": "u-1", "resourceVersion": "42",
                "generation": 3, "creationTimestamp": "2026-01-01T00:00:00Z",
                "labels": {"keep": "1", "change": "old"},
                "annotations": {"drplacementcontrol.ramendr.openshift.io/test-failover-dryrun": "true"},
                "finalizers": ["volumereplicationgroups.ramendr.openshift.io/vrg-protection"],
                "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "o", "uid": "x"}],
                "managedFields": [{"manager": "ramen"}]
            },
            "spec": {"replicationState": "primary", "extra": "defaulted"},
            "status": {"state": "Primary"}
        })
    }

    fn manifest() -> Value {
        json!({
            "apiVersion": "ramendr.openshift.io/v1alpha1", "kind": "VolumeReplicationGroup",
            "metadata": {"name": "app", "namespace": "ns", "uid": "hub-uid", "creationTimestamp": null,
                          "resourceVersion": "1", "labels": {"change": "new", "added": "y"},
                          "annotations": {"drplacementcontrol.ramendr.openshift.io/destination-cluster": "c2"}},
            "spec": {"replicationState": "secondary"},
            "status": {"state": ""}
        })
    }

    #[test]
    fn update_merges_labels_and_annotations_and_replaces_spec() {
        let plan = merge_for_update(&live_vrg(), &manifest());
        assert!(plan.changed);
        let o = &plan.object;
        assert_eq!(
            o["metadata"]["labels"],
            json!({"keep": "1", "change": "new", "added": "y"})
        );
        // Ramen depends on this: an annotation absent from the manifest is not removed.
        assert_eq!(
            o["metadata"]["annotations"],
            json!({"drplacementcontrol.ramendr.openshift.io/test-failover-dryrun": "true",
                   "drplacementcontrol.ramendr.openshift.io/destination-cluster": "c2"})
        );
        assert_eq!(o["spec"], json!({"replicationState": "secondary"}));
        assert_eq!(
            o["metadata"]["finalizers"],
            json!(["volumereplicationgroups.ramendr.openshift.io/vrg-protection"])
        );
        assert_eq!(o["metadata"]["resourceVersion"], json!("42"));
        assert!(o["metadata"].get("uid").is_none());
        assert!(o["metadata"].get("creationTimestamp").is_none());
        assert!(o["metadata"].get("managedFields").is_none());
        // Manifest status is ignored; the live one is kept.
        assert_eq!(o["status"], json!({"state": "Primary"}));
        assert_eq!(
            o["metadata"]["ownerReferences"].as_array().unwrap().len(),
            1
        );
    }

    #[test]
    fn noop_apply_is_detected() {
        let mut live = live_vrg();
        live["spec"] = json!({"replicationState": "secondary"});
        live["metadata"]["labels"] = json!({"keep": "1", "change": "new", "added": "y"});
        live["metadata"]["annotations"]["drplacementcontrol.ramendr.openshift.io/destination-cluster"] =
            json!("c2");
        let plan = merge_for_update(&live, &manifest());
        assert!(!plan.changed, "{:#}", plan.object);
        // A single label value change is a change.
        let mut m = manifest();
        m["metadata"]["labels"]["keep"] = json!("2");
        assert!(merge_for_update(&live, &m).changed);
        // A spec field the server added (not in the manifest) is a difference, as in OCM.
        live["spec"]["extra"] = json!(1);
        assert!(merge_for_update(&live, &manifest()).changed);
    }

    #[test]
    fn removal_markers() {
        let mut m = manifest();
        m["metadata"]["labels"] = json!({"keep-": ""});
        m["metadata"]["ownerReferences"] =
            json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "o", "uid": "x-"}]);
        let plan = merge_for_update(&live_vrg(), &m);
        assert_eq!(plan.object["metadata"]["labels"], json!({"change": "old"}));
        assert!(plan.object["metadata"].get("ownerReferences").is_none());
        let created = prepare_create(&m);
        assert!(
            created["metadata"]
                .get("labels")
                .unwrap()
                .as_object()
                .unwrap()
                .is_empty()
        );
        assert!(
            created["metadata"]["ownerReferences"]
                .as_array()
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn owner_refs_merge_by_group_kind_name() {
        let mut m = manifest();
        m["metadata"]["ownerReferences"] = json!([
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "o", "uid": "y"},
            {"apiVersion": "apps/v1", "kind": "Deployment", "name": "d", "uid": "z"}
        ]);
        let plan = merge_for_update(&live_vrg(), &m);
        let owners = plan.object["metadata"]["ownerReferences"]
            .as_array()
            .unwrap();
        assert_eq!(owners.len(), 2);
        assert_eq!(owners[0]["uid"], "y");
        assert_eq!(owners[1]["kind"], "Deployment");
    }

    #[test]
    fn create_drops_system_fields_and_status() {
        let c = prepare_create(&manifest());
        assert!(c.get("status").is_none());
        for f in ["uid", "resourceVersion", "creationTimestamp"] {
            assert!(c["metadata"].get(f).is_none(), "{f}");
        }
        assert_eq!(c["spec"], json!({"replicationState": "secondary"}));
    }

    #[test]
    fn namespace_spec_is_the_servers() {
        let live = json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "app", "resourceVersion": "7", "labels": {"a": "1"}},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}});
        // What Ramen sends: json.Marshal(corev1.Namespace).
        let m = json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "app", "creationTimestamp": null, "labels": {"a": "1"}}, "spec": {}, "status": {}});
        let plan = merge_for_update(&live, &m);
        assert!(!plan.changed, "{:#}", plan.object);
        assert_eq!(plan.object["spec"], json!({"finalizers": ["kubernetes"]}));
    }

    #[test]
    fn same_content_ignores_metadata_and_status_only() {
        let a = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "labels": {"x": "1"}}, "data": {"k": "v"}, "status": {"x": 1}});
        let b = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "v"}});
        assert!(same_content(&a, &b));
        let c = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b"}, "data": {"k": "v"}});
        assert!(!same_content(&a, &c));
        let d = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}});
        assert!(!same_content(&a, &d));
    }

    #[test]
    fn apply_cache() {
        let mut c = ApplyCache::default();
        let h = manifest_hash(&manifest());
        assert!(!c.safe_to_skip("k", &h, "5"));
        c.record("k", &h, "5");
        assert!(c.safe_to_skip("k", &h, "5"));
        assert!(!c.safe_to_skip("k", &h, "6"), "someone else wrote");
        assert!(!c.safe_to_skip("k", "other", "5"), "manifest changed");
        c.forget("k");
        assert!(!c.safe_to_skip("k", &h, "5"));
        assert_eq!(
            manifest_hash(&json!({"b": 1, "a": 2})),
            manifest_hash(&json!({"a": 2, "b": 1}))
        );
    }
}
