//! drbridge agent: the managed-cluster side of drbridge, in place of OCM's work agent
//! and ManagedClusterView agent under Ramen.
//!
//! ```text
//! hub --Sync--> session --offer--> per-work actor: fence, record (AppliedWork), apply
//!                                  (OCM kind order, Update merge / SSA), drop, delete
//!              <--status-- outbox <-- status recompute <-- shared metadata watches per kind
//!              <--views--- outbox <-- one watch per viewed object (shared)
//! ```
//!
//! Safety: nothing is deleted because the hub is unreachable, because a work is absent
//! after a restart, or because a resync is partial; only an explicit `deleting` work or a
//! manifest dropped from a newer generation deletes, and only objects the work's own
//! record lists and no other record lists. Pure rules live in `drbridge-model`.

pub mod agent;
pub mod apply;
pub mod args;
pub mod claims;
pub mod cluster;
pub mod connection;
pub mod events;
pub mod join;
pub mod metrics;
pub mod outbox;
pub mod record;
pub mod report_size;
pub mod retry;
pub mod session;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod views;
pub mod watches;
pub mod works;

use std::sync::Arc;
use std::time::Duration;

use drbridge_runtime::prometheus_client::registry::Registry;
use tokio::sync::watch;
use tracing::info;

/// The hub <-> agent protocol types.
pub use drbridge_proto::v1 as pb;

pub use agent::Agent;
pub use args::{Args, ArgsError};
pub use cluster::{Cluster, KubeCluster};
pub use connection::HubEndpoint;
pub use record::{KubeRecordStore, MemoryStore, RecordStore};
pub use works::WorkConfig;

/// Why [`run`] stopped before SIGTERM or Ctrl-C asked it to.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Args(#[from] ArgsError),
    /// Logging or the admin listener could not start.
    #[error(transparent)]
    Runtime(#[from] drbridge_runtime::Error),
    #[error(transparent)]
    KubeClient(#[from] drbridge_runtime::KubeClientError),
    /// Joining, or restoring the client certificate, failed.
    #[error(transparent)]
    Join(#[from] join::JoinError),
    #[error("starting the agent")]
    Start(#[source] agent::StartError),
    #[error("admin server")]
    Admin(#[source] drbridge_runtime::Error),
    /// The admin server's task panicked or was cancelled.
    #[error(transparent)]
    Task(#[from] tokio::task::JoinError),
}

/// Runs the agent until SIGTERM or Ctrl-C.
pub async fn run(args: Args) -> Result<(), RunError> {
    // One crypto provider for the process (kube and tonic both use rustls); a second
    // install attempt (tests) is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    drbridge_runtime::init_tracing(args.log_format, &args.log_filter)?;
    args.validate()?;
    let server_name = args.server_name()?;
    let allowlist = args.allowlist()?;
    info!(cluster = %args.cluster, hub = %args.hub_endpoint, %server_name, admin = %args.admin_addr, "starting drbridge-agent");

    let mut registry = Registry::default();
    let metrics = metrics::Metrics::register(&mut registry);
    let (ready_tx, ready_rx) = watch::channel(false);
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        drbridge_runtime::shutdown_signal().await;
        let _ = stop_tx.send(true);
    });

    let mut admin_stop = stop_rx.clone();
    let admin =
        drbridge_runtime::Admin::bind(args.admin_addr, Arc::new(registry), ready_rx).await?;
    let admin_task = tokio::spawn(admin.serve(async move {
        let _ = admin_stop.wait_for(|s| *s).await;
    }));

    let client = drbridge_runtime::kube_client(args.kubeconfig.as_deref(), None).await?;
    // Join with a token or restore the identity, and keep the certificate renewed.
    let _rotation = join::prepare(&args, &client, stop_rx.clone()).await?;
    let (events, publisher) = drbridge_runtime::events::Events::start(
        client.clone(),
        kube::runtime::events::Reporter {
            controller: drbridge_runtime::events::AGENT_REPORTER.into(),
            instance: Some(args.cluster.clone()),
        },
        drbridge_runtime::events::DEFAULT_QUEUE,
        metrics.events.clone(),
    );
    tokio::spawn(publisher);
    let cluster = Arc::new(KubeCluster::new(client.clone()));
    let store = Arc::new(KubeRecordStore::new(client, &args.cluster));
    let cfg = WorkConfig {
        policy: apply::ApplyPolicy {
            allowlist,
            max_work_bytes: args.max_work_bytes,
        },
        debounce: Duration::from_millis(args.status_debounce_ms),
        reapply: args.reapply(),
        events,
    };
    let agent = Agent::start(cluster, store, &args.cluster, cfg, metrics)
        .await
        .map_err(RunError::Start)?;
    let hub = HubEndpoint {
        endpoint: args.hub_endpoint.clone(),
        server_name,
        tls: drbridge_tls::TlsPaths::new(&args.tls_cert, &args.tls_key, &args.tls_ca),
        channel: drbridge_tls::ChannelOptions::default(),
        backoff_base: Duration::from_millis(500),
        backoff_cap: Duration::from_secs(args.max_backoff_seconds.max(1)),
    };
    agent.run(&hub, &ready_tx, stop_rx).await;
    admin_task.await?.map_err(RunError::Admin)?;
    Ok(())
}
