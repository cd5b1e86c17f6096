//! csi-addons' replication API (`replication.storage.openshift.io/v1alpha1`) as Ramen sees it:
//! the Go types of `github.com/csi-addons/kubernetes-csi-addons/api/replication.storage/v1alpha1`
//! at the version Ramen's go.mod pins (v0.14.1-0.20260528060322-2ed0ef956bd4),
//! `volumereplication_types.go` and `volumereplicationclass_types.go`. Field names, JSON
//! omission and validations follow those types; the CRDs in `crds/` are generated from these.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::TypedLocalObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::{Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// API group of the replication kinds.
pub const GROUP: &str = "replication.storage.openshift.io";

/// Condition types (csi-addons `ConditionCompleted` …).
pub mod condition {
    pub const COMPLETED: &str = "Completed";
    pub const DEGRADED: &str = "Degraded";
    pub const RESYNCING: &str = "Resyncing";
    pub const VALIDATED: &str = "Validated";
    pub const REPLICATING: &str = "Replicating";
    /// Never set by the simulator: Ramen would then wait for destination info.
    pub const DESTINATION_INFO_AVAILABLE: &str = "DestinationInfoAvailable";
}

/// Condition reasons (csi-addons `Promoted`, `Demoted` …).
pub mod reason {
    pub const PROMOTED: &str = "Promoted";
    pub const DEMOTED: &str = "Demoted";
    pub const FAILED_TO_PROMOTE: &str = "FailedToPromote";
    pub const FAILED_TO_DEMOTE: &str = "FailedToDemote";
    pub const ERROR: &str = "Error";
    pub const VOLUME_DEGRADED: &str = "VolumeDegraded";
    pub const HEALTHY: &str = "Healthy";
    pub const RESYNC_TRIGGERED: &str = "ResyncTriggered";
    pub const FAILED_TO_RESYNC: &str = "FailedToResync";
    pub const NOT_RESYNCING: &str = "NotResyncing";
    pub const PREREQUISITE_MET: &str = "PrerequisiteMet";
    pub const PREREQUISITE_NOT_MET: &str = "PrerequisiteNotMet";
    pub const REPLICATING: &str = "Replicating";
}

/// `spec.replicationState` values.
pub mod desired {
    pub const PRIMARY: &str = "primary";
    pub const SECONDARY: &str = "secondary";
    pub const RESYNC: &str = "resync";
}

/// `status.state` values.
pub mod state {
    pub const PRIMARY: &str = "Primary";
    pub const SECONDARY: &str = "Secondary";
    pub const UNKNOWN: &str = "Unknown";
}

/// The VolumeReplicationClass parameter with the replication schedule (csi-addons reads it in
/// `getInfoReconcileInterval`, Ramen matches it against the DRPolicy in
/// `selectVolumeReplicationClass`).
pub const SCHEDULING_INTERVAL_PARAM: &str = "schedulingInterval";

/// The only data source kind the simulator replicates (csi-addons `pvcDataSource`).
pub const PVC_DATA_SOURCE: &str = "PersistentVolumeClaim";

/// VolumeReplicationSpec defines the desired state of VolumeReplication.
#[derive(
    CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema,
)]
#[kube(
    group = "replication.storage.openshift.io",
    version = "v1alpha1",
    kind = "VolumeReplication",
    namespaced,
    status = "VolumeReplicationStatus",
    shortname = "vr",
    derive = "PartialEq",
    derive = "Default",
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"volumeReplicationClass","type":"string","jsonPath":".spec.volumeReplicationClass"}"#,
    printcolumn = r#"{"name":"SourceKind","type":"string","jsonPath":".spec.dataSource.kind"}"#,
    printcolumn = r#"{"name":"SourceName","type":"string","jsonPath":".spec.dataSource.name"}"#,
    printcolumn = r#"{"name":"desiredState","type":"string","jsonPath":".spec.replicationState"}"#,
    printcolumn = r#"{"name":"currentState","type":"string","jsonPath":".status.state"}"#,
    doc = "VolumeReplication is the Schema for the volumereplications API."
)]
#[serde(rename_all = "camelCase")]
pub struct VolumeReplicationSpec {
    /// VolumeReplicationClass is the VolumeReplicationClass name for this VolumeReplication resource
    #[schemars(schema_with = "immutable_string_vrc")]
    pub volume_replication_class: String,
    /// ReplicationState represents the replication operation to be performed on the volume.
    /// Supported operations are "primary", "secondary" and "resync"
    #[schemars(schema_with = "replication_state")]
    pub replication_state: String,
    /// DataSource represents the object associated with the volume
    #[schemars(schema_with = "data_source")]
    pub data_source: TypedLocalObjectReference,
    /// AutoResync represents the volume to be auto resynced when
    /// ReplicationState is "secondary"
    #[serde(default)]
    #[schemars(extend("default" = false))]
    pub auto_resync: bool,
    /// replicationHandle represents an existing (but new) replication id
    #[serde(default)]
    #[schemars(skip_serializing_if = "drbridge_api::schema::no_default")]
    pub replication_handle: String,
}

/// VolumeReplicationStatus defines the observed state of VolumeReplication.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeReplicationStatus {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub state: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Conditions are the list of conditions and their status.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "drbridge_api::schema::null_as_default"
    )]
    #[schemars(schema_with = "drbridge_api::schema::conditions_list")]
    pub conditions: Vec<Condition>,
    /// observedGeneration is the last generation change the operator has dealt with
    #[serde(default, skip_serializing_if = "drbridge_api::schema::is_zero_i64")]
    pub observed_generation: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_start_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_completion_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_bytes: Option<i64>,
    /// A Go `metav1.Duration` (`"1m0s"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_duration: Option<String>,
    /// DestinationVolumeID is the volume ID on the destination/target side.
    #[serde(
        rename = "destinationVolumeID",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub destination_volume_id: String,
}

/// VolumeReplicationClassSpec specifies parameters that an underlying storage system uses
/// when creating a volume replica.
#[derive(
    CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema,
)]
#[kube(
    group = "replication.storage.openshift.io",
    version = "v1alpha1",
    kind = "VolumeReplicationClass",
    status = "VolumeReplicationClassStatus",
    shortname = "vrc",
    derive = "PartialEq",
    derive = "Default",
    printcolumn = r#"{"name":"provisioner","type":"string","jsonPath":".spec.provisioner"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    doc = "VolumeReplicationClass is the Schema for the volumereplicationclasses API."
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.parameters) == has(oldSelf.parameters)", "message": "parameters are immutable"}
]))]
pub struct VolumeReplicationClassSpec {
    /// Provisioner is the name of storage provisioner
    #[schemars(schema_with = "immutable_string_provisioner")]
    pub provisioner: String,
    /// Parameters is a key-value map with storage provisioner specific configurations for
    /// creating volume replicas
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "immutable_parameters")]
    pub parameters: BTreeMap<String, String>,
}

/// VolumeReplicationClassStatus defines the observed state of VolumeReplicationClass.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
pub struct VolumeReplicationClassStatus {}

/// `self == oldSelf` with csi-addons' message for the field.
fn immutable(message: &str) -> serde_json::Value {
    json!([{"rule": "self == oldSelf", "message": message}])
}

fn immutable_string_vrc(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "x-kubernetes-validations": immutable("volumeReplicationClass is immutable"),
    })
}

fn immutable_string_provisioner(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "x-kubernetes-validations": immutable("provisioner is immutable"),
    })
}

fn immutable_parameters(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "additionalProperties": {"type": "string"},
        "x-kubernetes-validations": immutable("parameters are immutable"),
    })
}

fn replication_state(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "enum": [desired::PRIMARY, desired::SECONDARY, desired::RESYNC],
    })
}

fn data_source(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "required": ["kind", "name"],
        "properties": {
            "apiGroup": {"type": "string"},
            "kind": {"type": "string"},
            "name": {"type": "string"},
        },
        "x-kubernetes-map-type": "atomic",
        "x-kubernetes-validations": immutable("dataSource is immutable"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A VolumeReplication as Ramen creates it (`createVR` in `vrg_volrep.go`, Go's JSON:
    /// empty strings and false written) and as csi-addons leaves its status.
    #[test]
    fn reads_what_ramen_and_csi_addons_write() {
        let vr: VolumeReplication = serde_json::from_value(json!({
            "apiVersion": "replication.storage.openshift.io/v1alpha1",
            "kind": "VolumeReplication",
            "metadata": {"name": "busybox-pvc", "namespace": "app", "generation": 2,
                "labels": {"ramendr.openshift.io/created-by-ramen": "true"}},
            "spec": {
                "volumeReplicationClass": "vrc-1m",
                "replicationState": "secondary",
                "dataSource": {"apiGroup": "", "kind": "PersistentVolumeClaim", "name": "busybox-pvc"},
                "autoResync": true,
                "replicationHandle": ""
            },
            "status": {
                "state": "Primary",
                "conditions": [{"type": "Completed", "status": "True", "reason": "Promoted",
                    "message": "volume is promoted to primary and replicating to secondary",
                    "observedGeneration": 1, "lastTransitionTime": "2026-12-01T10:00:00Z"}],
                "observedGeneration": 1,
                "lastSyncTime": "2026-12-01T10:01:00Z",
                "lastSyncDuration": "1m0s",
                "lastSyncBytes": 1024
            }
        }))
        .unwrap();
        assert_eq!(vr.spec.replication_state, desired::SECONDARY);
        assert!(vr.spec.auto_resync);
        assert_eq!(vr.spec.data_source.kind, PVC_DATA_SOURCE);
        let status = vr.status.unwrap();
        assert_eq!(status.state, state::PRIMARY);
        assert_eq!(status.last_sync_duration.as_deref(), Some("1m0s"));
        assert_eq!(status.last_sync_bytes, Some(1024));
        assert_eq!(status.conditions[0].type_, condition::COMPLETED);

        // Go writes `conditions: null` for a nil slice in some clients.
        let s: VolumeReplicationStatus =
            serde_json::from_value(json!({"conditions": null})).unwrap();
        assert!(s.conditions.is_empty());
        // And leaves out what is empty.
        assert_eq!(serde_json::to_value(&s).unwrap(), json!({}));
    }

    #[test]
    fn reads_a_class_as_the_test_bed_writes_it() {
        let c: VolumeReplicationClass = serde_json::from_value(json!({
            "apiVersion": "replication.storage.openshift.io/v1alpha1",
            "kind": "VolumeReplicationClass",
            "metadata": {"name": "vrc-1m", "labels": {"ramendr.openshift.io/storageid": "sim-dr1"}},
            "spec": {"provisioner": "sim.storage.drbridge.io",
                "parameters": {"schedulingInterval": "1m"}}
        }))
        .unwrap();
        assert_eq!(c.spec.parameters[SCHEDULING_INTERVAL_PARAM], "1m");
    }
}
