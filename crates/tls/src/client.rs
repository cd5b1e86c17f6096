//! Client side: a tonic `Channel` to the hub over mTLS, re-reading the agent's files on every
//! new connection so rotated certificates are used without a restart.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tonic::codegen::Service;
use tonic::codegen::http::Uri;
use tonic::transport::{Channel, Endpoint};
use tracing::debug;

use crate::files::{RawFiles, TlsPaths};
use crate::{Error, error_chain, provider};

/// HTTP/2 and connection settings for [`connect_channel`] / [`lazy_channel`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelOptions {
    /// Bound on TCP connect plus TLS handshake.
    pub connect_timeout: Duration,
    /// Interval of HTTP/2 PINGs; `None` disables them.
    pub http2_keep_alive_interval: Option<Duration>,
    /// How long to wait for a PING's ack before closing the connection.
    pub keep_alive_timeout: Duration,
    /// Send PINGs also when no stream is open.
    pub keep_alive_while_idle: bool,
}

impl Default for ChannelOptions {
    /// 10 s connect timeout; PING every 30 s (gRPC servers commonly allow no more often than
    /// that), 20 s to answer, also while idle so dead NAT paths are noticed.
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            http2_keep_alive_interval: Some(Duration::from_secs(30)),
            keep_alive_timeout: Duration::from_secs(20),
            keep_alive_while_idle: true,
        }
    }
}

/// Connects to `endpoint` (`https://host:port`) now, verifying the server's certificate
/// against `paths.ca` and `server_name` (a DNS name or IP address), presenting
/// `paths.cert`/`paths.key`. TLS 1.3 only, ALPN `h2`. The channel reconnects by itself after
/// a connection drops, re-reading the files each time.
pub async fn connect_channel(
    endpoint: &str,
    server_name: &str,
    paths: &TlsPaths,
    opts: ChannelOptions,
) -> Result<Channel, Error> {
    let connector = MtlsConnector::new(paths.clone(), server_name)?;
    // Fail on unusable files with a clear error before dialling.
    connector.client_config().await?;
    build_endpoint(endpoint, &opts)?
        .connect_with_connector(connector)
        .await
        .map_err(|e| Error::Connect {
            endpoint: endpoint.to_owned(),
            message: error_chain(&e),
        })
}

/// Connects to `endpoint` verifying the server against the CA certificates in `ca` (PEM) and
/// `server_name`, presenting no client certificate: for an agent's first call to the hub's join
/// endpoint, before it has a certificate. TLS 1.3 only, ALPN `h2`; `ca` is re-read per
/// connection.
pub async fn connect_channel_without_client_cert(
    endpoint: &str,
    server_name: &str,
    ca: &Path,
    opts: ChannelOptions,
) -> Result<Channel, Error> {
    let connector = MtlsConnector::without_client_cert(ca, server_name)?;
    connector.client_config().await?;
    build_endpoint(endpoint, &opts)?
        .connect_with_connector(connector)
        .await
        .map_err(|e| Error::Connect {
            endpoint: endpoint.to_owned(),
            message: error_chain(&e),
        })
}

/// Like [`connect_channel`] but connects on first use, so it does not fail when the hub is
/// down; errors surface on the RPCs instead.
pub fn lazy_channel(
    endpoint: &str,
    server_name: &str,
    paths: &TlsPaths,
    opts: ChannelOptions,
) -> Result<Channel, Error> {
    let connector = MtlsConnector::new(paths.clone(), server_name)?;
    Ok(build_endpoint(endpoint, &opts)?.connect_with_connector_lazy(connector))
}

fn build_endpoint(endpoint: &str, opts: &ChannelOptions) -> Result<Endpoint, Error> {
    let invalid = |reason: String| Error::InvalidEndpoint {
        endpoint: endpoint.to_owned(),
        reason,
    };
    let ep = Endpoint::from_shared(endpoint.to_owned()).map_err(|e| invalid(error_chain(&e)))?;
    if ep.uri().scheme_str() != Some("https") {
        return Err(invalid("scheme must be https".into()));
    }
    if ep.uri().host().is_none() {
        return Err(invalid("no host".into()));
    }
    let mut ep = ep
        .connect_timeout(opts.connect_timeout)
        .keep_alive_timeout(opts.keep_alive_timeout)
        .keep_alive_while_idle(opts.keep_alive_while_idle);
    if let Some(interval) = opts.http2_keep_alive_interval {
        ep = ep.http2_keep_alive_interval(interval);
    }
    Ok(ep)
}

/// A tower connector for `Endpoint::connect_with_connector[_lazy]`: TCP, then a TLS 1.3
/// handshake with a client config built afresh from the files for every connection.
#[derive(Clone, Debug)]
pub struct MtlsConnector {
    files: Arc<ClientFiles>,
    server_name: ServerName<'static>,
}

#[derive(Debug)]
enum ClientFiles {
    /// Client certificate, key and the CA of the server.
    Mutual(TlsPaths),
    /// Only the CA of the server.
    ServerOnly(PathBuf),
}

impl MtlsConnector {
    pub fn new(paths: TlsPaths, server_name: &str) -> Result<Self, Error> {
        Ok(Self {
            files: Arc::new(ClientFiles::Mutual(paths)),
            server_name: server_name_of(server_name)?,
        })
    }

    /// A connector that verifies the server against `ca` and presents no client certificate.
    pub fn without_client_cert(ca: &Path, server_name: &str) -> Result<Self, Error> {
        Ok(Self {
            files: Arc::new(ClientFiles::ServerOnly(ca.to_owned())),
            server_name: server_name_of(server_name)?,
        })
    }

    /// Reads the files and builds the client config a new connection would use.
    pub async fn client_config(&self) -> Result<Arc<ClientConfig>, Error> {
        match &*self.files {
            ClientFiles::Mutual(paths) => {
                let files = paths.read().await?;
                build_client_config(paths, &files)
            }
            ClientFiles::ServerOnly(ca) => {
                let ca = ca.clone();
                let roots = tokio::task::spawn_blocking(move || crate::files::read_roots(&ca))
                    .await
                    .map_err(|e| Error::Certificate(format!("reading the CA file: {e}")))??;
                build_server_only_client_config(roots)
            }
        }
    }

    /// Dials the host and port of `uri` (default port 443) and completes the handshake.
    pub async fn connect(&self, uri: &Uri) -> Result<TlsStream<TcpStream>, Error> {
        let host = uri.host().ok_or_else(|| Error::InvalidEndpoint {
            endpoint: uri.to_string(),
            reason: "no host".into(),
        })?;
        // Uri keeps IPv6 literals bracketed.
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = uri.port_u16().unwrap_or(443);
        let addr = format!("{host}:{port}");
        let config = self.client_config().await?;
        let tcp = TcpStream::connect((host, port))
            .await
            .map_err(|source| Error::Dial {
                addr: addr.clone(),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        let tls = TlsConnector::from(config)
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(|source| Error::Handshake {
                addr: addr.clone(),
                source,
            })?;
        debug!(%addr, "TLS connection to hub established");
        Ok(tls)
    }
}

impl Service<Uri> for MtlsConnector {
    type Response = TokioIo<TlsStream<TcpStream>>;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { this.connect(&uri).await.map(TokioIo::new) })
    }
}

fn server_name_of(name: &str) -> Result<ServerName<'static>, Error> {
    ServerName::try_from(name.to_owned()).map_err(|_| Error::InvalidServerName {
        name: name.to_owned(),
    })
}

fn build_server_only_client_config(roots: RootCertStore) -> Result<Arc<ClientConfig>, Error> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|source| Error::Rustls {
            context: "selecting TLS 1.3".into(),
            source,
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

fn build_client_config(paths: &TlsPaths, files: &RawFiles) -> Result<Arc<ClientConfig>, Error> {
    let material = files.parse(paths)?;
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|source| Error::Rustls {
            context: "selecting TLS 1.3".into(),
            source,
        })?
        .with_root_certificates(material.roots)
        .with_client_auth_cert(material.chain, material.key)
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
