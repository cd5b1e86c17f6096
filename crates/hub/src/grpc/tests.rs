//! The service over real HTTP/2 on loopback, without TLS: a test interceptor takes
//! the cluster identity from a header (in production it comes from the client
//! certificate, see `identity_from_tls`).

use super::*;
use crate::desired::Limits;
use crate::index::Index;
use crate::leader::Leadership;
use crate::objects::{ClusterObject, Meta, ObjectKey, WORK_FINALIZER, WorkObject, WorkSpec};
use drbridge_proto::v1::dispatch_client::DispatchClient;
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

struct Harness {
    index: SharedIndex,
    service: DispatchService,
    addr: std::net::SocketAddr,
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
    let leadership = Leadership::fixed(cfg.epoch);
    harness_led(clusters, works, cfg, identities, leadership).await
}

async fn harness_led(
    clusters: &[&str],
    works: Vec<WorkObject>,
    cfg: GrpcConfig,
    identities: Option<Identities>,
    leadership: Leadership,
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
    )
    .with_leadership(leadership);
    let service = svc.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(tonic::service::interceptor::InterceptedService::new(
                crate::dispatch_server(svc),
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
        service,
        addr,
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
        ..Default::default()
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
    let agent = dial_cert_silent(h, cluster, serial, not_after).await?;
    agent.tx.send(hello(vec![], 0)).await.unwrap();
    Ok(agent)
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
async fn a_follower_refuses_agents_so_they_dial_again() {
    let leadership = Leadership::follower();
    let h = harness_led(&["dr1"], vec![], cfg(), None, leadership.clone()).await;
    let err = dial(&h, Some("dr1")).await.err().expect("refused");
    assert_eq!(err.code(), tonic::Code::Unavailable);
    assert!(
        err.message().contains("not the leader"),
        "{}",
        err.message()
    );
    assert!(
        err.metadata()
            .get(drbridge_proto::NOT_LEADER_METADATA)
            .is_some()
    );
    // Leading, it serves, with the term's epoch.
    leadership.lead(
        EPOCH + 7,
        tokio::time::Instant::now() + Duration::from_secs(3600),
    );
    let mut agent = connect(&h, "dr1", vec![]).await;
    assert_eq!(agent.welcome().await.epoch, EPOCH + 7);
}

#[tokio::test]
async fn a_stream_ends_with_its_term() {
    let leadership = Leadership::follower();
    leadership.lead(
        EPOCH,
        tokio::time::Instant::now() + Duration::from_secs(3600),
    );
    let w = work("dr1", "w1", 1, 10);
    let h = harness_led(&["dr1"], vec![w], cfg(), None, leadership.clone()).await;
    let mut agent = connect(&h, "dr1", vec![]).await;
    agent.welcome().await;
    agent.sync().await;
    leadership.follow();
    let st = agent.error().await;
    assert_eq!(st.code(), tonic::Code::Unavailable);
    assert!(
        st.metadata()
            .get(drbridge_proto::NOT_LEADER_METADATA)
            .is_some()
    );
    // A new term of the same replica serves again, with a higher epoch.
    leadership.lead(
        EPOCH + 1,
        tokio::time::Instant::now() + Duration::from_secs(3600),
    );
    let mut agent = connect(&h, "dr1", vec![]).await;
    assert_eq!(agent.welcome().await.epoch, EPOCH + 1);
}

#[tokio::test]
async fn acknowledged_syncs_are_tracked_per_stream() {
    let w = work("dr1", "w1", 1, 10);
    let h = harness(&["dr1"], vec![w], cfg()).await;
    let mut agent = connect(&h, "dr1", vec![]).await;
    agent.welcome().await;
    let sync = agent.sync().await;
    let acks = h.service.acks();
    assert!(
        acks.lock().oldest("dr1").is_some(),
        "the sync is unacknowledged"
    );
    agent
        .tx
        .send(pb::AgentMessage {
            body: Some(pb::agent_message::Body::SyncAck(pb::SyncAck {
                sync_id: sync.sync_id,
            })),
        })
        .await
        .unwrap();
    // Messages are read in order: once a later report reaches the writer's queue, the
    // acknowledgement before it has been taken in.
    agent.tx.send(work_status("w1", 1)).await.unwrap();
    let mut h = h;
    tokio::time::timeout(WAIT, h.writes.recv())
        .await
        .expect("the report after the ack")
        .unwrap();
    assert_eq!(acks.lock().oldest("dr1"), None);
    // A stream that ends with a sync unacknowledged leaves it outstanding.
    drop(agent);
    let mut agent = connect(&h, "dr1", vec![]).await;
    agent.welcome().await;
    agent.sync().await;
    drop(agent);
    let mut rx = h.presence;
    while let Some(ev) = tokio::time::timeout(WAIT, rx.recv()).await.unwrap() {
        if matches!(ev, Event::Disconnected { conn: 2, .. }) {
            break;
        }
    }
    assert!(acks.lock().oldest("dr1").is_some());
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

fn work_status(name: &str, generation: i64) -> pb::AgentMessage {
    pb::AgentMessage {
        body: Some(pb::agent_message::Body::WorkStatus(pb::WorkStatus {
            name: name.into(),
            uid: format!("{name}-uid"),
            generation,
            ..Default::default()
        })),
    }
}

fn dropped(m: &Metrics, reason: &'static str) -> u64 {
    m.status_dropped
        .get_or_create(&crate::metrics::DropLabels { reason })
        .get()
}

/// Issue 17 item 5: a report is queued only for a work or view the index holds in the
/// reporting cluster's namespace; anything else is dropped and counted, so the writer's map
/// can only hold keys that exist.
#[tokio::test]
async fn reports_are_bound_to_the_certificate_cluster() {
    let mut h = harness(
        &["dr1", "dr2"],
        vec![work("dr2", "theirs", 1, 1), work("dr1", "mine", 1, 1)],
        cfg(),
    )
    .await;
    let mut agent = connect(&h, "dr1", vec![]).await;
    agent.welcome().await;
    agent.initial().await;
    // The agent of dr1 reports about a work named like dr2's, and about names nobody has.
    agent.tx.send(work_status("theirs", 1)).await.unwrap();
    for i in 0..50 {
        agent
            .tx
            .send(work_status(&format!("invented-{i}"), 1))
            .await
            .unwrap();
    }
    agent.tx.send(work_status("mine", 1)).await.unwrap();
    let op = tokio::time::timeout(WAIT, h.writes.recv())
        .await
        .unwrap()
        .unwrap();
    match op {
        WriteOp::Report(Report::Work { cluster, status }, _) => {
            assert_eq!(cluster, "dr1");
            assert_eq!(status.name, "mine");
        }
        other => panic!("{other:?}"),
    }
    assert!(h.writes.try_recv().is_err(), "nothing else was queued");
    assert_eq!(dropped(&h.metrics, "unknown_object"), 51);
    // Presence saw the connection and the messages.
    let ev = h.presence.recv().await.unwrap();
    assert!(matches!(ev, Event::Connected { ref cluster, .. } if cluster == "dr1"));
    let ev = h.presence.recv().await.unwrap();
    assert!(matches!(ev, Event::Seen { ref cluster, .. } if cluster == "dr1"));
}

/// Issue 17 item 7: the agent learns generations only from the hub; a report for one the
/// index has not seen is refused before it reaches the writer.
#[tokio::test]
async fn a_report_for_a_future_generation_is_refused() {
    let mut h = harness(&["dr1"], vec![work("dr1", "mine", 3, 1)], cfg()).await;
    let mut agent = connect(&h, "dr1", vec![]).await;
    agent.welcome().await;
    agent.initial().await;
    agent.tx.send(work_status("mine", 4)).await.unwrap();
    agent.tx.send(work_status("mine", 3)).await.unwrap();
    match tokio::time::timeout(WAIT, h.writes.recv())
        .await
        .unwrap()
        .unwrap()
    {
        WriteOp::Report(Report::Work { status, .. }, _) => assert_eq!(status.generation, 3),
        other => panic!("{other:?}"),
    }
    assert_eq!(dropped(&h.metrics, "future_generation"), 1);
}

/// Issue 17 item 7: Hello's claims never change the identity the certificate gives: `name` is
/// the certificate's cluster, `id.k8s.io` cannot move once the ManagedCluster has one nor copy
/// another cluster's, and malformed or excess claims are dropped.
#[tokio::test]
async fn hello_claims_cannot_change_the_certificates_identity() {
    let mut h = harness(&["dr1", "dr2"], vec![], cfg()).await;
    {
        let mut idx = h.index.write();
        let mut c1 = cluster("dr1");
        c1.claims = vec![("id.k8s.io".into(), "id-of-dr1".into())];
        let mut c2 = cluster("dr2");
        c2.claims = vec![("id.k8s.io".into(), "id-of-dr2".into())];
        idx.apply_cluster(c1);
        idx.apply_cluster(c2);
    }
    let mut agent = dial(&h, Some("dr1")).await.unwrap();
    let mut claims: HashMap<String, String> = [
        ("name", "dr2"),
        ("id.k8s.io", "id-of-dr2"),
        ("Not A Claim!", "x"),
        ("platform.open-cluster-management.io", "Other"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for i in 0..100 {
        claims.insert(format!("x{i}.example.com"), "v".repeat(10));
    }
    agent
        .tx
        .send(pb::AgentMessage {
            body: Some(pb::agent_message::Body::Hello(pb::Hello {
                agent_version: "test".into(),
                known_works: vec![],
                cluster: Some(pb::ClusterInfo {
                    claims,
                    kubernetes_version: "v1.34.0".into(),
                }),
                max_hub_epoch: 0,
            })),
        })
        .await
        .unwrap();
    agent.welcome().await;
    let info = loop {
        match tokio::time::timeout(WAIT, h.presence.recv())
            .await
            .unwrap()
            .unwrap()
        {
            Event::Connected { info, .. } => break info,
            _ => continue,
        }
    };
    assert_eq!(info.claims["name"], "dr1");
    assert_eq!(info.claims["id.k8s.io"], "id-of-dr1");
    assert!(!info.claims.contains_key("Not A Claim!"));
    assert_eq!(info.claims["platform.open-cluster-management.io"], "Other");
    assert!(
        info.claims.len() <= crate::claims::MAX_CLAIMS,
        "{}",
        info.claims.len()
    );
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
    let c = cfg();
    // A hub that let the slow stream hold up others would deliver to the fast agent only
    // once it gave up on the slow one, at the idle timeout: half of it is the deadline.
    let deadline = c.idle_timeout / 2;
    let h = harness(&["slow", "fast"], vec![], c).await;
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
    h.index.write().apply_work(work("fast", "x", 1, 10));
    let s = tokio::time::timeout(deadline, fast.sync())
        .await
        .expect("the fast agent's sync is not held up behind the stuck one");
    assert_eq!(work_names(&[s]), vec!["x"]);
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
async fn work_gone_goes_to_the_index_and_view_status_is_forwarded() {
    let mut deleting = work("dr1", "a", 1, 1);
    deleting.meta.deleting = true;
    let mut h = harness(&["dr1"], vec![deleting], cfg()).await;
    h.index.write().apply_view(crate::objects::ViewObject {
        meta: Meta {
            namespace: "dr1".into(),
            name: "v".into(),
            uid: "v-uid".into(),
            generation: 1,
            ..Default::default()
        },
        scope: pb::ViewScope::default(),
        conditions: vec![],
        status: Default::default(),
    });
    let mut agent = connect(&h, "dr1", vec![]).await;
    agent.welcome().await;
    agent.initial().await;
    for body in [
        pb::agent_message::Body::WorkGone(pb::WorkGone {
            name: "a".into(),
            uid: "a-uid".into(),
        }),
        pb::agent_message::Body::ViewStatus(pb::ViewStatus {
            name: "v".into(),
            uid: "v-uid".into(),
            generation: 1,
            ..Default::default()
        }),
    ] {
        agent
            .tx
            .send(pb::AgentMessage { body: Some(body) })
            .await
            .unwrap();
    }
    // One reader handles both in order: once the view's report is queued, the index
    // holds the confirmation (and emitted the release; the writer only patches).
    let b = h.writes.recv().await.unwrap();
    assert!(matches!(b, WriteOp::Report(Report::View { ref cluster, .. }, _) if cluster == "dr1"));
    let key = ObjectKey::new("dr1", "a");
    assert!(h.index.read().work(&key).unwrap().gone_confirmed);
    assert!(h.writes.try_recv().is_err(), "a WorkGone is not a write");
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

/// Dials as `cluster` with a certificate of `serial`, without saying Hello yet.
async fn dial_cert_silent(
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
    let resp = DispatchClient::new(h.channel.clone()).connect(req).await?;
    Ok(Agent {
        tx,
        rx: resp.into_inner(),
    })
}

/// Issue 17 item 10: the identity was checked at connect; a removal before Hello (which may
/// take up to the Hello timeout) must still end the stream, and nothing is sent to it.
#[tokio::test]
async fn a_removal_before_hello_ends_the_stream() {
    use crate::identity::{AcceptedCert, IdentityRecord};
    let ids = Identities::new(false);
    let later = SystemTime::now() + Duration::from_secs(3600);
    ids.reset(HashMap::from([(
        "dr1".to_string(),
        IdentityRecord::joined(
            0,
            AcceptedCert {
                serial: "aa".into(),
                not_after: chrono::DateTime::<chrono::Utc>::from(later),
                issued: chrono::Utc::now(),
            },
        ),
    )]));
    let h = harness_with(
        &["dr1"],
        vec![work("dr1", "a", 1, 1)],
        cfg(),
        Some(ids.clone()),
    )
    .await;
    let mut agent = dial_cert_silent(&h, "dr1", "aa", later).await.unwrap();
    ids.set("dr1", Some(IdentityRecord::removed_after(None)));
    let _ = agent.tx.send(hello(vec![], 0)).await;
    let first = tokio::time::timeout(WAIT, agent.rx.message())
        .await
        .expect("an answer in time");
    match first {
        Err(status) => {
            assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
            assert!(status.message().contains("removed"), "{status:?}");
        }
        Ok(msg) => panic!("a removed cluster was sent {msg:?}"),
    }
}

/// Issue 17 item 5: a message over the report limit (the largest report that could ever be
/// written) is not read; it ends that agent's stream, and other streams carry on.
#[tokio::test]
async fn a_message_over_the_report_limit_ends_only_that_stream() {
    let h = harness(
        &["flood", "calm"],
        vec![work("flood", "w", 1, 1), work("calm", "c", 1, 1)],
        cfg(),
    )
    .await;
    let mut calm = connect(&h, "calm", vec![]).await;
    calm.welcome().await;
    calm.initial().await;
    let mut flood = connect(&h, "flood", vec![]).await;
    flood.welcome().await;
    flood.initial().await;
    let mut big = pb::WorkStatus {
        name: "w".into(),
        uid: "w-uid".into(),
        generation: 1,
        ..Default::default()
    };
    big.conditions.push(pb::Condition {
        r#type: "Applied".into(),
        message: "x".repeat(3 << 20),
        ..Default::default()
    });
    flood
        .tx
        .send(pb::AgentMessage {
            body: Some(pb::agent_message::Body::WorkStatus(big)),
        })
        .await
        .unwrap();
    let st = flood.error().await;
    assert_eq!(st.code(), tonic::Code::OutOfRange, "{st:?}");
    h.index.write().apply_work(work("calm", "c2", 1, 1));
    assert_eq!(work_names(&[calm.sync().await]), vec!["c2"]);
}

/// Issue 17 item 5: an agent that floods the hub with reports holds at most its own budget
/// (here with a writer that never gets to write: the API server is stuck), its junk is dropped
/// and counted, and another cluster's reports and desired state still flow.
#[tokio::test]
async fn a_flooding_agent_holds_only_its_budget_and_another_cluster_is_unaffected() {
    const BUDGET: usize = 1 << 20;
    let mut works: Vec<_> = (0..20)
        .map(|i| work("flood", &format!("w{i}"), 1, 1))
        .collect();
    works.push(work("calm", "c", 1, 1));
    let mut c = cfg();
    c.report_budget_bytes = BUDGET;
    let mut h = harness(&["flood", "calm"], works, c).await;
    // The writer's queue, coalescing as the real writer does; nothing is ever written.
    let pending = Arc::new(Mutex::new(crate::status::Pending::default()));
    let mut writes = std::mem::replace(&mut h.writes, mpsc::channel(1).1);
    let p = pending.clone();
    tokio::spawn(async move {
        while let Some(op) = writes.recv().await {
            p.lock().push(op);
        }
    });
    let mut calm = connect(&h, "calm", vec![]).await;
    calm.welcome().await;
    calm.initial().await;
    // The flooder has its own connection, as every agent does.
    let own = Channel::from_shared(format!("http://{}", h.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let (tx, rx) = mpsc::channel(16);
    let mut req = Request::new(ReceiverStream::new(rx));
    req.metadata_mut()
        .insert("x-test-cluster", "flood".parse().unwrap());
    tx.send(hello(vec![], 0)).await.unwrap();
    let mut flood = Agent {
        tx,
        rx: DispatchClient::new(own)
            .connect(req)
            .await
            .unwrap()
            .into_inner(),
    };
    flood.welcome().await;
    flood.initial().await;
    let sender = flood.tx.clone();
    let flooder = tokio::spawn(async move {
        let big = "x".repeat(100 * 1024);
        for i in 0..100_000u32 {
            let w = format!("w{}", i % 20);
            let mut msg = match i % 4 {
                0 => work_status(&format!("invented-{i}"), 1),
                1 => work_status(&w, 2),
                _ => work_status(&w, 1),
            };
            if i % 4 >= 2
                && let Some(pb::agent_message::Body::WorkStatus(s)) = msg.body.as_mut()
            {
                s.conditions.push(pb::Condition {
                    r#type: "Applied".into(),
                    message: big.clone(),
                    ..Default::default()
                });
            }
            if sender.send(msg).await.is_err() {
                return;
            }
        }
    });
    let held = |h: &Harness| h.service.report_bytes_held("flood");
    drbridge_localenv::eventually("the flooder held at its budget", WAIT, || {
        let full = held(&h) > BUDGET - 2 * 110 * 1024;
        async move { full.then_some(()) }
    })
    .await;
    assert!(dropped(&h.metrics, "unknown_object") > 0);
    assert!(dropped(&h.metrics, "future_generation") > 0);

    // Meanwhile another cluster's report is queued and its desired state still flows.
    calm.tx.send(work_status("c", 1)).await.unwrap();
    drbridge_localenv::eventually("calm's report queued", WAIT, || {
        let queued = pending.lock().ops().any(|op| {
            matches!(op, WriteOp::Report(Report::Work { cluster, .. }, _) if cluster == "calm")
        });
        async move { queued.then_some(()) }
    })
    .await;
    h.index.write().apply_work(work("calm", "c2", 1, 1));
    assert_eq!(work_names(&[calm.sync().await]), vec!["c2"]);

    // Flat: whatever the flooder sends, the hub holds no more than its budget, and one
    // queued report per object.
    for _ in 0..20 {
        assert!(held(&h) <= BUDGET, "{} > {BUDGET}", held(&h));
        assert!(pending.lock().len() <= 21, "{}", pending.lock().len());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!flooder.is_finished(), "the flooder is held back, not done");
    flooder.abort();
}

/// Issue 17 item 5: past its burst, a stream is read at its rate, whatever it sends.
#[test]
fn the_read_rate_holds_a_flood_to_its_rate_after_the_burst() {
    let t0 = tokio::time::Instant::now();
    let mut r = RateLimit::new(1000, 5000, t0);
    // The burst passes at once.
    for _ in 0..5 {
        assert_eq!(r.take(1000, t0), Duration::ZERO);
    }
    // Then every 1000 costs a second.
    assert_eq!(r.take(1000, t0), Duration::from_secs(1));
    assert_eq!(r.take(1000, t0), Duration::from_secs(2));
    // Time refills it, never beyond the burst.
    let later = t0 + Duration::from_secs(3600);
    assert_eq!(r.take(5000, later), Duration::ZERO);
    assert_eq!(r.take(500, later), Duration::from_millis(500));
}
