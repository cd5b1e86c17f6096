//! Serving agents: the tonic servers of the mutual-TLS listener (Dispatch, Renewal) and of
//! the join listener (Registration), and the interceptor that turns a connection's TLS
//! identity into what the services read.

use std::time::Duration;

use drbridge_proto::v1::dispatch_server::DispatchServer;
use drbridge_proto::v1::registration_server::RegistrationServer;
use drbridge_proto::v1::renewal_server::RenewalServer;

use crate::{grpc, registration};

/// Serves agents on `incoming` (connections whose `ConnectInfo` is the TLS
/// [`drbridge_tls::PeerIdentity`]) until `shutdown` completes.
pub async fn serve<S, F>(
    service: grpc::DispatchService,
    incoming: S,
    shutdown: F,
) -> Result<(), tonic::transport::Error>
where
    S: futures::Stream<Item = Result<drbridge_tls::TlsConn, std::io::Error>> + Send + 'static,
    F: std::future::Future<Output = ()> + Send,
{
    serve_with_renewal(service, None, incoming, shutdown).await
}

/// [`serve`], plus the `Renewal` service when given: both behind [`identity_from_tls`].
pub async fn serve_with_renewal<S, F>(
    service: grpc::DispatchService,
    renewal: Option<registration::RenewService>,
    incoming: S,
    shutdown: F,
) -> Result<(), tonic::transport::Error>
where
    S: futures::Stream<Item = Result<drbridge_tls::TlsConn, std::io::Error>> + Send + 'static,
    F: std::future::Future<Output = ()> + Send,
{
    use tonic::service::interceptor::InterceptedService;
    let mut builder = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        // An agent needs one Dispatch stream and now and then a Renew call; a connection with
        // more streams than this is refused more (each cluster also has its own stream cap,
        // grpc::GrpcConfig::max_streams_per_cluster).
        .max_concurrent_streams(Some(MAX_STREAMS_PER_CONNECTION))
        .http2_max_pending_accept_reset_streams(Some(MAX_STREAMS_PER_CONNECTION as usize));
    let router = builder.add_service(InterceptedService::new(
        dispatch_server(service),
        identity_from_tls,
    ));
    let router = router.add_optional_service(renewal.map(|r| {
        InterceptedService::new(
            RenewalServer::new(r).max_decoding_message_size(registration::MAX_REQUEST_BYTES),
            identity_from_tls,
        )
    }));
    router
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}

/// Serves the `Registration` (Join) service on `incoming`, a listener without client
/// certificates ([`drbridge_tls::incoming_server_only`]), until `shutdown` completes.
pub async fn serve_join<S, F>(
    service: registration::JoinService,
    incoming: S,
    shutdown: F,
) -> Result<(), tonic::transport::Error>
where
    S: futures::Stream<Item = Result<drbridge_tls::AnonymousTlsConn, std::io::Error>>
        + Send
        + 'static,
    F: std::future::Future<Output = ()> + Send,
{
    tonic::transport::Server::builder()
        // Unauthenticated callers: bound what each connection and call may take.
        .concurrency_limit_per_connection(4)
        .timeout(Duration::from_secs(30))
        .add_service(
            RegistrationServer::new(service)
                .max_decoding_message_size(registration::MAX_REQUEST_BYTES),
        )
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}

/// HTTP/2 streams one agent connection may have open at once (mutual-TLS listener).
pub const MAX_STREAMS_PER_CONNECTION: u32 = 8;

/// The tonic server with the hub's message limit: nothing larger than the largest report
/// that could ever be written ([`grpc::DEFAULT_MAX_REPORT_BYTES`]) is read from an agent.
pub fn dispatch_server(svc: grpc::DispatchService) -> DispatchServer<grpc::DispatchService> {
    let max = svc.max_report_bytes();
    DispatchServer::new(svc).max_decoding_message_size(max)
}

/// Interceptor: turns the connection's TLS identity into the [`grpc::ClusterIdentity`]
/// the service reads, so the service itself knows nothing of TLS.
#[allow(clippy::result_large_err)] // tonic's interceptor signature.
pub fn identity_from_tls(mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
    let peer = drbridge_tls::peer_identity(&req)?;
    let cluster = grpc::ClusterIdentity(peer.cluster.as_str().to_string());
    let cert = grpc::CertificateInfo {
        serial: peer.serial.clone(),
        not_after: peer.not_after,
    };
    req.extensions_mut().insert(cluster);
    req.extensions_mut().insert(cert);
    Ok(req)
}
