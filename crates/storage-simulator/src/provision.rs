//! PV lifecycle without a cluster: which PVCs get a volume, the PV for them, and which PVs
//! go away. It does what CSI's external-provisioner does for a driver: a PV pre-bound to the
//! claim (the controller-manager's PV controller completes the binding), and deletion of
//! Released volumes whose reclaim policy is Delete.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    CSIPersistentVolumeSource, ObjectReference, PersistentVolume, PersistentVolumeClaim,
    PersistentVolumeSpec,
};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::ObjectMeta;

/// The annotation the PV controller and external-provisioner put on a PV they provision.
pub const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
/// Set by the PV controller on a PVC it wants an external provisioner to serve.
pub const STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";
/// The deprecated form of [`STORAGE_PROVISIONER`], still written by the PV controller.
pub const STORAGE_PROVISIONER_BETA: &str = "volume.beta.kubernetes.io/storage-provisioner";
/// Set by the scheduler on a PVC of a `WaitForFirstConsumer` class.
pub const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// Marks what the simulator made, so nobody takes it for a real volume.
pub const SIMULATED_LABEL: &str = "storage.drbridge.io/simulated";
/// StorageClass parameter with the filesystem type (external-provisioner's prefix).
const FSTYPE_PARAM: &str = "csi.storage.k8s.io/fstype";
/// Parameters with this prefix are for the provisioner, not the volume.
const PROVISIONER_PARAM_PREFIX: &str = "csi.storage.k8s.io/";

/// What to do with a PVC.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// Create this PV for it.
    Provision(Box<PersistentVolume>),
    /// Nothing to do, and why (for a debug log).
    Skip(&'static str),
    /// The PVC asks for something the simulated storage cannot give.
    Refuse(String),
}

/// Decides what a PVC needs, given its StorageClass (if it has one and it exists).
pub fn claim(
    pvc: &PersistentVolumeClaim,
    class: Option<&StorageClass>,
    provisioner: &str,
) -> Claim {
    let Some(class) = class else {
        return Claim::Skip("no StorageClass");
    };
    if class.provisioner != provisioner {
        return Claim::Skip("another provisioner's class");
    }
    let Some(spec) = pvc.spec.as_ref() else {
        return Claim::Skip("no spec");
    };
    if spec.volume_name.as_deref().is_some_and(|v| !v.is_empty()) {
        // Bound, or pre-bound to a PV someone else made (Ramen restores PV and PVC so).
        return Claim::Skip("has a volume");
    }
    if pvc.metadata.deletion_timestamp.is_some() {
        return Claim::Skip("being deleted");
    }
    let annotations = pvc.metadata.annotations.as_ref();
    let asked =
        |key: &str| annotations.and_then(|a| a.get(key)).map(String::as_str) == Some(provisioner);
    // As external-provisioner: wait until the PV controller found no existing PV to bind and
    // handed the claim to this provisioner; otherwise a PV could be made for a claim the
    // controller is about to bind elsewhere.
    if !asked(STORAGE_PROVISIONER) && !asked(STORAGE_PROVISIONER_BETA) {
        return Claim::Skip("not yet handed to this provisioner by the PV controller");
    }
    let wait_for_consumer = class.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer");
    if wait_for_consumer && annotations.and_then(|a| a.get(SELECTED_NODE)).is_none() {
        return Claim::Skip("WaitForFirstConsumer: no node selected yet");
    }
    let Some(uid) = pvc.metadata.uid.as_deref() else {
        return Claim::Skip("no uid");
    };
    let Some(request) = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
    else {
        return Claim::Refuse("the claim requests no storage size".into());
    };
    if spec.access_modes.as_ref().is_none_or(Vec::is_empty) {
        return Claim::Refuse("the claim names no access mode".into());
    }
    let volume_mode = spec
        .volume_mode
        .clone()
        .unwrap_or_else(|| "Filesystem".into());
    let parameters = class.parameters.clone().unwrap_or_default();
    let fs_type = (volume_mode == "Filesystem")
        .then(|| parameters.get(FSTYPE_PARAM).cloned())
        .flatten();
    let attributes: BTreeMap<String, String> = parameters
        .into_iter()
        .filter(|(k, _)| !k.starts_with(PROVISIONER_PARAM_PREFIX))
        .collect();
    let pv = PersistentVolume {
        metadata: ObjectMeta {
            name: Some(pv_name(uid)),
            annotations: Some(BTreeMap::from([(
                PROVISIONED_BY.to_owned(),
                provisioner.to_owned(),
            )])),
            labels: Some(BTreeMap::from([(
                SIMULATED_LABEL.to_owned(),
                "true".to_owned(),
            )])),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            access_modes: spec.access_modes.clone(),
            capacity: Some(BTreeMap::from([("storage".to_owned(), request.clone())])),
            claim_ref: Some(ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("PersistentVolumeClaim".into()),
                namespace: pvc.metadata.namespace.clone(),
                name: pvc.metadata.name.clone(),
                uid: Some(uid.to_owned()),
                resource_version: pvc.metadata.resource_version.clone(),
                field_path: None,
            }),
            csi: Some(CSIPersistentVolumeSource {
                driver: provisioner.to_owned(),
                volume_handle: volume_handle(uid),
                fs_type,
                volume_attributes: (!attributes.is_empty()).then_some(attributes),
                ..Default::default()
            }),
            mount_options: class.mount_options.clone(),
            persistent_volume_reclaim_policy: Some(
                class
                    .reclaim_policy
                    .clone()
                    .unwrap_or_else(|| "Delete".into()),
            ),
            storage_class_name: class.metadata.name.clone(),
            volume_mode: Some(volume_mode),
            ..Default::default()
        }),
        status: None,
    };
    Claim::Provision(Box::new(pv))
}

/// The PV's name for a claim: external-provisioner's `pvc-<claim uid>`, so a second attempt
/// (after a restart, or a lost reply) finds the first PV instead of making another.
pub fn pv_name(claim_uid: &str) -> String {
    format!("pvc-{claim_uid}")
}

/// The simulated volume's id on the storage: unique per claim, named as simulated.
pub fn volume_handle(claim_uid: &str) -> String {
    format!("simulated-volume-{claim_uid}")
}

/// Whether the simulated storage deletes this PV: one of its driver's (whoever made the
/// object: Ramen restores PVs from S3), Released by its claim, with reclaim policy Delete.
/// Retain means someone asked to keep it; Bound and Available are in use or waiting.
///
/// `Failed` counts as released: the PV controller puts a Released Delete PV there when it
/// finds no deleter for it, which happens to a CSI PV without the `provisioned-by`
/// annotation (it waits for the external provisioner only when the annotation names one).
pub fn should_delete(pv: &PersistentVolume, provisioner: &str) -> bool {
    let Some(spec) = pv.spec.as_ref() else {
        return false;
    };
    let ours = spec.csi.as_ref().is_some_and(|c| c.driver == provisioner);
    let phase = pv.status.as_ref().and_then(|s| s.phase.as_deref());
    let released = matches!(phase, Some("Released" | "Failed"));
    let delete = spec.persistent_volume_reclaim_policy.as_deref() == Some("Delete");
    ours && released && delete && pv.metadata.deletion_timestamp.is_none()
}

/// Whether a PV of this driver was made by something else (restored by Ramen, created by
/// hand): the simulator serves it as its own, it only logs that it did not make it.
pub fn foreign(pv: &PersistentVolume, provisioner: &str) -> bool {
    let ours = pv
        .spec
        .as_ref()
        .and_then(|s| s.csi.as_ref())
        .is_some_and(|c| c.driver == provisioner);
    let made_here = pv
        .metadata
        .labels
        .as_ref()
        .is_some_and(|l| l.contains_key(SIMULATED_LABEL));
    ours && !made_here
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        PersistentVolumeClaimSpec, PersistentVolumeStatus, VolumeResourceRequirements,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    const P: &str = "sim.storage.drbridge.io";

    fn class(provisioner: &str) -> StorageClass {
        StorageClass {
            metadata: ObjectMeta {
                name: Some("rbd".into()),
                ..Default::default()
            },
            provisioner: provisioner.into(),
            reclaim_policy: Some("Delete".into()),
            volume_binding_mode: Some("Immediate".into()),
            parameters: Some(BTreeMap::from([
                ("csi.storage.k8s.io/fstype".into(), "ext4".into()),
                ("pool".into(), "replicapool".into()),
            ])),
            ..Default::default()
        }
    }

    fn pvc() -> PersistentVolumeClaim {
        PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some("busybox-pvc".into()),
                namespace: Some("app".into()),
                uid: Some("1234-abcd".into()),
                resource_version: Some("42".into()),
                annotations: Some(BTreeMap::from([(STORAGE_PROVISIONER.into(), P.into())])),
                ..Default::default()
            },
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: Some(vec!["ReadWriteOnce".into()]),
                storage_class_name: Some("rbd".into()),
                resources: Some(VolumeResourceRequirements {
                    requests: Some(BTreeMap::from([("storage".into(), Quantity("1Gi".into()))])),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            status: None,
        }
    }

    #[test]
    fn a_claim_of_our_class_gets_a_pre_bound_csi_pv() {
        let Claim::Provision(pv) = claim(&pvc(), Some(&class(P)), P) else {
            panic!("not provisioned");
        };
        assert_eq!(pv.metadata.name.as_deref(), Some("pvc-1234-abcd"));
        assert_eq!(pv.metadata.annotations.as_ref().unwrap()[PROVISIONED_BY], P);
        let spec = pv.spec.as_ref().unwrap();
        let csi = spec.csi.as_ref().unwrap();
        assert_eq!(csi.driver, P);
        assert_eq!(csi.volume_handle, "simulated-volume-1234-abcd");
        assert_eq!(csi.fs_type.as_deref(), Some("ext4"));
        assert_eq!(
            csi.volume_attributes,
            Some(BTreeMap::from([("pool".into(), "replicapool".into())]))
        );
        let claim_ref = spec.claim_ref.as_ref().unwrap();
        assert_eq!(claim_ref.uid.as_deref(), Some("1234-abcd"));
        assert_eq!(claim_ref.name.as_deref(), Some("busybox-pvc"));
        assert_eq!(claim_ref.namespace.as_deref(), Some("app"));
        assert_eq!(claim_ref.kind.as_deref(), Some("PersistentVolumeClaim"));
        assert_eq!(
            spec.capacity.as_ref().unwrap()["storage"],
            Quantity("1Gi".into())
        );
        assert_eq!(spec.access_modes, Some(vec!["ReadWriteOnce".into()]));
        assert_eq!(
            spec.persistent_volume_reclaim_policy.as_deref(),
            Some("Delete")
        );
        assert_eq!(spec.storage_class_name.as_deref(), Some("rbd"));
        assert_eq!(spec.volume_mode.as_deref(), Some("Filesystem"));
    }

    #[test]
    fn reclaim_policy_and_block_mode_follow_class_and_claim() {
        let mut c = class(P);
        c.reclaim_policy = Some("Retain".into());
        let mut p = pvc();
        p.spec.as_mut().unwrap().volume_mode = Some("Block".into());
        let Claim::Provision(pv) = claim(&p, Some(&c), P) else {
            panic!()
        };
        let spec = pv.spec.unwrap();
        assert_eq!(
            spec.persistent_volume_reclaim_policy.as_deref(),
            Some("Retain")
        );
        assert_eq!(spec.volume_mode.as_deref(), Some("Block"));
        assert_eq!(spec.csi.unwrap().fs_type, None);
        c.reclaim_policy = None;
        let Claim::Provision(pv) = claim(&pvc(), Some(&c), P) else {
            panic!()
        };
        assert_eq!(
            pv.spec.unwrap().persistent_volume_reclaim_policy.as_deref(),
            Some("Delete")
        );
    }

    #[test]
    fn claims_that_are_not_ours_or_not_ready_are_left_alone() {
        assert!(matches!(claim(&pvc(), None, P), Claim::Skip(_)));
        assert!(matches!(
            claim(&pvc(), Some(&class("other.csi")), P),
            Claim::Skip(_)
        ));

        let mut restored = pvc();
        restored.spec.as_mut().unwrap().volume_name = Some("pvc-old".into());
        assert!(matches!(
            claim(&restored, Some(&class(P)), P),
            Claim::Skip(_)
        ));

        let mut unasked = pvc();
        unasked.metadata.annotations = None;
        assert!(matches!(
            claim(&unasked, Some(&class(P)), P),
            Claim::Skip(_)
        ));
        let mut beta = pvc();
        beta.metadata.annotations = Some(BTreeMap::from([(
            STORAGE_PROVISIONER_BETA.into(),
            P.into(),
        )]));
        assert!(matches!(
            claim(&beta, Some(&class(P)), P),
            Claim::Provision(_)
        ));

        let mut deleting = pvc();
        deleting.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
        assert!(matches!(
            claim(&deleting, Some(&class(P)), P),
            Claim::Skip(_)
        ));

        let mut wffc = class(P);
        wffc.volume_binding_mode = Some("WaitForFirstConsumer".into());
        assert!(matches!(claim(&pvc(), Some(&wffc), P), Claim::Skip(_)));
        let mut selected = pvc();
        selected
            .metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(SELECTED_NODE.into(), "node-1".into());
        assert!(matches!(
            claim(&selected, Some(&wffc), P),
            Claim::Provision(_)
        ));

        let mut sizeless = pvc();
        sizeless.spec.as_mut().unwrap().resources = None;
        assert!(matches!(
            claim(&sizeless, Some(&class(P)), P),
            Claim::Refuse(_)
        ));
    }

    fn pv(driver: &str, phase: &str, policy: &str) -> PersistentVolume {
        PersistentVolume {
            metadata: ObjectMeta {
                name: Some("pv".into()),
                ..Default::default()
            },
            spec: Some(PersistentVolumeSpec {
                csi: Some(CSIPersistentVolumeSource {
                    driver: driver.into(),
                    volume_handle: "h".into(),
                    ..Default::default()
                }),
                persistent_volume_reclaim_policy: Some(policy.into()),
                ..Default::default()
            }),
            status: Some(PersistentVolumeStatus {
                phase: Some(phase.into()),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn only_released_delete_volumes_of_our_driver_are_deleted() {
        assert!(should_delete(&pv(P, "Released", "Delete"), P));
        assert!(should_delete(&pv(P, "Failed", "Delete"), P));
        assert!(!should_delete(&pv(P, "Failed", "Retain"), P));
        assert!(!should_delete(&pv(P, "Pending", "Delete"), P));
        assert!(!should_delete(&pv(P, "Released", "Retain"), P));
        assert!(!should_delete(&pv(P, "Bound", "Delete"), P));
        assert!(!should_delete(&pv(P, "Available", "Delete"), P));
        assert!(!should_delete(&pv("other.csi", "Released", "Delete"), P));
        let mut going = pv(P, "Released", "Delete");
        going.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
        assert!(!should_delete(&going, P));
    }

    #[test]
    fn restored_volumes_are_recognised_as_foreign() {
        assert!(foreign(&pv(P, "Bound", "Retain"), P));
        let Claim::Provision(made) = claim(&pvc(), Some(&class(P)), P) else {
            panic!()
        };
        assert!(!foreign(&made, P));
        assert!(!foreign(&pv("other.csi", "Bound", "Retain"), P));
    }
}
