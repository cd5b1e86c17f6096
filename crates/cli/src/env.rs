//! `drbridge env up|status|down`.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use drbridge_localenv::{Env, EnvOptions, EnvState, Lifetime, Progress, process::pid_alive};

#[derive(Debug, Subcommand)]
pub enum EnvCommand {
    /// Start the clusters (building the control-plane binaries on first use).
    Up(UpArgs),
    /// Build (first time) or find the pinned control-plane binaries, helm and promtool, and print where they are.
    Prepare(PrepareArgs),
    /// Show what runs.
    Status(DirArg),
    /// Stop everything and remove the environment's directory.
    Down(DirArg),
}

#[derive(Debug, Args)]
pub struct DirArg {
    /// The environment's directory (data, logs, kubeconfigs, state).
    #[arg(long, env = "DRBRIDGE_ENV_DIR", default_value = ".drbridge/env")]
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct PrepareArgs {
    /// Also build the Ramen test bed's programs: Ramen's manager and e2e binary (from its
    /// source), Velero with the AWS plugin, KWOK, versitygw.
    #[arg(long)]
    pub ramen: bool,
    /// Ramen's source: a tarball or tree (default: ramen-*.tar.gz in a shared/upstream/ beside
    /// this checkout or one of its parents).
    #[arg(long, env = drbridge_testbed::source::RAMEN_SOURCE_ENV)]
    pub ramen_source: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub dir: DirArg,
    /// Comma-separated cluster names; the first is the hub.
    #[arg(long, value_delimiter = ',', default_value = "hub,dr1,dr2")]
    pub clusters: Vec<String>,
    /// Comma-separated clusters that run pods: each also gets a kube-scheduler
    /// and the deployment and replicaset controllers.
    #[arg(long, value_delimiter = ',')]
    pub workload_clusters: Vec<String>,
    /// Seconds to wait for every API server to answer ready.
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
    /// Start only the clusters, not drbridge's hub and agents.
    #[arg(long)]
    pub no_drbridge: bool,
    /// The drbridge-hub binary (default: next to this one).
    #[arg(long, env = "DRBRIDGE_HUB_BIN")]
    pub hub_bin: Option<PathBuf>,
    /// The drbridge-agent binary (default: next to this one).
    #[arg(long, env = "DRBRIDGE_AGENT_BIN")]
    pub agent_bin: Option<PathBuf>,
    /// Start the Ramen test bed: Ramen's operators, Velero, KWOK, an S3 server, the storage
    /// simulator and drbridge on hub, dr1 and dr2, with DRPolicy dr-policy-1m (builds
    /// everything on first use; Ramen from its source, see --ramen-source).
    #[arg(long, conflicts_with_all = ["no_drbridge", "clusters"])]
    pub ramen: bool,
    /// Ramen's source: a tarball or tree (default: ramen-*.tar.gz in a shared/upstream/ beside
    /// this checkout or one of its parents).
    #[arg(long, env = drbridge_testbed::source::RAMEN_SOURCE_ENV)]
    pub ramen_source: Option<PathBuf>,
    /// The ocm-ramen-samples source, for the e2e config written with --ramen (default: found
    /// like --ramen-source).
    #[arg(long, env = drbridge_testbed::source::SAMPLES_SOURCE_ENV)]
    pub samples_source: Option<PathBuf>,
    /// The drbridge-storage-simulator binary (default: next to this one).
    #[arg(long, env = "DRBRIDGE_STORAGE_SIMULATOR_BIN")]
    pub storage_simulator_bin: Option<PathBuf>,
}

pub async fn run(cmd: EnvCommand) -> anyhow::Result<()> {
    match cmd {
        EnvCommand::Up(args) => up(args).await,
        EnvCommand::Prepare(a) => prepare(a).await,
        EnvCommand::Status(d) => status(&d.dir),
        EnvCommand::Down(d) => down(&d.dir),
    }
}

/// Prints build progress on one line on a terminal, else a line every few seconds.
pub fn progress_printer() -> impl Fn(Progress) + Sync + Send + 'static {
    let tty = std::io::stderr().is_terminal();
    move |p| {
        let mut err = std::io::stderr();
        match p {
            Progress::Cached { name, version } => {
                let _ = writeln!(err, "✓ {name} {version} (cached)");
            }
            Progress::Building {
                name,
                version,
                packages,
                elapsed,
            } => {
                let line = format!(
                    "… building {name} {version} from Go modules (first run only): {packages} packages, {}s",
                    elapsed.as_secs()
                );
                if tty {
                    let _ = write!(err, "\r\x1b[2K{line}");
                } else if elapsed.as_secs() % 30 < 2 {
                    let _ = writeln!(err, "{line}");
                }
            }
            Progress::Built {
                name,
                version,
                elapsed,
            } => {
                if tty {
                    let _ = write!(err, "\r\x1b[2K");
                }
                let _ = writeln!(err, "✓ {name} {version} built in {}s", elapsed.as_secs());
            }
        }
    }
}

async fn prepare(args: PrepareArgs) -> anyhow::Result<()> {
    // The test bed's programs first: they do not wait on the control planes.
    if args.ramen {
        let source =
            drbridge_testbed::source::ramen(args.ramen_source, &crate::stack::repo_root())?;
        let cache = drbridge_localenv::cache_dir();
        let printer = progress_printer();
        let p = tokio::task::spawn_blocking(move || {
            drbridge_testbed::build::ensure(&source, &cache, &printer)
        })
        .await??;
        println!("ramen-manager:           {}", p.ramen_manager.display());
        println!("ramen-e2e:               {}", p.ramen_e2e.display());
        println!("velero:                  {}", p.velero.display());
        println!("velero plugins:          {}", p.velero_plugin_dir.display());
        println!("kwok:                    {}", p.kwok.display());
        println!("versitygw:               {}", p.versitygw.display());
    }
    let cache = drbridge_localenv::cache_dir();
    let printer = progress_printer();
    let (tc, (helm, promtool)) = tokio::task::spawn_blocking(move || {
        // helm and promtool (the charts' tests) are independent of the control planes: build
        // them beside them, one after the other, as two cores allow.
        std::thread::scope(|s| {
            let tools = s.spawn(|| {
                let helm = drbridge_localenv::ensure_helm(&cache, &printer)?;
                let promtool = drbridge_localenv::ensure_promtool(&cache, &printer)?;
                Ok::<_, drbridge_localenv::Error>((helm, promtool))
            });
            let tc = drbridge_localenv::ensure_toolchain(&cache, &printer);
            Ok::<_, drbridge_localenv::Error>((
                tc?,
                tools.join().expect("helm and promtool build thread")?,
            ))
        })
    })
    .await??;
    println!("etcd:                    {}", tc.etcd.display());
    println!("kube-apiserver:          {}", tc.kube_apiserver.display());
    println!(
        "kube-controller-manager: {}",
        tc.kube_controller_manager.display()
    );
    println!("kube-scheduler:          {}", tc.kube_scheduler.display());
    println!("kubectl:                 {}", tc.kubectl.display());
    println!("helm:                    {}", helm.display());
    println!("promtool:                {}", promtool.display());
    Ok(())
}

async fn up(args: UpArgs) -> anyhow::Result<()> {
    if args.ramen {
        return up_ramen(args).await;
    }
    let dir = absolute(&args.dir.dir)?;
    eprintln!("Starting {} in {}", args.clusters.join(", "), dir.display());
    let mut opts = EnvOptions::new(dir.clone(), &[]);
    opts.clusters = args.clusters.clone();
    opts.lifetime = Lifetime::Detached;
    opts.ready_timeout = Duration::from_secs(args.timeout);
    opts.workload_clusters = args.workload_clusters.clone();
    let bins = if args.no_drbridge {
        None
    } else {
        Some(crate::stack::Binaries::find(
            args.hub_bin.clone(),
            args.agent_bin.clone(),
        )?)
    };
    let started = std::time::Instant::now();
    let printer = progress_printer();
    // Only an environment this command started may be cleaned up on failure;
    // one that was already there (running or stale) is the user's.
    let preexisting = EnvState::path(&dir).exists();
    let mut env = match Env::start(opts, &printer).await {
        Ok(env) => env,
        Err(e) => {
            // Leave nothing half-started behind, but keep the logs the
            // error points at.
            if !preexisting && let Ok(mut state) = EnvState::load(&dir) {
                state.stop_all();
                let _ = std::fs::remove_file(EnvState::path(&dir));
            }
            return Err(e).context("drbridge env up");
        }
    };
    eprintln!(
        "✓ {} clusters ready in {:.1}s",
        args.clusters.len(),
        started.elapsed().as_secs_f64()
    );
    if let Some(bins) = bins {
        match crate::stack::start(&mut env, &bins, Duration::from_secs(args.timeout)).await {
            Ok(endpoint) => eprintln!(
                "✓ drbridge-hub serving {endpoint}; agents of {} connected ({:.1}s)",
                args.clusters[1..].join(", "),
                started.elapsed().as_secs_f64()
            ),
            Err(e) => {
                drop(env.detach());
                if let Ok(mut state) = EnvState::load(&dir) {
                    state.stop_all();
                    let _ = std::fs::remove_file(EnvState::path(&dir));
                }
                return Err(e.context("starting drbridge"));
            }
        }
    }
    let state = env.detach();
    print_summary(&state, &dir);
    Ok(())
}

async fn up_ramen(args: UpArgs) -> anyhow::Result<()> {
    use drbridge_testbed::{Testbed, TestbedOptions, source};
    let dir = absolute(&args.dir.dir)?;
    let root = crate::stack::repo_root();
    let ramen_source = source::ramen(args.ramen_source.clone(), &root)?;
    let tools = crate::stack::ramen_tools(
        args.hub_bin.clone(),
        args.agent_bin.clone(),
        args.storage_simulator_bin.clone(),
    )?;
    eprintln!("Starting the Ramen test bed in {}", dir.display());
    let printer = progress_printer();
    let opts = TestbedOptions {
        dir: dir.clone(),
        lifetime: Lifetime::Detached,
        ramen_source,
        tools,
        timeout: Duration::from_secs(args.timeout.max(300)),
        // Detached: the replicas' front would go with this process.
        hub_replicas: 1,
    };
    // A failed start stops what it started and keeps the logs the error names.
    let bed = Testbed::start(opts, &printer)
        .await
        .context("drbridge env up --ramen")?;
    for (step, d) in &bed.timings {
        eprintln!("  {:<36} {:>6.1}s", step, d.as_secs_f64());
    }
    let e2e_config = source::samples(args.samples_source.clone(), &root)
        .map_err(anyhow::Error::from)
        .and_then(|s| Ok(drbridge_testbed::e2e::prepare(&bed, &s)?));
    let e2e = bed.programs.ramen_e2e.clone();
    let state = bed.env.detach();
    print_summary(&state, &dir);
    match e2e_config {
        Ok(config) => println!(
            "\nRamen's e2e:\n  cd {} && {} -test.v -test.run TestDR -config {}",
            config.parent().unwrap_or(&dir).display(),
            e2e.display(),
            config.display()
        ),
        Err(e) => println!("\nNo e2e config written: {e:#}"),
    }
    Ok(())
}

fn print_summary(state: &EnvState, dir: &std::path::Path) {
    println!(
        "kubectl ({}): {}",
        state.kubernetes_version,
        state.kubectl.display()
    );
    for c in &state.clusters {
        println!(
            "  {:<6} {}  kubeconfig {}",
            c.name,
            c.server,
            c.kubeconfig.display()
        );
    }
    if let Some(c) = state.clusters.get(1).or(state.clusters.first()) {
        println!(
            "\nTry:\n  {} --kubeconfig {} get ns",
            state.kubectl.display(),
            c.kubeconfig.display()
        );
    }
    println!("Stop with:\n  drbridge env down --dir {}", dir.display());
}

fn status(dir: &std::path::Path) -> anyhow::Result<()> {
    let dir = absolute(dir)?;
    let state = EnvState::load(&dir)?;
    println!(
        "Kubernetes {}, etcd {}",
        state.kubernetes_version, state.etcd_version
    );
    println!(
        "{:<8} {:<28} {:<24} {:>8}  STATE",
        "CLUSTER", "SERVER", "COMPONENT", "PID"
    );
    for c in &state.clusters {
        if c.pids.is_empty() {
            println!(
                "{:<8} {:<28} {:<24} {:>8}  stopped",
                c.name, c.server, "-", "-"
            );
        }
        for (comp, pid) in &c.pids {
            let st = if pid_alive(*pid) { "running" } else { "gone" };
            println!(
                "{:<8} {:<28} {:<24} {:>8}  {st}",
                c.name, c.server, comp, pid
            );
        }
    }
    for p in &state.extra {
        let st = if pid_alive(p.pid) { "running" } else { "gone" };
        println!("{:<8} {:<28} {:<24} {:>8}  {st}", "-", "-", p.name, p.pid);
    }
    Ok(())
}

fn down(dir: &std::path::Path) -> anyhow::Result<()> {
    let dir = absolute(dir)?;
    let state = Env::down(&dir)?;
    eprintln!(
        "✓ stopped {} processes of {} clusters and removed {}",
        state.all_pids().len(),
        state.clusters.len(),
        dir.display()
    );
    Ok(())
}

fn absolute(p: &std::path::Path) -> anyhow::Result<PathBuf> {
    Ok(if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()?.join(p)
    })
}
