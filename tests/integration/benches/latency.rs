//! Latency benchmark (not a test): prints p50/p90/p99/max of
//!   A. hub ManifestWork write -> object applied on the spoke,
//!   B. spoke object change -> ManifestWork status on the hub,
//!   C. spoke object change -> ManagedClusterView status.result on the hub,
//! with 2 managed clusters, 200 works and 200 views, on real control planes
//! over real mTLS on loopback. At the end it prints the latency histograms the hub and
//! agents export (work delivery, status latency, apply duration).
//!
//! With `--ocm` it then measures OCM's own work agent (`open-cluster-management.io/ocm`
//! v1.2.0, built from its module the first time) on the same kind of control planes: the
//! same works for A and B, and for C the nearest OCM has without its view controller, a
//! ReadOnly ManifestWork whose JSONPath status feedback watches the object (C′). It runs
//! after drbridge's phase with drbridge stopped and on clusters of its own, once per
//! [`drbridge_integration_tests::ocm::profiles`], and prints both side by side, with the
//! time drbridge takes to report a killed agent's cluster lost beside OCM's lease (cited).
//! It ends by checking whether drbridge-hub leaves OCM's finalizer alone.
//!
//! cargo bench -p drbridge-integration-tests --bench latency [-- [--ocm] [WORKS]]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use drbridge_api::cluster::ManagedCluster;
use drbridge_integration_tests::bench::{histograms, quantile};
use drbridge_integration_tests::bridge::Bridge;
use drbridge_integration_tests::ocm::{self, Figures, Row, Summary};
use drbridge_integration_tests::works::*;
use drbridge_localenv::within;
use drbridge_localenv::{Env, releases};
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde_json::json;
use tokio::task::JoinHandle;

type Seen = Arc<Mutex<HashMap<String, Instant>>>;

/// Prints the transport's latency histograms as the processes export them.
fn report_histograms(texts: &[(String, String)]) {
    println!("Histograms from the hub's and agents' /metrics (quantiles as histogram_quantile):");
    for name in [
        "drbridge_hub_work_delivery_seconds",
        "drbridge_hub_status_latency_seconds",
        "drbridge_agent_apply_duration_seconds",
    ] {
        for (process, text) in texts {
            for (labels, s) in histograms(text, name) {
                if s.count == 0.0 {
                    continue;
                }
                println!(
                    "  {process:10} {name}{{{labels}}}: n={} mean={:.1}ms p50={:.1}ms p90={:.1}ms p99={:.1}ms",
                    s.count,
                    s.sum / s.count * 1e3,
                    quantile(&s, 0.50) * 1e3,
                    quantile(&s, 0.90) * 1e3,
                    quantile(&s, 0.99) * 1e3,
                );
            }
        }
    }
}

/// Records the first time `key(obj)` returns Some for each object.
fn spawn_watch<K, F>(api: Api<K>, seen: Seen, key: F) -> tokio::task::JoinHandle<()>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
    F: Fn(&K) -> Option<String> + Send + 'static,
{
    tokio::spawn(async move {
        let mut s = watcher(api, watcher::Config::default()).boxed();
        while let Some(ev) = s.next().await {
            let now = Instant::now();
            let objs = match ev {
                Ok(watcher::Event::Apply(o)) | Ok(watcher::Event::InitApply(o)) => vec![o],
                _ => vec![],
            };
            for o in objs {
                if let Some(k) = key(&o) {
                    seen.lock().unwrap().entry(k).or_insert(now);
                }
            }
        }
    })
}

/// Waits until every key of `starts` has been seen (other objects, such as the
/// kube-root-ca.crt ConfigMap, do not count), or the timeout passes.
async fn wait_all(seen: &Seen, starts: &HashMap<String, Instant>, timeout: Duration) {
    within(timeout, async || {
        let seen = seen.lock().unwrap();
        starts.keys().all(|k| seen.contains_key(k)).then_some(())
    })
    .await;
}

/// Quantiles of the latencies from `starts` to `seen`, printed as one line.
fn report(name: &str, starts: &HashMap<String, Instant>, seen: &Seen) -> Figures {
    let seen = seen.lock().unwrap();
    let lat: Vec<Duration> = starts
        .iter()
        .filter_map(|(k, t0)| seen.get(k).map(|t| t.saturating_duration_since(*t0)))
        .collect();
    let missing = starts.len() - lat.len();
    if missing > 0 {
        let mut gone: Vec<&String> = starts.keys().filter(|k| !seen.contains_key(*k)).collect();
        gone.sort();
        eprintln!("{name}: never seen: {gone:?}");
    }
    let Some(s) = Summary::of(lat, missing) else {
        println!("{name}: no samples ({missing} missing)");
        return Figures::Missing;
    };
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{name}: n={} p50={:.1}ms p90={:.1}ms p99={:.1}ms max={:.1}ms{}",
        s.n,
        ms(s.p50),
        ms(s.p90),
        ms(s.p99),
        ms(s.max),
        if missing > 0 {
            format!(" ({missing} missing)")
        } else {
            String::new()
        }
    );
    Figures::Measured(s)
}

/// A managed cluster as the bench reaches it.
struct Spoke {
    name: String,
    client: kube::Client,
}

/// The first of a work's `status.resourceStatus.manifests` feedback values named `v`.
fn feedback_v(mw: &DynamicObject) -> Option<&str> {
    mw.data["status"]["resourceStatus"]["manifests"][0]["statusFeedback"]["values"]
        .as_array()?
        .iter()
        .find(|v| v["name"] == "v")?["fieldValue"]["string"]
        .as_str()
}

fn mw_name(mw: &DynamicObject) -> String {
    mw.metadata.name.clone().unwrap_or_default()
}

/// A: works `{prefix}w{i}` created on the hub, each with ConfigMap `{prefix}c{i}` in
/// `bench`, until each ConfigMap exists on its spoke.
async fn measure_a(
    hub: &kube::Client,
    spokes: &[Spoke],
    prefix: &str,
    per: usize,
    timeout: Duration,
    watches: &mut Vec<JoinHandle<()>>,
) -> Figures {
    let applied: Seen = Arc::default();
    for s in spokes {
        let api: Api<ConfigMap> = Api::namespaced(s.client.clone(), "bench");
        let c = s.name.clone();
        watches.push(spawn_watch(api, applied.clone(), move |cm: &ConfigMap| {
            Some(format!("{c}/{}", cm.metadata.name.clone()?))
        }));
    }
    let mut starts = HashMap::new();
    for i in 0..per {
        for s in spokes {
            let c = &s.name;
            starts.insert(format!("{c}/{prefix}c{i}"), Instant::now());
            create_mw(
                hub,
                c,
                &format!("{prefix}w{i}"),
                vec![configmap(
                    "bench",
                    &format!("{prefix}c{i}"),
                    json!({"i": i.to_string()}),
                )],
                None,
            )
            .await;
        }
    }
    wait_all(&applied, &starts, timeout).await;
    report(
        "A  hub write -> object applied on spoke      ",
        &starts,
        &applied,
    )
}

/// Waits until every work `{c}/{name}` of `keys` is Applied and Available at its
/// generation; false if the deadline passed first.
async fn wait_available(
    hub: &kube::Client,
    spokes: &[Spoke],
    keys: &HashMap<String, Instant>,
    timeout: Duration,
) -> bool {
    let seen: Seen = Arc::default();
    let mut watches = Vec::new();
    for s in spokes {
        let c = s.name.clone();
        watches.push(spawn_watch(
            mw_api(hub, &s.name),
            seen.clone(),
            move |mw: &DynamicObject| {
                let generation = mw.metadata.generation?;
                let ok = |t: &str| {
                    condition(mw, t).is_some_and(|c| {
                        c["status"] == "True"
                            && c["observedGeneration"].as_i64() == Some(generation)
                    })
                };
                (ok("Applied") && ok("Available")).then(|| format!("{c}/{}", mw_name(mw)))
            },
        ));
    }
    wait_all(&seen, keys, timeout).await;
    for w in watches {
        w.abort();
    }
    let seen = seen.lock().unwrap();
    keys.keys().all(|k| seen.contains_key(k))
}

/// B: each ConfigMap of A deleted on its spoke, until its work's Available is no longer True.
async fn measure_b(
    hub: &kube::Client,
    spokes: &[Spoke],
    prefix: &str,
    per: usize,
    timeout: Duration,
    watches: &mut Vec<JoinHandle<()>>,
) -> Figures {
    let works: HashMap<String, Instant> = spokes
        .iter()
        .flat_map(|s| (0..per).map(move |i| (format!("{}/{prefix}w{i}", s.name), Instant::now())))
        .collect();
    if !wait_available(hub, spokes, &works, timeout).await {
        eprintln!("B: not every work of A became Available in time; measuring those that did");
    }
    // Then read each back, as this bench always has before B.
    for s in spokes {
        for i in 0..per {
            wait_applied(hub, &s.name, &format!("{prefix}w{i}")).await;
        }
    }
    let status_seen: Seen = Arc::default();
    for s in spokes {
        let c = s.name.clone();
        watches.push(spawn_watch(
            mw_api(hub, &s.name),
            status_seen.clone(),
            move |mw: &DynamicObject| {
                let avail = condition(mw, "Available")?;
                (avail["status"] != "True").then(|| format!("{c}/{}", mw_name(mw)))
            },
        ));
    }
    let mut starts = HashMap::new();
    for i in 0..per {
        for s in spokes {
            let cms: Api<ConfigMap> = Api::namespaced(s.client.clone(), "bench");
            starts.insert(format!("{}/{prefix}w{i}", s.name), Instant::now());
            cms.delete(&format!("{prefix}c{i}"), &DeleteParams::default())
                .await
                .unwrap();
        }
    }
    wait_all(&status_seen, &starts, timeout).await;
    report(
        "B  spoke change -> ManifestWork status       ",
        &starts,
        &status_seen,
    )
}

/// Creates ConfigMap `{prefix}v{i}` (`v: "0"`) in `bench` on every spoke.
async fn create_viewed(spokes: &[Spoke], prefix: &str, per: usize) {
    for s in spokes {
        let cms: Api<ConfigMap> = Api::namespaced(s.client.clone(), "bench");
        for i in 0..per {
            let cm: ConfigMap = serde_json::from_value(
                json!({"metadata": {"name": format!("{prefix}v{i}")}, "data": {"v": "0"}}),
            )
            .unwrap();
            cms.create(&PostParams::default(), &cm).await.unwrap();
        }
    }
}

/// Sets `v: "1"` on every ConfigMap `{prefix}v{i}`, each key `{c}/{prefix}v{i}` timed.
async fn change_viewed(spokes: &[Spoke], prefix: &str, per: usize) -> HashMap<String, Instant> {
    let mut starts = HashMap::new();
    for i in 0..per {
        for s in spokes {
            let cms: Api<ConfigMap> = Api::namespaced(s.client.clone(), "bench");
            starts.insert(format!("{}/{prefix}v{i}", s.name), Instant::now());
            cms.patch(
                &format!("{prefix}v{i}"),
                &PatchParams::default(),
                &Patch::Merge(json!({"data": {"v": "1"}})),
            )
            .await
            .unwrap();
        }
    }
    starts
}

fn all_keys(spokes: &[Spoke], prefix: &str, per: usize) -> HashMap<String, Instant> {
    spokes
        .iter()
        .flat_map(|s| (0..per).map(move |i| (format!("{}/{prefix}v{i}", s.name), Instant::now())))
        .collect()
}

/// C: a ManagedClusterView of each viewed ConfigMap, until `status.result` holds the change.
async fn measure_c(
    hub: &kube::Client,
    spokes: &[Spoke],
    per: usize,
    watches: &mut Vec<JoinHandle<()>>,
) -> Figures {
    create_viewed(spokes, "", per).await;
    for s in spokes {
        for i in 0..per {
            let mcv: DynamicObject = serde_json::from_value(json!({
                "apiVersion": "view.open-cluster-management.io/v1beta1", "kind": "ManagedClusterView",
                "metadata": {"name": format!("v{i}"), "namespace": s.name},
                "spec": {"scope": {"version": "v1", "kind": "ConfigMap", "name": format!("v{i}"), "namespace": "bench"}},
            }))
            .unwrap();
            mcv_api(hub, &s.name)
                .create(&PostParams::default(), &mcv)
                .await
                .unwrap();
        }
    }
    // Every view answers once before the clock starts.
    let ready: Seen = Arc::default();
    let views_seen: Seen = Arc::default();
    for s in spokes {
        for (seen, want) in [(&ready, "0"), (&views_seen, "1")] {
            let c = s.name.clone();
            watches.push(spawn_watch(
                mcv_api(hub, &s.name),
                seen.clone(),
                move |v: &DynamicObject| {
                    (v.data["status"]["result"]["data"]["v"] == want)
                        .then(|| format!("{c}/{}", mw_name(v)))
                },
            ));
        }
    }
    wait_all(&ready, &all_keys(spokes, "", per), Duration::from_secs(120)).await;
    let starts = change_viewed(spokes, "", per).await;
    wait_all(&views_seen, &starts, Duration::from_secs(120)).await;
    report(
        "C  spoke change -> view status.result        ",
        &starts,
        &views_seen,
    )
}

/// C′: a ReadOnly ManifestWork `{prefix}v{i}` per viewed ConfigMap whose JSONPath feedback
/// rule watches it (`feedbackScrapeType: Watch`), until the feedback holds the change.
async fn measure_feedback(
    hub: &kube::Client,
    spokes: &[Spoke],
    prefix: &str,
    per: usize,
    timeout: Duration,
    watches: &mut Vec<JoinHandle<()>>,
) -> Figures {
    create_viewed(spokes, prefix, per).await;
    for s in spokes {
        for i in 0..per {
            let name = format!("{prefix}v{i}");
            let mut mw = manifestwork(
                &s.name,
                &name,
                vec![json!({"apiVersion": "v1", "kind": "ConfigMap",
                            "metadata": {"name": name, "namespace": "bench"}})],
                None,
            );
            mw.data["spec"]["manifestConfigs"] = json!([{
                "resourceIdentifier": {"group": "", "resource": "configmaps", "name": name, "namespace": "bench"},
                "updateStrategy": {"type": "ReadOnly"},
                "feedbackScrapeType": "Watch",
                "feedbackRules": [{"type": "JSONPaths", "jsonPaths": [{"name": "v", "path": ".data.v"}]}],
            }]);
            mw_api(hub, &s.name)
                .create(&PostParams::default(), &mw)
                .await
                .unwrap_or_else(|e| panic!("creating ManifestWork {}/{name}: {e}", s.name));
        }
    }
    let ready: Seen = Arc::default();
    let seen: Seen = Arc::default();
    for s in spokes {
        for (set, want) in [(&ready, "0"), (&seen, "1")] {
            let c = s.name.clone();
            watches.push(spawn_watch(
                mw_api(hub, &s.name),
                set.clone(),
                move |mw: &DynamicObject| {
                    (feedback_v(mw) == Some(want)).then(|| format!("{c}/{}", mw_name(mw)))
                },
            ));
        }
    }
    wait_all(&ready, &all_keys(spokes, prefix, per), timeout).await;
    let starts = change_viewed(spokes, prefix, per).await;
    wait_all(&seen, &starts, timeout).await;
    report(
        "C′ spoke change -> ReadOnly work feedback    ",
        &starts,
        &seen,
    )
}

/// Deletes every work of `names` per spoke; returns once they are gone from the hub (OCM's
/// agent removes its finalizer after it has deleted what it applied), or false at the deadline.
async fn delete_works(
    hub: &kube::Client,
    spokes: &[Spoke],
    names: &[String],
    timeout: Duration,
) -> bool {
    for s in spokes {
        for n in names {
            let _ = mw_api(hub, &s.name)
                .delete(n, &DeleteParams::default())
                .await;
        }
    }
    let left = || async {
        let mut left = 0;
        for s in spokes {
            let works = mw_api(hub, &s.name).list(&Default::default()).await.ok()?;
            left += works
                .items
                .iter()
                .filter(|w| names.contains(&mw_name(w)))
                .count();
        }
        Some(left)
    };
    within(timeout, async || (left().await == Some(0)).then_some(()))
        .await
        .is_some()
}

/// How many ConfigMaps of `names` are still on the spokes, waiting up to `timeout` for none.
async fn left_on_spokes(spokes: &[Spoke], names: &[String], timeout: Duration) -> usize {
    let count = || async {
        let mut n = 0;
        for s in spokes {
            for name in names {
                if get_cm(&s.client, "bench", name).await.is_some() {
                    n += 1;
                }
            }
        }
        n
    };
    match within(timeout, async || (count().await == 0).then_some(())).await {
        Some(()) => 0,
        None => count().await,
    }
}

/// OCM's AppliedManifestWork CRD, from the `open-cluster-management.io/api` module of
/// the version OCM's go.mod requires (read from the Go module cache, never committed).
fn applied_manifestwork_crd() -> CustomResourceDefinition {
    let ocm = drbridge_localenv::gobuild::module_dir(releases::OCM_MODULE, releases::OCM_VERSION)
        .expect("OCM's module");
    let go_mod = std::fs::read_to_string(ocm.join("go.mod")).expect("OCM's go.mod");
    let api_version =
        drbridge_localenv::gobuild::required_version(&go_mod, releases::OCM_API_MODULE)
            .expect("OCM requires its API module");
    let api = drbridge_localenv::gobuild::module_dir(releases::OCM_API_MODULE, &api_version)
        .expect("OCM's API module");
    let path =
        api.join("work/v1/0000_01_work.open-cluster-management.io_appliedmanifestworks.crd.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    eprintln!("AppliedManifestWork CRD from {}", path.display());
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The OCM leg: every profile's A, B and C′ on clusters of its own, then whether a
/// running drbridge-hub lets OCM's finalizer be: the rows for the table.
async fn ocm_leg(b: &mut Bridge, work_bin: PathBuf, per: usize) -> Vec<Row> {
    let names = ["ocm1", "ocm2"];
    let mut env = Env::start_for_test(&names)
        .await
        .expect("OCM's managed clusters start");
    let hub = b.hub_client().await;
    let hub_kubeconfig = b.env.kubeconfig("hub").unwrap();
    let crd = applied_manifestwork_crd();
    let mut spokes = Vec::new();
    for c in names {
        let client = env.client(c).await.unwrap();
        drbridge_localenv::bridge::apply_crds(&client, std::slice::from_ref(&crd))
            .await
            .expect("AppliedManifestWork CRD");
        create_ns(&client, "bench").await;
        create_ns(&client, "open-cluster-management-agent").await;
        // The agent's hub namespace; no ManagedCluster: the work agent does not read it, and
        // without one drbridge-hub does not serve the namespace.
        create_ns(&hub, c).await;
        spokes.push(Spoke {
            name: c.to_string(),
            client,
        });
    }
    // Status polls of 60 s with 0.9 jitter: up to 114 s, then client throttling.
    let timeout = Duration::from_secs(240);
    let mut rows = Vec::new();
    let profiles = ocm::profiles();
    let last = profiles.len() - 1;
    for (k, p) in profiles.into_iter().enumerate() {
        eprintln!("OCM: {} ...", p.label);
        let mut running = Vec::new();
        for c in names {
            let kubeconfig = env.kubeconfig(c).unwrap();
            let setup = ocm::AgentSetup {
                cluster: c,
                hub_kubeconfig: &hub_kubeconfig,
                spoke_kubeconfig: &kubeconfig,
                listen: std::net::SocketAddr::from((
                    [127, 0, 0, 1],
                    drbridge_localenv::ports::free_port().unwrap(),
                )),
                namespace: "open-cluster-management-agent",
            };
            let name = format!("ocm-work-{c}-{}", p.name);
            env.spawn(&name, &work_bin, &ocm::agent_args(&setup, &p), &[])
                .expect("OCM work agent starts");
            eprintln!("  {name}: log {}", env.log_path(&name).display());
            running.push(name);
        }
        // Up once it has applied a work of its own; the clock starts after that.
        let warm = format!("{}-warm", p.name);
        let mut keys = HashMap::new();
        for s in &spokes {
            create_mw(
                &hub,
                &s.name,
                &warm,
                vec![configmap("bench", &warm, json!({}))],
                None,
            )
            .await;
            keys.insert(format!("{}/{warm}", s.name), Instant::now());
        }
        assert!(
            wait_available(&hub, &spokes, &keys, timeout).await,
            "OCM's agents did not apply their first work; see their logs"
        );
        let prefix = format!("{}-", p.name);
        let mut watches = Vec::new();
        let a = measure_a(&hub, &spokes, &prefix, per, timeout, &mut watches).await;
        let bb = measure_b(&hub, &spokes, &prefix, per, timeout, &mut watches).await;
        let c = measure_feedback(&hub, &spokes, &prefix, per, timeout, &mut watches).await;
        for w in watches {
            w.abort();
        }
        for (path, figures) in [("A", a), ("B", bb), ("C′", c)] {
            rows.push(Row {
                path: path.into(),
                run: p.label.into(),
                figures,
            });
        }
        let mut works: Vec<String> = (0..per)
            .flat_map(|i| [format!("{prefix}w{i}"), format!("{prefix}v{i}")])
            .collect();
        works.push(warm);
        if !delete_works(&hub, &spokes, &works, timeout).await {
            eprintln!("OCM: some works of {} were not deleted in time", p.name);
        }
        if k == last {
            finalizer_check(b, &hub, &spokes).await;
        }
        for name in running {
            env.stop_process(&name).unwrap();
        }
    }
    rows
}

/// Whether drbridge-hub leaves OCM's finalizer alone on works in a namespace it does not
/// serve: works applied by OCM's agents are deleted first with drbridge-hub stopped, then
/// with it running. With OCM's finalizer honoured a work is gone only after what it applied;
/// removed early, the objects stay on the spoke (OCM evicts them after a 60-minute grace).
async fn finalizer_check(b: &mut Bridge, hub: &kube::Client, spokes: &[Spoke]) {
    for with_hub in [false, true] {
        if with_hub {
            b.start_hub().await;
        }
        let tag = if with_hub { "fin-hub" } else { "fin-alone" };
        let n = 10;
        let mut keys = HashMap::new();
        let names: Vec<String> = (0..n).map(|i| format!("{tag}-c{i}")).collect();
        let works: Vec<String> = (0..n).map(|i| format!("{tag}-w{i}")).collect();
        for (w, cm) in works.iter().zip(&names) {
            for s in spokes {
                create_mw(
                    hub,
                    &s.name,
                    w,
                    vec![configmap("bench", cm, json!({}))],
                    None,
                )
                .await;
                keys.insert(format!("{}/{w}", s.name), Instant::now());
            }
        }
        let available = wait_available(hub, spokes, &keys, Duration::from_secs(120)).await;
        let t0 = Instant::now();
        let gone = delete_works(hub, spokes, &works, Duration::from_secs(120)).await;
        let took = t0.elapsed();
        // Counted at once: with OCM's finalizer honoured, none is left.
        let left_at_once = left_on_spokes(spokes, &names, Duration::ZERO).await;
        let left_later = left_on_spokes(spokes, &names, Duration::from_secs(30)).await;
        println!(
            "Finalizer check, drbridge-hub {}: {} works {} deleted in {:.1}s; ConfigMaps left on \
             the spokes when the works were gone: {left_at_once}, 30 s later: {left_later}",
            if with_hub { "running" } else { "stopped" },
            works.len() * spokes.len(),
            if available && gone {
                "applied and"
            } else {
                "(not all applied or gone)"
            },
            took.as_secs_f64(),
        );
    }
    b.crash_hub().await;
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    drbridge_integration_tests::init_logging();
    let with_ocm = std::env::args().any(|a| a == "--ocm");
    let total: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(200);
    // Built (the first time: many minutes) before anything is measured: a build beside the
    // measurement would load the cores drbridge is measured on.
    let work_bin = with_ocm.then(|| {
        let dir = releases::ocm_work()
            .ensure(&drbridge_localenv::cache_dir(), &|p| match p {
                drbridge_localenv::Progress::Building {
                    packages, elapsed, ..
                } if elapsed.as_secs() % 60 < 2 => {
                    eprintln!("building OCM's work agent: {packages} packages in {elapsed:.0?}")
                }
                drbridge_localenv::Progress::Built { elapsed, .. } => {
                    eprintln!("OCM's work agent built in {elapsed:.0?}")
                }
                _ => {}
            })
            .expect("OCM's work agent builds");
        dir.join("work")
    });
    let clusters = ["dr1", "dr2"];
    let per = total / clusters.len();
    eprintln!("starting hub + {} clusters ...", clusters.len());
    let mut b = Bridge::start(&clusters).await;
    let hub = b.hub_client().await;
    let mut spokes = Vec::new();
    for c in clusters {
        let client = b.client(c).await;
        create_ns(&client, "bench").await;
        spokes.push(Spoke {
            name: c.to_string(),
            client,
        });
    }
    let timeout = Duration::from_secs(120);
    let mut watches = Vec::new();
    let a = measure_a(&hub, &spokes, "", per, timeout, &mut watches).await;
    let bb = measure_b(&hub, &spokes, "", per, timeout, &mut watches).await;
    let c = measure_c(&hub, &spokes, per, &mut watches).await;
    report_histograms(&b.metrics_texts());
    for w in watches {
        w.abort();
    }
    let Some(work_bin) = work_bin else {
        println!(
            "OCM for comparison: work status poll 10-19 s, view refresh 30 s (`-- --ocm` measures it)."
        );
        return;
    };
    let mut rows: Vec<Row> = [("A", a), ("B", bb), ("C", c)]
        .into_iter()
        .map(|(path, figures)| Row {
            path: path.into(),
            run: ocm::DRBRIDGE.into(),
            figures,
        })
        .collect();
    rows.push(Row {
        path: "C".into(),
        run: "ManagedClusterView (no buildable upstream controller)".into(),
        figures: Figures::Documented("30 s refresh: documented, not measured".into()),
    });
    // Lost-cluster detection: the agents die (no goodbye), the hub's presence timeout runs.
    let lost: Seen = Arc::default();
    let mcs: Api<ManagedCluster> = Api::all(hub.clone());
    let lost_watch =
        spawn_watch(mcs, lost.clone(), |mc: &ManagedCluster| {
            let unknown =
                mc.status.as_ref()?.conditions.iter().any(|c| {
                    c.type_ == "ManagedClusterConditionAvailable" && c.status == "Unknown"
                });
            if unknown {
                mc.metadata.name.clone()
            } else {
                None
            }
        });
    let mut starts = HashMap::new();
    for c in clusters {
        starts.insert(c.to_string(), Instant::now());
        b.crash_agent(c).await;
    }
    wait_all(&lost, &starts, Duration::from_secs(60)).await;
    let presence = drbridge_integration_tests::bridge::BridgeOptions::default()
        .hub
        .presence_timeout;
    rows.push(Row {
        path: "lost".into(),
        run: format!("{} (presence timeout {presence:?})", ocm::DRBRIDGE),
        figures: report(
            "lost agent -> ManagedCluster Available Unknown",
            &starts,
            &lost,
        ),
    });
    lost_watch.abort();
    rows.push(Row {
        path: "lost".into(),
        run: "OCM lease (60 s renewals, Unknown after 5 × 60 s)".into(),
        figures: Figures::Documented("240–300 s: cited from source, not measured".into()),
    });
    // OCM's phase has the machine to itself: drbridge's hub and clusters stop.
    for c in clusters {
        b.env.stop_cluster(c).unwrap();
    }
    b.crash_hub().await;
    rows.extend(ocm_leg(&mut b, work_bin, per).await);
    println!("\n{}", ocm::table(&rows));
}
