//! Test harness: a per-test PKI in a temp dir, a hub serving a one-method gRPC service that
//! answers with the caller's cluster name, and a client for it.
#![allow(dead_code)] // each test binary uses a different part

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use drbridge_tls::pki::{Ca, Issued};
use drbridge_tls::{
    ChannelOptions, ClusterName, ServerTls, TlsPaths, connect_channel, incoming, peer_identity,
};
use futures::StreamExt;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tonic::codegen::Service;
use tonic::codegen::http;
use tonic::transport::{Channel, Server};
use tonic_prost::ProstCodec;

pub const HUB_NAME: &str = "hub.drbridge.test";
pub const DAY: Duration = Duration::from_secs(24 * 3600);
/// Deadline for conditions tests wait on; generous for a loaded 2-core CI machine.
pub const DEADLINE: Duration = Duration::from_secs(30);

pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca: Ca,
}

impl Pki {
    /// A CA, written as `<dir>/ca.crt`.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::generate("drbridge test CA").unwrap();
        std::fs::write(dir.path().join("ca.crt"), ca.cert_pem()).unwrap();
        Self { dir, ca }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `issued` as `<stem>.crt/.key` and returns paths trusting this CA.
    pub fn write(&self, issued: &Issued, stem: &str) -> TlsPaths {
        issued.write(self.path(), stem).unwrap();
        TlsPaths::in_dir(self.path(), stem, "ca")
    }

    pub fn hub_cert(&self) -> Issued {
        self.ca
            .issue_server(&[HUB_NAME], &[IpAddr::V4(Ipv4Addr::LOCALHOST)], DAY)
            .unwrap()
    }

    pub fn hub(&self) -> TlsPaths {
        self.write(&self.hub_cert(), "hub")
    }

    pub fn agent(&self, cluster: &str) -> TlsPaths {
        let issued = self.ca.issue_client(&name(cluster), DAY).unwrap();
        self.write(&issued, cluster)
    }
}

pub fn name(s: &str) -> ClusterName {
    s.parse().unwrap()
}

/// A running hub: tonic over `incoming`, serving [`WhoAmI`].
pub struct Hub {
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Hub {
    pub async fn start(tls: ServerTls) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(
            Server::builder()
                .add_service(WhoAmI)
                .serve_with_incoming_shutdown(incoming(listener, tls), async {
                    let _ = rx.await;
                }),
        );
        Self {
            addr,
            shutdown: Some(tx),
            task,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// Connects with `paths` and asks who we are.
    pub async fn who_am_i(&self, paths: &TlsPaths) -> Result<String, String> {
        self.who_am_i_as(HUB_NAME, paths).await
    }

    pub async fn who_am_i_as(&self, server_name: &str, paths: &TlsPaths) -> Result<String, String> {
        let channel = connect_channel(&self.endpoint(), server_name, paths, opts())
            .await
            .map_err(|e| e.to_string())?;
        who_am_i(channel).await
    }

    pub async fn stop(mut self) {
        let _ = self.shutdown.take().unwrap().send(());
        tokio::time::timeout(DEADLINE, &mut self.task)
            .await
            .expect("hub did not stop")
            .unwrap()
            .unwrap();
    }
}

pub fn opts() -> ChannelOptions {
    ChannelOptions {
        connect_timeout: Duration::from_secs(10),
        ..ChannelOptions::default()
    }
}

pub async fn who_am_i(channel: Channel) -> Result<String, String> {
    let mut client = tonic::client::Grpc::new(channel);
    client.ready().await.map_err(|e| e.to_string())?;
    client
        .unary(
            tonic::Request::new(()),
            http::uri::PathAndQuery::from_static("/drbridge.test.Who/AmI"),
            ProstCodec::<(), String>::default(),
        )
        .await
        .map(|r| r.into_inner())
        .map_err(|s| format!("{s:?}"))
}

/// Runs `incoming` without tonic and reports each connection's peer (and keeps it open).
pub async fn raw_incoming(
    tls: ServerTls,
) -> (
    SocketAddr,
    mpsc::UnboundedReceiver<drbridge_tls::PeerIdentity>,
    JoinHandle<()>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let mut conns = Vec::new();
        let mut stream = std::pin::pin!(incoming(listener, tls));
        while let Some(conn) = stream.next().await {
            let conn = conn.unwrap();
            let _ = tx.send(conn.peer().clone());
            conns.push(conn);
        }
    });
    (addr, rx, task)
}

/// gRPC service `drbridge.test.Who` with one unary method `AmI(Empty) -> StringValue` that
/// answers with the caller's cluster name, read from the connection's `PeerIdentity`.
#[derive(Clone, Debug)]
pub struct WhoAmI;

impl tonic::server::NamedService for WhoAmI {
    const NAME: &'static str = "drbridge.test.Who";
}

impl Service<http::Request<tonic::body::Body>> for WhoAmI {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(async move {
            if req.uri().path() != "/drbridge.test.Who/AmI" {
                return Ok(tonic::Status::unimplemented("").into_http());
            }
            let mut grpc = tonic::server::Grpc::new(ProstCodec::<String, ()>::default());
            Ok(grpc.unary(AmI, req).await)
        })
    }
}

struct AmI;

impl tonic::server::UnaryService<()> for AmI {
    type Response = String;
    type Future = Ready<Result<tonic::Response<String>, tonic::Status>>;

    fn call(&mut self, req: tonic::Request<()>) -> Self::Future {
        ready(peer_identity(&req).map(|peer| {
            assert_eq!(
                peer.remote_addr.map(|a| a.ip()),
                Some(IpAddr::V4(Ipv4Addr::LOCALHOST))
            );
            tonic::Response::new(peer.cluster.to_string())
        }))
    }
}
