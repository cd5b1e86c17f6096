//! What drbridge's processes share: tracing setup, the admin HTTP server
//! (`/live`, `/ready`, `/metrics`), the shutdown signal and the Kubernetes client.

mod admin;
mod kube_client;
mod signal;
mod tracing_init;

pub use admin::{Admin, METRICS_CONTENT_TYPE, admin_router, serve_admin};
pub use kube_client::{KubeClientError, kube_client, kube_config};
pub use signal::shutdown_signal;
pub use tracing_init::{LogFormat, init_tracing};

// Re-exported so binaries register metrics against the same version.
pub use prometheus_client;

/// A histogram for the transport's latencies: 5 ms to about 11 minutes, doubling, so one
/// shape fits a loopback apply and a reconnect after an outage.
pub fn latency_histogram() -> prometheus_client::metrics::histogram::Histogram {
    prometheus_client::metrics::histogram::Histogram::new(
        prometheus_client::metrics::histogram::exponential_buckets(0.005, 2.0, 18),
    )
}

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
