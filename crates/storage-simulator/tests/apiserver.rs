//! The simulator binary on a real kube-apiserver and kube-controller-manager (the PV
//! controller binds): provisioning and binding, a VolumeReplication through primary (sync
//! times advancing), secondary, resync and a refused resync, deletion of Released Delete
//! volumes only, and a PV it never provisioned (as Ramen restores them).

use std::collections::BTreeMap;
use std::time::Duration;

use drbridge_localenv::{Env, eventually};
use drbridge_storage_simulator::provision::{PROVISIONED_BY, SIMULATED_LABEL};
use drbridge_storage_simulator::types::{
    VolumeReplication, VolumeReplicationClass, VolumeReplicationClassSpec, VolumeReplicationSpec,
};
use k8s_openapi::api::core::v1::{
    CSIPersistentVolumeSource, Namespace, ObjectReference, PersistentVolume, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PersistentVolumeSpec, TypedLocalObjectReference,
    VolumeResourceRequirements,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

const P: &str = "sim.storage.drbridge.io";
const NS: &str = "app";
const WAIT: Duration = Duration::from_secs(60);

async fn create<K>(api: &Api<K>, obj: &K) -> K
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.create(&PostParams::default(), obj)
        .await
        .unwrap_or_else(|e| panic!("creating {}: {e}", obj.name_any()))
}

async fn install_crds(client: &Client) {
    let api = Api::<CustomResourceDefinition>::all(client.clone());
    for crd in drbridge_storage_simulator::crds::crds() {
        let name = crd.name_any();
        create(&api, &crd).await;
        eventually(&format!("CRD {name} established"), WAIT, || {
            let api = api.clone();
            let name = name.clone();
            async move {
                let c = api.get(&name).await.ok()?;
                let established = c
                    .status?
                    .conditions?
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True");
                established.then_some(())
            }
        })
        .await;
    }
}

fn storage_class(name: &str, reclaim: &str) -> StorageClass {
    StorageClass {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(BTreeMap::from([(
                "ramendr.openshift.io/storageid".into(),
                "sim-dr1".into(),
            )])),
            ..Default::default()
        },
        provisioner: P.into(),
        reclaim_policy: Some(reclaim.into()),
        volume_binding_mode: Some("Immediate".into()),
        ..Default::default()
    }
}

fn pvc(name: &str, class: &str, volume: Option<&str>) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(NS.into()),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: Some(class.into()),
            volume_name: volume.map(Into::into),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".into(), Quantity("1Gi".into()))])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: None,
    }
}

fn volume_replication(name: &str, state: &str) -> VolumeReplication {
    let mut vr = VolumeReplication::new(
        name,
        VolumeReplicationSpec {
            volume_replication_class: "vrc-sim".into(),
            replication_state: state.into(),
            data_source: TypedLocalObjectReference {
                kind: "PersistentVolumeClaim".into(),
                name: name.into(),
                api_group: Some(String::new()),
            },
            ..Default::default()
        },
    );
    vr.metadata.namespace = Some(NS.into());
    vr
}

/// Waits until the claim is bound and returns its PV.
async fn bound_pv(client: &Client, claim: &str) -> PersistentVolume {
    let pvcs = Api::<PersistentVolumeClaim>::namespaced(client.clone(), NS);
    let volume = eventually(&format!("PVC {claim} bound"), WAIT, || {
        let pvcs = pvcs.clone();
        async move {
            let c = pvcs.get(claim).await.ok()?;
            let bound = c.status.as_ref()?.phase.as_deref() == Some("Bound");
            bound.then(|| c.spec?.volume_name).flatten()
        }
    })
    .await;
    Api::<PersistentVolume>::all(client.clone())
        .get(&volume)
        .await
        .unwrap()
}

/// Ramen's view of a VR status (`isVRConditionMet`): the condition of this type, current for
/// the object's generation, as (status, reason).
fn current(vr: &VolumeReplication, type_: &str) -> Option<(String, String)> {
    let generation = vr.metadata.generation?;
    let status = vr.status.as_ref()?;
    if status.observed_generation != generation {
        return None;
    }
    let c = status.conditions.iter().find(|c| c.type_ == type_)?;
    (c.observed_generation == Some(generation)).then(|| (c.status.clone(), c.reason.clone()))
}

/// Every condition current and none Unknown, no DestinationInfoAvailable, no finalizer.
fn assert_ramen_invariants(vr: &VolumeReplication) {
    let generation = vr.metadata.generation.unwrap();
    let status = vr.status.as_ref().unwrap();
    assert_eq!(status.observed_generation, generation);
    for c in &status.conditions {
        assert_eq!(c.observed_generation, Some(generation), "{c:?}");
        assert_ne!(c.status, "Unknown", "{c:?}");
        assert_ne!(c.type_, "DestinationInfoAvailable");
    }
    assert!(vr.finalizers().is_empty(), "{:?}", vr.finalizers());
}

async fn wait_vr(
    api: &Api<VolumeReplication>,
    name: &str,
    what: &str,
    ok: impl Fn(&VolumeReplication) -> bool,
) -> VolumeReplication {
    eventually(&format!("VR {name}: {what}"), WAIT, || {
        let api = api.clone();
        let ok = &ok;
        async move { api.get(name).await.ok().filter(|vr| ok(vr)) }
    })
    .await
}

fn has(vr: &VolumeReplication, type_: &str, status: &str, reason: &str) -> bool {
    current(vr, type_) == Some((status.into(), reason.into()))
}

fn state(vr: &VolumeReplication) -> &str {
    vr.status
        .as_ref()
        .map(|s| s.state.as_str())
        .unwrap_or_default()
}

async fn set_state(api: &Api<VolumeReplication>, name: &str, state: &str) {
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicationState": state}})),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulator_on_a_real_api_server() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut env = Env::start_for_test(&["dr1"]).await.expect("local cluster");
    let client = env.client("dr1").await.unwrap();
    install_crds(&client).await;

    create(
        &Api::<Namespace>::all(client.clone()),
        &Namespace {
            metadata: ObjectMeta {
                name: Some(NS.into()),
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .await;
    let classes = Api::<StorageClass>::all(client.clone());
    create(&classes, &storage_class("sim", "Delete")).await;
    create(&classes, &storage_class("sim-retain", "Retain")).await;
    // The schedule comes from the class, as Ramen's policy sets it (2 s keeps the test short).
    create(
        &Api::<VolumeReplicationClass>::all(client.clone()),
        &VolumeReplicationClass::new(
            "vrc-sim",
            VolumeReplicationClassSpec {
                provisioner: P.into(),
                parameters: BTreeMap::from([("schedulingInterval".into(), "2s".into())]),
            },
        ),
    )
    .await;

    let kubeconfig = env.kubeconfig("dr1").unwrap();
    let admin_port = drbridge_localenv::ports::free_port().unwrap();
    let sim_args: Vec<String> = vec![
        "--kubeconfig".into(),
        kubeconfig.display().to_string(),
        "--provisioner".into(),
        P.into(),
        "--resync-time".into(),
        "2s".into(),
        "--log-filter".into(),
        "info,drbridge_storage_simulator=debug".into(),
        "--admin-addr".into(),
        format!("127.0.0.1:{admin_port}"),
    ];
    env.spawn(
        "storage-simulator",
        std::path::Path::new(env!("CARGO_BIN_EXE_drbridge-storage-simulator")),
        &sim_args,
        &[],
    )
    .unwrap();

    // 1. A claim of the simulator's class gets a CSI PV and the PV controller binds it.
    let pvcs = Api::<PersistentVolumeClaim>::namespaced(client.clone(), NS);
    let claim = create(&pvcs, &pvc("data", "sim", None)).await;
    let pv = bound_pv(&client, "data").await;
    assert_eq!(pv.name_any(), format!("pvc-{}", claim.uid().unwrap()));
    assert_eq!(pv.annotations()[PROVISIONED_BY], P);
    assert_eq!(pv.labels()[SIMULATED_LABEL], "true");
    let spec = pv.spec.as_ref().unwrap();
    assert_eq!(spec.csi.as_ref().unwrap().driver, P);
    assert_eq!(spec.claim_ref.as_ref().unwrap().uid, claim.uid());
    assert_eq!(
        spec.persistent_volume_reclaim_policy.as_deref(),
        Some("Delete")
    );
    assert_eq!(
        spec.capacity.as_ref().unwrap()["storage"],
        Quantity("1Gi".into())
    );

    // 2. Primary: Completed, and lastSyncTime set and advancing on the 2 s schedule.
    let vrs = Api::<VolumeReplication>::namespaced(client.clone(), NS);
    create(&vrs, &volume_replication("data", "primary")).await;
    let vr = wait_vr(&vrs, "data", "promoted", |vr| {
        has(vr, "Completed", "True", "Promoted") && state(vr) == "Primary"
    })
    .await;
    assert_ramen_invariants(&vr);
    assert!(has(&vr, "Degraded", "False", "Healthy"));
    assert!(has(&vr, "Resyncing", "False", "NotResyncing"));
    assert!(has(&vr, "Validated", "True", "PrerequisiteMet"));
    // The first sync completes one interval after promotion, not at it.
    let synced = wait_vr(&vrs, "data", "first sync", |vr| {
        vr.status
            .as_ref()
            .is_some_and(|s| s.last_sync_time.is_some())
    })
    .await;
    let status = synced.status.as_ref().unwrap();
    let first = status.last_sync_time.clone().unwrap();
    let started = status.last_start_time.clone().expect("lastStartTime");
    assert!(first.0 <= Timestamp::now());
    assert!(
        first.0.duration_since(started.0).as_secs() >= 2,
        "first sync {first:?} less than an interval after promotion at {started:?}"
    );
    let later = wait_vr(&vrs, "data", "lastSyncTime advanced", |vr| {
        vr.status
            .as_ref()
            .and_then(|s| s.last_sync_time.as_ref())
            .is_some_and(|t| t.0 > first.0)
    })
    .await;
    assert_ramen_invariants(&later);
    let step = later
        .status
        .as_ref()
        .unwrap()
        .last_sync_time
        .as_ref()
        .unwrap()
        .0
        .duration_since(first.0);
    assert_eq!(
        step.as_secs() % 2,
        0,
        "sync times off the schedule: {step:?}"
    );

    // 3. Demote: what Ramen needs for DataProtected on a secondary.
    set_state(&vrs, "data", "secondary").await;
    let vr = wait_vr(&vrs, "data", "demoted", |vr| {
        has(vr, "Completed", "True", "Demoted") && state(vr) == "Secondary"
    })
    .await;
    assert_ramen_invariants(&vr);
    assert!(has(&vr, "Degraded", "False", "Healthy"));
    assert!(has(&vr, "Resyncing", "False", "NotResyncing"));
    assert_eq!(vr.status.as_ref().unwrap().last_sync_time, None);

    // 4. Resync of the secondary: resyncing for a while, then healthy again.
    set_state(&vrs, "data", "resync").await;
    wait_vr(&vrs, "data", "resyncing", |vr| {
        has(vr, "Resyncing", "True", "ResyncTriggered")
    })
    .await;
    let vr = wait_vr(&vrs, "data", "resynced", |vr| {
        has(vr, "Resyncing", "False", "NotResyncing") && has(vr, "Degraded", "False", "Healthy")
    })
    .await;
    assert_ramen_invariants(&vr);

    // 5. Refused: a resync of a primary, with a condition that says why.
    set_state(&vrs, "data", "primary").await;
    wait_vr(&vrs, "data", "promoted again", |vr| {
        has(vr, "Completed", "True", "Promoted")
    })
    .await;
    set_state(&vrs, "data", "resync").await;
    let vr = wait_vr(&vrs, "data", "resync refused", |vr| {
        has(vr, "Completed", "False", "FailedToResync")
    })
    .await;
    assert_ramen_invariants(&vr);
    assert_eq!(state(&vr), "Primary");
    let degraded = vr
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == "Degraded")
        .unwrap();
    assert!(
        degraded.message.contains("demote it to secondary first"),
        "{degraded:?}"
    );
    assert!(degraded.message.contains("simulator"), "{degraded:?}");
    set_state(&vrs, "data", "secondary").await;
    wait_vr(&vrs, "data", "secondary", |vr| {
        has(vr, "Completed", "True", "Demoted")
    })
    .await;

    // 6. A PV it never provisioned, as Ramen restores one: a PV with a claimRef without uid
    //    and a PVC naming it. The PV controller binds them; no second PV is made; the VR on
    //    it is served.
    let pvs = Api::<PersistentVolume>::all(client.clone());
    create(
        &pvs,
        &PersistentVolume {
            metadata: ObjectMeta {
                name: Some("restored-pv".into()),
                annotations: Some(BTreeMap::from([
                    (PROVISIONED_BY.into(), P.into()),
                    ("ramendr.openshift.io/ramen-restore".into(), "True".into()),
                ])),
                ..Default::default()
            },
            spec: Some(PersistentVolumeSpec {
                access_modes: Some(vec!["ReadWriteOnce".into()]),
                capacity: Some(BTreeMap::from([("storage".into(), Quantity("1Gi".into()))])),
                claim_ref: Some(ObjectReference {
                    kind: Some("PersistentVolumeClaim".into()),
                    namespace: Some(NS.into()),
                    name: Some("restored".into()),
                    ..Default::default()
                }),
                csi: Some(CSIPersistentVolumeSource {
                    driver: P.into(),
                    volume_handle: "handle-from-the-peer".into(),
                    ..Default::default()
                }),
                persistent_volume_reclaim_policy: Some("Retain".into()),
                storage_class_name: Some("sim".into()),
                volume_mode: Some("Filesystem".into()),
                ..Default::default()
            }),
            status: None,
        },
    )
    .await;
    create(&pvcs, &pvc("restored", "sim", Some("restored-pv"))).await;
    let restored = bound_pv(&client, "restored").await;
    assert_eq!(restored.name_any(), "restored-pv");
    create(&vrs, &volume_replication("restored", "primary")).await;
    let vr = wait_vr(&vrs, "restored", "promoted", |vr| {
        has(vr, "Completed", "True", "Promoted")
    })
    .await;
    assert_ramen_invariants(&vr);
    let claimed: Vec<_> = pvs
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|pv| {
            pv.spec
                .as_ref()
                .and_then(|s| s.claim_ref.as_ref())
                .and_then(|r| r.name.as_deref())
                == Some("restored")
        })
        .map(|pv| pv.name_any())
        .collect();
    assert_eq!(claimed, ["restored-pv"]);

    // 6b. A restart loses and repeats nothing: no PV made or deleted, the statuses carry on
    //     (the restored primary's sync time keeps advancing on its schedule).
    let names = |pvs: Vec<PersistentVolume>| {
        let mut v: Vec<_> = pvs.into_iter().map(|p| p.name_any()).collect();
        v.sort();
        v
    };
    // Its promotion is recorded before the process is stopped.
    eventually("the restored volume's Promoted event", WAIT, || {
        let events = Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), NS);
        async move {
            let list = events.list(&Default::default()).await.ok()?;
            list.items
                .iter()
                .any(|e| {
                    e.reason.as_deref() == Some("Promoted")
                        && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("restored")
                })
                .then_some(())
        }
    })
    .await;
    let before = names(pvs.list(&Default::default()).await.unwrap().items);
    // Its first sync (one interval after promotion) too.
    let synced = wait_vr(&vrs, "restored", "first sync", |vr| {
        vr.status
            .as_ref()
            .is_some_and(|s| s.last_sync_time.is_some())
    })
    .await
    .status
    .unwrap()
    .last_sync_time
    .unwrap();
    env.stop_process("storage-simulator").unwrap();
    env.spawn(
        "storage-simulator",
        std::path::Path::new(env!("CARGO_BIN_EXE_drbridge-storage-simulator")),
        &sim_args,
        &[],
    )
    .unwrap();
    let vr = wait_vr(&vrs, "restored", "syncing after the restart", |vr| {
        vr.status
            .as_ref()
            .and_then(|s| s.last_sync_time.as_ref())
            .is_some_and(|t| t.0 > synced.0)
    })
    .await;
    assert_ramen_invariants(&vr);
    assert!(has(&vr, "Completed", "True", "Promoted"));
    assert_eq!(
        names(pvs.list(&Default::default()).await.unwrap().items),
        before
    );
    let data = vrs.get("data").await.unwrap();
    assert!(has(&data, "Completed", "True", "Demoted"), "{data:?}");

    // 7. Released volumes: Retain stays, Delete goes. The Retain one is released first, so
    //    by the time the Delete one is gone the simulator has seen both.
    create(&pvcs, &pvc("kept", "sim-retain", None)).await;
    let kept = bound_pv(&client, "kept").await;
    pvcs.delete("kept", &DeleteParams::default()).await.unwrap();
    eventually("retained PV released", WAIT, || {
        let pvs = pvs.clone();
        let name = kept.name_any();
        async move {
            let pv = pvs.get(&name).await.ok()?;
            (pv.status?.phase.as_deref() == Some("Released")).then_some(())
        }
    })
    .await;
    vrs.delete("data", &DeleteParams::default()).await.unwrap();
    pvcs.delete("data", &DeleteParams::default()).await.unwrap();
    eventually("released Delete PV deleted", WAIT, || {
        let pvs = pvs.clone();
        let name = pv.name_any();
        async move { pvs.get_opt(&name).await.ok()?.is_none().then_some(()) }
    })
    .await;
    let still = pvs
        .get(&kept.name_any())
        .await
        .expect("the Retain PV must stay");
    assert!(still.metadata.deletion_timestamp.is_none());
    assert!(pvs.get_opt("restored-pv").await.unwrap().is_some());

    assert!(
        env.process_running("storage-simulator"),
        "the simulator exited"
    );
}
