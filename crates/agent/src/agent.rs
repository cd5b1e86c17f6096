//! The agent: works, views and claims over one cluster, and the connection loop to the hub.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::pb;
use crate::pb::dispatch_client::DispatchClient;
use drbridge_tls::{ChannelOptions, TlsPaths, connect_channel};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tracing::{Instrument, info, info_span, warn};

use crate::claims;
use crate::cluster::Cluster;
use crate::metrics::Metrics;
use crate::outbox::Outbox;
use crate::record::{RecordStore, StoreError};
use crate::session::{Backoff, SessionEnd, run_session};
use crate::views::Views;
use crate::works::{WorkConfig, Works};

/// Largest message the agent accepts or sends (a Sync carries works of up to ~1.5 MiB).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Where the hub is and how to prove who we are.
#[derive(Clone, Debug)]
pub struct HubEndpoint {
    pub endpoint: String,
    pub server_name: String,
    pub tls: TlsPaths,
    pub channel: ChannelOptions,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
}

/// First pause after a hub replica said it does not lead (see [`crate::session::is_not_leader`]).
const NOT_LEADER_RETRY: Duration = Duration::from_millis(50);
/// Longest pause between tries while no replica leads (an election takes seconds).
const NOT_LEADER_RETRY_CAP: Duration = Duration::from_secs(1);

/// Why a stream could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
struct ConnectError {
    message: String,
    /// The hub replica refused because it does not lead.
    not_leader: bool,
}

impl ConnectError {
    fn other(message: String) -> Self {
        Self {
            message,
            not_leader: false,
        }
    }
}

pub struct Agent<C: Cluster, S: RecordStore> {
    cluster: Arc<C>,
    cluster_name: String,
    works: Works<C, S>,
    views: Views<C>,
    outbox: Arc<Outbox>,
    metrics: Metrics,
    claims: BTreeMap<String, String>,
    kubernetes_version: String,
}

impl<C: Cluster, S: RecordStore> std::fmt::Debug for Agent<C, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("cluster", &self.cluster_name)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("reading cluster facts: {0}")]
    Cluster(#[from] crate::cluster::ClusterError),
}

impl<C: Cluster, S: RecordStore> Agent<C, S> {
    /// Loads the durable record, resumes deletions under way, reads the cluster's claims.
    pub async fn start(
        cluster: Arc<C>,
        store: Arc<S>,
        cluster_name: &str,
        cfg: WorkConfig,
        metrics: Metrics,
    ) -> Result<Self, StartError> {
        let outbox = Arc::new(Outbox::default());
        let allowlist = cfg.policy.allowlist.clone();
        let works =
            Works::start(cluster.clone(), store, cfg, outbox.clone(), metrics.clone()).await?;
        let views = Views::new(cluster.clone(), outbox.clone(), allowlist);
        let claims = claims::cluster_claims(cluster.as_ref(), cluster_name).await?;
        if let Err(e) = claims::ensure_spoke_claims(cluster.as_ref(), &claims).await {
            warn!(error = %e, "cannot write spoke ClusterClaims; the hub still gets the claims");
        }
        let kubernetes_version = cluster.server_version().await.unwrap_or_default();
        info!(cluster = cluster_name, records = works.records().len(), %kubernetes_version, "agent started");
        Ok(Agent {
            cluster,
            cluster_name: cluster_name.to_string(),
            works,
            views,
            outbox,
            metrics,
            claims,
            kubernetes_version,
        })
    }

    pub fn cluster_name(&self) -> &str {
        &self.cluster_name
    }

    pub fn cluster(&self) -> &Arc<C> {
        &self.cluster
    }

    pub fn works(&self) -> &Works<C, S> {
        &self.works
    }

    pub fn views(&self) -> &Views<C> {
        &self.views
    }

    pub fn outbox(&self) -> &Arc<Outbox> {
        &self.outbox
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn claims(&self) -> &BTreeMap<String, String> {
        &self.claims
    }

    /// The first message of every stream.
    pub fn hello(&self) -> pb::AgentMessage {
        pb::AgentMessage {
            body: Some(pb::agent_message::Body::Hello(pb::Hello {
                agent_version: env!("CARGO_PKG_VERSION").to_string(),
                known_works: self.works.known(),
                cluster: Some(pb::ClusterInfo {
                    claims: self
                        .claims
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                    kubernetes_version: self.kubernetes_version.clone(),
                }),
                max_hub_epoch: self.works.max_epoch(),
            })),
        }
    }

    /// Connects to the hub and keeps connected until `shutdown` turns true. Never deletes
    /// anything because the hub is unreachable: it only waits and retries.
    pub async fn run(
        &self,
        hub: &HubEndpoint,
        ready: &watch::Sender<bool>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut backoff = Backoff::new(hub.backoff_base, hub.backoff_cap);
        let mut not_leader_backoff = Backoff::new(NOT_LEADER_RETRY, NOT_LEADER_RETRY_CAP);
        let mut first = true;
        while !*shutdown.borrow() {
            if !first {
                self.metrics.reconnects.inc();
            }
            first = false;
            let span = info_span!("hub_stream", endpoint = %hub.endpoint);
            let outcome = self
                .connect_once(hub, ready, &mut shutdown)
                .instrument(span)
                .await;
            match &outcome {
                Ok(o) if o.end == SessionEnd::Shutdown => break,
                Ok(o) => {
                    if o.welcomed {
                        backoff.reset();
                    }
                    warn!(end = ?o.end, "stream to the hub ended");
                }
                Err(e) if e.not_leader => info!(error = %e, "this hub replica does not lead"),
                Err(e) => warn!(error = %e, "cannot reach the hub"),
            }
            let not_leader = match &outcome {
                Ok(o) => o.end == SessionEnd::NotLeader,
                Err(e) => e.not_leader,
            };
            // A replica that does not lead sends the agent on at once: another one (behind
            // the same Service) may; a short pause of its own keeps an election from
            // becoming a busy loop.
            let delay = if not_leader {
                not_leader_backoff.next_delay()
            } else {
                not_leader_backoff.reset();
                backoff.next_delay()
            };
            info!(?delay, "reconnecting after a pause");
            tokio::select! {
                _ = crate::session::stopped(&mut shutdown) => break,
                () = tokio::time::sleep(delay) => {}
            }
        }
        info!("agent stopped");
    }

    async fn connect_once(
        &self,
        hub: &HubEndpoint,
        ready: &watch::Sender<bool>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<crate::session::Outcome, ConnectError> {
        let channel = connect_channel(
            &hub.endpoint,
            &hub.server_name,
            &hub.tls,
            hub.channel.clone(),
        )
        .await
        .map_err(|e| ConnectError::other(e.to_string()))?;
        let mut client = DispatchClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let (tx, rx) = mpsc::channel(256);
        tx.send(self.hello())
            .await
            .map_err(|e| ConnectError::other(e.to_string()))?;
        self.metrics.sent("hello");
        let response = client
            .connect(ReceiverStream::new(rx))
            .await
            .map_err(|s| ConnectError {
                message: format!("{}: {}", s.code(), s.message()),
                not_leader: crate::session::is_not_leader(&s),
            })?;
        let inbound = response.into_inner();
        Ok(run_session(self, &tx, inbound, ready, shutdown).await)
    }
}
