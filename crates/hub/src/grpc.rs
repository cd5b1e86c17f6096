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
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::acks::{SharedAcks, Since};
use crate::desired::Desired;
use crate::identity::{Identities, Refusal};
use crate::index::{SharedIndex, SubscribeError};
use crate::leader::Leadership;
use crate::metrics::Metrics;
use crate::presence::Event;
use crate::status::{Charge, Report, Skip, WriteOp, fence};
use crate::sync::{Sent, delta_sync, incremental_sync, initial_sync};

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
    /// Largest message accepted from an agent ([`DEFAULT_MAX_REPORT_BYTES`]).
    pub max_report_bytes: usize,
    /// Reports of one cluster held by the hub at once (queued or being written), in
    /// [`report_cost`] units (about bytes of memory); a cluster over it waits, alone.
    pub report_budget_bytes: usize,
    /// Streams of one cluster open at once (a reconnect may overlap the stream it replaces).
    pub max_streams_per_cluster: usize,
    /// What one cluster's streams may send per second, in bytes plus [`MESSAGE_COST`] per
    /// message, after a burst of `report_budget_bytes`; past it the hub reads them more slowly
    /// (HTTP/2 flow control holds the agent back), so a flood costs the hub bounded CPU.
    pub read_rate_bytes: usize,
}

/// What every message counts in [`GrpcConfig::read_rate_bytes`] besides its size: a flood of
/// tiny messages costs the hub too.
pub const MESSAGE_COST: usize = 1024;
/// Default of [`GrpcConfig::read_rate_bytes`]: four of the largest reports a second.
pub const DEFAULT_READ_RATE_BYTES: usize = 4 * DEFAULT_MAX_REPORT_BYTES;

/// Default of [`GrpcConfig::max_report_bytes`]. A report ends up in one object's status, and
/// an object is at most etcd's request limit (1.5 MiB, `--max-request-bytes`): a view's
/// result is the whole viewed object (itself at most 1.5 MiB on the managed cluster), a work's
/// status describes manifests that fit in a work, and its proto encoding is smaller than the
/// JSON the hub writes. A bigger report could never be written, so the hub does not read one:
/// 1.5 MiB plus 0.5 MiB of room for the envelope and a Hello's list of known works (about
/// 6,800 works at the longest names, 20,000 at typical ones). Agents fit their reports to it.
pub const DEFAULT_MAX_REPORT_BYTES: usize = drbridge_proto::MAX_REPORT_BYTES;
/// Default of [`GrpcConfig::report_budget_bytes`]: eight of the largest reports.
pub const DEFAULT_REPORT_BUDGET_BYTES: usize = 8 * DEFAULT_MAX_REPORT_BYTES;
/// Default of [`GrpcConfig::max_streams_per_cluster`].
pub const DEFAULT_MAX_STREAMS_PER_CLUSTER: usize = 4;
/// An agent's messages tell presence it is alive at most this often (a flood of messages
/// must not flood presence, whose queue every cluster shares).
const SEEN_INTERVAL: Duration = Duration::from_secs(1);

impl Default for GrpcConfig {
    fn default() -> Self {
        Self {
            hub_id: "drbridge-hub".into(),
            epoch: 1,
            heartbeat: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(20),
            hello_timeout: Duration::from_secs(30),
            max_sync_bytes: crate::desired::DEFAULT_MAX_SYNC_BYTES,
            max_report_bytes: DEFAULT_MAX_REPORT_BYTES,
            report_budget_bytes: DEFAULT_REPORT_BUDGET_BYTES,
            max_streams_per_cluster: DEFAULT_MAX_STREAMS_PER_CLUSTER,
            read_rate_bytes: DEFAULT_READ_RATE_BYTES,
        }
    }
}

/// A token bucket, driven with explicit instants so it is tested without a clock.
#[derive(Clone, Debug)]
pub struct RateLimit {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: tokio::time::Instant,
}

impl RateLimit {
    /// `rate` per second after a full bucket of `burst`.
    pub fn new(rate: usize, burst: usize, now: tokio::time::Instant) -> Self {
        let burst = burst.max(1) as f64;
        Self {
            rate: rate.max(1) as f64,
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Takes `cost` at `now`; returns how long the caller should wait before going on.
    pub fn take(&mut self, cost: usize, now: tokio::time::Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst) - cost as f64;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

/// What one cluster may hold on the hub: its streams and the reports it queued.
#[derive(Debug)]
struct Budget {
    reports: Arc<Semaphore>,
    streams: Arc<Semaphore>,
    /// Shared by the cluster's streams, so reconnecting does not refill it.
    rate: Mutex<RateLimit>,
}

/// The [`Budget`] of every cluster that opened a stream (only registered clusters get one, so
/// the map is bounded by the ManagedClusters an admin created).
#[derive(Debug, Default)]
struct Budgets {
    by_cluster: Mutex<HashMap<String, Arc<Budget>>>,
}

impl Budgets {
    fn of(&self, cluster: &str, cfg: &GrpcConfig) -> Arc<Budget> {
        self.by_cluster
            .lock()
            .entry(cluster.to_string())
            .or_insert_with(|| {
                Arc::new(Budget {
                    reports: Arc::new(Semaphore::new(permits(cfg.report_budget_bytes))),
                    streams: Arc::new(Semaphore::new(cfg.max_streams_per_cluster.max(1))),
                    rate: Mutex::new(RateLimit::new(
                        cfg.read_rate_bytes,
                        cfg.report_budget_bytes,
                        tokio::time::Instant::now(),
                    )),
                })
            })
            .clone()
    }
}

fn permits(n: usize) -> usize {
    n.clamp(1, u32::MAX as usize)
}

/// What a report costs while the hub holds it: its encoded size plus the memory of each
/// decoded condition and manifest (a prost message takes far more memory than its encoding:
/// an empty condition is 2 bytes on the wire and over 100 in memory).
pub fn report_cost(report: &Report) -> usize {
    const PER_ITEM: usize = 192;
    match report {
        Report::Work { status, .. } => {
            let items = status.conditions.len()
                + status
                    .manifests
                    .iter()
                    .map(|m| 1 + m.conditions.len())
                    .sum::<usize>();
            status.encoded_len() + PER_ITEM * (1 + items)
        }
        Report::View { status, .. } => status.encoded_len() + PER_ITEM,
    }
}

/// Whether the index holds the object `report` is about, in the reporting cluster's
/// namespace, at a generation that is not older or newer than the report's. Anything else
/// is never queued: the writer's map only ever holds keys that exist.
pub fn admit(index: &crate::index::Index, report: &Report) -> Result<(), Skip> {
    use crate::objects::ObjectKey;
    match report {
        Report::Work { cluster, status } => {
            let entry = index
                .work(&ObjectKey::new(cluster, &status.name))
                .ok_or(Skip::UnknownObject)?;
            fence(&entry.meta, &status.uid, status.generation)
        }
        Report::View { cluster, status } => {
            let view = index
                .view(&ObjectKey::new(cluster, &status.name))
                .ok_or(Skip::UnknownObject)?;
            fence(&view.meta, &status.uid, status.generation)
        }
    }
}

/// An agent's confirmation that a work's objects are cleaned up. It goes to the index,
/// which owns it and emits the finalizer release it allows; the writer only patches.
pub fn confirm_gone(
    index: &mut crate::index::Index,
    cluster: &str,
    gone: &pb::WorkGone,
) -> Result<(), Skip> {
    let key = crate::objects::ObjectKey::new(cluster, &gone.name);
    if index.work(&key).is_none() {
        return Err(Skip::UnknownObject);
    }
    if index.mark_gone(&key, &gone.uid) {
        Ok(())
    } else {
        // Another uid, or a work that is not deleting: nothing may be released.
        Err(Skip::UidMismatch)
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
    budgets: Budgets,
    next_conn: AtomicU64,
    metrics: Metrics,
    identities: Option<Identities>,
    /// Streams are served only while this replica leads, each in the term it started in.
    leadership: Leadership,
    /// Which syncs each cluster's agent has acknowledged.
    acks: SharedAcks,
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
        let leadership = Leadership::fixed(cfg.epoch);
        Self {
            inner: Arc::new(Inner {
                cfg,
                leadership,
                acks: SharedAcks::default(),
                index,
                writes,
                presence,
                conns: Connections::default(),
                budgets: Budgets::default(),
                next_conn: AtomicU64::new(1),
                metrics,
                identities,
            }),
        }
    }

    /// Serves agents only while `leadership` leads, with its term's epoch (instead of the
    /// fixed [`GrpcConfig::epoch`]). For a service not yet shared.
    pub fn with_leadership(mut self, leadership: Leadership) -> Self {
        Arc::get_mut(&mut self.inner)
            .expect("with_leadership on a fresh service")
            .leadership = leadership;
        self
    }

    /// The syncs each cluster's agent has not acknowledged yet.
    pub fn acks(&self) -> SharedAcks {
        self.inner.acks.clone()
    }

    /// The largest message this service reads from an agent.
    pub fn max_report_bytes(&self) -> usize {
        self.inner.cfg.max_report_bytes
    }

    /// Report cost `cluster` holds on the hub now (queued or being written).
    pub fn report_bytes_held(&self, cluster: &str) -> usize {
        let b = self.inner.budgets.of(cluster, &self.inner.cfg);
        permits(self.inner.cfg.report_budget_bytes) - b.reports.available_permits()
    }
}

/// What a replica that does not lead answers: `UNAVAILABLE`, marked so agents retry at once.
pub fn not_leader(hub_id: &str) -> Status {
    let mut meta = tonic::metadata::MetadataMap::new();
    meta.insert(
        drbridge_proto::NOT_LEADER_METADATA,
        tonic::metadata::MetadataValue::from_static("true"),
    );
    Status::with_metadata(
        tonic::Code::Unavailable,
        format!("hub replica {hub_id:?} is not the leader; another replica serves agents"),
        meta,
    )
}

fn refusal_status(refusal: &Refusal) -> Status {
    match refusal {
        Refusal::NotReady => Status::unavailable(refusal.to_string()),
        _ => Status::permission_denied(refusal.to_string()),
    }
}

impl DispatchService {
    /// The checks a new stream must pass, in order, and what it holds when it does.
    fn accept<T>(&self, req: &Request<T>) -> Result<(Peer, watch::Receiver<Desired>), Status> {
        let inner = &self.inner;
        let Some(epoch) = inner.leadership.epoch() else {
            debug!("agent stream refused: not the leader");
            return Err(not_leader(&inner.cfg.hub_id));
        };
        let Some(ClusterIdentity(cluster)) = req.extensions().get::<ClusterIdentity>().cloned()
        else {
            return Err(Status::unauthenticated(
                "no cluster identity: the client certificate names no cluster",
            ));
        };
        let cert = req.extensions().get::<CertificateInfo>().cloned();
        // Subscribed before the check: a change from now on, even before Hello, is seen.
        let identity_changes = inner.identities.as_ref().map(|ids| {
            let mut rx = ids.changes();
            rx.mark_unchanged();
            rx
        });
        if let Some(ids) = &inner.identities {
            let Some(cert) = &cert else {
                return Err(Status::unauthenticated(
                    "no client certificate details on this connection",
                ));
            };
            if let Err(refusal) = ids.check(&cluster, &cert.serial) {
                warn!(%cluster, serial = %cert.serial, reason = %refusal, "agent stream refused");
                return Err(refusal_status(&refusal));
            }
        }
        if cert
            .as_ref()
            .is_some_and(|c| c.not_after <= SystemTime::now())
        {
            return Err(Status::unauthenticated(
                "the client certificate has expired",
            ));
        }
        let desired = inner.index.write().subscribe(&cluster).map_err(|e| {
            warn!(%cluster, error = %e, "agent stream refused");
            match e {
                SubscribeError::NotReady => Status::unavailable(e.to_string()),
                SubscribeError::NotRegistered(_) => Status::permission_denied(e.to_string()),
            }
        })?;
        let budget = inner.budgets.of(&cluster, &inner.cfg);
        let Ok(stream_permit) = budget.streams.clone().try_acquire_owned() else {
            warn!(%cluster, "agent stream refused: too many open streams for this cluster");
            return Err(Status::resource_exhausted(format!(
                "cluster {cluster:?} already has {} streams open; retry later",
                inner.cfg.max_streams_per_cluster
            )));
        };
        let conn = inner.next_conn.fetch_add(1, Ordering::Relaxed);
        let peer = Peer {
            cluster,
            epoch,
            conn,
            cert,
            budget,
            _stream: stream_permit,
            identity_changes,
        };
        Ok((peer, desired))
    }
}

#[tonic::async_trait]
impl Dispatch for DispatchService {
    type ConnectStream = HubStream;

    async fn connect(
        &self,
        req: Request<Streaming<pb::AgentMessage>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        // Every refusal counted here, once.
        let (peer, desired) = self.accept(&req).inspect_err(|_| {
            self.inner.metrics.connections_refused.inc();
        })?;
        let (tx, rx) = mpsc::channel(4);
        let span = info_span!(
            "agent_stream",
            cluster = %peer.cluster,
            conn = peer.conn,
            serial = peer.cert.as_ref().map(|c| c.serial.as_str()).unwrap_or_default()
        );
        tokio::spawn(
            serve_stream(
                inner_clone(&self.inner),
                peer,
                req.into_inner(),
                desired,
                tx,
            )
            .instrument(span),
        );
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// Ends a stream in its handshake: counted as refused, and `status` is the agent's answer.
async fn refuse(inner: &Inner, tx: &mpsc::Sender<Result<pb::HubMessage, Status>>, status: Status) {
    inner.metrics.connections_refused.inc();
    let _ = tx.send(Err(status)).await;
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
    peer: &Peer,
    tx: &mpsc::Sender<Result<pb::HubMessage, Status>>,
    stop: &mut watch::Receiver<bool>,
    syncs: Vec<pb::Sync>,
) -> bool {
    for s in syncs {
        // A deposed leader sends nothing more (the agent would refuse it on reconnect anyway).
        if !inner.leadership.holds(peer.epoch) {
            return false;
        }
        // Recorded before it can be acknowledged.
        inner
            .acks
            .lock()
            .sent(&peer.cluster, peer.conn, s.sync_id, Since::now());
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
    /// The term of this replica's leadership the stream belongs to; it ends with it.
    epoch: u64,
    conn: u64,
    cert: Option<CertificateInfo>,
    budget: Arc<Budget>,
    /// Held while the stream lives (see [`GrpcConfig::max_streams_per_cluster`]).
    _stream: OwnedSemaphorePermit,
    /// Changes of the identity records, subscribed to when the stream was accepted.
    identity_changes: Option<watch::Receiver<u64>>,
}

impl Peer {
    /// The certificate is no longer accepted by the identity records.
    fn refused(&self, inner: &Inner) -> Option<Refusal> {
        let (ids, cert) = (inner.identities.as_ref()?, self.cert.as_ref()?);
        ids.check(&self.cluster, &cert.serial).err()
    }
}

async fn serve_stream(
    inner: Arc<Inner>,
    mut peer: Peer,
    mut inbound: Streaming<pb::AgentMessage>,
    mut desired: watch::Receiver<Desired>,
    tx: mpsc::Sender<Result<pb::HubMessage, Status>>,
) {
    let (cluster, conn) = (peer.cluster.clone(), peer.conn);
    // Hello first; a change of the identity records meanwhile is checked at once.
    let hello_deadline = tokio::time::Instant::now() + inner.cfg.hello_timeout;
    let first = loop {
        tokio::select! {
            m = tokio::time::timeout_at(hello_deadline, inbound.message()) => break m,
            () = identity_changed(&mut peer.identity_changes) => {
                if let Some(refusal) = peer.refused(&inner) {
                    warn!(reason = %refusal, "ending the stream before Hello: its certificate is no longer accepted");
                    return refuse(&inner, &tx, refusal_status(&refusal)).await;
                }
            }
        }
    };
    let hello = match first {
        Ok(Ok(Some(pb::AgentMessage {
            body: Some(pb::agent_message::Body::Hello(h)),
        }))) => h,
        Ok(Ok(Some(_))) => {
            let first_not_hello = Status::invalid_argument("the first message must be Hello");
            return refuse(&inner, &tx, first_not_hello).await;
        }
        Ok(Ok(None)) | Ok(Err(_)) => return,
        Err(_) => {
            let late = Status::deadline_exceeded("no Hello from the agent in time");
            return refuse(&inner, &tx, late).await;
        }
    };
    let epoch = peer.epoch;
    if hello.max_hub_epoch > epoch {
        warn!(
            agent_epoch = hello.max_hub_epoch,
            epoch, "agent has seen a newer hub"
        );
        let stale = Status::failed_precondition(format!(
            "hub {} has epoch {}, older than the highest epoch {} this agent accepted: this hub is a stale writer",
            inner.cfg.hub_id, epoch, hello.max_hub_epoch
        ));
        return refuse(&inner, &tx, stale).await;
    }
    let info = {
        let idx = inner.index.read();
        let stored_id = idx.cluster(&cluster).and_then(|c| claim(&c.claims));
        let other_ids = idx
            .clusters()
            .filter(|c| c.meta.name != cluster)
            .filter_map(|c| claim(&c.claims))
            .collect();
        let known = crate::claims::Known {
            stored_id,
            other_ids,
        };
        let (info, problems) =
            crate::claims::validate(&cluster, hello.cluster.clone().unwrap_or_default(), &known);
        for p in problems {
            warn!(problem = %p, "agent's cluster claims corrected");
        }
        info
    };
    info!(
        agent_version = %crate::claims::printable(&hello.agent_version),
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
            info,
        })
        .await;

    let (inbound_done_tx, mut inbound_done) = tokio::sync::oneshot::channel::<Status>();
    let reader = tokio::spawn(
        read_inbound(
            inner.clone(),
            cluster.clone(),
            peer.budget.clone(),
            conn,
            inbound,
            inbound_done_tx,
        )
        .instrument(info_span!("inbound")),
    );

    let end = outbound(
        &inner,
        &mut peer,
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
    inner.acks.lock().ended(&cluster, conn);
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
    peer: &mut Peer,
    hello: &pb::Hello,
    desired: &mut watch::Receiver<Desired>,
    tx: &mpsc::Sender<Result<pb::HubMessage, Status>>,
    stop: &mut watch::Receiver<bool>,
    inbound_done: &mut tokio::sync::oneshot::Receiver<Status>,
) -> Option<Status> {
    let cluster = peer.cluster.as_str();
    // Whatever changed up to now (the records were subscribed to at connect) is checked
    // before anything is sent.
    if let Some(refusal) = peer.refused(inner) {
        warn!(reason = %refusal, "ending the stream: its certificate is no longer accepted");
        return Some(refusal_status(&refusal));
    }
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
        epoch: peer.epoch,
        heartbeat_seconds: inner.cfg.heartbeat.as_secs().max(1) as u32,
    };
    if !send(tx, stop, hub_msg(pb::hub_message::Body::Welcome(welcome))).await {
        return ended(inner, peer, stop);
    }
    let mut next_id = 0u64;
    let snapshot = desired.borrow_and_update().clone();
    if !snapshot.registered {
        return Some(unregistered(cluster));
    }
    // What this stream has sent up to: later changes are read from the state's log.
    let mut seen = snapshot.version();
    let (syncs, mut sent): (Vec<pb::Sync>, Sent) = initial_sync(
        &hello.known_works,
        &snapshot,
        inner.cfg.max_sync_bytes,
        &mut next_id,
    );
    drop(snapshot);
    if !send_syncs(inner, peer, tx, stop, syncs).await {
        return ended(inner, peer, stop);
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
        NotLeader,
    }
    loop {
        let step = tokio::select! {
            changed = desired.changed() => Step::Changed(changed.is_ok()),
            _ = keepalive.tick() => Step::Tick,
            _ = stop.wait_for(|s| *s) => Step::Stop,
            status = &mut *inbound_done => Step::InboundDone(status.ok()),
            _ = tx.closed() => Step::Closed,
            () = identity_changed(&mut peer.identity_changes) => Step::Identity,
            () = sleep_until(expiry) => Step::CertExpired,
            () = inner.leadership.wait_lost(peer.epoch) => Step::NotLeader,
        };
        match step {
            Step::NotLeader => return ended(inner, peer, stop),
            Step::Identity => {
                if let Some(refusal) = peer.refused(inner) {
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
                // Under the channel's read lock, briefly: only what changed is looked at
                // (O(change)), or everything when this stream fell behind the log.
                let syncs = {
                    let cur = desired.borrow_and_update();
                    if !cur.registered {
                        return Some(unregistered(cluster));
                    }
                    let max = inner.cfg.max_sync_bytes;
                    let syncs = match cur.changed_since(seen) {
                        Some(changed) => delta_sync(&mut sent, &cur, &changed, max, &mut next_id),
                        None => incremental_sync(&mut sent, &cur, max, &mut next_id),
                    };
                    seen = cur.version();
                    syncs
                };
                if !send_syncs(inner, peer, tx, stop, syncs).await {
                    return ended(inner, peer, stop);
                }
            }
            Step::Tick => {
                // The term can also run out without the elector saying so (its task stuck
                // or gone): heartbeats of a replica that no longer leads stop too.
                if !inner.leadership.holds(peer.epoch) {
                    return ended(inner, peer, stop);
                }
                let hb = pb::Heartbeat {
                    sent_time: drbridge_model::status::rfc3339(chrono::Utc::now()),
                };
                if !send(tx, stop, hub_msg(pb::hub_message::Body::Heartbeat(hb))).await {
                    return ended(inner, peer, stop);
                }
            }
            Step::Stop => return ended(inner, peer, stop),
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

/// Why a stream whose send failed ends: the term is over, a newer stream replaced it, or
/// (`None`) the agent went away.
fn ended(inner: &Inner, peer: &Peer, stop: &watch::Receiver<bool>) -> Option<Status> {
    if !inner.leadership.holds(peer.epoch) {
        info!(
            epoch = peer.epoch,
            "ending the stream: this replica no longer leads"
        );
        return Some(not_leader(&inner.cfg.hub_id));
    }
    replaced(stop, &peer.cluster)
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

/// The `id.k8s.io` claim among stored claims.
fn claim(claims: &[(String, String)]) -> Option<&str> {
    claims
        .iter()
        .find(|(n, _)| n == crate::claims::CLAIM_ID)
        .map(|(_, v)| v.as_str())
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
    budget: Arc<Budget>,
    conn: u64,
    mut inbound: Streaming<pb::AgentMessage>,
    done: tokio::sync::oneshot::Sender<Status>,
) {
    use pb::agent_message::Body;
    let mut last_seen: Option<tokio::time::Instant> = None;
    let status = loop {
        let msg = match tokio::time::timeout(inner.cfg.idle_timeout, inbound.message()).await {
            Err(_) => {
                break Status::deadline_exceeded(format!(
                    "nothing received from the agent for {:?}",
                    inner.cfg.idle_timeout
                ));
            }
            Ok(Err(e)) => {
                // Also what an agent sees when it sent a message over the report limit.
                debug!(error = %e, "agent stream failed");
                break Status::new(
                    e.code(),
                    format!("the agent's stream failed: {}", e.message()),
                );
            }
            Ok(Ok(None)) => break Status::cancelled("the agent closed its stream"),
            Ok(Ok(Some(m))) => m,
        };
        let now = tokio::time::Instant::now();
        let wait = budget
            .rate
            .lock()
            .take(msg.encoded_len() + MESSAGE_COST, now);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        if last_seen.is_none_or(|t| now.duration_since(t) >= SEEN_INTERVAL) {
            last_seen = Some(now);
            let _ = inner.presence.try_send(Event::Seen {
                cluster: cluster.clone(),
                conn,
            });
        }
        let report = match msg.body {
            Some(Body::WorkStatus(status)) => Some(Report::Work {
                cluster: cluster.clone(),
                status,
            }),
            Some(Body::WorkGone(gone)) => {
                if let Err(skip) = confirm_gone(&mut inner.index.write(), &cluster, &gone) {
                    inner.metrics.dropped(skip.label());
                    debug!(reason = %skip, work = %gone.name, "WorkGone dropped");
                }
                None
            }
            Some(Body::ViewStatus(status)) => Some(Report::View {
                cluster: cluster.clone(),
                status,
            }),
            Some(Body::Heartbeat(_)) => None,
            Some(Body::SyncAck(ack)) => {
                debug!(sync_id = ack.sync_id, "sync acknowledged");
                inner.acks.lock().acked(&cluster, conn, ack.sync_id);
                None
            }
            Some(Body::Hello(_)) => break Status::invalid_argument("Hello sent twice"),
            None => None,
        };
        let Some(r) = report else { continue };
        let admitted = {
            let index = inner.index.read();
            admit(&index, &r).map(|()| delivered(&index, &r))
        };
        match admitted {
            Err(skip) => {
                inner.metrics.dropped(skip.label());
                debug!(reason = %skip, "report dropped");
                continue;
            }
            Ok(Some(took)) => inner.metrics.delivered(&cluster, took),
            Ok(None) => {}
        }
        // Waits (this cluster alone) while its earlier reports are still held.
        let cost = report_cost(&r).min(permits(inner.cfg.report_budget_bytes));
        let Ok(permit) = budget.reports.clone().acquire_many_owned(cost as u32).await else {
            break Status::unavailable("the hub is shutting down");
        };
        let charge = Charge::new(permit, cost, inner.metrics.report_bytes_held.clone());
        if inner.writes.send(WriteOp::Report(r, charge)).await.is_err() {
            break Status::unavailable("the hub is shutting down");
        }
    };
    let _ = done.send(status);
}

/// How long the generation a work report says is applied took to get there, if the hub
/// timed it (see `delivery`).
fn delivered(index: &crate::index::Index, report: &Report) -> Option<std::time::Duration> {
    let Report::Work { cluster, status } = report else {
        return None;
    };
    let applied = status
        .conditions
        .iter()
        .any(|c| c.r#type == "Applied" && c.status == "True");
    if !applied {
        return None;
    }
    index.delivered(
        &crate::objects::ObjectKey::new(cluster, &status.name),
        &status.uid,
        status.generation,
    )
}

#[cfg(test)]
mod tests;
