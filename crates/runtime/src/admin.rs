//! The admin HTTP server: liveness, readiness and Prometheus metrics.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::error::Error;

/// Content type of `/metrics` (OpenMetrics text, which Prometheus scrapes natively).
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone)]
struct AdminState {
    registry: Arc<Registry>,
    ready: watch::Receiver<bool>,
}

/// `/live` (always 200 while the process serves), `/ready` (200 while `ready` is true, else
/// 503) and `/metrics` (the registry in OpenMetrics text). Binaries may merge more routes.
pub fn admin_router(registry: Arc<Registry>, ready: watch::Receiver<bool>) -> Router {
    Router::new()
        .route("/live", get(live))
        .route("/ready", get(ready_handler))
        .route("/metrics", get(metrics))
        .with_state(AdminState { registry, ready })
}

async fn live() -> &'static str {
    "ok\n"
}

async fn ready_handler(State(state): State<AdminState>) -> Response {
    if *state.ready.borrow() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

async fn metrics(State(state): State<AdminState>) -> Response {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &state.registry) {
        Ok(()) => ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], body).into_response(),
        Err(e) => {
            warn!(error = %e, "encoding metrics failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// A bound admin server, not yet serving; [`local_addr`](Self::local_addr) tells the port when
/// bound to port 0.
pub struct Admin {
    listener: TcpListener,
    local_addr: SocketAddr,
    router: Router,
}

impl Admin {
    pub async fn bind(
        addr: SocketAddr,
        registry: Arc<Registry>,
        ready: watch::Receiver<bool>,
    ) -> Result<Self, Error> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind { addr, source })?;
        Self::from_listener(listener, admin_router(registry, ready))
    }

    /// Serves `router` (e.g. [`admin_router`] with extra routes merged) on a bound listener.
    pub fn from_listener(listener: TcpListener, router: Router) -> Result<Self, Error> {
        let local_addr = listener.local_addr().map_err(Error::Serve)?;
        Ok(Self {
            listener,
            local_addr,
            router,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` resolves, then finishes in-flight requests and returns.
    pub async fn serve<F>(self, shutdown: F) -> Result<(), Error>
    where
        F: Future + Send + 'static,
    {
        info!(addr = %self.local_addr, "admin server listening");
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(async move {
                shutdown.await;
            })
            .await
            .map_err(Error::Serve)
    }
}

impl fmt::Debug for Admin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admin")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

/// Binds `addr` and serves the admin endpoints until `shutdown` resolves. To learn the port
/// when `addr` has port 0, use [`Admin::bind`] and [`Admin::local_addr`] instead.
pub async fn serve_admin<F>(
    addr: SocketAddr,
    registry: Arc<Registry>,
    ready: watch::Receiver<bool>,
    shutdown: F,
) -> Result<(), Error>
where
    F: Future + Send + 'static,
{
    Admin::bind(addr, registry, ready)
        .await?
        .serve(shutdown)
        .await
}
