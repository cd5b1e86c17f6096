//! `drbridge dr`'s knowledge of Ramen, without a cluster.
//!
//! * [`types`]: Ramen's hub API `ramendr.openshift.io/v1alpha1` (DRPolicy, DRCluster,
//!   DRPlacementControl) and the VolumeReplicationGroup, with Go's JSON shapes.
//! * [`config`]: S3 profiles in the RamenConfig ConfigMaps and their Secrets.
//! * [`objects`]: the DRCluster, DRPolicy, Placement and DRPC `drbridge dr` creates.
//! * [`safety`]: checks before a failover, relocate, clear or disable.
//! * [`cleanup`]: following the removal of protection.
//! * [`status`]: status rows (with recovery-point health) and the detail of one DRPC.
//! * [`explain`]: conditions in sentences.
//! * [`progress`]: following an action to its end.
//! * [`view`], [`connection`]: what the hub's views and ManagedClusters say about a cluster.
//! * [`demo`]: the phases, transport share, live lines and summary of `drbridge demo`.
//! * [`crds`]: CRDs generated from [`types`], for tests only.
//!
//! Facts about Ramen come from RamenDR/ramen at the commit named in
//! `docs/ramen-ocm-contract.md`.

pub mod cleanup;
pub mod config;
pub mod connection;
pub mod consts;
pub mod crds;
pub mod demo;
pub mod explain;
pub mod objects;
pub mod progress;
pub mod safety;
mod schema;
pub mod selector;
pub mod status;
pub mod table;
pub mod time;
pub mod types;
pub mod view;
