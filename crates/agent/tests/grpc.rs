//! The agent's connection loop over real gRPC and mTLS on loopback, against a minimal
//! scripted hub: dial, Hello, Welcome, Sync in, SyncAck and status out; reconnect after
//! the hub goes away; a hub with an older epoch is refused.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use drbridge_agent::pb;
use drbridge_agent::testing::FakeCluster;
use drbridge_agent::{Agent, HubEndpoint, MemoryStore, WorkConfig};
use drbridge_model::Allowlist;
use drbridge_tls::pki::Ca;
use drbridge_tls::{ChannelOptions, ServerTls, TlsPaths, incoming, peer_identity};
use pb::agent_message::Body;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_stream::wrappers::ReceiverStream;

const HUB_NAME: &str = "hub.drbridge.test";
const DAY: Duration = Duration::from_secs(24 * 3600);
const DEADLINE: Duration = Duration::from_secs(30);

/// What the scripted hub saw on one stream.
#[derive(Debug)]
enum Seen {
    Connected { cluster: String, hello: pb::Hello },
    Message(Body),
    Closed,
}

struct ScriptedHub {
    epoch: u64,
    /// Ends every stream when it turns true (a hub going away).
    kill: watch::Receiver<bool>,
    /// Sent after Welcome on every stream.
    syncs: Vec<pb::Sync>,
    seen: mpsc::UnboundedSender<Seen>,
    /// Streams still to refuse as a replica that does not lead.
    not_leader: Arc<std::sync::atomic::AtomicUsize>,
}

#[tonic::async_trait]
impl pb::dispatch_server::Dispatch for ScriptedHub {
    type ConnectStream = ReceiverStream<Result<pb::HubMessage, tonic::Status>>;

    async fn connect(
        &self,
        req: tonic::Request<tonic::Streaming<pb::AgentMessage>>,
    ) -> Result<tonic::Response<Self::ConnectStream>, tonic::Status> {
        let cluster = peer_identity(&req)?.cluster.to_string();
        let refuse = self
            .not_leader
            .fetch_update(
                std::sync::atomic::Ordering::SeqCst,
                std::sync::atomic::Ordering::SeqCst,
                |n| n.checked_sub(1),
            )
            .is_ok();
        if refuse {
            let mut meta = tonic::metadata::MetadataMap::new();
            meta.insert(
                drbridge_proto::NOT_LEADER_METADATA,
                tonic::metadata::MetadataValue::from_static("true"),
            );
            return Err(tonic::Status::with_metadata(
                tonic::Code::Unavailable,
                "not the leader",
                meta,
            ));
        }
        let mut inbound = req.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let seen = self.seen.clone();
        let (epoch, syncs) = (self.epoch, self.syncs.clone());
        let mut kill = self.kill.clone();
        tokio::spawn(async move {
            let Ok(Some(pb::AgentMessage {
                body: Some(Body::Hello(hello)),
            })) = inbound.message().await
            else {
                return;
            };
            let _ = seen.send(Seen::Connected {
                cluster: cluster.clone(),
                hello,
            });
            let welcome = pb::Welcome {
                cluster,
                hub_id: format!("hub-{epoch}"),
                epoch,
                heartbeat_seconds: 1,
            };
            let _ = tx
                .send(Ok(pb::HubMessage {
                    body: Some(pb::hub_message::Body::Welcome(welcome)),
                }))
                .await;
            for s in syncs {
                let _ = tx
                    .send(Ok(pb::HubMessage {
                        body: Some(pb::hub_message::Body::Sync(s)),
                    }))
                    .await;
            }
            let mut beat = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = drbridge_agent::retry::stopped(&mut kill) => break,
                    m = inbound.message() => match m {
                        Ok(Some(pb::AgentMessage { body: Some(b) })) => { let _ = seen.send(Seen::Message(b)); }
                        Ok(Some(_)) => {}
                        _ => break,
                    },
                    _ = beat.tick() => {
                        let hb = pb::Heartbeat { sent_time: String::new() };
                        if tx.send(Ok(pb::HubMessage { body: Some(pb::hub_message::Body::Heartbeat(hb)) })).await.is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = seen.send(Seen::Closed);
        });
        Ok(tonic::Response::new(ReceiverStream::new(rx)))
    }
}

struct RunningHub {
    stop: oneshot::Sender<()>,
    kill: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningHub {
    /// Ends every stream, then the server (graceful shutdown waits for open streams).
    async fn shut_down(self) {
        self.kill.send_replace(true);
        let _ = self.stop.send(());
        tokio::time::timeout(DEADLINE, self.task)
            .await
            .expect("hub did not stop")
            .unwrap();
    }
}

async fn serve(
    addr: SocketAddr,
    tls: TlsPaths,
    epoch: u64,
    syncs: Vec<pb::Sync>,
    seen: mpsc::UnboundedSender<Seen>,
) -> (RunningHub, SocketAddr) {
    serve_refusing(addr, tls, epoch, syncs, seen, 0).await
}

/// [`serve`], refusing the first `not_leader` streams as a replica that does not lead.
async fn serve_refusing(
    addr: SocketAddr,
    tls: TlsPaths,
    epoch: u64,
    syncs: Vec<pb::Sync>,
    seen: mpsc::UnboundedSender<Seen>,
    not_leader: usize,
) -> (RunningHub, SocketAddr) {
    let (kill, kill_rx) = watch::channel(false);
    let hub = ScriptedHub {
        epoch,
        kill: kill_rx,
        syncs,
        seen,
        not_leader: Arc::new(not_leader.into()),
    };
    let listener = TcpListener::bind(addr).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let tls = ServerTls::new(tls).unwrap();
    let task = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(pb::dispatch_server::DispatchServer::new(hub))
            .serve_with_incoming_shutdown(incoming(listener, tls), async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    (RunningHub { stop, kill, task }, addr)
}

async fn next_seen<T>(
    rx: &mut mpsc::UnboundedReceiver<Seen>,
    mut f: impl FnMut(&Seen) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let s = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .expect("hub saw nothing in time")
            .unwrap();
        if let Some(t) = f(&s) {
            return t;
        }
    }
}

fn work_sync() -> pb::Sync {
    let m = serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "ns"}})).unwrap();
    pb::Sync {
        sync_id: 7,
        works: vec![pb::Work {
            name: "w1".into(),
            uid: "u1".into(),
            generation: 3,
            manifests: vec![m],
            ..Default::default()
        }],
        initial_sync_done: true,
        ..Default::default()
    }
}

#[tokio::test]
async fn connects_applies_reconnects_and_refuses_a_stale_hub() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::generate("test CA").unwrap();
    std::fs::write(dir.path().join("ca.crt"), ca.cert_pem()).unwrap();
    ca.issue_server(&[HUB_NAME], &[IpAddr::V4(Ipv4Addr::LOCALHOST)], DAY)
        .unwrap()
        .write(dir.path(), "hub")
        .unwrap();
    ca.issue_client(&"c1".parse().unwrap(), DAY)
        .unwrap()
        .write(dir.path(), "c1")
        .unwrap();
    let hub_tls = TlsPaths::in_dir(dir.path(), "hub", "ca");

    let cluster = FakeCluster::new();
    cluster.put(
        "Namespace",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kube-system"}}),
    );
    let mut cfg = WorkConfig::default();
    cfg.policy.allowlist = Allowlist::allow_all();
    let agent = Arc::new(
        Agent::start(
            Arc::new(cluster.clone()),
            Arc::new(MemoryStore::default()),
            "c1",
            cfg,
            Default::default(),
        )
        .await
        .unwrap(),
    );

    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let (hub, addr) = serve(
        "127.0.0.1:0".parse().unwrap(),
        hub_tls.clone(),
        100,
        vec![work_sync()],
        seen_tx.clone(),
    )
    .await;
    let endpoint = HubEndpoint {
        endpoint: format!("https://{addr}"),
        server_name: HUB_NAME.into(),
        tls: TlsPaths::in_dir(dir.path(), "c1", "ca"),
        channel: ChannelOptions {
            connect_timeout: Duration::from_secs(2),
            ..Default::default()
        },
        backoff_base: Duration::from_millis(50),
        backoff_cap: Duration::from_millis(200),
    };
    let (ready_tx, mut ready) = watch::channel(false);
    let (stop_tx, stop_rx) = watch::channel(false);
    let a = agent.clone();
    let ep = endpoint.clone();
    let run = tokio::spawn(async move { a.run(&ep, &ready_tx, stop_rx).await });

    // The hub reads the cluster from the client certificate; Hello carries the claims.
    let hello = next_seen(&mut seen, |s| match s {
        Seen::Connected { cluster, hello } => Some((cluster.clone(), hello.clone())),
        _ => None,
    })
    .await;
    assert_eq!(hello.0, "c1");
    assert_eq!(hello.1.max_hub_epoch, 0);
    assert_eq!(hello.1.cluster.as_ref().unwrap().claims["name"], "c1");
    tokio::time::timeout(DEADLINE, ready.wait_for(|r| *r))
        .await
        .unwrap()
        .unwrap();
    next_seen(&mut seen, |s| {
        matches!(s, Seen::Message(Body::SyncAck(a)) if a.sync_id == 7).then_some(())
    })
    .await;
    next_seen(&mut seen, |s| {
        matches!(s, Seen::Message(Body::WorkStatus(w)) if w.name == "w1" && w.conditions.iter().any(|c| c.r#type == "Available" && c.status == "True"))
            .then_some(())
    })
    .await;
    next_seen(&mut seen, |s| {
        matches!(s, Seen::Message(Body::Heartbeat(_))).then_some(())
    })
    .await;
    assert!(cluster.object("ConfigMap", "ns", "a").is_some());

    // The hub goes away; a stale one (lower epoch) comes up on the same address.
    hub.shut_down().await;
    tokio::time::timeout(DEADLINE, ready.wait_for(|r| !*r))
        .await
        .unwrap()
        .unwrap();
    let (stale, _) = serve(addr, hub_tls.clone(), 50, vec![], seen_tx.clone()).await;
    let hello = next_seen(&mut seen, |s| match s {
        Seen::Connected { hello, .. } => Some(hello.clone()),
        _ => None,
    })
    .await;
    assert_eq!(hello.max_hub_epoch, 100);
    assert_eq!(hello.known_works[0].generation, 3);
    // Refused: the agent drops the stream and never reports to the stale hub.
    next_seen(&mut seen, |s| match s {
        Seen::Closed => Some(()),
        Seen::Message(Body::WorkStatus(_)) => panic!("status sent to a stale hub"),
        _ => None,
    })
    .await;
    assert!(!*ready.borrow());
    stale.shut_down().await;

    // A newer hub is accepted and gets the status again.
    let (newer, _) = serve(addr, hub_tls, 200, vec![], seen_tx).await;
    next_seen(&mut seen, |s| {
        matches!(s, Seen::Message(Body::WorkStatus(w)) if w.name == "w1").then_some(())
    })
    .await;
    assert_eq!(agent.works().max_epoch(), 200);
    assert!(agent.metrics().reconnects.get() >= 2);

    stop_tx.send(true).unwrap();
    tokio::time::timeout(DEADLINE, run).await.unwrap().unwrap();
    newer.shut_down().await;
}

#[tokio::test]
async fn a_replica_that_does_not_lead_sends_the_agent_on_at_once() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::generate("test CA").unwrap();
    std::fs::write(dir.path().join("ca.crt"), ca.cert_pem()).unwrap();
    ca.issue_server(&[HUB_NAME], &[IpAddr::V4(Ipv4Addr::LOCALHOST)], DAY)
        .unwrap()
        .write(dir.path(), "hub")
        .unwrap();
    ca.issue_client(&"c1".parse().unwrap(), DAY)
        .unwrap()
        .write(dir.path(), "c1")
        .unwrap();
    let mut cfg = WorkConfig::default();
    cfg.policy.allowlist = Allowlist::allow_all();
    let cluster = FakeCluster::new();
    cluster.put(
        "Namespace",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kube-system"}}),
    );
    let agent = Arc::new(
        Agent::start(
            Arc::new(cluster),
            Arc::new(MemoryStore::default()),
            "c1",
            cfg,
            Default::default(),
        )
        .await
        .unwrap(),
    );
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let (hub, addr) = serve_refusing(
        "127.0.0.1:0".parse().unwrap(),
        TlsPaths::in_dir(dir.path(), "hub", "ca"),
        100,
        vec![],
        seen_tx,
        3,
    )
    .await;
    // An hour of ordinary backoff: only the not-leader retry can reach the hub in time.
    let endpoint = HubEndpoint {
        endpoint: format!("https://{addr}"),
        server_name: HUB_NAME.into(),
        tls: TlsPaths::in_dir(dir.path(), "c1", "ca"),
        channel: ChannelOptions::default(),
        backoff_base: Duration::from_secs(3600),
        backoff_cap: Duration::from_secs(3600),
    };
    let (ready_tx, mut ready) = watch::channel(false);
    let (stop_tx, stop_rx) = watch::channel(false);
    let a = agent.clone();
    let run = tokio::spawn(async move { a.run(&endpoint, &ready_tx, stop_rx).await });
    next_seen(&mut seen, |s| {
        matches!(s, Seen::Connected { .. }).then_some(())
    })
    .await;
    tokio::time::timeout(DEADLINE, ready.wait_for(|r| *r))
        .await
        .unwrap()
        .unwrap();
    stop_tx.send_replace(true);
    tokio::time::timeout(DEADLINE, run).await.unwrap().unwrap();
    hub.shut_down().await;
}
