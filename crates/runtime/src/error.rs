//! The error of setting up tracing and of the admin server.

use std::net::SocketAddr;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid log filter {filter:?}: {reason}")]
    LogFilter { filter: String, reason: String },

    #[error("installing the tracing subscriber: {0}")]
    TracingInit(String),

    #[error("binding the admin server to {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },

    #[error("admin server: {0}")]
    Serve(#[source] std::io::Error),
}
