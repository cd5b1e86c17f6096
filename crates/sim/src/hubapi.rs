//! The hub's Kubernetes API server, in memory: ManifestWorks and ManagedClusters as JSON, with
//! uids, generations (bumped by spec changes only), resourceVersions, finalizers and deletion,
//! merge patches with `metadata.uid`/`metadata.resourceVersion` preconditions, and a watch log.
//!
//! It also keeps the oracle the invariants need: every generation of every work, and which
//! works were deleted, so that a deletion on a spoke can be judged.

use std::collections::{BTreeMap, BTreeSet};

use drbridge_hub::objects::{ClusterObject, WorkObject};
use kube::api::DynamicObject;
use serde_json::{Value, json};

use crate::Violation;

/// One change, as a watch delivers it.
#[derive(Clone, Debug)]
pub enum Event {
    Work(Value),
    WorkDeleted { namespace: String, name: String },
    Cluster(Value),
}

/// Why a write was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteError {
    Conflict,
    NotFound,
}

/// What the oracle knows of one incarnation (uid) of a work.
#[derive(Clone, Debug, Default)]
pub struct Incarnation {
    pub namespace: String,
    pub name: String,
    /// Object names each valid generation lists.
    pub generations: BTreeMap<i64, BTreeSet<String>>,
    /// Deletion was requested on the hub.
    pub deleted: bool,
}

#[derive(Debug, Default)]
pub struct HubApi {
    works: BTreeMap<(String, String), Value>,
    clusters: BTreeMap<String, Value>,
    pub log: Vec<Event>,
    rv: u64,
    uids: u64,
    /// Epoch annotation of the Lease: the last term's epoch.
    pub lease_epoch: Option<u64>,
    /// Every incarnation ever created, by uid.
    pub incarnations: BTreeMap<String, Incarnation>,
    /// Highest observedGeneration of `Applied` written per uid.
    written: BTreeMap<String, i64>,
}

/// The object names a spec's manifests name (the sim's are unique per work).
pub fn manifest_names(spec: &Value) -> Option<BTreeSet<String>> {
    let list = spec.pointer("/workload/manifests")?.as_array()?;
    Some(
        list.iter()
            .filter_map(|m| m.pointer("/metadata/name")?.as_str().map(str::to_string))
            .collect(),
    )
}

fn to_dynamic(v: &Value) -> DynamicObject {
    serde_json::from_value(v.clone()).expect("the fake API server stores valid objects")
}

/// RFC 7386 JSON merge patch.
pub fn merge(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = json!({});
            }
            let t = target.as_object_mut().expect("made an object above");
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

fn applied_generation(status: &Value) -> Option<i64> {
    status
        .get("conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some("Applied"))?
        .get("observedGeneration")?
        .as_i64()
}

impl HubApi {
    fn bump(&mut self) -> String {
        self.rv += 1;
        self.rv.to_string()
    }

    pub fn add_cluster(&mut self, name: &str) {
        let rv = self.bump();
        self.uids += 1;
        let obj = json!({
            "apiVersion": "cluster.open-cluster-management.io/v1", "kind": "ManagedCluster",
            "metadata": {"name": name, "uid": format!("mc-{}", self.uids), "resourceVersion": rv, "generation": 1},
            "spec": {"hubAcceptsClient": true},
        });
        self.clusters.insert(name.to_string(), obj.clone());
        self.log.push(Event::Cluster(obj));
    }

    pub fn work(&self, namespace: &str, name: &str) -> Option<&Value> {
        self.works.get(&(namespace.to_string(), name.to_string()))
    }

    pub fn works(&self) -> impl Iterator<Item = &Value> {
        self.works.values()
    }

    pub fn work_objects(&self) -> Vec<WorkObject> {
        self.works
            .values()
            .filter_map(|v| WorkObject::from_dynamic(&to_dynamic(v)))
            .collect()
    }

    pub fn cluster_objects(&self) -> Vec<ClusterObject> {
        self.clusters
            .values()
            .filter_map(|v| ClusterObject::from_dynamic(&to_dynamic(v)))
            .collect()
    }

    pub fn work_object(v: &Value) -> Option<WorkObject> {
        WorkObject::from_dynamic(&to_dynamic(v))
    }

    pub fn cluster_object(v: &Value) -> Option<ClusterObject> {
        ClusterObject::from_dynamic(&to_dynamic(v))
    }

    fn remember(&mut self, obj: &Value) {
        let md = &obj["metadata"];
        let uid = md["uid"].as_str().unwrap_or_default().to_string();
        let inc = self.incarnations.entry(uid).or_default();
        inc.namespace = md["namespace"].as_str().unwrap_or_default().to_string();
        inc.name = md["name"].as_str().unwrap_or_default().to_string();
        if let Some(names) = obj.get("spec").and_then(manifest_names) {
            let generation = md["generation"].as_i64().unwrap_or_default();
            inc.generations.insert(generation, names);
        }
    }

    /// Ramen creates (or, with another spec, updates) a work.
    pub fn put_work(&mut self, namespace: &str, name: &str, spec: Value) {
        let key = (namespace.to_string(), name.to_string());
        let rv = self.bump();
        let obj = match self.works.get(&key) {
            Some(old) => {
                if old.pointer("/metadata/deletionTimestamp").is_some() {
                    return; // A deleting object takes no spec changes in the sim.
                }
                let mut o = old.clone();
                if o["spec"] != spec {
                    let g = o["metadata"]["generation"].as_i64().unwrap_or(1);
                    o["metadata"]["generation"] = json!(g + 1);
                    o["spec"] = spec;
                }
                o["metadata"]["resourceVersion"] = json!(rv);
                o
            }
            None => {
                self.uids += 1;
                json!({
                    "apiVersion": "work.open-cluster-management.io/v1", "kind": "ManifestWork",
                    "metadata": {"namespace": namespace, "name": name, "uid": format!("{namespace}-{name}-{}", self.uids),
                                 "resourceVersion": rv, "generation": 1},
                    "spec": spec,
                })
            }
        };
        self.remember(&obj);
        self.works.insert(key, obj.clone());
        self.log.push(Event::Work(obj));
    }

    /// Ramen deletes a work: it goes at once without finalizers, else it is marked.
    pub fn delete_work(&mut self, namespace: &str, name: &str) {
        let key = (namespace.to_string(), name.to_string());
        let Some(mut obj) = self.works.get(&key).cloned() else {
            return;
        };
        let uid = obj["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if let Some(inc) = self.incarnations.get_mut(&uid) {
            inc.deleted = true;
        }
        let has_finalizers = obj
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty());
        if !has_finalizers {
            self.works.remove(&key);
            self.bump();
            self.log.push(Event::WorkDeleted {
                namespace: key.0,
                name: key.1,
            });
            return;
        }
        if obj.pointer("/metadata/deletionTimestamp").is_some() {
            return;
        }
        obj["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        obj["metadata"]["resourceVersion"] = json!(self.bump());
        self.works.insert(key, obj.clone());
        self.log.push(Event::Work(obj));
    }

    /// A merge patch from the hub, `status` (the subresource) or `metadata.finalizers`,
    /// guarded by the patch's `metadata.uid` and `metadata.resourceVersion`.
    pub fn patch_work(
        &mut self,
        namespace: &str,
        name: &str,
        patch: &Value,
        status: bool,
    ) -> Result<Result<(), WriteError>, Violation> {
        let key = (namespace.to_string(), name.to_string());
        let Some(mut obj) = self.works.get(&key).cloned() else {
            return Ok(Err(WriteError::NotFound));
        };
        for field in ["uid", "resourceVersion"] {
            if let Some(want) = patch.pointer(&format!("/metadata/{field}"))
                && !want.is_null()
                && *want != obj["metadata"][field]
            {
                return Ok(Err(WriteError::Conflict));
            }
        }
        let uid = obj["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let generation = obj["metadata"]["generation"].as_i64().unwrap_or_default();
        if status {
            let new = patch.get("status").cloned().unwrap_or(Value::Null);
            if let Some(g) = applied_generation(&new) {
                let seen = self.written.get(&uid).copied().unwrap_or(i64::MIN);
                // Invariant 3: a status never goes back to an older generation, and never
                // claims one the object does not have.
                if g < seen {
                    return Err(Violation::new(
                        3,
                        format!(
                            "{namespace}/{name}: status of generation {g} written over generation {seen}"
                        ),
                    ));
                }
                if g > generation {
                    return Err(Violation::new(
                        3,
                        format!(
                            "{namespace}/{name}: status of generation {g} written on generation {generation}"
                        ),
                    ));
                }
                self.written.insert(uid, g);
            }
            if new.to_string().contains("Forged") {
                return Err(Violation::new(
                    4,
                    format!("{namespace}/{name}: a report forged by another cluster was written"),
                ));
            }
            merge(&mut obj["status"], &new);
        } else if let Some(f) = patch.pointer("/metadata/finalizers") {
            obj["metadata"]["finalizers"] = f.clone();
        }
        let gone = obj.pointer("/metadata/deletionTimestamp").is_some()
            && obj
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .is_none_or(|f| f.is_empty());
        self.bump();
        if gone {
            self.works.remove(&key);
            self.log.push(Event::WorkDeleted {
                namespace: key.0,
                name: key.1,
            });
        } else {
            obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
            self.works.insert(key, obj.clone());
            self.log.push(Event::Work(obj));
        }
        Ok(Ok(()))
    }

    /// The namespace a uid was created in, if it was.
    pub fn namespace_of(&self, uid: &str) -> Option<&str> {
        self.incarnations.get(uid).map(|i| i.namespace.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations_preconditions_and_finalizers() {
        let mut api = HubApi::default();
        api.put_work("c1", "w", json!({"workload": {"manifests": []}}));
        api.put_work("c1", "w", json!({"workload": {"manifests": []}}));
        let w = api.work("c1", "w").unwrap().clone();
        assert_eq!(w["metadata"]["generation"], 1, "same spec: same generation");
        let rv = w["metadata"]["resourceVersion"].clone();
        let fin = json!({"metadata": {"uid": w["metadata"]["uid"], "resourceVersion": "0", "finalizers": ["f"]}});
        assert_eq!(
            api.patch_work("c1", "w", &fin, false).unwrap(),
            Err(WriteError::Conflict)
        );
        let fin = json!({"metadata": {"uid": w["metadata"]["uid"], "resourceVersion": rv, "finalizers": ["f"]}});
        assert_eq!(api.patch_work("c1", "w", &fin, false).unwrap(), Ok(()));
        api.delete_work("c1", "w");
        assert!(api.work("c1", "w").is_some(), "held by its finalizer");
        let w = api.work("c1", "w").unwrap().clone();
        let release = json!({"metadata": {"uid": w["metadata"]["uid"], "resourceVersion": w["metadata"]["resourceVersion"], "finalizers": []}});
        assert_eq!(api.patch_work("c1", "w", &release, false).unwrap(), Ok(()));
        assert!(api.work("c1", "w").is_none());
    }

    #[test]
    fn an_older_status_is_a_violation() {
        let mut api = HubApi::default();
        api.put_work("c1", "w", json!({"workload": {"manifests": []}}));
        api.put_work(
            "c1",
            "w",
            json!({"workload": {"manifests": [{"metadata": {"name": "x"}}]}}),
        );
        let status = |g: i64| json!({"status": {"conditions": [{"type": "Applied", "observedGeneration": g}]}});
        assert_eq!(api.patch_work("c1", "w", &status(2), true).unwrap(), Ok(()));
        let err = api.patch_work("c1", "w", &status(1), true).unwrap_err();
        assert_eq!(err.invariant, 3);
        assert_eq!(
            api.patch_work("c1", "w", &status(3), true)
                .unwrap_err()
                .invariant,
            3
        );
    }
}
