//! One stream to the hub: Hello, Welcome (epoch fence), then Sync in, status out,
//! heartbeats both ways. Transport-free, so tests drive it with channels.

use std::collections::HashSet;
use std::time::Duration;

use crate::pb;
use futures::stream::FuturesUnordered;
use futures::{Stream, StreamExt};
use tokio::sync::{mpsc, watch};
use tracing::{debug, error, info, warn};

use crate::cluster::Cluster;
use crate::metrics::Metrics;
use crate::outbox::Outbox;
use crate::record::RecordStore;
use crate::retry::stopped;
use crate::views::Views;
use crate::works::Works;

/// How long the hub has to answer Hello.
pub const WELCOME_TIMEOUT: Duration = Duration::from_secs(30);

/// What one session needs of the agent (see `Agent::session`): the session drives works and
/// views and drains the outbox, and never reaches back into the agent.
pub struct SessionContext<'a, C: Cluster, S: RecordStore> {
    pub cluster_name: &'a str,
    pub works: &'a Works<C, S>,
    pub views: &'a Views<C>,
    pub outbox: &'a Outbox,
    pub metrics: &'a Metrics,
}

impl<C: Cluster, S: RecordStore> Clone for SessionContext<'_, C, S> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<C: Cluster, S: RecordStore> Copy for SessionContext<'_, C, S> {}

impl<C: Cluster, S: RecordStore> std::fmt::Debug for SessionContext<'_, C, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionContext")
            .field("cluster", &self.cluster_name)
            .finish_non_exhaustive()
    }
}

/// Why a session ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionEnd {
    /// Shutdown was requested.
    Shutdown,
    /// The hub or the transport closed the stream.
    Closed(String),
    /// The hub's epoch is below the highest accepted: a stale writer.
    StaleHub { offered: u64, accepted: u64 },
    /// The hub says this agent is another cluster.
    WrongCluster { hub_says: String },
    /// The hub stopped talking (no message for several heartbeats).
    Silent,
    /// The hub replica does not (or no longer) lead; another one may.
    NotLeader,
}

/// The hub replica refused or ended the stream because it does not lead.
pub fn is_not_leader(s: &tonic::Status) -> bool {
    s.code() == tonic::Code::Unavailable
        && s.metadata()
            .get(drbridge_proto::NOT_LEADER_METADATA)
            .is_some()
}

/// The outcome of a session: why it ended and whether the hub welcomed the agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub end: SessionEnd,
    pub welcomed: bool,
}

fn body_name(b: &pb::agent_message::Body) -> &'static str {
    use pb::agent_message::Body;
    match b {
        Body::Hello(_) => "hello",
        Body::WorkStatus(_) => "work_status",
        Body::WorkGone(_) => "work_gone",
        Body::ViewStatus(_) => "view_status",
        Body::Heartbeat(_) => "heartbeat",
        Body::SyncAck(_) => "sync_ack",
    }
}

fn heartbeat() -> pb::AgentMessage {
    pb::AgentMessage {
        body: Some(pb::agent_message::Body::Heartbeat(pb::Heartbeat {
            sent_time: drbridge_model::status::rfc3339(chrono::Utc::now()),
        })),
    }
}

/// Runs one session. The caller has already put `agent.hello()` first into `tx`'s stream.
pub async fn run_session<C, S, I>(
    agent: SessionContext<'_, C, S>,
    tx: &mpsc::Sender<pb::AgentMessage>,
    mut inbound: I,
    ready: &watch::Sender<bool>,
    shutdown: &mut watch::Receiver<bool>,
) -> Outcome
where
    C: Cluster,
    S: RecordStore,
    I: Stream<Item = Result<pb::HubMessage, tonic::Status>> + Unpin,
{
    let closed = |why: String| Outcome {
        end: SessionEnd::Closed(why),
        welcomed: false,
    };
    let welcome = tokio::select! {
        _ = stopped(shutdown) => return Outcome { end: SessionEnd::Shutdown, welcomed: false },
        m = tokio::time::timeout(WELCOME_TIMEOUT, inbound.next()) => match m {
            Err(_) => return closed("no Welcome from the hub in time".into()),
            Ok(None) => return closed("the hub closed the stream before Welcome".into()),
            Ok(Some(Err(s))) if is_not_leader(&s) => return Outcome { end: SessionEnd::NotLeader, welcomed: false },
            Ok(Some(Err(s))) => return closed(format!("the hub refused the stream: {}: {}", s.code(), s.message())),
            Ok(Some(Ok(pb::HubMessage { body: Some(pb::hub_message::Body::Welcome(w)) }))) => w,
            Ok(Some(Ok(other))) => return closed(format!("expected Welcome, got {other:?}")),
        },
    };
    if let Err(end) = accept_welcome(agent, &welcome).await {
        return Outcome {
            end,
            welcomed: false,
        };
    }
    info!(hub = %welcome.hub_id, epoch = welcome.epoch, heartbeat_seconds = welcome.heartbeat_seconds, "connected to the hub");
    let metrics = agent.metrics.clone();
    ready.send_replace(true);
    metrics.connected.set(1);
    let end = stream_loop(agent, tx, &mut inbound, &welcome, shutdown).await;
    ready.send_replace(false);
    metrics.connected.set(0);
    Outcome {
        end,
        welcomed: true,
    }
}

/// Checks a `Welcome`: the cluster name the hub read from the certificate, and the hub's
/// epoch, recorded durably before it is accepted. `Err` is why the session must end.
pub async fn accept_welcome<C: Cluster, S: RecordStore>(
    agent: SessionContext<'_, C, S>,
    welcome: &pb::Welcome,
) -> Result<(), SessionEnd> {
    if welcome.cluster != agent.cluster_name {
        error!(hub_says = %welcome.cluster, agent = %agent.cluster_name, "the hub knows this agent under another cluster name");
        return Err(SessionEnd::WrongCluster {
            hub_says: welcome.cluster.clone(),
        });
    }
    let accepted = agent.works.max_epoch();
    match agent.works.accept_epoch(welcome.epoch).await {
        Ok(true) => Ok(()),
        Ok(false) => {
            error!(hub = %welcome.hub_id, offered = welcome.epoch, accepted, "refusing a hub with an older epoch (stale writer)");
            Err(SessionEnd::StaleHub {
                offered: welcome.epoch,
                accepted,
            })
        }
        // Fail closed: a hub accepted but not recorded could be forgotten by a restart.
        Err(e) => {
            error!(error = %e, offered = welcome.epoch, "cannot record the hub's epoch; not accepting it");
            Err(SessionEnd::Closed(format!(
                "cannot record the hub's epoch: {e}"
            )))
        }
    }
}

/// What one stream has been sent so far, for the end of the initial resync.
#[derive(Debug, Default)]
pub struct Seen {
    views: HashSet<String>,
    works: HashSet<String>,
}

/// Hands one `Sync` to the works and views. The future resolves to the sync's id once every
/// work in it is recorded durably, which is when it may be acknowledged.
pub fn handle_sync<C: Cluster, S: RecordStore>(
    agent: SessionContext<'_, C, S>,
    sync: pb::Sync,
    seen: &mut Seen,
) -> impl std::future::Future<Output = u64> + Send + 'static {
    debug!(
        sync_id = sync.sync_id,
        works = sync.works.len(),
        views = sync.views.len(),
        removed = sync.removed_views.len(),
        done = sync.initial_sync_done,
        "sync"
    );
    let mut waits = Vec::with_capacity(sync.works.len());
    for w in sync.works {
        seen.works.insert(w.name.clone());
        waits.push(agent.works.offer(w));
    }
    for v in &sync.views {
        seen.views.insert(v.name.clone());
        agent.views.upsert(v);
    }
    for name in &sync.removed_views {
        seen.views.remove(name);
        agent.views.remove(name);
    }
    if sync.initial_sync_done {
        agent.views.retain(&seen.views);
        crate::works::log_unmentioned(&agent.works.without_spec(), &seen.works);
    }
    agent.metrics.views.set(agent.views.len() as i64);
    let id = sync.sync_id;
    async move {
        // A dropped sender means a newer message for the same work
        // superseded this one; its recording covers this.
        futures::future::join_all(waits).await;
        id
    }
}

async fn stream_loop<C, S, I>(
    agent: SessionContext<'_, C, S>,
    tx: &mpsc::Sender<pb::AgentMessage>,
    inbound: &mut I,
    welcome: &pb::Welcome,
    shutdown: &mut watch::Receiver<bool>,
) -> SessionEnd
where
    C: Cluster,
    S: RecordStore,
    I: Stream<Item = Result<pb::HubMessage, tonic::Status>> + Unpin,
{
    let outbox = agent.outbox;
    let metrics = agent.metrics.clone();
    let hb = Duration::from_secs(u64::from(welcome.heartbeat_seconds.max(1)));
    // The hub heartbeats at the same interval; several missed ones mean a dead stream.
    let silence = (hb * 3).max(Duration::from_secs(15));
    let mut ticker = tokio::time::interval(hb);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.reset();
    let mut acks = FuturesUnordered::new();
    let mut seen = Seen::default();
    outbox.resend_all();

    let send = |m: pb::AgentMessage| {
        let metrics = metrics.clone();
        async move {
            let kind = m.body.as_ref().map(body_name).unwrap_or("empty");
            tx.send(m).await.map_err(|_| ())?;
            metrics.sent(kind);
            Ok::<(), ()>(())
        }
    };

    loop {
        tokio::select! {
            _ = stopped(shutdown) => {
                // Best effort: what is already known goes out before the stream closes.
                for m in outbox.drain() {
                    let _ = tx.try_send(m);
                }
                return SessionEnd::Shutdown;
            }
            msg = tokio::time::timeout(silence, inbound.next()) => {
                let msg = match msg {
                    Err(_) => {
                        warn!(?silence, "no message from the hub; reconnecting");
                        return SessionEnd::Silent;
                    }
                    Ok(None) => return SessionEnd::Closed("the hub closed the stream".into()),
                    Ok(Some(Err(s))) if is_not_leader(&s) => {
                        info!("the hub replica no longer leads; dialling again");
                        return SessionEnd::NotLeader;
                    }
                    Ok(Some(Err(s))) => return SessionEnd::Closed(format!("{}: {}", s.code(), s.message())),
                    Ok(Some(Ok(m))) => m,
                };
                match msg.body {
                    Some(pb::hub_message::Body::Sync(sync)) => {
                        acks.push(handle_sync(agent, sync, &mut seen));
                    }
                    Some(pb::hub_message::Body::Heartbeat(_)) => {}
                    Some(pb::hub_message::Body::Welcome(w)) => warn!(hub = %w.hub_id, "unexpected second Welcome; ignored"),
                    None => {}
                }
            }
            Some(id) = acks.next(), if !acks.is_empty() => outbox.ack(id),
            () = outbox.changed() => {
                for m in outbox.drain() {
                    if send(m).await.is_err() {
                        return SessionEnd::Closed("the outbound stream closed".into());
                    }
                }
            }
            _ = ticker.tick() => {
                if send(heartbeat()).await.is_err() {
                    return SessionEnd::Closed("the outbound stream closed".into());
                }
            }
        }
    }
}
