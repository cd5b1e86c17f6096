//! Faults on real processes. The hub and the agents run as programs against real API
//! servers, and a proxy sits between the agents and the hub. Each round injects one fault at
//! random: kill -9 of the hub, of an agent or of a kube-apiserver; a stalled, refused or cut
//! connection. The hub's desired state changes while the fault lasts. Then everything heals
//! and the round checks, on the real API servers:
//! 1. every work converges: Applied and Available at its generation, the spoke's objects as the
//!    work says;
//! 2. nothing on a spoke was deleted except what a work's deletion or a dropped manifest asked
//!    for (each kept object keeps the uid it was first created with);
//! 3. no work's Applied observedGeneration ever went back;
//! 4. no cluster ever holds another cluster's objects.
//!
//! Seeded: `DRBRIDGE_FAULT_SEED` replays a run (the seed is printed), `DRBRIDGE_FAULT_ROUNDS`
//! sets how many rounds (default 6).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use drbridge_integration_tests::proxy::{FaultProxy, Mode};
use drbridge_integration_tests::works::*;
use drbridge_integration_tests::{eventually, init_logging};
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};

const CLUSTERS: [&str; 2] = ["dr1", "dr2"];
const NS: &str = "app";
/// Long enough for a restart, a resync and every status write after the worst fault.
const CONVERGE: Duration = Duration::from_secs(90);

/// Prints the tail of each program's log when the test fails: the seed replays the run,
/// the logs say what happened in it.
struct LogsOnFailure(Vec<std::path::PathBuf>);

impl Drop for LogsOnFailure {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for p in &self.0 {
                eprintln!(
                    "--- {} ---\n{}",
                    p.display(),
                    drbridge_localenv::process::log_tail(p, 60)
                );
            }
        }
    }
}

/// A small deterministic generator (splitmix64): the seed alone decides a run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo))
    }
}

/// What a work on a cluster should hold: its ConfigMap `a` at `version`, and `b` unless
/// dropped.
#[derive(Clone, Debug)]
struct Spec {
    version: u64,
    with_b: bool,
}

impl Spec {
    fn manifests(&self, cluster: &str, work: &str) -> Vec<Value> {
        let mut m = vec![
            namespace(NS),
            configmap(
                NS,
                &cm(cluster, work, "a"),
                json!({"v": self.version.to_string()}),
            ),
        ];
        if self.with_b {
            m.push(configmap(NS, &cm(cluster, work, "b"), json!({"v": "b"})));
        }
        m
    }
}

/// ConfigMaps carry their cluster's name: any other cluster holding one is a leak.
fn cm(cluster: &str, work: &str, part: &str) -> String {
    format!("{cluster}-{work}-{part}")
}

/// The desired state the test asked for, and which spoke deletions it asked for.
#[derive(Default)]
struct Model {
    works: BTreeMap<(String, String), Option<Spec>>,
    next_work: u64,
    /// `(cluster, ConfigMap)` whose deletion a work's deletion or a dropped manifest asked
    /// for. Names are never reused, so an entry is exact.
    deletion_asked: BTreeSet<(String, String)>,
}

#[derive(Clone, Copy, Debug)]
enum Fault {
    KillHub,
    KillAgent(usize),
    CrashApiServer(&'static str),
    Stall,
    RefuseAndCut,
    Cut,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn random_faults_on_real_processes_lose_and_delete_nothing() {
    init_logging();
    let seed = std::env::var("DRBRIDGE_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    let rounds: usize = std::env::var("DRBRIDGE_FAULT_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6);
    eprintln!("fault rounds: seed {seed} (DRBRIDGE_FAULT_SEED={seed} replays), {rounds} rounds");
    let mut rng = Rng(seed);

    let root = drbridge_integration_tests::repo_root();
    let exe = std::env::current_exe().unwrap();
    let tools = drbridge_testbed::Tools::for_test(
        Path::new(env!("CARGO")),
        &root,
        exe.parent().unwrap().parent().unwrap(),
    )
    .unwrap();
    let mut env = drbridge_localenv::Env::start_for_test(&["hub", CLUSTERS[0], CLUSTERS[1]])
        .await
        .expect("environment");
    let proxy_addr = SocketAddr::from((
        [127, 0, 0, 1],
        drbridge_localenv::ports::free_port().unwrap(),
    ));
    let proxy: Mutex<Option<FaultProxy>> = Mutex::new(None);
    drbridge_testbed::drbridge::start(
        &mut env,
        &tools.hub,
        &tools.agent,
        Duration::from_secs(120),
        &drbridge_testbed::drbridge::Options {
            replicas: 1,
            route: &|hub| {
                let p = FaultProxy::start(proxy_addr, hub).expect("the proxy listens");
                let addr = p.addr();
                *proxy.lock().unwrap() = Some(p);
                addr
            },
            // The test's ConfigMaps are not among Ramen's kinds, which the default allowlist
            // admits alone.
            agent_args: &["--allow-all"],
        },
    )
    .await
    .expect("drbridge starts");
    let proxy = proxy.into_inner().unwrap().expect("agents dial the proxy");
    let _logs = LogsOnFailure(
        ["drbridge-hub", "drbridge-agent-dr1", "drbridge-agent-dr2"]
            .map(|n| env.log_path(n))
            .to_vec(),
    );

    let hub = env.client("hub").await.unwrap();
    let mut spokes = BTreeMap::new();
    for c in CLUSTERS {
        spokes.insert(c, env.client(c).await.unwrap());
    }
    let violations = Arc::new(Mutex::new(Vec::<String>::new()));
    // Invariant 3 (and no status lost), on the hub.
    let statuses = drbridge_testbed::invariants::StatusWatch::start(&hub, &CLUSTERS);
    let _watches: Vec<_> = CLUSTERS
        .iter()
        .map(|c| tokio::spawn(only_own_objects(spokes[c].clone(), c, violations.clone())))
        .map(AbortOnDrop)
        .collect();

    let mut model = Model::default();
    for c in CLUSTERS {
        for _ in 0..3 {
            add_work(&hub, &mut model, c).await;
        }
    }
    let mut uids = BTreeMap::new();
    converge(&hub, &spokes, &model, &mut uids).await;

    for round in 0..rounds {
        let fault = match rng.below(6) {
            0 => Fault::KillHub,
            1 => Fault::KillAgent(rng.below(2) as usize),
            2 => Fault::CrashApiServer(["hub", CLUSTERS[0], CLUSTERS[1]][rng.below(3) as usize]),
            3 => Fault::Stall,
            4 => Fault::RefuseAndCut,
            _ => Fault::Cut,
        };
        let lasts = rng.millis(500, 8_000);
        eprintln!("round {round}: {fault:?} for {lasts:?}");
        match fault {
            Fault::KillHub => env.kill_process("drbridge-hub").unwrap(),
            Fault::KillAgent(i) => env
                .kill_process(&format!("drbridge-agent-{}", CLUSTERS[i]))
                .unwrap(),
            Fault::CrashApiServer(c) => {
                env.crash_cluster_process(c, "kube-apiserver").unwrap();
            }
            Fault::Stall => proxy.set(Mode::Stall),
            Fault::RefuseAndCut => {
                proxy.set(Mode::Refuse);
                proxy.cut();
            }
            Fault::Cut => proxy.cut(),
        }
        // The desired state changes while the fault lasts.
        for _ in 0..1 + rng.below(3) {
            change(&hub, &mut model, &mut rng).await;
        }
        // The fault's length, not a wait for anything.
        tokio::time::sleep(lasts).await;
        match fault {
            Fault::KillHub => {
                env.resume_process("drbridge-hub").unwrap();
            }
            Fault::KillAgent(i) => {
                env.resume_process(&format!("drbridge-agent-{}", CLUSTERS[i]))
                    .unwrap();
            }
            Fault::Stall | Fault::RefuseAndCut => proxy.set(Mode::Pass),
            Fault::CrashApiServer(_) | Fault::Cut => {}
        }
        converge(&hub, &spokes, &model, &mut uids).await;
        let mut seen = violations.lock().unwrap().clone();
        seen.extend(statuses.violations());
        assert!(
            seen.is_empty(),
            "seed {seed}, round {round} ({fault:?}): {seen:#?}"
        );
    }
}

/// Aborts a watch task when the test ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn add_work(hub: &kube::Client, model: &mut Model, cluster: &str) {
    let name = format!("w{}", model.next_work);
    model.next_work += 1;
    let spec = Spec {
        version: 1,
        with_b: true,
    };
    let mw = manifestwork(cluster, &name, spec.manifests(cluster, &name), None);
    retry(&format!("create {cluster}/{name}"), || async {
        match mw_api(hub, cluster)
            .create(&PostParams::default(), &mw)
            .await
        {
            Ok(_) => Some(()),
            Err(kube::Error::Api(e)) if e.code == 409 => Some(()),
            Err(_) => None,
        }
    })
    .await;
    model.works.insert((cluster.to_string(), name), Some(spec));
}

/// One random change of the desired state: a new generation, a dropped or restored manifest,
/// a deleted work, a new work. Retried while the hub's API server is down.
async fn change(hub: &kube::Client, model: &mut Model, rng: &mut Rng) {
    let live: Vec<(String, String)> = model
        .works
        .iter()
        .filter(|(_, s)| s.is_some())
        .map(|(k, _)| k.clone())
        .collect();
    let pick = rng.below(10);
    if live.is_empty() || pick == 9 {
        let c = CLUSTERS[rng.below(2) as usize];
        return add_work(hub, model, c).await;
    }
    let (cluster, name) = live[rng.below(live.len() as u64) as usize].clone();
    if pick == 8 {
        retry(&format!("delete {cluster}/{name}"), || async {
            match mw_api(hub, &cluster)
                .delete(&name, &DeleteParams::default())
                .await
            {
                Ok(_) => Some(()),
                Err(kube::Error::Api(e)) if e.code == 404 => Some(()),
                Err(_) => None,
            }
        })
        .await;
        for part in ["a", "b"] {
            model
                .deletion_asked
                .insert((cluster.clone(), cm(&cluster, &name, part)));
        }
        model.works.insert((cluster, name), None);
        return;
    }
    let key = (cluster.clone(), name.clone());
    let mut spec = model.works[&key].clone().unwrap();
    spec.version += 1;
    if pick >= 6 && spec.with_b {
        // Dropped from the newer generation: the one deletion an update may ask for. Names
        // are never reused, so `b` stays dropped.
        spec.with_b = false;
        model
            .deletion_asked
            .insert((cluster.clone(), cm(&cluster, &name, "b")));
    }
    let manifests = spec.manifests(&cluster, &name);
    retry(&format!("update {cluster}/{name}"), || async {
        let api = mw_api(hub, &cluster);
        let mut mw = api.get(&name).await.ok()?;
        mw.data["spec"]["workload"]["manifests"] = Value::Array(manifests.clone());
        api.replace(&name, &PostParams::default(), &mw)
            .await
            .ok()
            .map(|_| ())
    })
    .await;
    model.works.insert(key, Some(spec));
}

async fn retry(what: &str, f: impl AsyncFnMut() -> Option<()>) {
    eventually(what, CONVERGE, f).await
}

/// Waits until the hub and the spokes show exactly the model, then checks that every
/// ConfigMap the model keeps is the object first created for it (same uid: never deleted
/// and made again).
async fn converge(
    hub: &kube::Client,
    spokes: &BTreeMap<&str, kube::Client>,
    model: &Model,
    uids: &mut BTreeMap<(String, String), String>,
) {
    for ((cluster, name), spec) in &model.works {
        let spoke = &spokes[cluster.as_str()];
        let cms: Api<ConfigMap> = Api::namespaced(spoke.clone(), NS);
        match spec {
            Some(spec) => {
                wait_applied(hub, cluster, name).await;
                let a = cm(cluster, name, "a");
                let version = spec.version.to_string();
                eventually(
                    &format!("{cluster}: {a} at {version}"),
                    CONVERGE,
                    || async {
                        let o = cms.get_opt(&a).await.ok()??;
                        (o.data.as_ref()?.get("v") == Some(&version)).then_some(())
                    },
                )
                .await;
                let b = cm(cluster, name, "b");
                eventually(
                    &format!("{cluster}: {b} present = {}", spec.with_b),
                    CONVERGE,
                    || async {
                        (cms.get_opt(&b).await.ok()?.is_some() == spec.with_b).then_some(())
                    },
                )
                .await;
            }
            None => {
                let mws = mw_api(hub, cluster);
                eventually(&format!("{cluster}/{name} gone"), CONVERGE, || async {
                    mws.get_opt(name).await.ok()?.is_none().then_some(())
                })
                .await;
                for part in ["a", "b"] {
                    let n = cm(cluster, name, part);
                    eventually(&format!("{cluster}: {n} deleted"), CONVERGE, || async {
                        cms.get_opt(&n).await.ok()?.is_none().then_some(())
                    })
                    .await;
                }
            }
        }
    }
    // Every ConfigMap on a spoke is one the model keeps, with its first uid.
    for (cluster, spoke) in spokes {
        let cms: Api<ConfigMap> = Api::namespaced(spoke.clone(), NS);
        for o in cms.list(&Default::default()).await.unwrap() {
            let name = o.metadata.name.clone().unwrap();
            if name == "kube-root-ca.crt" {
                continue;
            }
            let key = (cluster.to_string(), name);
            let uid = o.metadata.uid.clone().unwrap();
            let first = uids.entry(key.clone()).or_insert_with(|| uid.clone());
            assert!(
                *first == uid || model.deletion_asked.contains(&key),
                "{key:?} was deleted and created again ({first} -> {uid}) though nobody asked"
            );
        }
    }
    // And what the model keeps is there: a kept ConfigMap that vanished was deleted.
    for ((cluster, spoke_cm), _) in uids.iter() {
        if model
            .deletion_asked
            .contains(&(cluster.clone(), spoke_cm.clone()))
        {
            continue;
        }
        let cms: Api<ConfigMap> = Api::namespaced(spokes[cluster.as_str()].clone(), NS);
        assert!(
            cms.get_opt(spoke_cm).await.unwrap().is_some(),
            "{cluster}: {spoke_cm} was deleted though nobody asked"
        );
    }
}

/// Invariant 4: a spoke never holds a ConfigMap named for another cluster.
async fn only_own_objects(
    spoke: kube::Client,
    cluster: &'static str,
    violations: Arc<Mutex<Vec<String>>>,
) {
    let cms: Api<ConfigMap> = Api::namespaced(spoke, NS);
    let events = watcher(cms, watcher::Config::default())
        .default_backoff()
        .applied_objects();
    let mut events = std::pin::pin!(events);
    while let Some(ev) = events.next().await {
        let Ok(o) = ev else { continue };
        let name = o.metadata.name.unwrap_or_default();
        if let Some(other) = CLUSTERS
            .iter()
            .find(|c| **c != cluster && name.starts_with(&format!("{c}-")))
        {
            violations
                .lock()
                .unwrap()
                .push(format!("{cluster} holds {name}, an object of {other}"));
        }
    }
}
