//! The in-memory index: every ManifestWork, ManagedClusterView and ManagedCluster the
//! hub watches, and the desired state of each cluster ([`crate::desired`]) published on
//! its own `tokio::sync::watch` channel. The index is the only owner of this state: the
//! watches feed it, the gRPC side reports agents' confirmations to it, and it tells the
//! status writer what to write ([`Intent`]).
//!
//! Mutations never fail: bad input is recorded on the entry (and surfaces as a
//! condition on the object through an [`Intent`]), never as an error. A watch relist
//! (`Init`..`InitDone`) arrives as one `reset_*` call, so subscribers never see a
//! half-listed state, and nothing is published before every watch has listed once.
//!
//! Works are dispatched only once they carry the hub's finalizer: a work the agent may
//! have applied can then only disappear after the agent confirmed its cleanup.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use drbridge_proto::v1 as pb;
use parking_lot::RwLock;
use tokio::sync::{mpsc, watch};

use crate::delivery::DeliveryClock;
use crate::desired::{Desired, Limits, Rejection, wire_view, wire_work};
use crate::metrics::Metrics;
use crate::objects::{
    ClusterObject, ConditionJson, Meta, ObjectKey, StatusDigest, ViewObject, WorkObject,
};

pub type SharedIndex = Arc<RwLock<Index>>;

/// Something the index wants written to the API server. The status writer reads
/// the current state of the object from the index when it acts, so an intent is only
/// a key: repeating or dropping one is harmless (the periodic sweep repeats them).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Intent {
    /// Add the hub's finalizer to a work in a registered cluster's namespace.
    AddFinalizer(ObjectKey),
    /// Remove the hub's finalizer from a deleting work: its agent confirmed the
    /// cleanup, or its cluster is no longer registered.
    ReleaseFinalizer(ObjectKey),
    /// Write the rejection condition (invalid or too large) for the current generation.
    Reject(ObjectKey),
    /// The stored status of a work changed (or the work is gone): a report the writer
    /// skipped as already written is checked again, since the index may have been behind.
    WorkStatusChanged(ObjectKey),
    /// The same for a view.
    ViewStatusChanged(ObjectKey),
}

#[derive(Clone, Debug)]
pub struct WorkEntry {
    pub meta: Meta,
    pub conditions: Vec<ConditionJson>,
    pub status: StatusDigest,
    /// What the agent gets, or why it gets nothing.
    pub payload: Result<Arc<pb::Work>, Rejection>,
    /// The agent confirmed (WorkGone) that this uid is cleaned up.
    pub gone_confirmed: bool,
}

impl WorkEntry {
    fn dispatched(&self) -> Option<&Arc<pb::Work>> {
        if !self.meta.has_finalizer() {
            return None;
        }
        self.payload.as_ref().ok()
    }

    /// The rejection condition for the current generation is already on the object.
    fn rejection_recorded(&self, rej: &Rejection) -> bool {
        self.conditions.iter().any(|c| {
            c.get("type").and_then(|v| v.as_str()) == Some("Applied")
                && c.get("reason").and_then(|v| v.as_str()) == Some(rej.reason)
                && c.get("message").and_then(|v| v.as_str()) == Some(rej.message.as_str())
                && c.get("observedGeneration").and_then(|v| v.as_i64())
                    == Some(self.meta.generation)
        })
    }
}

#[derive(Debug)]
struct Namespace {
    works: BTreeMap<String, WorkEntry>,
    views: BTreeMap<String, ViewObject>,
    tx: watch::Sender<Desired>,
}

impl Default for Namespace {
    fn default() -> Self {
        Self {
            works: BTreeMap::new(),
            views: BTreeMap::new(),
            tx: watch::Sender::new(Desired::default()),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubscribeError {
    #[error("the hub has not finished listing its watches")]
    NotReady,
    #[error("cluster {0:?} is not registered on this hub: there is no ManagedCluster named {0:?}")]
    NotRegistered(String),
}

#[derive(Debug, Default, Clone, Copy)]
struct Synced {
    works: bool,
    views: bool,
    clusters: bool,
}

impl Synced {
    fn all(self) -> bool {
        self.works && self.views && self.clusters
    }
}

#[derive(Debug)]
pub struct Index {
    limits: Limits,
    namespaces: BTreeMap<String, Namespace>,
    clusters: BTreeMap<String, ClusterObject>,
    synced: Synced,
    ready: watch::Sender<bool>,
    intents: Option<mpsc::Sender<Intent>>,
    metrics: Metrics,
    /// Generations on their way to being applied; reports arrive under the read lock.
    delivery: parking_lot::Mutex<DeliveryClock>,
    /// Works and views indexed, kept as they change (counting them would visit every
    /// namespace on every event).
    counts: (usize, usize),
}

impl Index {
    pub fn new(limits: Limits, intents: Option<mpsc::Sender<Intent>>, metrics: Metrics) -> Self {
        Self {
            limits,
            namespaces: BTreeMap::new(),
            clusters: BTreeMap::new(),
            synced: Synced::default(),
            ready: watch::Sender::new(false),
            intents,
            metrics,
            delivery: Default::default(),
            counts: (0, 0),
        }
    }

    pub fn shared(self) -> SharedIndex {
        Arc::new(RwLock::new(self))
    }

    /// True once every watch has completed its first list.
    pub fn ready(&self) -> watch::Receiver<bool> {
        self.ready.subscribe()
    }

    pub fn is_ready(&self) -> bool {
        self.synced.all()
    }

    /// The desired state of `cluster`, for its agent's stream.
    pub fn subscribe(&mut self, cluster: &str) -> Result<watch::Receiver<Desired>, SubscribeError> {
        if !self.is_ready() {
            return Err(SubscribeError::NotReady);
        }
        if !self.clusters.contains_key(cluster) {
            return Err(SubscribeError::NotRegistered(cluster.to_string()));
        }
        let rx = self
            .namespaces
            .entry(cluster.to_string())
            .or_default()
            .tx
            .subscribe();
        // A namespace seen for the first time holds the default (unregistered) state.
        self.publish(cluster);
        Ok(rx)
    }

    pub fn is_registered(&self, cluster: &str) -> bool {
        self.clusters.contains_key(cluster)
    }

    pub fn clusters(&self) -> impl Iterator<Item = &ClusterObject> {
        self.clusters.values()
    }

    pub fn cluster(&self, name: &str) -> Option<&ClusterObject> {
        self.clusters.get(name)
    }

    pub fn work(&self, key: &ObjectKey) -> Option<&WorkEntry> {
        self.namespaces.get(&key.namespace)?.works.get(&key.name)
    }

    pub fn view(&self, key: &ObjectKey) -> Option<&ViewObject> {
        self.namespaces.get(&key.namespace)?.views.get(&key.name)
    }

    /// The agent of `key`'s cluster reports `generation` applied: how long it took since the
    /// hub saw that generation, the first time only (see `delivery`).
    pub fn delivered(&self, key: &ObjectKey, uid: &str, generation: i64) -> Option<Duration> {
        self.delivery
            .lock()
            .applied(key, uid, generation, tokio::time::Instant::now())
    }

    /// Metadata of every work in `namespace`.
    pub fn works_in(&self, namespace: &str) -> Vec<Meta> {
        self.namespaces
            .get(namespace)
            .map(|ns| ns.works.values().map(|w| w.meta.clone()).collect())
            .unwrap_or_default()
    }

    /// Metadata of every view in `namespace`.
    pub fn views_in(&self, namespace: &str) -> Vec<Meta> {
        self.namespaces
            .get(namespace)
            .map(|ns| ns.views.values().map(|v| v.meta.clone()).collect())
            .unwrap_or_default()
    }

    /// Records that the agent confirmed the cleanup of `key` at `uid`, and emits the
    /// finalizer release that allows. Returns true when the work is deleting with that
    /// uid, so its finalizer may go. The confirmation lives here, not in the writer's
    /// queue, so a full or coalesced queue cannot lose it (the sweep repeats the intent).
    pub fn mark_gone(&mut self, key: &ObjectKey, uid: &str) -> bool {
        let Some(entry) = self
            .namespaces
            .get_mut(&key.namespace)
            .and_then(|ns| ns.works.get_mut(&key.name))
        else {
            return false;
        };
        if entry.meta.uid != uid || !entry.meta.deleting {
            return false;
        }
        entry.gone_confirmed = true;
        self.intents_for_work(key);
        true
    }

    // ------------------------------------------------------------ works

    fn entry_for(&self, obj: WorkObject, previous: Option<&WorkEntry>) -> WorkEntry {
        let payload = wire_work(&obj, &self.limits);
        let gone_confirmed =
            previous.is_some_and(|p| p.gone_confirmed && p.meta.uid == obj.meta.uid);
        WorkEntry {
            meta: obj.meta,
            conditions: obj.conditions,
            status: obj.status,
            payload,
            gone_confirmed,
        }
    }

    pub fn apply_work(&mut self, obj: WorkObject) {
        let key = obj.meta.key();
        let previous = self.work(&key);
        let newer = previous
            .is_none_or(|p| p.meta.uid != obj.meta.uid || p.meta.generation != obj.meta.generation);
        let status_changed = previous.is_some_and(|p| p.status != obj.status);
        let entry = self.entry_for(obj, previous);
        // Only what changed while the hub watched is timed (see `delivery`).
        if self.synced.works && newer && !entry.meta.deleting {
            self.delivery.get_mut().seen(
                &key,
                &entry.meta.uid,
                entry.meta.generation,
                tokio::time::Instant::now(),
            );
        }
        let ns = self.namespaces.entry(key.namespace.clone()).or_default();
        if ns.works.insert(key.name.clone(), entry).is_none() {
            self.counts.0 += 1;
        }
        self.update_counts();
        self.publish_work(&key.namespace, &key.name);
        self.intents_for_work(&key);
        if status_changed {
            self.emit(Intent::WorkStatusChanged(key));
        }
    }

    pub fn delete_work(&mut self, namespace: &str, name: &str) {
        if let Some(ns) = self.namespaces.get_mut(namespace)
            && ns.works.remove(name).is_some()
        {
            self.counts.0 -= 1;
            self.emit(Intent::WorkStatusChanged(ObjectKey::new(namespace, name)));
        }
        self.delivery
            .get_mut()
            .forget(&ObjectKey::new(namespace, name));
        self.update_counts();
        self.publish_work(namespace, name);
    }

    /// Replaces every work (a relist).
    pub fn reset_works(&mut self, objs: Vec<WorkObject>) {
        let mut by_ns: HashMap<String, BTreeMap<String, WorkEntry>> = HashMap::new();
        let mut changed = self.digests(|ns| &ns.works, |e| e.status);
        for obj in objs {
            let key = obj.meta.key();
            forget_if_unchanged(&mut changed, &key, obj.status);
            let entry = self.entry_for(obj, self.work(&key));
            by_ns
                .entry(key.namespace)
                .or_default()
                .insert(key.name, entry);
        }
        let touched: BTreeSet<String> = self
            .namespaces
            .iter()
            .filter(|(_, ns)| !ns.works.is_empty())
            .map(|(n, _)| n.clone())
            .chain(by_ns.keys().cloned())
            .collect();
        for name in &touched {
            let works = by_ns.remove(name).unwrap_or_default();
            self.namespaces.entry(name.clone()).or_default().works = works;
        }
        let namespaces = &self.namespaces;
        self.delivery.get_mut().retain(|k, uid, generation| {
            namespaces
                .get(&k.namespace)
                .and_then(|ns| ns.works.get(&k.name))
                .is_some_and(|e| e.meta.uid == uid && e.meta.generation == generation)
        });
        self.synced.works = true;
        // What the relist changed or removed; the first list has nothing to compare with.
        for key in changed.into_keys() {
            self.emit(Intent::WorkStatusChanged(key));
        }
        self.after_reset(touched);
    }

    // ------------------------------------------------------------ views

    pub fn apply_view(&mut self, obj: ViewObject) {
        let key = obj.meta.key();
        let status = obj.status;
        let ns = self.namespaces.entry(key.namespace.clone()).or_default();
        let status_changed = match ns.views.insert(key.name.clone(), obj) {
            None => {
                self.counts.1 += 1;
                false
            }
            Some(old) => old.status != status,
        };
        self.update_counts();
        self.publish_view(&key.namespace, &key.name);
        if status_changed {
            self.emit(Intent::ViewStatusChanged(key));
        }
    }

    pub fn delete_view(&mut self, namespace: &str, name: &str) {
        if let Some(ns) = self.namespaces.get_mut(namespace)
            && ns.views.remove(name).is_some()
        {
            self.counts.1 -= 1;
            self.emit(Intent::ViewStatusChanged(ObjectKey::new(namespace, name)));
        }
        self.update_counts();
        self.publish_view(namespace, name);
    }

    pub fn reset_views(&mut self, objs: Vec<ViewObject>) {
        let mut by_ns: HashMap<String, BTreeMap<String, ViewObject>> = HashMap::new();
        let mut changed = self.digests(|ns| &ns.views, |v| v.status);
        for obj in objs {
            forget_if_unchanged(&mut changed, &obj.meta.key(), obj.status);
            by_ns
                .entry(obj.meta.namespace.clone())
                .or_default()
                .insert(obj.meta.name.clone(), obj);
        }
        let touched: BTreeSet<String> = self
            .namespaces
            .iter()
            .filter(|(_, ns)| !ns.views.is_empty())
            .map(|(n, _)| n.clone())
            .chain(by_ns.keys().cloned())
            .collect();
        for name in &touched {
            let views = by_ns.remove(name).unwrap_or_default();
            self.namespaces.entry(name.clone()).or_default().views = views;
        }
        self.synced.views = true;
        for key in changed.into_keys() {
            self.emit(Intent::ViewStatusChanged(key));
        }
        self.after_reset(touched);
    }

    // ------------------------------------------------------------ clusters

    pub fn apply_cluster(&mut self, obj: ClusterObject) {
        let name = obj.meta.name.clone();
        let was = self.clusters.insert(name.clone(), obj).is_some();
        self.update_counts();
        if !was {
            self.publish(&name);
            self.intents_for_namespace(&name);
        }
    }

    pub fn delete_cluster(&mut self, name: &str) {
        if self.clusters.remove(name).is_some() {
            self.update_counts();
            self.publish(name);
            self.intents_for_namespace(name);
        }
    }

    pub fn reset_clusters(&mut self, objs: Vec<ClusterObject>) {
        let old: BTreeSet<String> = self.clusters.keys().cloned().collect();
        self.clusters = objs.into_iter().map(|c| (c.meta.name.clone(), c)).collect();
        let touched: BTreeSet<String> = old
            .into_iter()
            .chain(self.clusters.keys().cloned())
            .collect();
        self.synced.clusters = true;
        self.after_reset(touched);
    }

    // ------------------------------------------------------------ publishing

    /// The status digest of every work (or view), before a relist replaces them.
    fn digests<T>(
        &self,
        kind: impl Fn(&Namespace) -> &BTreeMap<String, T>,
        digest: impl Fn(&T) -> StatusDigest,
    ) -> HashMap<ObjectKey, StatusDigest> {
        let mut out = HashMap::new();
        for (ns, n) in &self.namespaces {
            for (name, o) in kind(n) {
                out.insert(ObjectKey::new(ns, name), digest(o));
            }
        }
        out
    }

    fn after_reset(&mut self, touched: BTreeSet<String>) {
        // A relist replaces whole namespaces: count again.
        self.counts = self.namespaces.values().fold((0, 0), |(w, v), ns| {
            (w + ns.works.len(), v + ns.views.len())
        });
        self.update_counts();
        if !self.is_ready() {
            return;
        }
        if !*self.ready.borrow() {
            // The first moment the index is whole: publish and sweep everything.
            let all: Vec<String> = self.namespaces.keys().cloned().collect();
            for ns in &all {
                self.publish(ns);
            }
            self.ready.send_replace(true);
            for intent in self.sweep() {
                self.emit(intent);
            }
            return;
        }
        for ns in &touched {
            self.publish(ns);
            self.intents_for_namespace(ns);
        }
    }

    fn desired_for(&self, namespace: &str) -> Desired {
        let Some(ns) = self.namespaces.get(namespace) else {
            return Desired::default();
        };
        if !self.clusters.contains_key(namespace) {
            return Desired::default();
        }
        Desired::new(
            ns.works
                .iter()
                .filter_map(|(n, w)| Some((n.clone(), w.dispatched()?.clone())))
                .collect(),
            ns.views
                .iter()
                .filter_map(|(n, v)| Some((n.clone(), desired_view(v)?)))
                .collect(),
        )
    }

    /// Publishes the whole desired state of `namespace`: after a relist, a cluster
    /// registered or gone, a new subscriber. Each work and view that differs is logged.
    fn publish(&mut self, namespace: &str) {
        // Nothing is published before every watch has listed once, so no agent can
        // see a partial state.
        if !self.is_ready() {
            return;
        }
        let desired = self.desired_for(namespace);
        if let Some(ns) = self.namespaces.get(namespace) {
            ns.tx.send_if_modified(|cur| cur.replace(desired));
        }
    }

    /// Publishes the change of one work: O(1) in the namespace's size.
    fn publish_work(&mut self, namespace: &str, name: &str) {
        if !self.is_ready() || !self.clusters.contains_key(namespace) {
            // An unregistered cluster's state is empty, and stays so.
            return;
        }
        if let Some(ns) = self.namespaces.get(namespace) {
            let work = ns.works.get(name).and_then(|w| w.dispatched()).cloned();
            ns.tx.send_if_modified(|cur| cur.set_work(name, work));
        }
    }

    /// Publishes the change of one view.
    fn publish_view(&mut self, namespace: &str, name: &str) {
        if !self.is_ready() || !self.clusters.contains_key(namespace) {
            return;
        }
        if let Some(ns) = self.namespaces.get(namespace) {
            let view = ns.views.get(name).and_then(desired_view);
            ns.tx.send_if_modified(|cur| cur.set_view(name, view));
        }
    }

    fn update_counts(&self) {
        let (works, views) = self.counts;
        self.metrics.works_indexed.set(works as i64);
        self.metrics.views_indexed.set(views as i64);
        self.metrics
            .clusters_registered
            .set(self.clusters.len() as i64);
    }

    // ------------------------------------------------------------ intents

    fn work_intents(&self, key: &ObjectKey, entry: &WorkEntry, out: &mut Vec<Intent>) {
        let registered = self.clusters.contains_key(&key.namespace);
        let m = &entry.meta;
        if registered && !m.deleting && !m.has_finalizer() && entry.payload.is_ok() {
            out.push(Intent::AddFinalizer(key.clone()));
        }
        if m.deleting && m.has_finalizer() && (!registered || entry.gone_confirmed) {
            out.push(Intent::ReleaseFinalizer(key.clone()));
        }
        if let Err(rej) = &entry.payload
            && registered
            && !entry.rejection_recorded(rej)
        {
            out.push(Intent::Reject(key.clone()));
        }
    }

    /// Every intent the current state implies. The status writer runs this
    /// periodically, so an intent lost on a full queue is only delayed.
    pub fn sweep(&self) -> Vec<Intent> {
        let mut out = Vec::new();
        if !self.is_ready() {
            return out;
        }
        for (ns_name, ns) in &self.namespaces {
            for (name, entry) in &ns.works {
                self.work_intents(&ObjectKey::new(ns_name, name), entry, &mut out);
            }
        }
        out
    }

    fn intents_for_work(&self, key: &ObjectKey) {
        if !self.is_ready() {
            return;
        }
        let mut out = Vec::new();
        if let Some(entry) = self.work(key) {
            self.work_intents(key, entry, &mut out);
        }
        for i in out {
            self.emit(i);
        }
    }

    fn intents_for_namespace(&self, namespace: &str) {
        if !self.is_ready() {
            return;
        }
        let mut out = Vec::new();
        if let Some(ns) = self.namespaces.get(namespace) {
            for (name, entry) in &ns.works {
                self.work_intents(&ObjectKey::new(namespace, name), entry, &mut out);
            }
        }
        for i in out {
            self.emit(i);
        }
    }

    fn emit(&self, intent: Intent) {
        if let Some(tx) = &self.intents
            && tx.try_send(intent).is_err()
        {
            self.metrics.intents_dropped.inc();
        }
    }
}

/// Leaves in `before` only what a relist changed: drops `key` when it lists as it was.
fn forget_if_unchanged(
    before: &mut HashMap<ObjectKey, StatusDigest>,
    key: &ObjectKey,
    now: StatusDigest,
) {
    if before.get(key) == Some(&now) {
        before.remove(key);
    }
}

/// The view an agent gets for `v`: none while it is being deleted.
fn desired_view(v: &ViewObject) -> Option<Arc<pb::View>> {
    (!v.meta.deleting).then(|| wire_view(v))
}

#[cfg(test)]
mod tests;
