//! Labels, annotations, finalizers and names that Ramen puts on (or expects of) the OCM objects
//! drbridge carries. Taken from RamenDR/ramen at the commit named in
//! `docs/ramen-ocm-contract.md`.

/// Label on every ManifestWork, ManagedClusterView and PlacementDecision Ramen creates (`"true"`).
pub const CREATED_BY_RAMEN_LABEL: &str = "ramendr.openshift.io/created-by-ramen";

/// Annotation on DRPC-owned ManifestWorks and views: the DRPC name. Ramen maps status changes
/// of the object back to the DRPC through it.
pub const DRPC_NAME_ANNOTATION: &str = "drplacementcontrol.ramendr.openshift.io/drpc-name";
/// Annotation: the DRPC namespace.
pub const DRPC_NAMESPACE_ANNOTATION: &str =
    "drplacementcontrol.ramendr.openshift.io/drpc-namespace";
/// Annotation on DRCluster-owned ManifestWorks and views: the DRCluster name.
pub const DRCLUSTER_NAME_ANNOTATION: &str = "drcluster.ramendr.openshift.io/drcluster-name";
/// Annotation key on views DRPolicy watches (value: the cluster name).
pub const DRPOLICY_ANNOTATION: &str = "drpolicy.ramendr.openshift.io";

/// VRG annotation: the cluster the VRG is meant for.
pub const DESTINATION_CLUSTER_ANNOTATION: &str =
    "drplacementcontrol.ramendr.openshift.io/destination-cluster";
/// VRG annotation: UID of the owning DRPC.
pub const DRPC_UID_ANNOTATION: &str = "drplacementcontrol.ramendr.openshift.io/drpc-uid";
/// VRG annotation: test failover dry run. Ramen sets it to `"false"` rather than removing it,
/// because the OCM agent merges annotations and never removes one.
pub const TEST_FAILOVER_DRY_RUN_ANNOTATION: &str =
    "drplacementcontrol.ramendr.openshift.io/test-failover-dryrun";

/// Finalizer Ramen puts on Placements it manages.
pub const DRPC_FINALIZER: &str = "drpc.ramendr.openshift.io/finalizer";
/// Finalizer of a VolumeReplicationGroup; a Foreground delete of the VRG ManifestWork must wait
/// for it.
pub const VRG_FINALIZER: &str = "volumereplicationgroups.ramendr.openshift.io/vrg-protection";
/// Finalizer of a DRClusterConfig; a Foreground delete of `drcconfig-mw` must wait for it.
pub const DRCLUSTERCONFIG_FINALIZER: &str = "drclusterconfigs.ramendr.openshift.io/finalizer";
/// Label on ClusterClaims the DRClusterConfig controller owns (value `ramen`).
pub const DRCLUSTERCONFIG_OWNER_LABEL: &str = "drclusterconfigs.ramendr.openshift.io/owner";

/// Label on ClusterRoles that grant OCM's work agent its permissions (value `"true"`); Ramen
/// ships such roles in the `ramen-dr-cluster` ManifestWork.
pub const AGGREGATE_TO_WORK_LABEL: &str = "open-cluster-management.io/aggregate-to-work";
/// Label Ramen puts on the PlacementDecisions it writes (value `"true"`).
pub const VELERO_EXCLUDE_FROM_BACKUP_LABEL: &str = "velero.io/exclude-from-backup";

/// `ClusterDecision.reason` Ramen writes for the old primary during a failover.
pub const DECISION_REASON_RETAINED_FOR_FAILOVER: &str = "RetainedForFailover";

/// View labels by class kind (value `""`), used to list class views.
pub mod view_labels {
    /// StorageClass views.
    pub const STORAGE_CLASS: &str = "ramendr.openshift.io/storageclass";
    /// VolumeSnapshotClass views.
    pub const VOLUME_SNAPSHOT_CLASS: &str = "ramendr.openshift.io/volumesnapshotclass";
    /// VolumeReplicationClass views.
    pub const VOLUME_REPLICATION_CLASS: &str = "ramendr.openshift.io/volumereplicationclass";
    /// VolumeGroupReplicationClass views.
    pub const VOLUME_GROUP_REPLICATION_CLASS: &str =
        "ramendr.openshift.io/volumegroupreplicationclass";
    /// VolumeGroupSnapshotClass views.
    pub const VOLUME_GROUP_SNAPSHOT_CLASS: &str = "ramendr.openshift.io/volumegroupsnapshotclass";
    /// NetworkFenceClass views.
    pub const NETWORK_FENCE_CLASS: &str = "ramendr.openshift.io/networkfenceclass";
    /// MaintenanceMode views and ManifestWorks.
    pub const MAINTENANCE_MODES: &str = "ramendr.openshift.io/maintenancemodes";
}

/// Names of the ManifestWorks Ramen creates in each cluster namespace.
pub mod manifest_work_names {
    /// The DR-cluster bundle (ClusterRoles, and with automation the operator install).
    pub const DR_CLUSTER: &str = "ramen-dr-cluster";
    /// The DRClusterConfig.
    pub const DRCLUSTERCONFIG: &str = "drcconfig-mw";

    /// `<drpc>-<vrgNamespace>-vrg-mw`.
    pub fn vrg(drpc_name: &str, vrg_namespace: &str) -> String {
        format!("{drpc_name}-{vrg_namespace}-vrg-mw")
    }

    /// `<drpc>-<namespace>-ns-mw`.
    pub fn namespace(drpc_name: &str, namespace: &str) -> String {
        format!("{drpc_name}-{namespace}-ns-mw")
    }
}

/// `BuildManagedClusterViewName`: `<name>-<namespace>-<type>-mcv`, or `<name>-<type>-mcv` for a
/// cluster-scoped object.
pub fn managed_cluster_view_name(name: &str, namespace: &str, kind_tag: &str) -> String {
    if namespace.is_empty() {
        format!("{name}-{kind_tag}-mcv")
    } else {
        format!("{name}-{namespace}-{kind_tag}-mcv")
    }
}
