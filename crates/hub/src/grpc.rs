//! The `Dispatch` service: one long-lived bidirectional stream per agent.
//!
//! No Kubernetes here: the service reads desired state from the index's per-cluster
//! `watch` channel and hands agent reports to the status writer's queue.
//!
//! Per stream, two tasks: the outbound one sends `Welcome`, the initial resync and
//! then every change (and keepalives); the inbound one reads the agent's messages.
//! They are independent, so an agent that reads slowly never stops its own reports,
//! and a slow or stuck agent only ever blocks its own tasks.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use drbridge_proto::v1 as pb;
use drbridge_proto::v1::dispatch_server::Dispatch;
use futures::Stream;
use parking_lot::Mutex;
use prost::Message;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::identity::{Identities, Refusal};
use crate::index::{SharedIndex, SubscribeError};
use crate::metrics::Metrics;
use crate::presence::Event;
use crate::status::{Report, WriteOp};
use crate::sync::{Sent, incremental_sync, initial_sync};

/// The cluster an agent's stream belongs to, from its client certificate. The
/// server's wiring puts it into the request extensions (see `lib.rs`); a request
/// without it is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterIdentity(pub String);

/// Which certificate the agent presented, beside [`ClusterIdentity`] in the request
/// extensions: its serial (checked against the cluster's identity record) and its expiry (a
/// stream ends when the certificate does).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateInfo {
    pub serial: String,
    pub not_after: SystemTime,
}

#[derive(Clone, Debug)]
pub struct GrpcConfig {
    pub hub_id: String,
    pub epoch: u64,
    /// How often the agent must send a heartbeat, and how often the hub sends one.
    pub heartbeat: Duration,
    /// A stream on which nothing arrived for this long is closed.
    pub idle_timeout: Duration,
    /// How long the agent has to send `Hello`.
    pub hello_timeout: Duration,
    pub max_sync_bytes: usize,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        Self {
            hub_id: "drbridge-hub".into(),
            epoch: 1,
            heartbeat: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(20),
            hello_timeout: Duration::from_secs(30),
            max_sync_bytes: crate::sync::DEFAULT_MAX_SYNC_BYTES,
        }
    }
}

/// The open stream of each cluster; a newer stream replaces an older one.
#[derive(Debug, Default)]
struct Connections {
    by_cluster: Mutex<HashMap<String, (u64, watch::Sender<bool>)>>,
}

impl Connections {
    /// Registers `conn` for `cluster`, ending the previous stream.
    fn replace(&self, cluster: &str, conn: u64) -> watch::Receiver<bool> {
        let (tx, rx) = watch::channel(false);
        if let Some((old, old_tx)) = self
            .by_cluster
            .lock()
            .insert(cluster.to_string(), (conn, tx))
        {
            info!(%cluster, old, new = conn, "a newer stream replaces the open one");
            old_tx.send_replace(true);
        }
        rx
    }

    fn remove(&self, cluster: &str, conn: u64) {
        let mut map = self.by_cluster.lock();
        if map.get(cluster).is_some_and(|(c, _)| *c == conn) {
            map.remove(cluster);
        }
    }
}

/// The tonic service.
#[derive(Debug, Clone)]
pub struct DispatchService {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    cfg: GrpcConfig,
    index: SharedIndex,
    writes: mpsc::Sender<WriteOp>,
    presence: mpsc::Sender<Event>,
    conns: Connections,
    next_conn: AtomicU64,
    metrics: Metrics,
    identities: Option<Identities>,
}

type HubStream = Pin<Box<dyn Stream<Item = Result<pb::HubMessage, Status>> + Send + 'static>>;

fn hub_msg(body: pb::hub_message::Body) -> Result<pb::HubMessage, Status> {
    Ok(pb::HubMessage { body: Some(body) })
}

impl DispatchService {
    pub fn new(
        cfg: GrpcConfig,
        index: SharedIndex,
        writes: mpsc::Sender<WriteOp>,
        presence: mpsc::Sender<Event>,
        metrics: Metrics,
    ) -> Self {
        Self::with_identities(cfg, index, writes, presence, metrics, None)
    }

    /// With `identities`, a stream is accepted only for a certificate the cluster's identity
    /// record accepts (see [`crate::identity`]), and ends as soon as that changes.
    pub fn with_identities(
        cfg: GrpcConfig,
        index: SharedIndex,
        writes: mpsc::Sender<WriteOp>,
        presence: mpsc::Sender<Event>,
        metrics: Metrics,
        identities: Option<Identities>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                cfg,
                index,
                writes,
                presence,
                conns: Connections::default(),
                next_conn: AtomicU64::new(1),
                metrics,
                identities,
            }),
        }
    }
}

fn refusal_status(refusal: &Refusal) -> Status {
    match refusal {
        Refusal::NotReady => Status::unavailable(refusal.to_string()),
        _ => Status::permission_denied(refusal.to_string()),
    }
}

#[tonic::async_trait]
impl Dispatch for DispatchService {
    type ConnectStream = HubStream;

    async fn connect(
        &self,
        req: Request<Streaming<pb::AgentMessage>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        let inner = &self.inner;
        let Some(ClusterIdentity(cluster)) = req.extensions().get::<ClusterIdentity>().cloned()
        else {
            inner.metrics.connections_refused.inc();
            return Err(Status::unauthenticated(
                "no cluster identity: the client certificate names no cluster",
            ));
        };
        let cert = req.extensions().get::<CertificateInfo>().cloned();
        if let Some(ids) = &inner.identities {
            let Some(cert) = &cert else {
                inner.metrics.connections_refused.inc();
                return Err(Status::unauthenticated(
                    "no client certificate details on this connection",
                ));
            };
            if let Err(refusal) = ids.check(&cluster, &cert.serial) {
                inner.metrics.connections_refused.inc();
                warn!(%cluster, serial = %cert.serial, reason = %refusal, "agent stream refused");
                return Err(refusal_status(&refusal));
            }
        }
        if cert
            .as_ref()
            .is_some_and(|c| c.not_after <= SystemTime::now())
        {
            inner.metrics.connections_refused.inc();
            return Err(Status::unauthenticated(
                "the client certificate has expired",
            ));
        }
        let desired = inner.index.write().subscribe(&cluster).map_err(|e| {
            inner.metrics.connections_refused.inc();
            warn!(%cluster, error = %e, "agent stream refused");
            match e {
                SubscribeError::NotReady => Status::unavailable(e.to_string()),
                SubscribeError::NotRegistered(_) => Status::permission_denied(e.to_string()),
            }
        })?;
        let conn = inner.next_conn.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(4);
        let span = info_span!(
            "agent_stream",
            %cluster,
            conn,
            serial = cert.as_ref().map(|c| c.serial.as_str()).unwrap_or_default()
        );
        tokio::spawn(
            serve_stream(
                inner_clone(&self.inner),
                Peer { cluster, cert },
                conn,
                req.into_inner(),
                desired,
                tx,
            )
            .instrument(span),
        );
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

fn inner_clone(inner: &Arc<Inner>) -> Arc<Inner> {
    Arc::clone(inner)
}

/// Sends `msg` unless the stream is being replaced or the client went away. Returns
/// false when the stream should end.
async fn send(
    tx: &mpsc::Sender<Result<pb::HubMessage, Status>>,
    stop: &mut watch::Receiver<bool>,
    msg: Result<pb::HubMessage, Status>,
) -> bool {
    tokio::select! {
        r = tx.send(msg) => r.is_ok(),
        _ = stop.wait_for(|s| *s) => false,
    }
}

async fn send_syncs(
    inner: &Inner,
    tx: &mpsc::Sender<Result<pb::HubMessage, Status>>,
    stop: &mut watch::Receiver<bool>,
    syncs: Vec<pb::Sync>,
) -> bool {
    for s in syncs {
        let bytes = s.encoded_len();
        debug!(
            sync_id = s.sync_id,
            works = s.works.len(),
            views = s.views.len(),
            removed_views = s.removed_views.len(),
            initial_sync_done = s.initial_sync_done,
            bytes,
            "sending sync"
        );
        if !send(tx, stop, hub_msg(pb::hub_message::Body::Sync(s))).await {
            return false;
        }
        inner.metrics.syncs_sent.inc();
        inner.metrics.sync_bytes_sent.inc_by(bytes as u64);
    }
    true
}

/// Who is on a stream: the cluster and, when the transport says, its certificate.
struct Peer {
    cluster: String,
    cert: Option<CertificateInfo>,
}

async fn serve_stream(
    inner: Arc<Inner>,
    peer: Peer,
    conn: u64,
    mut inbound: Streaming<pb::AgentMessage>,
    mut desired: watch::Receiver<crate::index::Desired>,
    tx: mpsc::Sender<Result<pb::HubMessage, Status>>,
) {
    let cluster = peer.cluster.clone();
    // Hello first.
    let hello = match tokio::time::timeout(inner.cfg.hello_timeout, inbound.message()).await {
        Ok(Ok(Some(pb::AgentMessage {
            body: Some(pb::agent_message::Body::Hello(h)),
        }))) => h,
        Ok(Ok(Some(_))) => {
            inner.metrics.connections_refused.inc();
            let _ = tx
                .send(Err(Status::invalid_argument(
                    "the first message must be Hello",
                )))
                .await;
            return;
        }
        Ok(Ok(None)) | Ok(Err(_)) => return,
        Err(_) => {
            inner.metrics.connections_refused.inc();
            let _ = tx
                .send(Err(Status::deadline_exceeded(
                    "no Hello from the agent in time",
                )))
                .await;
            return;
        }
    };
    if hello.max_hub_epoch > inner.cfg.epoch {
        inner.metrics.connections_refused.inc();
        warn!(
            agent_epoch = hello.max_hub_epoch,
            epoch = inner.cfg.epoch,
            "agent has seen a newer hub"
        );
        let _ = tx
            .send(Err(Status::failed_precondition(format!(
                "hub {} has epoch {}, older than the highest epoch {} this agent accepted: this hub is a stale writer",
                inner.cfg.hub_id, inner.cfg.epoch, hello.max_hub_epoch
            ))))
            .await;
        return;
    }
    info!(
        agent_version = %hello.agent_version,
        known_works = hello.known_works.len(),
        "agent connected"
    );
    let mut stop = inner.conns.replace(&cluster, conn);
    inner.metrics.connected_agents.inc();
    let _ = inner
        .presence
        .send(Event::Connected {
            cluster: cluster.clone(),
            conn,
            info: hello.cluster.clone().unwrap_or_default(),
        })
        .await;

    let (inbound_done_tx, mut inbound_done) = tokio::sync::oneshot::channel::<Status>();
    let reader = tokio::spawn(
        read_inbound(
            inner.clone(),
            cluster.clone(),
            conn,
            inbound,
            inbound_done_tx,
        )
        .instrument(info_span!("inbound")),
    );

    let end = outbound(
        &inner,
        &peer,
        &hello,
        &mut desired,
        &tx,
        &mut stop,
        &mut inbound_done,
    )
    .await;
    if let Some(status) = end {
        let _ = tx.try_send(Err(status));
    }
    reader.abort();
    inner.conns.remove(&cluster, conn);
    inner.metrics.connected_agents.dec();
    let _ = inner
        .presence
        .send(Event::Disconnected {
            cluster: cluster.clone(),
            conn,
        })
        .await;
    info!("agent stream closed");
}

/// The outbound half. Returns the status to end the stream with, if any.
async fn outbound(
    inner: &Inner,
    peer: &Peer,
    hello: &pb::Hello,
    desired: &mut watch::Receiver<crate::index::Desired>,
    tx: &mpsc::Sender<Result<pb::HubMessage, Status>>,
    stop: &mut watch::Receiver<bool>,
    inbound_done: &mut tokio::sync::oneshot::Receiver<Status>,
) -> Option<Status> {
    let cluster = peer.cluster.as_str();
    let mut identity_changes = inner.identities.as_ref().map(|ids| {
        let mut rx = ids.changes();
        rx.mark_unchanged();
        rx
    });
    // The handshake checked the certificate once; the stream must not outlive it.
    let expiry = peer.cert.as_ref().map(|c| {
        let left = c
            .not_after
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        tokio::time::Instant::now() + left
    });
    let welcome = pb::Welcome {
        cluster: cluster.to_string(),
        hub_id: inner.cfg.hub_id.clone(),
        epoch: inner.cfg.epoch,
        heartbeat_seconds: inner.cfg.heartbeat.as_secs().max(1) as u32,
    };
    if !send(tx, stop, hub_msg(pb::hub_message::Body::Welcome(welcome))).await {
        return replaced(stop, cluster);
    }
    let mut next_id = 0u64;
    let snapshot = desired.borrow_and_update().clone();
    if !snapshot.registered {
        return Some(unregistered(cluster));
    }
    let (syncs, mut sent): (Vec<pb::Sync>, Sent) = initial_sync(
        &hello.known_works,
        &snapshot,
        inner.cfg.max_sync_bytes,
        &mut next_id,
    );
    if !send_syncs(inner, tx, stop, syncs).await {
        return replaced(stop, cluster);
    }
    let mut keepalive = tokio::time::interval(inner.cfg.heartbeat);
    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    keepalive.reset();
    enum Step {
        Changed(bool),
        Tick,
        Stop,
        InboundDone(Option<Status>),
        Closed,
        Identity,
        CertExpired,
    }
    loop {
        let step = tokio::select! {
            changed = desired.changed() => Step::Changed(changed.is_ok()),
            _ = keepalive.tick() => Step::Tick,
            _ = stop.wait_for(|s| *s) => Step::Stop,
            status = &mut *inbound_done => Step::InboundDone(status.ok()),
            _ = tx.closed() => Step::Closed,
            () = identity_changed(&mut identity_changes) => Step::Identity,
            () = sleep_until(expiry) => Step::CertExpired,
        };
        match step {
            Step::Identity => {
                if let (Some(ids), Some(cert)) = (&inner.identities, &peer.cert)
                    && let Err(refusal) = ids.check(cluster, &cert.serial)
                {
                    warn!(reason = %refusal, "ending the stream: its certificate is no longer accepted");
                    return Some(refusal_status(&refusal));
                }
            }
            Step::CertExpired => {
                info!("ending the stream: the client certificate expired");
                return Some(Status::unauthenticated(
                    "the client certificate expired; reconnect with the renewed certificate",
                ));
            }
            Step::Changed(false) => return Some(Status::unavailable("the hub is shutting down")),
            Step::Changed(true) => {
                let snapshot = desired.borrow_and_update().clone();
                if !snapshot.registered {
                    return Some(unregistered(cluster));
                }
                let syncs =
                    incremental_sync(&mut sent, &snapshot, inner.cfg.max_sync_bytes, &mut next_id);
                if !send_syncs(inner, tx, stop, syncs).await {
                    return replaced(stop, cluster);
                }
            }
            Step::Tick => {
                let hb = pb::Heartbeat {
                    sent_time: crate::status::rfc3339(chrono::Utc::now()),
                };
                if !send(tx, stop, hub_msg(pb::hub_message::Body::Heartbeat(hb))).await {
                    return replaced(stop, cluster);
                }
            }
            Step::Stop => return replaced(stop, cluster),
            Step::InboundDone(status) => return status,
            Step::Closed => return None,
        }
    }
}

/// Completes when the identity records change; never without records.
async fn identity_changed(rx: &mut Option<watch::Receiver<u64>>) {
    match rx {
        Some(rx) => {
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

fn replaced(stop: &watch::Receiver<bool>, cluster: &str) -> Option<Status> {
    if *stop.borrow() {
        Some(Status::aborted(format!(
            "a newer stream for cluster {cluster:?} replaced this one"
        )))
    } else {
        None
    }
}

fn unregistered(cluster: &str) -> Status {
    Status::permission_denied(format!(
        "cluster {cluster:?} is no longer registered on this hub: its ManagedCluster was deleted"
    ))
}

/// The inbound half: reports go to the status writer, every message counts as a
/// sign of life. Ends (and tells the outbound half why) on error, end of stream,
/// protocol violation or silence.
async fn read_inbound(
    inner: Arc<Inner>,
    cluster: String,
    conn: u64,
    mut inbound: Streaming<pb::AgentMessage>,
    done: tokio::sync::oneshot::Sender<Status>,
) {
    use pb::agent_message::Body;
    let status = loop {
        let msg = match tokio::time::timeout(inner.cfg.idle_timeout, inbound.message()).await {
            Err(_) => {
                break Status::deadline_exceeded(format!(
                    "nothing received from the agent for {:?}",
                    inner.cfg.idle_timeout
                ));
            }
            Ok(Err(e)) => {
                debug!(error = %e, "agent stream failed");
                break Status::cancelled("the agent's stream failed");
            }
            Ok(Ok(None)) => break Status::cancelled("the agent closed its stream"),
            Ok(Ok(Some(m))) => m,
        };
        let _ = inner.presence.try_send(Event::Seen {
            cluster: cluster.clone(),
            conn,
        });
        let report = match msg.body {
            Some(Body::WorkStatus(status)) => Some(Report::Work {
                cluster: cluster.clone(),
                status,
            }),
            Some(Body::WorkGone(gone)) => Some(Report::Gone {
                cluster: cluster.clone(),
                gone,
            }),
            Some(Body::ViewStatus(status)) => Some(Report::View {
                cluster: cluster.clone(),
                status,
            }),
            Some(Body::Heartbeat(_)) => None,
            Some(Body::SyncAck(ack)) => {
                debug!(sync_id = ack.sync_id, "sync acknowledged");
                None
            }
            Some(Body::Hello(_)) => break Status::invalid_argument("Hello sent twice"),
            None => None,
        };
        if let Some(r) = report
            && inner.writes.send(WriteOp::Report(r)).await.is_err()
        {
            break Status::unavailable("the hub is shutting down");
        }
    };
    let _ = done.send(status);
}

#[cfg(test)]
mod tests;
