//! Starting, tracking and stopping a set of local clusters.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ServiceAccount;
use serde::{Deserialize, Serialize};
use tempfile::TempDir;
use tracing::{debug, info};

use crate::certs::{ClusterPki, kubeconfig, write_private};
use crate::ports::{check_port_free, free_port};
use crate::process::{Lifetime, Process, pid_alive, stop_pid};
use crate::supervise::{Restarts, until_ready};
use crate::{Error, Progress, releases};

/// The binaries a cluster runs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Toolchain {
    pub etcd: PathBuf,
    pub kube_apiserver: PathBuf,
    pub kube_controller_manager: PathBuf,
    pub kube_scheduler: PathBuf,
    pub kubectl: PathBuf,
}

/// Builds (first time) or finds (afterwards) the pinned binaries.
pub fn ensure_toolchain(
    cache: &Path,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<Toolchain, Error> {
    // Independent module graphs, built side by side: on two cores one's
    // downloads and single-threaded links overlap the other's compiles.
    let (etcd, k8s) = std::thread::scope(|s| {
        let etcd = s.spawn(|| releases::etcd().ensure(cache, progress));
        let k8s = releases::kubernetes().ensure(cache, progress);
        (etcd.join().expect("etcd build thread"), k8s)
    });
    let (etcd, k8s) = (etcd?, k8s?);
    Ok(Toolchain {
        etcd: etcd.join("etcd"),
        kube_apiserver: k8s.join("kube-apiserver"),
        kube_controller_manager: k8s.join("kube-controller-manager"),
        kube_scheduler: k8s.join("kube-scheduler"),
        kubectl: k8s.join("kubectl"),
    })
}

/// Builds (first time) or finds (afterwards) the pinned helm, which the charts'
/// lint, render and install tests use. Not part of [`Toolchain`]: clusters do
/// not need it, so starting them does not wait for its build.
pub fn ensure_helm(cache: &Path, progress: &dyn Fn(Progress)) -> Result<PathBuf, Error> {
    Ok(releases::helm().ensure(cache, progress)?.join("helm"))
}

/// Builds (first time) or finds (afterwards) the pinned promtool, which checks and
/// unit-tests the charts' alerting rules.
pub fn ensure_promtool(cache: &Path, progress: &dyn Fn(Progress)) -> Result<PathBuf, Error> {
    Ok(releases::promtool()
        .ensure(cache, progress)?
        .join("promtool"))
}

/// What to start. Made with [`EnvOptions::new`], then fields changed: new
/// options keep their defaults for existing callers.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct EnvOptions {
    /// Directory for data, logs, PKI, kubeconfigs and the state file.
    pub dir: PathBuf,
    pub clusters: Vec<String>,
    pub lifetime: Lifetime,
    /// How long to wait for every API server to answer ready.
    pub ready_timeout: Duration,
    /// Clusters that run pods (Ramen's managed clusters, with KWOK nodes):
    /// each also runs a kube-scheduler, and its kube-controller-manager also
    /// runs [`WORKLOAD_CONTROLLERS`]. Every name must be in `clusters`.
    /// Empty by default: other clusters run no scheduler.
    pub workload_clusters: Vec<String>,
    /// How components (and programs started with [`Env::spawn_until_ready`])
    /// that exit during start-up are restarted.
    pub restarts: Restarts,
}

impl EnvOptions {
    /// Attached clusters in `dir`, [`READY_TIMEOUT`] to get ready, no
    /// workload clusters.
    pub fn new(dir: impl Into<PathBuf>, clusters: &[&str]) -> EnvOptions {
        EnvOptions {
            dir: dir.into(),
            clusters: clusters.iter().map(|c| c.to_string()).collect(),
            lifetime: Lifetime::Attached,
            ready_timeout: READY_TIMEOUT,
            workload_clusters: Vec::new(),
            restarts: Restarts::default(),
        }
    }
}

/// How long clusters get to start by default (and in tests). The stress
/// check on a loaded 2-core machine, three environments of three clusters
/// starting at once, measured 13 s at most: the rest is margin for a machine
/// that is also compiling.
pub const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// The kube-controller-manager controllers of every cluster: what drbridge
/// and Ramen rely on: namespace deletion, the garbage collector (owner
/// references), PV binding and protection, and service accounts with tokens
/// (the charts' RBAC is tested with them). Attach-detach stays off: nothing
/// attaches volumes here, and VolumeAttachments would block PV deletion.
pub const CONTROLLERS: &[&str] = &[
    "namespace-controller",
    "garbage-collector-controller",
    "persistentvolume-binder-controller",
    "persistentvolume-protection-controller",
    "persistentvolumeclaim-protection-controller",
    "persistentvolume-expander-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
    "clusterrole-aggregation-controller",
];

/// What a workload cluster ([`EnvOptions::workload_clusters`]) runs besides
/// [`CONTROLLERS`], so that Deployments get ReplicaSets and pods.
pub const WORKLOAD_CONTROLLERS: &[&str] = &["deployment-controller", "replicaset-controller"];

/// Loopback ports of one cluster.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ClusterPorts {
    pub apiserver: u16,
    pub etcd_client: u16,
    pub etcd_peer: u16,
}

/// What the state file records of one cluster.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClusterState {
    pub name: String,
    pub server: String,
    pub ports: ClusterPorts,
    pub kubeconfig: PathBuf,
    /// Component name to pid; empty while the cluster is stopped.
    pub pids: BTreeMap<String, u32>,
}

/// A process started beside the clusters (hub, agents, operators).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ExtraProcess {
    pub name: String,
    pub pid: u32,
    pub log: PathBuf,
}

/// The state file, `DIR/state.json`, read by `env status` and `env down`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EnvState {
    pub kubernetes_version: String,
    pub etcd_version: String,
    pub kubectl: PathBuf,
    pub clusters: Vec<ClusterState>,
    #[serde(default)]
    pub extra: Vec<ExtraProcess>,
}

impl EnvState {
    pub fn path(dir: &Path) -> PathBuf {
        dir.join("state.json")
    }

    pub fn load(dir: &Path) -> Result<EnvState, Error> {
        let path = Self::path(dir);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound {
                    dir: dir.to_path_buf(),
                });
            }
            Err(e) => return Err(Error::io(&path, e)),
        };
        serde_json::from_str(&text).map_err(|source| Error::State { path, source })
    }

    fn save(&self, dir: &Path) -> Result<(), Error> {
        let path = Self::path(dir);
        let text = serde_json::to_string_pretty(self).map_err(|source| Error::State {
            path: path.clone(),
            source,
        })?;
        std::fs::write(&path, text).map_err(|e| Error::io(&path, e))
    }

    /// Every recorded pid with its name.
    pub fn all_pids(&self) -> Vec<(String, u32)> {
        let mut v: Vec<(String, u32)> =
            self.extra.iter().map(|p| (p.name.clone(), p.pid)).collect();
        for c in &self.clusters {
            // Scheduler and controller-manager before API server before etcd.
            for comp in [
                "kube-scheduler",
                "kube-controller-manager",
                "kube-apiserver",
                "etcd",
            ] {
                if let Some(pid) = c.pids.get(comp) {
                    v.push((format!("{}/{comp}", c.name), *pid));
                }
            }
        }
        v
    }

    /// Stops every process it names (extras first) and forgets them.
    pub fn stop_all(&mut self) {
        for (_, pid) in self.all_pids() {
            stop_pid(pid, Duration::from_secs(10));
        }
        self.extra.clear();
        for c in &mut self.clusters {
            c.pids.clear();
        }
    }
}

struct LocalCluster {
    name: String,
    dir: PathBuf,
    ports: ClusterPorts,
    pki: ClusterPki,
    kubeconfig: PathBuf,
    /// Runs a scheduler and [`WORKLOAD_CONTROLLERS`].
    workloads: bool,
    processes: Vec<Process>,
}

/// A running set of local clusters. Attached environments stop when dropped.
#[derive(Debug)]
pub struct Env {
    dir: PathBuf,
    _tmp: Option<TempDir>,
    toolchain: Toolchain,
    lifetime: Lifetime,
    restarts: Restarts,
    clusters: Vec<LocalCluster>,
    extra: Vec<Process>,
    /// Programs stopped by [`Env::suspend_process`], kept to be started again the same way.
    suspended: Vec<Process>,
}

/// The order a cluster's components start in: each phase starts when the one
/// before is ready, so no component spends its own start-up timeout waiting
/// for another (the controller-manager gives the API server only 10 s).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Etcd,
    ApiServer,
    Controllers,
}

impl Phase {
    /// The phase of a cluster component, by its name.
    fn of(component: &str) -> Phase {
        match component {
            "etcd" => Phase::Etcd,
            "kube-apiserver" => Phase::ApiServer,
            _ => Phase::Controllers,
        }
    }
}

/// One program of a cluster.
struct Component {
    name: &'static str,
    program: PathBuf,
    args: Vec<String>,
}

/// How a component shows it is up.
enum Probe {
    /// etcd's `/health` on its client port.
    EtcdHealth(u16),
    /// The API server's `/readyz`.
    ApiReadyz(kube::Client),
    /// The controller-manager's service-account controller made the
    /// `default` ServiceAccount: it got past its API-server wait and runs
    /// controllers (tests that create pods need that account anyway).
    DefaultServiceAccount(kube::Client),
    /// No probe without opening a serving port: up once it has run this
    /// long. Used for the scheduler, which starts after the API server is
    /// ready, retries the API itself, and exits early only on bad flags.
    Running(Duration),
}

impl Probe {
    async fn ready(&self, uptime: Duration) -> bool {
        match self {
            Probe::EtcdHealth(port) => etcd_healthy(*port).await,
            Probe::ApiReadyz(client) => {
                let req = http::Request::get("/readyz")
                    .body(Vec::new())
                    .expect("static request");
                match client.request_text(req).await {
                    Ok(body) => body.trim() == "ok",
                    Err(e) => {
                        debug!(error = %e, "API server not ready");
                        false
                    }
                }
            }
            Probe::DefaultServiceAccount(client) => {
                let sas: kube::Api<ServiceAccount> =
                    kube::Api::namespaced(client.clone(), "default");
                matches!(sas.get_opt("default").await, Ok(Some(_)))
            }
            Probe::Running(settle) => uptime >= *settle,
        }
    }
}

/// etcd answers `{"health":"true",…}` on `/health` once it serves.
async fn etcd_healthy(port: u16) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let probe = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        s.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .await
            .ok()?;
        let mut reply = Vec::new();
        s.read_to_end(&mut reply).await.ok()?;
        Some(String::from_utf8_lossy(&reply).contains(r#""health":"true""#))
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(5), probe).await,
        Ok(Some(true))
    )
}

impl std::fmt::Debug for LocalCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCluster")
            .field("name", &self.name)
            .field("ports", &self.ports)
            .finish()
    }
}

fn validate_name(name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidClusterName(name.into()))
    }
}

impl Env {
    /// Starts clusters for a test in a fresh temporary directory. They stop
    /// when the Env is dropped, also on panic, and when the test process dies.
    pub async fn start_for_test(clusters: &[&str]) -> Result<Env, Error> {
        Self::start_for_test_with(clusters, |_| {}).await
    }

    /// [`Env::start_for_test`] with options changed by `configure`, e.g.
    /// `|o| o.workload_clusters = vec!["dr1".into()]`.
    pub async fn start_for_test_with(
        clusters: &[&str],
        configure: impl FnOnce(&mut EnvOptions),
    ) -> Result<Env, Error> {
        let tmp = tempfile::Builder::new()
            .prefix("drbridge-env-")
            .tempdir()
            .map_err(|e| Error::io(&std::env::temp_dir(), e))?;
        let mut opts = EnvOptions::new(tmp.path(), clusters);
        configure(&mut opts);
        let mut env = Env::start(opts, &|p| debug!(?p, "toolchain")).await?;
        env._tmp = Some(tmp);
        Ok(env)
    }

    /// Starts the clusters of `opts` and waits until every API server is ready.
    pub async fn start(
        opts: EnvOptions,
        progress: &(dyn Fn(Progress) + Sync),
    ) -> Result<Env, Error> {
        for c in &opts.clusters {
            validate_name(c)?;
        }
        if let Some(w) = opts
            .workload_clusters
            .iter()
            .find(|w| !opts.clusters.contains(w))
        {
            return Err(Error::UnknownCluster(w.clone()));
        }
        match EnvState::load(&opts.dir) {
            Ok(state) => {
                return Err(if state.all_pids().iter().any(|(_, p)| pid_alive(*p)) {
                    Error::AlreadyRunning {
                        dir: opts.dir.clone(),
                    }
                } else {
                    Error::Stale {
                        dir: opts.dir.clone(),
                    }
                });
            }
            Err(Error::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        std::fs::create_dir_all(&opts.dir).map_err(|e| Error::io(&opts.dir, e))?;
        let cache = crate::cache_dir();
        let toolchain = tokio::task::block_in_place(|| ensure_toolchain(&cache, progress))?;

        let mut env = Env {
            dir: opts.dir.clone(),
            _tmp: None,
            toolchain,
            lifetime: opts.lifetime,
            restarts: opts.restarts,
            clusters: Vec::new(),
            extra: Vec::new(),
            suspended: Vec::new(),
        };
        for name in &opts.clusters {
            let dir = env.dir.join(name);
            let pki = ClusterPki::ensure(&dir.join("pki"))?;
            let ports = ClusterPorts {
                apiserver: free_port()?,
                etcd_client: free_port()?,
                etcd_peer: free_port()?,
            };
            let kubeconfig = env.dir.join(format!("{name}.kubeconfig"));
            let server = format!("https://127.0.0.1:{}", ports.apiserver);
            write_private(
                &kubeconfig,
                &self::kubeconfig(name, &server, &pki, "admin")?,
            )?;
            for who in ["controller-manager", "scheduler"] {
                write_private(
                    &dir.join(format!("{who}.kubeconfig")),
                    &self::kubeconfig(name, &server, &pki, who)?,
                )?;
            }
            env.clusters.push(LocalCluster {
                name: name.clone(),
                dir,
                ports,
                pki,
                kubeconfig,
                workloads: opts.workload_clusters.contains(name),
                processes: Vec::new(),
            });
        }
        let all: Vec<usize> = (0..env.clusters.len()).collect();
        env.bring_up(&all, Instant::now() + opts.ready_timeout)
            .await?;
        Ok(env)
    }

    /// Starts the components of clusters `which` (ascending indices), phase
    /// by phase, every cluster at once; restarts what exits on the way.
    async fn bring_up(&mut self, which: &[usize], deadline: Instant) -> Result<(), Error> {
        for &i in which {
            let p = self.clusters[i].ports;
            for port in [p.apiserver, p.etcd_client, p.etcd_peer] {
                check_port_free(port)?;
            }
        }
        let started = Instant::now();
        if let Err(e) = self.bring_up_phases(which, deadline).await {
            return Err(self.root_cause(which, e));
        }
        for &i in which {
            let c = &self.clusters[i];
            info!(
                cluster = %c.name,
                apiserver = c.ports.apiserver,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "cluster ready"
            );
        }
        Ok(())
    }

    async fn bring_up_phases(&mut self, which: &[usize], deadline: Instant) -> Result<(), Error> {
        for phase in [Phase::Etcd, Phase::ApiServer, Phase::Controllers] {
            let mut firsts = Vec::new();
            for &i in which {
                let comps = self.clusters[i].components(&self.toolchain);
                let c = &mut self.clusters[i];
                firsts.push(c.processes.len());
                for comp in comps
                    .into_iter()
                    .filter(|comp| Phase::of(comp.name) == phase)
                {
                    let log = c.dir.join("logs").join(format!("{}.log", comp.name));
                    c.processes.push(Process::spawn(
                        comp.name,
                        &comp.program,
                        &comp.args,
                        &log,
                        self.lifetime,
                    )?);
                }
            }
            // Recorded at once, so `env down` finds them even if we die now.
            self.save()?;
            let mut clients = Vec::new();
            for &i in which {
                clients.push(match phase {
                    Phase::Etcd => None,
                    _ => Some(client_for(&self.clusters[i].kubeconfig).await?),
                });
            }
            let restarts = self.restarts;
            let mut waits = Vec::new();
            let chosen = self
                .clusters
                .iter_mut()
                .enumerate()
                .filter(|(i, _)| which.contains(i))
                .map(|(_, c)| c);
            for ((c, first), client) in chosen.zip(firsts).zip(clients) {
                let LocalCluster {
                    name,
                    ports,
                    processes,
                    ..
                } = c;
                for p in processes[first..].iter_mut() {
                    let probe = match (p.name.as_str(), &client) {
                        ("etcd", _) => Probe::EtcdHealth(ports.etcd_client),
                        ("kube-apiserver", Some(k)) => Probe::ApiReadyz(k.clone()),
                        ("kube-controller-manager", Some(k)) => {
                            Probe::DefaultServiceAccount(k.clone())
                        }
                        _ => Probe::Running(Duration::from_secs(1)),
                    };
                    let what = format!("{name}/{}", p.name);
                    waits.push(async move {
                        let probe = &probe;
                        until_ready(&what, p, restarts, deadline, |up| probe.ready(up)).await
                    });
                }
            }
            let result = futures::future::try_join_all(waits).await;
            // Restarts changed pids.
            self.save()?;
            result?;
        }
        Ok(())
    }

    /// When a component never got ready because one it depends on exited
    /// (etcd under the API server), the exited one is the error to report.
    fn root_cause(&mut self, which: &[usize], err: Error) -> Error {
        let Error::Start { what, .. } = &err else {
            return err;
        };
        for &i in which {
            let c = &mut self.clusters[i];
            for p in &mut c.processes {
                let id = format!("{}/{}", c.name, p.name);
                if id != *what && !p.is_running() {
                    return Error::Start {
                        what: id,
                        why: format!(
                            "it exited while {what} started; last log lines:\n{}",
                            p.log_tail(15)
                        ),
                        log: p.log.clone(),
                    };
                }
            }
        }
        err
    }
}

impl LocalCluster {
    /// Every program of this cluster with its arguments, in start order.
    fn components(&self, tc: &Toolchain) -> Vec<Component> {
        let c = self;
        let p = &c.ports;
        let dir = &c.dir;
        let peer = format!("http://127.0.0.1:{}", p.etcd_peer);
        let client = format!("http://127.0.0.1:{}", p.etcd_client);
        let etcd_args = vec![
            format!("--name={}", c.name),
            format!("--data-dir={}", dir.join("etcd").display()),
            format!("--listen-client-urls={client}"),
            format!("--advertise-client-urls={client}"),
            format!("--listen-peer-urls={peer}"),
            format!("--initial-advertise-peer-urls={peer}"),
            format!("--initial-cluster={}={peer}", c.name),
            // Test clusters trade durability for speed; nothing here must
            // survive a power cut.
            "--unsafe-no-fsync=true".into(),
            "--log-level=warn".into(),
        ];
        let pki = &c.pki;
        let s = |p: PathBuf| p.display().to_string();
        let apiserver_args = vec![
            format!("--etcd-servers={client}"),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            format!("--secure-port={}", p.apiserver),
            format!("--tls-cert-file={}", s(pki.serving_cert())),
            format!("--tls-private-key-file={}", s(pki.serving_key())),
            format!("--client-ca-file={}", s(pki.ca_cert())),
            format!("--service-account-issuer=https://{}.drbridge.local", c.name),
            format!("--service-account-key-file={}", s(pki.sa_pub())),
            format!("--service-account-signing-key-file={}", s(pki.sa_key())),
            "--service-cluster-ip-range=10.0.0.0/24".into(),
            "--authorization-mode=RBAC".into(),
            "--allow-privileged=true".into(),
            // A loopback address may not be published as the kubernetes
            // Service's endpoint; nothing in this environment needs it.
            "--endpoint-reconciler-type=none".into(),
            "--enable-priority-and-fairness=false".into(),
            "--profiling=false".into(),
            format!("--cert-dir={}", dir.join("apiserver-certs").display()),
        ];
        let mut controllers = CONTROLLERS.to_vec();
        if c.workloads {
            controllers.extend(WORKLOAD_CONTROLLERS);
        }
        let kcm_args = vec![
            format!(
                "--kubeconfig={}",
                s(dir.join("controller-manager.kubeconfig"))
            ),
            "--secure-port=0".into(),
            "--leader-elect=false".into(),
            format!("--controllers={}", controllers.join(",")),
            format!("--service-account-private-key-file={}", s(pki.sa_key())),
            format!("--root-ca-file={}", s(pki.ca_cert())),
            "--use-service-account-credentials=true".into(),
        ];
        let mut comps = vec![
            Component {
                name: "etcd",
                program: tc.etcd.clone(),
                args: etcd_args,
            },
            Component {
                name: "kube-apiserver",
                program: tc.kube_apiserver.clone(),
                args: apiserver_args,
            },
            Component {
                name: "kube-controller-manager",
                program: tc.kube_controller_manager.clone(),
                args: kcm_args,
            },
        ];
        if c.workloads {
            comps.push(Component {
                name: "kube-scheduler",
                program: tc.kube_scheduler.clone(),
                args: vec![
                    format!("--kubeconfig={}", s(dir.join("scheduler.kubeconfig"))),
                    "--secure-port=0".into(),
                    "--leader-elect=false".into(),
                ],
            });
        }
        comps
    }
}

impl Env {
    fn save(&self) -> Result<(), Error> {
        self.state().save(&self.dir)
    }

    /// What the state file would say now.
    pub fn state(&self) -> EnvState {
        EnvState {
            kubernetes_version: releases::KUBERNETES_VERSION.into(),
            etcd_version: releases::ETCD_VERSION.into(),
            kubectl: self.toolchain.kubectl.clone(),
            clusters: self
                .clusters
                .iter()
                .map(|c| ClusterState {
                    name: c.name.clone(),
                    server: format!("https://127.0.0.1:{}", c.ports.apiserver),
                    ports: c.ports,
                    kubeconfig: c.kubeconfig.clone(),
                    pids: c
                        .processes
                        .iter()
                        .map(|p| (p.name.clone(), p.pid))
                        .collect(),
                })
                .collect(),
            extra: self
                .extra
                .iter()
                .map(|p| ExtraProcess {
                    name: p.name.clone(),
                    pid: p.pid,
                    log: p.log.clone(),
                })
                .collect(),
        }
    }

    /// The environment's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The kubectl of the same release.
    pub fn kubectl(&self) -> &Path {
        &self.toolchain.kubectl
    }

    pub fn cluster_names(&self) -> Vec<String> {
        self.clusters.iter().map(|c| c.name.clone()).collect()
    }

    fn find(&self, name: &str) -> Result<usize, Error> {
        self.clusters
            .iter()
            .position(|c| c.name == name)
            .ok_or_else(|| Error::UnknownCluster(name.into()))
    }

    /// The admin kubeconfig of a cluster.
    pub fn kubeconfig(&self, cluster: &str) -> Result<PathBuf, Error> {
        Ok(self.clusters[self.find(cluster)?].kubeconfig.clone())
    }

    /// The API server URL of a cluster.
    pub fn server(&self, cluster: &str) -> Result<String, Error> {
        let c = &self.clusters[self.find(cluster)?];
        Ok(format!("https://127.0.0.1:{}", c.ports.apiserver))
    }

    /// An admin client for a cluster.
    pub async fn client(&self, cluster: &str) -> Result<kube::Client, Error> {
        client_for(&self.kubeconfig(cluster)?).await
    }

    /// Stops a cluster's processes, keeping its data, ports and identity, as
    /// when a data centre goes dark.
    pub fn stop_cluster(&mut self, cluster: &str) -> Result<(), Error> {
        let i = self.find(cluster)?;
        let procs = std::mem::take(&mut self.clusters[i].processes);
        // Scheduler and controller-manager, then API server, then etcd.
        for mut p in procs.into_iter().rev() {
            p.stop(Duration::from_secs(10));
        }
        self.save()
    }

    /// Starts a stopped cluster again with the same data and ports.
    pub async fn start_cluster(&mut self, cluster: &str, timeout: Duration) -> Result<(), Error> {
        let i = self.find(cluster)?;
        if !self.clusters[i].processes.is_empty() {
            return Ok(());
        }
        self.bring_up(&[i], Instant::now() + timeout).await
    }

    /// Starts another program beside the clusters (hub, agent, operator),
    /// tied to the environment's lifetime; its output goes to `DIR/logs/<name>.log`.
    pub fn spawn(
        &mut self,
        name: &str,
        program: &Path,
        args: &[String],
        env: &[(&str, String)],
    ) -> Result<u32, Error> {
        let log = self.dir.join("logs").join(format!("{name}.log"));
        let p = Process::spawn_with_env(name, program, args, env, &log, self.lifetime)?;
        let pid = p.pid;
        self.extra.push(p);
        self.save()?;
        Ok(pid)
    }

    /// Starts a program like [`Env::spawn`] and waits until `ready` answers
    /// true (called every 100 ms with the uptime of the current run), at
    /// most `timeout`. If it exits first it is started again with the
    /// environment's [`Restarts`]; if it keeps exiting, or is not ready in
    /// time, it is stopped and the error quotes its log.
    pub async fn spawn_until_ready<R, Fut>(
        &mut self,
        name: &str,
        program: &Path,
        args: &[String],
        env: &[(&str, String)],
        timeout: Duration,
        ready: R,
    ) -> Result<u32, Error>
    where
        R: FnMut(Duration) -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + timeout;
        self.spawn(name, program, args, env)?;
        let p = self.extra.last_mut().expect("just spawned");
        let result = until_ready(name, p, self.restarts, deadline, ready).await;
        if result.is_err() {
            let mut p = self.extra.pop().expect("just spawned");
            p.stop(Duration::from_secs(10));
        }
        self.save()?;
        result.map(|()| self.extra.last().expect("ready").pid)
    }

    /// Stops a program started with [`Env::spawn`].
    pub fn stop_process(&mut self, name: &str) -> Result<(), Error> {
        if let Some(pos) = self.extra.iter().position(|p| p.name == name) {
            let mut p = self.extra.remove(pos);
            p.stop(Duration::from_secs(10));
        }
        self.save()
    }

    /// Stops a program started with [`Env::spawn`] (a data centre going dark takes its
    /// operators with it) and keeps how it was started, for [`Env::resume_process`].
    pub fn suspend_process(&mut self, name: &str) -> Result<(), Error> {
        if let Some(pos) = self.extra.iter().position(|p| p.name == name) {
            let mut p = self.extra.remove(pos);
            p.stop(Duration::from_secs(10));
            self.suspended.push(p);
        }
        self.save()
    }

    /// Kills a program started with [`Env::spawn`] (SIGKILL: it gets no chance to shut down)
    /// and keeps how it was started, for [`Env::resume_process`].
    pub fn kill_process(&mut self, name: &str) -> Result<(), Error> {
        if let Some(pos) = self.extra.iter().position(|p| p.name == name) {
            let mut p = self.extra.remove(pos);
            p.kill();
            self.suspended.push(p);
        }
        self.save()
    }

    /// Kills one of a cluster's own processes (`etcd`, `kube-apiserver`, ...) with SIGKILL
    /// and starts it again with the same data and ports, as a supervisor restarting a
    /// crashed control plane does. Returns once it has started, not once it is ready.
    pub fn crash_cluster_process(&mut self, cluster: &str, name: &str) -> Result<u32, Error> {
        let i = self.find(cluster)?;
        let procs = &mut self.clusters[i].processes;
        let pos =
            procs
                .iter()
                .position(|p| p.name == name)
                .ok_or_else(|| Error::NoSuchProcess {
                    cluster: cluster.to_string(),
                    name: name.to_string(),
                })?;
        procs[pos].kill();
        let again = procs[pos].respawn()?;
        let pid = again.pid;
        procs[pos] = again;
        self.save()?;
        Ok(pid)
    }

    /// Starts a suspended program again with the same program, arguments,
    /// environment and log (appended to). Returns its new pid.
    pub fn resume_process(&mut self, name: &str) -> Result<u32, Error> {
        let pos = self
            .suspended
            .iter()
            .position(|p| p.name == name)
            .ok_or_else(|| Error::NotSuspended {
                name: name.to_string(),
            })?;
        let p = self.suspended[pos].respawn()?;
        self.suspended.remove(pos);
        let pid = p.pid;
        self.extra.push(p);
        self.save()?;
        Ok(pid)
    }

    /// The programs started with [`Env::spawn`] that run now, by name.
    pub fn process_names(&self) -> Vec<String> {
        self.extra.iter().map(|p| p.name.clone()).collect()
    }

    /// The programs [`Env::suspend_process`] stopped, by name.
    pub fn suspended_names(&self) -> Vec<String> {
        self.suspended.iter().map(|p| p.name.clone()).collect()
    }

    /// Whether a program started with [`Env::spawn`] still runs.
    pub fn process_running(&mut self, name: &str) -> bool {
        self.extra
            .iter_mut()
            .find(|p| p.name == name)
            .is_some_and(|p| p.is_running())
    }

    /// The log file of a program started with [`Env::spawn`].
    pub fn log_path(&self, name: &str) -> PathBuf {
        self.dir.join("logs").join(format!("{name}.log"))
    }

    /// Leaves everything running (for `drbridge env up`) and returns the state.
    pub fn detach(mut self) -> EnvState {
        let state = self.state();
        for c in &mut self.clusters {
            for p in std::mem::take(&mut c.processes) {
                p.release();
            }
        }
        for p in std::mem::take(&mut self.extra) {
            p.release();
        }
        state
    }

    /// Stops the environment described by `DIR/state.json` and removes DIR.
    pub fn down(dir: &Path) -> Result<EnvState, Error> {
        let state = EnvState::load(dir)?;
        state.clone().stop_all();
        std::fs::remove_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        Ok(state)
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // Every cluster at once, but in reverse start order: an API server
        // whose etcd is already gone waits out the whole grace period and is
        // killed, one whose etcd still runs stops in about a second.
        stop_together(std::mem::take(&mut self.extra));
        for phase in [Phase::Controllers, Phase::ApiServer, Phase::Etcd] {
            let mut group = Vec::new();
            for c in &mut self.clusters {
                let (now, later) = std::mem::take(&mut c.processes)
                    .into_iter()
                    .partition(|p| Phase::of(&p.name) == phase);
                group.extend(now);
                c.processes = later;
            }
            stop_together(group);
        }
    }
}

/// Asks every process to stop at once (closing their guard pipes), then
/// waits for them against one shared grace period, killing stragglers.
fn stop_together(mut procs: Vec<Process>) {
    for p in &mut procs {
        p.close();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    for mut p in procs {
        p.stop(deadline.saturating_duration_since(Instant::now()));
    }
}

/// An admin client from a kubeconfig file.
pub async fn client_for(kubeconfig: &Path) -> Result<kube::Client, Error> {
    let mut cfg = drbridge_runtime::kube_config(Some(kubeconfig), None).await?;
    // Local control planes answer at once or not at all.
    cfg.connect_timeout = Some(Duration::from_secs(5));
    Ok(kube::Client::try_from(cfg)?)
}
