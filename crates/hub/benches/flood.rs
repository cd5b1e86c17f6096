//! Flood benchmark (not a test): one misbehaving agent against the hub, and what the other
//! clusters see. Prints the hub process's memory and the other clusters' report latency
//! (agent sends a WorkStatus -> the hub's status patch reaches the API server) without and
//! with the flood.
//!
//! The hub here is the real one (index, Dispatch over mutual TLS on loopback with the
//! production listener, the status writer) against a stand-in API server that answers every
//! write after `PATCH_LATENCY`. The flooder, with a valid certificate of its own cluster,
//! sends as fast as it can: large reports for its own works (which are admitted, and held to
//! its budget), reports for names it does not have and for generations the hub never sent
//! (dropped), and messages over the report limit (each ends its stream; it redials).
//! Memory is the whole process's (hub and the benchmark's agents).
//!
//! cargo bench -p drbridge-hub --bench flood [-- SECONDS]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use drbridge_hub::desired::Limits;
use drbridge_hub::grpc::{DispatchService, GrpcConfig};
use drbridge_hub::index::Index;
use drbridge_hub::metrics::{DropLabels, Metrics};
use drbridge_hub::objects::{ClusterObject, Meta, WORK_FINALIZER, WorkObject, WorkSpec};
use drbridge_hub::status::{StatusWriter, WriterConfig};
use drbridge_proto::v1 as pb;
use drbridge_proto::v1::dispatch_client::DispatchClient;
use drbridge_tls::pki::Ca;
use drbridge_tls::{ChannelOptions, ClusterName, TlsPaths};
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

const FLOOD_WORKS: usize = 200;
const CALM_CLUSTERS: usize = 4;
const CALM_WORKS: usize = 20;
const SAMPLES: usize = 100;
const PATCH_LATENCY: Duration = Duration::from_millis(2);
const BIG_MESSAGE: usize = 512 * 1024;

/// When the stand-in API server last received a write, by path.
type Writes = Arc<Mutex<HashMap<String, Instant>>>;

fn rss_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

async fn fake_api(writes: Writes) -> SocketAddr {
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let writes = writes.clone();
        async move {
            writes.lock().insert(uri.path().to_string(), Instant::now());
            tokio::time::sleep(PATCH_LATENCY).await;
            let name = uri
                .path()
                .trim_end_matches("/status")
                .rsplit('/')
                .next()
                .unwrap_or("x")
                .to_string();
            (
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                format!(r#"{{"apiVersion":"v1","kind":"Object","metadata":{{"name":"{name}"}}}}"#),
            )
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn work(ns: &str, name: &str) -> WorkObject {
    WorkObject {
        meta: Meta {
            namespace: ns.into(),
            name: name.into(),
            uid: format!("{ns}-{name}-uid"),
            generation: 1,
            resource_version: "1".into(),
            finalizers: vec![WORK_FINALIZER.into()],
            ..Default::default()
        },
        spec: Ok(WorkSpec {
            manifests: vec![
                br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"}}"#.to_vec(),
            ],
            ..Default::default()
        }),
        conditions: vec![],
        status: Default::default(),
    }
}

fn cluster(name: &str) -> ClusterObject {
    ClusterObject {
        meta: Meta {
            name: name.into(),
            uid: format!("{name}-uid"),
            ..Default::default()
        },
        conditions: vec![],
        claims: vec![],
    }
}

fn status(ns: &str, name: &str, generation: i64, message: String) -> pb::AgentMessage {
    pb::AgentMessage {
        body: Some(pb::agent_message::Body::WorkStatus(pb::WorkStatus {
            name: name.into(),
            uid: format!("{ns}-{name}-uid"),
            generation,
            conditions: vec![pb::Condition {
                r#type: "Applied".into(),
                status: "True".into(),
                reason: "AppliedManifestWorkComplete".into(),
                message,
                observed_generation: generation,
                last_transition_time: String::new(),
            }],
            manifests: vec![],
            observed_time: String::new(),
        })),
    }
}

fn hello() -> pb::AgentMessage {
    pb::AgentMessage {
        body: Some(pb::agent_message::Body::Hello(pb::Hello {
            agent_version: "bench".into(),
            known_works: vec![],
            cluster: Some(pb::ClusterInfo::default()),
            max_hub_epoch: 0,
        })),
    }
}

struct Pki {
    dir: tempfile::TempDir,
    ca: Ca,
}

impl Pki {
    fn agent(&self, cluster: &str) -> TlsPaths {
        let issued = self
            .ca
            .issue_client(
                &ClusterName::new(cluster).unwrap(),
                Duration::from_secs(3600),
            )
            .unwrap();
        let (cert, key) = issued.write(self.dir.path(), cluster).unwrap();
        TlsPaths::new(cert, key, self.dir.path().join("ca.crt"))
    }
}

/// An agent stream: the sender of its messages, and a task reading (and dropping) the hub's.
async fn open(endpoint: &str, paths: &TlsPaths) -> Option<mpsc::Sender<pb::AgentMessage>> {
    let channel =
        drbridge_tls::connect_channel(endpoint, "localhost", paths, ChannelOptions::default())
            .await
            .ok()?;
    let (tx, rx) = mpsc::channel(64);
    tx.send(hello()).await.ok()?;
    let mut client = DispatchClient::new(channel)
        .max_encoding_message_size(usize::MAX)
        .max_decoding_message_size(64 << 20);
    let mut inbound = client
        .connect(ReceiverStream::new(rx))
        .await
        .ok()?
        .into_inner();
    tokio::spawn(async move { while let Ok(Some(_)) = inbound.message().await {} });
    Some(tx)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Each calm cluster reports its works one after another; the latency of a report is until
/// the API server sees the write of that work's status.
async fn calm_latencies(endpoint: &str, pki: &Pki, writes: &Writes, round: usize) -> Vec<Duration> {
    let mut tasks = Vec::new();
    for c in 0..CALM_CLUSTERS {
        let ns = format!("calm{c}");
        let paths = pki.agent(&ns);
        let endpoint = endpoint.to_string();
        let writes = writes.clone();
        tasks.push(tokio::spawn(async move {
            let tx = open(&endpoint, &paths).await.expect("calm agent connects");
            let mut out = Vec::new();
            for i in 0..SAMPLES {
                let name = format!("c{}", i % CALM_WORKS);
                let path = format!(
                    "/apis/work.open-cluster-management.io/v1/namespaces/{ns}/manifestworks/{name}/status"
                );
                let t0 = Instant::now();
                tx.send(status(&ns, &name, 1, format!("round {round} sample {i}")))
                    .await
                    .unwrap();
                loop {
                    if writes.lock().get(&path).is_some_and(|t| *t >= t0) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_micros(500)).await;
                    assert!(t0.elapsed() < Duration::from_secs(60), "{path} never written");
                }
                out.push(t0.elapsed());
            }
            out
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    all
}

fn print_latency(what: &str, lat: &[Duration]) {
    println!(
        "{what}: n={} p50={:.1}ms p99={:.1}ms max={:.1}ms",
        lat.len(),
        percentile(lat, 0.5).as_secs_f64() * 1e3,
        percentile(lat, 0.99).as_secs_f64() * 1e3,
        lat.last().unwrap().as_secs_f64() * 1e3
    );
}

#[tokio::main]
async fn main() {
    let seconds: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10);
    let _ = drbridge_tls::rustls::crypto::ring::default_provider().install_default();

    let writes: Writes = Arc::default();
    let api = fake_api(writes.clone()).await;
    let client =
        kube::Client::try_from(kube::Config::new(format!("http://{api}").parse().unwrap()))
            .unwrap();

    let metrics = Metrics::default();
    let (intents_tx, intents_rx) = mpsc::channel(4096);
    let mut index = Index::new(Limits::default(), Some(intents_tx), metrics.clone());
    let mut works: Vec<WorkObject> = (0..FLOOD_WORKS)
        .map(|i| work("flood", &format!("w{i}")))
        .collect();
    let mut clusters = vec![cluster("flood")];
    for c in 0..CALM_CLUSTERS {
        let ns = format!("calm{c}");
        works.extend((0..CALM_WORKS).map(|i| work(&ns, &format!("c{i}"))));
        clusters.push(cluster(&ns));
    }
    index.reset_works(works);
    index.reset_views(vec![]);
    index.reset_clusters(clusters);
    let index = index.shared();

    let (writes_tx, writes_rx) = mpsc::channel(4096);
    let (presence_tx, mut presence_rx) = mpsc::channel(4096);
    tokio::spawn(async move { while presence_rx.recv().await.is_some() {} });
    let writer = StatusWriter::new(
        client,
        index.clone(),
        metrics.clone(),
        WriterConfig::default(),
    );
    tokio::spawn(writer.run(writes_rx, intents_rx));
    let service = DispatchService::new(
        GrpcConfig::default(),
        index.clone(),
        writes_tx,
        presence_tx,
        metrics.clone(),
    );

    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::generate("bench-ca").unwrap();
    std::fs::write(dir.path().join("ca.crt"), ca.cert_pem()).unwrap();
    let server = ca
        .issue_server(
            &["localhost"],
            &[IpAddr::V4(Ipv4Addr::LOCALHOST)],
            Duration::from_secs(3600),
        )
        .unwrap();
    let (cert, key) = server.write(dir.path(), "hub").unwrap();
    let tls =
        drbridge_tls::ServerTls::new(TlsPaths::new(cert, key, dir.path().join("ca.crt"))).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!(
        "https://127.0.0.1:{}",
        listener.local_addr().unwrap().port()
    );
    let svc = service.clone();
    tokio::spawn(async move {
        drbridge_hub::serve(
            svc,
            drbridge_tls::incoming(listener, tls),
            std::future::pending(),
        )
        .await
        .unwrap()
    });
    let pki = Pki { dir, ca };

    // Warm up (connections, first writes), then the baseline.
    calm_latencies(&endpoint, &pki, &writes, 0).await;
    let (rss0, _) = rss_kib();
    let baseline = calm_latencies(&endpoint, &pki, &writes, 1).await;

    // The flood.
    let flood_paths = pki.agent("flood");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let redials = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut flooders = Vec::new();
    for kind in 0..3 {
        let (endpoint, paths, stop, sent, redials) = (
            endpoint.clone(),
            flood_paths.clone(),
            stop.clone(),
            sent.clone(),
            redials.clone(),
        );
        flooders.push(tokio::spawn(async move {
            let big = "x".repeat(BIG_MESSAGE);
            let oversize = "x".repeat(3 << 20);
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let Some(tx) = open(&endpoint, &paths).await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                redials.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    i += 1;
                    let w = format!("w{}", i as usize % FLOOD_WORKS);
                    let msg = match (kind, i % 100) {
                        // Kind 0: big reports for its own works, and now and then one over the limit.
                        (0, 99) => status("flood", &w, 1, oversize.clone()),
                        (0, _) => status("flood", &w, 1, big.clone()),
                        // Kind 1: names it does not have.
                        (1, _) => status("flood", &format!("invented-{i}"), 1, String::new()),
                        // Kind 2: generations the hub never sent.
                        _ => status("flood", &w, 2 + i as i64, String::new()),
                    };
                    if tx.send(msg).await.is_err() {
                        break;
                    }
                    sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }));
    }
    let peak = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let held_peak = Arc::new(std::sync::atomic::AtomicI64::new(0));
    let sampler = {
        let (peak, held_peak, metrics) = (peak.clone(), held_peak.clone(), metrics.clone());
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss_kib().0, std::sync::atomic::Ordering::Relaxed);
                held_peak.fetch_max(
                    metrics.report_bytes_held.get(),
                    std::sync::atomic::Ordering::Relaxed,
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let started = Instant::now();
    let mut under_flood = Vec::new();
    let mut round = 2;
    while started.elapsed() < Duration::from_secs(seconds) {
        under_flood.extend(calm_latencies(&endpoint, &pki, &writes, round).await);
        round += 1;
    }
    under_flood.sort();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for f in flooders {
        f.abort();
    }
    sampler.abort();
    let flood_secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (rss_after, hwm) = rss_kib();
    let dropped = |reason| {
        metrics
            .status_dropped
            .get_or_create(&DropLabels { reason })
            .get()
    };
    let flood_writes = writes
        .lock()
        .keys()
        .filter(|p| p.contains("/namespaces/flood/"))
        .count();

    println!(
        "flood: {flood_secs:.1}s, {} messages sent by the flooder, {} streams opened",
        sent.load(std::sync::atomic::Ordering::Relaxed),
        redials.load(std::sync::atomic::Ordering::Relaxed)
    );
    println!(
        "dropped: unknown_object={} future_generation={}; flooder works written={flood_writes}/{FLOOD_WORKS}",
        dropped("unknown_object"),
        dropped("future_generation")
    );
    println!(
        "hub memory (process RSS): before flood {:.1} MiB, peak during {:.1} MiB, after {:.1} MiB (high-water {:.1} MiB)",
        rss0 as f64 / 1024.0,
        peak.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1024.0,
        rss_after as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    println!(
        "reports held by the hub: peak {:.1} MiB (the flooder's budget is {:.1} MiB)",
        held_peak.load(std::sync::atomic::Ordering::Relaxed) as f64 / (1024.0 * 1024.0),
        GrpcConfig::default().report_budget_bytes as f64 / (1024.0 * 1024.0)
    );
    print_latency("other clusters, no flood", &baseline);
    print_latency("other clusters, under flood", &under_flood);
}
