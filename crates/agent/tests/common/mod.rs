//! A fake hub for agent tests: drives one session over channels and collects what the
//! agent sends.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use drbridge_agent::cluster::Cluster;
use drbridge_agent::pb;
use drbridge_agent::session::{Outcome, run_session};
use drbridge_agent::testing::FakeCluster;
use drbridge_agent::{Agent, RecordStore, WorkConfig};
use drbridge_model::Allowlist;
use pb::agent_message::Body;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

/// Generous: real API servers on a 2-core machine delete namespaces in seconds.
pub const DEADLINE: Duration = Duration::from_secs(60);

pub struct Harness<C: Cluster, S: RecordStore> {
    pub agent: Arc<Agent<C, S>>,
    pub cluster: C,
    pub store: S,
    pub hub: mpsc::Sender<Result<pb::HubMessage, tonic::Status>>,
    pub out: mpsc::Receiver<pb::AgentMessage>,
    pub stop: watch::Sender<bool>,
    pub task: tokio::task::JoinHandle<Outcome>,
    pub next_sync: u64,
    pub seen: Vec<Body>,
}

pub fn cfg() -> WorkConfig {
    let mut c = WorkConfig::default();
    c.policy.allowlist = Allowlist::allow_all();
    c.reapply = None;
    c.debounce = Duration::from_millis(10);
    c
}

/// Opens a session: Hello is queued, Welcome (cluster "c1" unless the agent says
/// otherwise) is sent.
pub async fn connect<C: Cluster + Clone, S: RecordStore + Clone>(
    agent: Arc<Agent<C, S>>,
    cluster: C,
    store: S,
    epoch: u64,
) -> Harness<C, S> {
    let (hub, hub_rx) = mpsc::channel(64);
    let (tx, out) = mpsc::channel(256);
    let (stop, stop_rx) = watch::channel(false);
    tx.send(agent.hello()).await.unwrap();
    hub.send(Ok(pb::HubMessage {
        body: Some(pb::hub_message::Body::Welcome(pb::Welcome {
            cluster: agent.cluster_name().to_string(),
            hub_id: "hub".into(),
            epoch,
            heartbeat_seconds: 5,
        })),
    }))
    .await
    .unwrap();
    let a = agent.clone();
    let task = tokio::spawn(async move {
        let (ready, _) = watch::channel(false);
        let mut stop_rx = stop_rx;
        run_session(
            a.session(),
            &tx,
            ReceiverStream::new(hub_rx),
            &ready,
            &mut stop_rx,
        )
        .await
    });
    Harness {
        agent,
        cluster,
        store,
        hub,
        out,
        stop,
        task,
        next_sync: 1,
        seen: Vec::new(),
    }
}

/// A fake cluster with the kube-system namespace the agent's claims read.
pub fn fake_cluster() -> FakeCluster {
    let c = FakeCluster::new();
    c.put(
        "Namespace",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kube-system"}}),
    );
    c
}

/// Starts an agent over `cluster` and `store` with `cfg`, and opens a session at `epoch`.
pub async fn start_agent<C: Cluster + Clone, S: RecordStore + Clone>(
    cluster: &C,
    store: &S,
    cfg: WorkConfig,
    epoch: u64,
) -> Harness<C, S> {
    let agent = Arc::new(
        Agent::start(
            Arc::new(cluster.clone()),
            Arc::new(store.clone()),
            "c1",
            cfg,
            Default::default(),
        )
        .await
        .unwrap(),
    );
    connect(agent, cluster.clone(), store.clone(), epoch).await
}

pub fn b(v: Value) -> Vec<u8> {
    serde_json::to_vec(&v).unwrap()
}

pub fn cm(name: &str, data: Value) -> Vec<u8> {
    cm_in("ns", name, data)
}

pub fn cm_in(ns: &str, name: &str, data: Value) -> Vec<u8> {
    b(
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns}, "data": data}),
    )
}

pub fn work(name: &str, uid: &str, generation: i64, manifests: Vec<Vec<u8>>) -> pb::Work {
    pb::Work {
        name: name.into(),
        uid: uid.into(),
        generation,
        manifests,
        delete_option: Some(pb::DeleteOption::default()),
        manifest_configs: vec![],
        deleting: false,
    }
}

pub fn deleting(
    name: &str,
    uid: &str,
    generation: i64,
    policy: pb::delete_option::Policy,
) -> pb::Work {
    pb::Work {
        name: name.into(),
        uid: uid.into(),
        generation,
        delete_option: Some(pb::DeleteOption {
            propagation_policy: policy as i32,
            orphaning_rules: vec![],
        }),
        deleting: true,
        ..Default::default()
    }
}

pub fn cond<'a>(c: &'a [pb::Condition], t: &str) -> &'a pb::Condition {
    c.iter()
        .find(|c| c.r#type == t)
        .unwrap_or_else(|| panic!("no {t} condition in {c:?}"))
}

pub fn all_available(s: &pb::WorkStatus) -> bool {
    s.conditions
        .iter()
        .any(|c| c.r#type == "Available" && c.status == "True")
}

pub fn view(
    name: &str,
    generation: i64,
    group: &str,
    version: &str,
    kind: &str,
    ns: &str,
    obj: &str,
) -> pb::View {
    pb::View {
        name: name.into(),
        uid: format!("{name}-uid"),
        generation,
        scope: Some(pb::ViewScope {
            api_group: group.into(),
            version: version.into(),
            kind: kind.into(),
            resource: String::new(),
            name: obj.into(),
            namespace: ns.into(),
        }),
    }
}

pub fn view_error(s: &pb::ViewStatus) -> Option<(String, String)> {
    match &s.outcome {
        Some(pb::view_status::Outcome::Error(e)) => Some((e.reason.clone(), e.message.clone())),
        _ => None,
    }
}

pub fn view_object(s: &pb::ViewStatus) -> Option<Value> {
    match &s.outcome {
        Some(pb::view_status::Outcome::Object(b)) => serde_json::from_slice(b).ok(),
        _ => None,
    }
}

/// Waits for `f` to hold, polling (for state outside the agent's messages).
pub async fn eventually(what: &str, mut f: impl AsyncFnMut() -> bool) {
    drbridge_localenv::eventually(what, DEADLINE, async || f().await.then_some(())).await
}

impl<C: Cluster, S: RecordStore> Harness<C, S> {
    pub async fn sync(
        &mut self,
        works: Vec<pb::Work>,
        views: Vec<pb::View>,
        removed: Vec<String>,
        done: bool,
    ) -> u64 {
        let id = self.next_sync;
        self.next_sync += 1;
        self.hub
            .send(Ok(pb::HubMessage {
                body: Some(pb::hub_message::Body::Sync(pb::Sync {
                    sync_id: id,
                    works,
                    views,
                    removed_views: removed,
                    initial_sync_done: done,
                })),
            }))
            .await
            .unwrap();
        id
    }

    /// Sends works in a sync that completes the resync, and waits until they are recorded.
    pub async fn send(&mut self, works: Vec<pb::Work>) {
        let id = self.sync(works, vec![], vec![], true).await;
        self.ack(id).await;
    }

    /// Deletes a work with `policy` and waits until the agent reports it gone.
    pub async fn delete_work(
        &mut self,
        name: &str,
        uid: &str,
        generation: i64,
        policy: pb::delete_option::Policy,
    ) {
        let id = self
            .sync(
                vec![deleting(name, uid, generation, policy)],
                vec![],
                vec![],
                false,
            )
            .await;
        self.ack(id).await;
        self.gone(name).await;
    }

    /// The first message, in the order sent, that `f` accepts; it is consumed, the others
    /// stay for later calls.
    pub async fn next<T>(&mut self, f: impl FnMut(&Body) -> Option<T>) -> T {
        self.next_within(DEADLINE, f)
            .await
            .expect("expected message not sent in time")
    }

    pub async fn next_within<T>(
        &mut self,
        within: Duration,
        mut f: impl FnMut(&Body) -> Option<T>,
    ) -> Option<T> {
        let deadline = tokio::time::Instant::now() + within;
        let mut i = 0;
        loop {
            while i < self.seen.len() {
                if let Some(t) = f(&self.seen[i]) {
                    self.seen.remove(i);
                    return Some(t);
                }
                i += 1;
            }
            let m = tokio::time::timeout_at(deadline, self.out.recv())
                .await
                .ok()?
                .expect("stream closed");
            if let Some(b) = m.body {
                self.seen.push(b);
            }
        }
    }

    pub async fn status(
        &mut self,
        name: &str,
        mut pred: impl FnMut(&pb::WorkStatus) -> bool,
    ) -> pb::WorkStatus {
        self.next(|b| match b {
            Body::WorkStatus(s) if s.name == name && pred(s) => Some(s.clone()),
            _ => None,
        })
        .await
    }

    pub async fn ack(&mut self, id: u64) {
        self.next(|b| matches!(b, Body::SyncAck(a) if a.sync_id == id).then_some(()))
            .await
    }

    pub async fn gone(&mut self, name: &str) -> pb::WorkGone {
        self.next(|b| match b {
            Body::WorkGone(g) if g.name == name => Some(g.clone()),
            _ => None,
        })
        .await
    }

    pub async fn view(
        &mut self,
        name: &str,
        mut pred: impl FnMut(&pb::ViewStatus) -> bool,
    ) -> pb::ViewStatus {
        self.next(|b| match b {
            Body::ViewStatus(s) if s.name == name && pred(s) => Some(s.clone()),
            _ => None,
        })
        .await
    }

    pub async fn stop(self) -> Outcome {
        self.stop.send(true).unwrap();
        self.task.await.unwrap()
    }
}
