//! A hub cluster and managed clusters on real control planes, with the real
//! hub and agents running in this process over real mTLS on loopback. Hub and
//! agents can be stopped and started again mid-stream, as a crash would.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use drbridge_agent::{Agent, HubEndpoint, KubeCluster, KubeRecordStore, WorkConfig};
use drbridge_hub::{Hub, HubOptions};
use drbridge_localenv::Env;
use drbridge_localenv::bridge::{BridgePki, prepare_hub, prepare_managed};
use drbridge_model::Allowlist;
use drbridge_model::allowlist::{KindRule, ViewRule};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::eventually;

struct Running {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(true);
        let abort = self.task.abort_handle();
        if tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .is_err()
        {
            abort.abort();
        }
    }

    fn crash(self) {
        self.task.abort();
    }
}

/// Settings for [`Bridge::start_with`].
#[derive(Clone, Debug)]
pub struct BridgeOptions {
    pub hub: HubOptions,
    pub work: WorkConfig,
}

impl Default for BridgeOptions {
    fn default() -> Self {
        let mut hub = HubOptions::default();
        hub.grpc.heartbeat = Duration::from_secs(1);
        hub.grpc.idle_timeout = Duration::from_secs(5);
        let mut work = WorkConfig::default();
        work.policy.allowlist = test_allowlist();
        Self { hub, work }
    }
}

/// Ramen's default allowlist, plus what these tests use in place of Ramen's objects:
/// ConfigMaps in any namespace, and views of ConfigMaps and AppliedWorks.
pub fn test_allowlist() -> Allowlist {
    let mut a = Allowlist::default();
    a.kinds.push(KindRule::new("", "ConfigMap"));
    a.views.push(ViewRule::new("", "configmaps"));
    a.views.push(ViewRule::new("drbridge.io", "appliedworks"));
    a
}

/// Real clusters with drbridge between them.
pub struct Bridge {
    pub env: Env,
    pub pki: BridgePki,
    pub managed: Vec<String>,
    opts: BridgeOptions,
    addr: SocketAddr,
    hub: Option<Running>,
    agents: BTreeMap<String, (Running, watch::Receiver<bool>)>,
    epoch: u64,
}

impl std::fmt::Debug for Bridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bridge")
            .field("managed", &self.managed)
            .finish()
    }
}

impl Bridge {
    /// A hub and `managed` clusters, prepared as registration would, with the
    /// hub and every agent running and connected.
    pub async fn start(managed: &[&str]) -> Bridge {
        Self::start_with(managed, BridgeOptions::default()).await
    }

    pub async fn start_with(managed: &[&str], opts: BridgeOptions) -> Bridge {
        let _ = rustls_provider();
        let mut names = vec!["hub"];
        names.extend_from_slice(managed);
        let env = Env::start_for_test(&names)
            .await
            .expect("control planes start");
        let managed: Vec<String> = managed.iter().map(|s| s.to_string()).collect();
        prepare_hub(&env.client("hub").await.unwrap(), &managed)
            .await
            .expect("hub prepared");
        for m in &managed {
            prepare_managed(&env.client(m).await.unwrap())
                .await
                .expect("managed cluster prepared");
        }
        let pki = BridgePki::ensure(&env.dir().join("drbridge-pki")).unwrap();
        // The hub binds this address again on every restart, so it must not be one an
        // outgoing connection could take meanwhile.
        let addr = SocketAddr::from((
            [127, 0, 0, 1],
            drbridge_localenv::ports::free_port().unwrap(),
        ));
        let mut b = Bridge {
            env,
            pki,
            managed: managed.clone(),
            opts,
            addr,
            hub: None,
            agents: BTreeMap::new(),
            epoch: drbridge_hub::start_epoch(),
        };
        b.start_hub().await;
        for m in &managed {
            b.start_agent(m).await;
        }
        for m in &managed {
            b.wait_connected(m).await;
        }
        b
    }

    /// The hub's gRPC endpoint.
    pub fn hub_endpoint(&self) -> String {
        format!("https://{}", self.addr)
    }

    pub async fn hub_client(&self) -> kube::Client {
        self.env.client("hub").await.unwrap()
    }

    pub async fn client(&self, cluster: &str) -> kube::Client {
        self.env.client(cluster).await.unwrap()
    }

    /// Starts the hub (again) on the same address, with a newer epoch.
    pub async fn start_hub(&mut self) {
        assert!(self.hub.is_none(), "hub already running");
        self.epoch += 1;
        let mut opts = self.opts.hub.clone();
        opts.grpc.epoch = self.epoch;
        opts.grpc.hub_id = "test-hub".into();
        let client = self.hub_client().await;
        let mut reg = prometheus_client::registry::Registry::default();
        let metrics = drbridge_hub::metrics::Metrics::register(&mut reg);
        let hub = Hub::start(client, opts, metrics);
        let mut ready = hub.ready();
        tokio::time::timeout(Duration::from_secs(30), ready.wait_for(|r| *r))
            .await
            .expect("hub's initial sync")
            .unwrap();
        let tls = drbridge_tls::ServerTls::new(self.pki.hub()).unwrap();
        let listener = bind_retrying(self.addr).await;
        let (stop, mut stop_rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            let incoming = drbridge_tls::incoming(listener, tls);
            let _ = hub
                .serve(incoming, async move {
                    let _ = stop_rx.wait_for(|s| *s).await;
                })
                .await;
            drop(hub);
        });
        self.hub = Some(Running { stop, task });
    }

    /// Stops the hub abruptly (its streams break mid-flight).
    pub async fn crash_hub(&mut self) {
        if let Some(h) = self.hub.take() {
            h.crash();
        }
    }

    /// Stops the hub gracefully.
    pub async fn stop_hub(&mut self) {
        if let Some(h) = self.hub.take() {
            h.stop().await;
        }
    }

    /// Starts (again) the agent of `cluster`, with its durable records from the cluster.
    pub async fn start_agent(&mut self, cluster: &str) {
        assert!(
            !self.agents.contains_key(cluster),
            "agent {cluster} already running"
        );
        let client = self.client(cluster).await;
        let mut reg = prometheus_client::registry::Registry::default();
        let metrics = drbridge_agent::metrics::Metrics::register(&mut reg);
        let agent = Agent::start(
            Arc::new(KubeCluster::new(client.clone())),
            Arc::new(KubeRecordStore::new(client, cluster)),
            cluster,
            self.opts.work.clone(),
            metrics,
        )
        .await
        .expect("agent starts");
        let hub = HubEndpoint {
            endpoint: format!("https://{}", self.addr),
            server_name: "localhost".into(),
            tls: self.pki.agent(cluster).unwrap(),
            channel: drbridge_tls::ChannelOptions::default(),
            backoff_base: Duration::from_millis(50),
            backoff_cap: Duration::from_millis(500),
        };
        let (ready_tx, ready_rx) = watch::channel(false);
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            agent.run(&hub, &ready_tx, stop_rx).await;
        });
        self.agents
            .insert(cluster.to_string(), (Running { stop, task }, ready_rx));
    }

    /// Kills the agent of `cluster` mid-stream.
    pub async fn crash_agent(&mut self, cluster: &str) {
        if let Some((a, _)) = self.agents.remove(cluster) {
            a.crash();
        }
    }

    /// Stops the agent of `cluster` gracefully.
    pub async fn stop_agent(&mut self, cluster: &str) {
        if let Some((a, _)) = self.agents.remove(cluster) {
            a.stop().await;
        }
    }

    /// Waits until the agent of `cluster` holds a stream to the hub.
    pub async fn wait_connected(&self, cluster: &str) {
        let mut ready = self.agents[cluster].1.clone();
        tokio::time::timeout(Duration::from_secs(30), ready.wait_for(|r| *r))
            .await
            .unwrap_or_else(|_| panic!("agent {cluster} did not connect"))
            .unwrap();
        let hub = self.hub_client().await;
        let mcs: kube::Api<drbridge_api::cluster::ManagedCluster> = kube::Api::all(hub);
        let name = cluster.to_string();
        eventually(
            &format!("{cluster} Available"),
            Duration::from_secs(30),
            || async {
                let mc = mcs.get(&name).await.ok()?;
                let conds = mc.status?.conditions;
                conds
                    .iter()
                    .any(|c| c.type_ == "ManagedClusterConditionAvailable" && c.status == "True")
                    .then_some(())
            },
        )
        .await;
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        for (_, (a, _)) in std::mem::take(&mut self.agents) {
            a.crash();
        }
        if let Some(h) = self.hub.take() {
            h.crash();
        }
    }
}

async fn bind_retrying(addr: SocketAddr) -> tokio::net::TcpListener {
    let mut last = None;
    for _ in 0..100 {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => return l,
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("binding {addr}: {last:?}");
}

fn rustls_provider() -> Result<(), Arc<drbridge_tls::rustls::crypto::CryptoProvider>> {
    drbridge_tls::rustls::crypto::ring::default_provider().install_default()
}
