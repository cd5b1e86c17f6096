//! CRDs for Ramen's kinds, generated from the types in this crate, **for tests only**: they let
//! a plain API server serve Ramen's API where Ramen's own CRDs (controller-gen output) are not
//! at hand. drbridge never installs them in a real environment (Ramen ships its own), and the
//! charts do not contain them. `cargo xtask codegen` writes them to
//! `tests/integration/fixtures/ramen-crds/`.
//!
//! They carry the validations of Ramen's CRDs that matter to `drbridge dr` (the two clusters of
//! a DRPolicy, the interval pattern, immutable fields, the action enum), and model VolSync and
//! static-IP details as preserved-unknown objects.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use crate::types::{DRCluster, DRPlacementControl, DRPolicy, VolumeReplicationGroup};

/// Ramen's hub CRDs (`config/hub/crd`): DRCluster, DRPlacementControl, DRPolicy.
pub fn hub() -> Vec<CustomResourceDefinition> {
    sorted(vec![
        DRCluster::crd(),
        DRPlacementControl::crd(),
        DRPolicy::crd(),
    ])
}

/// The managed-cluster CRD the hub reads through views: VolumeReplicationGroup.
pub fn managed() -> Vec<CustomResourceDefinition> {
    sorted(vec![VolumeReplicationGroup::crd()])
}

use drbridge_api::crds::sorted;
