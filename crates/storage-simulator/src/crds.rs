//! The CRDs of the kinds the simulator serves, generated from [`crate::types`] and committed
//! under `crates/storage-simulator/crds/` for test beds to apply before Ramen starts. The
//! test `tests/crds.rs` fails when the committed files drift from the types
//! (`UPDATE_CRDS=1 cargo test -p drbridge-storage-simulator --test crds` rewrites them).

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use crate::types::{VolumeReplication, VolumeReplicationClass};

/// First lines of every generated CRD file.
pub const HEADER: &str = "# Generated from crates/storage-simulator/src/types.rs (csi-addons' replication API as \
Ramen pins it).\n# Rewrite with UPDATE_CRDS=1 cargo test -p drbridge-storage-simulator --test crds. Do not edit.\n";

/// VolumeReplication and VolumeReplicationClass, sorted by name.
pub fn crds() -> Vec<CustomResourceDefinition> {
    drbridge_api::crds::sorted(vec![
        VolumeReplication::crd(),
        VolumeReplicationClass::crd(),
    ])
}

/// Each CRD as `(file name, YAML)`.
pub fn files() -> Result<Vec<(String, String)>, serde_saphyr::SerializeError> {
    crds()
        .iter()
        .map(|crd| {
            let name = crd.metadata.name.clone().unwrap_or_default();
            let yaml = serde_saphyr::to_string(crd)?;
            Ok((format!("{name}.yaml"), format!("{HEADER}{yaml}")))
        })
        .collect()
}
