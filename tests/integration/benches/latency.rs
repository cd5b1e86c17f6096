//! Latency benchmark (not a test): prints p50/p99 of
//!   A. hub ManifestWork write -> object applied on the spoke,
//!   B. spoke object change -> ManifestWork status on the hub,
//!   C. spoke object change -> ManagedClusterView status.result on the hub,
//! with 2 managed clusters, 200 works and 200 views, on real control planes
//! over real mTLS on loopback. OCM polls work status every 10-19 s and
//! refreshes views every 30 s. At the end it prints the latency histograms the hub and
//! agents export (work delivery, status latency, apply duration).
//!
//! cargo bench -p drbridge-integration-tests --bench latency [-- WORKS]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use drbridge_integration_tests::bench::{histograms, percentile, quantile};
use drbridge_integration_tests::bridge::Bridge;
use drbridge_integration_tests::works::*;
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde_json::json;

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

fn report(name: &str, starts: &HashMap<String, Instant>, seen: &Seen) {
    let seen = seen.lock().unwrap();
    let mut lat: Vec<Duration> = starts
        .iter()
        .filter_map(|(k, t0)| seen.get(k).map(|t| t.saturating_duration_since(*t0)))
        .collect();
    lat.sort();
    let missing = starts.len() - lat.len();
    if missing > 0 {
        let mut gone: Vec<&String> = starts.keys().filter(|k| !seen.contains_key(*k)).collect();
        gone.sort();
        eprintln!("{name}: never seen: {gone:?}");
    }
    if lat.is_empty() {
        println!("{name}: no samples ({missing} missing)");
        return;
    }
    println!(
        "{name}: n={} p50={:.1}ms p99={:.1}ms max={:.1}ms{}",
        lat.len(),
        percentile(&lat, 0.50).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3,
        lat.last().unwrap().as_secs_f64() * 1e3,
        if missing > 0 {
            format!(" ({missing} missing)")
        } else {
            String::new()
        }
    );
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
    let deadline = Instant::now() + timeout;
    let done = || {
        let seen = seen.lock().unwrap();
        starts.keys().all(|k| seen.contains_key(k))
    };
    while !done() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    drbridge_integration_tests::init_logging();
    let total: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(200);
    let clusters = ["dr1", "dr2"];
    let per = total / clusters.len();
    eprintln!("starting hub + {} clusters ...", clusters.len());
    let b = Bridge::start(&clusters).await;
    let hub = b.hub_client().await;
    for c in clusters {
        create_ns(&b.client(c).await, "bench").await;
    }

    // A: hub write -> applied on the spoke.
    let applied: Seen = Arc::default();
    let mut watches = Vec::new();
    for c in clusters {
        let api: Api<ConfigMap> = Api::namespaced(b.client(c).await, "bench");
        let c = c.to_string();
        watches.push(spawn_watch(api, applied.clone(), move |cm: &ConfigMap| {
            Some(format!("{c}/{}", cm.metadata.name.clone()?))
        }));
    }
    let mut starts = HashMap::new();
    for i in 0..per {
        for c in clusters {
            let name = format!("w{i}");
            starts.insert(format!("{c}/c{i}"), Instant::now());
            create_mw(
                &hub,
                c,
                &name,
                vec![configmap(
                    "bench",
                    &format!("c{i}"),
                    json!({"i": i.to_string()}),
                )],
                None,
            )
            .await;
        }
    }
    wait_all(&applied, &starts, Duration::from_secs(120)).await;
    report(
        "A  hub write -> object applied on spoke      ",
        &starts,
        &applied,
    );
    for c in clusters {
        for i in 0..per {
            wait_applied(&hub, c, &format!("w{i}")).await;
        }
    }

    // B: spoke change (object deleted) -> ManifestWork status shows it.
    let status_seen: Seen = Arc::default();
    for c in clusters {
        let c2 = c.to_string();
        watches.push(spawn_watch(
            mw_api(&hub, c),
            status_seen.clone(),
            move |mw: &DynamicObject| {
                let avail = condition(mw, "Available")?;
                (avail["status"] != "True")
                    .then(|| format!("{c2}/{}", mw.metadata.name.clone().unwrap_or_default()))
            },
        ));
    }
    let mut starts = HashMap::new();
    for i in 0..per {
        for c in clusters {
            let cms: Api<ConfigMap> = Api::namespaced(b.client(c).await, "bench");
            starts.insert(format!("{c}/w{i}"), Instant::now());
            cms.delete(&format!("c{i}"), &DeleteParams::default())
                .await
                .unwrap();
        }
    }
    wait_all(&status_seen, &starts, Duration::from_secs(120)).await;
    report(
        "B  spoke change -> ManifestWork status       ",
        &starts,
        &status_seen,
    );

    // C: spoke object change -> view status.result.
    let views_seen: Seen = Arc::default();
    for c in clusters {
        let cms: Api<ConfigMap> = Api::namespaced(b.client(c).await, "bench");
        for i in 0..per {
            let cm: ConfigMap = serde_json::from_value(
                json!({"metadata": {"name": format!("v{i}")}, "data": {"v": "0"}}),
            )
            .unwrap();
            cms.create(&PostParams::default(), &cm).await.unwrap();
            let mcv: DynamicObject = serde_json::from_value(json!({
                "apiVersion": "view.open-cluster-management.io/v1beta1", "kind": "ManagedClusterView",
                "metadata": {"name": format!("v{i}"), "namespace": c},
                "spec": {"scope": {"version": "v1", "kind": "ConfigMap", "name": format!("v{i}"), "namespace": "bench"}},
            }))
            .unwrap();
            mcv_api(&hub, c)
                .create(&PostParams::default(), &mcv)
                .await
                .unwrap();
        }
    }
    // Every view answers once before the clock starts.
    let ready: Seen = Arc::default();
    for c in clusters {
        let c2 = c.to_string();
        watches.push(spawn_watch(
            mcv_api(&hub, c),
            ready.clone(),
            move |v: &DynamicObject| {
                (v.data["status"]["result"]["data"]["v"] == "0")
                    .then(|| format!("{c2}/{}", v.metadata.name.clone().unwrap_or_default()))
            },
        ));
        let c3 = c.to_string();
        watches.push(spawn_watch(
            mcv_api(&hub, c),
            views_seen.clone(),
            move |v: &DynamicObject| {
                (v.data["status"]["result"]["data"]["v"] == "1")
                    .then(|| format!("{c3}/{}", v.metadata.name.clone().unwrap_or_default()))
            },
        ));
    }
    let all_views: HashMap<String, Instant> = clusters
        .iter()
        .flat_map(|c| (0..per).map(move |i| (format!("{c}/v{i}"), Instant::now())))
        .collect();
    wait_all(&ready, &all_views, Duration::from_secs(120)).await;
    let mut starts = HashMap::new();
    for i in 0..per {
        for c in clusters {
            let cms: Api<ConfigMap> = Api::namespaced(b.client(c).await, "bench");
            starts.insert(format!("{c}/v{i}"), Instant::now());
            cms.patch(
                &format!("v{i}"),
                &PatchParams::default(),
                &Patch::Merge(json!({"data": {"v": "1"}})),
            )
            .await
            .unwrap();
        }
    }
    wait_all(&views_seen, &starts, Duration::from_secs(120)).await;
    report(
        "C  spoke change -> view status.result        ",
        &starts,
        &views_seen,
    );
    println!("OCM for comparison: work status poll 10-19 s, view refresh 30 s.");
    report_histograms(&b.metrics_texts());
    for w in watches {
        w.abort();
    }
}
