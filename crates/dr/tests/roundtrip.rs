//! Objects shaped as Ramen's Go code marshals them (every non-omitempty field present, zero
//! structs written, `null` for zero times) read into drbridge-dr's types and write back to the
//! same JSON.

use drbridge_dr::types::{DRCluster, DRPlacementControl, DRPolicy, VolumeReplicationGroup};
use serde_json::{Value, json};

fn roundtrip<T: serde::de::DeserializeOwned + serde::Serialize>(v: Value) -> T {
    let typed: T = serde_json::from_value(v.clone()).expect("reads");
    assert_eq!(
        serde_json::to_value(&typed).unwrap(),
        v,
        "writes back unchanged"
    );
    typed
}

#[test]
fn drpc_as_ramen_writes_it() {
    let d: DRPlacementControl = roundtrip(json!({
        "apiVersion": "ramendr.openshift.io/v1alpha1",
        "kind": "DRPlacementControl",
        "metadata": {"name": "busybox", "namespace": "ramen-ops", "generation": 3,
                     "annotations": {"drplacementcontrol.ramendr.openshift.io/last-app-deployment-cluster": "dr2"}},
        "spec": {
            "placementRef": {"apiVersion": "cluster.open-cluster-management.io/v1beta1", "kind": "Placement", "name": "busybox", "namespace": "ramen-ops"},
            "protectedNamespaces": ["busybox-app"],
            "drPolicyRef": {"apiVersion": "ramendr.openshift.io/v1alpha1", "kind": "DRPolicy", "name": "dr-policy"},
            "preferredCluster": "dr1",
            "failoverCluster": "dr2",
            "pvcSelector": {"matchLabels": {"appname": "busybox"}},
            "action": "Failover",
            "kubeObjectProtection": {"captureInterval": "5m0s", "kubeObjectSelector": {"matchExpressions": [{"key": "appname", "operator": "In", "values": ["busybox"]}]}},
        },
        "status": {
            "phase": "FailedOver",
            "observedGeneration": 3,
            "actionStartTime": "2026-11-27T10:00:00Z",
            "actionDuration": "1m12.5s",
            "progression": "Completed",
            "preferredDecision": {"clusterName": "dr1", "clusterNamespace": "dr1"},
            "conditions": [
                {"type": "Available", "status": "True", "observedGeneration": 3, "lastTransitionTime": "2026-11-27T10:01:00Z", "reason": "FailedOver", "message": "Completed"},
                {"type": "PeerReady", "status": "True", "observedGeneration": 3, "lastTransitionTime": "2026-11-27T10:01:12Z", "reason": "Success", "message": "Ready"},
                {"type": "Protected", "status": "True", "observedGeneration": 3, "lastTransitionTime": "2026-11-27T10:01:12Z", "reason": "Protected", "message": "VolumeReplicationGroup (ramen-ops/busybox) on cluster dr2 is protecting required resources and data"},
            ],
            "resourceConditions": {
                "resourceMeta": {"kind": "VolumeReplicationGroup", "name": "busybox", "namespace": "ramen-ops", "generation": 5,
                                 "protectedpvcs": ["busybox-pvc"], "resourceVersion": "1234"},
                "conditions": [
                    {"type": "DataReady", "status": "True", "observedGeneration": 5, "lastTransitionTime": "2026-11-27T10:01:00Z", "reason": "Ready", "message": "PVCs in the VolumeReplicationGroup are ready for use"},
                ],
            },
            "lastUpdateTime": "2026-11-27T10:02:00Z",
            "lastGroupSyncTime": "2026-11-27T10:01:30Z",
            "lastGroupSyncDuration": "0s",
            "lastGroupSyncBytes": 0,
            "lastKubeObjectProtectionTime": "2026-11-27T10:00:30Z",
        },
    }));
    assert_eq!(d.spec.action.unwrap().as_str(), "Failover");
    assert_eq!(
        d.status
            .unwrap()
            .resource_conditions
            .resource_meta
            .protected_pvcs,
        ["busybox-pvc"]
    );

    // A fresh DRPC: Go writes the zero status structs.
    roundtrip::<DRPlacementControl>(json!({
        "apiVersion": "ramendr.openshift.io/v1alpha1", "kind": "DRPlacementControl",
        "metadata": {"name": "a", "namespace": "ramen-ops"},
        "spec": {"placementRef": {}, "drPolicyRef": {}, "pvcSelector": {}},
        "status": {"preferredDecision": {}, "resourceConditions": {"resourceMeta": {"kind": "", "name": "", "namespace": "", "generation": 0}}},
    }));
}

#[test]
fn drpolicy_and_drcluster_as_ramen_writes_them() {
    roundtrip::<DRPolicy>(json!({
        "apiVersion": "ramendr.openshift.io/v1alpha1", "kind": "DRPolicy",
        "metadata": {"name": "dr-policy"},
        "spec": {"schedulingInterval": "1m", "replicationClassSelector": {}, "volumeSnapshotClassSelector": {},
                 "volumeGroupSnapshotClassSelector": {}, "drClusters": ["dr1", "dr2"]},
        "status": {
            "conditions": [{"type": "Validated", "status": "True", "observedGeneration": 1, "lastTransitionTime": "2026-11-27T10:00:00Z", "reason": "Succeeded", "message": "drpolicy validated"}],
            "async": {"peerClasses": [{"replicationID": "rook-ceph-replication-1", "storageID": ["a", "b"], "storageClassName": "rook-ceph-block", "clusterIDs": ["id1", "id2"]}]},
            "sync": {},
        },
    }));
    roundtrip::<DRCluster>(json!({
        "apiVersion": "ramendr.openshift.io/v1alpha1", "kind": "DRCluster",
        "metadata": {"name": "dr1"},
        "spec": {"s3ProfileName": "minio-on-dr1"},
        "status": {"phase": "Available", "conditions": [
            {"type": "Fenced", "status": "False", "observedGeneration": 1, "lastTransitionTime": "2026-11-27T10:00:00Z", "reason": "Clean", "message": "Cluster Clean"},
            {"type": "Clean", "status": "True", "observedGeneration": 1, "lastTransitionTime": "2026-11-27T10:00:00Z", "reason": "Clean", "message": "Cluster Clean"},
            {"type": "Validated", "status": "True", "observedGeneration": 1, "lastTransitionTime": "2026-11-27T10:00:00Z", "reason": "Succeeded", "message": "Validated the cluster"},
        ]},
    }));
}

#[test]
fn vrg_as_ramen_writes_it() {
    let v: VolumeReplicationGroup = roundtrip(json!({
        "apiVersion": "ramendr.openshift.io/v1alpha1", "kind": "VolumeReplicationGroup",
        "metadata": {"name": "busybox", "namespace": "ramen-ops", "generation": 2,
                     "annotations": {"drplacementcontrol.ramendr.openshift.io/destination-cluster": "dr1"}},
        "spec": {
            "pvcSelector": {"matchLabels": {"appname": "busybox"}},
            "replicationState": "primary",
            "s3Profiles": ["minio-on-dr1", "minio-on-dr2"],
            "async": {"replicationClassSelector": {}, "volumeSnapshotClassSelector": {}, "volumeGroupSnapshotClassSelector": {}, "schedulingInterval": "1m"},
            "volSync": {},
            "protectedNamespaces": ["busybox-app"],
            "kubeObjectProtection": {"kubeObjectSelector": {"matchLabels": {"appname": "busybox"}}},
        },
        "status": {
            "state": "Primary",
            "protectedPVCs": [{
                "namespace": "busybox-app", "name": "busybox-pvc",
                "csiProvisioner": "rook-ceph.rbd.csi.ceph.com",
                "storageID": {"id": "sid-dr1"}, "replicationID": {"id": "rid"},
                "storageClassName": "rook-ceph-block",
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}},
                "conditions": [{"type": "DataReady", "status": "True", "observedGeneration": 2, "lastTransitionTime": "2026-11-27T10:00:00Z", "reason": "Ready", "message": "PVC in the VolumeReplicationGroup is ready for use"}],
                "lastSyncTime": "2026-11-27T10:01:00Z",
            }],
            "conditions": [{"type": "ClusterDataProtected", "status": "True", "observedGeneration": 2, "lastTransitionTime": "2026-11-27T10:00:00Z", "reason": "Uploaded", "message": "VRG Kube object protected"}],
            "observedGeneration": 2,
            "lastUpdateTime": null,
            "kubeObjectProtection": {"captureToRecoverFrom": {"number": 1, "startTime": "2026-11-27T10:00:00Z", "endTime": null, "startGeneration": 2}},
            "lastGroupSyncTime": "2026-11-27T10:01:00Z",
        },
    }));
    assert_eq!(v.status.unwrap().protected_pvcs[0].storage_id.id, "sid-dr1");
}
