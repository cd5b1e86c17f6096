//! Fleet benchmark (not a test): one hub, the real `drbridge-hub` binary in its own process on
//! a real API server (kube-apiserver + etcd on loopback), and CLUSTERS simulated agents (the
//! real agent over an in-memory cluster, one mutual-TLS stream each, all in this process)
//! with WORKS works each. Under a steady churn of ManifestWork spec updates it measures
//!
//! * A: hub write (the spec patch sent) → the agent writing the new manifest to its cluster;
//! * B: that write → the work's status at the new generation seen on the hub (a watch);
//! * the hub's own `status_latency_seconds{kind="work"}` (agent's observation → status
//!   written), from its `/metrics`;
//! * hub RSS and CPU (`/proc/PID` of the hub process), and the CPU of the API server, etcd,
//!   this process (the agents) and the whole machine, so each figure names its bottleneck;
//! * API-server requests per second, from `apiserver_request_total` by resource: only the hub
//!   and this benchmark touch ManifestWorks and ManagedClusters, and the benchmark's own
//!   requests (spec patches, one watch) are counted and subtracted.
//!
//! Then the hub is killed (SIGKILL), one work per cluster is changed while it is down, and it
//! is started again: the reconnect storm's times until it listens, every agent is connected,
//! every change made meanwhile is applied and reported, and every status is consistent; it
//! fails if any status regressed or anything was deleted on any cluster.
//!
//! cargo bench -p drbridge-integration-tests --bench fleet [-- CLUSTERS... [agent]]
//!
//! `agent`: also the real `drbridge-agent` binary on a real API server with
//! DRBRIDGE_FLEET_AGENT_WORKS (500) applied works, and its RSS. DRBRIDGE_FLEET_WORKS (10)
//! works per cluster, DRBRIDGE_FLEET_RATE (50) updates per second across the fleet for
//! DRBRIDGE_FLEET_SECONDS (30). DRBRIDGE_FLEET_CSV and DRBRIDGE_FLEET_SVG: where to write the
//! rows and the plot.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use drbridge_integration_tests::bench::*;
use drbridge_integration_tests::bridge::{Bridge, BridgeOptions, SimulatedWrite};
use drbridge_integration_tests::works::*;
use futures::StreamExt;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use tokio::sync::{mpsc, watch};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// (cluster, work, generation).
type Version = (String, String, i64);

/// When each work generation's manifest reached its simulated cluster, and when the hub
/// showed its status; `changed` ticks on every new entry.
#[derive(Default)]
struct Seen {
    applied: HashMap<Version, Instant>,
    reported: HashMap<Version, Instant>,
    /// Each work's (generation, Applied observedGeneration, Available) on the hub.
    works: HashMap<(String, String), (i64, i64, bool)>,
}

struct Observer {
    seen: Arc<Mutex<Seen>>,
    changed: watch::Receiver<u64>,
    _tasks: Vec<AbortOnDrop>,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Observer {
    /// Follows the simulated clusters' writes and every ManifestWork on the hub.
    fn start(hub: kube::Client, mut writes: mpsc::UnboundedReceiver<SimulatedWrite>) -> Observer {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (tick, changed) = watch::channel(0u64);
        let tick = Arc::new(tick);
        let (s, t) = (seen.clone(), tick.clone());
        let taps = tokio::spawn(async move {
            while let Some(w) = writes.recv().await {
                let name = w.object["metadata"]["name"].as_str().unwrap_or_default();
                let Some(generation) = w.object["data"]["v"].as_str().and_then(|v| v.parse().ok())
                else {
                    continue;
                };
                s.lock()
                    .unwrap()
                    .applied
                    .entry((w.cluster, name.to_string(), generation))
                    .or_insert(w.at);
                t.send_modify(|n| *n += 1);
            }
        });
        let (s, t) = (seen.clone(), tick);
        let api: Api<DynamicObject> = Api::all_with(hub, &drbridge_hub::objects::work_resource());
        let works = tokio::spawn(async move {
            let mut stream = watcher(api, watcher::Config::default())
                .default_backoff()
                .boxed();
            while let Some(ev) = stream.next().await {
                // A broken watch is resumed by the backoff; its error is no event.
                let Ok(ev) = ev else { continue };
                let now = Instant::now();
                let objs = match ev {
                    watcher::Event::Apply(o) | watcher::Event::InitApply(o) => vec![o],
                    _ => continue,
                };
                let mut seen = s.lock().unwrap();
                for mw in objs {
                    let ns = mw.metadata.namespace.clone().unwrap_or_default();
                    let name = mw.metadata.name.clone().unwrap_or_default();
                    let generation = mw.metadata.generation.unwrap_or_default();
                    let (applied, available) = applied_available(&mw);
                    if applied >= 1 {
                        seen.reported
                            .entry((ns.clone(), name.clone(), applied))
                            .or_insert(now);
                    }
                    seen.works
                        .insert((ns, name), (generation, applied, available));
                }
                drop(seen);
                t.send_modify(|n| *n += 1);
            }
        });
        Observer {
            seen,
            changed,
            _tasks: vec![AbortOnDrop(taps), AbortOnDrop(works)],
        }
    }

    /// Waits until `done` holds of what was seen, at most `within`; false if it never did.
    async fn wait(&mut self, within: Duration, done: impl Fn(&Seen) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if done(&self.seen.lock().unwrap()) {
                return true;
            }
            if tokio::time::timeout_at(deadline, self.changed.changed())
                .await
                .is_err()
            {
                return done(&self.seen.lock().unwrap());
            }
        }
    }

    /// How many of the works in `want` are not yet Applied and Available at their
    /// generation, as the hub shows them.
    fn inconsistent(&self) -> usize {
        self.seen
            .lock()
            .unwrap()
            .works
            .values()
            .filter(|(g, applied, available)| applied != g || !available)
            .count()
    }
}

/// Sets work `name` of `cluster` to carry `generation` in its ConfigMap (one spec change:
/// the generation goes up by one), returning when the API server answered, and the
/// generation it gave.
async fn bump(hub: &kube::Client, cluster: &str, name: &str, generation: i64) -> i64 {
    let patch = json!({"spec": {"workload": {"manifests": [
        configmap("app", name, json!({"v": generation.to_string()}))
    ]}}});
    let mw = mw_api(hub, cluster)
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap_or_else(|e| panic!("patching {cluster}/{name}: {e}"));
    mw.metadata.generation.unwrap_or_default()
}

/// drbridge-hub and drbridge-agent built in this benchmark's profile (release), beside it.
fn release_programs() -> (PathBuf, PathBuf) {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let mut cargo = std::process::Command::new(env!("CARGO"));
    // What cargo set for this benchmark's run (its package's CARGO_*, OUT_DIR, library
    // paths) would differ from an outer build's environment, and build scripts that watch
    // it (ring's) would make each of the two builds recompile what the other built.
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        let keep = ["CARGO_TARGET_DIR", "CARGO_HOME"].contains(&k.as_str());
        if (k.starts_with("CARGO_") && !keep)
            || ["OUT_DIR", "LD_LIBRARY_PATH", "CARGO"].contains(&k.as_str())
        {
            cargo.env_remove(&k);
        }
    }
    let status = cargo
        .current_dir(drbridge_integration_tests::repo_root())
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "drbridge-hub",
            "-p",
            "drbridge-agent",
        ])
        .status()
        .expect("running cargo");
    assert!(status.success(), "building drbridge-hub and drbridge-agent");
    (dir.join("drbridge-hub"), dir.join("drbridge-agent"))
}

/// The hub cluster API server's `/metrics`, through kubectl.
fn apiserver_metrics(b: &Bridge) -> String {
    let out = std::process::Command::new(b.env.kubectl())
        .arg(format!(
            "--kubeconfig={}",
            b.env.kubeconfig("hub").unwrap().display()
        ))
        .args(["get", "--raw", "/metrics"])
        .output()
        .expect("kubectl get --raw /metrics");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn pid_of(b: &Bridge, name: &str) -> Option<u32> {
    b.env
        .state()
        .all_pids()
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, p)| p)
}

/// CPU used so far by the processes that share the machine.
struct Cpu {
    at: Instant,
    hub: ProcUsage,
    apiserver: ProcUsage,
    etcd: ProcUsage,
    bench: ProcUsage,
    machine: Duration,
}

impl Cpu {
    fn read(b: &Bridge) -> Cpu {
        let usage = |pid: Option<u32>| pid.and_then(ProcUsage::read).unwrap_or_default();
        Cpu {
            at: Instant::now(),
            hub: usage(b.hub_process().map(|(p, _)| p)),
            apiserver: usage(pid_of(b, "hub/kube-apiserver")),
            etcd: usage(pid_of(b, "hub/etcd")),
            bench: usage(Some(std::process::id())),
            machine: machine_busy(),
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn sorted(mut v: Vec<Duration>) -> Vec<Duration> {
    v.sort();
    v
}

/// One scale's figures.
#[derive(Clone, Debug, Default)]
struct Row {
    clusters: usize,
    works: usize,
    rate: f64,
    a_p50: f64,
    a_p99: f64,
    b_p50: f64,
    b_p99: f64,
    hub_status_p50: f64,
    hub_status_p99: f64,
    patch_p99: f64,
    hub_rss_mib: f64,
    hub_peak_mib: f64,
    hub_cores: f64,
    apiserver_cores: f64,
    etcd_cores: f64,
    bench_cores: f64,
    machine_cores: f64,
    hub_requests_per_s: f64,
    restart_listen_s: f64,
    restart_connected_s: f64,
    restart_resynced_s: f64,
    restart_consistent_s: f64,
    restart_hub_peak_mib: f64,
}

const CSV_HEADER: &str = "clusters,works,rate,a_p50_ms,a_p99_ms,b_p50_ms,b_p99_ms,hub_status_p50_ms,hub_status_p99_ms,patch_p99_ms,hub_rss_mib,hub_peak_mib,hub_cores,apiserver_cores,etcd_cores,bench_cores,machine_cores,hub_requests_per_s,restart_listen_s,restart_connected_s,restart_resynced_s,restart_consistent_s,restart_hub_peak_mib";

impl Row {
    fn csv(&self) -> String {
        format!(
            "{},{},{:.1},{:.1},{:.1},{:.1},{:.1},{:.1},{:.1},{:.1},{:.1},{:.1},{:.2},{:.2},{:.2},{:.2},{:.2},{:.1},{:.1},{:.1},{:.1},{:.1},{:.1}",
            self.clusters,
            self.works,
            self.rate,
            self.a_p50,
            self.a_p99,
            self.b_p50,
            self.b_p99,
            self.hub_status_p50,
            self.hub_status_p99,
            self.patch_p99,
            self.hub_rss_mib,
            self.hub_peak_mib,
            self.hub_cores,
            self.apiserver_cores,
            self.etcd_cores,
            self.bench_cores,
            self.machine_cores,
            self.hub_requests_per_s,
            self.restart_listen_s,
            self.restart_connected_s,
            self.restart_resynced_s,
            self.restart_consistent_s,
            self.restart_hub_peak_mib,
        )
    }
}

/// The hub's work status histogram (every cluster's agent's observation → written).
async fn hub_status_histogram(b: &Bridge) -> Series {
    let (_, admin) = b.hub_process().expect("the hub runs");
    let text = http_get(admin, "/metrics").await.unwrap_or_default();
    histograms(&text, "drbridge_hub_status_latency_seconds")
        .into_iter()
        .filter(|(labels, _)| labels.contains("kind=\"work\""))
        .fold(Series::default(), |mut acc, (_, s)| {
            acc.add(&s);
            acc
        })
}

async fn run_scale(clusters: usize, works: usize, hub_program: &Path) -> Row {
    let rate: f64 = env_or("DRBRIDGE_FLEET_RATE", 50.0);
    let seconds: u64 = env_or("DRBRIDGE_FLEET_SECONDS", 30);
    let names: Vec<String> = (0..clusters).map(|i| format!("sim{i:04}")).collect();
    let (writes_tx, writes_rx) = mpsc::unbounded_channel();
    let opts = BridgeOptions {
        simulated: names.clone(),
        simulated_writes: Some(writes_tx),
        hub_program: Some(hub_program.to_path_buf()),
        ..Default::default()
    };
    eprintln!("[{clusters}] starting the hub process and {clusters} simulated agents ...");
    let t = Instant::now();
    let mut b = Bridge::start_with(&[], opts).await;
    eprintln!(
        "[{clusters}] connected in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    let hub = b.hub_client().await;
    let mut obs = Observer::start(hub.clone(), writes_rx);

    // Every work at generation 1, created a few at a time.
    let t = Instant::now();
    let all: Vec<(String, String)> = (0..works)
        .flat_map(|w| names.iter().map(move |c| (c.clone(), format!("w{w}"))))
        .collect();
    futures::stream::iter(all.iter().cloned())
        .for_each_concurrent(16, |(c, w)| {
            let hub = hub.clone();
            async move {
                create_mw(
                    &hub,
                    &c,
                    &w,
                    vec![configmap("app", &w, json!({"v": "1"}))],
                    None,
                )
                .await;
            }
        })
        .await;
    let total = all.len();
    let ok = obs
        .wait(Duration::from_secs(1800), |s| {
            s.works.len() == total && s.works.values().all(|(_, a, av)| *a >= 1 && *av)
        })
        .await;
    assert!(ok, "[{clusters}] not every work applied within 30 minutes");
    eprintln!(
        "[{clusters}] {total} works created, applied and reported in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    let idle_rss = b
        .hub_process()
        .and_then(|(p, _)| ProcUsage::read(p))
        .unwrap_or_default();

    // Churn: `rate` spec updates a second, round robin over every work (consecutive ones on
    // different clusters), at most 64 in flight.
    let generation: Arc<Mutex<HashMap<(String, String), i64>>> =
        Arc::new(Mutex::new(all.iter().map(|k| (k.clone(), 1)).collect()));
    let sent: Arc<Mutex<Vec<(Version, Instant, Instant)>>> = Arc::default();
    let api_before = apiserver_requests(&apiserver_metrics(&b));
    let hist_before = hub_status_histogram(&b).await;
    let cpu_before = Cpu::read(&b);
    let slots = Arc::new(tokio::sync::Semaphore::new(64));
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    let churn_end = Instant::now() + Duration::from_secs(seconds);
    let mut next = 0usize;
    let mut tasks = Vec::new();
    while Instant::now() < churn_end {
        tick.tick().await;
        let key = all[next % all.len()].clone();
        next += 1;
        let want = {
            let mut g = generation.lock().unwrap();
            let e = g.get_mut(&key).unwrap();
            *e += 1;
            *e
        };
        let permit = slots.clone().acquire_owned().await.unwrap();
        let (hub, sent) = (hub.clone(), sent.clone());
        tasks.push(tokio::spawn(async move {
            let start = Instant::now();
            let got = bump(&hub, &key.0, &key.1, want).await;
            assert_eq!(got, want, "only the benchmark changes specs");
            sent.lock()
                .unwrap()
                .push(((key.0, key.1, want), start, Instant::now()));
            drop(permit);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let churn_wall = cpu_before.at.elapsed();
    let cpu_after = Cpu::read(&b);
    let api_after = apiserver_requests(&apiserver_metrics(&b));
    let sent = std::mem::take(&mut *sent.lock().unwrap());
    let achieved = sent.len() as f64 / churn_wall.as_secs_f64();
    let want: Vec<Version> = sent.iter().map(|(v, _, _)| v.clone()).collect();
    let ok = obs
        .wait(Duration::from_secs(300), |s| {
            want.iter()
                .all(|v| s.applied.contains_key(v) && s.reported.contains_key(v))
        })
        .await;
    assert!(ok, "[{clusters}] not every update applied and reported");
    let hist = hub_status_histogram(&b).await.since(&hist_before);
    let (a, bl): (Vec<Duration>, Vec<Duration>) = {
        let s = obs.seen.lock().unwrap();
        sent.iter()
            .map(|(v, start, _)| {
                let applied = s.applied[v];
                (
                    applied.saturating_duration_since(*start),
                    s.reported[v].saturating_duration_since(applied),
                )
            })
            .unzip()
    };
    let (a, bl) = (sorted(a), sorted(bl));
    let patch = sorted(sent.iter().map(|(_, s, e)| *e - *s).collect());
    let hub_now = b
        .hub_process()
        .and_then(|(p, _)| ProcUsage::read(p))
        .unwrap_or_default();

    // Requests: only the hub and this benchmark touch these resources; the benchmark's are
    // its spec patches (and one long-running watch, opened before the window).
    let mut hub_requests = 0.0;
    let mut breakdown = Vec::new();
    for (k, after) in &api_after {
        let d = after - api_before.get(k).copied().unwrap_or(0.0);
        // Below one request a minute: watches opened once, the API server's own polling.
        if d / churn_wall.as_secs_f64() < 1.0 / 60.0 {
            continue;
        }
        let ours = ["manifestworks", "managedclusters", "managedclusterviews"]
            .iter()
            .any(|r| k.1 == *r || k.1.starts_with(&format!("{r}/")));
        let mut hubs = d;
        if k.0 == "PATCH" && k.1 == "manifestworks" {
            hubs -= sent.len() as f64;
        }
        if ours {
            hub_requests += hubs.max(0.0);
        }
        breakdown.push(format!(
            "{} {}: {:.1}/s{}",
            k.0,
            k.1,
            d / churn_wall.as_secs_f64(),
            if !ours {
                " (not the hub: API server, controller-manager, kubectl)"
            } else if k.0 == "PATCH" && k.1 == "manifestworks" {
                " (of which the benchmark's spec patches: the rest is the hub)"
            } else {
                " (the hub)"
            }
        ));
    }

    let mut row = Row {
        clusters,
        works,
        rate: achieved,
        a_p50: ms(percentile(&a, 0.50)),
        a_p99: ms(percentile(&a, 0.99)),
        b_p50: ms(percentile(&bl, 0.50)),
        b_p99: ms(percentile(&bl, 0.99)),
        hub_status_p50: quantile(&hist, 0.50) * 1e3,
        hub_status_p99: quantile(&hist, 0.99) * 1e3,
        patch_p99: ms(percentile(&patch, 0.99)),
        hub_rss_mib: mib(hub_now.rss),
        hub_peak_mib: mib(hub_now.peak_rss),
        hub_cores: cpu_after.hub.cores_since(&cpu_before.hub, churn_wall),
        apiserver_cores: cpu_after
            .apiserver
            .cores_since(&cpu_before.apiserver, churn_wall),
        etcd_cores: cpu_after.etcd.cores_since(&cpu_before.etcd, churn_wall),
        bench_cores: cpu_after.bench.cores_since(&cpu_before.bench, churn_wall),
        machine_cores: cpu_after
            .machine
            .saturating_sub(cpu_before.machine)
            .as_secs_f64()
            / churn_wall.as_secs_f64(),
        hub_requests_per_s: hub_requests / churn_wall.as_secs_f64(),
        ..Default::default()
    };
    println!(
        "fleet: {clusters} simulated agents x {works} works, churn {achieved:.1} updates/s for {:.0}s ({} updates)",
        churn_wall.as_secs_f64(),
        sent.len()
    );
    println!(
        "  A hub write -> on the agent's cluster     p50 {:7.1} ms  p99 {:7.1} ms   (of which the spec patch's own API call: p50 {:.1} ms, p99 {:.1} ms)",
        row.a_p50,
        row.a_p99,
        ms(percentile(&patch, 0.5)),
        row.patch_p99
    );
    println!(
        "  B on the cluster -> status seen on hub    p50 {:7.1} ms  p99 {:7.1} ms   (agent's 50 ms debounce, the hub's write, the benchmark's watch)",
        row.b_p50, row.b_p99
    );
    println!(
        "  hub status_latency_seconds{{kind=work}}    p50 {:7.1} ms  p99 {:7.1} ms   (n={}, agent's observation -> written; buckets double from 5 ms)",
        row.hub_status_p50, row.hub_status_p99, hist.count
    );
    println!(
        "  hub RSS {:.1} MiB (idle before churn {:.1} MiB, peak {:.1} MiB)",
        row.hub_rss_mib,
        mib(idle_rss.rss),
        row.hub_peak_mib
    );
    println!(
        "  CPU cores during churn: hub {:.2}, kube-apiserver {:.2}, etcd {:.2}, this process (agents, churn, watch) {:.2}; machine {:.2} of {}",
        row.hub_cores,
        row.apiserver_cores,
        row.etcd_cores,
        row.bench_cores,
        row.machine_cores,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "  load average (1 min) at the end of churn: {} (anything above ~2 waits for a core; other builds share the machine)",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .next()
            .unwrap_or("?")
    );
    println!("  API requests by the hub: {:.1}/s", row.hub_requests_per_s);
    for line in &breakdown {
        println!("    {line}");
    }

    // The reconnect storm.
    let before = Snapshot::take(&b, &names).await;
    let mut connected: Vec<_> = names.iter().map(|c| b.agent_connected(c)).collect();
    b.crash_hub().await;
    for c in &mut connected {
        tokio::time::timeout(Duration::from_secs(60), c.wait_for(|up| !*up))
            .await
            .expect("every agent notices the hub is gone")
            .unwrap();
    }
    // A change on every cluster while the hub is down: only the resync can carry it.
    let down: Vec<Version> = futures::stream::iter(names.iter().cloned())
        .map(|c| {
            let hub = hub.clone();
            let generation = generation.clone();
            async move {
                let key = (c.clone(), "w0".to_string());
                let want = {
                    let mut g = generation.lock().unwrap();
                    let e = g.get_mut(&key).unwrap();
                    *e += 1;
                    *e
                };
                assert_eq!(bump(&hub, &c, "w0", want).await, want);
                (c, "w0".to_string(), want)
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let started = Instant::now();
    b.start_hub().await;
    let to_listen = started.elapsed();
    for c in &mut connected {
        tokio::time::timeout(Duration::from_secs(300), c.wait_for(|up| *up))
            .await
            .expect("every agent connects again")
            .unwrap();
    }
    let to_connected = started.elapsed();
    let ok = obs
        .wait(Duration::from_secs(300), |s| {
            down.iter()
                .all(|v| s.applied.contains_key(v) && s.reported.contains_key(v))
        })
        .await;
    assert!(
        ok,
        "[{clusters}] the changes made while the hub was down did not all arrive"
    );
    let to_resynced = started.elapsed();
    let ok = obs
        .wait(Duration::from_secs(300), |s| {
            s.works
                .values()
                .all(|(g, applied, available)| applied == g && *available)
        })
        .await;
    assert!(
        ok,
        "[{clusters}] {} works' status not consistent",
        obs.inconsistent()
    );
    let to_consistent = started.elapsed();
    let losses = before.check(&b).await;
    let peak = b
        .hub_process()
        .and_then(|(p, _)| ProcUsage::read(p))
        .unwrap_or_default();
    row.restart_listen_s = to_listen.as_secs_f64();
    row.restart_connected_s = to_connected.as_secs_f64();
    row.restart_resynced_s = to_resynced.as_secs_f64();
    row.restart_consistent_s = to_consistent.as_secs_f64();
    row.restart_hub_peak_mib = mib(peak.peak_rss);
    println!("  hub killed (SIGKILL), w0 of every cluster changed meanwhile, hub started again:");
    println!(
        "    listening after          {:6.1}s (its watches listed every object)",
        row.restart_listen_s
    );
    println!(
        "    every agent connected    {:6.1}s",
        row.restart_connected_s
    );
    println!(
        "    every agent resynced     {:6.1}s (each change made while down applied and reported)",
        row.restart_resynced_s
    );
    println!(
        "    every status consistent  {:6.1}s (all {total} works Applied and Available at their generation)",
        row.restart_consistent_s
    );
    println!(
        "    hub RSS after {:.1} MiB, peak of the new process {:.1} MiB",
        mib(peak.rss),
        row.restart_hub_peak_mib
    );
    println!("    {losses}");
    assert!(losses.none(), "{losses:?}");
    row
}

/// The real agent binary on a real API server with `works` applied works: its RSS.
async fn agent_rss(works: usize, hub_program: &Path, agent_program: &Path) {
    let mut env = drbridge_localenv::Env::start_for_test(&["hub", "dr1"])
        .await
        .expect("control planes start");
    drbridge_testbed::drbridge::start(
        &mut env,
        hub_program,
        agent_program,
        Duration::from_secs(120),
        &drbridge_testbed::drbridge::Options {
            // ConfigMaps are not among Ramen's kinds, which the default allowlist admits alone.
            agent_args: &["--allow-all"],
            ..Default::default()
        },
    )
    .await
    .expect("drbridge starts");
    let hub = env.client("hub").await.unwrap();
    create_ns(&env.client("dr1").await.unwrap(), "app").await;
    let names: Vec<String> = (0..works).map(|i| format!("dr1/a{i}")).collect();
    let t = Instant::now();
    futures::stream::iter(0..works)
        .for_each_concurrent(16, |i| {
            let hub = hub.clone();
            async move {
                let name = format!("a{i}");
                let data = json!({"v": "1", "payload": "x".repeat(512)});
                create_mw(
                    &hub,
                    "dr1",
                    &name,
                    vec![configmap("app", &name, data)],
                    None,
                )
                .await;
            }
        })
        .await;
    wait_all_applied(&hub, &names, Duration::from_secs(600)).await;
    let pid = env
        .state()
        .all_pids()
        .into_iter()
        .find(|(n, _)| n == "drbridge-agent-dr1")
        .map(|(_, p)| p)
        .expect("the agent runs");
    let u = ProcUsage::read(pid).expect("the agent runs");
    println!(
        "agent: the drbridge-agent binary on a real API server, {works} works (one ConfigMap each) applied in {:.1}s: RSS {:.1} MiB, peak {:.1} MiB",
        t.elapsed().as_secs_f64(),
        mib(u.rss),
        mib(u.peak_rss)
    );
}

/// Latency (A p50, A p99) and hub memory against clusters, log x: a small hand-made SVG.
fn svg(rows: &[Row]) -> String {
    let (w, h, pad) = (360.0, 240.0, 50.0);
    let xs: Vec<f64> = rows.iter().map(|r| (r.clusters as f64).log10()).collect();
    let (x0, x1) = (2.0f64.min(xs[0]), 4.0f64.max(*xs.last().unwrap()));
    let x = |v: f64, left: f64| left + pad + (v - x0) / (x1 - x0) * (w - 1.5 * pad);
    let panel = |left: f64, title: &str, unit: &str, series: &[(&str, &str, Vec<f64>)]| {
        let max = series
            .iter()
            .flat_map(|(_, _, v)| v.iter().copied())
            .fold(1.0f64, f64::max)
            * 1.15;
        let y = |v: f64| h - pad + -(v / max) * (h - 1.6 * pad);
        let mut out = format!(
            r#"<text x="{}" y="20" font-size="13" text-anchor="middle">{title}</text>
<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="black"/>
<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="black"/>
<text x="{}" y="{}" font-size="11" text-anchor="middle">managed clusters (log)</text>
<text x="{}" y="{}" font-size="11">{unit}</text>
"#,
            left + w / 2.0,
            left + pad,
            h - pad,
            left + w - pad / 2.0,
            h - pad,
            left + pad,
            h - pad,
            left + pad,
            pad * 0.6,
            left + w / 2.0,
            h - 12.0,
            left + 4.0,
            pad * 0.6 - 8.0,
        );
        for (i, r) in rows.iter().enumerate() {
            out += &format!(
                r#"<text x="{:.1}" y="{}" font-size="10" text-anchor="middle">{}</text>
"#,
                x(xs[i], left),
                h - pad + 14.0,
                r.clusters
            );
        }
        for k in 0..=4 {
            let v = max / 1.15 * k as f64 / 4.0;
            out += &format!(
                r#"<text x="{}" y="{:.1}" font-size="10" text-anchor="end">{:.0}</text>
"#,
                left + pad - 4.0,
                y(v) + 3.0,
                v
            );
        }
        for (j, (name, color, vals)) in series.iter().enumerate() {
            let pts: Vec<String> = vals
                .iter()
                .enumerate()
                .map(|(i, v)| format!("{:.1},{:.1}", x(xs[i], left), y(*v)))
                .collect();
            out += &format!(
                r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>
"#,
                pts.join(" ")
            );
            for p in &pts {
                let (px, py) = p.split_once(',').unwrap();
                out += &format!(r#"<circle cx="{px}" cy="{py}" r="3" fill="{color}"/>"#);
            }
            out += &format!(
                r#"<text x="{}" y="{}" font-size="11" fill="{color}">{name}</text>
"#,
                left + pad + 8.0,
                pad * 0.6 + 16.0 + 14.0 * j as f64
            );
        }
        out
    };
    let a50: Vec<f64> = rows.iter().map(|r| r.a_p50).collect();
    let a99: Vec<f64> = rows.iter().map(|r| r.a_p99).collect();
    let rss: Vec<f64> = rows.iter().map(|r| r.hub_rss_mib).collect();
    let peak: Vec<f64> = rows.iter().map(|r| r.restart_hub_peak_mib).collect();
    format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{h}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
{}{}</svg>
"#,
        2.0 * w,
        panel(
            0.0,
            "hub write → agent, under churn",
            "ms",
            &[("p50", "#1f77b4", a50), ("p99", "#d62728", a99)]
        ),
        panel(
            w,
            "hub memory",
            "MiB",
            &[
                ("RSS under churn", "#2ca02c", rss),
                ("peak after restart", "#9467bd", peak)
            ]
        ),
    )
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    drbridge_integration_tests::init_logging();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut scales: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let with_agent = args.iter().any(|a| a == "agent");
    if scales.is_empty() && !with_agent {
        scales.push(100);
    }
    let works: usize = env_or("DRBRIDGE_FLEET_WORKS", 10);
    let (hub_program, agent_program) = release_programs();
    let mut rows = Vec::new();
    for &n in &scales {
        let row = run_scale(n, works, &hub_program).await;
        rows.push(row);
        // Every row as it comes: a later scale may not finish.
        let csv: Vec<String> = std::iter::once(CSV_HEADER.to_string())
            .chain(rows.iter().map(Row::csv))
            .collect();
        let csv = csv.join("\n") + "\n";
        println!("{csv}");
        if let Ok(path) = std::env::var("DRBRIDGE_FLEET_CSV") {
            std::fs::write(&path, &csv).expect("writing the CSV");
        }
        if let Ok(path) = std::env::var("DRBRIDGE_FLEET_SVG") {
            std::fs::write(&path, svg(&rows)).expect("writing the SVG");
        }
    }
    if with_agent {
        let n = env_or("DRBRIDGE_FLEET_AGENT_WORKS", 500);
        agent_rss(n, &hub_program, &agent_program).await;
    }
}
