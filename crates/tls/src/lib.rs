//! Mutual TLS between drbridge-hub and drbridge-agent.
//!
//! - TLS 1.3 only, ALPN `h2`, ring crypto (passed explicitly, so no process-wide provider needs
//!   installing for this crate to work).
//! - The hub ([`ServerTls`], [`incoming`]) requires a client certificate chaining to its CA and
//!   carrying exactly one SAN URI `spiffe://drbridge/cluster/<name>`; the connection's
//!   [`PeerIdentity`] is what handlers authorise on, never a name sent in a message.
//! - Agents ([`connect_channel`]) verify the hub's certificate against their CA and the expected
//!   server name.
//! - Both sides re-read their PEM files per new connection, so rotation needs no restart.
//! - [`pki`] makes certificates (CA, server, client, CSR signing).
//!
//! Hub:
//! ```text
//! let tls = ServerTls::new(TlsPaths::new(cert, key, ca))?;
//! Server::builder()
//!     .add_service(svc)
//!     .serve_with_incoming_shutdown(drbridge_tls::incoming(listener, tls), shutdown)
//!     .await?;
//! // in a handler:
//! let peer = drbridge_tls::peer_identity(&req)?; // or req.extensions().get::<PeerIdentity>()
//! ```
//! Agent:
//! ```text
//! let channel = connect_channel("https://hub:8443", "hub.ns.svc", &paths, ChannelOptions::default()).await?;
//! ```

mod client;
mod files;
mod identity;
mod name;
pub mod pki;
mod server;

use std::path::PathBuf;
use std::sync::Arc;

pub use client::{
    ChannelOptions, MtlsConnector, connect_channel, connect_channel_without_client_cert,
    lazy_channel,
};
pub use files::TlsPaths;
pub use identity::{
    CLUSTER_URI_PREFIX, CertInfo, cert_info, cert_info_pem, cluster_from_cert, cluster_uri,
    serial_hex,
};
pub use name::ClusterName;
pub use server::{
    AnonymousTlsConn, DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_MAX_CONCURRENT_HANDSHAKES, PeerIdentity,
    RemoteAddr, ServerTls, TlsConn, TlsConnWith, incoming, incoming_server_only, peer_identity,
};

// Re-exported so users need not depend on matching versions themselves.
pub use rustls;
pub use rustls_pki_types;
pub use tokio_rustls;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid cluster name {name:?}: {reason}")]
    InvalidClusterName { name: String, reason: &'static str },

    #[error("certificate has no SAN URI starting with {CLUSTER_URI_PREFIX}")]
    NoClusterIdentity,

    #[error(
        "certificate has {0} SAN URIs starting with {CLUSTER_URI_PREFIX}; exactly one is allowed"
    )]
    AmbiguousClusterIdentity(usize),

    #[error("{0}")]
    Certificate(String),

    #[error("reading {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("parsing PEM in {}: {source}", path.display())]
    Pem {
        path: PathBuf,
        source: rustls_pki_types::pem::Error,
    },

    #[error("{} holds no certificate", path.display())]
    NoCertificate { path: PathBuf },

    #[error("{context}: {source}")]
    Rustls {
        context: String,
        source: rustls::Error,
    },

    #[error("building the client certificate verifier: {0}")]
    Verifier(String),

    #[error("invalid TLS server name {name:?}")]
    InvalidServerName { name: String },

    #[error("invalid endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint { endpoint: String, reason: String },

    #[error("connecting to {addr}: {source}")]
    Dial {
        addr: String,
        source: std::io::Error,
    },

    #[error("TLS handshake with {addr}: {source}")]
    Handshake {
        addr: String,
        source: std::io::Error,
    },

    /// tonic's transport error, with its whole source chain in `message` (its own `Display`
    /// says only "transport error").
    #[error("connecting to {endpoint}: {message}")]
    Connect { endpoint: String, message: String },

    #[error("pki: {0}")]
    Pki(#[from] rcgen::Error),
}

/// The one crypto provider drbridge uses (ring, as kube does).
pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// `err: cause: cause...`, skipping a cause whose text the previous one already contains.
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}
