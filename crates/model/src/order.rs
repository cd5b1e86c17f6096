//! OCM's apply order (`resourceApplyOrder` in the work agent's manifestwork reconciler).
//!
//! Manifests are applied by kind rank, lowest first, and keep their spec order inside a
//! rank (stable sort). Unknown kinds come after every listed kind; manifests that could
//! not be parsed come last. Status still reports manifests by their spec ordinal.

/// Rank of a kind that is not in OCM's table.
pub const UNLISTED_RANK: u32 = 1000;
/// Rank of a manifest without a kind (unparseable).
pub const UNPARSED_RANK: u32 = 1001;

/// The rank OCM gives to a kind. Only the kind is looked at, as OCM does (no group).
pub fn kind_rank(kind: &str) -> u32 {
    match kind {
        // Cluster-scoped foundations, no dependencies.
        "PriorityClass"
        | "Namespace"
        | "CustomResourceDefinition"
        | "StorageClass"
        | "PersistentVolume"
        | "PodSecurityPolicy" => 0,
        // RBAC, needed before anything that uses a service account.
        "ClusterRole" | "ClusterRoleBinding" | "Role" | "RoleBinding" => 1,
        // Namespace-scoped policies and identity.
        "NetworkPolicy"
        | "ResourceQuota"
        | "LimitRange"
        | "PodDisruptionBudget"
        | "ServiceAccount" => 2,
        // Config and storage, referenced by workloads.
        "Secret" | "ConfigMap" | "PersistentVolumeClaim" => 3,
        // Networking.
        "Service" => 4,
        // Workloads.
        "DaemonSet"
        | "Pod"
        | "ReplicationController"
        | "ReplicaSet"
        | "Deployment"
        | "HorizontalPodAutoscaler"
        | "StatefulSet"
        | "Job"
        | "CronJob" => 5,
        // Post-workload: webhooks and aggregation that may need running workloads.
        "APIService"
        | "MutatingWebhookConfiguration"
        | "ValidatingWebhookConfiguration"
        | "ValidatingAdmissionPolicy"
        | "ValidatingAdmissionPolicyBinding" => 6,
        _ => UNLISTED_RANK,
    }
}

/// Spec indices in apply order. `kinds[i]` is the kind of manifest `i`, `None` when the
/// manifest could not be parsed.
pub fn apply_order<S: AsRef<str>>(kinds: &[Option<S>]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..kinds.len()).collect();
    // sort_by_key is stable, which keeps spec order inside a rank.
    idx.sort_by_key(|&i| match &kinds[i] {
        Some(k) => kind_rank(k.as_ref()),
        None => UNPARSED_RANK,
    });
    idx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_match_ocm_table() {
        assert_eq!(kind_rank("Namespace"), 0);
        assert_eq!(kind_rank("CustomResourceDefinition"), 0);
        assert_eq!(kind_rank("ClusterRole"), 1);
        assert_eq!(kind_rank("ServiceAccount"), 2);
        assert_eq!(kind_rank("ConfigMap"), 3);
        assert_eq!(kind_rank("Service"), 4);
        assert_eq!(kind_rank("Deployment"), 5);
        assert_eq!(kind_rank("ValidatingWebhookConfiguration"), 6);
        assert_eq!(kind_rank("VolumeReplicationGroup"), UNLISTED_RANK);
        // Case matters, as in OCM's map lookup.
        assert_eq!(kind_rank("namespace"), UNLISTED_RANK);
    }

    #[test]
    fn ramen_dr_cluster_bundle_puts_namespaces_first() {
        // The ramen-dr-cluster MW order: 5 ClusterRoles, 2 Namespaces, ClusterRole,
        // OperatorGroup, ConfigMap, Subscription.
        let kinds = [
            Some("ClusterRole"),
            Some("ClusterRole"),
            Some("ClusterRole"),
            Some("ClusterRole"),
            Some("ClusterRole"),
            Some("Namespace"),
            Some("Namespace"),
            Some("ClusterRole"),
            Some("OperatorGroup"),
            Some("ConfigMap"),
            Some("Subscription"),
        ];
        assert_eq!(apply_order(&kinds), vec![5, 6, 0, 1, 2, 3, 4, 7, 9, 8, 10]);
    }

    #[test]
    fn unparsed_go_last_and_order_is_stable() {
        let kinds = [
            None,
            Some("Foo"),
            Some("Deployment"),
            Some("Bar"),
            Some("Namespace"),
            None,
        ];
        assert_eq!(apply_order(&kinds), vec![4, 2, 1, 3, 0, 5]);
        let empty: [Option<&str>; 0] = [];
        assert!(apply_order(&empty).is_empty());
    }
}
