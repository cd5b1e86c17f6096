//! What drbridge's processes share: tracing setup, the admin HTTP server
//! (`/live`, `/ready`, `/metrics`), the shutdown signal, the Kubernetes client and the
//! Kubernetes Events the processes publish.

mod admin;
mod error;
pub mod events;
mod kube_client;
mod metrics;
mod signal;
mod tracing_init;

pub use admin::{Admin, METRICS_CONTENT_TYPE, admin_router, serve_admin};
pub use error::Error;
pub use kube_client::{KubeClientError, kube_client, kube_config};
pub use metrics::latency_histogram;
pub use signal::shutdown_signal;
pub use tracing_init::{LogFormat, init_tracing};

// Re-exported so binaries register metrics against the same version.
pub use prometheus_client;
