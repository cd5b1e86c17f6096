//! Ramen's `ramendr.openshift.io/v1alpha1` kinds on the hub (DRPolicy, DRCluster,
//! DRPlacementControl) and the VolumeReplicationGroup the hub reads through views.
//!
//! The JSON is the Go types' (camelCase, Go's `omitempty` rules as in `drbridge_api::schema`):
//! what Ramen writes reads back unchanged and what drbridge writes reads the same in Go.

mod drcluster;
mod drpc;
mod drpolicy;
mod vrg;

pub use drcluster::*;
pub use drpc::*;
pub use drpolicy::*;
pub use vrg::*;
