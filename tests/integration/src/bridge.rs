//! A hub cluster and managed clusters on real control planes, with the real
//! hub and agents running in this process over real mTLS on loopback. Hub and
//! agents can be stopped and started again mid-stream, as a crash would.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use drbridge_agent::testing::FakeCluster;
use drbridge_agent::{Agent, HubEndpoint, KubeCluster, KubeRecordStore, MemoryStore, WorkConfig};
use drbridge_hub::{Hub, HubOptions};
use drbridge_localenv::Env;
use drbridge_localenv::bridge::{BridgePki, prepare_hub, prepare_managed};
use drbridge_model::Allowlist;
use drbridge_model::allowlist::{KindRule, ViewRule};
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, watch};
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
    /// Hub replicas. More than one: they elect a leader (`hub.election` must be set; each
    /// replica's identity is its hub id) and agents dial a [`Front`] before them.
    pub replicas: usize,
    /// Clusters registered on the hub whose agents run the real agent over an in-memory
    /// cluster ([`FakeCluster`]) instead of an API server: fleets of many clusters.
    pub simulated: Vec<String>,
    /// Every object a simulated agent writes to its cluster, with its cluster and when, as
    /// the write starts: when the agent has a work's manifests in hand.
    pub simulated_writes: Option<mpsc::UnboundedSender<SimulatedWrite>>,
    /// Runs the hub as this program (`drbridge-hub`), its own process with its own flags'
    /// defaults, instead of in this process (`hub` is then ignored): what a benchmark
    /// measures the hub's memory and CPU of. Single replica only.
    pub hub_program: Option<PathBuf>,
}

/// See [`BridgeOptions::simulated_writes`].
#[derive(Clone, Debug)]
pub struct SimulatedWrite {
    pub cluster: String,
    pub at: std::time::Instant,
    pub object: serde_json::Value,
}

/// Tells [`BridgeOptions::simulated_writes`] about one simulated cluster's writes.
#[derive(Debug)]
struct WriteTap {
    cluster: String,
    tx: mpsc::UnboundedSender<SimulatedWrite>,
}

impl drbridge_agent::testing::Observer for WriteTap {
    fn writing(&self, obj: &serde_json::Value) {
        let _ = self.tx.send(SimulatedWrite {
            cluster: self.cluster.clone(),
            at: std::time::Instant::now(),
            object: obj.clone(),
        });
    }
}

impl Default for BridgeOptions {
    fn default() -> Self {
        let mut hub = HubOptions::default();
        hub.grpc.heartbeat = Duration::from_secs(1);
        hub.grpc.idle_timeout = Duration::from_secs(5);
        let mut work = WorkConfig::default();
        work.policy.allowlist = test_allowlist();
        Self {
            hub,
            work,
            replicas: 1,
            simulated: Vec::new(),
            simulated_writes: None,
            hub_program: None,
        }
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
    /// The metrics of the hub (or replica) started last and of each agent, as `/metrics`
    /// serves them.
    registries: Arc<std::sync::Mutex<BTreeMap<String, Arc<Registry>>>>,
    /// The in-memory clusters and records of simulated agents, kept across their restarts.
    fakes: BTreeMap<String, (FakeCluster, MemoryStore)>,
    epoch: u64,
    /// With more than one replica: each one's address and, while it runs, its task and
    /// leadership; agents dial `front` at `addr`.
    replicas: Vec<Replica>,
    front: Option<Front>,
    /// With [`BridgeOptions::hub_program`]: the hub process's pid and admin address.
    hub_process: Option<(u32, SocketAddr)>,
    /// The hub process's admin address, kept across its restarts.
    hub_admin: Option<SocketAddr>,
}

/// The name of the hub process in the environment (its log is `logs/drbridge-hub.log`).
const HUB_PROCESS: &str = "drbridge-hub";

struct Replica {
    addr: SocketAddr,
    running: Option<(Running, drbridge_hub::leader::Leadership)>,
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
        let registered: Vec<String> = managed.iter().chain(&opts.simulated).cloned().collect();
        prepare_hub(&env.client("hub").await.unwrap(), &registered)
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
        let n = if opts.replicas > 1 { opts.replicas } else { 0 };
        let replicas = (0..n)
            .map(|_| Replica {
                addr: SocketAddr::from((
                    [127, 0, 0, 1],
                    drbridge_localenv::ports::free_port().unwrap(),
                )),
                running: None,
            })
            .collect::<Vec<_>>();
        let front = match replicas.is_empty() {
            true => None,
            false => Some(Front::start(addr, replicas.iter().map(|r| r.addr).collect()).await),
        };
        let mut b = Bridge {
            env,
            pki,
            managed: managed.clone(),
            opts,
            addr,
            hub: None,
            agents: BTreeMap::new(),
            registries: Arc::default(),
            fakes: BTreeMap::new(),
            epoch: drbridge_hub::start_epoch(),
            replicas,
            front,
            hub_process: None,
            hub_admin: None,
        };
        if b.replicas.is_empty() {
            b.start_hub().await;
        } else {
            for i in 0..b.replicas.len() {
                b.start_replica(i).await;
            }
        }
        for m in &managed {
            b.start_agent(m).await;
        }
        for m in b.opts.simulated.clone() {
            b.start_simulated_agent(&m).await;
        }
        for m in registered {
            b.wait_connected(&m).await;
        }
        b
    }

    /// The OpenMetrics text of the hub (`hub`) and of every agent (`agent/CLUSTER`), as their
    /// `/metrics` would serve it.
    pub fn metrics_texts(&self) -> Vec<(String, String)> {
        let registries = self.registries.lock().unwrap();
        registries
            .iter()
            .map(|(process, r)| {
                let mut text = String::new();
                prometheus_client::encoding::text::encode_registry(&mut text, r)
                    .expect("encoding into a String");
                (process.clone(), text)
            })
            .collect()
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
        if let Some(program) = self.opts.hub_program.clone() {
            return self.start_hub_process(&program).await;
        }
        assert!(self.hub.is_none(), "hub already running");
        self.epoch += 1;
        let mut opts = self.opts.hub.clone();
        opts.grpc.epoch = self.epoch;
        opts.grpc.hub_id = "test-hub".into();
        let (running, _) = self.spawn_hub(opts, self.addr).await;
        self.hub = Some(running);
    }

    async fn spawn_hub(
        &self,
        opts: HubOptions,
        addr: SocketAddr,
    ) -> (Running, drbridge_hub::leader::Leadership) {
        let client = self.hub_client().await;
        let mut reg = prometheus_client::registry::Registry::default();
        let metrics = drbridge_hub::metrics::Metrics::register(&mut reg);
        self.registries
            .lock()
            .unwrap()
            .insert("hub".into(), Arc::new(reg));
        let hub = Hub::start(client, opts, metrics);
        let leadership = hub.leadership.clone();
        let mut ready = hub.ready();
        tokio::time::timeout(Duration::from_secs(30), ready.wait_for(|r| *r))
            .await
            .expect("hub's initial sync")
            .unwrap();
        let tls = drbridge_tls::ServerTls::new(self.pki.hub()).unwrap();
        let listener = bind_retrying(addr).await;
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
        (Running { stop, task }, leadership)
    }

    /// Starts hub replica `i` (again) on its own address, electing with the others.
    pub async fn start_replica(&mut self, i: usize) {
        assert!(
            self.replicas[i].running.is_none(),
            "replica {i} already running"
        );
        let mut opts = self.opts.hub.clone();
        opts.grpc.hub_id = format!("test-hub-{i}");
        opts.election
            .as_mut()
            .expect("replicas elect a leader: set hub.election")
            .lease
            .identity = opts.grpc.hub_id.clone();
        let (running, leadership) = self.spawn_hub(opts, self.replicas[i].addr).await;
        if let Some(front) = &self.front {
            front.open(i);
        }
        self.replicas[i].running = Some((running, leadership));
    }

    /// Kills replica `i` as its process dying would: its tasks stop, its connections
    /// break, and it does not release the Lease.
    pub fn crash_replica(&mut self, i: usize) {
        if let Some((running, _)) = self.replicas[i].running.take() {
            running.crash();
        }
        if let Some(front) = &self.front {
            front.cut(i);
        }
    }

    /// The replica that leads now, if any.
    pub fn leader(&self) -> Option<usize> {
        self.replicas.iter().position(|r| {
            r.running
                .as_ref()
                .is_some_and(|(_, leadership)| leadership.is_leader())
        })
    }

    /// The leadership of replica `i` while it runs.
    pub fn leadership(&self, i: usize) -> Option<drbridge_hub::leader::Leadership> {
        self.replicas[i].running.as_ref().map(|(_, l)| l.clone())
    }

    /// Stops the hub abruptly (its streams break mid-flight); a hub process gets SIGKILL.
    pub async fn crash_hub(&mut self) {
        if let Some(h) = self.hub.take() {
            h.crash();
        }
        if self.hub_process.take().is_some() {
            self.env.kill_process(HUB_PROCESS).expect("killing the hub");
        }
    }

    /// The hub process's pid and admin address (`/metrics`), with
    /// [`BridgeOptions::hub_program`] while it runs.
    pub fn hub_process(&self) -> Option<(u32, SocketAddr)> {
        self.hub_process
    }

    /// Starts `program` as the hub, or the killed one again with the same flags (a newer
    /// epoch: its start time), and waits until it listens: it opens its gRPC port only once
    /// every watch has listed.
    async fn start_hub_process(&mut self, program: &std::path::Path) {
        assert!(self.hub_process.is_none(), "hub already running");
        let (pid, admin) = if self.env.suspended_names().iter().any(|n| n == HUB_PROCESS) {
            let admin = self.hub_admin.expect("the hub ran before");
            (
                self.env
                    .resume_process(HUB_PROCESS)
                    .expect("restarting the hub"),
                admin,
            )
        } else {
            let admin = SocketAddr::from((
                [127, 0, 0, 1],
                drbridge_localenv::ports::free_port().unwrap(),
            ));
            let tls = self.pki.hub();
            let s = |p: &std::path::Path| p.display().to_string();
            let args = vec![
                format!("--listen-addr={}", self.addr),
                format!("--admin-addr={admin}"),
                "--disable-join".into(),
                format!("--tls-cert={}", s(&tls.cert)),
                format!("--tls-key={}", s(&tls.key)),
                format!("--tls-ca={}", s(&tls.ca)),
                format!("--kubeconfig={}", s(&self.env.kubeconfig("hub").unwrap())),
                "--hub-id=test-hub".into(),
                // Explicit: localenv's process guard exports DRBRIDGE_LOG as the log file's
                // path, which the hub would read as its filter.
                "--log=info".into(),
            ];
            self.hub_admin = Some(admin);
            let pid = self
                .env
                .spawn(HUB_PROCESS, program, &args, &[])
                .expect("starting the hub");
            (pid, admin)
        };
        let addr = self.addr;
        let log = self.env.log_path(HUB_PROCESS);
        eventually(
            &format!(
                "the hub process listening on {addr} (log {})",
                log.display()
            ),
            Duration::from_secs(120),
            || async move { tokio::net::TcpStream::connect(addr).await.ok().map(|_| ()) },
        )
        .await;
        self.hub_process = Some((pid, admin));
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
        // Its Events, as the agent binary publishes them (the publisher ends with the agent).
        let (events, publisher) = drbridge_runtime::events::Events::start(
            client.clone(),
            kube::runtime::events::Reporter {
                controller: drbridge_runtime::events::AGENT_REPORTER.into(),
                instance: Some(cluster.to_owned()),
            },
            drbridge_runtime::events::DEFAULT_QUEUE,
            metrics.events.clone(),
        );
        tokio::spawn(publisher);
        self.registries
            .lock()
            .unwrap()
            .insert(format!("agent/{cluster}"), Arc::new(reg));
        let work = WorkConfig {
            events,
            ..self.opts.work.clone()
        };
        let agent = Agent::start(
            Arc::new(KubeCluster::new(client.clone())),
            Arc::new(KubeRecordStore::new(client, cluster)),
            cluster,
            work,
            metrics,
        )
        .await
        .expect("agent starts");
        self.run_agent(cluster, agent);
    }

    /// Starts (again) the simulated agent of `cluster` (see [`BridgeOptions::simulated`]):
    /// the real agent over its in-memory cluster and records.
    pub async fn start_simulated_agent(&mut self, cluster: &str) {
        assert!(
            !self.agents.contains_key(cluster),
            "agent {cluster} already running"
        );
        let tap = self.opts.simulated_writes.clone().map(|tx| WriteTap {
            cluster: cluster.to_owned(),
            tx,
        });
        let (fake, store) = self
            .fakes
            .entry(cluster.to_owned())
            .or_insert_with(|| {
                let mut fake = FakeCluster::new();
                if let Some(tap) = tap {
                    fake = fake.observed_by(Arc::new(tap));
                }
                // What the agent reads its cluster id claim from.
                fake.put(
                    "Namespace",
                    serde_json::json!({"apiVersion": "v1", "kind": "Namespace",
                                       "metadata": {"name": "kube-system"}}),
                );
                (fake, MemoryStore::default())
            })
            .clone();
        let agent = Agent::start(
            Arc::new(fake),
            Arc::new(store),
            cluster,
            self.opts.work.clone(),
            drbridge_agent::metrics::Metrics::default(),
        )
        .await
        .expect("simulated agent starts");
        self.run_agent(cluster, agent);
    }

    /// The in-memory cluster of a simulated agent.
    pub fn simulated_cluster(&self, cluster: &str) -> Option<&FakeCluster> {
        self.fakes.get(cluster).map(|(c, _)| c)
    }

    fn run_agent<C, S>(&mut self, cluster: &str, agent: Agent<C, S>)
    where
        C: drbridge_agent::cluster::Cluster + 'static,
        S: drbridge_agent::record::RecordStore + 'static,
    {
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

    /// Whether the agent of `cluster` holds a stream to the hub (true from Welcome on).
    pub fn agent_connected(&self, cluster: &str) -> watch::Receiver<bool> {
        self.agents[cluster].1.clone()
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
        for i in 0..self.replicas.len() {
            self.crash_replica(i);
        }
    }
}

/// A TCP front for hub replicas, as a Kubernetes Service is: each connection goes to the
/// next replica that accepts it, round robin. Cutting a replica off closes the connections
/// it has, as its process dying would.
/// Each replica's address, and whether it is cut off.
type Backends = Arc<std::sync::Mutex<Vec<(SocketAddr, watch::Sender<bool>)>>>;

struct Front {
    backends: Backends,
    task: JoinHandle<()>,
}

impl Front {
    async fn start(addr: SocketAddr, backends: Vec<SocketAddr>) -> Front {
        let backends: Backends = Arc::new(std::sync::Mutex::new(
            backends
                .into_iter()
                .map(|a| (a, watch::channel(true).0))
                .collect::<Vec<_>>(),
        ));
        let shared = backends.clone();
        let listener = bind_retrying(addr).await;
        let task = tokio::spawn(async move {
            let mut next = 0usize;
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                let candidates: Vec<(SocketAddr, watch::Receiver<bool>)> = {
                    let b = shared.lock().unwrap();
                    let n = b.len();
                    next = next.wrapping_add(1);
                    (0..n)
                        .map(|k| &b[(next + k) % n])
                        .filter(|(_, cut)| !*cut.borrow())
                        .map(|(a, cut)| (*a, cut.subscribe()))
                        .collect()
                };
                tokio::spawn(async move {
                    for (backend, mut cut) in candidates {
                        let Ok(mut outbound) = tokio::net::TcpStream::connect(backend).await else {
                            continue;
                        };
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                            _ = cut.wait_for(|c| *c) => {}
                        }
                        return;
                    }
                });
            }
        });
        Front { backends, task }
    }

    fn open(&self, i: usize) {
        self.backends.lock().unwrap()[i].1.send_replace(false);
    }

    fn cut(&self, i: usize) {
        self.backends.lock().unwrap()[i].1.send_replace(true);
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn bind_retrying(addr: SocketAddr) -> tokio::net::TcpListener {
    let bind = || async move { tokio::net::TcpListener::bind(addr).await.ok() };
    match drbridge_localenv::within(Duration::from_secs(5), bind).await {
        Some(l) => l,
        None => {
            let e = tokio::net::TcpListener::bind(addr).await.err();
            panic!("binding {addr}, tried for 5 s: {e:?}")
        }
    }
}

fn rustls_provider() -> Result<(), Arc<drbridge_tls::rustls::crypto::CryptoProvider>> {
    drbridge_tls::rustls::crypto::ring::default_provider().install_default()
}
