//! Whether a VolumeReplication is the simulator's to drive, and whether its volume can
//! replicate: the checks csi-addons makes before it calls the driver (class found, a PVC data
//! source, bound, on a CSI PV of the class's driver), plus a usable schedule.

use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};

use crate::replication::Refusal;
use crate::schedule::parse_interval;
use crate::types::{
    PVC_DATA_SOURCE, SCHEDULING_INTERVAL_PARAM, VolumeReplication, VolumeReplicationClass,
};

/// Whose VolumeReplication this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// Its class names this simulator's provisioner, or its class is missing (csi-addons,
    /// one controller for all drivers, reports a missing class on the object; so do we).
    Us,
    /// Another driver's: left alone.
    Other,
}

/// Whose the VolumeReplication with this class is.
pub fn owner(class: Option<&VolumeReplicationClass>, provisioner: &str) -> Owner {
    match class {
        Some(c) if c.spec.provisioner != provisioner => Owner::Other,
        _ => Owner::Us,
    }
}

/// The replication interval: `--sync-interval` if given, else the class's
/// `parameters.schedulingInterval`.
pub fn interval(
    class: &VolumeReplicationClass,
    override_: Option<Duration>,
) -> Result<Duration, Refusal> {
    if let Some(d) = override_ {
        return Ok(d);
    }
    let name = class.metadata.name.as_deref().unwrap_or_default();
    match class.spec.parameters.get(SCHEDULING_INTERVAL_PARAM) {
        None => Err(Refusal::prerequisite(format!(
            "VolumeReplicationClass {name} has no parameters.{SCHEDULING_INTERVAL_PARAM}, so the \
             storage has no snapshot schedule (and the simulator no --sync-interval)"
        ))),
        Some(text) => parse_interval(text).map_err(|e| {
            Refusal::prerequisite(format!(
                "VolumeReplicationClass {name} parameters.{SCHEDULING_INTERVAL_PARAM}: {e}"
            ))
        }),
    }
}

/// What the reconciler found for a VolumeReplication.
#[derive(Debug, Clone, Copy)]
pub struct Found<'a> {
    pub vr: &'a VolumeReplication,
    pub class: Option<&'a VolumeReplicationClass>,
    /// The PVC named by `spec.dataSource` in the VR's namespace, if it exists.
    pub pvc: Option<&'a PersistentVolumeClaim>,
    /// The PV that PVC is bound to, if it exists.
    pub pv: Option<&'a PersistentVolume>,
}

/// The replication interval, or why the volume cannot replicate.
pub fn validate(
    found: Found<'_>,
    provisioner: &str,
    sync_interval: Option<Duration>,
) -> Result<Duration, Refusal> {
    let spec = &found.vr.spec;
    let Some(class) = found.class else {
        return Err(Refusal::transient(format!(
            "failed to get volumeReplication class: VolumeReplicationClass {:?} not found",
            spec.volume_replication_class
        )));
    };
    let interval = interval(class, sync_interval)?;
    let source = &spec.data_source;
    let group = source.api_group.as_deref().unwrap_or_default();
    if source.kind != PVC_DATA_SOURCE || !group.is_empty() {
        return Err(Refusal::prerequisite(format!(
            "unsupported datasource {group}/{}: the simulator replicates PersistentVolumeClaims \
             only, not volume groups",
            source.kind
        )));
    }
    let ns = found.vr.metadata.namespace.as_deref().unwrap_or_default();
    let pvc_name = format!("{ns}/{}", source.name);
    let Some(pvc) = found.pvc else {
        return Err(Refusal::transient(format!(
            "failed to find PVC: PersistentVolumeClaim {pvc_name} not found"
        )));
    };
    let volume = pvc
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .unwrap_or_default();
    let phase = pvc
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default();
    if volume.is_empty() || phase != "Bound" {
        return Err(Refusal::transient(format!(
            "PersistentVolumeClaim {pvc_name} is not bound (phase {phase:?})"
        )));
    }
    let Some(pv) = found.pv else {
        return Err(Refusal::transient(format!(
            "PersistentVolume {volume} of PersistentVolumeClaim {pvc_name} not found"
        )));
    };
    let driver = pv
        .spec
        .as_ref()
        .and_then(|s| s.csi.as_ref())
        .map(|c| c.driver.as_str());
    match driver {
        Some(d) if d == provisioner => Ok(interval),
        Some(d) => Err(Refusal::prerequisite(format!(
            "PersistentVolume {volume} belongs to CSI driver {d}, not to {provisioner}, the \
             provisioner of VolumeReplicationClass {}",
            spec.volume_replication_class
        ))),
        None => Err(Refusal::prerequisite(format!(
            "PersistentVolume {volume} is not a CSI volume"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{VolumeReplicationClassSpec, VolumeReplicationSpec};
    use k8s_openapi::api::core::v1::{
        CSIPersistentVolumeSource, PersistentVolumeClaimSpec, PersistentVolumeClaimStatus,
        PersistentVolumeSpec, TypedLocalObjectReference,
    };
    use kube::api::ObjectMeta;

    const P: &str = "sim.storage.drbridge.io";

    fn class(provisioner: &str, interval: Option<&str>) -> VolumeReplicationClass {
        let mut spec = VolumeReplicationClassSpec {
            provisioner: provisioner.into(),
            ..Default::default()
        };
        if let Some(i) = interval {
            spec.parameters
                .insert(SCHEDULING_INTERVAL_PARAM.into(), i.into());
        }
        VolumeReplicationClass::new("vrc", spec)
    }

    fn vr(kind: &str) -> VolumeReplication {
        let mut vr = VolumeReplication::new(
            "data",
            VolumeReplicationSpec {
                volume_replication_class: "vrc".into(),
                replication_state: "primary".into(),
                data_source: TypedLocalObjectReference {
                    kind: kind.into(),
                    name: "data".into(),
                    api_group: Some(String::new()),
                },
                ..Default::default()
            },
        );
        vr.metadata.namespace = Some("app".into());
        vr
    }

    fn pvc(bound: bool) -> PersistentVolumeClaim {
        PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some("data".into()),
                namespace: Some("app".into()),
                ..Default::default()
            },
            spec: Some(PersistentVolumeClaimSpec {
                volume_name: bound.then(|| "pv-1".into()),
                ..Default::default()
            }),
            status: Some(PersistentVolumeClaimStatus {
                phase: Some(if bound { "Bound" } else { "Pending" }.into()),
                ..Default::default()
            }),
        }
    }

    fn pv(driver: Option<&str>) -> PersistentVolume {
        PersistentVolume {
            metadata: ObjectMeta {
                name: Some("pv-1".into()),
                ..Default::default()
            },
            spec: Some(PersistentVolumeSpec {
                csi: driver.map(|d| CSIPersistentVolumeSource {
                    driver: d.into(),
                    volume_handle: "h".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            status: None,
        }
    }

    #[test]
    fn ownership_is_the_class_provisioner() {
        assert_eq!(owner(Some(&class(P, None)), P), Owner::Us);
        assert_eq!(
            owner(Some(&class("rbd.csi.ceph.com", None)), P),
            Owner::Other
        );
        assert_eq!(owner(None, P), Owner::Us);
    }

    #[test]
    fn the_interval_comes_from_the_flag_or_the_class() {
        assert_eq!(
            interval(&class(P, Some("1m")), None),
            Ok(Duration::from_secs(60))
        );
        assert_eq!(
            interval(&class(P, Some("1m")), Some(Duration::from_secs(5))),
            Ok(Duration::from_secs(5))
        );
        assert_eq!(
            interval(&class(P, None), Some(Duration::from_secs(5))),
            Ok(Duration::from_secs(5))
        );
        let e = interval(&class(P, None), None).unwrap_err();
        assert!(
            e.prerequisite && e.message.contains("schedulingInterval"),
            "{e:?}"
        );
        let e = interval(&class(P, Some("soon")), None).unwrap_err();
        assert!(e.prerequisite && e.message.contains("soon"), "{e:?}");
    }

    #[test]
    fn a_bound_pvc_on_our_driver_replicates() {
        let (vr, c, pvc, pv) = (
            vr("PersistentVolumeClaim"),
            class(P, Some("1m")),
            pvc(true),
            pv(Some(P)),
        );
        let found = Found {
            vr: &vr,
            class: Some(&c),
            pvc: Some(&pvc),
            pv: Some(&pv),
        };
        assert_eq!(validate(found, P, None), Ok(Duration::from_secs(60)));
    }

    #[test]
    fn what_cannot_replicate_says_why() {
        let c = class(P, Some("1m"));
        let good_vr = vr("PersistentVolumeClaim");
        let bound = pvc(true);
        let ours = pv(Some(P));
        let check = |found: Found<'_>| validate(found, P, None).unwrap_err();
        let base = Found {
            vr: &good_vr,
            class: Some(&c),
            pvc: Some(&bound),
            pv: Some(&ours),
        };

        let e = check(Found {
            class: None,
            ..base
        });
        assert!(!e.prerequisite && e.message.contains("not found"), "{e:?}");

        let group_vr = vr("VolumeGroupReplication");
        let e = check(Found {
            vr: &group_vr,
            ..base
        });
        assert!(
            e.prerequisite && e.message.contains("unsupported datasource"),
            "{e:?}"
        );

        let e = check(Found { pvc: None, ..base });
        assert!(
            !e.prerequisite && e.message.contains("app/data not found"),
            "{e:?}"
        );

        let pending = pvc(false);
        let e = check(Found {
            pvc: Some(&pending),
            pv: None,
            ..base
        });
        assert!(!e.prerequisite && e.message.contains("not bound"), "{e:?}");

        let e = check(Found { pv: None, ..base });
        assert!(!e.prerequisite && e.message.contains("pv-1"), "{e:?}");

        let theirs = pv(Some("rbd.csi.ceph.com"));
        let e = check(Found {
            pv: Some(&theirs),
            ..base
        });
        assert!(
            e.prerequisite && e.message.contains("rbd.csi.ceph.com"),
            "{e:?}"
        );

        let not_csi = pv(None);
        let e = check(Found {
            pv: Some(&not_csi),
            ..base
        });
        assert!(
            e.prerequisite && e.message.contains("not a CSI volume"),
            "{e:?}"
        );
    }
}
