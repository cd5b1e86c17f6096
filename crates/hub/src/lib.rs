//! drbridge hub: the OCM replacement under Ramen, hub side.
//!
//! Pipeline (Linkerd style):
//!
//! ```text
//! watch ManifestWork / ManagedClusterView / ManagedCluster (all namespaces, DynamicObject)
//!   -> index::Index (Arc<RwLock>; Init..InitDone = one reset)
//!   -> per-cluster tokio::sync::watch<Desired> (send_if_modified)
//!   -> grpc::DispatchService: one bidi stream per agent (diff, chunked Sync)
//! agent reports -> status::WriteOp (one bounded queue) -> status::StatusWriter (merge patches)
//! agent WorkGone -> index (the only owner of state) -> index::Intent -> status::StatusWriter
//! stream liveness -> presence::Presence -> ManagedCluster status, unreachable annotations
//! ```
//!
//! Identity: the agent's cluster is the SAN URI of its client certificate
//! (`drbridge-tls`); a stream only ever sees and writes its own namespace. With
//! registration on ([`HubOptions::registration`]), the certificate's serial must also be
//! accepted by the cluster's identity record ([`identity`]); agents join with a token and
//! renew on their own ([`registration`], [`clusters`]; docs/security.md).
//!
//! Hub identity: `hub_id` (flag, default the host name) and `epoch`. Without leader
//! election the epoch is the process start time in milliseconds since the Unix epoch; it
//! only grows across restarts of one hub as long as the clock does not step back by more than
//! a restart takes. With election ([`leader`]) each leadership term has its own epoch,
//! decided atomically with taking the Lease. Agents refuse a hub whose epoch is below the
//! highest they accepted, so a stale hub cannot overwrite a newer one's instructions.
//! Only the leader serves agents and writes; acknowledged delivery is tracked in [`acks`].

pub mod acks;
mod args;
pub mod claims;
pub mod clusters;
pub mod delivery;
pub mod desired;
pub mod events;
pub mod grpc;
pub mod identity;
pub mod index;
pub mod join_token;
pub mod leader;
pub mod metrics;
pub mod objects;
pub mod presence;
pub mod registration;
mod serve;
pub mod status;
pub mod sync;
pub mod watches;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{Instrument, info, info_span};

pub use args::{Args, ArgsError};
pub use drbridge_runtime::LogFormat;
pub use leader::{LeaderOptions, start_epoch};
pub use serve::{
    MAX_STREAMS_PER_CONNECTION, dispatch_server, identity_from_tls, serve, serve_join,
    serve_with_renewal,
};

/// Why [`run`] stopped before SIGINT/SIGTERM asked it to.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Args(#[from] ArgsError),
    /// Logging could not start, or another part of `drbridge-runtime` failed.
    #[error(transparent)]
    Runtime(#[from] drbridge_runtime::Error),
    #[error(transparent)]
    KubeClient(#[from] drbridge_runtime::KubeClientError),
    #[error("loading the hub's TLS files")]
    Tls(#[source] drbridge_tls::Error),
    #[error("loading the hub's TLS files for the join listener")]
    JoinTls(#[source] drbridge_tls::Error),
    #[error("binding {addr}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("gRPC server")]
    Serve(#[source] tonic::transport::Error),
    #[error("join gRPC server")]
    JoinServe(#[source] tonic::transport::Error),
    /// The join listener's task panicked or was cancelled.
    #[error(transparent)]
    Task(#[from] tokio::task::JoinError),
}

/// Runs the hub until SIGINT/SIGTERM.
pub async fn run(args: Args) -> Result<(), RunError> {
    match drbridge_runtime::init_tracing(args.log_format, &args.log) {
        // Embedded next to other components (a demo, a test), the first one's
        // subscriber stays.
        Err(drbridge_runtime::Error::TracingInit(_)) => {}
        other => other?,
    }
    args.validate()?;
    let _ = drbridge_tls::rustls::crypto::ring::default_provider().install_default();

    let hub_id = args.hub_id();
    let epoch = start_epoch();
    info!(%hub_id, epoch, listen = %args.listen_addr, admin = %args.admin_addr, "starting drbridge-hub");

    let client = drbridge_runtime::kube_client(args.kubeconfig.as_deref(), None).await?;
    let tls = drbridge_tls::ServerTls::new(drbridge_tls::TlsPaths::new(
        &args.tls_cert,
        &args.tls_key,
        &args.tls_ca,
    ))
    .map_err(RunError::Tls)?;

    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = metrics::Metrics::register(&mut registry);

    let election = args.election(&hub_id);
    let mut parts = Hub::start(
        client,
        HubOptions {
            grpc: grpc::GrpcConfig {
                hub_id,
                epoch,
                heartbeat: Duration::from_secs(args.heartbeat_seconds),
                idle_timeout: Duration::from_secs(
                    args.presence_timeout_seconds + args.heartbeat_seconds,
                ),
                hello_timeout: Duration::from_secs(30),
                max_sync_bytes: args.max_sync_bytes,
                max_report_bytes: args.max_report_bytes,
                report_budget_bytes: 8 * args.max_report_bytes,
                read_rate_bytes: 4 * args.max_report_bytes,
                ..Default::default()
            },
            presence_timeout: Duration::from_secs(args.presence_timeout_seconds),
            writer: status::WriterConfig {
                patch_timeout: Duration::from_secs(args.patch_timeout_seconds),
                max_in_flight: args.status_writes_in_flight,
                ..Default::default()
            },
            status_queue: args.status_queue,
            unacknowledged_threshold: Duration::from_secs(args.unacknowledged_threshold_seconds),
            registration: Some(registration::RegistrationConfig {
                namespace: args.namespace.clone(),
                cert_validity: args.cert_validity,
                require_join: args.require_join,
            }),
            election,
        },
        metrics,
    );

    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        drbridge_runtime::shutdown_signal().await;
        let _ = shutdown_tx.send(true);
    });
    let wait_shutdown = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };

    let admin = tokio::spawn(
        drbridge_runtime::serve_admin(
            args.admin_addr,
            Arc::new(registry),
            parts.ready(),
            wait_shutdown(shutdown_rx.clone()),
        )
        .instrument(info_span!("admin")),
    );

    // No agent may see a partial state: the listener opens only once every watch has
    // listed (the service also refuses streams before that).
    let mut ready = parts.ready();
    tokio::select! {
        _ = ready.wait_for(|r| *r) => {}
        _ = wait_shutdown(shutdown_rx.clone()) => return Ok(()),
    }
    info!("initial sync complete; serving agents");

    let join = if args.disable_join {
        None
    } else {
        // Same certificate files as the mutual-TLS listener, without asking for a client's.
        let join_tls =
            drbridge_tls::ServerTls::server_only(tls.paths().clone()).map_err(RunError::JoinTls)?;
        let listener = bind(args.join_addr).await?;
        info!(join = %args.join_addr, "serving joins");
        let service = parts.join_service().expect("registration is on");
        let shutdown = wait_shutdown(shutdown_rx.clone());
        Some(tokio::spawn(async move {
            serve_join(
                service,
                drbridge_tls::incoming_server_only(listener, join_tls),
                shutdown,
            )
            .await
        }))
    };
    let listener = bind(args.listen_addr).await?;
    parts
        .serve(
            drbridge_tls::incoming(listener, tls),
            wait_shutdown(shutdown_rx.clone()),
        )
        .await
        .map_err(RunError::Serve)?;
    if let Some(join) = join {
        join.await?.map_err(RunError::JoinServe)?;
    }
    // A rolling update hands over at once instead of after the lease duration.
    parts.release_leadership().await;
    admin.abort();
    info!("drbridge-hub stopped");
    Ok(())
}

async fn bind(addr: std::net::SocketAddr) -> Result<tokio::net::TcpListener, RunError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| RunError::Bind { addr, source })
}

/// Options of [`Hub::start`].
#[derive(Clone, Debug)]
pub struct HubOptions {
    pub grpc: grpc::GrpcConfig,
    pub presence_timeout: Duration,
    pub writer: status::WriterConfig,
    pub status_queue: usize,
    /// See [`acks`]: how long a change may go unacknowledged before the ManagedCluster says so.
    pub unacknowledged_threshold: Duration,
    /// Joins, renewals and per-certificate identity checks. `None` (the default, for tests
    /// that issue certificates themselves): any certificate from the CA naming a registered
    /// cluster is accepted, and there is no Join or Renew.
    pub registration: Option<registration::RegistrationConfig>,
    /// Leader election among replicas. `None`: this hub always leads, with the epoch
    /// `grpc.epoch`.
    pub election: Option<LeaderOptions>,
}

impl Default for HubOptions {
    fn default() -> Self {
        Self {
            grpc: grpc::GrpcConfig::default(),
            presence_timeout: Duration::from_secs(15),
            writer: status::WriterConfig::default(),
            status_queue: 4096,
            unacknowledged_threshold: Duration::from_secs(60),
            registration: None,
            election: None,
        }
    }
}

/// A started hub (watches, writer, presence), ready to serve agents. Used by
/// [`run`] and by tests, which feed it their own listener.
#[derive(Debug)]
pub struct Hub {
    pub index: index::SharedIndex,
    pub service: grpc::DispatchService,
    pub identities: Option<identity::Identities>,
    registrar: Option<Arc<registration::Registrar>>,
    ready: tokio::sync::watch::Receiver<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    pub leadership: leader::Leadership,
    /// Stops the elector, which then releases the Lease.
    elector: Option<(
        tokio::sync::watch::Sender<bool>,
        tokio::task::JoinHandle<()>,
    )>,
}

impl Hub {
    /// Starts the watches, the status writer and presence on `client`.
    pub fn start(client: kube::Client, opts: HubOptions, metrics: metrics::Metrics) -> Self {
        let (intents_tx, intents_rx) = mpsc::channel(opts.status_queue);
        let (writes_tx, writes_rx) = mpsc::channel(opts.status_queue);
        let (presence_tx, presence_rx) = mpsc::channel(opts.status_queue);
        let limits = desired::Limits {
            max_work_bytes: opts
                .grpc
                .max_sync_bytes
                .saturating_sub(desired::SYNC_OVERHEAD),
        };
        let index = index::Index::new(limits, Some(intents_tx), metrics.clone()).shared();
        let (events, publisher) = drbridge_runtime::events::Events::start(
            client.clone(),
            kube::runtime::events::Reporter {
                controller: drbridge_runtime::events::HUB_REPORTER.into(),
                instance: Some(opts.grpc.hub_id.clone()),
            },
            drbridge_runtime::events::DEFAULT_QUEUE,
            metrics.events.clone(),
        );
        let events = events::HubEvents::new(events, index.clone());

        let mut tasks = watches::spawn_all(client.clone(), index.clone());
        tasks.push(tokio::spawn(publisher));
        let (leadership, elector) = match opts.election {
            None => (leader::Leadership::fixed(opts.grpc.epoch), None),
            Some(LeaderOptions { namespace, lease }) => {
                let leadership = leader::Leadership::follower();
                let store = leader::KubeLeases::new(client.clone(), &namespace, &lease.name);
                let span = info_span!("leader", lease = %lease.name, identity = %lease.identity);
                let elector = leader::Elector::new(store, lease, leadership.clone());
                let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
                let task = tokio::spawn(elector.run(stop_rx).instrument(span));
                (leadership, Some((stop_tx, task)))
            }
        };
        let writer =
            status::StatusWriter::new(client.clone(), index.clone(), metrics.clone(), opts.writer)
                .with_leadership(leadership.clone())
                .with_events(events.clone());
        tasks.push(tokio::spawn(
            writer
                .run(writes_rx, intents_rx)
                .instrument(info_span!("status_writer")),
        ));
        tasks.push(tokio::spawn(
            presence::run_leading(
                opts.presence_timeout,
                index.clone(),
                presence_rx,
                writes_tx.clone(),
                leadership.clone(),
            )
            .instrument(info_span!("presence")),
        ));
        let index_ready = index.read().ready();
        let (identities, registrar, ready) = match opts.registration {
            None => (None, None, index_ready),
            Some(cfg) => {
                let identities = identity::Identities::new(cfg.require_join);
                let (removals, leading) = (events.clone(), leadership.clone());
                tasks.push(tokio::spawn(
                    identity::watch_records(
                        client.clone(),
                        cfg.namespace.clone(),
                        identities.clone(),
                        // Every replica watches the records; one announces.
                        move |cluster| {
                            if leading.is_leader() {
                                removals.agent_removed(cluster);
                            }
                        },
                    )
                    .instrument(info_span!("watch", kind = "identities")),
                ));
                let registrar = registration::Registrar::new(
                    client.clone(),
                    cfg,
                    identities.clone(),
                    metrics.clone(),
                    events.clone(),
                );
                // Ready only once the identity records are known too: until then every
                // agent would be refused.
                let (tx, rx) = tokio::sync::watch::channel(false);
                let mut synced = identities.synced();
                let mut index_ready = index_ready;
                tasks.push(tokio::spawn(async move {
                    let _ = index_ready.wait_for(|r| *r).await;
                    let _ = synced.wait_for(|r| *r).await;
                    let _ = tx.send(true);
                    tx.closed().await;
                }));
                (Some(identities), Some(registrar), rx)
            }
        };
        let service = grpc::DispatchService::with_identities(
            opts.grpc,
            index.clone(),
            writes_tx.clone(),
            presence_tx,
            metrics.clone(),
            identities.clone(),
        )
        .with_leadership(leadership.clone());
        tasks.push(tokio::spawn(
            acks::run(
                service.acks(),
                index.clone(),
                writes_tx,
                metrics,
                opts.unacknowledged_threshold,
                leadership.clone(),
            )
            .instrument(info_span!("acks")),
        ));
        Self {
            index,
            service,
            identities,
            registrar,
            ready,
            tasks,
            leadership,
            elector,
        }
    }

    /// Stops leading and releases the Lease (with election on), so another replica takes
    /// over at once.
    pub async fn release_leadership(&mut self) {
        if let Some((stop, task)) = self.elector.take() {
            let _ = stop.send(true);
            let _ = task.await;
        }
    }

    /// True once every watch (and, with registration, the identity records) has listed.
    pub fn ready(&self) -> tokio::sync::watch::Receiver<bool> {
        self.ready.clone()
    }

    /// The `Registration` (Join) service, with registration on.
    pub fn join_service(&self) -> Option<registration::JoinService> {
        self.registrar.clone().map(registration::JoinService)
    }

    /// The `Renewal` service, with registration on.
    pub fn renew_service(&self) -> Option<registration::RenewService> {
        self.registrar.clone().map(registration::RenewService)
    }

    /// Serves agents on `incoming` until `shutdown` completes: Dispatch, and Renewal with
    /// registration on; see [`serve_with_renewal`].
    pub async fn serve<S, F>(&self, incoming: S, shutdown: F) -> Result<(), tonic::transport::Error>
    where
        S: futures::Stream<Item = Result<drbridge_tls::TlsConn, std::io::Error>> + Send + 'static,
        F: std::future::Future<Output = ()> + Send,
    {
        serve_with_renewal(
            self.service.clone(),
            self.renew_service(),
            incoming,
            shutdown,
        )
        .await
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        // Dropped without release (a crash): the Lease expires on its own.
        if let Some((_, task)) = &self.elector {
            task.abort();
        }
    }
}
