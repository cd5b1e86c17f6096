//! Names and strings of Ramen's hub API, from `api/v1alpha1` and `internal/controller` of
//! RamenDR/ramen at the commit named in `docs/ramen-ocm-contract.md`.

/// API group of every Ramen kind.
pub const GROUP: &str = "ramendr.openshift.io";
/// API version of every Ramen kind.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` of every Ramen kind.
pub const API_VERSION: &str = "ramendr.openshift.io/v1alpha1";

/// `DRPlacementControl.spec.action` values (`DRAction`).
pub mod action {
    /// Restore the workload on `spec.failoverCluster`, accepting data loss since the last sync.
    pub const FAILOVER: &str = "Failover";
    /// Move the workload to `spec.preferredCluster` after a final sync, without data loss.
    pub const RELOCATE: &str = "Relocate";
}

/// `DRPlacementControl.status.phase` values (`DRState`).
pub mod phase {
    /// Waiting for the user after a hub recovery.
    pub const WAIT_FOR_USER: &str = "WaitForUser";
    /// An action is being prepared.
    pub const INITIATING: &str = "Initiating";
    /// Initial deployment in progress.
    pub const DEPLOYING: &str = "Deploying";
    /// Initial deployment done.
    pub const DEPLOYED: &str = "Deployed";
    /// Failover in progress.
    pub const FAILING_OVER: &str = "FailingOver";
    /// Failover done (cleanup may still run: see the progression).
    pub const FAILED_OVER: &str = "FailedOver";
    /// Relocation in progress.
    pub const RELOCATING: &str = "Relocating";
    /// Relocation done (cleanup may still run: see the progression).
    pub const RELOCATED: &str = "Relocated";
    /// The DRPC is being deleted.
    pub const DELETING: &str = "Deleting";
}

/// `DRPlacementControl.status.progression` values (`ProgressionStatus`).
pub mod progression {
    /// The action (or the initial deployment) is complete, cleanup included.
    pub const COMPLETED: &str = "Completed";
    pub const CREATING_MW: &str = "CreatingMW";
    pub const UPDATING_PL_RULE: &str = "UpdatingPlRule";
    pub const WAIT_FOR_READINESS: &str = "WaitForReadiness";
    pub const CLEANUP_READINESS: &str = "CleanupReadiness";
    /// Note the space: Ramen's value is `Cleaning Up`.
    pub const CLEANING_UP: &str = "Cleaning Up";
    /// Ramen waits for the user to delete the application on the old cluster (discovered apps).
    pub const WAIT_ON_USER_TO_CLEAN_UP: &str = "WaitOnUserToCleanUp";
    pub const CHECKING_FAILOVER_PREREQUISITES: &str = "CheckingFailoverPrerequisites";
    pub const FAILING_OVER_TO_CLUSTER: &str = "FailingOverToCluster";
    pub const WAIT_FOR_FENCING: &str = "WaitForFencing";
    pub const WAIT_FOR_STORAGE_MAINTENANCE_ACTIVATION: &str = "WaitForStorageMaintenanceActivation";
    pub const PREPARING_FINAL_SYNC: &str = "PreparingFinalSync";
    pub const CLEARING_PLACEMENT: &str = "ClearingPlacement";
    pub const RUNNING_FINAL_SYNC: &str = "RunningFinalSync";
    pub const FINAL_SYNC_COMPLETE: &str = "FinalSyncComplete";
    pub const ENSURING_VOLUMES_ARE_SECONDARY: &str = "EnsuringVolumesAreSecondary";
    pub const WAIT_ON_GLOBAL_ACTION: &str = "WaitOnGlobalAction";
    pub const WAITING_FOR_RESOURCE_RESTORE: &str = "WaitingForResourceRestore";
    pub const UPDATED_PLACEMENT: &str = "UpdatedPlacement";
    pub const ENSURING_VOLSYNC_SETUP: &str = "EnsuringVolSyncSetup";
    pub const SETTING_UP_VOLSYNC_DEST: &str = "SettingUpVolSyncDest";
    pub const DELETING: &str = "Deleting";
    pub const DELETED: &str = "Deleted";
    /// Ramen paused the DRPC and needs the user (after a hub recovery).
    pub const PAUSED: &str = "Paused";
    pub const TESTING_FAILOVER: &str = "TestingFailover";
}

/// Condition types.
pub mod condition {
    /// DRPC: the cluster in `status.preferredDecision` is ready for the workload.
    pub const AVAILABLE: &str = "Available";
    /// DRPC: a peer cluster is ready for failover or relocate.
    pub const PEER_READY: &str = "PeerReady";
    /// DRPC: the workload is protected on the cluster it should run on.
    pub const PROTECTED: &str = "Protected";
    /// DRPC: all DRPCs of a global VGR label agree on the action.
    pub const GLOBAL_ACTION: &str = "GlobalAction";
    /// DRPolicy and DRCluster: validation result.
    pub const VALIDATED: &str = "Validated";
    /// DRCluster: fencing cleanup state (Metro DR).
    pub const CLEAN: &str = "Clean";
    /// DRCluster: fenced (Metro DR).
    pub const FENCED: &str = "Fenced";

    /// VRG: PV data ready.
    pub const DATA_READY: &str = "DataReady";
    /// VRG: PV data in sync with the peer.
    pub const DATA_PROTECTED: &str = "DataProtected";
    /// VRG: PV/PVC cluster data restored from S3.
    pub const CLUSTER_DATA_READY: &str = "ClusterDataReady";
    /// VRG: PV/PVC cluster data uploaded to S3 (and kube objects captured).
    pub const CLUSTER_DATA_PROTECTED: &str = "ClusterDataProtected";
    /// VRG: kube objects restored.
    pub const KUBE_OBJECTS_READY: &str = "KubeObjectsReady";
    /// VRG: no conflict between the clusters' data.
    pub const NO_CLUSTER_DATA_CONFLICT: &str = "NoClusterDataConflict";
}

/// Condition reasons Ramen sets that the CLI explains.
pub mod reason {
    // DRPC Available / PeerReady.
    pub const PROGRESSING: &str = "Progressing";
    pub const CLEANING: &str = "Cleaning";
    pub const SUCCESS: &str = "Success";
    pub const NOT_STARTED: &str = "NotStarted";
    pub const PAUSED: &str = "Paused";
    // DRPC Protected.
    pub const PROTECTED: &str = "Protected";
    pub const ERROR: &str = "Error";
    pub const UNKNOWN: &str = "Unknown";
    // DRPolicy Validated (`drpolicy_controller.go`).
    pub const SUCCEEDED: &str = "Succeeded";
    pub const VALIDATION_FAILED: &str = "ValidationFailed";
    pub const DR_CLUSTER_NOT_FOUND: &str = "DRClusterNotFound";
    pub const DR_CLUSTERS_UNAVAILABLE: &str = "DRClustersUnavailable";
    pub const DR_POLICY_CONFLICT_FOUND: &str = "DRPolicyConflictFound";
    pub const DR_CLUSTER_DETAILS_FAILED: &str = "drClusterDetailsFailed";
    // DRCluster Validated (`drcluster_controller.go`).
    pub const INITIALIZING: &str = "Initializing";
    pub const CONFIG_MAP_GET_FAILED: &str = "ConfigMapGetFailed";
    pub const FINALIZER_ADD_FAILED: &str = "FinalizerAddFailed";
    pub const DR_CLUSTERS_DEPLOY_FAILED: &str = "DrClustersDeployFailed";
    pub const DR_CLUSTERS_DEPLOY_STATUS_CHECK_FAILED: &str = "DrClustersDeployStatusCheckFailed";
    pub const DR_CLUSTER_CONFIG_IN_PROGRESS: &str = "DRClusterConfigInProgress";
    pub const S3_CONNECTION_FAILED: &str = "s3ConnectionFailed";
    pub const S3_BUCKET_NOT_FOUND: &str = "s3BucketNotFound";
    pub const S3_LIST_FAILED: &str = "s3ListFailed";
}

/// `VolumeReplicationGroup.status.state` values.
pub mod vrg_state {
    pub const PRIMARY: &str = "Primary";
    pub const SECONDARY: &str = "Secondary";
    pub const UNKNOWN: &str = "Unknown";
}

/// `VolumeReplicationGroup.spec.replicationState` values.
pub mod replication_state {
    pub const PRIMARY: &str = "primary";
    pub const SECONDARY: &str = "secondary";
}

/// `DRCluster.status.phase` values.
pub mod drcluster_phase {
    pub const AVAILABLE: &str = "Available";
    pub const STARTING: &str = "Starting";
    pub const FENCING: &str = "Fencing";
    pub const FENCED: &str = "Fenced";
    pub const UNFENCING: &str = "Unfencing";
    pub const UNFENCED: &str = "Unfenced";
}

/// Ramen's operator configuration (docs/ramen-contract.md, "The configuration map").
pub mod config {
    /// The hub operator's ConfigMap (in the operator namespace).
    pub const HUB_CONFIGMAP: &str = "ramen-hub-operator-config";
    /// The DR-cluster operator's ConfigMap on each managed cluster.
    pub const DR_CLUSTER_CONFIGMAP: &str = "ramen-dr-cluster-operator-config";
    /// The data key holding the RamenConfig YAML.
    pub const KEY: &str = "ramen_manager_config.yaml";
    /// Namespace Ramen's own manifests use for the operators (`POD_NAMESPACE`).
    pub const DEFAULT_OPERATOR_NAMESPACE: &str = "ramen-system";
    /// Default `ramenOpsNamespace`: discovered-app DRPCs, Placements and VRGs live here.
    pub const DEFAULT_OPS_NAMESPACE: &str = "ramen-ops";
    /// Default Velero namespace on managed clusters.
    pub const DEFAULT_VELERO_NAMESPACE: &str = "velero";
    /// `ramenControllerType` of the hub operator.
    pub const CONTROLLER_TYPE_HUB: &str = "dr-hub";
    /// `ramenControllerType` of the DR-cluster operator.
    pub const CONTROLLER_TYPE_DR_CLUSTER: &str = "dr-cluster";
    /// S3 secret keys.
    pub const AWS_ACCESS_KEY_ID: &str = "AWS_ACCESS_KEY_ID";
    pub const AWS_SECRET_ACCESS_KEY: &str = "AWS_SECRET_ACCESS_KEY";
    /// Key of the Velero-format secret (`VeleroSecretKeyNameDefault`).
    pub const VELERO_SECRET_KEY: &str = "ramengenerated";
}

/// DRPC annotation: the cluster of the last application deployment.
pub const LAST_APP_DEPLOYMENT_CLUSTER_ANNOTATION: &str =
    "drplacementcontrol.ramendr.openshift.io/last-app-deployment-cluster";

/// Ramen's view of a VRG: `<drpc>-<vrgNamespace>-vrg-mcv` in the cluster's hub namespace.
pub fn vrg_view_name(drpc: &str, vrg_namespace: &str) -> String {
    drbridge_api::ramen::managed_cluster_view_name(drpc, vrg_namespace, "vrg")
}

/// The Velero-format copy of an S3 secret (`GenerateVeleroSecretName`).
pub fn velero_secret_name(s3_secret: &str) -> String {
    format!("v{s3_secret}")
}
