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
pub mod claims;
pub mod clusters;
pub mod delivery;
pub mod desired;
pub mod grpc;
pub mod identity;
pub mod index;
pub mod join_token;
pub mod leader;
pub mod metrics;
pub mod objects;
pub mod presence;
pub mod registration;
pub mod status;
pub mod sync;
pub mod watches;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use drbridge_proto::v1::dispatch_server::DispatchServer;
use drbridge_proto::v1::registration_server::RegistrationServer;
use drbridge_proto::v1::renewal_server::RenewalServer;
use tokio::sync::mpsc;
use tracing::{Instrument, info, info_span};

pub use drbridge_runtime::LogFormat;

/// Command line of `drbridge-hub`. Every flag has an environment fallback.
#[derive(Clone, Debug, clap::Parser)]
#[command(
    name = "drbridge-hub",
    version,
    about = "drbridge hub: dispatches ManifestWorks and ManagedClusterViews to agents"
)]
pub struct Args {
    /// gRPC listen address for agents (mTLS).
    #[arg(long, env = "DRBRIDGE_LISTEN_ADDR", default_value = "0.0.0.0:8443")]
    pub listen_addr: SocketAddr,

    /// Admin HTTP address: /live, /ready, /metrics.
    #[arg(long, env = "DRBRIDGE_ADMIN_ADDR", default_value = "0.0.0.0:9990")]
    pub admin_addr: SocketAddr,

    /// Server certificate (PEM).
    #[arg(long, env = "DRBRIDGE_TLS_CERT")]
    pub tls_cert: PathBuf,

    /// Server private key (PEM).
    #[arg(long, env = "DRBRIDGE_TLS_KEY")]
    pub tls_key: PathBuf,

    /// CA that signs agent client certificates (PEM).
    #[arg(long, env = "DRBRIDGE_TLS_CA")]
    pub tls_ca: PathBuf,

    /// Kubeconfig of the hub cluster; default: kube's inference (KUBECONFIG,
    /// ~/.kube/config, in-cluster).
    #[arg(long, env = "DRBRIDGE_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,

    /// Log format.
    #[arg(long, env = "DRBRIDGE_LOG_FORMAT", value_enum, default_value_t = LogFormat::default())]
    pub log_format: LogFormat,

    /// Log filter (tracing EnvFilter syntax).
    #[arg(long, env = "DRBRIDGE_LOG", default_value = "info")]
    pub log: String,

    /// Identity of this hub process, sent to agents; default: the host name.
    #[arg(long, env = "DRBRIDGE_HUB_ID")]
    pub hub_id: Option<String>,

    /// Heartbeat interval asked of agents (and used for the hub's own keepalives).
    #[arg(long, env = "DRBRIDGE_HEARTBEAT_SECONDS", default_value_t = 5)]
    pub heartbeat_seconds: u64,

    /// Silence after which a cluster's Available condition becomes Unknown.
    #[arg(long, env = "DRBRIDGE_PRESENCE_TIMEOUT_SECONDS", default_value_t = 15)]
    pub presence_timeout_seconds: u64,

    /// Largest encoded Sync message; a work that does not fit alone is rejected
    /// with a condition. The default fits tonic's default 4 MiB decode limit.
    #[arg(long, env = "DRBRIDGE_MAX_SYNC_BYTES", default_value_t = desired::DEFAULT_MAX_SYNC_BYTES)]
    pub max_sync_bytes: usize,

    /// Deadline of each API call of the status writer.
    #[arg(long, env = "DRBRIDGE_PATCH_TIMEOUT_SECONDS", default_value_t = 10)]
    pub patch_timeout_seconds: u64,

    /// Largest message read from an agent; a bigger one ends its stream. Also sets each
    /// cluster's budget of queued reports (8 times this) and each stream's read rate (4 times
    /// this a second). The default (2 MiB) is etcd's object limit plus room: no bigger report
    /// could ever be written (docs/security.md).
    #[arg(long, env = "DRBRIDGE_MAX_REPORT_BYTES", default_value_t = grpc::DEFAULT_MAX_REPORT_BYTES)]
    pub max_report_bytes: usize,

    /// Capacity of the status queue (agent reports wait when it is full).
    #[arg(long, env = "DRBRIDGE_STATUS_QUEUE", default_value_t = 4096)]
    pub status_queue: usize,

    /// Namespace of the hub's own state: the CA Secret `drbridge-ca`, join tokens and
    /// cluster identity records.
    #[arg(long, env = "DRBRIDGE_NAMESPACE", default_value = clusters::DEFAULT_NAMESPACE)]
    pub namespace: String,

    /// Listen address for agents joining with a token (TLS, no client certificate).
    #[arg(long, env = "DRBRIDGE_JOIN_ADDR", default_value = "0.0.0.0:8444")]
    pub join_addr: SocketAddr,

    /// Do not open the join listener (certificates are issued some other way).
    #[arg(long, env = "DRBRIDGE_DISABLE_JOIN")]
    pub disable_join: bool,

    /// Lifetime of the client certificates the hub signs (e.g. 24h, 30m, 90s); agents
    /// renew after two thirds of it.
    #[arg(long, env = "DRBRIDGE_CERT_VALIDITY", default_value = "24h", value_parser = join_token::parse_duration)]
    pub cert_validity: Duration,

    /// Refuse clusters that have not joined with a token (no identity record), instead of
    /// accepting any certificate from the CA that names them.
    #[arg(long, env = "DRBRIDGE_REQUIRE_JOIN")]
    pub require_join: bool,

    /// A change its agent has not acknowledged for this long marks the ManagedCluster with
    /// the annotation drbridge.io/oldest-unacknowledged-since.
    #[arg(
        long,
        env = "DRBRIDGE_UNACKNOWLEDGED_THRESHOLD_SECONDS",
        default_value_t = 60
    )]
    pub unacknowledged_threshold_seconds: u64,

    /// Elect a leader among hub replicas on a Lease in --namespace; only the leader serves
    /// agents and writes. Needed for more than one replica; off, this hub always leads.
    #[arg(long, env = "DRBRIDGE_LEADER_ELECTION")]
    pub leader_election: bool,

    /// Name of the Lease of the leader election.
    #[arg(long, env = "DRBRIDGE_LEASE_NAME", default_value = leader::DEFAULT_LEASE_NAME)]
    pub lease_name: String,

    /// How long the other replicas wait after the Lease last changed before taking it.
    #[arg(long, env = "DRBRIDGE_LEASE_DURATION_SECONDS", default_value_t = 15)]
    pub lease_duration_seconds: u64,

    /// The leader stops leading this long after its last successful renewal (below the
    /// lease duration, so it has stopped before another replica can take over).
    #[arg(
        long,
        env = "DRBRIDGE_LEASE_RENEW_DEADLINE_SECONDS",
        default_value_t = 10
    )]
    pub lease_renew_deadline_seconds: u64,

    /// Pause between lease renewals (and attempts to take it).
    #[arg(long, env = "DRBRIDGE_LEASE_RETRY_SECONDS", default_value_t = 2)]
    pub lease_retry_seconds: u64,
}

impl Args {
    /// Checks relations between flags that clap cannot.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.heartbeat_seconds == 0 {
            bail!("--heartbeat-seconds must be at least 1");
        }
        if self.presence_timeout_seconds < 2 * self.heartbeat_seconds {
            bail!(
                "--presence-timeout-seconds ({}) must be at least twice --heartbeat-seconds ({})",
                self.presence_timeout_seconds,
                self.heartbeat_seconds
            );
        }
        if self.max_sync_bytes < 64 * 1024 {
            bail!("--max-sync-bytes must be at least 65536");
        }
        if self.max_report_bytes < 64 * 1024 {
            bail!("--max-report-bytes must be at least 65536");
        }
        if self.status_queue == 0 {
            bail!("--status-queue must be at least 1");
        }
        if self.cert_validity < Duration::from_secs(10) {
            bail!("--cert-validity must be at least 10s");
        }
        if self.namespace.is_empty() {
            bail!("--namespace must not be empty");
        }
        if self.leader_election {
            self.lease_config("check".into())
                .validate()
                .map_err(|e| anyhow::anyhow!("--lease-*: {e}"))?;
        }
        Ok(())
    }

    /// The leader election these flags ask for, with `identity` as this replica's name.
    pub fn election(&self, identity: &str) -> Option<LeaderOptions> {
        self.leader_election.then(|| LeaderOptions {
            namespace: self.namespace.clone(),
            lease: self.lease_config(identity.to_string()),
        })
    }

    fn lease_config(&self, identity: String) -> leader::LeaseConfig {
        leader::LeaseConfig {
            name: self.lease_name.clone(),
            identity,
            lease_duration: Duration::from_secs(self.lease_duration_seconds),
            renew_deadline: Duration::from_secs(self.lease_renew_deadline_seconds),
            retry_period: Duration::from_secs(self.lease_retry_seconds),
        }
    }

    fn hub_id(&self) -> String {
        self.hub_id
            .clone()
            .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
            .unwrap_or_else(|| format!("drbridge-hub-{}", std::process::id()))
    }
}

/// The epoch of a hub started now: milliseconds since the Unix epoch.
pub fn start_epoch() -> u64 {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(1);
    ms.max(1)
}

/// Runs the hub until SIGINT/SIGTERM.
pub async fn run(args: Args) -> anyhow::Result<()> {
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
    .context("loading the hub's TLS files")?;

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
        let join_tls = drbridge_tls::ServerTls::server_only(tls.paths().clone())
            .context("loading the hub's TLS files for the join listener")?;
        let listener = tokio::net::TcpListener::bind(args.join_addr)
            .await
            .with_context(|| format!("binding {}", args.join_addr))?;
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
    let listener = tokio::net::TcpListener::bind(args.listen_addr)
        .await
        .with_context(|| format!("binding {}", args.listen_addr))?;
    parts
        .serve(
            drbridge_tls::incoming(listener, tls),
            wait_shutdown(shutdown_rx.clone()),
        )
        .await
        .context("gRPC server")?;
    if let Some(join) = join {
        join.await?.context("join gRPC server")?;
    }
    // A rolling update hands over at once instead of after the lease duration.
    parts.release_leadership().await;
    admin.abort();
    info!("drbridge-hub stopped");
    Ok(())
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

/// Where and how replicas elect their leader ([`leader`]).
#[derive(Clone, Debug)]
pub struct LeaderOptions {
    /// Namespace of the Lease.
    pub namespace: String,
    pub lease: leader::LeaseConfig,
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

        let mut tasks = watches::spawn_all(client.clone(), index.clone());
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
                .with_leadership(leadership.clone());
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
                tasks.push(tokio::spawn(
                    identity::watch_records(
                        client.clone(),
                        cfg.namespace.clone(),
                        identities.clone(),
                    )
                    .instrument(info_span!("watch", kind = "identities")),
                ));
                let registrar = registration::Registrar::new(
                    client.clone(),
                    cfg,
                    identities.clone(),
                    metrics.clone(),
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

/// Serves agents on `incoming` (connections whose `ConnectInfo` is the TLS
/// [`drbridge_tls::PeerIdentity`]) until `shutdown` completes.
pub async fn serve<S, F>(
    service: grpc::DispatchService,
    incoming: S,
    shutdown: F,
) -> Result<(), tonic::transport::Error>
where
    S: futures::Stream<Item = Result<drbridge_tls::TlsConn, std::io::Error>> + Send + 'static,
    F: std::future::Future<Output = ()> + Send,
{
    serve_with_renewal(service, None, incoming, shutdown).await
}

/// [`serve`], plus the `Renewal` service when given: both behind [`identity_from_tls`].
pub async fn serve_with_renewal<S, F>(
    service: grpc::DispatchService,
    renewal: Option<registration::RenewService>,
    incoming: S,
    shutdown: F,
) -> Result<(), tonic::transport::Error>
where
    S: futures::Stream<Item = Result<drbridge_tls::TlsConn, std::io::Error>> + Send + 'static,
    F: std::future::Future<Output = ()> + Send,
{
    use tonic::service::interceptor::InterceptedService;
    let mut builder = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        // An agent needs one Dispatch stream and now and then a Renew call; a connection with
        // more streams than this is refused more (each cluster also has its own stream cap,
        // grpc::GrpcConfig::max_streams_per_cluster).
        .max_concurrent_streams(Some(MAX_STREAMS_PER_CONNECTION))
        .http2_max_pending_accept_reset_streams(Some(MAX_STREAMS_PER_CONNECTION as usize));
    let router = builder.add_service(InterceptedService::new(
        dispatch_server(service),
        identity_from_tls,
    ));
    let router = router.add_optional_service(renewal.map(|r| {
        InterceptedService::new(
            RenewalServer::new(r).max_decoding_message_size(registration::MAX_REQUEST_BYTES),
            identity_from_tls,
        )
    }));
    router
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}

/// Serves the `Registration` (Join) service on `incoming`, a listener without client
/// certificates ([`drbridge_tls::incoming_server_only`]), until `shutdown` completes.
pub async fn serve_join<S, F>(
    service: registration::JoinService,
    incoming: S,
    shutdown: F,
) -> Result<(), tonic::transport::Error>
where
    S: futures::Stream<Item = Result<drbridge_tls::AnonymousTlsConn, std::io::Error>>
        + Send
        + 'static,
    F: std::future::Future<Output = ()> + Send,
{
    tonic::transport::Server::builder()
        // Unauthenticated callers: bound what each connection and call may take.
        .concurrency_limit_per_connection(4)
        .timeout(Duration::from_secs(30))
        .add_service(
            RegistrationServer::new(service)
                .max_decoding_message_size(registration::MAX_REQUEST_BYTES),
        )
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
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

/// HTTP/2 streams one agent connection may have open at once (mutual-TLS listener).
pub const MAX_STREAMS_PER_CONNECTION: u32 = 8;

/// The tonic server with the hub's message limit: nothing larger than the largest report
/// that could ever be written ([`grpc::DEFAULT_MAX_REPORT_BYTES`]) is read from an agent.
pub fn dispatch_server(svc: grpc::DispatchService) -> DispatchServer<grpc::DispatchService> {
    let max = svc.max_report_bytes();
    DispatchServer::new(svc).max_decoding_message_size(max)
}

/// Interceptor: turns the connection's TLS identity into the [`grpc::ClusterIdentity`]
/// the service reads, so the service itself knows nothing of TLS.
#[allow(clippy::result_large_err)] // tonic's interceptor signature.
pub fn identity_from_tls(mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
    let peer = drbridge_tls::peer_identity(&req)?;
    let cluster = grpc::ClusterIdentity(peer.cluster.as_str().to_string());
    let cert = grpc::CertificateInfo {
        serial: peer.serial.clone(),
        not_after: peer.not_after,
    };
    req.extensions_mut().insert(cluster);
    req.extensions_mut().insert(cert);
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(extra: &[&str]) -> Result<Args, clap::Error> {
        let mut argv = vec![
            "drbridge-hub",
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "k.pem",
            "--tls-ca",
            "ca.pem",
        ];
        argv.extend_from_slice(extra);
        Args::try_parse_from(argv)
    }

    #[test]
    fn defaults() {
        let a = parse(&[]).unwrap();
        assert_eq!(a.listen_addr, "0.0.0.0:8443".parse().unwrap());
        assert_eq!(a.admin_addr, "0.0.0.0:9990".parse().unwrap());
        assert_eq!(a.heartbeat_seconds, 5);
        assert_eq!(a.presence_timeout_seconds, 15);
        assert_eq!(a.max_sync_bytes, desired::DEFAULT_MAX_SYNC_BYTES);
        assert_eq!(a.max_report_bytes, 2 * 1024 * 1024);
        assert_eq!(a.log_format, LogFormat::Plain);
        assert!(a.kubeconfig.is_none());
        assert_eq!(a.namespace, "drbridge-system");
        assert_eq!(a.join_addr, "0.0.0.0:8444".parse().unwrap());
        assert_eq!(a.cert_validity, Duration::from_secs(24 * 3600));
        assert!(!a.disable_join && !a.require_join);
        a.validate().unwrap();
        let a = parse(&["--cert-validity", "90s", "--namespace", "ns"]).unwrap();
        assert_eq!(a.cert_validity, Duration::from_secs(90));
        a.validate().unwrap();
        assert!(
            parse(&["--cert-validity", "5s"])
                .unwrap()
                .validate()
                .is_err()
        );
        assert!(parse(&["--cert-validity", "soon"]).is_err());
    }

    #[test]
    fn leader_election_flags() {
        let a = parse(&[]).unwrap();
        assert!(!a.leader_election);
        assert!(a.election("h1").is_none());
        assert_eq!(a.unacknowledged_threshold_seconds, 60);
        let a = parse(&["--leader-election", "--namespace", "ns"]).unwrap();
        a.validate().unwrap();
        let e = a.election("h1").expect("election on");
        assert_eq!(e.namespace, "ns");
        assert_eq!(e.lease.name, "drbridge-hub");
        assert_eq!(e.lease.identity, "h1");
        assert_eq!(e.lease.lease_duration, Duration::from_secs(15));
        assert_eq!(e.lease.renew_deadline, Duration::from_secs(10));
        assert_eq!(e.lease.retry_period, Duration::from_secs(2));
        // The leader must stop before another replica may start.
        let a = parse(&[
            "--leader-election",
            "--lease-duration-seconds",
            "10",
            "--lease-renew-deadline-seconds",
            "10",
        ])
        .unwrap();
        assert!(
            a.validate()
                .unwrap_err()
                .to_string()
                .contains("renew deadline")
        );
        // Unchecked when off.
        let a = parse(&["--lease-renew-deadline-seconds", "99"]).unwrap();
        a.validate().unwrap();
    }

    #[test]
    fn tls_files_are_required() {
        assert!(Args::try_parse_from(["drbridge-hub"]).is_err());
    }

    #[test]
    fn validation() {
        let a = parse(&[
            "--heartbeat-seconds",
            "10",
            "--presence-timeout-seconds",
            "15",
        ])
        .unwrap();
        assert!(a.validate().unwrap_err().to_string().contains("twice"));
        let a = parse(&["--max-sync-bytes", "1000"]).unwrap();
        assert!(a.validate().is_err());
        let a = parse(&["--heartbeat-seconds", "0"]).unwrap();
        assert!(a.validate().is_err());
        let a = parse(&["--log-format", "json", "--hub-id", "h1"]).unwrap();
        assert_eq!(a.log_format, LogFormat::Json);
        assert_eq!(a.hub_id(), "h1");
    }

    #[test]
    fn epoch_is_the_start_time_in_ms() {
        let before = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let e = start_epoch();
        assert!(e >= before && e < before + 60_000);
    }
}
