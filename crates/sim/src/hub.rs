//! One hub replica: the hub crate's real index (fed by watches of the fake API server, with
//! lag and relists), desired-state diffing (`sync`), report admission and status fencing
//! (`grpc::admit`, `status::plan_*`), the coalescing write queue (`status::Pending`) and ack
//! tracking (`acks::Acks`). What is the sim's own is the glue the hub does with tokio and
//! kube: which stream is polled when, and calling the fake API server.

use std::collections::BTreeMap;

use drbridge_hub::acks::{Acks, Since};
use drbridge_hub::desired::{DEFAULT_MAX_SYNC_BYTES, Desired, Limits};
use drbridge_hub::grpc::admit;
use drbridge_hub::index::{Index, Intent};
use drbridge_hub::metrics::Metrics;
use drbridge_hub::objects::{ObjectKey, WorkObject};
use drbridge_hub::status::{Charge, Pending, Report, WriteOp, plan_finalizer, plan_work_status};
use drbridge_hub::sync::{Sent, incremental_sync, initial_sync};
use drbridge_proto::v1 as pb;
use tokio::sync::{mpsc, watch};

use crate::Violation;
use crate::hubapi::{Event, HubApi, WriteError};

/// A stream as the hub holds it.
#[derive(Debug)]
pub struct Stream {
    pub cluster: String,
    pub desired: watch::Receiver<Desired>,
    /// `None` until Hello.
    pub sent: Option<Sent>,
    next_id: u64,
    /// The works of each sync sent, for checking acknowledgements.
    pub syncs: BTreeMap<u64, Vec<pb::Work>>,
}

/// What a replica answers a message with.
#[derive(Debug)]
pub enum Reply {
    Send(Vec<pb::HubMessage>),
    /// End the stream (refused, stale, unregistered).
    Close(String),
}

#[derive(Debug)]
pub struct HubReplica {
    pub index: Index,
    intents: mpsc::Receiver<Intent>,
    /// Position in the API server's watch log.
    pub cursor: usize,
    /// The term this replica believes it holds.
    pub epoch: Option<u64>,
    pub streams: BTreeMap<u64, Stream>,
    pub pending: Pending,
    pub acks: Acks,
}

fn hub_msg(body: pb::hub_message::Body) -> pb::HubMessage {
    pb::HubMessage { body: Some(body) }
}

impl HubReplica {
    /// A replica that has just started: lists everything (the index is ready only then).
    pub fn start(api: &HubApi) -> Self {
        let (tx, intents) = mpsc::channel(4096);
        let mut index = Index::new(Limits::default(), Some(tx), Metrics::default());
        index.reset_clusters(api.cluster_objects());
        index.reset_views(Vec::new());
        index.reset_works(api.work_objects());
        HubReplica {
            index,
            intents,
            cursor: api.log.len(),
            epoch: None,
            streams: BTreeMap::new(),
            pending: Pending::default(),
            acks: Acks::default(),
        }
    }

    /// A watch relists (after an expired resourceVersion, a reconnect of the watch).
    pub fn relist(&mut self, api: &HubApi) {
        self.index.reset_clusters(api.cluster_objects());
        self.index.reset_works(api.work_objects());
        self.cursor = api.log.len();
    }

    /// Delivers up to `n` watch events.
    pub fn watch(&mut self, api: &HubApi, n: usize) {
        let end = self.cursor.saturating_add(n).min(api.log.len());
        for ev in &api.log[self.cursor..end] {
            match ev {
                Event::Work(v) => {
                    if let Some(w) = HubApi::work_object(v) {
                        self.index.apply_work(w);
                    }
                }
                Event::WorkDeleted { namespace, name } => self.index.delete_work(namespace, name),
                Event::Cluster(v) => {
                    if let Some(c) = HubApi::cluster_object(v) {
                        self.index.apply_cluster(c);
                    }
                }
            }
        }
        self.cursor = end;
    }

    /// `Dispatch.Connect` before Hello: leadership, readiness, registration.
    pub fn accept(&mut self, conn: u64, cluster: &str) -> Result<(), String> {
        if self.epoch.is_none() {
            return Err("not the leader".into());
        }
        let desired = self.index.subscribe(cluster).map_err(|e| e.to_string())?;
        self.streams.insert(
            conn,
            Stream {
                cluster: cluster.to_string(),
                desired,
                sent: None,
                next_id: 0,
                syncs: BTreeMap::new(),
            },
        );
        Ok(())
    }

    fn record_sent(&mut self, conn: u64, syncs: Vec<pb::Sync>) -> Vec<pb::HubMessage> {
        let stream = self.streams.get_mut(&conn).expect("open stream");
        let mut out = Vec::with_capacity(syncs.len());
        for s in syncs {
            self.acks
                .sent(&stream.cluster, conn, s.sync_id, Since::now());
            stream.syncs.insert(s.sync_id, s.works.clone());
            out.push(hub_msg(pb::hub_message::Body::Sync(s)));
        }
        out
    }

    /// A message from an agent on stream `conn`. Reports go to the write queue.
    pub fn receive(&mut self, conn: u64, msg: pb::AgentMessage, check: &mut Vec<Ack>) -> Reply {
        use pb::agent_message::Body;
        let Some(epoch) = self.epoch else {
            return Reply::Close("not the leader".into());
        };
        let Some(stream) = self.streams.get_mut(&conn) else {
            return Reply::Close("no such stream".into());
        };
        let cluster = stream.cluster.clone();
        let body = match msg.body {
            Some(b) => b,
            None => return Reply::Send(vec![]),
        };
        if stream.sent.is_none() {
            // As grpc::serve_stream: Hello first, and the stale-writer check.
            let Body::Hello(hello) = body else {
                return Reply::Close("the first message must be Hello".into());
            };
            if hello.max_hub_epoch > epoch {
                return Reply::Close(format!(
                    "hub epoch {epoch} is older than the agent's {}",
                    hello.max_hub_epoch
                ));
            }
            let snapshot = stream.desired.borrow_and_update().clone();
            if !snapshot.registered {
                return Reply::Close("unregistered".into());
            }
            let (syncs, sent) = initial_sync(
                &hello.known_works,
                &snapshot,
                DEFAULT_MAX_SYNC_BYTES,
                &mut stream.next_id,
            );
            stream.sent = Some(sent);
            let mut out = vec![hub_msg(pb::hub_message::Body::Welcome(pb::Welcome {
                cluster: cluster.clone(),
                hub_id: "sim".into(),
                epoch,
                heartbeat_seconds: 5,
            }))];
            out.extend(self.record_sent(conn, syncs));
            return Reply::Send(out);
        }
        // As grpc::read_inbound: the cluster is the stream's, never the message's.
        let report = match body {
            Body::WorkStatus(status) => Report::Work { cluster, status },
            Body::WorkGone(gone) => {
                // As the hub: straight to the index, which then asks to release the finalizer.
                let _ = drbridge_hub::grpc::confirm_gone(&mut self.index, &cluster, &gone);
                return Reply::Send(vec![]);
            }
            Body::ViewStatus(status) => Report::View { cluster, status },
            Body::SyncAck(ack) => {
                // A work a later sync of this stream sent again may be acknowledged by that
                // one's recording (the agent keeps only the latest message per work).
                let later: Vec<&String> = stream
                    .syncs
                    .range(ack.sync_id + 1..)
                    .flat_map(|(_, ws)| ws.iter().map(|w| &w.name))
                    .collect();
                let works = stream
                    .syncs
                    .get(&ack.sync_id)
                    .into_iter()
                    .flatten()
                    .filter(|w| !later.contains(&&w.name))
                    .cloned()
                    .collect();
                check.push(Ack {
                    cluster: cluster.clone(),
                    works,
                });
                self.acks.acked(&cluster, conn, ack.sync_id);
                return Reply::Send(vec![]);
            }
            Body::Heartbeat(_) => return Reply::Send(vec![]),
            Body::Hello(_) => return Reply::Close("Hello sent twice".into()),
        };
        if admit(&self.index, &report).is_ok() {
            self.pending
                .push_if(WriteOp::Report(report, Charge::none()), true);
        }
        Reply::Send(vec![])
    }

    /// Desired-state changes of every welcomed stream, as `grpc::outbound` sends them.
    pub fn changes(&mut self) -> Vec<(u64, Reply)> {
        let mut out = Vec::new();
        let conns: Vec<u64> = self.streams.keys().copied().collect();
        for conn in conns {
            let stream = self.streams.get_mut(&conn).expect("listed");
            let Some(sent) = stream.sent.as_mut() else {
                continue;
            };
            if !stream.desired.has_changed().unwrap_or(false) {
                continue;
            }
            let snapshot = stream.desired.borrow_and_update().clone();
            if !snapshot.registered {
                out.push((conn, Reply::Close("unregistered".into())));
                continue;
            }
            let syncs =
                incremental_sync(sent, &snapshot, DEFAULT_MAX_SYNC_BYTES, &mut stream.next_id);
            if !syncs.is_empty() {
                let msgs = self.record_sent(conn, syncs);
                out.push((conn, Reply::Send(msgs)));
            }
        }
        out
    }

    pub fn close(&mut self, conn: u64) {
        if let Some(s) = self.streams.remove(&conn) {
            self.acks.ended(&s.cluster, conn);
        }
    }

    /// Moves index intents to the write queue; with `sweep`, also what the state implies.
    pub fn collect_intents(&mut self, sweep: bool) {
        while let Ok(i) = self.intents.try_recv() {
            self.pending.push(WriteOp::Intent(i));
        }
        if sweep {
            for i in self.index.sweep() {
                self.pending.push(WriteOp::Intent(i));
            }
        }
    }

    fn finalizer(&mut self, api: &mut HubApi, key: &ObjectKey) -> Result<(), Violation> {
        let plan = match self.index.work(key) {
            Some(e) => plan_finalizer(e, self.index.is_registered(&key.namespace)),
            None => return Ok(()),
        };
        if let Ok(body) = plan {
            // A conflict is retried when the watch brings the newer object.
            let _ = api.patch_work(&key.namespace, &key.name, &body, false)?;
        }
        Ok(())
    }

    /// Executes up to `n` queued writes, as `status::StatusWriter` does, if this replica
    /// (believes it) leads.
    pub fn write(&mut self, api: &mut HubApi, n: usize) -> Result<(), Violation> {
        if self.epoch.is_none() {
            return Ok(());
        }
        for _ in 0..n {
            let Some(op) = self.pending.pop() else {
                break;
            };
            match op {
                WriteOp::Report(Report::Work { cluster, status }, _) => {
                    let key = ObjectKey::new(&cluster, &status.name);
                    let mut current = self
                        .index
                        .work(&key)
                        .map(|e| (e.meta.clone(), e.conditions.clone()));
                    for _ in 0..3 {
                        let Some((meta, conds)) = &current else {
                            break;
                        };
                        let Ok(body) = plan_work_status(meta, conds, &status, "sim") else {
                            break;
                        };
                        match api.patch_work(&key.namespace, &key.name, &body, true)? {
                            Err(WriteError::Conflict) => {
                                current = api
                                    .work(&key.namespace, &key.name)
                                    .and_then(HubApi::work_object)
                                    .map(|w: WorkObject| (w.meta, w.conditions));
                            }
                            _ => break,
                        }
                    }
                }
                WriteOp::Intent(Intent::AddFinalizer(key) | Intent::ReleaseFinalizer(key)) => {
                    self.finalizer(api, &key)?;
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// An acknowledgement the hub received, with the works of the sync it names.
#[derive(Debug)]
pub struct Ack {
    pub cluster: String,
    pub works: Vec<pb::Work>,
}
