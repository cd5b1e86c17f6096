use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// ClusterClaim: a fact about the managed cluster, created on the managed cluster
/// (cluster-scoped). OCM syncs claims into `ManagedCluster.status.clusterClaims`; drbridge's
/// agent does the same. See [`super::consts::claim`] for the names Ramen reads.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[kube(
    group = "cluster.open-cluster-management.io",
    version = "v1alpha1",
    kind = "ClusterClaim",
    derive = "PartialEq",
    derive = "Default",
    doc = "ClusterClaim: a fact about the managed cluster."
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterClaimSpec {
    /// The claim value.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(min = 1, max = 1024))]
    pub value: String,
}
