//! `drbridge demo`: Ramen's regional DR over drbridge, end to end, on the local test bed:
//! deploy the sample application, protect it, relocate it, lose a cluster for real, fail
//! over, heal. Each phase shows the DRPC live and ends with its wall time and the part spent
//! in drbridge's transport; a summary table closes the run.
//!
//! The operations are `drbridge dr` commands (printed as the user would type them); the demo
//! adds the waiting, the application's own steps (deploy it, delete it where Ramen waits for
//! the user to) and the measurements. The phase bookkeeping, the transport meter and the
//! rendering are in `drbridge_dr::demo`.

mod testbed;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Parser};
use drbridge_dr::consts::{condition as ct, phase as drphase, progression};
use drbridge_dr::demo::{Phase, PhaseOutcome, Presenter, Run, TransportMeter, live_line, seconds};
use drbridge_dr::explain::status_of;
use drbridge_dr::progress::{Expectation, Outcome};
use drbridge_dr::types::{DRAction, DRPlacementControl, VolumeReplicationGroup};
use futures::StreamExt;
use futures::stream::BoxStream;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, ListParams};

use crate::dr::{self, hub};
pub use testbed::{StateDir, Testbed, TestbedInfo, start_ramen_testbed};

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The test bed's directory: attached to if something runs there, else started there.
    #[arg(long, env = "DRBRIDGE_DEMO_ENV_DIR", default_value = ".drbridge/ramen")]
    pub env_dir: PathBuf,
    /// Tear the environment down instead of running the demo.
    #[arg(long)]
    pub down: bool,
    /// Answer every question with yes. The demo asks only before it disrupts a test bed that
    /// was already running; without a terminal it then refuses unless this is given.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// The ocm-ramen-samples source (directory or .tar.gz) holding workloads/deployment.
    #[arg(long, env = "DRBRIDGE_RAMEN_SAMPLES")]
    pub samples: Option<PathBuf>,
    /// The DRPolicy to protect with (the test bed creates dr-policy-1m).
    #[arg(long, default_value = "dr-policy-1m")]
    pub policy: String,
    /// StorageClass for the sample's PVC (default: the one with Ramen's storageid label).
    #[arg(long)]
    pub storage_class: Option<String>,
    /// Namespace of the sample application on the managed clusters.
    #[arg(long, default_value = "busybox-demo")]
    pub app_namespace: String,
    /// Name of the DRPlacementControl and its Placement.
    #[arg(long, default_value = "busybox")]
    pub name: String,
    /// How long each phase may take.
    #[arg(long, default_value = "10m", value_parser = dr::parse_timeout)]
    pub phase_timeout: Duration,
    /// Plain line output even on a terminal.
    #[arg(long)]
    pub plain: bool,
    /// The drbridge-hub binary (default: next to this one).
    #[arg(long, env = "DRBRIDGE_HUB_BIN")]
    pub hub_bin: Option<PathBuf>,
    /// The drbridge-agent binary (default: next to this one).
    #[arg(long, env = "DRBRIDGE_AGENT_BIN")]
    pub agent_bin: Option<PathBuf>,
    /// The drbridge-storage-simulator binary (default: next to this one).
    #[arg(long, env = "DRBRIDGE_STORAGE_SIMULATOR_BIN")]
    pub storage_simulator_bin: Option<PathBuf>,
}

/// How long builds usually take on a cold 2-core machine (README and issue figures).
fn usual_build_time(name: &str) -> Option<Duration> {
    match name {
        "kubernetes" => Some(Duration::from_secs(300)),
        "etcd" => Some(Duration::from_secs(60)),
        "ramen" => Some(Duration::from_secs(480)),
        _ => None,
    }
}

pub async fn run(a: DemoArgs) -> anyhow::Result<()> {
    let dir = std::path::absolute(&a.env_dir)
        .with_context(|| format!("resolving {}", a.env_dir.display()))?;
    if a.down {
        let state = drbridge_localenv::Env::down(&dir)?;
        println!(
            "Stopped {} processes and removed {}.",
            state.all_pids().len(),
            dir.display()
        );
        return Ok(());
    }
    let ui = Ui::new(!a.plain && std::io::stdout().is_terminal());
    let mut run = Run::default();
    ui.heading(Phase::Start, "", "");
    run.begin(Phase::Start, ui.now())?;
    let meter = Arc::new(Mutex::new(TransportMeter::default()));
    let tb = match open_testbed(&a, &dir, &ui).await {
        Ok(tb) => tb,
        Err(e) => {
            run.end(
                ui.now(),
                PhaseOutcome::Failed(format!("{e:#}")),
                None,
                vec![],
                &meter.lock().expect("meter"),
            )?;
            run.skip_rest("the test bed did not start");
            ui.event(&format!("\n{}", run.summary()));
            return Err(e);
        }
    };
    let info = tb.info().clone();
    run.end(
        ui.now(),
        PhaseOutcome::Ok,
        None,
        vec![format!("test bed in {}", info.dir.display())],
        &meter.lock().expect("meter"),
    )?;
    let demo = Demo::new(a, info, tb, ui, meter).await?;
    demo.phases(run).await
}

/// Attaches to the test bed in `dir`, or starts one there.
async fn open_testbed(a: &DemoArgs, dir: &Path, ui: &Ui) -> anyhow::Result<Box<dyn Testbed>> {
    if let Some(tb) = StateDir::attach(dir, &a.policy, a.storage_class.clone(), a.samples.clone())?
    {
        // Someone started this one and may be using it: the demo stops one of its clusters.
        // A test bed the demo starts itself is its own to disrupt, so that needs no question.
        dr::confirm(
            &format!(
                "drbridge demo runs Ramen's DR on the test bed already running in {}: it deploys \
                 a sample application, protects it, relocates it, then STOPS a managed cluster \
                 (a real disaster), fails over and heals.",
                dir.display()
            ),
            a.yes,
        )?;
        ui.event(&format!(
            "Using the environment running in {}.",
            dir.display()
        ));
        return Ok(Box::new(tb));
    }
    let ui2 = ui.clone();
    let progress = move |p: drbridge_localenv::Progress| ui2.build_progress(p);
    ui.event(&format!(
        "Starting the Ramen test bed in {}.",
        dir.display()
    ));
    let tools = crate::stack::ramen_tools(
        a.hub_bin.clone(),
        a.agent_bin.clone(),
        a.storage_simulator_bin.clone(),
    )?;
    start_ramen_testbed(dir, tools, &a.policy, a.samples.clone(), &progress).await
}

// ---------------------------------------------------------------------------------------------
// Output

/// The demo's output: the presenter's decisions written to stdout, times from one clock.
#[derive(Clone)]
struct Ui {
    inner: Arc<Mutex<Presenter>>,
    start: Instant,
}

impl Ui {
    fn new(tty: bool) -> Self {
        Ui {
            inner: Arc::new(Mutex::new(Presenter::new(tty))),
            start: Instant::now(),
        }
    }

    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    fn write(s: &str) {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(s.as_bytes());
        let _ = out.flush();
    }

    fn event(&self, line: &str) {
        let s = self.inner.lock().expect("presenter").event(line);
        Self::write(&s);
    }

    /// An event with the time since the phase began.
    fn at(&self, since: Instant, line: &str) {
        self.event(&format!("  [{:>7}]  {line}", seconds(since.elapsed())));
    }

    fn status(&self, what: &str, elapsed: Duration, expected: Option<Duration>) {
        let now = self.now();
        if let Some(s) = self
            .inner
            .lock()
            .expect("presenter")
            .status(what, elapsed, expected, now)
        {
            Self::write(&s);
        }
    }

    fn clear(&self) {
        let s = self.inner.lock().expect("presenter").clear();
        Self::write(&s);
    }

    fn heading(&self, p: Phase, a: &str, b: &str) {
        self.event(&format!("\n== {}: {}", p.name(), p.heading(a, b)));
    }

    fn command(&self, args: &[String]) {
        self.event(&format!("  $ {}", args.join(" ")));
    }

    fn build_progress(&self, p: drbridge_localenv::Progress) {
        use drbridge_localenv::Progress as P;
        match p {
            P::Cached { name, version } => {
                self.event(&format!("  ✓ {name} {version} (cached)"));
            }
            P::Building {
                name,
                version,
                packages,
                elapsed,
            } => self.status(
                &format!("building {name} {version} ({packages} packages)"),
                elapsed,
                usual_build_time(&name),
            ),
            P::Built {
                name,
                version,
                elapsed,
            } => {
                self.clear();
                self.event(&format!(
                    "  ✓ {name} {version} built in {}",
                    seconds(elapsed)
                ));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The run

struct Demo {
    a: DemoArgs,
    info: TestbedInfo,
    tb: Box<dyn Testbed>,
    ui: Ui,
    meter: Arc<Mutex<TransportMeter>>,
    hub: kube::Client,
    /// The transport meter's watches; dropping them stops them.
    meters: Option<drbridge_testbed::meter::Meters>,
    /// The kustomization that deploys the sample (applied and deleted with kubectl), kept in
    /// the environment's directory for the user to reuse.
    app_dir: PathBuf,
    /// The uid of the lost cluster's VRG when it went dark: after the heal it must be the
    /// same object (demoted, not deleted and made again).
    lost_vrg_uid: Option<String>,
}

/// What a phase reports when it succeeds.
struct Done {
    runs_on: Option<String>,
    facts: Vec<String>,
}

impl Demo {
    async fn new(
        a: DemoArgs,
        info: TestbedInfo,
        tb: Box<dyn Testbed>,
        ui: Ui,
        meter: Arc<Mutex<TransportMeter>>,
    ) -> anyhow::Result<Self> {
        let hub = hub::client(Some(info.kubeconfig(&info.hub)?), None).await?;
        let app_dir = info.dir.join("demo-app");
        std::fs::create_dir_all(&app_dir)
            .with_context(|| format!("creating {}", app_dir.display()))?;
        let mut d = Demo {
            a,
            info,
            tb,
            ui,
            meter,
            hub,
            meters: None,
            app_dir,
            lost_vrg_uid: None,
        };
        d.start_meters().await?;
        Ok(d)
    }

    fn a_b(&self) -> (String, String) {
        (self.info.clusters[0].clone(), self.info.clusters[1].clone())
    }

    async fn spoke(&self, cluster: &str) -> anyhow::Result<kube::Client> {
        hub::client(Some(self.info.kubeconfig(cluster)?), None).await
    }

    async fn phases(mut self, mut run: Run) -> anyhow::Result<()> {
        let (a, b) = self.a_b();
        let mut failed = None;
        // Start ran before the test bed existed.
        for phase in Phase::ALL.into_iter().skip(1) {
            self.ui.heading(phase, &a, &b);
            run.begin(phase, self.ui.now())?;
            let began = Instant::now();
            let result = match phase {
                Phase::Deploy => self.deploy().await,
                Phase::Protect => self.protect().await,
                Phase::Relocate => self.relocate().await,
                Phase::Disaster => self.disaster().await,
                Phase::Failover => self.failover().await,
                Phase::Heal => self.heal().await,
                Phase::Return => self.return_back().await,
                Phase::Start => unreachable!("started above"),
            };
            self.ui.clear();
            let meter = self.meter.lock().expect("meter").clone();
            match result {
                Ok(done) => {
                    let r = run.end(
                        self.ui.now(),
                        PhaseOutcome::Ok,
                        done.runs_on,
                        done.facts,
                        &meter,
                    )?;
                    self.ui.event(&format!(
                        "  {} done in {} ({} in transport)",
                        phase.name(),
                        seconds(r.wall),
                        seconds(r.transport)
                    ));
                }
                Err(e) => {
                    let msg = format!("{e:#}");
                    self.ui.at(began, &format!("FAILED: {msg}"));
                    run.end(
                        self.ui.now(),
                        PhaseOutcome::Failed(msg),
                        None,
                        vec![],
                        &meter,
                    )?;
                    failed = Some(phase);
                    break;
                }
            }
        }
        if failed.is_some() {
            run.skip_rest("an earlier phase failed");
        }
        self.meters = None;
        self.ui.event(&format!("\nSummary\n{}", run.summary()));
        let kubeconfigs: Vec<(String, String)> = self
            .info
            .clusters
            .iter()
            .map(|c| {
                (
                    c.clone(),
                    self.info
                        .kubeconfigs
                        .get(c)
                        .map(|p| p.display().to_string())
                        .unwrap_or_default(),
                )
            })
            .collect();
        self.ui.event(&drbridge_dr::demo::look_around(
            &self.info.kubeconfig(&self.info.hub)?.display().to_string(),
            &kubeconfigs,
            &self.info.kubectl.display().to_string(),
            &self.a.name,
            &self.a.app_namespace,
            &self.info.dir.display().to_string(),
        ));
        self.tb.keep();
        match failed {
            Some(p) => bail!("the demo failed in phase {}", p.name()),
            None => Ok(()),
        }
    }

    // -----------------------------------------------------------------------------------------
    // Phases

    async fn deploy(&mut self) -> anyhow::Result<Done> {
        let (a, b) = self.a_b();
        let began = Instant::now();
        let base = self.sample_base()?;
        let sc = match self.info.storage_class.clone() {
            Some(sc) => sc,
            None => self.find_storage_class(&a).await?,
        };
        // Ramen's e2e creates the application's namespace on both clusters.
        for c in [&a, &b] {
            dr::ensure_namespace(&self.spoke(c).await?, &self.a.app_namespace).await?;
        }
        write_kustomization(self.app_dir.as_path(), &base, &self.a.app_namespace, &sc)?;
        self.kubectl(&a, &["apply", "--kustomize"]).await?;
        self.wait_workload(&a, began).await?;
        Ok(Done {
            runs_on: Some(a.clone()),
            facts: vec![format!("busybox Ready on {a} (StorageClass {sc})")],
        })
    }

    async fn protect(&mut self) -> anyhow::Result<Done> {
        let (a, _) = self.a_b();
        let began = Instant::now();
        let mut args = vec![
            "protect".to_string(),
            self.a.name.clone(),
            "--namespace".into(),
            self.a.app_namespace.clone(),
            "--pvc-selector".into(),
            "appname=busybox".into(),
            "--kube-object-selector".into(),
            "appname=busybox".into(),
            "--preferred-cluster".into(),
            a.clone(),
            "--policy".into(),
            self.info.policy.clone(),
        ];
        if let Some(cs) = &self.info.cluster_set {
            args.extend(["--cluster-set".into(), cs.clone()]);
        }
        self.dr(&args).await?;
        let d = self
            .follow(began, "Ramen protects the application", None, |d, _| {
                dr::protected_outcome(d, None)
            })
            .await?;
        let sync = d
            .status
            .as_ref()
            .and_then(|s| s.last_group_sync_time.as_ref())
            .map(drbridge_dr::time::rfc3339)
            .unwrap_or_default();
        Ok(Done {
            runs_on: Some(a),
            facts: vec![format!(
                "PeerReady after {}; first group sync {sync}",
                seconds(began.elapsed())
            )],
        })
    }

    async fn relocate(&mut self) -> anyhow::Result<Done> {
        let (a, b) = self.a_b();
        self.action(DRAction::Relocate, &b, Some(&a)).await?;
        Ok(Done {
            runs_on: Some(b),
            facts: vec!["no data loss (final sync)".into()],
        })
    }

    async fn disaster(&mut self) -> anyhow::Result<Done> {
        let (_, b) = self.a_b();
        let began = Instant::now();
        self.ui.at(
            began,
            &format!("stopping everything on {b}: drbridge agent, Ramen, storage simulator, Velero, KWOK, then its control plane"),
        );
        self.lost_vrg_uid = self.vrg_uid(&b).await?;
        self.tb.stop_cluster(&b)?;
        let stopped = Instant::now();
        let mcs: Api<drbridge_api::cluster::ManagedCluster> = Api::all(self.hub.clone());
        let wake = hub::wake_on(mcs, None);
        let hub = self.hub.clone();
        let name = self.a.name.clone();
        let ops = dr::default_ops_namespace();
        let b2 = b.clone();
        let lost = self
            .wait_until(
                &format!("waiting for drbridge to report {b} lost"),
                began,
                wake,
                move || {
                    let hub = hub.clone();
                    let (name, ops, b) = (name.clone(), ops.clone(), b2.clone());
                    async move {
                        let (conn, _) = hub::cluster_state(&hub, &b, &name, &ops).await;
                        Ok((!conn.is_connected()).then_some(conn))
                    }
                },
            )
            .await?;
        let after = stopped.elapsed();
        let how = if lost.unreachable_since.is_some() {
            "its views marked drbridge.io/unreachable-since".to_string()
        } else {
            format!("ManagedCluster Available={}", lost.available)
        };
        self.ui.at(
            began,
            &format!(
                "drbridge reported {b} lost {} after it stopped ({how})",
                seconds(after)
            ),
        );
        self.dr(&["status".to_string(), self.a.name.clone()])
            .await?;
        Ok(Done {
            runs_on: Some(b.clone()),
            facts: vec![format!("{b} reported lost after {}", seconds(after))],
        })
    }

    async fn failover(&mut self) -> anyhow::Result<Done> {
        let (a, b) = self.a_b();
        let began = Instant::now();
        self.dr(&[
            "failover".into(),
            self.a.name.clone(),
            "--to".into(),
            a.clone(),
            "--yes".into(),
        ])
        .await?;
        // With b down nobody can delete the application there: the failover is done for the
        // user once the application runs on a; Ramen finishes (WaitOnUserToCleanUp) in Heal.
        let target = a.clone();
        self.follow(
            began,
            &format!("Ramen fails over to {a}"),
            None,
            move |d, current| failed_over(d, current, &target),
        )
        .await?;
        // Failed over means the application runs again: Ramen restores its PVC and kube
        // objects on a from what the last group sync and capture left.
        self.wait_workload(&a, began).await?;
        let facts = vec![format!(
            "busybox Ready on {a}; {b} down throughout, nothing waited for it"
        )];
        Ok(Done {
            runs_on: Some(a),
            facts,
        })
    }

    async fn heal(&mut self) -> anyhow::Result<Done> {
        let (a, b) = self.a_b();
        let began = Instant::now();
        self.ui.at(began, &format!("starting {b} again"));
        self.tb.start_cluster(&b).await?;
        let back = began.elapsed();
        self.ui.at(
            began,
            &format!("{b}'s API server answers after {}", seconds(back)),
        );
        let name = self.a.name.clone();
        let ops = dr::default_ops_namespace();
        // Ramen waits for the user to remove the application from the cluster it left, as
        // after any discovered-application failover.
        let d = self
            .follow(
                began,
                &format!("Ramen makes {b} the secondary"),
                Some(&b),
                dr::protected_outcome,
            )
            .await?;
        let (conn, vrg) = hub::cluster_state(&self.hub, &b, &name, &ops).await;
        let state = vrg
            .vrg()
            .and_then(|v| v.status.as_ref())
            .map(|s| s.state.clone())
            .unwrap_or_default();
        if state != drbridge_dr::consts::vrg_state::SECONDARY {
            bail!(
                "{b}'s VRG reports {} ({}), not Secondary",
                if state.is_empty() { "no state" } else { &state },
                vrg.summary()
            );
        }
        let uid = self.vrg_uid(&b).await?;
        if uid != self.lost_vrg_uid {
            bail!(
                "{b}'s VRG is not the one it had before the outage (uid {} then, {} now): \
                 something deleted it",
                self.lost_vrg_uid.as_deref().unwrap_or("none"),
                uid.as_deref().unwrap_or("none")
            );
        }
        let peer = status_of(
            &d.status.clone().unwrap_or_default().conditions,
            ct::PEER_READY,
        );
        self.ui.at(
            began,
            &format!(
                "{b} is {}; its VRG is {state}; PeerReady {peer}",
                conn.short(hub::now())
            ),
        );
        Ok(Done {
            runs_on: Some(a),
            facts: vec![format!(
                "{b} VRG Secondary (the same object as before the outage), PeerReady {peer}"
            )],
        })
    }

    async fn return_back(&mut self) -> anyhow::Result<Done> {
        let (a, b) = self.a_b();
        self.action(DRAction::Relocate, &b, Some(&a)).await?;
        Ok(Done {
            runs_on: Some(b.clone()),
            facts: vec![format!(
                "back on the healed {b}, protected with a sync from it"
            )],
        })
    }

    /// The uid of the application's VRG on `cluster`, read from the cluster itself.
    async fn vrg_uid(&self, cluster: &str) -> anyhow::Result<Option<String>> {
        let vrgs: Api<VolumeReplicationGroup> =
            Api::namespaced(self.spoke(cluster).await?, &dr::default_ops_namespace());
        Ok(vrgs
            .get_opt(&self.a.name)
            .await
            .with_context(|| format!("reading the VRG on {cluster}"))?
            .and_then(|v| v.metadata.uid))
    }

    /// Failover or relocate to `to`, deleting the application on `left` when Ramen waits for
    /// the user to, then waiting until the DRPC is ready again (Ramen e2e's order).
    async fn action(
        &mut self,
        action: DRAction,
        to: &str,
        left: Option<&str>,
    ) -> anyhow::Result<()> {
        let began = Instant::now();
        self.dr(&[
            action.verb().to_string(),
            self.a.name.clone(),
            "--to".into(),
            to.to_string(),
            "--yes".into(),
        ])
        .await?;
        let drpc = hub::find_drpc(&self.hub, &dr::default_ops_namespace(), &self.a.name).await?;
        let exp = Expectation {
            action,
            target: to.to_string(),
            generation: drpc.metadata.generation.unwrap_or_default(),
        };
        self.follow(
            began,
            &format!("Ramen carries out the {} to {to}", action.verb()),
            left,
            move |d, current| drbridge_dr::progress::evaluate(&exp, d, current),
        )
        .await?;
        self.wait_workload(to, began).await?;
        // Protected again only with a group sync from the new primary: until then the peer
        // holds the data as of the action, and a disaster now would lose what came after.
        let since = hub::now();
        self.follow(
            began,
            &format!("Ramen protects the application again: a first group sync from {to}"),
            None,
            move |d, c| synced_since(d, c, since),
        )
        .await?;
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // Helpers

    /// Runs a `drbridge dr` command in this process, printed as the user would type it.
    async fn dr(&self, args: &[String]) -> anyhow::Result<()> {
        let hub_kc = self.info.kubeconfig(&self.info.hub)?.display().to_string();
        let mut shown = vec!["drbridge".to_string(), "dr".to_string()];
        shown.extend(args.iter().cloned());
        self.ui.clear();
        self.ui.command(&shown);
        let mut argv = vec!["dr".to_string(), "--kubeconfig".into(), hub_kc];
        argv.extend(args.iter().cloned());
        let cli = DrOnly::try_parse_from(&argv).context("building the dr command")?;
        dr::run(cli.dr).await
    }

    /// Runs kubectl on `cluster` with the sample's kustomization.
    async fn kubectl(&self, cluster: &str, verb: &[&str]) -> anyhow::Result<()> {
        let kc = self.info.kubeconfig(cluster)?;
        let mut args: Vec<String> = verb.iter().map(|s| s.to_string()).collect();
        args.push(self.app_dir.as_path().display().to_string());
        args.extend([
            "--namespace".into(),
            self.a.app_namespace.clone(),
            "--kubeconfig".into(),
            kc.display().to_string(),
        ]);
        let mut shown = vec![self.info.kubectl.display().to_string()];
        shown.extend(args.iter().cloned());
        self.ui.clear();
        self.ui.command(&shown);
        let out = tokio::process::Command::new(&self.info.kubectl)
            .args(&args)
            .output()
            .await
            .with_context(|| format!("running {}", self.info.kubectl.display()))?;
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            self.ui.event(&format!("    {line}"));
        }
        if !out.status.success() {
            bail!(
                "kubectl {} failed on {cluster}: {}",
                verb.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// The sample's `workloads/deployment/base`, unpacking a tarball into the cache.
    fn sample_base(&self) -> anyhow::Result<PathBuf> {
        let src = self
            .info
            .samples
            .clone()
            .or_else(|| self.a.samples.clone())
            .context(
                "the sample application comes from ocm-ramen-samples: name its source tree or \
             tarball with --samples or DRBRIDGE_RAMEN_SAMPLES",
            )?;
        let root = if src.is_dir() {
            src
        } else {
            unpack(&src, &drbridge_localenv::cache_dir().join("samples"))?
        };
        let base = root.join("workloads/deployment/base");
        if !base.join("kustomization.yaml").exists() {
            bail!(
                "{} has no workloads/deployment/base/kustomization.yaml: is it ocm-ramen-samples?",
                root.display()
            );
        }
        Ok(base)
    }

    /// The StorageClass Ramen can replicate on `cluster`: the one with a storageid label.
    async fn find_storage_class(&self, cluster: &str) -> anyhow::Result<String> {
        let scs = Api::<StorageClass>::all(self.spoke(cluster).await?)
            .list(&ListParams::default().labels("ramendr.openshift.io/storageid"))
            .await
            .with_context(|| format!("listing StorageClasses on {cluster}"))?;
        match scs.items.as_slice() {
            [sc] => Ok(sc.metadata.name.clone().unwrap_or_default()),
            [] => bail!(
                "{cluster} has no StorageClass with Ramen's label ramendr.openshift.io/storageid: \
                 is the storage simulator running? (or pass --storage-class)"
            ),
            many => bail!(
                "{cluster} has several StorageClasses Ramen could use ({}); pass --storage-class",
                many.iter()
                    .filter_map(|s| s.metadata.name.clone())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    /// Waits until the sample runs on `cluster`: the Deployment ready, the PVC Bound.
    async fn wait_workload(&self, cluster: &str, began: Instant) -> anyhow::Result<()> {
        let client = self.spoke(cluster).await?;
        let ns = self.a.app_namespace.clone();
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
        let wake = futures::stream::select(
            hub::wake_on(deployments.clone(), Some("busybox")),
            hub::wake_on(pvcs.clone(), Some("busybox-pvc")),
        )
        .boxed();
        self.wait_until(
            &format!("waiting for busybox to be Ready on {cluster} (Deployment ready, PVC Bound)"),
            began,
            wake,
            move || {
                let (deployments, pvcs) = (deployments.clone(), pvcs.clone());
                async move {
                    let ready = deployments
                        .get_opt("busybox")
                        .await?
                        .and_then(|d| d.status)
                        .and_then(|s| s.ready_replicas)
                        .unwrap_or(0)
                        >= 1;
                    let bound = pvcs
                        .get_opt("busybox-pvc")
                        .await?
                        .and_then(|p| p.status)
                        .and_then(|s| s.phase)
                        .as_deref()
                        == Some("Bound");
                    Ok((ready && bound).then_some(()))
                }
            },
        )
        .await?;
        self.ui.at(
            began,
            &format!("busybox is Ready on {cluster}, its PVC Bound"),
        );
        Ok(())
    }

    /// Waits for `check` to give a value, re-checking on every event of `wake` and showing
    /// the elapsed time once a second; fails at the phase deadline.
    async fn wait_until<T, F, Fut>(
        &self,
        what: &str,
        began: Instant,
        mut wake: BoxStream<'static, ()>,
        check: F,
    ) -> anyhow::Result<T>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
    {
        let deadline = tokio::time::Instant::from_std(began) + self.a.phase_timeout;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            if let Some(v) = check().await? {
                self.ui.clear();
                return Ok(v);
            }
            self.ui.status(what, began.elapsed(), None);
            tokio::select! {
                _ = wake.next() => {}
                _ = tick.tick() => {}
                _ = tokio::time::sleep_until(deadline) => {
                    bail!("{what}: not done after {}", seconds(self.a.phase_timeout));
                }
            }
        }
    }

    /// Follows the DRPC, printing each change of its live line, until `judge` says done.
    /// When Ramen waits for the user to clean up and `cleanup_on` names a cluster, deletes
    /// the application there (once), as Ramen's e2e does.
    async fn follow(
        &self,
        began: Instant,
        what: &str,
        cleanup_on: Option<&str>,
        judge: impl Fn(Option<&DRPlacementControl>, Option<&str>) -> Outcome,
    ) -> anyhow::Result<DRPlacementControl> {
        let ops = dr::default_ops_namespace();
        let name = self.a.name.clone();
        let mut wake = futures::stream::select(
            hub::wake_on(
                Api::<DRPlacementControl>::namespaced(self.hub.clone(), &ops),
                Some(&name),
            ),
            hub::wake_on(
                Api::<drbridge_api::cluster::PlacementDecision>::namespaced(self.hub.clone(), &ops),
                None,
            ),
        );
        let deadline = tokio::time::Instant::from_std(began) + self.a.phase_timeout;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut last = String::new();
        let mut cleaned = false;
        loop {
            let d = hub::get_drpc(&self.hub, &ops, &name).await?;
            let current = match &d {
                Some(d) => {
                    drbridge_dr::status::current_cluster(&hub::decisions(&self.hub, d).await?, d)
                }
                None => None,
            };
            if let Some(d) = &d {
                let line = live_line(d, current.as_deref());
                if line != last {
                    self.ui.at(began, &line);
                    last = line;
                }
                let waits = d
                    .status
                    .as_ref()
                    .is_some_and(|s| s.progression == progression::WAIT_ON_USER_TO_CLEAN_UP);
                if let (true, false, Some(c)) = (waits, cleaned, cleanup_on)
                    && self.reachable(c).await
                {
                    self.ui.at(
                        began,
                        &format!("Ramen waits for the user: delete the application on {c}"),
                    );
                    self.kubectl(
                        c,
                        &["delete", "--wait=true", "--ignore-not-found", "--kustomize"],
                    )
                    .await?;
                    cleaned = true;
                }
            }
            match judge(d.as_ref(), current.as_deref()) {
                Outcome::Done => {
                    self.ui.clear();
                    return d.context("the DRPlacementControl is gone");
                }
                Outcome::Failed(why) => bail!("{why}"),
                Outcome::Pending => {}
            }
            self.ui.status(what, began.elapsed(), None);
            tokio::select! {
                _ = wake.next() => {}
                _ = tick.tick() => {}
                _ = tokio::time::sleep_until(deadline) => {
                    bail!("{what}: not done after {}; last: {last}", seconds(self.a.phase_timeout));
                }
            }
        }
    }

    /// Whether the hub is connected to `cluster` (the place to delete the app must answer).
    async fn reachable(&self, cluster: &str) -> bool {
        let (conn, _) = hub::cluster_state(
            &self.hub,
            cluster,
            &self.a.name,
            &dr::default_ops_namespace(),
        )
        .await;
        conn.is_connected()
    }

    /// Starts the watches that feed the transport meter: works and views on the hub, VRGs on
    /// the managed clusters.
    async fn start_meters(&mut self) -> anyhow::Result<()> {
        let mut spokes = Vec::new();
        for c in self.info.clusters.clone() {
            spokes.push((c.clone(), self.spoke(&c).await?));
        }
        self.meters = Some(drbridge_testbed::meter::start(
            &self.hub,
            &spokes,
            self.meter.clone(),
            self.ui.start,
        ));
        Ok(())
    }
}

/// Failed over as far as a user can tell while the old cluster is down: the application runs
/// on `target` and is available there.
fn failed_over(d: Option<&DRPlacementControl>, current: Option<&str>, target: &str) -> Outcome {
    let Some(d) = d else {
        return Outcome::Failed("the DRPlacementControl was deleted".into());
    };
    let st = d.status.clone().unwrap_or_default();
    let available = status_of(&st.conditions, ct::AVAILABLE) == "True";
    if st.phase == drphase::FAILED_OVER && available && current == Some(target) {
        Outcome::Done
    } else {
        Outcome::Pending
    }
}

/// Protected, with a group sync after `since` (Ramen keeps the previous primary's
/// `lastGroupSyncTime` through a relocate).
fn synced_since(
    d: Option<&DRPlacementControl>,
    current: Option<&str>,
    since: k8s_openapi::jiff::Timestamp,
) -> Outcome {
    match dr::protected_outcome(d, current) {
        Outcome::Done => {}
        other => return other,
    }
    let st = d.and_then(|d| d.status.as_ref());
    let protected = st.is_some_and(|s| status_of(&s.conditions, ct::PROTECTED) == "True");
    let fresh = st
        .and_then(|s| s.last_group_sync_time.as_ref())
        .is_some_and(|t| t.0 > since);
    if protected && fresh {
        Outcome::Done
    } else {
        Outcome::Pending
    }
}

/// `drbridge dr ...` parsed on its own, to run dr commands from the demo.
#[derive(Debug, Parser)]
#[command(name = "drbridge")]
struct DrOnly {
    #[command(flatten)]
    dr: dr::DrArgs,
}

/// The kustomization that deploys the sample from ocm-ramen-samples, as Ramen's e2e
/// generates one: the base, the namespace, and the PVC's StorageClass.
fn write_kustomization(
    dir: &Path,
    base: &Path,
    namespace: &str,
    storage_class: &str,
) -> anyhow::Result<()> {
    // Kustomize refuses an absolute path as a resource root: name the base relative to dir.
    let canonical = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
    let base = relative(&canonical(dir), &canonical(base));
    let text = format!(
        "resources:\n  - {}\nnamespace: {namespace}\npatches:\n  - target:\n      kind: PersistentVolumeClaim\n      name: busybox-pvc\n    patch: |-\n      - op: replace\n        path: /spec/storageClassName\n        value: {storage_class}\n",
        base.display()
    );
    let path = dir.join("kustomization.yaml");
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
}

/// `to` as seen from the directory `from` (both absolute).
fn relative(from: &Path, to: &Path) -> PathBuf {
    let f: Vec<_> = from.components().collect();
    let t: Vec<_> = to.components().collect();
    let common = f.iter().zip(&t).take_while(|(a, b)| a == b).count();
    let mut p = PathBuf::new();
    for _ in common..f.len() {
        p.push("..");
    }
    for c in &t[common..] {
        p.push(c);
    }
    p
}

/// Unpacks a tarball (once) under `cache`; returns the single top directory.
fn unpack(tarball: &Path, cache: &Path) -> anyhow::Result<PathBuf> {
    let stem = tarball
        .file_name()
        .and_then(|n| n.to_str())
        .map(|n| {
            n.trim_end_matches(".tar.gz")
                .trim_end_matches(".tgz")
                .to_string()
        })
        .context("the samples tarball has no file name")?;
    let dest = cache.join(&stem);
    if dest.join(&stem).is_dir() {
        return Ok(dest.join(&stem));
    }
    std::fs::create_dir_all(&dest).with_context(|| format!("creating {}", dest.display()))?;
    let status = std::process::Command::new("tar")
        .arg("-xzf")
        .arg(tarball)
        .arg("-C")
        .arg(&dest)
        .status()
        .context("running tar")?;
    if !status.success() {
        bail!("unpacking {} failed", tarball.display());
    }
    let dirs: Vec<PathBuf> = std::fs::read_dir(&dest)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    match dirs.as_slice() {
        [one] => Ok(one.clone()),
        _ => bail!("{} does not unpack into one directory", tarball.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use drbridge_dr::types::{DRPlacementControlSpec, DRPlacementControlStatus};

    #[test]
    fn kustomization_names_base_namespace_and_storage_class() {
        let dir = tempfile::tempdir().unwrap();
        write_kustomization(
            dir.path(),
            Path::new("/s/workloads/deployment/base"),
            "busybox-demo",
            "sim-rbd",
        )
        .unwrap();
        let text = std::fs::read_to_string(dir.path().join("kustomization.yaml")).unwrap();
        let doc: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
        let base = doc["resources"][0].as_str().unwrap();
        assert!(
            base.starts_with("../") && base.ends_with("/s/workloads/deployment/base"),
            "kustomize wants a relative root: {base}"
        );
        assert_eq!(doc["namespace"], "busybox-demo");
        assert!(
            doc["patches"][0]["patch"]
                .as_str()
                .unwrap()
                .contains("value: sim-rbd")
        );
    }

    #[test]
    fn relative_paths_climb_to_the_common_prefix() {
        assert_eq!(
            relative(Path::new("/a/b/c"), Path::new("/a/x/y")),
            Path::new("../../x/y")
        );
        assert_eq!(relative(Path::new("/a"), Path::new("/a/b")), Path::new("b"));
        assert_eq!(
            relative(Path::new("/a/b"), Path::new("/a")),
            Path::new("..")
        );
    }

    /// Real Ramen after a relocate: Completed, PeerReady and Available, but Protected=False and
    /// `lastGroupSyncTime` still the old primary's. That is not protected yet.
    #[test]
    fn protected_again_needs_a_group_sync_after_the_action() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
        let t = |s: &str| s.parse::<k8s_openapi::jiff::Timestamp>().unwrap();
        let cond = |type_: &str, status: &str| Condition {
            type_: type_.into(),
            status: status.into(),
            reason: String::new(),
            message: String::new(),
            last_transition_time: Time(Default::default()),
            observed_generation: None,
        };
        let drpc = |protected: &str, synced: &str| {
            let mut d = DRPlacementControl::new("app", DRPlacementControlSpec::default());
            d.status = Some(DRPlacementControlStatus {
                phase: "Relocated".into(),
                progression: "Completed".into(),
                conditions: vec![
                    cond("Available", "True"),
                    cond("PeerReady", "True"),
                    cond("Protected", protected),
                ],
                last_group_sync_time: Some(Time(t(synced))),
                ..Default::default()
            });
            d
        };
        let since = t("2026-12-02T06:47:49Z");
        let stale = drpc("False", "2026-12-02T06:47:48Z");
        assert_eq!(
            synced_since(Some(&stale), Some("dr2"), since),
            Outcome::Pending
        );
        let old_sync = drpc("True", "2026-12-02T06:47:48Z");
        assert_eq!(
            synced_since(Some(&old_sync), Some("dr2"), since),
            Outcome::Pending
        );
        let fresh = drpc("True", "2026-12-02T06:48:50Z");
        assert_eq!(
            synced_since(Some(&fresh), Some("dr2"), since),
            Outcome::Done
        );
        assert!(matches!(
            synced_since(None, None, since),
            Outcome::Failed(_)
        ));
    }

    #[test]
    fn failover_is_done_for_the_user_when_the_app_runs_on_the_target() {
        let mut d = DRPlacementControl::new("app", DRPlacementControlSpec::default());
        d.status = Some(DRPlacementControlStatus {
            phase: "FailedOver".into(),
            progression: "WaitOnUserToCleanUp".into(),
            conditions: vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
                type_: "Available".into(),
                status: "True".into(),
                reason: "FailedOver".into(),
                message: String::new(),
                last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    Default::default(),
                ),
                observed_generation: None,
            }],
            ..Default::default()
        });
        assert_eq!(failed_over(Some(&d), Some("dr1"), "dr1"), Outcome::Done);
        assert_eq!(failed_over(Some(&d), Some("dr2"), "dr1"), Outcome::Pending);
        d.status.as_mut().unwrap().phase = "FailingOver".into();
        assert_eq!(failed_over(Some(&d), Some("dr1"), "dr1"), Outcome::Pending);
        assert!(matches!(failed_over(None, None, "dr1"), Outcome::Failed(_)));
    }

    #[test]
    fn unpacks_a_samples_tarball_once() {
        let src = tempfile::tempdir().unwrap();
        let top = src.path().join("ocm-ramen-samples-x");
        std::fs::create_dir_all(top.join("workloads/deployment/base")).unwrap();
        std::fs::write(
            top.join("workloads/deployment/base/kustomization.yaml"),
            "resources: []\n",
        )
        .unwrap();
        let tgz = src.path().join("ocm-ramen-samples-x.tar.gz");
        let ok = std::process::Command::new("tar")
            .arg("-czf")
            .arg(&tgz)
            .arg("-C")
            .arg(src.path())
            .arg("ocm-ramen-samples-x")
            .status()
            .unwrap()
            .success();
        assert!(ok);
        let cache = tempfile::tempdir().unwrap();
        let root = unpack(&tgz, cache.path()).unwrap();
        assert!(
            root.join("workloads/deployment/base/kustomization.yaml")
                .exists()
        );
        assert_eq!(unpack(&tgz, cache.path()).unwrap(), root);
    }

    #[test]
    fn the_demo_cli_is_consistent() {
        use clap::CommandFactory;
        #[derive(Debug, Parser)]
        struct T {
            #[command(flatten)]
            demo: DemoArgs,
        }
        T::command().debug_assert();
        DrOnly::command().debug_assert();
        let cli =
            DrOnly::try_parse_from(["dr", "--kubeconfig", "/k", "status", "busybox"]).unwrap();
        assert!(matches!(cli.dr.command, dr::DrCommand::Status(_)));
    }
}
