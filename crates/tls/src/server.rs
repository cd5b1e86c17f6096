//! Server side: a reloading rustls config for the hub and a stream of authenticated connections
//! for `tonic::transport::Server::serve_with_incoming`.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use futures::Stream;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tonic::transport::server::Connected;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::files::{RawFiles, TlsPaths};
use crate::{ClusterName, Error, cert_info, cluster_from_cert, provider};

/// Default time a client gets to complete the TLS handshake.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default bound on handshakes in flight; past it, `incoming` stops accepting until one ends.
pub const DEFAULT_MAX_CONCURRENT_HANDSHAKES: usize = 256;

/// The hub's TLS server: TLS 1.3 only, ALPN `h2`, a client certificate is required, must chain to
/// the CA in `paths.ca`, and must carry exactly one cluster identity URI.
///
/// The files are re-read on every [`acceptor`](Self::acceptor) call (that is, once per accepted
/// connection) and the rustls config is rebuilt when their contents change, because
/// cert-manager and `drbridge cluster join` rewrite them in place. If the new files do not form
/// a valid config (for example the certificate was rewritten but the key not yet), the previous
/// config stays in use and a warning is logged once per distinct set of contents.
#[derive(Clone)]
pub struct ServerTls {
    reloader: Arc<Reloader>,
    handshake_timeout: Duration,
    max_concurrent_handshakes: usize,
}

impl ServerTls {
    /// Loads the files; fails if they do not form a valid config now.
    pub fn new(paths: TlsPaths) -> Result<Self, Error> {
        Self::with_client_auth(paths, ClientAuth::Required)
    }

    /// A server that asks for no client certificate (TLS 1.3, ALPN `h2`, same reloading), for
    /// the hub's join endpoint, where a new agent has only a token and its CSR. `paths.ca` is
    /// read but not used. Serve it with [`incoming_server_only`]: [`incoming`] requires a client
    /// certificate and drops every connection of such a server.
    pub fn server_only(paths: TlsPaths) -> Result<Self, Error> {
        Self::with_client_auth(paths, ClientAuth::None)
    }

    fn with_client_auth(paths: TlsPaths, client_auth: ClientAuth) -> Result<Self, Error> {
        let files = paths.read_blocking()?;
        let config = build_server_config(&paths, &files, client_auth)?;
        Ok(Self {
            reloader: Arc::new(Reloader {
                paths,
                client_auth,
                state: Mutex::new(State {
                    files,
                    config,
                    last_problem: None,
                }),
            }),
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            max_concurrent_handshakes: DEFAULT_MAX_CONCURRENT_HANDSHAKES,
        })
    }

    /// Time a client gets to complete the handshake before its connection is dropped.
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    pub fn paths(&self) -> &TlsPaths {
        &self.reloader.paths
    }

    pub fn handshake_timeout(&self) -> Duration {
        self.handshake_timeout
    }

    /// The current config, after checking the files for changes.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.reloader.current()
    }

    /// An acceptor with the current config, after checking the files for changes.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.config())
    }
}

impl TryFrom<TlsPaths> for ServerTls {
    type Error = Error;

    fn try_from(paths: TlsPaths) -> Result<Self, Error> {
        Self::new(paths)
    }
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls")
            .field("paths", &self.reloader.paths)
            .field("client_auth", &self.reloader.client_auth)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("max_concurrent_handshakes", &self.max_concurrent_handshakes)
            .finish_non_exhaustive()
    }
}

struct Reloader {
    paths: TlsPaths,
    client_auth: ClientAuth,
    state: Mutex<State>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ClientAuth {
    /// A certificate chaining to `paths.ca` with exactly one cluster identity.
    Required,
    /// No client certificate is asked for.
    None,
}

struct State {
    /// Contents the current config was built from.
    files: RawFiles,
    config: Arc<ServerConfig>,
    /// The last failure, so a persistent problem is logged once rather than per connection.
    last_problem: Option<Problem>,
}

#[derive(PartialEq, Eq)]
enum Problem {
    Read(String),
    Build(RawFiles),
}

impl Reloader {
    fn current(&self) -> Arc<ServerConfig> {
        // Reading three small files per accepted connection is cheap next to the handshake,
        // and comparing contents (not mtimes) sees every rewrite, including ones within the
        // filesystem's timestamp granularity. The lock serialises rebuilds.
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let files = match self.paths.read_blocking() {
            Ok(files) => files,
            Err(e) => {
                let problem = Problem::Read(e.to_string());
                if state.last_problem.as_ref() != Some(&problem) {
                    warn!(error = %e, "cannot re-read TLS files; keeping the current config");
                    state.last_problem = Some(problem);
                }
                return state.config.clone();
            }
        };
        if files == state.files {
            state.last_problem = None;
            return state.config.clone();
        }
        if matches!(&state.last_problem, Some(Problem::Build(bad)) if *bad == files) {
            return state.config.clone();
        }
        match build_server_config(&self.paths, &files, self.client_auth) {
            Ok(config) => {
                info!(cert = %self.paths.cert.display(), "TLS files changed; reloaded server config");
                state.files = files;
                state.config = config;
                state.last_problem = None;
            }
            Err(e) => {
                warn!(error = %e, "TLS files changed but are not usable; keeping the current config");
                state.last_problem = Some(Problem::Build(files));
            }
        }
        state.config.clone()
    }
}

fn build_server_config(
    paths: &TlsPaths,
    files: &RawFiles,
    client_auth: ClientAuth,
) -> Result<Arc<ServerConfig>, Error> {
    let material = files.parse(paths)?;
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|source| Error::Rustls {
            context: "selecting TLS 1.3".into(),
            source,
        })?;
    let builder = match client_auth {
        ClientAuth::Required => {
            let webpki =
                WebPkiClientVerifier::builder_with_provider(Arc::new(material.roots), provider)
                    .build()
                    .map_err(|e| Error::Verifier(e.to_string()))?;
            builder.with_client_cert_verifier(Arc::new(ClusterIdentityVerifier { inner: webpki }))
        }
        ClientAuth::None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(material.chain, material.key)
        .map_err(|source| Error::Rustls {
            context: format!(
                "using {} with {}",
                paths.cert.display(),
                paths.key.display()
            ),
            source,
        })?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// WebPKI client verification plus the cluster identity check, so a certificate without a
/// valid identity fails the handshake with an alert the agent can see and log.
#[derive(Debug)]
struct ClusterIdentityVerifier {
    inner: Arc<dyn ClientCertVerifier>,
}

impl ClientCertVerifier for ClusterIdentityVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        cluster_from_cert(end_entity).map_err(|e| {
            rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(
                Arc::new(e),
            )))
        })?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Who is on the other end of an accepted connection. Set as the connection's
/// `ConnectInfo`, so a tonic handler reads it with `req.extensions().get::<PeerIdentity>()`
/// (or [`peer_identity`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerIdentity {
    pub cluster: ClusterName,
    pub remote_addr: Option<SocketAddr>,
    /// Serial number of the client certificate (lowercase hex), for revocation by serial.
    pub serial: String,
    /// End of the client certificate's validity: a connection must not be trusted past it.
    pub not_after: SystemTime,
}

/// The [`PeerIdentity`] of the connection a request came in on, or `Unauthenticated` if the
/// server was not fed by [`incoming`].
#[allow(clippy::result_large_err)] // tonic::Status is what handlers return.
pub fn peer_identity<T>(req: &tonic::Request<T>) -> Result<&PeerIdentity, tonic::Status> {
    req.extensions()
        .get::<PeerIdentity>()
        .ok_or_else(|| tonic::Status::unauthenticated("no verified cluster identity"))
}

/// An accepted, handshaken TLS connection and what the handshake established
/// about its client (`I`), which tonic hands to handlers as `ConnectInfo`.
pub struct TlsConnWith<I> {
    stream: TlsStream<TcpStream>,
    info: I,
}

/// A connection whose client certificate names a cluster.
pub type TlsConn = TlsConnWith<PeerIdentity>;

/// A connection of a [`ServerTls::server_only`] server: no client identity.
pub type AnonymousTlsConn = TlsConnWith<RemoteAddr>;

impl TlsConn {
    pub fn peer(&self) -> &PeerIdentity {
        &self.info
    }
}

impl<I> TlsConnWith<I> {
    pub fn get_ref(&self) -> &TlsStream<TcpStream> {
        &self.stream
    }

    pub fn into_inner(self) -> TlsStream<TcpStream> {
        self.stream
    }
}

impl<I: fmt::Debug> fmt::Debug for TlsConnWith<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConn")
            .field("client", &self.info)
            .finish_non_exhaustive()
    }
}

impl<I: Clone + Send + Sync + 'static> Connected for TlsConnWith<I> {
    type ConnectInfo = I;

    fn connect_info(&self) -> I {
        self.info.clone()
    }
}

impl<I: Unpin> AsyncRead for TlsConnWith<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl<I: Unpin> AsyncWrite for TlsConnWith<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Accepts TCP connections on `listener` and yields those that complete the TLS handshake with
/// a valid cluster identity, for `Server::serve_with_incoming[_shutdown]`.
///
/// Each handshake runs in its own task under `tls.handshake_timeout()`, so a slow or silent
/// client delays nobody else. Failed handshakes, timeouts and accept errors are logged and
/// never end the stream; it never yields `Err` (the item type is what tonic expects). Dropping
/// the stream aborts the handshakes in flight.
pub fn incoming(
    listener: TcpListener,
    tls: ServerTls,
) -> impl Stream<Item = Result<TlsConn, io::Error>> + Send + 'static {
    accept_loop(listener, tls, handshake)
}

/// Like [`incoming`] for a [`ServerTls::server_only`] server: yields every connection that
/// completes the handshake, with no client identity (its `ConnectInfo` is [`RemoteAddr`]).
pub fn incoming_server_only(
    listener: TcpListener,
    tls: ServerTls,
) -> impl Stream<Item = Result<AnonymousTlsConn, io::Error>> + Send + 'static {
    accept_loop(listener, tls, handshake_server_only)
}

fn accept_loop<T, F, Fut>(
    listener: TcpListener,
    tls: ServerTls,
    handshake: F,
) -> impl Stream<Item = Result<T, io::Error>> + Send + 'static
where
    T: Send + 'static,
    F: Fn(TcpStream, SocketAddr, ServerTls) -> Fut + Send + 'static,
    Fut: Future<Output = Option<T>> + Send + 'static,
{
    async_stream::stream! {
        let mut handshakes: JoinSet<Option<T>> = JoinSet::new();
        loop {
            let event = tokio::select! {
                accepted = listener.accept(),
                    if handshakes.len() < tls.max_concurrent_handshakes => Event::Accepted(accepted),
                Some(done) = handshakes.join_next(), if !handshakes.is_empty() => Event::Done(done),
            };
            match event {
                Event::Accepted(Ok((tcp, addr))) => {
                    let span = info_span!("tls_handshake", peer = %addr);
                    handshakes.spawn(handshake(tcp, addr, tls.clone()).instrument(span));
                }
                Event::Accepted(Err(e)) => accept_error(e).await,
                Event::Done(Ok(Some(conn))) => yield Ok(conn),
                Event::Done(Ok(None)) => {}
                Event::Done(Err(e)) => warn!(error = %e, "TLS handshake task failed"),
            }
        }
    }
}

// Lives for one loop iteration and the connection is moved out of it once: boxing would only
// add an allocation per connection.
#[allow(clippy::large_enum_variant)]
enum Event<T> {
    Accepted(io::Result<(TcpStream, SocketAddr)>),
    Done(Result<Option<T>, tokio::task::JoinError>),
}

async fn accept_error(e: io::Error) {
    use io::ErrorKind::*;
    match e.kind() {
        // The peer went away between SYN and accept: nothing to do.
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted | WouldBlock => {
            debug!(error = %e, "accept failed");
        }
        // Typically EMFILE/ENFILE: accepting again at once would spin, so back off briefly.
        _ => {
            warn!(error = %e, "accept failed; backing off");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn accept_tls(
    tcp: TcpStream,
    addr: SocketAddr,
    tls: &ServerTls,
) -> Option<TlsStream<TcpStream>> {
    // gRPC frames are small and latency-sensitive.
    let _ = tcp.set_nodelay(true);
    let acceptor = tls.acceptor();
    match tokio::time::timeout(tls.handshake_timeout, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(e)) => {
            warn!(peer = %addr, reason = %e, "TLS handshake failed; dropping connection");
            None
        }
        Err(_) => {
            warn!(peer = %addr, timeout = ?tls.handshake_timeout,
                "TLS handshake timed out; dropping connection");
            None
        }
    }
}

async fn handshake_server_only(
    tcp: TcpStream,
    addr: SocketAddr,
    tls: ServerTls,
) -> Option<AnonymousTlsConn> {
    let stream = accept_tls(tcp, addr, &tls).await?;
    debug!(peer = %addr, "TLS connection established (no client certificate)");
    Some(TlsConnWith {
        stream,
        info: RemoteAddr(addr),
    })
}

async fn handshake(tcp: TcpStream, addr: SocketAddr, tls: ServerTls) -> Option<TlsConn> {
    let stream = accept_tls(tcp, addr, &tls).await?;
    // The verifier already checked the identity; reading it again here is what binds it to
    // this connection.
    let leaf = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first());
    let info = match leaf.map(cert_info) {
        Some(Ok(info)) => info,
        Some(Err(e)) => {
            warn!(peer = %addr, reason = %e, "client certificate has no valid cluster identity; dropping connection");
            return None;
        }
        None => {
            warn!(peer = %addr, "client sent no certificate; dropping connection");
            return None;
        }
    };
    debug!(peer = %addr, cluster = %info.cluster, serial = %info.serial, "TLS connection established");
    Some(TlsConnWith {
        stream,
        info: PeerIdentity {
            cluster: info.cluster,
            remote_addr: Some(addr),
            serial: info.serial,
            not_after: info.not_after,
        },
    })
}

/// The remote address of a connection without client identity; `ConnectInfo` of
/// [`AnonymousTlsConn`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemoteAddr(pub SocketAddr);
