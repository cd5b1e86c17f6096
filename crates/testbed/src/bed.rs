//! Starting the test bed: every process and object Ramen's e2e needs, in the
//! order their dependencies demand (a kind an operator watches exists before
//! it starts; Velero's namespace before its credentials; agents before the
//! DRClusters that Ramen validates through them).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use drbridge_localenv::bridge::{apply_crds, prepare_hub};
use drbridge_localenv::ports::free_port;
use drbridge_localenv::process::log_tail;
use drbridge_localenv::{Env, EnvOptions, Lifetime, Progress};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};
use tracing::info;

use crate::Error;
use crate::build::{self, Programs};
use crate::drbridge::{self, Drbridge};
use crate::manifests::{self, names::*};
use crate::source::Source;

const MANAGER: &str = "drbridge-testbed";
/// The hub is `hub`; Ramen's e2e calls the managed clusters c1 and c2.
pub const HUB: &str = "hub";
pub const MANAGED: [&str; 2] = ["dr1", "dr2"];
/// versitygw's root user; the S3 profiles' Secrets carry the same keys.
const S3_ACCESS_KEY: &str = "drbridge-testbed";
const S3_SECRET_KEY: &str = "drbridge-testbed-secret";

/// drbridge's own programs, which the bed runs as processes.
#[derive(Clone, Debug)]
pub struct Tools {
    /// The `drbridge` CLI: S3 profiles, DRClusters and the DRPolicy are made
    /// with `drbridge dr`, as a user would.
    pub drbridge: PathBuf,
    pub hub: PathBuf,
    pub agent: PathBuf,
    /// `drbridge-storage-simulator`: provisions PVs and drives
    /// VolumeReplication for the simulated storage.
    pub storage_simulator: PathBuf,
}

impl Tools {
    /// The four binaries side by side in `dir` (a cargo target dir).
    pub fn in_dir(dir: &Path) -> Tools {
        Tools {
            drbridge: dir.join("drbridge"),
            hub: dir.join("drbridge-hub"),
            agent: dir.join("drbridge-agent"),
            storage_simulator: dir.join("drbridge-storage-simulator"),
        }
    }

    /// The four binaries for a test of this workspace: those in `DRBRIDGE_TOOLS_DIR` when set
    /// (CI's `cargo test --workspace` built them; building them again with the binaries' own
    /// feature set would recompile a dozen crates and overwrite them), else built by `cargo`
    /// (the test's `env!("CARGO")`) from the workspace at `root` into `dir`, the target
    /// directory's profile folder.
    pub fn for_test(cargo: &Path, root: &Path, dir: &Path) -> Result<Tools, Error> {
        if let Some(dir) = std::env::var_os("DRBRIDGE_TOOLS_DIR") {
            return Ok(Tools::in_dir(Path::new(&dir)));
        }
        let packages = [
            "drbridge-cli",
            "drbridge-hub",
            "drbridge-agent",
            "drbridge-storage-simulator",
        ];
        let status = std::process::Command::new(cargo)
            .current_dir(root)
            .args(["build", "--quiet"])
            .args(packages.iter().flat_map(|p| ["-p", p]))
            .status();
        match status {
            Ok(s) if s.success() => Ok(Tools::in_dir(dir)),
            other => Err(Error::Start {
                what: "drbridge's binaries".into(),
                why: format!(
                    "`cargo build -p {}` failed: {other:?}",
                    packages.join(" -p ")
                ),
                log: None,
            }),
        }
    }

    fn check(&self) -> Result<(), Error> {
        for b in [
            &self.drbridge,
            &self.hub,
            &self.agent,
            &self.storage_simulator,
        ] {
            if !b.exists() {
                return Err(Error::Start {
                    what: "the test bed".into(),
                    why: format!(
                        "{} not found; build it with `cargo build -p drbridge-cli -p drbridge-hub \
                         -p drbridge-agent -p drbridge-storage-simulator`",
                        b.display()
                    ),
                    log: None,
                });
            }
        }
        Ok(())
    }
}

/// What to start.
#[derive(Clone, Debug)]
pub struct TestbedOptions {
    /// The environment's directory (data, logs, kubeconfigs, state).
    pub dir: PathBuf,
    pub lifetime: Lifetime,
    pub ramen_source: Source,
    pub tools: Tools,
    /// Longest wait for any one step (a process ready, a DRCluster validated).
    pub timeout: Duration,
    /// drbridge-hub replicas: more than one elect a leader, as the chart's do, behind a front
    /// in this process ([`drbridge::Options::replicas`]), so only with [`Lifetime::Attached`].
    pub hub_replicas: usize,
}

/// A running test bed. With [`Lifetime::Attached`] it stops when dropped.
#[derive(Debug)]
pub struct Testbed {
    pub env: Env,
    pub programs: Programs,
    /// versitygw's endpoint, `http://127.0.0.1:PORT`.
    pub s3_endpoint: String,
    /// How long each step of [`Testbed::start`] took.
    pub timings: Vec<(String, Duration)>,
    pub drbridge: Option<Drbridge>,
}

/// Records the wall time of each step.
struct Clock {
    last: Instant,
    steps: Vec<(String, Duration)>,
}

impl Clock {
    fn new() -> Clock {
        Clock {
            last: Instant::now(),
            steps: Vec::new(),
        }
    }

    fn lap(&mut self, what: &str) {
        let d = self.last.elapsed();
        info!(step = what, secs = d.as_secs_f64(), "test bed step done");
        self.steps.push((what.to_string(), d));
        self.last = Instant::now();
    }
}

impl Testbed {
    /// Builds what is missing, then starts everything and waits until the
    /// DRPolicy is validated. On error the processes started so far stop
    /// with the [`Env`] (attached) or stay for inspection (detached).
    pub async fn start(
        opts: TestbedOptions,
        progress: &(dyn Fn(Progress) + Sync),
    ) -> Result<Testbed, Error> {
        let state_file = drbridge_localenv::EnvState::path(&opts.dir);
        let preexisting = state_file.exists();
        let detached = opts.lifetime == Lifetime::Detached;
        let dir = opts.dir.clone();
        let started = Self::start_in(opts, progress).await;
        // Detached programs outlive their handles by design; those of a start that failed
        // must not. An environment that was there before is not this start's to stop.
        if started.is_err()
            && detached
            && !preexisting
            && let Ok(mut state) = drbridge_localenv::EnvState::load(&dir)
        {
            state.stop_all();
            let _ = std::fs::remove_file(&state_file);
        }
        started
    }

    async fn start_in(
        opts: TestbedOptions,
        progress: &(dyn Fn(Progress) + Sync),
    ) -> Result<Testbed, Error> {
        opts.tools.check()?;
        if opts.hub_replicas > 1 && opts.lifetime != Lifetime::Attached {
            return Err(Error::Start {
                what: "the test bed".into(),
                why: "hub replicas sit behind a front in this process: they need an attached \
                      lifetime"
                    .into(),
                log: None,
            });
        }
        let mut clock = Clock::new();
        let cache = drbridge_localenv::cache_dir();
        let programs =
            tokio::task::block_in_place(|| build::ensure(&opts.ramen_source, &cache, progress))?;
        clock.lap("builds");

        let mut env_opts = EnvOptions::new(&opts.dir, &[HUB, MANAGED[0], MANAGED[1]]);
        env_opts.lifetime = opts.lifetime;
        env_opts.ready_timeout = opts.timeout;
        // Pods run on the managed clusters: scheduler, deployment and
        // replicaset controllers.
        env_opts.workload_clusters = MANAGED.iter().map(|s| s.to_string()).collect();
        let env = Env::start(env_opts, progress).await?;
        clock.lap("clusters");

        let mut bed = Testbed {
            env,
            programs,
            s3_endpoint: String::new(),
            timings: Vec::new(),
            drbridge: None,
        };
        bed.start_s3(opts.timeout).await?;
        clock.lap("s3");
        bed.prepare_hub().await?;
        let mut extra_crds = manifests::velero_crds(&bed.programs.velero)?;
        let snapshotter = build::go_module_dir(
            &bed.programs.ramen_tree,
            &["list", "-m", "-json", manifests::SNAPSHOTTER_MODULE],
        )?;
        extra_crds.extend(manifests::read_crds(
            &snapshotter,
            manifests::SNAPSHOTTER_CRDS,
        )?);
        extra_crds.extend(drbridge_storage_simulator::crds::crds());
        for m in MANAGED {
            bed.prepare_managed(m, &extra_crds).await?;
        }
        clock.lap("crds and namespaces");
        for m in MANAGED {
            bed.start_kwok(m, opts.timeout).await?;
        }
        clock.lap("kwok nodes");
        for m in MANAGED {
            let args = bed.s3_profile_args(m)?;
            bed.dr(&opts.tools, &args).await?;
        }
        clock.lap("s3 profiles");
        // drbridge first: it installs the OCM CRDs and ManagedClusters that
        // Ramen's hub operator watches, and the ClusterClaim CRD the
        // dr-cluster operator does.
        bed.drbridge = Some(
            drbridge::start(
                &mut bed.env,
                &opts.tools.hub,
                &opts.tools.agent,
                opts.timeout,
                &drbridge::Options {
                    replicas: opts.hub_replicas,
                    ..Default::default()
                },
            )
            .await?,
        );
        clock.lap("drbridge");
        for m in MANAGED {
            bed.start_velero(m)?;
            bed.start_storage_simulator(m, &opts.tools)?;
            bed.start_ramen(m, "dr-cluster")?;
        }
        bed.start_ramen(HUB, "dr-hub")?;
        clock.lap("operators");
        for m in MANAGED {
            let args = strings(&["cluster", "add", m, "--s3-profile", &s3_profile(m)]);
            bed.dr(&opts.tools, &args).await?;
        }
        let clusters = MANAGED.join(",");
        let args = strings(&[
            "policy",
            "create",
            DR_POLICY,
            "--clusters",
            &clusters,
            "--scheduling-interval",
            SCHEDULING_INTERVAL,
        ]);
        bed.dr(&opts.tools, &args).await?;
        bed.wait_validated(opts.timeout).await?;
        clock.lap("DRClusters and DRPolicy validated");
        bed.timings = clock.steps;
        Ok(bed)
    }

    pub fn kubeconfig(&self, cluster: &str) -> Result<PathBuf, Error> {
        Ok(self.env.kubeconfig(cluster)?)
    }

    /// A managed cluster's data centre goes dark: its operators, simulator, Velero, KWOK
    /// and drbridge agent stop, then its control plane. Its data stays, as a real outage
    /// leaves the disks; nothing is deleted or drained.
    pub fn lose_cluster(&mut self, cluster: &str) -> Result<(), Error> {
        let suffix = format!("-{cluster}");
        for name in self.env.process_names() {
            if name.ends_with(&suffix) {
                self.env.suspend_process(&name)?;
            }
        }
        Ok(self.env.stop_cluster(cluster)?)
    }

    /// The lost cluster comes back: its control plane with the same data and ports, then
    /// every program [`Testbed::lose_cluster`] stopped, started the same way. Returns when
    /// its ManagedCluster is Available on the hub again.
    pub async fn heal_cluster(&mut self, cluster: &str, timeout: Duration) -> Result<(), Error> {
        self.env.start_cluster(cluster, timeout).await?;
        let suffix = format!("-{cluster}");
        for name in self.env.suspended_names() {
            if name.ends_with(&suffix) {
                self.env.resume_process(&name)?;
            }
        }
        let hubs: Vec<String> = match &self.drbridge {
            Some(d) => d.replicas.iter().map(|r| r.name.clone()).collect(),
            None => vec![drbridge::HUB_PROCESS.to_string()],
        };
        let hubs: Vec<&str> = hubs.iter().map(String::as_str).collect();
        drbridge::wait_available(&mut self.env, HUB, &hubs, cluster, timeout).await
    }

    async fn client(&self, cluster: &str) -> Result<kube::Client, Error> {
        Ok(self.env.client(cluster).await?)
    }

    /// One versitygw (posix backend, metadata in a sidecar directory so the
    /// filesystem needs no xattrs) with a bucket per managed cluster. A bucket
    /// of the posix backend is a directory; Ramen only checks it exists.
    async fn start_s3(&mut self, timeout: Duration) -> Result<(), Error> {
        let root = self.env.dir().join("s3").join("data");
        let sidecar = self.env.dir().join("s3").join("meta");
        for m in MANAGED {
            let b = root.join(s3_bucket(m));
            std::fs::create_dir_all(&b).map_err(|e| Error::io(&b, e))?;
        }
        std::fs::create_dir_all(&sidecar).map_err(|e| Error::io(&sidecar, e))?;
        let port = free_port()?;
        let args = vec![
            "--access".into(),
            S3_ACCESS_KEY.into(),
            "--secret".into(),
            S3_SECRET_KEY.into(),
            "--region".into(),
            S3_REGION.into(),
            "--port".into(),
            format!("127.0.0.1:{port}"),
            "posix".into(),
            "--sidecar".into(),
            sidecar.display().to_string(),
            root.display().to_string(),
        ];
        let bin = self.programs.versitygw.clone();
        self.env.spawn("versitygw", &bin, &args, &[])?;
        self.wait_port("versitygw", port, timeout).await?;
        self.s3_endpoint = format!("http://127.0.0.1:{port}");
        Ok(())
    }

    async fn wait_port(&mut self, name: &str, port: u16, timeout: Duration) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Ok(());
            }
            self.check_running(name)?;
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: format!("{name} to listen on 127.0.0.1:{port}"),
                    secs: timeout.as_secs(),
                    detail: log_tail(&self.env.log_path(name), 10),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn check_running(&mut self, name: &str) -> Result<(), Error> {
        if self.env.process_running(name) {
            return Ok(());
        }
        let log = self.env.log_path(name);
        Err(Error::Start {
            what: name.into(),
            why: format!("it exited; last log lines:\n{}", log_tail(&log, 20)),
            log: Some(log),
        })
    }

    /// Hub: drbridge's OCM CRDs and ManagedClusters, Ramen's hub CRDs, the
    /// `default` ManagedClusterSet, Ramen's namespace and configuration.
    async fn prepare_hub(&mut self) -> Result<(), Error> {
        let hub = self.client(HUB).await?;
        // drbridge's OCM CRDs (ManagedClusterSet among them) and the
        // ManagedClusters; start_drbridge applies them again, harmlessly.
        let managed: Vec<String> = MANAGED.iter().map(|s| s.to_string()).collect();
        prepare_hub(&hub, &managed).await?;
        let crds = manifests::read_crds(&self.programs.ramen_tree, manifests::RAMEN_HUB_CRDS)?;
        apply_crds(&hub, &crds).await?;
        apply(&hub, &manifests::managed_cluster_set()).await?;
        apply(&hub, &manifests::namespace(RAMEN_NAMESPACE)).await?;
        let cfg = manifests::ramen_config("dr-hub", free_port()?);
        apply(&hub, &manifests::configmap(HUB_CONFIGMAP, cfg)).await?;
        Ok(())
    }

    /// A managed cluster: every CRD the dr-cluster operator and Velero need
    /// (Ramen's, the third-party ones of `extra_crds`),
    /// namespaces, Ramen's configuration, the simulated storage's classes.
    async fn prepare_managed(
        &mut self,
        cluster: &str,
        extra_crds: &[CustomResourceDefinition],
    ) -> Result<(), Error> {
        let c = self.client(cluster).await?;
        let mut crds =
            manifests::read_crds(&self.programs.ramen_tree, manifests::RAMEN_DR_CLUSTER_CRDS)?;
        crds.extend(extra_crds.iter().cloned());
        apply_crds(&c, &crds).await?;
        for ns in [RAMEN_NAMESPACE, VELERO_NAMESPACE, RAMEN_OPS_NAMESPACE] {
            apply(&c, &manifests::namespace(ns)).await?;
        }
        let cfg = manifests::ramen_config("dr-cluster", free_port()?);
        apply(&c, &manifests::configmap(DR_CLUSTER_CONFIGMAP, cfg)).await?;
        apply(&c, &manifests::velero_deployment()).await?;
        apply(&c, &manifests::storage_class(cluster)).await?;
        apply(&c, &manifests::volume_replication_class(cluster)).await?;
        Ok(())
    }

    /// A KWOK node and its controller. The API server's TaintNodesByCondition
    /// admission gives a new node `not-ready:NoSchedule`, which only the node
    /// lifecycle controller (not run here) would lift: remove it once KWOK has
    /// made the node Ready.
    async fn start_kwok(&mut self, cluster: &str, timeout: Duration) -> Result<(), Error> {
        let c = self.client(cluster).await?;
        apply(&c, &manifests::kwok_node()).await?;
        let name = format!("kwok-{cluster}");
        let args = vec![
            format!("--kubeconfig={}", self.kubeconfig(cluster)?.display()),
            format!("--config={}", self.programs.kwok_stages.display()),
            format!("--manage-single-node={KWOK_NODE}"),
            format!("--server-address=127.0.0.1:{}", free_port()?),
            "--node-ip=127.0.0.1".into(),
        ];
        let bin = self.programs.kwok.clone();
        self.env.spawn(&name, &bin, &args, &[])?;
        let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(c);
        let deadline = Instant::now() + timeout;
        loop {
            let node = nodes.get(KWOK_NODE).await?;
            let ready = node
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            let tainted = node
                .spec
                .as_ref()
                .and_then(|s| s.taints.as_ref())
                .is_some_and(|t| !t.is_empty());
            if ready && !tainted {
                return Ok(());
            }
            if ready && tainted {
                let patch = json!({"spec": {"taints": null}});
                nodes
                    .patch(KWOK_NODE, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
                continue;
            }
            self.check_running(&name)?;
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: format!("KWOK node {KWOK_NODE} on {cluster} to become Ready"),
                    secs: timeout.as_secs(),
                    detail: log_tail(&self.env.log_path(&name), 10),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Velero's server, out of cluster. Started by absolute path (its internal
    /// plugins re-execute argv[0]) with its own TMPDIR (it writes credentials
    /// there).
    fn start_velero(&mut self, cluster: &str) -> Result<(), Error> {
        let tmp = self.env.dir().join(cluster).join("velero-tmp");
        std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let args = vec![
            "server".into(),
            format!("--kubeconfig={}", self.kubeconfig(cluster)?.display()),
            format!("--namespace={VELERO_NAMESPACE}"),
            format!("--plugin-dir={}", self.programs.velero_plugin_dir.display()),
            format!("--metrics-address=127.0.0.1:{}", free_port()?),
            "--profiler-address=".into(),
        ];
        let bin = std::path::absolute(&self.programs.velero)
            .map_err(|e| Error::io(&self.programs.velero, e))?;
        self.env.spawn(
            &format!("velero-{cluster}"),
            &bin,
            &args,
            &[("TMPDIR", tmp.display().to_string())],
        )?;
        Ok(())
    }

    fn start_storage_simulator(&mut self, cluster: &str, tools: &Tools) -> Result<(), Error> {
        let args = vec![
            format!("--kubeconfig={}", self.kubeconfig(cluster)?.display()),
            format!("--provisioner={PROVISIONER}"),
        ];
        self.env.spawn(
            &format!("storage-simulator-{cluster}"),
            &tools.storage_simulator,
            &args,
            &[],
        )?;
        Ok(())
    }

    fn start_ramen(&mut self, cluster: &str, controller_type: &str) -> Result<(), Error> {
        let name = if controller_type == "dr-hub" {
            "ramen-hub-operator".to_string()
        } else {
            format!("ramen-dr-cluster-operator-{cluster}")
        };
        let env = [
            (
                "KUBECONFIG",
                self.kubeconfig(cluster)?.display().to_string(),
            ),
            ("RAMEN_CONTROLLER_TYPE", controller_type.to_string()),
            ("POD_NAMESPACE", RAMEN_NAMESPACE.to_string()),
        ];
        let bin = self.programs.ramen_manager.clone();
        self.env.spawn(&name, &bin, &[], &env)?;
        Ok(())
    }

    /// `drbridge dr s3-profile add` for the bucket of `cluster`, written to the
    /// hub and to every managed cluster (both need every profile: a VRG
    /// uploads to the S3 stores of both peers).
    fn s3_profile_args(&self, cluster: &str) -> Result<Vec<String>, Error> {
        let mut v = strings(&[
            "s3-profile",
            "add",
            &s3_profile(cluster),
            "--bucket",
            &s3_bucket(cluster),
            "--endpoint",
            &self.s3_endpoint,
            "--region",
            S3_REGION,
        ]);
        for m in MANAGED {
            v.push("--managed-kubeconfig".into());
            v.push(format!("{m}={}", self.kubeconfig(m)?.display()));
        }
        Ok(v)
    }

    /// Runs `drbridge dr --kubeconfig HUB ARGS`.
    async fn dr(&self, tools: &Tools, args: &[String]) -> Result<String, Error> {
        let hub = self.kubeconfig(HUB)?;
        let out = tokio::process::Command::new(&tools.drbridge)
            .arg("dr")
            .arg("--kubeconfig")
            .arg(&hub)
            .args(args)
            .env("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY)
            .output()
            .await
            .map_err(|e| Error::io(&tools.drbridge, e))?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            return Err(Error::Command {
                command: format!("drbridge dr {}", args.join(" ")),
                output: format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)),
            });
        }
        info!(args = ?args, %stdout, "drbridge dr");
        Ok(stdout)
    }

    /// DRClusters validated and Available, the DRPolicy validated with peer
    /// classes (Ramen found matching storage on both sides).
    async fn wait_validated(&mut self, timeout: Duration) -> Result<(), Error> {
        let hub = self.client(HUB).await?;
        let drc = dynamic(
            &hub,
            "ramendr.openshift.io",
            "v1alpha1",
            "DRCluster",
            "drclusters",
        );
        let drp = dynamic(
            &hub,
            "ramendr.openshift.io",
            "v1alpha1",
            "DRPolicy",
            "drpolicies",
        );
        let deadline = Instant::now() + timeout;
        loop {
            let mut waiting = Vec::new();
            for m in MANAGED {
                let st = drc.get_opt(m).await?.map(|o| o.data["status"].clone());
                let st = st.unwrap_or(Value::Null);
                if !(st["phase"] == "Available" && condition_true(&st, "Validated")) {
                    waiting.push(format!("DRCluster {m}: {}", brief(&st)));
                }
            }
            let st = drp
                .get_opt(DR_POLICY)
                .await?
                .map(|o| o.data["status"].clone())
                .unwrap_or(Value::Null);
            let peer = st["async"]["peerClasses"]
                .as_array()
                .is_some_and(|a| !a.is_empty());
            if !(condition_true(&st, "Validated") && peer) {
                waiting.push(format!("DRPolicy {DR_POLICY}: {}", brief(&st)));
            }
            if waiting.is_empty() {
                return Ok(());
            }
            for p in ["ramen-hub-operator", "drbridge-hub"] {
                self.check_running(p)?;
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: "DRClusters and the DRPolicy to be validated".into(),
                    secs: timeout.as_secs(),
                    detail: format!(
                        "{}; see {}",
                        waiting.join("; "),
                        self.env.log_path("ramen-hub-operator").display()
                    ),
                });
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

use manifests::{s3_bucket, s3_profile};

fn condition_true(status: &Value, type_: &str) -> bool {
    status["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == type_ && c["status"] == "True")
    })
}

/// Phase and conditions in one line, for timeouts.
fn brief(status: &Value) -> String {
    let mut s = String::new();
    if let Some(p) = status["phase"].as_str() {
        s.push_str(&format!("phase {p}"));
    }
    for c in status["conditions"].as_array().into_iter().flatten() {
        s.push_str(&format!(
            " {}={} ({})",
            c["type"].as_str().unwrap_or("?"),
            c["status"].as_str().unwrap_or("?"),
            c["message"].as_str().unwrap_or("")
        ));
    }
    if s.is_empty() {
        "no status yet".into()
    } else {
        s
    }
}

fn dynamic(
    client: &kube::Client,
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
) -> Api<DynamicObject> {
    let ar =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
    Api::all_with(client.clone(), &ar)
}

/// Server-side applies one object given as JSON; its resource is derived from
/// apiVersion and kind (the few kinds the bed writes).
pub async fn apply(client: &kube::Client, obj: &Value) -> Result<(), Error> {
    let api_version = obj["apiVersion"].as_str().unwrap_or_default();
    let kind = obj["kind"].as_str().unwrap_or_default();
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    };
    let plural = match kind {
        "StorageClass" => "storageclasses".to_string(),
        "VolumeReplicationClass" => "volumereplicationclasses".to_string(),
        "ManagedClusterSet" => "managedclustersets".to_string(),
        "Deployment" => "deployments".to_string(),
        k => format!("{}s", k.to_ascii_lowercase()),
    };
    let ar =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), &plural);
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    let api: Api<DynamicObject> = match obj["metadata"]["namespace"].as_str() {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    };
    api.patch(
        name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(obj),
    )
    .await?;
    Ok(())
}
