//! What the writer is asked to do, and why it may not do it.

use std::sync::Arc;

use drbridge_proto::v1 as pb;

use crate::index::Intent;

/// A message from an agent that needs a write. `cluster` comes from the stream's
/// certificate, never from the message: an agent can only address its own namespace.
/// (A `WorkGone` is not one: it changes the index, which emits the finalizer release.)
#[derive(Clone, Debug, PartialEq)]
pub enum Report {
    Work {
        cluster: String,
        status: pb::WorkStatus,
    },
    View {
        cluster: String,
        status: pb::ViewStatus,
    },
}

/// ManagedCluster status as presence wants it.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterStatus {
    pub name: String,
    /// An agent has connected at least once.
    pub joined: bool,
    /// `Some(true)`: connected and heartbeating; `Some(false)`: Unknown; `None`: not
    /// known yet (leave the condition alone).
    pub available: Option<bool>,
    /// Claims from the agent's `ClusterInfo`, when it sent some.
    pub claims: Option<Vec<(String, String)>>,
    pub kubernetes_version: Option<String>,
}

/// What a report holds against its cluster's budget while the hub keeps it (queued or being
/// written): released when the write is done, or when a newer report for the same object
/// replaces it in the queue. See `grpc::GrpcConfig::report_budget_bytes`.
#[derive(Clone, Debug, Default)]
pub struct Charge {
    _held: Option<Arc<Held>>,
}

#[derive(Debug)]
struct Held {
    _permit: tokio::sync::OwnedSemaphorePermit,
    cost: usize,
    gauge: prometheus_client::metrics::gauge::Gauge,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.gauge.dec_by(self.cost as i64);
    }
}

impl Charge {
    /// Holds `permit` (of `cost` units), counted in `gauge`, until dropped.
    pub fn new(
        permit: tokio::sync::OwnedSemaphorePermit,
        cost: usize,
        gauge: prometheus_client::metrics::gauge::Gauge,
    ) -> Self {
        gauge.inc_by(cost as i64);
        Self {
            _held: Some(Arc::new(Held {
                _permit: permit,
                cost,
                gauge,
            })),
        }
    }

    /// No budget (reports made inside the hub, tests).
    pub fn none() -> Self {
        Self { _held: None }
    }
}

/// Charges are bookkeeping, not content: two ops are equal whatever they hold.
impl PartialEq for Charge {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// Everything the writer does.
#[derive(Clone, Debug, PartialEq)]
pub enum WriteOp {
    Report(Report, Charge),
    Intent(Intent),
    Cluster(ClusterStatus),
    /// Mark (`Some(since)`) or unmark (`None`) the works and views of a cluster as
    /// unreachable; see docs/presence.md.
    Unreachable {
        cluster: String,
        since: Option<String>,
    },
    /// Set (`Some(since)`) or remove (`None`) the ManagedCluster's annotation of changes its
    /// agent has not acknowledged; see `acks`.
    Unacknowledged {
        cluster: String,
        since: Option<String>,
    },
}

/// Why a write was not made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Skip {
    #[error("the object is not in the index")]
    UnknownObject,
    #[error("the report is for another uid than the object's")]
    UidMismatch,
    #[error("the report is for an older generation than the object's")]
    StaleGeneration,
    #[error("the report is for a newer generation than the hub has seen")]
    FutureGeneration,
    #[error("the report is malformed")]
    Invalid,
    #[error("nothing to change")]
    Unchanged,
}

impl Skip {
    pub fn label(self) -> &'static str {
        match self {
            Skip::UnknownObject => "unknown_object",
            Skip::UidMismatch => "uid_mismatch",
            Skip::StaleGeneration => "stale_generation",
            Skip::FutureGeneration => "future_generation",
            Skip::Invalid => "invalid",
            Skip::Unchanged => "unchanged",
        }
    }
}
