//! Shared metadata watches, one per kind, over the objects that works applied.
//!
//! A work's `Available` means "the object exists", so metadata is enough. Every change to
//! an object some work cares about (deleted, recreated) marks those works for a status
//! recompute; nothing polls.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use futures::StreamExt;
use parking_lot::Mutex;
use serde_json::Value;
use tokio::task::JoinHandle;
use tracing::{Instrument, debug, info_span, warn};

use crate::apply::Target;
use crate::cluster::{Cluster, Resolved, WatchEvent};

/// Aborts its task when dropped.
#[derive(Debug)]
pub struct AbortOnDrop(pub JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Called with the names of works whose objects changed.
pub type OnChange = Arc<dyn Fn(BTreeSet<String>) + Send + Sync>;

type ObjKey = (String, String);

#[derive(Debug)]
struct Entry {
    /// (namespace, name) -> uid of every object of the kind, once listed.
    objects: HashMap<ObjKey, String>,
    synced: bool,
    interest: HashMap<ObjKey, BTreeSet<String>>,
    _task: Option<AbortOnDrop>,
}

pub struct KindWatches<C: Cluster> {
    cluster: Arc<C>,
    on_change: OnChange,
    inner: Arc<Mutex<HashMap<Resolved, Entry>>>,
}

impl<C: Cluster> std::fmt::Debug for KindWatches<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KindWatches")
            .field("kinds", &self.inner.lock().len())
            .finish()
    }
}

fn obj_key(v: &Value) -> (ObjKey, String) {
    let s = |f: &str| {
        v.pointer(&format!("/metadata/{f}"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    ((s("namespace"), s("name")), s("uid"))
}

impl<C: Cluster> KindWatches<C> {
    pub fn new(cluster: Arc<C>, on_change: OnChange) -> Self {
        KindWatches {
            cluster,
            on_change,
            inner: Arc::default(),
        }
    }

    /// `work` cares about `target` from now on.
    pub fn register(&self, target: &Target, work: &str) {
        let mut inner = self.inner.lock();
        let entry = inner
            .entry(target.resolved.clone())
            .or_insert_with(|| Entry {
                objects: HashMap::new(),
                synced: false,
                interest: HashMap::new(),
                _task: None,
            });
        entry
            .interest
            .entry((target.namespace.clone(), target.name.clone()))
            .or_default()
            .insert(work.to_string());
        if entry._task.is_none() {
            entry._task = Some(self.spawn(target.resolved.clone()));
        }
    }

    /// `work` no longer cares about `target`. The kind's watch stops with its last interest.
    pub fn unregister(&self, target: &Target, work: &str) {
        let mut inner = self.inner.lock();
        let Some(entry) = inner.get_mut(&target.resolved) else {
            return;
        };
        let k = (target.namespace.clone(), target.name.clone());
        if let Some(set) = entry.interest.get_mut(&k) {
            set.remove(work);
            if set.is_empty() {
                entry.interest.remove(&k);
            }
        }
        if entry.interest.is_empty() {
            inner.remove(&target.resolved);
        }
    }

    /// Whether the object exists, or `None` while its kind has not been listed yet.
    pub fn exists(&self, target: &Target) -> Option<bool> {
        let inner = self.inner.lock();
        let entry = inner.get(&target.resolved)?;
        entry.synced.then(|| {
            entry
                .objects
                .contains_key(&(target.namespace.clone(), target.name.clone()))
        })
    }

    /// Number of kinds watched.
    pub fn len(&self) -> usize {
        self.inner.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn spawn(&self, r: Resolved) -> AbortOnDrop {
        let mut stream = self.cluster.watch_kind(&r);
        let inner = self.inner.clone();
        let on_change = self.on_change.clone();
        let span = info_span!("kind_watch", group = %r.group, resource = %r.plural);
        AbortOnDrop(tokio::spawn(
            async move {
                while let Some(ev) = stream.next().await {
                    let mut changed = BTreeSet::new();
                    {
                        let mut guard = inner.lock();
                        let Some(entry) = guard.get_mut(&r) else {
                            return;
                        };
                        let note = |k: &ObjKey, entry: &Entry, changed: &mut BTreeSet<String>| {
                            if let Some(w) = entry.interest.get(k) {
                                changed.extend(w.iter().cloned());
                            }
                        };
                        match ev {
                            Ok(WatchEvent::Restarted(list)) => {
                                entry.objects = list.iter().map(obj_key).collect();
                                entry.synced = true;
                                for w in entry.interest.values() {
                                    changed.extend(w.iter().cloned());
                                }
                            }
                            Ok(WatchEvent::Applied(v)) => {
                                let (k, uid) = obj_key(&v);
                                if entry.objects.get(&k) != Some(&uid) {
                                    entry.objects.insert(k.clone(), uid);
                                    note(&k, entry, &mut changed);
                                }
                            }
                            Ok(WatchEvent::Deleted(v)) => {
                                let (k, _) = obj_key(&v);
                                if entry.objects.remove(&k).is_some() {
                                    note(&k, entry, &mut changed);
                                }
                            }
                            Err(e) => warn!(error = %e, "watch error; the watcher retries"),
                        }
                    }
                    if !changed.is_empty() {
                        debug!(works = ?changed, "applied objects changed");
                        on_change(changed);
                    }
                }
            }
            .instrument(span),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeCluster;
    use serde_json::json;
    use std::time::Duration;

    async fn until(mut f: impl FnMut() -> bool) {
        let ok = async || f().then_some(());
        drbridge_localenv::eventually("the condition", Duration::from_secs(5), ok).await
    }

    #[tokio::test]
    async fn tracks_existence_and_notifies_interested_works() {
        let cluster = Arc::new(FakeCluster::new());
        let seen: Arc<Mutex<Vec<BTreeSet<String>>>> = Arc::default();
        let s2 = seen.clone();
        let w = KindWatches::new(cluster.clone(), Arc::new(move |c| s2.lock().push(c)));
        let cm = cluster.kind("ConfigMap");
        let t = Target {
            resolved: cm.clone(),
            namespace: "ns".into(),
            name: "a".into(),
        };
        cluster.put("ConfigMap", json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "ns"}}));
        w.register(&t, "work1");
        until(|| w.exists(&t) == Some(true)).await;
        cluster.put("ConfigMap", json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "other", "namespace": "ns"}}));
        cluster.delete_external("ConfigMap", "ns", "a");
        until(|| w.exists(&t) == Some(false)).await;
        until(|| seen.lock().iter().filter(|s| s.contains("work1")).count() >= 2).await;
        // Objects nobody cares about notify nobody.
        assert!(seen.lock().iter().all(|s| s.len() == 1));
        w.unregister(&t, "work1");
        assert!(w.is_empty());
        assert_eq!(w.exists(&t), None);
    }
}
