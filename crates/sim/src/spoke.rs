//! A managed cluster in memory: the agent crate's `FakeCluster`, observed so that each API
//! call takes (virtual) time, so that a crash can stop the agent between any two API
//! calls, and that what the invariants judge is logged: deletions and writes.
//! [`SimStore`] is the durable record (`MemoryStore`), with a history of every write.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use drbridge_agent::cluster::Resolved;
use drbridge_agent::record::{StoreError, WorkRecord};
use drbridge_agent::testing::{FakeCluster, Observer};
use drbridge_agent::{MemoryStore, RecordStore};
use futures::future::BoxFuture;
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

/// A spoke's cluster: the agent's [`FakeCluster`], observed by a [`Spoke`].
#[derive(Clone, Debug)]
pub struct SimCluster {
    pub name: String,
    pub fake: FakeCluster,
    pub log: Arc<Mutex<SpokeLog>>,
}

impl SimCluster {
    pub fn new(name: &str, rng: Rng) -> Self {
        let log = Arc::<Mutex<SpokeLog>>::default();
        let fake = FakeCluster::new().observed_by(Arc::new(Spoke {
            name: name.to_string(),
            latency: Mutex::new(rng),
            log: log.clone(),
        }));
        // The agent reads the cluster's id claim from kube-system.
        fake.put(
            "Namespace",
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kube-system", "uid": format!("{name}-kube-system")}}),
        );
        Self {
            name: name.to_string(),
            fake,
            log,
        }
    }
}

/// What the simulation adds to each of the agent's calls: a pause of 0 to 7 ms of virtual
/// time, and the log of deletions and foreign writes.
#[derive(Debug)]
struct Spoke {
    name: String,
    latency: Mutex<Rng>,
    log: Arc<Mutex<SpokeLog>>,
}

impl Observer for Spoke {
    fn before_call(&self) -> BoxFuture<'_, ()> {
        let ms = self.latency.lock().expect("not poisoned").below(8);
        Box::pin(async move {
            if ms > 0 {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
        })
    }

    fn writing(&self, obj: &Value) {
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

    fn deleted(&self, _r: &Resolved, _ns: &str, name: &str) {
        self.log
            .lock()
            .expect("not poisoned")
            .deleted
            .push(name.to_string());
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
