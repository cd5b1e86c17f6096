//! An in-memory [`Cluster`] for tests: objects with uids, resource versions, finalizers
//! and watches, and no API server. Also usable by in-process hub+agent tests, and by the
//! simulation (`drbridge-sim`), which slows every call down and watches what is written
//! through an [`Observer`].

use std::collections::BTreeMap;
use std::sync::Arc;

use drbridge_model::Gvk;
use drbridge_model::view::{no_kind_match_text, not_found_text, unknown_resource_text};
use futures::StreamExt;
use futures::future::BoxFuture;
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;

use crate::cluster::{Cluster, ClusterError, Resolved, WatchEvent, WatchStream};

type Key = (String, String, String, String);

#[derive(Debug, Default)]
struct Inner {
    kinds: Vec<Resolved>,
    objects: BTreeMap<Key, Value>,
    next_rv: u64,
    next_uid: u64,
    writes: usize,
    /// Errors returned by the next create/replace of a kind.
    fail_writes: BTreeMap<String, ClusterError>,
    /// Errors every discovery of a group returns until cleared (an API-server blip, an
    /// aggregated API that is down, a timeout).
    fail_discovery: BTreeMap<String, ClusterError>,
    /// Errors every read (get) of a kind returns until cleared.
    fail_reads: BTreeMap<String, ClusterError>,
    /// Number of delete calls so far, per kind.
    deletes: BTreeMap<String, usize>,
}

/// What a test wants to happen around the API calls the agent makes to a [`FakeCluster`]
/// (its [`Cluster`] methods; not the test's own `put`, `object` and the like).
pub trait Observer: Send + Sync + std::fmt::Debug {
    /// Before each call that would reach the API server: discovery, get, the writes and
    /// delete (not the watches, nor the server version). May take (virtual) time, so that
    /// the agent can be stopped between any two calls.
    fn before_call(&self) -> BoxFuture<'_, ()> {
        Box::pin(futures::future::ready(()))
    }
    /// The object of a create, replace or server-side apply, before it is written.
    fn writing(&self, _obj: &Value) {}
    /// A delete that found `name` and succeeded: the object is gone, or being deleted.
    fn deleted(&self, _r: &Resolved, _ns: &str, _name: &str) {}
}

/// See the module documentation.
#[derive(Clone, Debug)]
pub struct FakeCluster {
    inner: Arc<Mutex<Inner>>,
    events: broadcast::Sender<(Resolved, WatchEvent)>,
    observer: Option<Arc<dyn Observer>>,
}

impl Default for FakeCluster {
    fn default() -> Self {
        Self::new()
    }
}

fn key(r: &Resolved, ns: &str, name: &str) -> Key {
    (
        r.group.clone(),
        r.plural.clone(),
        if r.namespaced {
            ns.to_string()
        } else {
            String::new()
        },
        name.to_string(),
    )
}

fn meta_only(v: &Value) -> Value {
    json!({"apiVersion": v["apiVersion"], "kind": v["kind"], "metadata": v["metadata"]})
}

impl FakeCluster {
    /// A cluster serving the core kinds the tests use (Namespace, ConfigMap, Secret),
    /// RBAC ClusterRoles and Ramen's VolumeReplicationGroup.
    pub fn new() -> Self {
        let (events, _) = broadcast::channel(4096);
        let c = FakeCluster {
            inner: Arc::default(),
            events,
            observer: None,
        };
        c.add_kind("", "v1", "Namespace", "namespaces", false);
        c.add_kind("", "v1", "ConfigMap", "configmaps", true);
        c.add_kind("", "v1", "Secret", "secrets", true);
        c.add_kind(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRole",
            "clusterroles",
            false,
        );
        c.add_kind(
            "ramendr.openshift.io",
            "v1alpha1",
            "VolumeReplicationGroup",
            "volumereplicationgroups",
            true,
        );
        c
    }

    /// The same cluster with `observer` told about each of the agent's calls.
    pub fn observed_by(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = Some(observer);
        self
    }

    async fn before_call(&self) {
        if let Some(o) = &self.observer {
            o.before_call().await;
        }
    }

    /// A create, replace or apply the agent asks for: observed, then `write` makes it.
    async fn observed_write(
        &self,
        obj: Value,
        write: impl FnOnce(Value) -> Result<Value, ClusterError>,
    ) -> Result<Value, ClusterError> {
        self.before_call().await;
        if let Some(o) = &self.observer {
            o.writing(&obj);
        }
        write(obj)
    }

    pub fn add_kind(
        &self,
        group: &str,
        version: &str,
        kind: &str,
        plural: &str,
        namespaced: bool,
    ) -> Resolved {
        let r = Resolved {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
            plural: plural.into(),
            namespaced,
        };
        self.inner.lock().kinds.push(r.clone());
        r
    }

    pub fn kind(&self, kind: &str) -> Resolved {
        self.inner
            .lock()
            .kinds
            .iter()
            .find(|r| r.kind == kind)
            .cloned()
            .expect("known kind")
    }

    /// The stored object.
    pub fn object(&self, kind: &str, ns: &str, name: &str) -> Option<Value> {
        let r = self.kind(kind);
        self.inner.lock().objects.get(&key(&r, ns, name)).cloned()
    }

    /// Number of create/replace/apply/delete calls so far.
    pub fn writes(&self) -> usize {
        self.inner.lock().writes
    }

    /// Makes the next write of `kind` fail with `err`.
    pub fn fail_next_write(&self, kind: &str, err: ClusterError) {
        self.inner.lock().fail_writes.insert(kind.to_string(), err);
    }

    /// Makes every discovery of `group` fail with `err` until called with `None`.
    pub fn fail_discovery(&self, group: &str, err: Option<ClusterError>) {
        let mut inner = self.inner.lock();
        match err {
            Some(e) => inner.fail_discovery.insert(group.to_string(), e),
            None => inner.fail_discovery.remove(group),
        };
    }

    /// Makes every read (get) of `kind` fail with `err` until called with `None`.
    pub fn fail_reads(&self, kind: &str, err: Option<ClusterError>) {
        let mut inner = self.inner.lock();
        match err {
            Some(e) => inner.fail_reads.insert(kind.to_string(), e),
            None => inner.fail_reads.remove(kind),
        };
    }

    /// A timeout, in the words of the API server.
    pub fn timeout() -> ClusterError {
        ClusterError::Transport(
            "Timeout: request did not complete within requested timeout - context deadline exceeded"
                .into(),
        )
    }

    /// Number of delete calls for `kind` so far (successful or not).
    pub fn deletes(&self, kind: &str) -> usize {
        self.inner.lock().deletes.get(kind).copied().unwrap_or(0)
    }

    /// Number of delete calls so far, every kind.
    pub fn delete_calls(&self) -> usize {
        self.inner.lock().deletes.values().sum()
    }

    /// Every stored object as (kind, namespace, name), sorted.
    pub fn names(&self) -> Vec<(String, String, String)> {
        let inner = self.inner.lock();
        let mut out: Vec<(String, String, String)> = inner
            .objects
            .iter()
            .map(|((g, p, ns, n), _)| {
                let kind = inner
                    .kinds
                    .iter()
                    .find(|r| &r.group == g && &r.plural == p)
                    .map(|r| r.kind.clone())
                    .unwrap_or_default();
                (kind, ns.clone(), n.clone())
            })
            .collect();
        out.sort();
        out
    }

    /// A write by someone else (a user or another controller).
    pub fn put(&self, kind: &str, obj: Value) -> Value {
        let r = self.kind(kind);
        let ns = obj
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let mut inner = self.inner.lock();
        let k = key(&r, &ns, &name);
        let existing_uid = inner.objects.get(&k).map(|o| o["metadata"]["uid"].clone());
        let mut obj = obj;
        Self::stamp(&mut inner, &mut obj, existing_uid);
        inner.objects.insert(k, obj.clone());
        drop(inner);
        let _ = self.events.send((r, WatchEvent::Applied(obj.clone())));
        obj
    }

    /// Removes every finalizer (as the object's controller would), which completes a
    /// pending deletion.
    pub fn remove_finalizers(&self, kind: &str, ns: &str, name: &str) {
        let r = self.kind(kind);
        let mut inner = self.inner.lock();
        let k = key(&r, ns, name);
        let Some(mut obj) = inner.objects.get(&k).cloned() else {
            return;
        };
        obj["metadata"]
            .as_object_mut()
            .expect("metadata")
            .remove("finalizers");
        let ev = if obj.pointer("/metadata/deletionTimestamp").is_some() {
            inner.objects.remove(&k);
            WatchEvent::Deleted(obj)
        } else {
            Self::stamp(&mut inner, &mut obj, None);
            inner.objects.insert(k, obj.clone());
            WatchEvent::Applied(obj)
        };
        drop(inner);
        let _ = self.events.send((r, ev));
    }

    /// Deletes an object behind the agent's back (no finalizer handling).
    pub fn delete_external(&self, kind: &str, ns: &str, name: &str) {
        let r = self.kind(kind);
        let removed = self.inner.lock().objects.remove(&key(&r, ns, name));
        if let Some(o) = removed {
            let _ = self.events.send((r, WatchEvent::Deleted(o)));
        }
    }

    fn stamp(inner: &mut Inner, obj: &mut Value, uid: Option<Value>) {
        inner.next_rv += 1;
        let rv = inner.next_rv.to_string();
        let md = obj["metadata"].as_object_mut().expect("metadata");
        md.insert("resourceVersion".into(), Value::String(rv));
        match uid {
            Some(u) if !u.is_null() => {
                md.insert("uid".into(), u);
            }
            _ => {
                inner.next_uid += 1;
                md.insert(
                    "uid".into(),
                    Value::String(format!("uid-{}", inner.next_uid)),
                );
                md.insert(
                    "creationTimestamp".into(),
                    Value::String("2026-01-01T00:00:00Z".into()),
                );
            }
        }
    }

    fn check_fail(inner: &mut Inner, r: &Resolved) -> Result<(), ClusterError> {
        inner.writes += 1;
        match inner.fail_writes.remove(&r.kind) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn watch(
        &self,
        initial: impl FnOnce() -> Vec<Value>,
        filter: impl Fn(&Resolved, &Value) -> bool + Send + 'static,
        meta: bool,
    ) -> WatchStream {
        // Subscribe before listing, so nothing falls between the list and the events.
        let events = BroadcastStream::new(self.events.subscribe());
        let initial = initial();
        let map = move |v: Value| if meta { meta_only(&v) } else { v };
        let first = futures::stream::once(futures::future::ready(Ok(WatchEvent::Restarted(
            initial.into_iter().map(map).collect(),
        ))));
        let rest = events.filter_map(move |e| {
            let out = match e {
                Ok((r, ev)) => {
                    let v = match &ev {
                        WatchEvent::Applied(v) | WatchEvent::Deleted(v) => v.clone(),
                        WatchEvent::Restarted(_) => Value::Null,
                    };
                    if filter(&r, &v) {
                        Some(Ok(match ev {
                            WatchEvent::Applied(v) => WatchEvent::Applied(map(v)),
                            WatchEvent::Deleted(v) => WatchEvent::Deleted(map(v)),
                            other => other,
                        }))
                    } else {
                        None
                    }
                }
                Err(e) => Some(Err(ClusterError::Transport(e.to_string()))),
            };
            futures::future::ready(out)
        });
        first.chain(rest).boxed()
    }
}

fn md_str<'a>(v: &'a Value, f: &str) -> &'a str {
    v.get("metadata")
        .and_then(|m| m.get(f))
        .and_then(Value::as_str)
        .unwrap_or("")
}

// What the `Cluster` methods do, without the observer.
impl FakeCluster {
    fn get_now(&self, r: &Resolved, ns: &str, name: &str) -> Result<Option<Value>, ClusterError> {
        let inner = self.inner.lock();
        if let Some(e) = inner.fail_reads.get(&r.kind) {
            return Err(e.clone());
        }
        Ok(inner.objects.get(&key(r, ns, name)).cloned())
    }

    fn create_now(&self, r: &Resolved, ns: &str, mut obj: Value) -> Result<Value, ClusterError> {
        let name = md_str(&obj, "name").to_string();
        let mut inner = self.inner.lock();
        Self::check_fail(&mut inner, r)?;
        let k = key(r, ns, &name);
        if inner.objects.contains_key(&k) {
            return Err(ClusterError::Conflict(format!(
                "{} {name:?} already exists",
                r.plural
            )));
        }
        if r.namespaced {
            obj["metadata"]["namespace"] = Value::String(ns.to_string());
        }
        Self::stamp(&mut inner, &mut obj, None);
        inner.objects.insert(k, obj.clone());
        drop(inner);
        let _ = self
            .events
            .send((r.clone(), WatchEvent::Applied(obj.clone())));
        Ok(obj)
    }

    fn replace_now(
        &self,
        r: &Resolved,
        ns: &str,
        name: &str,
        mut obj: Value,
    ) -> Result<Value, ClusterError> {
        let mut inner = self.inner.lock();
        Self::check_fail(&mut inner, r)?;
        let k = key(r, ns, name);
        let Some(live) = inner.objects.get(&k).cloned() else {
            return Err(ClusterError::NotFound(not_found_text(
                &r.group, &r.plural, name,
            )));
        };
        let rv = md_str(&obj, "resourceVersion");
        if !rv.is_empty() && rv != md_str(&live, "resourceVersion") {
            return Err(ClusterError::Conflict(format!(
                "Operation cannot be fulfilled on {} {name:?}: the object has been modified",
                r.plural
            )));
        }
        for f in ["creationTimestamp", "deletionTimestamp"] {
            if let Some(v) = live["metadata"].get(f) {
                obj["metadata"][f] = v.clone();
            }
        }
        Self::stamp(&mut inner, &mut obj, Some(live["metadata"]["uid"].clone()));
        inner.objects.insert(k, obj.clone());
        drop(inner);
        let _ = self
            .events
            .send((r.clone(), WatchEvent::Applied(obj.clone())));
        Ok(obj)
    }

    /// Server-side apply, without field managers.
    fn apply_now(
        &self,
        r: &Resolved,
        ns: &str,
        name: &str,
        obj: Value,
    ) -> Result<Value, ClusterError> {
        let live = self.get_now(r, ns, name)?;
        match live {
            None => self.create_now(r, ns, obj),
            Some(mut live) => {
                // A shallow stand-in for a field-wise merge: top-level fields and labels.
                for (k, v) in obj.as_object().into_iter().flatten() {
                    if k == "metadata" {
                        if let Some(l) = v.get("labels").and_then(Value::as_object) {
                            for (lk, lv) in l {
                                live["metadata"]["labels"][lk] = lv.clone();
                            }
                        }
                    } else {
                        live[k] = v.clone();
                    }
                }
                live["metadata"]
                    .as_object_mut()
                    .expect("metadata")
                    .remove("resourceVersion");
                self.replace_now(r, ns, name, live)
            }
        }
    }

    fn delete_now(
        &self,
        r: &Resolved,
        ns: &str,
        name: &str,
        uid: Option<&str>,
    ) -> Result<(), ClusterError> {
        let mut inner = self.inner.lock();
        *inner.deletes.entry(r.kind.clone()).or_default() += 1;
        Self::check_fail(&mut inner, r)?;
        let k = key(r, ns, name);
        let Some(mut live) = inner.objects.get(&k).cloned() else {
            return Err(ClusterError::NotFound(not_found_text(
                &r.group, &r.plural, name,
            )));
        };
        if let Some(u) = uid
            && md_str(&live, "uid") != u
        {
            return Err(ClusterError::Conflict(
                "Precondition failed: UID in precondition does not match".into(),
            ));
        }
        let has_finalizers = live
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty());
        let ev = if has_finalizers {
            if live.pointer("/metadata/deletionTimestamp").is_none() {
                live["metadata"]["deletionTimestamp"] =
                    Value::String("2026-01-01T00:00:01Z".into());
                let uid = live["metadata"]["uid"].clone();
                Self::stamp(&mut inner, &mut live, Some(uid));
                inner.objects.insert(k, live.clone());
            }
            WatchEvent::Applied(live)
        } else {
            inner.objects.remove(&k);
            WatchEvent::Deleted(live)
        };
        drop(inner);
        let _ = self.events.send((r.clone(), ev));
        Ok(())
    }
}

impl Cluster for FakeCluster {
    async fn resolve_kind(&self, gvk: &Gvk) -> Result<Resolved, ClusterError> {
        self.before_call().await;
        let inner = self.inner.lock();
        if let Some(e) = inner.fail_discovery.get(&gvk.group) {
            return Err(e.clone());
        }
        inner
            .kinds
            .iter()
            .find(|r| r.group == gvk.group && r.version == gvk.version && r.kind == gvk.kind)
            .cloned()
            .ok_or_else(|| {
                ClusterError::NoKind(no_kind_match_text(&gvk.group, &gvk.version, &gvk.kind))
            })
    }

    async fn resolve_resource(
        &self,
        group: &str,
        version: &str,
        plural: &str,
    ) -> Result<Resolved, ClusterError> {
        self.before_call().await;
        let inner = self.inner.lock();
        if let Some(e) = inner.fail_discovery.get(group) {
            return Err(e.clone());
        }
        inner
            .kinds
            .iter()
            .find(|r| {
                r.group == group
                    && r.plural == plural
                    && (version.is_empty() || r.version == version)
            })
            .cloned()
            .ok_or_else(|| ClusterError::NoKind(unknown_resource_text(plural)))
    }

    async fn get(&self, r: &Resolved, ns: &str, name: &str) -> Result<Option<Value>, ClusterError> {
        self.before_call().await;
        self.get_now(r, ns, name)
    }

    async fn create(&self, r: &Resolved, ns: &str, obj: Value) -> Result<Value, ClusterError> {
        self.observed_write(obj, |obj| self.create_now(r, ns, obj))
            .await
    }

    async fn replace(
        &self,
        r: &Resolved,
        ns: &str,
        name: &str,
        obj: Value,
    ) -> Result<Value, ClusterError> {
        self.observed_write(obj, |obj| self.replace_now(r, ns, name, obj))
            .await
    }

    async fn server_side_apply(
        &self,
        r: &Resolved,
        ns: &str,
        name: &str,
        obj: Value,
        _field_manager: &str,
        _force: bool,
    ) -> Result<Value, ClusterError> {
        self.observed_write(obj, |obj| self.apply_now(r, ns, name, obj))
            .await
    }

    async fn delete(
        &self,
        r: &Resolved,
        ns: &str,
        name: &str,
        uid: Option<&str>,
    ) -> Result<(), ClusterError> {
        self.before_call().await;
        self.delete_now(r, ns, name, uid)?;
        if let Some(o) = &self.observer {
            o.deleted(r, ns, name);
        }
        Ok(())
    }

    fn watch_kind(&self, r: &Resolved) -> WatchStream {
        let inner = self.inner.clone();
        let (g, p) = (r.group.clone(), r.plural.clone());
        let initial = move || {
            inner
                .lock()
                .objects
                .iter()
                .filter(|((og, op, _, _), _)| *og == g && *op == p)
                .map(|(_, v)| v.clone())
                .collect()
        };
        let want = r.clone();
        self.watch(
            initial,
            move |er, _| er.group == want.group && er.plural == want.plural,
            true,
        )
    }

    fn watch_object(&self, r: &Resolved, ns: &str, name: &str) -> WatchStream {
        let k = key(r, ns, name);
        let inner = self.inner.clone();
        let lookup = k.clone();
        let initial = move || {
            inner
                .lock()
                .objects
                .get(&lookup)
                .cloned()
                .into_iter()
                .collect()
        };
        let want = r.clone();
        let (ns, name) = (k.2.clone(), name.to_string());
        self.watch(
            initial,
            move |er, v| {
                er.group == want.group
                    && er.plural == want.plural
                    && md_str(v, "name") == name
                    && md_str(v, "namespace") == ns
            },
            false,
        )
    }

    async fn server_version(&self) -> Result<String, ClusterError> {
        Ok("v1.37.0-fake".into())
    }
}
