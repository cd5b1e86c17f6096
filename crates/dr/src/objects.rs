//! The objects `drbridge dr` writes to configure DR and protect an application, built as
//! Ramen's own tooling (ramendev, e2e) builds them.

use std::collections::BTreeMap;

use drbridge_api::cluster::consts::PLACEMENT_DISABLE_ANNOTATION;
use drbridge_api::cluster::{Placement, PlacementSpec};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::ObjectMeta;

use crate::consts::API_VERSION;
use crate::types::{
    DRCluster, DRClusterSpec, DRPlacementControl, DRPlacementControlSpec, DRPolicy, DRPolicySpec,
    KubeObjectProtectionSpec,
};

/// A request that cannot be turned into valid objects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

/// Checks a Kubernetes object name (a DNS-1123 subdomain; cluster names are DNS labels).
pub fn check_name(what: &str, name: &str) -> Result<(), Invalid> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(Invalid(format!(
            "{what} {name:?} is not a valid name (lower-case letters, digits, '-' and '.')"
        )))
    }
}

/// A DRCluster: `name` must be the managed cluster's name.
pub fn drcluster(name: &str, s3_profile: &str, region: Option<&str>) -> Result<DRCluster, Invalid> {
    check_name("cluster", name)?;
    if s3_profile.is_empty() {
        return Err(Invalid("an S3 profile name is required".into()));
    }
    Ok(DRCluster::new(
        name,
        DRClusterSpec {
            s3_profile_name: s3_profile.to_string(),
            region: region.unwrap_or_default().to_string(),
            ..Default::default()
        },
    ))
}

/// A DRPolicy for Regional DR between two clusters.
pub fn drpolicy(
    name: &str,
    clusters: &[String],
    scheduling_interval: &str,
    replication_class_selector: LabelSelector,
    volume_snapshot_class_selector: LabelSelector,
) -> Result<DRPolicy, Invalid> {
    check_name("policy", name)?;
    match clusters {
        [a, b] if a != b => {
            check_name("cluster", a)?;
            check_name("cluster", b)?;
        }
        _ => {
            return Err(Invalid(format!(
                "a DRPolicy pairs exactly two different clusters, got {}",
                if clusters.is_empty() {
                    "none".to_string()
                } else {
                    clusters.join(", ")
                }
            )));
        }
    }
    match crate::time::parse_scheduling_interval(scheduling_interval) {
        Ok(Some(_)) => {}
        Ok(None) => {
            return Err(Invalid(
                "Regional DR needs a non-zero scheduling interval such as 5m (an empty or zero \
                 interval means synchronous Metro DR, which drbridge does not configure)"
                    .into(),
            ));
        }
        Err(e) => return Err(Invalid(e.to_string())),
    }
    Ok(DRPolicy::new(
        name,
        DRPolicySpec {
            scheduling_interval: scheduling_interval.to_string(),
            replication_class_selector,
            volume_snapshot_class_selector,
            dr_clusters: clusters.to_vec(),
            ..Default::default()
        },
    ))
}

/// What `drbridge dr protect` protects.
#[derive(Debug, Clone, PartialEq)]
pub struct Protect {
    /// Name of the DRPC and of its Placement.
    pub name: String,
    /// Where the DRPC and Placement go: the RamenConfig's `ramenOpsNamespace`.
    pub ops_namespace: String,
    /// The application's namespaces (`protectedNamespaces`).
    pub namespaces: Vec<String>,
    pub pvc_selector: LabelSelector,
    /// Kube objects to capture; `None`: every object in the namespaces.
    pub kube_object_selector: Option<LabelSelector>,
    pub preferred_cluster: String,
    pub policy: String,
    /// Optional ManagedClusterSet of the Placement.
    pub cluster_set: Option<String>,
}

/// The Placement of a discovered application: Ramen is its scheduler, so OCM's is disabled.
pub fn placement(p: &Protect) -> Placement {
    let mut placement = Placement::new(
        &p.name,
        PlacementSpec {
            cluster_sets: p.cluster_set.iter().cloned().collect(),
            number_of_clusters: Some(1),
            ..Default::default()
        },
    );
    placement.metadata = ObjectMeta {
        name: Some(p.name.clone()),
        namespace: Some(p.ops_namespace.clone()),
        annotations: Some(BTreeMap::from([(
            PLACEMENT_DISABLE_ANNOTATION.to_string(),
            "true".to_string(),
        )])),
        ..Default::default()
    };
    placement
}

/// The DRPC of a discovered application.
pub fn drpc(p: &Protect) -> Result<DRPlacementControl, Invalid> {
    check_name("application", &p.name)?;
    check_name("policy", &p.policy)?;
    check_name("cluster", &p.preferred_cluster)?;
    if p.namespaces.is_empty() {
        return Err(Invalid(
            "at least one application namespace is required".into(),
        ));
    }
    for ns in &p.namespaces {
        check_name("namespace", ns)?;
    }
    let mut d = DRPlacementControl::new(
        &p.name,
        DRPlacementControlSpec {
            placement_ref: ObjectReference {
                api_version: Some("cluster.open-cluster-management.io/v1beta1".into()),
                kind: Some("Placement".into()),
                name: Some(p.name.clone()),
                namespace: Some(p.ops_namespace.clone()),
                ..Default::default()
            },
            protected_namespaces: Some(p.namespaces.clone()),
            dr_policy_ref: ObjectReference {
                api_version: Some(API_VERSION.into()),
                kind: Some("DRPolicy".into()),
                name: Some(p.policy.clone()),
                ..Default::default()
            },
            preferred_cluster: p.preferred_cluster.clone(),
            pvc_selector: p.pvc_selector.clone(),
            kube_object_protection: Some(KubeObjectProtectionSpec {
                kube_object_selector: p.kube_object_selector.clone(),
                ..Default::default()
            }),
            ..Default::default()
        },
    );
    d.metadata.namespace = Some(p.ops_namespace.clone());
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn drpolicy_json_matches_ramens() {
        let p = drpolicy(
            "dr-policy-5m",
            &["dr1".into(), "dr2".into()],
            "5m",
            crate::selector::parse("ramendr.openshift.io/replicationid=rbd").unwrap(),
            LabelSelector::default(),
        )
        .unwrap();
        assert_eq!(
            serde_json::to_value(&p).unwrap(),
            json!({
                "apiVersion": "ramendr.openshift.io/v1alpha1",
                "kind": "DRPolicy",
                "metadata": {"name": "dr-policy-5m"},
                "spec": {
                    "schedulingInterval": "5m",
                    "replicationClassSelector": {"matchLabels": {"ramendr.openshift.io/replicationid": "rbd"}},
                    "volumeSnapshotClassSelector": {},
                    "volumeGroupSnapshotClassSelector": {},
                    "drClusters": ["dr1", "dr2"],
                },
            })
        );
    }

    #[test]
    fn drpolicy_needs_two_clusters_and_an_interval() {
        let sel = LabelSelector::default;
        for (clusters, interval) in [
            (vec!["dr1"], "5m"),
            (vec!["dr1", "dr1"], "5m"),
            (vec!["dr1", "dr2", "dr3"], "5m"),
            (vec!["dr1", "dr2"], "5s"),
            (vec!["dr1", "dr2"], "0m"),
            (vec!["dr1", "DR2"], "5m"),
        ] {
            let clusters: Vec<String> = clusters.into_iter().map(String::from).collect();
            assert!(
                drpolicy("p", &clusters, interval, sel(), sel()).is_err(),
                "{clusters:?} {interval}"
            );
        }
    }

    #[test]
    fn protect_builds_ramens_discovered_app_objects() {
        let p = Protect {
            name: "busybox".into(),
            ops_namespace: "ramen-ops".into(),
            namespaces: vec!["busybox-app".into()],
            pvc_selector: crate::selector::parse("appname=busybox").unwrap(),
            kube_object_selector: Some(crate::selector::parse("appname in (busybox)").unwrap()),
            preferred_cluster: "dr1".into(),
            policy: "dr-policy".into(),
            cluster_set: None,
        };
        let pl = serde_json::to_value(placement(&p)).unwrap();
        assert_eq!(
            pl,
            json!({
                "apiVersion": "cluster.open-cluster-management.io/v1beta1",
                "kind": "Placement",
                "metadata": {
                    "name": "busybox", "namespace": "ramen-ops",
                    "annotations": {"cluster.open-cluster-management.io/experimental-scheduling-disable": "true"},
                },
                "spec": {
                    "numberOfClusters": 1,
                    "prioritizerPolicy": {},
                    "spreadPolicy": {},
                    "decisionStrategy": {"groupStrategy": {}},
                },
            })
        );
        let d = serde_json::to_value(drpc(&p).unwrap()).unwrap();
        assert_eq!(
            d,
            json!({
                "apiVersion": "ramendr.openshift.io/v1alpha1",
                "kind": "DRPlacementControl",
                "metadata": {"name": "busybox", "namespace": "ramen-ops"},
                "spec": {
                    "placementRef": {
                        "apiVersion": "cluster.open-cluster-management.io/v1beta1",
                        "kind": "Placement", "name": "busybox", "namespace": "ramen-ops",
                    },
                    "protectedNamespaces": ["busybox-app"],
                    "drPolicyRef": {"apiVersion": "ramendr.openshift.io/v1alpha1", "kind": "DRPolicy", "name": "dr-policy"},
                    "preferredCluster": "dr1",
                    "pvcSelector": {"matchLabels": {"appname": "busybox"}},
                    "kubeObjectProtection": {"kubeObjectSelector": {"matchExpressions": [
                        {"key": "appname", "operator": "In", "values": ["busybox"]}
                    ]}},
                },
            })
        );
        let mut bad = p.clone();
        bad.namespaces.clear();
        assert!(drpc(&bad).is_err());
    }

    #[test]
    fn drcluster_json() {
        assert_eq!(
            serde_json::to_value(drcluster("dr1", "minio-dr1", None).unwrap()).unwrap(),
            json!({
                "apiVersion": "ramendr.openshift.io/v1alpha1", "kind": "DRCluster",
                "metadata": {"name": "dr1"}, "spec": {"s3ProfileName": "minio-dr1"},
            })
        );
        assert!(drcluster("Dr1", "p", None).is_err());
    }
}
