//! `cluster.open-cluster-management.io`: ManagedCluster (v1), Placement and PlacementDecision
//! (v1beta1), ManagedClusterSet and ManagedClusterSetBinding (v1beta2), ClusterClaim (v1alpha1),
//! as in `open-cluster-management.io/api` v1.2.0 `cluster/`.

mod claim;
mod cluster_set;
mod managed_cluster;
mod placement;

pub use claim::*;
pub use cluster_set::*;
pub use managed_cluster::*;
pub use placement::*;

/// API group.
pub const GROUP: &str = "cluster.open-cluster-management.io";

/// Names and strings of the cluster API.
pub mod consts {
    /// ManagedCluster condition types.
    pub mod condition {
        /// The agent joined the hub. Ramen requires it True.
        pub const MANAGED_CLUSTER_JOINED: &str = "ManagedClusterJoined";
        /// The hub accepted the cluster.
        pub const HUB_ACCEPTED_MANAGED_CLUSTER: &str = "HubAcceptedManagedCluster";
        /// The hub denied the cluster.
        pub const HUB_DENIED_MANAGED_CLUSTER: &str = "HubDeniedManagedCluster";
        /// The cluster's agent is reachable (lease renewed).
        pub const MANAGED_CLUSTER_CONDITION_AVAILABLE: &str = "ManagedClusterConditionAvailable";
        /// The clocks of hub and cluster agree.
        pub const MANAGED_CLUSTER_CONDITION_CLOCK_SYNCED: &str =
            "ManagedClusterConditionClockSynced";
        /// The cluster is being deleted.
        pub const DELETING: &str = "Deleting";
        /// Placement: the decisions satisfy the spec.
        pub const PLACEMENT_SATISFIED: &str = "PlacementSatisfied";
        /// Placement: the spec is misconfigured.
        pub const PLACEMENT_MISCONFIGURED: &str = "PlacementMisconfigured";
        /// ManagedClusterSet: the set has no clusters.
        pub const CLUSTER_SET_EMPTY: &str = "ClusterSetEmpty";
        /// ManagedClusterSetBinding: the binding is bound to its set.
        pub const CLUSTER_SET_BINDING_BOUND: &str = "Bound";
    }

    /// Cluster claim names.
    pub mod claim {
        /// Unique, stable cluster id (the kube-system namespace UID on non-OpenShift clusters).
        /// Ramen reads it from `ManagedCluster.status.clusterClaims`.
        pub const ID: &str = "id.k8s.io";
        /// Cluster name claim; Ramen's e2e identifies clusters by it.
        pub const NAME: &str = "name";
        /// Kubernetes version claim.
        pub const KUBE_VERSION: &str = "kubeversion.open-cluster-management.io";
        /// Platform claim.
        pub const PLATFORM: &str = "platform.open-cluster-management.io";
        /// Product claim.
        pub const PRODUCT: &str = "product.open-cluster-management.io";
        /// Claims OCM reserves (always synced to the hub).
        pub const RESERVED: [&str; 4] = [ID, KUBE_VERSION, PLATFORM, PRODUCT];
    }

    /// Label on objects (for example addon resources) naming their managed cluster.
    pub const CLUSTER_NAME_LABEL: &str = "open-cluster-management.io/cluster-name";
    /// Label on a ManagedCluster naming its ManagedClusterSet.
    pub const CLUSTER_SET_LABEL: &str = "cluster.open-cluster-management.io/clusterset";
    /// Label on a PlacementDecision naming its Placement.
    pub const PLACEMENT_LABEL: &str = "cluster.open-cluster-management.io/placement";
    /// Label on a PlacementDecision with its decision group index.
    pub const DECISION_GROUP_INDEX_LABEL: &str =
        "cluster.open-cluster-management.io/decision-group-index";
    /// Label on a PlacementDecision with its decision group name.
    pub const DECISION_GROUP_NAME_LABEL: &str =
        "cluster.open-cluster-management.io/decision-group-name";
    /// Annotation on a Placement that turns OCM's scheduler off for it; Ramen requires `"true"`
    /// and writes the PlacementDecision itself.
    pub const PLACEMENT_DISABLE_ANNOTATION: &str =
        "cluster.open-cluster-management.io/experimental-scheduling-disable";
    /// OCM's hub backup label (Ramen deletes it from namespace ManifestWorks).
    pub const BACKUP_LABEL: &str = "cluster.open-cluster-management.io/backup";
    /// Finalizer the hub puts on a ManagedCluster.
    pub const MANAGED_CLUSTER_FINALIZER: &str =
        "cluster.open-cluster-management.io/api-resource-cleanup";
    /// Taint of an unavailable cluster.
    pub const TAINT_UNAVAILABLE: &str = "cluster.open-cluster-management.io/unavailable";
    /// Taint of an unreachable cluster.
    pub const TAINT_UNREACHABLE: &str = "cluster.open-cluster-management.io/unreachable";
    /// Default `spec.leaseDurationSeconds`.
    pub const DEFAULT_LEASE_DURATION_SECONDS: i32 = 60;
}
