//! Prometheus metrics of the hub. Every component gets its handles from [`Metrics`],
//! which registers them once in the registry the admin server exposes.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// Labels of status-writer metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PatchLabels {
    /// `work_status`, `view_status`, `cluster_status`, `finalizer`, `annotation`.
    pub kind: &'static str,
    /// `ok`, `failed`, `conflict`, `timeout`.
    pub result: &'static str,
}

/// Labels of dropped status reports.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DropLabels {
    /// `stale_generation`, `future_generation`, `uid_mismatch`, `unknown_object`, `invalid`.
    pub reason: &'static str,
}

/// Labels of registration calls.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RegistrationLabels {
    /// `join` or `renew`.
    pub rpc: &'static str,
    /// `ok`, `refused` (token or certificate not accepted), `invalid` (bad request), `error`.
    pub result: &'static str,
}

/// Labels of the status-latency histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// `work` or `view`.
    pub kind: &'static str,
}

/// A histogram family whose histograms have the transport's latency buckets.
pub type LatencyFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Labels of per-cluster metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterLabels {
    pub cluster: String,
}

#[derive(Clone, Debug)]
pub struct Metrics {
    pub connected_agents: Gauge,
    pub works_indexed: Gauge,
    pub views_indexed: Gauge,
    pub clusters_registered: Gauge,
    pub syncs_sent: Counter,
    pub sync_bytes_sent: Counter,
    pub connections_refused: Counter,
    pub status_patches: Family<PatchLabels, Counter>,
    pub status_patch_seconds: Histogram,
    pub status_dropped: Family<DropLabels, Counter>,
    /// Reports not written because the object already holds them (see `status::writer`).
    pub status_unchanged: Counter,
    pub write_queue_depth: Gauge,
    /// Sum of the cost of agents' reports the hub holds (grpc::report_cost).
    pub report_bytes_held: Gauge,
    pub intents_dropped: Counter,
    pub registrations: Family<RegistrationLabels, Counter>,
    /// Age of the oldest change sent to each cluster that its agent has not acknowledged
    /// (0: everything acknowledged); see `acks`.
    pub oldest_unacknowledged_seconds: Family<ClusterLabels, Gauge<f64, AtomicU64>>,
    /// Connected agents that acknowledged everything sent to them, their resync included.
    pub agents_in_sync: Gauge,
    /// The hub saw a ManifestWork generation → its agent reported it applied; see `delivery`.
    pub work_delivery_seconds: LatencyFamily<ClusterLabels>,
    /// A status observed on the managed cluster (the agent's clock) → written on the hub.
    pub status_latency_seconds: LatencyFamily<KindLabels>,
    /// Kubernetes Events announced, by reason and result (`events`).
    pub events: drbridge_runtime::events::EventCounters,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            connected_agents: Gauge::default(),
            works_indexed: Gauge::default(),
            views_indexed: Gauge::default(),
            clusters_registered: Gauge::default(),
            syncs_sent: Counter::default(),
            sync_bytes_sent: Counter::default(),
            connections_refused: Counter::default(),
            status_patches: Family::default(),
            status_patch_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            status_dropped: Family::default(),
            status_unchanged: Counter::default(),
            write_queue_depth: Gauge::default(),
            report_bytes_held: Gauge::default(),
            intents_dropped: Counter::default(),
            registrations: Family::default(),
            oldest_unacknowledged_seconds: Family::default(),
            agents_in_sync: Gauge::default(),
            work_delivery_seconds: Family::new_with_constructor(
                drbridge_runtime::latency_histogram,
            ),
            status_latency_seconds: Family::new_with_constructor(
                drbridge_runtime::latency_histogram,
            ),
            events: Family::default(),
        }
    }
}

impl Metrics {
    /// Creates the metrics and registers them under the `drbridge_hub` prefix.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        let r = registry.sub_registry_with_prefix("drbridge_hub");
        r.register(
            "events",
            "Kubernetes Events announced, by reason and result (published, dropped, failed)",
            m.events.clone(),
        );
        r.register(
            "connected_agents",
            "Agents with an open stream",
            m.connected_agents.clone(),
        );
        r.register(
            "works_indexed",
            "ManifestWorks in the index",
            m.works_indexed.clone(),
        );
        r.register(
            "views_indexed",
            "ManagedClusterViews in the index",
            m.views_indexed.clone(),
        );
        r.register(
            "clusters_registered",
            "ManagedClusters in the index",
            m.clusters_registered.clone(),
        );
        r.register(
            "syncs_sent",
            "Sync messages sent to agents",
            m.syncs_sent.clone(),
        );
        r.register(
            "sync_bytes_sent",
            "Encoded bytes of Sync messages sent to agents",
            m.sync_bytes_sent.clone(),
        );
        r.register(
            "connections_refused",
            "Agent streams refused (unregistered cluster, no identity, stale epoch, bad hello)",
            m.connections_refused.clone(),
        );
        r.register(
            "status_patches",
            "Writes to the API server by the status writer",
            m.status_patches.clone(),
        );
        r.register(
            "status_patch_duration_seconds",
            "Latency of status writer patches",
            m.status_patch_seconds.clone(),
        );
        r.register(
            "status_dropped",
            "Agent reports not written: for an object the index does not hold in the agent's namespace, fenced (uid, generation) or invalid",
            m.status_dropped.clone(),
        );
        r.register(
            "status_unchanged",
            "Agent reports not written because the object's status already says the same (a reconnecting agent resends every status)",
            m.status_unchanged.clone(),
        );
        r.register(
            "write_queue_depth",
            "Distinct objects waiting for the status writer",
            m.write_queue_depth.clone(),
        );
        r.register(
            "report_bytes_held",
            "Approximate memory of agents' reports queued or being written (each cluster has its own budget)",
            m.report_bytes_held.clone(),
        );
        r.register(
            "intents_dropped",
            "Index intents dropped on a full queue (the periodic sweep repeats them)",
            m.intents_dropped.clone(),
        );
        r.register(
            "registrations",
            "Join and Renew calls by result",
            m.registrations.clone(),
        );
        r.register(
            "oldest_unacknowledged_seconds",
            "Age of the oldest change sent to the cluster's agent and not yet acknowledged (0: all acknowledged)",
            m.oldest_unacknowledged_seconds.clone(),
        );
        r.register(
            "agents_in_sync",
            "Connected agents that acknowledged everything sent to them, their resync included",
            m.agents_in_sync.clone(),
        );
        r.register(
            "work_delivery_seconds",
            "From the hub seeing a ManifestWork generation to its agent reporting it applied",
            m.work_delivery_seconds.clone(),
        );
        r.register(
            "status_latency_seconds",
            "From a status observed on the managed cluster (its clock) to the status written on the hub",
            m.status_latency_seconds.clone(),
        );
        m
    }

    pub fn delivered(&self, cluster: &str, took: std::time::Duration) {
        self.work_delivery_seconds
            .get_or_create(&ClusterLabels {
                cluster: cluster.to_string(),
            })
            .observe(took.as_secs_f64());
    }

    /// A status the agent observed at `observed` (RFC 3339) is written now. Clocks of hub and
    /// managed cluster differ a little: a time in the future counts as no delay, and a
    /// missing or malformed time (an older agent) as no measurement.
    pub fn status_written(&self, kind: &'static str, observed: &str) {
        let Ok(at) = chrono::DateTime::parse_from_rfc3339(observed) else {
            return;
        };
        let took = (chrono::Utc::now() - at.with_timezone(&chrono::Utc))
            .to_std()
            .unwrap_or_default();
        self.status_latency_seconds
            .get_or_create(&KindLabels { kind })
            .observe(took.as_secs_f64());
    }

    pub fn unacknowledged_age(&self, cluster: &str, seconds: f64) {
        self.oldest_unacknowledged_seconds
            .get_or_create(&ClusterLabels {
                cluster: cluster.to_string(),
            })
            .set(seconds);
    }

    pub fn forget_unacknowledged(&self, cluster: &str) {
        self.oldest_unacknowledged_seconds.remove(&ClusterLabels {
            cluster: cluster.to_string(),
        });
    }

    pub fn registered(&self, rpc: &'static str, result: &'static str) {
        self.registrations
            .get_or_create(&RegistrationLabels { rpc, result })
            .inc();
    }

    pub fn dropped(&self, reason: &'static str) {
        self.status_dropped
            .get_or_create(&DropLabels { reason })
            .inc();
    }

    pub fn patched(&self, kind: &'static str, result: &'static str) {
        self.status_patches
            .get_or_create(&PatchLabels { kind, result })
            .inc();
    }
}
