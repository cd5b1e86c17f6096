//! The CustomResourceDefinitions drbridge installs, generated from the types in this crate.
//! `cargo xtask codegen` writes them to the charts.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps,
};
use kube::CustomResourceExt;

use crate::{addon, applied_work, apps, cluster, policy, view, work};

/// CRDs served by the hub's API server: every OCM API Ramen's hub operator uses (and the ones
/// its tooling and e2e create), sorted by name.
pub fn hub() -> Vec<CustomResourceDefinition> {
    sorted(vec![
        work::ManifestWork::crd(),
        view::ManagedClusterView::crd(),
        cluster::ManagedCluster::crd(),
        cluster::Placement::crd(),
        cluster::PlacementDecision::crd(),
        cluster::ManagedClusterSet::crd(),
        cluster::ManagedClusterSetBinding::crd(),
        apps::PlacementRule::crd(),
        channel(),
        policy::Policy::crd(),
        policy::PlacementBinding::crd(),
        addon::ManagedClusterAddOn::crd(),
    ])
}

/// CRDs served by each managed cluster's API server, sorted by name.
pub fn agent() -> Vec<CustomResourceDefinition> {
    sorted(vec![
        applied_work::AppliedWork::crd(),
        cluster::ClusterClaim::crd(),
    ])
}

/// Finishes each CRD (see [`finish`]) and sorts them by name, for stable output.
pub fn sorted(crds: Vec<CustomResourceDefinition>) -> Vec<CustomResourceDefinition> {
    let mut crds: Vec<_> = crds.into_iter().map(finish).collect();
    crds.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    crds
}

/// Makes the derived CRD look like controller-gen's: adds `listKind`, and drops the root
/// `title` schemars puts there (the Rust type name, which says nothing to a cluster admin).
pub fn finish(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    let names = &mut crd.spec.names;
    if names.list_kind.is_none() {
        names.list_kind = Some(format!("{}List", names.kind));
    }
    for version in &mut crd.spec.versions {
        if let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        {
            schema.title = None;
        }
    }
    crd
}

/// Channel's Go type has an empty `status` but no status subresource. Keep `status` in the
/// schema so the API server stores the `status: {}` Go clients write, as OCM's CRD does.
fn channel() -> CustomResourceDefinition {
    let mut crd = apps::Channel::crd();
    for version in &mut crd.spec.versions {
        if let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        {
            let status = JSONSchemaProps {
                type_: Some("object".into()),
                ..Default::default()
            };
            schema
                .properties
                .get_or_insert_with(Default::default)
                .insert("status".into(), status);
        }
    }
    crd
}
