//! A managed cluster in memory: the agent crate's `FakeCluster` behind a [`Cluster`] that
//! takes (virtual) time per call, so that a crash can stop the agent between any two API
//! calls, and that logs what the invariants judge: deletions and writes.
//! [`SimStore`] is the durable record (`MemoryStore`), with a history of every write.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use drbridge_agent::cluster::{Cluster, ClusterError, Resolved, WatchStream};
use drbridge_agent::record::{StoreError, WorkRecord};
use drbridge_agent::testing::FakeCluster;
use drbridge_agent::{MemoryStore, RecordStore};
use drbridge_model::Gvk;
use serde_json::{Value, json};

use crate::rng::Rng;

/// What the spoke saw that the invariants check after each step.
#[derive(Debug, Default)]
pub struct SpokeLog {
    /// Names of objects deleted, in order.
    pub deleted: Vec<String>,
    /// Objects written that belong to another cluster (`spec.cluster`).
    pub foreign: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct SimCluster {
    pub name: String,
    pub fake: FakeCluster,
    latency: Arc<Mutex<Rng>>,
    pub log: Arc<Mutex<SpokeLog>>,
}

impl SimCluster {
    pub fn new(name: &str, rng: Rng) -> Self {
        let fake = FakeCluster::new();
        // The agent reads the cluster's id claim from kube-system.
        fake.put(
            "Namespace",
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kube-system", "uid": format!("{name}-kube-system")}}),
        );
        Self {
            name: name.to_string(),
            fake,
            latency: Arc::new(Mutex::new(rng)),
            log: Arc::default(),
        }
    }

    async fn pause(&self) {
        let ms = self.latency.lock().expect("not poisoned").below(8);
        if ms > 0 {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }

    fn check_owner(&self, obj: &Value) {
        if let Some(c) = obj.pointer("/spec/cluster").and_then(Value::as_str)
            && c != self.name
        {
            let name = obj["metadata"]["name"].as_str().unwrap_or_default();
            self.log
                .lock()
                .expect("not poisoned")
                .foreign
                .push(format!("{name} of cluster {c}"));
        }
    }
}

impl Cluster for SimCluster {
    async fn resolve_kind(&self, gvk: &Gvk) -> Result<Resolved, ClusterError> {
        self.pause().await;
        self.fake.resolve_kind(gvk).await
    }
    async fn resolve_resource(
        &self,
        group: &str,
        version: &str,
        plural: &str,
    ) -> Result<Resolved, ClusterError> {
        self.pause().await;
        self.fake.resolve_resource(group, version, plural).await
    }
    async fn get(&self, r: &Resolved, ns: &str, name: &str) -> Result<Option<Value>, ClusterError> {
        self.pause().await;
        self.fake.get(r, ns, name).await
    }
    async fn create(&self, r: &Resolved, ns: &str, obj: Value) -> Result<Value, ClusterError> {
        self.pause().await;
        self.check_owner(&obj);
        self.fake.create(r, ns, obj).await
    }
    async fn replace(
        &self,
        r: &Resolved,
        ns: &str,
        name: &str,
        obj: Value,
    ) -> Result<Value, ClusterError> {
        self.pause().await;
        self.check_owner(&obj);
        self.fake.replace(r, ns, name, obj).await
    }
    async fn server_side_apply(
        &self,
        r: &Resolved,
        ns: &str,
        name: &str,
        obj: Value,
        field_manager: &str,
        force: bool,
    ) -> Result<Value, ClusterError> {
        self.pause().await;
        self.check_owner(&obj);
        self.fake
            .server_side_apply(r, ns, name, obj, field_manager, force)
            .await
    }
    async fn delete(
        &self,
        r: &Resolved,
        ns: &str,
        name: &str,
        uid: Option<&str>,
    ) -> Result<(), ClusterError> {
        self.pause().await;
        let existed = self.fake.get(r, ns, name).await.ok().flatten().is_some();
        let out = self.fake.delete(r, ns, name, uid).await;
        if existed && out.is_ok() {
            self.log
                .lock()
                .expect("not poisoned")
                .deleted
                .push(name.to_string());
        }
        out
    }
    fn watch_kind(&self, r: &Resolved) -> WatchStream {
        self.fake.watch_kind(r)
    }
    fn watch_object(&self, r: &Resolved, ns: &str, name: &str) -> WatchStream {
        self.fake.watch_object(r, ns, name)
    }
    async fn server_version(&self) -> Result<String, ClusterError> {
        self.fake.server_version().await
    }
}

/// One durable write of a record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    pub name: String,
    pub uid: String,
    pub generation: i64,
    pub deleting: bool,
}

#[derive(Clone, Debug, Default)]
pub struct SimStore {
    pub inner: MemoryStore,
    pub history: Arc<Mutex<Vec<Recorded>>>,
}

impl SimStore {
    /// Whether `name` at `uid` was ever recorded at `generation` or later.
    pub fn recorded(&self, name: &str, uid: &str, generation: i64) -> bool {
        self.history
            .lock()
            .expect("not poisoned")
            .iter()
            .any(|r| r.name == name && r.uid == uid && r.generation >= generation)
    }
}

impl RecordStore for SimStore {
    async fn list(&self) -> Result<Vec<WorkRecord>, StoreError> {
        self.inner.list().await
    }
    async fn put(&self, record: &WorkRecord) -> Result<(), StoreError> {
        self.history.lock().expect("not poisoned").push(Recorded {
            name: record.name.clone(),
            uid: record.uid.clone(),
            generation: record.generation,
            deleting: record.deleting,
        });
        self.inner.put(record).await
    }
    async fn remove(&self, name: &str) -> Result<(), StoreError> {
        self.inner.remove(name).await
    }
    async fn load_epoch(&self) -> Result<u64, StoreError> {
        self.inner.load_epoch().await
    }
    async fn save_epoch(&self, epoch: u64) -> Result<(), StoreError> {
        self.inner.save_epoch(epoch).await
    }
}
