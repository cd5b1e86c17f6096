//! What the test bed installs: CRDs read from Ramen's source tree (never
//! copied into this repository) and from Velero, Ramen's operator
//! configuration, the simulated storage's classes, and the KWOK node.

use std::path::{Path, PathBuf};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::{Value, json};

use crate::Error;

/// Ramen's hub CRDs (`config/hub/crd`).
pub const RAMEN_HUB_CRDS: &[&str] = &[
    "config/crd/bases/ramendr.openshift.io_drpolicies.yaml",
    "config/crd/bases/ramendr.openshift.io_drplacementcontrols.yaml",
    "config/crd/bases/ramendr.openshift.io_drclusters.yaml",
];

/// Ramen's dr-cluster CRDs (`config/dr-cluster/crd`) and every third-party
/// kind the dr-cluster operator watches or reads (from Ramen's `hack/test`):
/// they must exist before it starts, since controller-runtime fails its
/// watches otherwise. Velero's come from Velero itself, VolumeReplication and
/// VolumeReplicationClass from the storage simulator (csi-addons' current
/// schema), the CSI snapshot kinds from [`SNAPSHOTTER_MODULE`].
pub const RAMEN_DR_CLUSTER_CRDS: &[&str] = &[
    "config/crd/bases/ramendr.openshift.io_volumereplicationgroups.yaml",
    "config/crd/bases/ramendr.openshift.io_protectedvolumereplicationgrouplists.yaml",
    "config/crd/bases/ramendr.openshift.io_maintenancemodes.yaml",
    "config/crd/bases/ramendr.openshift.io_drclusterconfigs.yaml",
    "config/crd/bases/ramendr.openshift.io_replicationgroupsources.yaml",
    "config/crd/bases/ramendr.openshift.io_replicationgroupdestinations.yaml",
    "hack/test/replication.storage.openshift.io_volumegroupreplications.yaml",
    "hack/test/replication.storage.openshift.io_volumegroupreplicationclasses.yaml",
    "hack/test/replication.storage.openshift.io_volumegroupreplicationcontents.yaml",
    "hack/test/networkfenceclasses.csiaddons.openshift.io.yaml",
    "hack/test/csiaddonsnodes.csiaddons.openshift.io.yaml",
    "hack/test/groupsnapshot.storage.openshift.io_volumegroupsnapshotclasses.yaml",
    "hack/test/groupsnapshot.storage.openshift.io_volumegroupsnapshotcontents.yaml",
    "hack/test/groupsnapshot.storage.openshift.io_volumegroupsnapshots.yaml",
    "hack/test/network-attachment-definitions.k8s.cni.cncf.io.yaml",
    "hack/test/recipes.ramendr.openshift.io.yaml",
    "hack/test/volsync.backube_replicationdestinations.yaml",
    "hack/test/volsync.backube_replicationsources.yaml",
];

/// The CSI snapshot CRDs at the version Ramen's go.mod selects, from the
/// external-snapshotter client module (Ramen's hack/test has only v1beta1 of
/// the group snapshot kinds; the dr-cluster operator watches v1).
pub const SNAPSHOTTER_MODULE: &str = "github.com/kubernetes-csi/external-snapshotter/client/v8";
pub const SNAPSHOTTER_CRDS: &[&str] = &[
    "config/crd/snapshot.storage.k8s.io_volumesnapshotclasses.yaml",
    "config/crd/snapshot.storage.k8s.io_volumesnapshotcontents.yaml",
    "config/crd/snapshot.storage.k8s.io_volumesnapshots.yaml",
    "config/crd/groupsnapshot.storage.k8s.io_volumegroupsnapshotclasses.yaml",
    "config/crd/groupsnapshot.storage.k8s.io_volumegroupsnapshotcontents.yaml",
    "config/crd/groupsnapshot.storage.k8s.io_volumegroupsnapshots.yaml",
];

/// Reads CRDs from YAML files (one or more documents each) under `root`.
pub fn read_crds(root: &Path, files: &[&str]) -> Result<Vec<CustomResourceDefinition>, Error> {
    let mut out = Vec::new();
    for f in files {
        let path = root.join(f);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        out.extend(parse_crds(&text, &path)?);
    }
    Ok(out)
}

/// Every CustomResourceDefinition in a multi-document YAML text.
pub fn parse_crds(text: &str, origin: &Path) -> Result<Vec<CustomResourceDefinition>, Error> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| Error::Manifest {
        path: origin.to_path_buf(),
        why: e.to_string(),
    })?;
    docs.into_iter()
        .filter(|d| d.get("kind").and_then(Value::as_str) == Some("CustomResourceDefinition"))
        .map(|d| {
            serde_json::from_value(d).map_err(|e| Error::Manifest {
                path: origin.to_path_buf(),
                why: e.to_string(),
            })
        })
        .collect()
}

/// Names used across the bed.
pub mod names {
    pub const RAMEN_NAMESPACE: &str = "ramen-system";
    pub const RAMEN_OPS_NAMESPACE: &str = "ramen-ops";
    pub const VELERO_NAMESPACE: &str = "velero";
    pub const HUB_CONFIGMAP: &str = "ramen-hub-operator-config";
    pub const DR_CLUSTER_CONFIGMAP: &str = "ramen-dr-cluster-operator-config";
    pub const CONFIG_KEY: &str = "ramen_manager_config.yaml";
    pub const CLUSTER_SET: &str = "default";
    pub const DR_POLICY: &str = "dr-policy-1m";
    pub const SCHEDULING_INTERVAL: &str = "1m";
    /// The simulated CSI driver: every object that names it says "simulator".
    pub const PROVISIONER: &str = "storage-simulator.drbridge.io";
    pub const STORAGE_CLASS: &str = "simulator-rbd";
    pub const REPLICATION_CLASS: &str = "simulator-rbd-1m";
    pub const REPLICATION_ID: &str = "simulator-replication-1";
    pub const STORAGE_ID_LABEL: &str = "ramendr.openshift.io/storageid";
    pub const REPLICATION_ID_LABEL: &str = "ramendr.openshift.io/replicationid";
    pub const KWOK_NODE: &str = "kwok-node-0";
    /// The region versitygw signs for; every profile's s3Region must match.
    pub const S3_REGION: &str = "us-east-1";
}

use names::*;

/// Each managed cluster's storage is its own system: distinct storage ids
/// make Ramen see the peers as asynchronously replicated (equal ids would look
/// like one synchronous system).
pub fn storage_id(cluster: &str) -> String {
    format!("simulator-{cluster}")
}

/// S3 profile and bucket of a managed cluster.
pub fn s3_profile(cluster: &str) -> String {
    format!("s3-{cluster}")
}

pub fn s3_bucket(cluster: &str) -> String {
    format!("ramen-{cluster}")
}

/// The RamenConfig a process starts with. `drbridge dr s3-profile add` adds
/// the S3 profiles to the same document later; Ramen merges it over its
/// defaults.
pub fn ramen_config(controller_type: &str, health_port: u16) -> String {
    format!(
        "apiVersion: ramendr.openshift.io/v1alpha1\n\
         kind: RamenConfig\n\
         ramenControllerType: {controller_type}\n\
         health:\n  healthProbeBindAddress: 127.0.0.1:{health_port}\n\
         metrics:\n  bindAddress: \"0\"\n\
         leaderElection:\n  leaderElect: false\n\
         drClusterOperator:\n  deploymentAutomationEnabled: false\n  s3SecretDistributionEnabled: false\n\
         volSync:\n  disabled: true\n\
         kubeObjectProtection:\n  veleroNamespaceName: {VELERO_NAMESPACE}\n\
         ramenOpsNamespace: {RAMEN_OPS_NAMESPACE}\n"
    )
}

pub fn configmap(name: &str, yaml: String) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": RAMEN_NAMESPACE},
        "data": {CONFIG_KEY: yaml},
    })
}

pub fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

pub fn managed_cluster_set() -> Value {
    json!({
        "apiVersion": "cluster.open-cluster-management.io/v1beta2",
        "kind": "ManagedClusterSet",
        "metadata": {"name": CLUSTER_SET},
        "spec": {"clusterSelector": {"selectorType": "ExclusiveClusterSetLabel"}},
    })
}

fn storage_labels(cluster: &str) -> Value {
    json!({
        STORAGE_ID_LABEL: storage_id(cluster),
        REPLICATION_ID_LABEL: REPLICATION_ID,
    })
}

pub fn storage_class(cluster: &str) -> Value {
    json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": STORAGE_CLASS, "labels": storage_labels(cluster)},
        "provisioner": PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "Immediate",
    })
}

pub fn volume_replication_class(cluster: &str) -> Value {
    json!({
        "apiVersion": "replication.storage.openshift.io/v1alpha1",
        "kind": "VolumeReplicationClass",
        "metadata": {"name": REPLICATION_CLASS, "labels": storage_labels(cluster)},
        "spec": {
            "provisioner": PROVISIONER,
            "parameters": {"schedulingInterval": SCHEDULING_INTERVAL},
        },
    })
}

/// The `velero` Deployment a Velero install has. Velero runs out of cluster
/// here, but its pod-volume restore action looks this Deployment up (for the
/// restore helper's image) and fails every restore with a pod without it. No
/// replicas: nothing runs from it.
pub fn velero_deployment() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {
            "name": "velero", "namespace": VELERO_NAMESPACE,
            "labels": {"component": "velero", "drbridge.io/testbed": "out-of-cluster-velero"},
            "annotations": {"drbridge.io/testbed": "Velero runs as a process beside the cluster; this Deployment only describes it"},
        },
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"deploy": "velero"}},
            "template": {
                "metadata": {"labels": {"deploy": "velero"}},
                "spec": {"containers": [{
                    "name": "velero",
                    "image": format!("velero/velero:{}", crate::build::VELERO_VERSION),
                }]},
            },
        },
    })
}

/// A node KWOK manages; allocatable is large so the scheduler never refuses.
pub fn kwok_node() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {
            "name": KWOK_NODE,
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/hostname": KWOK_NODE,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
            },
        },
        "status": {
            "allocatable": {"cpu": "32", "memory": "256Gi", "pods": "110"},
            "capacity": {"cpu": "32", "memory": "256Gi", "pods": "110"},
        },
    })
}

/// The Velero CRDs, as `velero install --crds-only --dry-run -o yaml` prints them.
pub fn velero_crds(velero: &Path) -> Result<Vec<CustomResourceDefinition>, Error> {
    let out = std::process::Command::new(velero)
        .args(["install", "--crds-only", "--dry-run", "-o", "yaml"])
        .output()
        .map_err(|e| Error::io(velero, e))?;
    if !out.status.success() {
        return Err(Error::Command {
            command: format!("{} install --crds-only --dry-run -o yaml", velero.display()),
            output: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    let text = String::from_utf8_lossy(&out.stdout);
    // The output is a v1 List, not a YAML stream.
    let list: Value = serde_saphyr::from_str(&text).map_err(|e| Error::Manifest {
        path: PathBuf::from("velero install --crds-only"),
        why: e.to_string(),
    })?;
    let items = match list.get("items") {
        Some(Value::Array(items)) => items.clone(),
        _ => vec![list],
    };
    items
        .into_iter()
        .filter(|d| d.get("kind").and_then(Value::as_str) == Some("CustomResourceDefinition"))
        .map(|mut d| {
            // Dry-run output carries `status` and `creationTimestamp: null`,
            // which server-side apply refuses.
            if let Some(o) = d.as_object_mut() {
                o.remove("status");
            }
            serde_json::from_value(d).map_err(|e| Error::Manifest {
                path: PathBuf::from("velero install --crds-only"),
                why: e.to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_is_a_ramen_config_with_distinct_probe() {
        let y = ramen_config("dr-cluster", 18081);
        let v: Value = serde_saphyr::from_str(&y).unwrap();
        assert_eq!(v["kind"], "RamenConfig");
        assert_eq!(v["health"]["healthProbeBindAddress"], "127.0.0.1:18081");
        assert_eq!(v["metrics"]["bindAddress"], "0");
        assert_eq!(v["leaderElection"]["leaderElect"], false);
        assert_eq!(v["volSync"]["disabled"], true);
        assert_eq!(v["drClusterOperator"]["deploymentAutomationEnabled"], false);
    }

    #[test]
    fn storage_ids_differ_per_cluster_and_classes_agree() {
        let a = storage_class("dr1");
        let b = storage_class("dr2");
        assert_ne!(
            a["metadata"]["labels"][STORAGE_ID_LABEL],
            b["metadata"]["labels"][STORAGE_ID_LABEL]
        );
        let vrc = volume_replication_class("dr1");
        assert_eq!(vrc["metadata"]["labels"], a["metadata"]["labels"]);
        assert_eq!(vrc["spec"]["provisioner"], a["provisioner"]);
        assert_eq!(
            vrc["spec"]["parameters"]["schedulingInterval"],
            SCHEDULING_INTERVAL
        );
    }

    #[test]
    fn parses_multi_document_crds() {
        let text = "---\napiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: as.x.io\nspec:\n  group: x.io\n  names: {kind: A, plural: as}\n  scope: Namespaced\n  versions: []\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n";
        let crds = parse_crds(text, Path::new("t.yaml")).unwrap();
        assert_eq!(crds.len(), 1);
        assert_eq!(crds[0].metadata.name.as_deref(), Some("as.x.io"));
    }
}
