//! The simulator's Prometheus metrics, under `drbridge_storage_simulator_`.

use drbridge_runtime::prometheus_client::metrics::counter::Counter;
use drbridge_runtime::prometheus_client::metrics::family::Family;
use drbridge_runtime::prometheus_client::registry::Registry;

/// Cheap to clone; every clone updates the same series.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    /// Simulated PVs created.
    pub volumes_provisioned: Counter,
    /// Released PVs deleted (reclaim policy Delete).
    pub volumes_deleted: Counter,
    /// Replication transitions, by `transition` (promoted, demoted, resync_started,
    /// resync_completed, refused).
    pub replication_transitions: Family<Vec<(String, String)>, Counter>,
    /// VolumeReplication status writes.
    pub status_writes: Counter,
    /// Failed reconciles, by `controller` (pvc, pv, volumereplication).
    pub reconcile_errors: Family<Vec<(String, String)>, Counter>,
}

impl Metrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Metrics::default();
        let r = registry.sub_registry_with_prefix("drbridge_storage_simulator");
        r.register(
            "volumes_provisioned",
            "Simulated PersistentVolumes created",
            m.volumes_provisioned.clone(),
        );
        r.register(
            "volumes_deleted",
            "Released PersistentVolumes with reclaim policy Delete deleted",
            m.volumes_deleted.clone(),
        );
        r.register(
            "replication_transitions",
            "VolumeReplication transitions, by transition",
            m.replication_transitions.clone(),
        );
        r.register(
            "status_writes",
            "VolumeReplication status writes",
            m.status_writes.clone(),
        );
        r.register(
            "reconcile_errors",
            "Failed reconciles, by controller",
            m.reconcile_errors.clone(),
        );
        m
    }

    pub fn transition(&self, name: &str) {
        self.replication_transitions
            .get_or_create(&vec![("transition".into(), name.into())])
            .inc();
    }

    pub fn error(&self, controller: &str) {
        self.reconcile_errors
            .get_or_create(&vec![("controller".into(), controller.into())])
            .inc();
    }
}
