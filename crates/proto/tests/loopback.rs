//! The generated client and server work together over a real (loopback) HTTP/2 connection.

use std::pin::Pin;
use std::time::Duration;

use drbridge_proto::v1::{
    AgentMessage, ClusterInfo, Hello, HubMessage, Welcome, agent_message, hub_message,
};
use drbridge_proto::{Dispatch, DispatchClient, DispatchServer};
use tokio_stream::Stream;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Endpoint, Server};
use tonic::{Request, Response, Status, Streaming};

/// Answers the agent's Hello with a Welcome whose epoch is one above the agent's highest.
struct WelcomeHub;

#[tonic::async_trait]
impl Dispatch for WelcomeHub {
    type ConnectStream = Pin<Box<dyn Stream<Item = Result<HubMessage, Status>> + Send>>;

    async fn connect(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        let mut inbound = request.into_inner();
        let first = inbound
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("stream closed before Hello"))?;
        let Some(agent_message::Body::Hello(hello)) = first.body else {
            return Err(Status::invalid_argument("first message is not Hello"));
        };
        let welcome = HubMessage {
            body: Some(hub_message::Body::Welcome(Welcome {
                cluster: hello
                    .cluster
                    .map(|c| c.claims["name"].clone())
                    .unwrap_or_default(),
                hub_id: "hub-a".into(),
                epoch: hello.max_hub_epoch + 1,
                heartbeat_seconds: 10,
            })),
        };
        Ok(Response::new(Box::pin(tokio_stream::once(Ok(welcome)))))
    }
}

#[tokio::test]
async fn hello_gets_welcome() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(
        Server::builder()
            .add_service(DispatchServer::new(WelcomeHub))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );

    let exchange = async {
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client = DispatchClient::new(channel);
        let hello = AgentMessage {
            body: Some(agent_message::Body::Hello(Hello {
                agent_version: "0.1.0".into(),
                known_works: vec![],
                cluster: Some(ClusterInfo {
                    claims: [("name".to_string(), "dr1".to_string())].into(),
                    kubernetes_version: "v1.37.2".into(),
                }),
                max_hub_epoch: 41,
            })),
        };
        let mut replies = client
            .connect(tokio_stream::iter(vec![hello]))
            .await
            .unwrap()
            .into_inner();
        replies.message().await.unwrap()
    };
    // A deadline, not a sleep: the exchange either completes or the test fails.
    let reply = tokio::time::timeout(Duration::from_secs(30), exchange)
        .await
        .expect("no reply within 30s");
    server.abort();

    let Some(HubMessage {
        body: Some(hub_message::Body::Welcome(welcome)),
    }) = reply
    else {
        panic!("expected Welcome, got {reply:?}");
    };
    assert_eq!(welcome.cluster, "dr1");
    assert_eq!(welcome.epoch, 42);
}
