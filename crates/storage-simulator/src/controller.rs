//! The three controllers, wired to the API server: PVCs (provisioning), PVs (deletion of
//! Released volumes) and VolumeReplications. The decisions are in [`crate::provision`],
//! [`crate::validate`] and [`crate::replication`]; this module only reads, writes and logs.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::metrics::Metrics;
use crate::provision::{self, Claim};
use crate::replication::{self, Input, Transition};
use crate::types::{
    PVC_DATA_SOURCE, VolumeReplication, VolumeReplicationClass, VolumeReplicationStatus,
};
use crate::validate::{self, Found, Owner};

/// What the controllers serve.
#[derive(Debug, Clone)]
pub struct Config {
    /// The simulated CSI driver's name.
    pub provisioner: String,
    /// Overrides every class's schedule.
    pub sync_interval: Option<Duration>,
    /// How long a requested resync takes.
    pub resync_time: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("encoding a status: {0}")]
    Json(#[from] serde_json::Error),
}

impl Error {
    /// A write lost a race with another change: the next event reconciles again.
    fn is_conflict(&self) -> bool {
        matches!(self, Error::Kube(kube::Error::Api(s)) if s.is_conflict())
    }
}

struct Ctx {
    client: Client,
    config: Config,
    metrics: Metrics,
    recorder: Recorder,
}

/// The reporting controller of the simulator's Events (`kubectl describe` shows it).
pub const REPORTER: &str = "drbridge-storage-simulator";

impl Ctx {
    /// Records an Event on `obj`, as external-provisioner and csi-addons do, so `kubectl
    /// describe` tells what the simulated storage did. Events are a courtesy: failing to
    /// write one is logged, never fatal.
    async fn event<K: kube::Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        warning: bool,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let ev = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.into(),
            note: Some(format!("{note}{}", replication::SIMULATED)),
            action: action.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &obj.object_ref(&())).await {
            debug!(error = %e, reason, "recording an event failed");
        }
    }
}

/// After an error, try again soon; the API server or a race is the usual cause.
const ERROR_RETRY: Duration = Duration::from_secs(2);

/// Runs the controllers until `shutdown` resolves.
pub async fn run<F>(client: Client, config: Config, metrics: Metrics, shutdown: F)
where
    F: Future<Output = ()> + Send + Sync + 'static,
{
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: REPORTER.into(),
            instance: None,
        },
    );
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        config,
        metrics,
        recorder,
    });
    let shutdown = futures::future::FutureExt::shared(Box::pin(shutdown));

    let pvcs = Controller::new(
        Api::<PersistentVolumeClaim>::all(client.clone()),
        watcher::Config::default(),
    )
    .graceful_shutdown_on(shutdown.clone())
    .run(reconcile_pvc, error_policy("pvc"), ctx.clone())
    .for_each(|r| async move { log_result("pvc", r) })
    .instrument(info_span!("pvc_controller"));

    let pvs = Controller::new(
        Api::<PersistentVolume>::all(client.clone()),
        watcher::Config::default(),
    )
    .graceful_shutdown_on(shutdown.clone())
    .run(reconcile_pv, error_policy("pv"), ctx.clone())
    .for_each(|r| async move { log_result("pv", r) })
    .instrument(info_span!("pv_controller"));

    let vr_controller = Controller::new(
        Api::<VolumeReplication>::all(client.clone()),
        watcher::Config::default(),
    );
    let by_pvc = vr_controller.store();
    let by_class = vr_controller.store();
    let vrs = vr_controller
        // A PVC binding (or going away) changes what its VolumeReplication can do.
        .watches(
            Api::<PersistentVolumeClaim>::all(client.clone()),
            watcher::Config::default(),
            move |pvc| {
                let ns = pvc.namespace();
                let name = pvc.name_any();
                by_pvc
                    .state()
                    .into_iter()
                    .filter(|vr| {
                        vr.namespace() == ns
                            && vr.spec.data_source.kind == PVC_DATA_SOURCE
                            && vr.spec.data_source.name == name
                    })
                    .map(|vr| ObjectRef::from_obj(&*vr))
                    .collect::<Vec<_>>()
            },
        )
        .watches(
            Api::<VolumeReplicationClass>::all(client),
            watcher::Config::default(),
            move |class| {
                let name = class.name_any();
                by_class
                    .state()
                    .into_iter()
                    .filter(|vr| vr.spec.volume_replication_class == name)
                    .map(|vr| ObjectRef::from_obj(&*vr))
                    .collect::<Vec<_>>()
            },
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile_vr, error_policy("volumereplication"), ctx)
        .for_each(|r| async move { log_result("volumereplication", r) })
        .instrument(info_span!("volumereplication_controller"));

    futures::join!(pvcs, pvs, vrs);
}

fn error_policy<K>(controller: &'static str) -> impl Fn(Arc<K>, &Error, Arc<Ctx>) -> Action {
    move |_, err, ctx| {
        if !err.is_conflict() {
            ctx.metrics.error(controller);
        }
        Action::requeue(ERROR_RETRY)
    }
}

fn log_result<K: kube::Resource, E: std::fmt::Display>(
    controller: &str,
    r: Result<(ObjectRef<K>, Action), kube::runtime::controller::Error<Error, E>>,
) {
    use kube::runtime::controller::Error as CErr;
    match r {
        Ok(_) => {}
        Err(CErr::ReconcilerFailed(e, obj)) if e.is_conflict() => {
            debug!(controller, object = %obj, "changed while reconciling; looking again");
        }
        Err(CErr::ReconcilerFailed(e, obj)) => {
            warn!(controller, object = %obj, error = %e, "reconcile failed; retrying");
        }
        Err(e) => warn!(controller, error = %e, "watch"),
    }
}

async fn reconcile_pvc(pvc: Arc<PersistentVolumeClaim>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let provisioner = ctx.config.provisioner.as_str();
    let Some(class_name) = pvc
        .spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref())
    else {
        return Ok(Action::await_change());
    };
    let class = Api::<StorageClass>::all(ctx.client.clone())
        .get_opt(class_name)
        .await?;
    let key = format!("{}/{}", pvc.namespace().unwrap_or_default(), pvc.name_any());
    match provision::claim(&pvc, class.as_ref(), provisioner) {
        Claim::Skip(why) => debug!(pvc = %key, why, "no volume needed"),
        Claim::Refuse(why) => {
            warn!(pvc = %key, %why, "the simulated storage cannot provision this claim");
            ctx.event(&*pvc, true, "ProvisioningFailed", "Provision", why)
                .await;
        }
        Claim::Provision(pv) => {
            let name = pv.name_any();
            let pvs = Api::<PersistentVolume>::all(ctx.client.clone());
            match pvs.create(&PostParams::default(), &pv).await {
                Ok(_) => {
                    ctx.metrics.volumes_provisioned.inc();
                    info!(pvc = %key, pv = %name, class = class_name, "provisioned a simulated volume");
                    let note = format!("Successfully provisioned simulated volume {name}");
                    ctx.event(&*pvc, false, "ProvisioningSucceeded", "Provision", note)
                        .await;
                }
                // Made before (a restart, a lost reply): the PV controller binds it.
                Err(kube::Error::Api(s)) if s.is_already_exists() => {
                    debug!(pvc = %key, pv = %name, "volume already provisioned")
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(Action::await_change())
}

async fn reconcile_pv(pv: Arc<PersistentVolume>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let provisioner = ctx.config.provisioner.as_str();
    let name = pv.name_any();
    if provision::should_delete(&pv, provisioner) {
        // Only the object as seen: if it was rebound or changed since, the precondition
        // fails and nothing is deleted.
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: pv.uid(),
                resource_version: pv.resource_version(),
            }),
            ..Default::default()
        };
        match Api::<PersistentVolume>::all(ctx.client.clone())
            .delete(&name, &params)
            .await
        {
            Ok(_) => {
                ctx.metrics.volumes_deleted.inc();
                info!(pv = %name, "deleted a released simulated volume (reclaim policy Delete)");
                let note = "Deleted the released volume (reclaim policy Delete)".to_owned();
                ctx.event(&*pv, false, "VolumeDeleted", "Delete", note)
                    .await;
            }
            Err(kube::Error::Api(s)) if s.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
    } else if provision::foreign(&pv, provisioner) {
        debug!(pv = %name, "serving a volume of this driver that the simulator did not provision");
    }
    Ok(Action::await_change())
}

async fn reconcile_vr(vr: Arc<VolumeReplication>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let cfg = &ctx.config;
    if vr.metadata.deletion_timestamp.is_some() {
        // No finalizer of ours: nothing to undo.
        return Ok(Action::await_change());
    }
    let ns = vr.namespace().unwrap_or_default();
    let name = vr.name_any();
    let class = Api::<VolumeReplicationClass>::all(ctx.client.clone())
        .get_opt(&vr.spec.volume_replication_class)
        .await?;
    if validate::owner(class.as_ref(), &cfg.provisioner) == Owner::Other {
        return Ok(Action::await_change());
    }
    let pvc = if vr.spec.data_source.kind == PVC_DATA_SOURCE {
        Api::<PersistentVolumeClaim>::namespaced(ctx.client.clone(), &ns)
            .get_opt(&vr.spec.data_source.name)
            .await?
    } else {
        None
    };
    let volume = pvc
        .as_ref()
        .and_then(|p| p.spec.as_ref())
        .and_then(|s| s.volume_name.clone())
        .filter(|v| !v.is_empty());
    let pv = match volume {
        Some(v) => {
            Api::<PersistentVolume>::all(ctx.client.clone())
                .get_opt(&v)
                .await?
        }
        None => None,
    };
    let found = Found {
        vr: &vr,
        class: class.as_ref(),
        pvc: pvc.as_ref(),
        pv: pv.as_ref(),
    };
    let old = vr.status.clone().unwrap_or_default();
    let out = replication::decide(&Input {
        generation: vr.metadata.generation.unwrap_or_default(),
        desired: &vr.spec.replication_state,
        status: &old,
        checked: validate::validate(found, &cfg.provisioner, cfg.sync_interval),
        resync_time: cfg.resync_time,
        now: Timestamp::now(),
    });
    if out.status != old {
        let patch = status_patch(vr.metadata.resource_version.as_deref(), &out.status)?;
        Api::<VolumeReplication>::namespaced(ctx.client.clone(), &ns)
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        ctx.metrics.status_writes.inc();
    }
    let key = format!("{ns}/{name}");
    match out.transition {
        // Logged and counted once per refusal, not on every retry.
        Some(Transition::Refused) if out.status.message != old.message => {
            ctx.metrics.transition(Transition::Refused.as_str());
            warn!(vr = %key, desired = %vr.spec.replication_state, reason = %out.status.message, "refused");
            let note = format!(
                "replicationState {} refused: {}",
                vr.spec.replication_state, out.status.message
            );
            ctx.event(&*vr, true, Transition::Refused.reason(), "Replicate", note)
                .await;
        }
        Some(Transition::Refused) | None => {}
        Some(t) => {
            ctx.metrics.transition(t.as_str());
            info!(vr = %key, state = %out.status.state, transition = t.as_str(), "simulated replication changed");
            let note = format!("volume is now {}", out.status.state);
            ctx.event(&*vr, false, t.reason(), "Replicate", note).await;
        }
    }
    Ok(out
        .requeue
        .map_or_else(Action::await_change, Action::requeue))
}

/// Every field of `status`, in the order Go writes them; a merge patch must name a field
/// with `null` to remove it.
pub const STATUS_FIELDS: [&str; 10] = [
    "state",
    "message",
    "conditions",
    "observedGeneration",
    "lastStartTime",
    "lastCompletionTime",
    "lastSyncTime",
    "lastSyncBytes",
    "lastSyncDuration",
    "destinationVolumeID",
];

/// A JSON merge patch that makes the status exactly `status`, and applies only to the
/// object version it was computed from (`resourceVersion` in a patch is a precondition), so
/// a status from a stale read is never written.
pub fn status_patch(
    resource_version: Option<&str>,
    status: &VolumeReplicationStatus,
) -> Result<Value, serde_json::Error> {
    let mut body = serde_json::to_value(status)?;
    if let Value::Object(fields) = &mut body {
        for f in STATUS_FIELDS {
            fields.entry(f).or_insert(Value::Null);
        }
    }
    let mut patch = json!({ "status": body });
    if let Some(rv) = resource_version {
        patch["metadata"] = json!({ "resourceVersion": rv });
    }
    Ok(patch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

    #[test]
    fn the_status_patch_removes_what_the_status_lacks() {
        let status = VolumeReplicationStatus {
            state: "Secondary".into(),
            observed_generation: 3,
            ..Default::default()
        };
        let p = status_patch(Some("17"), &status).unwrap();
        assert_eq!(p["metadata"]["resourceVersion"], "17");
        assert_eq!(p["status"]["state"], "Secondary");
        assert_eq!(p["status"]["observedGeneration"], 3);
        for f in [
            "lastSyncTime",
            "lastSyncBytes",
            "lastSyncDuration",
            "conditions",
            "message",
        ] {
            assert_eq!(p["status"][f], Value::Null, "{f}");
            assert!(p["status"].as_object().unwrap().contains_key(f), "{f}");
        }
        // Every field of the type is covered.
        let full = serde_json::to_value(VolumeReplicationStatus {
            state: "s".into(),
            message: "m".into(),
            conditions: vec![Condition {
                type_: "Completed".into(),
                status: "True".into(),
                reason: "Promoted".into(),
                message: String::new(),
                observed_generation: Some(1),
                last_transition_time: Time(Timestamp::UNIX_EPOCH),
            }],
            observed_generation: 1,
            last_start_time: Some(Time(Timestamp::UNIX_EPOCH)),
            last_completion_time: Some(Time(Timestamp::UNIX_EPOCH)),
            last_sync_time: Some(Time(Timestamp::UNIX_EPOCH)),
            last_sync_bytes: Some(1),
            last_sync_duration: Some("1s".into()),
            destination_volume_id: "d".into(),
        })
        .unwrap();
        let mut keys: Vec<_> = full.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        let mut expected: Vec<_> = STATUS_FIELDS.iter().map(|s| s.to_string()).collect();
        expected.sort();
        assert_eq!(keys, expected);
        assert!(
            status_patch(None, &status)
                .unwrap()
                .get("metadata")
                .is_none()
        );
    }
}
