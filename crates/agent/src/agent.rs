//! The agent: works, views and claims over one cluster. Staying connected to the hub
//! (`Agent::run`) is in [`crate::connection`]; one stream is [`crate::session`].

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::pb;
use tracing::{info, warn};

use crate::claims;
use crate::cluster::Cluster;
use crate::metrics::Metrics;
use crate::outbox::Outbox;
use crate::record::{RecordStore, StoreError};
use crate::session::SessionContext;
use crate::views::Views;
use crate::works::{WorkConfig, Works};

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

    /// What one stream needs of the agent.
    pub fn session(&self) -> SessionContext<'_, C, S> {
        SessionContext {
            cluster_name: &self.cluster_name,
            works: &self.works,
            views: &self.views,
            outbox: &self.outbox,
            metrics: &self.metrics,
        }
    }
}
