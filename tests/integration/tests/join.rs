//! Cluster join, certificate rotation and removal, end to end: real control planes, the real
//! hub (with registration on) and the real agent, joining with a token the way
//! `drbridge cluster join` and the agent's flags do it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use clap::Parser;
use drbridge_agent::join::{self, Credentials, JoinError, SecretStore};
use drbridge_agent::{Agent, HubEndpoint, KubeCluster, KubeRecordStore};
use drbridge_hub::clusters;
use drbridge_hub::identity::{IdentityRecord, update_record};
use drbridge_hub::registration::RegistrationConfig;
use drbridge_hub::{Hub, HubOptions};
use drbridge_integration_tests::bridge::BridgeOptions;
use drbridge_integration_tests::works::*;
use drbridge_integration_tests::{eventually, init_logging};
use drbridge_localenv::Env;
use drbridge_localenv::bridge::{BridgePki, prepare_hub, prepare_managed};
use drbridge_tls::pki::Ca;
use drbridge_tls::{ChannelOptions, ClusterName, TlsPaths};
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;

const NS: &str = "drbridge-system";

/// Waits for the hub's Event `reason` on ManagedCluster `cluster` (in `default`, where
/// Events of cluster-scoped objects go) and returns its note.
async fn wait_cluster_event(hub: &kube::Client, cluster: &str, reason: &str) -> String {
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(hub.clone(), "default");
    eventually(
        &format!("Event {reason} on ManagedCluster {cluster}"),
        WAIT,
        || async {
            let list = api.list(&Default::default()).await.ok()?;
            list.items.into_iter().find_map(|e| {
                let r = e.regarding.as_ref()?;
                (e.reason.as_deref() == Some(reason)
                    && r.kind.as_deref() == Some("ManagedCluster")
                    && r.name.as_deref() == Some(cluster)
                    && e.reporting_controller.as_deref() == Some("drbridge.io/hub"))
                .then(|| e.note.clone().unwrap_or_default())
            })
        },
    )
    .await
}
const AGENT_NS: &str = "drbridge-agent";
const AGENT_SECRET: &str = "drbridge-agent-tls";

struct World {
    env: Env,
    pki: BridgePki,
    hub: Arc<Hub>,
    metrics: drbridge_hub::metrics::Metrics,
    addr: SocketAddr,
    join_addr: SocketAddr,
    servers: Vec<JoinHandle<()>>,
}

impl Drop for World {
    fn drop(&mut self) {
        for s in &self.servers {
            s.abort();
        }
    }
}

/// A hub cluster (and `managed` clusters) with the hub running its mutual-TLS and join
/// listeners, signing certificates valid for `validity`, its CA in the Secret `drbridge-ca`.
async fn world(managed: &[&str], validity: Duration) -> World {
    init_logging();
    let _ = drbridge_tls::rustls::crypto::ring::default_provider().install_default();
    let mut names = vec!["hub"];
    names.extend_from_slice(managed);
    let env = Env::start_for_test(&names)
        .await
        .expect("control planes start");
    let hub_client = env.client("hub").await.unwrap();
    // CRDs only: clusters are registered by `cluster join`.
    prepare_hub(&hub_client, &[]).await.unwrap();
    for m in managed {
        prepare_managed(&env.client(m).await.unwrap())
            .await
            .unwrap();
    }
    // The hub's serving certificate and the agents' client certificates share one CA, as the
    // hub chart sets it up.
    let pki = BridgePki::ensure(&env.dir().join("drbridge-pki")).unwrap();
    let read = |f: &str| std::fs::read_to_string(pki.dir.join(f)).unwrap();
    let ca = Ca::from_pem(&read("ca.crt"), &read("ca.key")).unwrap();
    let (_, created) = clusters::install_ca(&hub_client, NS, &ca).await.unwrap();
    assert!(created);

    let mut reg = prometheus_client::registry::Registry::default();
    let metrics = drbridge_hub::metrics::Metrics::register(&mut reg);
    let mut opts = HubOptions::default();
    opts.grpc.heartbeat = Duration::from_secs(1);
    opts.grpc.idle_timeout = Duration::from_secs(5);
    opts.registration = Some(RegistrationConfig {
        namespace: NS.into(),
        cert_validity: validity,
        require_join: false,
    });
    let hub = Arc::new(Hub::start(hub_client, opts, metrics.clone()));
    tokio::time::timeout(Duration::from_secs(30), hub.ready().wait_for(|r| *r))
        .await
        .expect("hub ready")
        .unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let tls = drbridge_tls::ServerTls::new(pki.hub()).unwrap();
    let h = hub.clone();
    let mtls = tokio::spawn(async move {
        let _ = h
            .serve(
                drbridge_tls::incoming(listener, tls),
                std::future::pending(),
            )
            .await;
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let join_addr = listener.local_addr().unwrap();
    let tls = drbridge_tls::ServerTls::server_only(pki.hub()).unwrap();
    let service = hub.join_service().unwrap();
    let joins = tokio::spawn(async move {
        let _ = drbridge_hub::serve_join(
            service,
            drbridge_tls::incoming_server_only(listener, tls),
            std::future::pending(),
        )
        .await;
    });
    World {
        env,
        pki,
        hub,
        metrics,
        addr,
        join_addr,
        servers: vec![mtls, joins],
    }
}

/// A running agent, started as `drbridge-agent` starts: flags, `join::prepare`, then the agent.
struct RunningAgent {
    stop: watch::Sender<bool>,
    ready: watch::Receiver<bool>,
    tasks: Vec<JoinHandle<()>>,
    creds: Credentials,
}

impl RunningAgent {
    async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let abort = t.abort_handle();
            if tokio::time::timeout(Duration::from_secs(10), t)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

impl World {
    async fn hub_client(&self) -> kube::Client {
        self.env.client("hub").await.unwrap()
    }

    /// What `drbridge cluster join NAME` does; returns the token.
    async fn join_token(&self, cluster: &str, ttl: Duration) -> String {
        let hub = self.hub_client().await;
        let name: ClusterName = cluster.parse().unwrap();
        clusters::ensure_ca(&hub, NS).await.unwrap();
        clusters::register_cluster(&hub, &name).await.unwrap();
        let (token, _) = clusters::create_join_token(&hub, NS, &name, ttl)
            .await
            .unwrap();
        token.expose()
    }

    fn agent_dir(&self, cluster: &str) -> std::path::PathBuf {
        self.env.dir().join(format!("agent-{cluster}"))
    }

    fn agent_args(&self, cluster: &str, token: &str) -> drbridge_agent::Args {
        let dir = self.agent_dir(cluster);
        let kubeconfig = self.env.kubeconfig(cluster).unwrap();
        let s = |p: std::path::PathBuf| p.to_string_lossy().into_owned();
        drbridge_agent::Args::try_parse_from([
            "drbridge-agent".to_string(),
            format!("--hub-endpoint=https://{}", self.addr),
            "--hub-server-name=localhost".into(),
            format!("--tls-cert={}", s(dir.join("tls.crt"))),
            format!("--tls-key={}", s(dir.join("tls.key"))),
            format!("--tls-ca={}", s(dir.join("ca.crt"))),
            format!("--cluster={cluster}"),
            format!("--kubeconfig={}", s(kubeconfig)),
            format!("--join-token={token}"),
            format!("--join-endpoint=https://{}", self.join_addr),
            format!("--join-ca={}", s(self.pki.ca_cert())),
            format!("--tls-secret={AGENT_SECRET}"),
            format!("--tls-secret-namespace={AGENT_NS}"),
            "--max-backoff-seconds=1".into(),
        ])
        .unwrap()
    }

    async fn start_agent(&self, cluster: &str, token: &str) -> RunningAgent {
        let args = self.agent_args(cluster, token);
        let client = self.env.client(cluster).await.unwrap();
        clusters::ensure_namespace(&client, AGENT_NS).await.unwrap();
        let (stop, stop_rx) = watch::channel(false);
        let rotation = join::prepare(&args, &client, stop_rx.clone())
            .await
            .expect("the agent joins")
            .expect("a joined agent rotates its certificate");
        let mut reg = prometheus_client::registry::Registry::default();
        let metrics = drbridge_agent::metrics::Metrics::register(&mut reg);
        let agent = Agent::start(
            Arc::new(KubeCluster::new(client.clone())),
            Arc::new(KubeRecordStore::new(client.clone(), cluster)),
            cluster,
            // The test's works carry ConfigMaps, which Ramen's default allowlist refuses.
            BridgeOptions::default().work,
            metrics,
        )
        .await
        .unwrap();
        let hub = HubEndpoint {
            endpoint: args.hub_endpoint.clone(),
            server_name: args.server_name().unwrap(),
            tls: TlsPaths::new(&args.tls_cert, &args.tls_key, &args.tls_ca),
            channel: ChannelOptions::default(),
            backoff_base: Duration::from_millis(50),
            backoff_cap: Duration::from_millis(500),
        };
        let (ready_tx, ready) = watch::channel(false);
        let run = tokio::spawn(async move { agent.run(&hub, &ready_tx, stop_rx).await });
        let creds = Credentials::from_args(&args, &client).unwrap();
        RunningAgent {
            stop,
            ready,
            tasks: vec![run, rotation],
            creds,
        }
    }

    /// An agent's join credentials (no Secret store) for `cluster` with `token`.
    fn credentials(&self, cluster: &str, token: String) -> Credentials {
        let dir = self.env.dir().join(format!("creds-{}", rand_suffix()));
        Credentials {
            cluster: cluster.into(),
            hub_endpoint: format!("https://{}", self.addr),
            join_endpoint: format!("https://{}", self.join_addr),
            server_name: "localhost".into(),
            paths: TlsPaths::in_dir(dir, "tls", "ca"),
            join_ca: self.pki.ca_cert(),
            token: Some(token),
            store: None,
            channel: ChannelOptions::default(),
            backoff_base: Duration::from_millis(50),
            backoff_cap: Duration::from_millis(500),
        }
    }

    fn connected(&self) -> i64 {
        self.metrics.connected_agents.get()
    }

    fn refused(&self) -> u64 {
        self.metrics.connections_refused.get()
    }
}

async fn wait_ready(agent: &RunningAgent, want: bool, within: Duration) {
    let mut ready = agent.ready.clone();
    tokio::time::timeout(within, ready.wait_for(|r| *r == want))
        .await
        .unwrap_or_else(|_| panic!("agent ready={want} within {within:?}"))
        .unwrap();
}

/// A work with one ConfigMap, created on the hub and waited for on the managed cluster.
async fn deliver(w: &World, cluster: &str, work: &str) {
    let hub = w.hub_client().await;
    let spoke = w.env.client(cluster).await.unwrap();
    create_mw(
        &hub,
        cluster,
        work,
        vec![configmap("app", work, json!({"from": work}))],
        None,
    )
    .await;
    wait_applied(&hub, cluster, work).await;
    wait_cm(&spoke, "app", work, "applied", |_| true).await;
}

fn refused_code(e: &JoinError) -> Option<tonic::Code> {
    match e {
        JoinError::Refused { code, .. } => Some(*code),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joined_agent_receives_works_and_rotates_its_certificate_without_restart() {
    // Short-lived certificates: renewal after two thirds, about 13 s in.
    let w = world(&["dr1"], Duration::from_secs(20)).await;
    create_ns(&w.env.client("dr1").await.unwrap(), "app").await;
    let token = w.join_token("dr1", Duration::from_secs(3600)).await;
    let agent = w.start_agent("dr1", &token).await;
    wait_ready(&agent, true, Duration::from_secs(30)).await;
    deliver(&w, "dr1", "before-rotation").await;

    // The key was made on the managed cluster and kept there: files (key 0600) and Secret.
    let first = agent.creds.current().unwrap();
    let joined = wait_cluster_event(&w.hub_client().await, "dr1", "AgentJoined").await;
    assert!(joined.contains(&first.serial), "{joined}");
    assert_eq!(first.cluster.as_str(), "dr1");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&agent.creds.paths.key)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let store = SecretStore::new(w.env.client("dr1").await.unwrap(), AGENT_NS, AGENT_SECRET);
    let stored = store.load().await.unwrap().expect("TLS Secret written");
    assert_eq!(
        stored.token_id.as_deref(),
        token.split_once('.').map(|(id, _)| id)
    );
    // The hub accepts exactly this certificate for dr1.
    let record = w.hub.identities.as_ref().unwrap().get("dr1").unwrap();
    assert_eq!(record.certificates.len(), 1);
    assert_eq!(record.certificates[0].serial, first.serial);
    // The token was consumed.
    let hub = w.hub_client().await;
    let secrets: Api<Secret> = Api::namespaced(hub.clone(), NS);
    let id = token.split_once('.').unwrap().0;
    assert!(
        secrets
            .get_opt(&format!("drbridge-join-{id}"))
            .await
            .unwrap()
            .is_none()
    );

    // Rotation: the files get a new certificate, with no restart.
    let renewed = eventually(
        "the certificate renewed",
        Duration::from_secs(40),
        || async {
            agent
                .creds
                .current()
                .ok()
                .filter(|c| c.serial != first.serial)
        },
    )
    .await;
    assert_eq!(renewed.cluster.as_str(), "dr1");
    assert!(renewed.not_after > first.not_after);
    let rotated = wait_cluster_event(&w.hub_client().await, "dr1", "CertificateRotated").await;
    assert!(rotated.contains(&first.serial), "{rotated}");
    // The Secret is written before the files, so a restart never goes back.
    let stored = store.load().await.unwrap().unwrap();
    let stored = drbridge_tls::cert_info_pem(stored.cert_pem.as_bytes()).unwrap();
    assert_ne!(stored.serial, first.serial);

    // Past the first certificate's expiry no connection can use it (the hub ended the stream
    // opened with it); works still arrive over a connection with a renewed one.
    eventually(
        "the first certificate expired",
        Duration::from_secs(40),
        || async { (SystemTime::now() > first.not_after + Duration::from_secs(1)).then_some(()) },
    )
    .await;
    assert!(
        w.hub
            .identities
            .as_ref()
            .unwrap()
            .check("dr1", &first.serial)
            .is_err(),
        "an expired certificate is not accepted"
    );
    deliver(&w, "dr1", "after-rotation").await;
    wait_ready(&agent, true, Duration::from_secs(30)).await;
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_cluster_is_refused_its_stream_ends_and_a_rejoin_gets_a_fresh_identity() {
    let w = world(&["dr1"], Duration::from_secs(3600)).await;
    create_ns(&w.env.client("dr1").await.unwrap(), "app").await;
    let token = w.join_token("dr1", Duration::from_secs(3600)).await;
    let agent = w.start_agent("dr1", &token).await;
    wait_ready(&agent, true, Duration::from_secs(30)).await;
    deliver(&w, "dr1", "w1").await;
    assert_eq!(w.connected(), 1);
    let old = agent.creds.current().unwrap();
    let old_files = TlsPaths::in_dir(w.env.dir().join("old-dr1"), "tls", "ca");
    for (from, to) in [
        (&agent.creds.paths.cert, &old_files.cert),
        (&agent.creds.paths.key, &old_files.key),
        (&agent.creds.paths.ca, &old_files.ca),
    ] {
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(from, to).unwrap();
    }
    // An unused token, to check removal deletes it.
    let unused = w.join_token("dr1", Duration::from_secs(3600)).await;

    // `drbridge cluster remove dr1`: the open stream ends promptly, the agent is refused.
    let refused_before = w.refused();
    let hub = w.hub_client().await;
    let removed = clusters::remove_cluster(&hub, NS, &"dr1".parse().unwrap(), false)
        .await
        .unwrap();
    assert_eq!(removed.tokens_deleted, 1);
    wait_ready(&agent, false, Duration::from_secs(5)).await;
    wait_cluster_event(&hub, "dr1", "AgentRemoved").await;
    eventually(
        "the hub dropped the stream",
        Duration::from_secs(5),
        || async { (w.connected() == 0).then_some(()) },
    )
    .await;
    eventually("reconnects refused", Duration::from_secs(30), || async {
        (w.refused() >= refused_before + 2).then_some(())
    })
    .await;
    assert!(
        !*agent.ready.borrow(),
        "a removed agent never gets a stream"
    );
    // Nor a renewal.
    let err = agent.creds.renew_once().await.unwrap_err();
    assert_eq!(
        refused_code(&err),
        Some(tonic::Code::PermissionDenied),
        "{err}"
    );
    // The token made before the removal is gone.
    let mut stale = agent.creds.clone();
    stale.token = Some(unused);
    stale.store = None;
    stale.paths = TlsPaths::in_dir(w.env.dir().join("stale-dr1"), "tls", "ca");
    let err = stale.join_once().await.unwrap_err();
    assert_eq!(
        refused_code(&err),
        Some(tonic::Code::Unauthenticated),
        "{err}"
    );
    agent.stop().await;

    // Re-join with a new token: the agent sees a token other than the one that made its
    // stored identity, joins again, and works; the old certificate stays refused.
    let token2 = w.join_token("dr1", Duration::from_secs(3600)).await;
    let agent = w.start_agent("dr1", &token2).await;
    wait_ready(&agent, true, Duration::from_secs(30)).await;
    let new = agent.creds.current().unwrap();
    assert_ne!(new.serial, old.serial);
    deliver(&w, "dr1", "w2").await;
    let mut with_old = agent.creds.clone();
    with_old.paths = old_files;
    with_old.store = None;
    let err = with_old.renew_once().await.unwrap_err();
    assert_eq!(
        refused_code(&err),
        Some(tonic::Code::PermissionDenied),
        "{err}"
    );
    assert!(
        w.hub
            .identities
            .as_ref()
            .unwrap()
            .check("dr1", &old.serial)
            .is_err()
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_tokens_are_single_use_expire_and_name_the_cluster() {
    let w = world(&[], Duration::from_secs(3600)).await;
    let hub = w.hub_client().await;
    let base = |name: &str, token: String| w.credentials(name, token);

    // A token works once.
    let t1 = w.join_token("dr9", Duration::from_secs(3600)).await;
    let serial = base("dr9", t1.clone()).join_once().await.unwrap();
    let err = base("dr9", t1).join_once().await.unwrap_err();
    assert_eq!(
        refused_code(&err),
        Some(tonic::Code::Unauthenticated),
        "{err}"
    );
    assert!(err.to_string().contains("already used"), "{err}");
    let record = w.hub.identities.as_ref().unwrap();
    eventually("the join recorded", Duration::from_secs(10), || async {
        record
            .get("dr9")
            .filter(|r| r.certificates.iter().any(|c| c.serial == serial))
    })
    .await;

    // Two joins racing with one token: exactly one wins.
    let t2 = w.join_token("dr9", Duration::from_secs(3600)).await;
    let (a, b) = (base("dr9", t2.clone()), base("dr9", t2));
    let (ra, rb) = tokio::join!(a.join_once(), b.join_once());
    assert_eq!(
        [ra.is_ok(), rb.is_ok()].iter().filter(|ok| **ok).count(),
        1,
        "{ra:?} {rb:?}"
    );

    // An expired token is refused (and removed).
    let t3 = w.join_token("dr9", Duration::ZERO).await;
    let err = base("dr9", t3.clone()).join_once().await.unwrap_err();
    assert_eq!(
        refused_code(&err),
        Some(tonic::Code::Unauthenticated),
        "{err}"
    );
    assert!(err.to_string().contains("expired"), "{err}");
    let secrets: Api<Secret> = Api::namespaced(hub.clone(), NS);
    let id3 = t3.split_once('.').unwrap().0;
    assert!(
        secrets
            .get_opt(&format!("drbridge-join-{id3}"))
            .await
            .unwrap()
            .is_none()
    );

    // A token for another cluster is refused without being used up.
    let t4 = w.join_token("dr9", Duration::from_secs(3600)).await;
    let err = base("dr8", t4.clone()).join_once().await.unwrap_err();
    assert_eq!(
        refused_code(&err),
        Some(tonic::Code::FailedPrecondition),
        "{err}"
    );
    base("dr9", t4).join_once().await.unwrap();

    // A guessed secret for a real token id, and garbage, are refused alike.
    let t5 = w.join_token("dr9", Duration::from_secs(3600)).await;
    let forged = format!("{}.{}", t5.split_once('.').unwrap().0, "0".repeat(64));
    for bad in [forged, "nonsense".to_string()] {
        let err = base("dr9", bad).join_once().await.unwrap_err();
        assert_eq!(
            refused_code(&err),
            Some(tonic::Code::Unauthenticated),
            "{err}"
        );
    }

    // A token made before the cluster was removed is refused, even if it survived.
    update_record(&hub, NS, "dr9", |old| {
        Ok(IdentityRecord::removed_after(old.as_ref()))
    })
    .await
    .unwrap();
    let err = base("dr9", t5).join_once().await.unwrap_err();
    assert_eq!(
        refused_code(&err),
        Some(tonic::Code::PermissionDenied),
        "{err}"
    );
    // A token made after the removal works.
    let t6 = w.join_token("dr9", Duration::from_secs(3600)).await;
    base("dr9", t6).join_once().await.unwrap();
}

/// Issue 17 items 13 and 11: a join whose identity record cannot be written does not use the
/// token up; and a deleted identity record fails closed (it does not become "no record", which
/// would accept the certificates it superseded again), also after the hub restarts its watch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_record_write_keeps_the_token_and_a_deleted_record_fails_closed() {
    let w = world(&[], Duration::from_secs(3600)).await;
    let hub = w.hub_client().await;
    let secrets: Api<Secret> = Api::namespaced(hub.clone(), NS);
    let record_name = drbridge_hub::identity::record_name("dr7");
    // A Secret of another type in the way: the record write fails (a Secret's type cannot
    // change), and the hub's watch (of identity records only) does not see it.
    secrets
        .create(
            &kube::api::PostParams::default(),
            &Secret {
                metadata: kube::api::ObjectMeta {
                    name: Some(record_name.clone()),
                    ..Default::default()
                },
                type_: Some("Opaque".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let token = w.join_token("dr7", Duration::from_secs(3600)).await;
    let token_secret = format!("drbridge-join-{}", token.split_once('.').unwrap().0);
    let err = w
        .credentials("dr7", token.clone())
        .join_once()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("identity record"), "{err}");
    assert!(
        secrets.get_opt(&token_secret).await.unwrap().is_some(),
        "the failed join used the token up"
    );
    secrets
        .delete(&record_name, &Default::default())
        .await
        .unwrap();
    let first = w.credentials("dr7", token).join_once().await.unwrap();
    assert!(secrets.get_opt(&token_secret).await.unwrap().is_none());

    // A re-join supersedes the first certificate; then the record is deleted.
    let token2 = w.join_token("dr7", Duration::from_secs(3600)).await;
    let second = w.credentials("dr7", token2).join_once().await.unwrap();
    let ids = w.hub.identities.as_ref().unwrap();
    eventually("the re-join recorded", Duration::from_secs(10), || async {
        ids.check("dr7", &second).ok()
    })
    .await;
    assert!(ids.check("dr7", &first).is_err());
    secrets
        .delete(&record_name, &Default::default())
        .await
        .unwrap();
    eventually(
        "the deleted record refuses",
        Duration::from_secs(10),
        || async { ids.check("dr7", &second).is_err().then_some(()) },
    )
    .await;
    assert!(
        ids.check("dr7", &first).is_err(),
        "a superseded certificate is accepted again"
    );
    // Written back, so a restarted hub refuses too.
    let tomb = eventually(
        "the tombstone written back",
        Duration::from_secs(10),
        || async {
            let s = secrets.get_opt(&record_name).await.ok()??;
            IdentityRecord::from_secret(&s).ok().map(|(_, r)| r)
        },
    )
    .await;
    assert!(tomb.removed, "{tomb:?}");
    // A new join lifts it.
    let token3 = w.join_token("dr7", Duration::from_secs(3600)).await;
    let third = w.credentials("dr7", token3).join_once().await.unwrap();
    eventually("the new join recorded", Duration::from_secs(10), || async {
        ids.check("dr7", &third).ok()
    })
    .await;
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    N.fetch_add(1, Ordering::Relaxed).to_string()
}
