//! The admin server over a real socket.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use drbridge_runtime::prometheus_client::metrics::counter::Counter;
use drbridge_runtime::prometheus_client::registry::Registry;
use drbridge_runtime::{Admin, METRICS_CONTENT_TYPE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, watch};

const DEADLINE: Duration = Duration::from_secs(30);

struct Reply {
    status: u16,
    head: String,
    body: String,
}

/// A minimal HTTP/1.1 GET (the admin server is plain HTTP/1.1).
async fn get(addr: SocketAddr, path: &str) -> Reply {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut raw = String::new();
    tokio::time::timeout(DEADLINE, tcp.read_to_string(&mut raw))
        .await
        .unwrap()
        .unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    Reply {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

async fn start(
    registry: Registry,
    ready: watch::Receiver<bool>,
) -> (
    SocketAddr,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), drbridge_runtime::Error>>,
) {
    let admin = Admin::bind("127.0.0.1:0".parse().unwrap(), Arc::new(registry), ready)
        .await
        .unwrap();
    let addr = admin.local_addr();
    assert_ne!(addr.port(), 0);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(admin.serve(stopped));
    (addr, stop, task)
}

#[tokio::test]
async fn ready_follows_the_watch_and_live_is_always_ok() {
    let (ready_tx, ready_rx) = watch::channel(false);
    let (addr, stop, task) = start(Registry::default(), ready_rx).await;

    assert_eq!(get(addr, "/live").await.status, 200);
    assert_eq!(get(addr, "/ready").await.status, 503);
    ready_tx.send(true).unwrap();
    assert_eq!(get(addr, "/ready").await.status, 200);
    assert_eq!(get(addr, "/live").await.status, 200);
    ready_tx.send(false).unwrap();
    assert_eq!(get(addr, "/ready").await.status, 503);
    assert_eq!(get(addr, "/nope").await.status, 404);

    stop.send(()).unwrap();
    tokio::time::timeout(DEADLINE, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn metrics_are_encoded_from_the_registry() {
    let mut registry = Registry::with_prefix("drbridge");
    let counter = Counter::<u64>::default();
    registry.register("test_events", "Events seen by the test", counter.clone());
    counter.inc_by(3);
    let (_ready_tx, ready_rx) = watch::channel(true);
    let (addr, stop, task) = start(registry, ready_rx).await;

    let reply = get(addr, "/metrics").await;
    assert_eq!(reply.status, 200);
    assert!(
        reply
            .head
            .to_ascii_lowercase()
            .contains(&format!("content-type: {METRICS_CONTENT_TYPE}")),
        "{}",
        reply.head
    );
    assert!(
        reply
            .body
            .contains("# HELP drbridge_test_events Events seen by the test."),
        "{}",
        reply.body
    );
    assert!(reply.body.contains("# TYPE drbridge_test_events counter"));
    assert!(
        reply.body.contains("drbridge_test_events_total 3\n"),
        "{}",
        reply.body
    );
    assert!(reply.body.ends_with("# EOF\n"));

    // Metrics are live, not a snapshot taken at start.
    counter.inc();
    assert!(
        get(addr, "/metrics")
            .await
            .body
            .contains("drbridge_test_events_total 4\n")
    );

    stop.send(()).unwrap();
    tokio::time::timeout(DEADLINE, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn serve_admin_stops_on_shutdown_and_reports_bind_errors() {
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (_tx, rx) = watch::channel(true);
    let err = drbridge_runtime::serve_admin(
        taken.local_addr().unwrap(),
        Arc::new(Registry::default()),
        rx.clone(),
        std::future::pending::<()>(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, drbridge_runtime::Error::Bind { .. }), "{err}");

    // A shutdown future that is already done: serve_admin returns at once.
    tokio::time::timeout(
        DEADLINE,
        drbridge_runtime::serve_admin(
            "127.0.0.1:0".parse().unwrap(),
            Arc::new(Registry::default()),
            rx,
            std::future::ready(()),
        ),
    )
    .await
    .unwrap()
    .unwrap();
}
