//! What must hold through any fault, checked on the real API servers.
//!
//! * [`StatusWatch`]: on the hub, no ManifestWork's Applied `observedGeneration` goes back and
//!   no ManifestWork or ManagedClusterView loses its status once it had one.
//! * [`Kept`]: nothing a work applied is deleted (or replaced) on a managed cluster unless the
//!   hub asked: the work deleted, or the manifest dropped from its newer generation.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use kube::api::{Api, DynamicObject};
use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::Scope;
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::Value;

use crate::Error;

/// ManifestWork, as the hub serves it.
pub fn work_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("work.open-cluster-management.io", "v1", "ManifestWork"),
        "manifestworks",
    )
}

/// ManagedClusterView, as the hub serves it.
pub fn view_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(
            "view.open-cluster-management.io",
            "v1beta1",
            "ManagedClusterView",
        ),
        "managedclusterviews",
    )
}

/// The condition `type_` of an object's status.
pub fn condition<'a>(obj: &'a DynamicObject, type_: &str) -> Option<&'a Value> {
    obj.data["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

fn has_status(obj: &DynamicObject) -> bool {
    obj.data["status"]["conditions"]
        .as_array()
        .is_some_and(|c| !c.is_empty())
}

fn key(obj: &DynamicObject) -> String {
    format!(
        "{}/{}",
        obj.metadata.namespace.as_deref().unwrap_or_default(),
        obj.metadata.name.as_deref().unwrap_or_default()
    )
}

/// Watches works and views in the hub namespaces of `clusters` and records every violation
/// until dropped.
#[derive(Debug)]
pub struct StatusWatch {
    violations: Arc<Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl StatusWatch {
    pub fn start(hub: &kube::Client, clusters: &[&str]) -> StatusWatch {
        let violations = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for c in clusters {
            for (ar, generations) in [(work_resource(), true), (view_resource(), false)] {
                let api = Api::namespaced_with(hub.clone(), c, &ar);
                tasks.push(tokio::spawn(watch_statuses(
                    api,
                    ar.kind.clone(),
                    generations,
                    violations.clone(),
                )));
            }
        }
        StatusWatch { violations, tasks }
    }

    /// What went wrong so far.
    pub fn violations(&self) -> Vec<String> {
        self.violations.lock().unwrap().clone()
    }
}

impl Drop for StatusWatch {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Per object uid: its highest Applied observedGeneration and whether it had a status.
async fn watch_statuses(
    api: Api<DynamicObject>,
    kind: String,
    generations: bool,
    violations: Arc<Mutex<Vec<String>>>,
) {
    let mut seen: BTreeMap<String, (Option<i64>, bool)> = BTreeMap::new();
    let events = watcher(api, watcher::Config::default())
        .default_backoff()
        .applied_objects();
    let mut events = std::pin::pin!(events);
    while let Some(ev) = events.next().await {
        let Ok(obj) = ev else { continue };
        let uid = obj.metadata.uid.clone().unwrap_or_default();
        let (was_gen, had_status) = seen.entry(uid).or_insert((None, false));
        let status = has_status(&obj);
        if *had_status && !status {
            violations
                .lock()
                .unwrap()
                .push(format!("{kind} {}: its status was lost", key(&obj)));
        }
        *had_status |= status;
        if !generations {
            continue;
        }
        let Some(g) = condition(&obj, "Applied").and_then(|c| c["observedGeneration"].as_i64())
        else {
            continue;
        };
        if let Some(was) = *was_gen
            && g < was
        {
            violations.lock().unwrap().push(format!(
                "{kind} {}: Applied observedGeneration went back {was} -> {g}",
                key(&obj)
            ));
        }
        *was_gen = Some(was_gen.map_or(g, |w| w.max(g)));
    }
}

/// One object a work applied, as it was when [`Kept::record`] looked.
#[derive(Clone, Debug)]
struct Applied {
    cluster: String,
    work: String,
    work_uid: String,
    manifest: ManifestKey,
    uid: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct ManifestKey {
    api_version: String,
    kind: String,
    namespace: Option<String>,
    name: String,
}

impl ManifestKey {
    fn of(m: &Value) -> Option<ManifestKey> {
        Some(ManifestKey {
            api_version: m["apiVersion"].as_str()?.to_string(),
            kind: m["kind"].as_str()?.to_string(),
            namespace: m["metadata"]["namespace"].as_str().map(str::to_string),
            name: m["metadata"]["name"].as_str()?.to_string(),
        })
    }

    fn gvk(&self) -> GroupVersionKind {
        let (group, version) = match self.api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", self.api_version.as_str()),
        };
        GroupVersionKind::gvk(group, version, &self.kind)
    }
}

fn manifests(work: &DynamicObject) -> Vec<ManifestKey> {
    work.data["spec"]["workload"]["manifests"]
        .as_array()
        .map(|ms| ms.iter().filter_map(ManifestKey::of).collect())
        .unwrap_or_default()
}

/// The objects the works of some clusters had applied at one moment.
#[derive(Debug, Default)]
pub struct Kept {
    applied: Vec<Applied>,
}

impl Kept {
    /// Every object that a live (not deleting) work of each cluster lists and that exists on
    /// that cluster, with its uid.
    pub async fn record(
        hub: &kube::Client,
        spokes: &[(String, kube::Client)],
    ) -> Result<Kept, Error> {
        let mut applied = Vec::new();
        for (cluster, spoke) in spokes {
            let works: Api<DynamicObject> =
                Api::namespaced_with(hub.clone(), cluster, &work_resource());
            for w in works.list(&Default::default()).await? {
                if w.metadata.deletion_timestamp.is_some() {
                    continue;
                }
                for m in manifests(&w) {
                    if let Some(uid) = spoke_uid(spoke, &m).await? {
                        applied.push(Applied {
                            cluster: cluster.clone(),
                            work: w.metadata.name.clone().unwrap_or_default(),
                            work_uid: w.metadata.uid.clone().unwrap_or_default(),
                            manifest: m,
                            uid,
                        });
                    }
                }
            }
        }
        Ok(Kept { applied })
    }

    /// How many objects were recorded.
    pub fn len(&self) -> usize {
        self.applied.len()
    }

    pub fn is_empty(&self) -> bool {
        self.applied.is_empty()
    }

    /// The recorded objects that are gone or replaced although the hub did not ask. The spoke
    /// is read before the work, so a deletion asked for in between is seen as asked.
    pub async fn violations(
        &self,
        hub: &kube::Client,
        spokes: &[(String, kube::Client)],
    ) -> Result<Vec<String>, Error> {
        let mut out = Vec::new();
        for a in &self.applied {
            let Some((_, spoke)) = spokes.iter().find(|(c, _)| *c == a.cluster) else {
                continue;
            };
            let now = spoke_uid(spoke, &a.manifest).await?;
            if now.as_deref() == Some(a.uid.as_str()) {
                continue;
            }
            let works: Api<DynamicObject> =
                Api::namespaced_with(hub.clone(), &a.cluster, &work_resource());
            let asked = match works.get_opt(&a.work).await? {
                None => true,
                Some(w) => {
                    w.metadata.uid.as_deref() != Some(a.work_uid.as_str())
                        || w.metadata.deletion_timestamp.is_some()
                        || !manifests(&w).contains(&a.manifest)
                }
            };
            if !asked {
                out.push(format!(
                    "{}: {} {}/{} of work {} was {} without the hub asking",
                    a.cluster,
                    a.manifest.kind,
                    a.manifest.namespace.as_deref().unwrap_or_default(),
                    a.manifest.name,
                    a.work,
                    if now.is_some() { "replaced" } else { "deleted" },
                ));
            }
        }
        Ok(out)
    }
}

/// The uid of the object `m` names on `spoke`, if it exists (and its kind is served).
async fn spoke_uid(spoke: &kube::Client, m: &ManifestKey) -> Result<Option<String>, Error> {
    let Ok((ar, caps)) = kube::discovery::pinned_kind(spoke, &m.gvk()).await else {
        return Ok(None);
    };
    let api: Api<DynamicObject> = match (&caps.scope, &m.namespace) {
        (Scope::Namespaced, Some(ns)) => Api::namespaced_with(spoke.clone(), ns, &ar),
        (Scope::Namespaced, None) => return Ok(None),
        (Scope::Cluster, _) => Api::all_with(spoke.clone(), &ar),
    };
    Ok(api.get_opt(&m.name).await?.and_then(|o| o.metadata.uid))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn manifests_are_keyed_by_what_names_them() {
        let w: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "work.open-cluster-management.io/v1",
            "kind": "ManifestWork",
            "metadata": {"name": "w", "namespace": "dr1"},
            "spec": {"workload": {"manifests": [
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "app"}},
                {"apiVersion": "ramendr.openshift.io/v1alpha1", "kind": "VolumeReplicationGroup",
                 "metadata": {"name": "vrg", "namespace": "app"}},
                {"kind": "Broken"}
            ]}}
        }))
        .unwrap();
        let ms = manifests(&w);
        assert_eq!(
            ms.len(),
            2,
            "a manifest without apiVersion or name names nothing"
        );
        assert_eq!(ms[0].gvk(), GroupVersionKind::gvk("", "v1", "Namespace"));
        assert_eq!(
            ms[1].gvk(),
            GroupVersionKind::gvk("ramendr.openshift.io", "v1alpha1", "VolumeReplicationGroup")
        );
        assert_eq!(ms[1].namespace.as_deref(), Some("app"));
    }
}
