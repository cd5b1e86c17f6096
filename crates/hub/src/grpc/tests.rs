//! The service over real HTTP/2 on loopback, without TLS: a test interceptor takes
//! the cluster identity from a header (in production it comes from the client
//! certificate, see `identity_from_tls`).

use super::*;
use crate::index::{Index, Limits};
use crate::objects::{ClusterObject, Meta, ObjectKey, WORK_FINALIZER, WorkObject, WorkSpec};
use drbridge_proto::v1::dispatch_client::DispatchClient;
use drbridge_proto::v1::dispatch_server::DispatchServer;
use tonic::transport::Channel;

const EPOCH: u64 = 1000;
const WAIT: Duration = Duration::from_secs(10);

fn work(ns: &str, name: &str, generation: i64, bytes: usize) -> WorkObject {
    WorkObject {
        meta: Meta {
            namespace: ns.into(),
            name: name.into(),
            uid: format!("{name}-uid"),
            generation,
            resource_version: "1".into(),
            finalizers: vec![WORK_FINALIZER.into()],
            ..Default::default()
        },
        spec: Ok(WorkSpec {
            manifests: vec![vec![b'x'; bytes]],
            ..Default::default()
        }),
        conditions: vec![],
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
    }
}

struct Harness {
    index: SharedIndex,
    channel: Channel,
    writes: mpsc::Receiver<WriteOp>,
    presence: mpsc::Receiver<Event>,
    metrics: Metrics,
    _server: tokio::task::JoinHandle<()>,
}

#[allow(clippy::result_large_err)]
fn header_identity(mut req: Request<()>) -> Result<Request<()>, Status> {
    if let Some(c) = req.metadata().get("x-test-cluster") {
        let c = c.to_str().unwrap().to_string();
        req.extensions_mut().insert(ClusterIdentity(c));
    }
    if let Some(serial) = req.metadata().get("x-test-serial") {
        let serial = serial.to_str().unwrap().to_string();
        let secs: u64 = req
            .metadata()
            .get("x-test-not-after")
            .unwrap()
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let not_after = std::time::UNIX_EPOCH + Duration::from_secs(secs);
        req.extensions_mut()
            .insert(CertificateInfo { serial, not_after });
    }
    Ok(req)
}

async fn harness(clusters: &[&str], works: Vec<WorkObject>, cfg: GrpcConfig) -> Harness {
    harness_with(clusters, works, cfg, None).await
}

async fn harness_with(
    clusters: &[&str],
    works: Vec<WorkObject>,
    cfg: GrpcConfig,
    identities: Option<Identities>,
) -> Harness {
    let metrics = Metrics::default();
    let mut index = Index::new(Limits::default(), None, metrics.clone());
    index.reset_works(works);
    index.reset_views(vec![]);
    index.reset_clusters(clusters.iter().map(|c| cluster(c)).collect());
    let index = index.shared();
    let (w_tx, writes) = mpsc::channel(64);
    let (p_tx, presence) = mpsc::channel(64);
    let svc = DispatchService::with_identities(
        cfg,
        index.clone(),
        w_tx,
        p_tx,
        metrics.clone(),
        identities,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(tonic::service::interceptor::InterceptedService::new(
                DispatchServer::new(svc).max_decoding_message_size(64 << 20),
                header_identity,
            ))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
            .unwrap();
    });
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    Harness {
        index,
        channel,
        writes,
        presence,
        metrics,
        _server: server,
    }
}

fn cfg() -> GrpcConfig {
    GrpcConfig {
        hub_id: "hub-a".into(),
        epoch: EPOCH,
        heartbeat: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(60),
        hello_timeout: Duration::from_secs(10),
        max_sync_bytes: 4 << 20,
    }
}

struct Agent {
    tx: mpsc::Sender<pb::AgentMessage>,
    rx: Streaming<pb::HubMessage>,
}

fn hello(known: Vec<pb::WorkVersion>, max_hub_epoch: u64) -> pb::AgentMessage {
    pb::AgentMessage {
        body: Some(pb::agent_message::Body::Hello(pb::Hello {
            agent_version: "test".into(),
            known_works: known,
            cluster: Some(pb::ClusterInfo::default()),
            max_hub_epoch,
        })),
    }
}

async fn dial(h: &Harness, cluster: Option<&str>) -> Result<Agent, Status> {
    let (tx, rx) = mpsc::channel(16);
    let mut req = Request::new(ReceiverStream::new(rx));
    if let Some(c) = cluster {
        req.metadata_mut()
            .insert("x-test-cluster", c.parse().unwrap());
    }
    let mut client = DispatchClient::new(h.channel.clone()).max_decoding_message_size(64 << 20);
    let resp = client.connect(req).await?;
    Ok(Agent {
        tx,
        rx: resp.into_inner(),
    })
}

/// Dials as `cluster` with a certificate of `serial` valid until `not_after`, and says Hello.
async fn dial_cert(
    h: &Harness,
    cluster: &str,
    serial: &str,
    not_after: SystemTime,
) -> Result<Agent, Status> {
    let (tx, rx) = mpsc::channel(16);
    let mut req = Request::new(ReceiverStream::new(rx));
    let secs = not_after
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let md = req.metadata_mut();
    md.insert("x-test-cluster", cluster.parse().unwrap());
    md.insert("x-test-serial", serial.parse().unwrap());
    md.insert("x-test-not-after", secs.to_string().parse().unwrap());
    tx.send(hello(vec![], 0)).await.unwrap();
    let resp = DispatchClient::new(h.channel.clone()).connect(req).await?;
    Ok(Agent {
        tx,
        rx: resp.into_inner(),
    })
}

async fn connect(h: &Harness, cluster: &str, known: Vec<pb::WorkVersion>) -> Agent {
    let agent = dial(h, Some(cluster)).await.unwrap();
    agent.tx.send(hello(known, 0)).await.unwrap();
    agent
}

impl Agent {
    async fn next(&mut self) -> Result<pb::hub_message::Body, Status> {
        loop {
            let msg = tokio::time::timeout(WAIT, self.rx.message())
                .await
                .expect("hub message in time")?
                .expect("stream open");
            match msg.body.unwrap() {
                pb::hub_message::Body::Heartbeat(_) => continue,
                b => return Ok(b),
            }
        }
    }

    async fn welcome(&mut self) -> pb::Welcome {
        match self.next().await.unwrap() {
            pb::hub_message::Body::Welcome(w) => w,
            other => panic!("expected Welcome, got {other:?}"),
        }
    }

    async fn sync(&mut self) -> pb::Sync {
        match self.next().await.unwrap() {
            pb::hub_message::Body::Sync(s) => s,
            other => panic!("expected Sync, got {other:?}"),
        }
    }

    /// Reads syncs until `initial_sync_done`.
    async fn initial(&mut self) -> Vec<pb::Sync> {
        let mut out = vec![];
        loop {
            let s = self.sync().await;
            let done = s.initial_sync_done;
            out.push(s);
            if done {
                return out;
            }
        }
    }

    async fn error(&mut self) -> Status {
        loop {
            match tokio::time::timeout(WAIT, self.rx.message())
                .await
                .expect("stream end in time")
            {
                Err(s) => return s,
                Ok(None) => panic!("stream ended without a status"),
                Ok(Some(_)) => continue,
            }
        }
    }
}

fn work_names(syncs: &[pb::Sync]) -> Vec<String> {
    syncs
        .iter()
        .flat_map(|s| s.works.iter().map(|w| w.name.clone()))
        .collect()
}

#[tokio::test]
async fn welcome_then_only_what_differs() {
    let h = harness(
        &["dr1"],
        vec![
            work("dr1", "a", 1, 10),
            work("dr1", "b", 2, 10),
            work("dr2", "other", 1, 10),
        ],
        cfg(),
    )
    .await;
    let known = vec![pb::WorkVersion {
        name: "a".into(),
        uid: "a-uid".into(),
        generation: 1,
        deleting: false,
    }];
    let mut agent = connect(&h, "dr1", known).await;
    let w = agent.welcome().await;
    assert_eq!(w.cluster, "dr1");
    assert_eq!(w.hub_id, "hub-a");
    assert_eq!(w.epoch, EPOCH);
    assert_eq!(w.heartbeat_seconds, 5);
    let syncs = agent.initial().await;
    assert_eq!(work_names(&syncs), vec!["b"]);

    // A later change arrives as its own Sync.
    h.index.write().apply_work(work("dr1", "c", 1, 10));
    let s = agent.sync().await;
    assert!(!s.initial_sync_done);
    assert_eq!(work_names(&[s]), vec!["c"]);
    assert!(h.metrics.syncs_sent.get() >= 2);
    assert_eq!(h.metrics.connected_agents.get(), 1);
}

#[tokio::test]
async fn unregistered_and_anonymous_are_refused() {
    let h = harness(&["dr1"], vec![], cfg()).await;
    let err = dial(&h, Some("dr3")).await.err().expect("refused");
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    assert!(
        err.message().contains("no ManagedCluster named \"dr3\""),
        "{}",
        err.message()
    );
    let err = dial(&h, None).await.err().expect("refused");
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    assert_eq!(h.metrics.connections_refused.get(), 2);
}

#[tokio::test]
async fn a_newer_hub_epoch_seen_by_the_agent_is_refused() {
    let h = harness(&["dr1"], vec![], cfg()).await;
    let mut agent = dial(&h, Some("dr1")).await.unwrap();
    agent.tx.send(hello(vec![], EPOCH + 1)).await.unwrap();
    let st = agent.error().await;
    assert_eq!(st.code(), tonic::Code::FailedPrecondition);
    assert!(st.message().contains("stale writer"));
}

#[tokio::test]
async fn first_message_must_be_hello() {
    let h = harness(&["dr1"], vec![], cfg()).await;
    let mut agent = dial(&h, Some("dr1")).await.unwrap();
    agent
        .tx
        .send(pb::AgentMessage {
            body: Some(pb::agent_message::Body::Heartbeat(pb::Heartbeat::default())),
        })
        .await
        .unwrap();
    assert_eq!(agent.error().await.code(), tonic::Code::InvalidArgument);
}

#[tokio::test]
async fn reports_are_bound_to_the_certificate_cluster() {
    let mut h = harness(&["dr1", "dr2"], vec![work("dr2", "theirs", 1, 1)], cfg()).await;
    let mut agent = connect(&h, "dr1", vec![]).await;
    agent.welcome().await;
    agent.initial().await;
    // The agent of dr1 reports about a work named like dr2's: it lands in dr1's
    // namespace, where the writer finds nothing to write.
    agent
        .tx
        .send(pb::AgentMessage {
            body: Some(pb::agent_message::Body::WorkStatus(pb::WorkStatus {
                name: "theirs".into(),
                uid: "theirs-uid".into(),
                generation: 1,
                ..Default::default()
            })),
        })
        .await
        .unwrap();
    let op = tokio::time::timeout(WAIT, h.writes.recv())
        .await
        .unwrap()
        .unwrap();
    match op {
        WriteOp::Report(Report::Work { cluster, status }) => {
            assert_eq!(cluster, "dr1");
            assert_eq!(status.name, "theirs");
        }
        other => panic!("{other:?}"),
    }
    // Presence saw the connection and the message.
    let ev = h.presence.recv().await.unwrap();
    assert!(matches!(ev, Event::Connected { ref cluster, .. } if cluster == "dr1"));
    let ev = h.presence.recv().await.unwrap();
    assert!(matches!(ev, Event::Seen { ref cluster, .. } if cluster == "dr1"));
}

#[tokio::test]
async fn a_second_stream_replaces_the_first() {
    let mut h = harness(&["dr1"], vec![work("dr1", "a", 1, 1)], cfg()).await;
    let mut first = connect(&h, "dr1", vec![]).await;
    first.welcome().await;
    first.initial().await;
    let mut second = connect(&h, "dr1", vec![]).await;
    second.welcome().await;
    assert_eq!(work_names(&second.initial().await), vec!["a"]);
    let st = first.error().await;
    assert_eq!(st.code(), tonic::Code::Aborted);
    assert!(st.message().contains("replaced"));
    // Later changes go to the new stream.
    h.index.write().apply_work(work("dr1", "a", 2, 1));
    assert_eq!(second.sync().await.works[0].generation, 2);
    // Presence: connected 1, connected 2, disconnected 1.
    let mut evs = vec![];
    while evs.len() < 3 {
        evs.push(
            tokio::time::timeout(WAIT, h.presence.recv())
                .await
                .unwrap()
                .unwrap(),
        );
    }
    assert!(evs.iter().any(|e| matches!(e, Event::Disconnected { .. })));
}

#[tokio::test]
async fn unregistering_ends_the_stream() {
    let h = harness(&["dr1"], vec![], cfg()).await;
    let mut agent = connect(&h, "dr1", vec![]).await;
    agent.welcome().await;
    agent.initial().await;
    h.index.write().delete_cluster("dr1");
    let st = agent.error().await;
    assert_eq!(st.code(), tonic::Code::PermissionDenied);
    assert!(st.message().contains("no longer registered"));
}

#[tokio::test]
async fn large_initial_state_is_chunked() {
    // 5 works of 1.5 MiB with a 4 MiB cap.
    let works = (0..5)
        .map(|i| work("dr1", &format!("w{i}"), 1, 1536 * 1024))
        .collect();
    let h = harness(&["dr1"], works, cfg()).await;
    let mut agent = connect(&h, "dr1", vec![]).await;
    agent.welcome().await;
    let syncs = agent.initial().await;
    assert!(syncs.len() >= 3, "{} syncs", syncs.len());
    assert_eq!(work_names(&syncs).len(), 5);
    for s in &syncs {
        assert!(s.encoded_len() <= 4 << 20);
    }
}

#[tokio::test]
async fn a_stuck_agent_does_not_delay_another() {
    let h = harness(&["slow", "fast"], vec![], cfg()).await;
    // The slow agent connects and then never reads.
    let slow = connect(&h, "slow", vec![]).await;
    let mut fast = connect(&h, "fast", vec![]).await;
    fast.welcome().await;
    fast.initial().await;
    // Fill the slow agent's pipe with far more than HTTP/2 windows and buffers hold.
    for i in 0..40 {
        h.index
            .write()
            .apply_work(work("slow", &format!("w{i}"), 1, 1 << 20));
    }
    let started = std::time::Instant::now();
    h.index.write().apply_work(work("fast", "x", 1, 10));
    let s = fast.sync().await;
    assert_eq!(work_names(&[s]), vec!["x"]);
    assert!(started.elapsed() < Duration::from_secs(2));
    drop(slow);
}

#[tokio::test]
async fn silent_agent_is_disconnected() {
    let mut c = cfg();
    c.idle_timeout = Duration::from_millis(300);
    let h = harness(&["dr1"], vec![], c).await;
    let mut agent = connect(&h, "dr1", vec![]).await;
    agent.welcome().await;
    agent.initial().await;
    let st = agent.error().await;
    assert_eq!(st.code(), tonic::Code::DeadlineExceeded);
}

#[tokio::test]
async fn work_gone_and_view_status_are_forwarded() {
    let mut h = harness(&["dr1"], vec![], cfg()).await;
    let mut agent = connect(&h, "dr1", vec![]).await;
    agent.welcome().await;
    agent.initial().await;
    for body in [
        pb::agent_message::Body::WorkGone(pb::WorkGone {
            name: "a".into(),
            uid: "u".into(),
        }),
        pb::agent_message::Body::ViewStatus(pb::ViewStatus {
            name: "v".into(),
            ..Default::default()
        }),
    ] {
        agent
            .tx
            .send(pb::AgentMessage { body: Some(body) })
            .await
            .unwrap();
    }
    let a = h.writes.recv().await.unwrap();
    let b = h.writes.recv().await.unwrap();
    assert!(matches!(a, WriteOp::Report(Report::Gone { ref cluster, .. }) if cluster == "dr1"));
    assert!(matches!(b, WriteOp::Report(Report::View { ref cluster, .. }) if cluster == "dr1"));
    let _ = ObjectKey::new("dr1", "a");
}

#[tokio::test]
async fn identity_records_gate_streams_and_a_revocation_ends_them() {
    use crate::identity::{AcceptedCert, IdentityRecord};
    let ids = Identities::new(false);
    let h = harness_with(&["dr1", "dr2"], vec![], cfg(), Some(ids.clone())).await;
    let later = SystemTime::now() + Duration::from_secs(3600);

    // Records not listed yet: nobody gets in.
    let err = dial_cert(&h, "dr1", "aa", later).await.err().unwrap();
    assert_eq!(err.code(), tonic::Code::Unavailable);

    let accepted = AcceptedCert {
        serial: "aa".into(),
        not_after: chrono::DateTime::<chrono::Utc>::from(later),
        issued: chrono::Utc::now(),
    };
    ids.reset(HashMap::from([(
        "dr1".to_string(),
        IdentityRecord::joined(0, accepted),
    )]));
    // Another certificate of dr1 is refused; dr2 has no record, so any CA-signed
    // certificate naming it is accepted (issued outside drbridge).
    let err = dial_cert(&h, "dr1", "bb", later).await.err().unwrap();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    let mut other = dial_cert(&h, "dr2", "cc", later).await.unwrap();
    other.welcome().await;
    // A request without certificate details is refused when records are on.
    assert_eq!(
        dial(&h, Some("dr1")).await.err().unwrap().code(),
        tonic::Code::Unauthenticated
    );

    let mut agent = dial_cert(&h, "dr1", "aa", later).await.unwrap();
    agent.welcome().await;
    agent.initial().await;
    // An unrelated change re-checks and keeps the stream.
    ids.set("dr3", Some(IdentityRecord::tombstone()));
    // Removal: the open stream ends at once.
    ids.set("dr1", Some(IdentityRecord::removed_after(None)));
    let status = agent.error().await;
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains("removed"), "{status:?}");
    // dr2's stream is untouched.
    let deadline = tokio::time::Instant::now() + WAIT;
    while h.metrics.connected_agents.get() != 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "dr1's stream closed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(other);
}

#[tokio::test]
async fn a_stream_ends_when_its_certificate_expires() {
    let h = harness(&["dr1"], vec![], cfg()).await;
    let past = SystemTime::now() - Duration::from_secs(1);
    let err = dial_cert(&h, "dr1", "aa", past).await.err().unwrap();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);

    // X.509 times are whole seconds: this certificate expires within two seconds.
    let soon = SystemTime::now() + Duration::from_secs(2);
    let mut agent = dial_cert(&h, "dr1", "aa", soon).await.unwrap();
    agent.welcome().await;
    agent.initial().await;
    let status = agent.error().await;
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    assert!(status.message().contains("expired"), "{status:?}");
}
