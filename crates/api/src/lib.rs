//! OCM-compatible Kubernetes API types for drbridge, and drbridge's own AppliedWork.
//!
//! Every type serializes to the same JSON as the Go type it mirrors (field names, which fields
//! are left out when empty, enums), so objects written by Ramen's Go client read back unchanged
//! and what drbridge writes reads the same in Go. The rules used to mirror Go's `encoding/json`
//! are described in `src/schema.rs`. Raw embedded objects (manifests, view results) are
//! [`raw::EmbeddedObject`], kept exactly as received.
//!
//! | module | group/version | kinds |
//! |---|---|---|
//! | [`work`] | `work.open-cluster-management.io/v1` | ManifestWork |
//! | [`view`] | `view.open-cluster-management.io/v1beta1` | ManagedClusterView |
//! | [`cluster`] | `cluster.open-cluster-management.io/{v1,v1beta1,v1beta2,v1alpha1}` | ManagedCluster, Placement, PlacementDecision, ManagedClusterSet, ManagedClusterSetBinding, ClusterClaim |
//! | [`apps`] | `apps.open-cluster-management.io/v1` | PlacementRule, Channel |
//! | [`policy`] | `policy.open-cluster-management.io/v1` | Policy, PlacementBinding |
//! | [`addon`] | `addon.open-cluster-management.io/v1alpha1` | ManagedClusterAddOn |
//! | [`applied_work`] | `drbridge.io/v1alpha1` | AppliedWork (on managed clusters) |
//!
//! Constants (condition types, reasons, messages, labels, finalizers) are in each module's
//! `consts`; Ramen's own labels and annotations are in [`ramen`]. [`crds`] lists the CRDs to
//! install on the hub and on managed clusters.

pub mod addon;
pub mod applied_work;
pub mod apps;
pub mod cluster;
pub mod crds;
pub mod policy;
pub mod ramen;
pub mod raw;
pub mod schema;
pub mod view;
pub mod work;

pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
