//! Builders and waits for ManifestWorks in tests.

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, DynamicObject, ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::eventually;

/// How long any single expectation may take in these tests.
pub const WAIT: Duration = Duration::from_secs(30);

pub fn mw_api(hub: &kube::Client, cluster: &str) -> Api<DynamicObject> {
    let ar = kube::api::ApiResource::from_gvk_with_plural(
        &kube::api::GroupVersionKind::gvk("work.open-cluster-management.io", "v1", "ManifestWork"),
        "manifestworks",
    );
    Api::namespaced_with(hub.clone(), cluster, &ar)
}

pub fn mcv_api(hub: &kube::Client, cluster: &str) -> Api<DynamicObject> {
    let ar = kube::api::ApiResource::from_gvk_with_plural(
        &kube::api::GroupVersionKind::gvk(
            "view.open-cluster-management.io",
            "v1beta1",
            "ManagedClusterView",
        ),
        "managedclusterviews",
    );
    Api::namespaced_with(hub.clone(), cluster, &ar)
}

/// A ConfigMap manifest as Ramen's Go client would marshal it.
pub fn configmap(ns: &str, name: &str, data: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": ns, "creationTimestamp": null},
        "data": data,
    })
}

pub fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "creationTimestamp": null}, "spec": {}, "status": {}})
}

/// A ManifestWork object (not yet created).
pub fn manifestwork(
    cluster: &str,
    name: &str,
    manifests: Vec<Value>,
    delete_option: Option<Value>,
) -> DynamicObject {
    let mut spec = json!({"workload": {"manifests": manifests}});
    if let Some(d) = delete_option {
        spec["deleteOption"] = d;
    }
    serde_json::from_value(json!({
        "apiVersion": "work.open-cluster-management.io/v1",
        "kind": "ManifestWork",
        "metadata": {"name": name, "namespace": cluster, "labels": {"ramendr.openshift.io/created-by-ramen": "true"}},
        "spec": spec,
    }))
    .unwrap()
}

pub async fn create_mw(
    hub: &kube::Client,
    cluster: &str,
    name: &str,
    manifests: Vec<Value>,
    delete_option: Option<Value>,
) -> DynamicObject {
    mw_api(hub, cluster)
        .create(
            &PostParams::default(),
            &manifestwork(cluster, name, manifests, delete_option),
        )
        .await
        .unwrap_or_else(|e| panic!("creating ManifestWork {cluster}/{name}: {e}"))
}

/// Replaces the manifests, as Ramen's createOrUpdate does (whole-object Update of spec).
pub async fn update_mw_manifests(
    hub: &kube::Client,
    cluster: &str,
    name: &str,
    manifests: Vec<Value>,
) -> DynamicObject {
    let api = mw_api(hub, cluster);
    for _ in 0..10 {
        let mut mw = api.get(name).await.unwrap();
        mw.data["spec"]["workload"]["manifests"] = Value::Array(manifests.clone());
        match api.replace(name, &PostParams::default(), &mw).await {
            Ok(o) => return o,
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(e) => panic!("updating {cluster}/{name}: {e}"),
        }
    }
    panic!("updating {cluster}/{name}: conflicts did not settle");
}

pub async fn delete_mw(hub: &kube::Client, cluster: &str, name: &str) {
    mw_api(hub, cluster)
        .delete(name, &DeleteParams::default())
        .await
        .unwrap();
}

/// The status condition `type_` of an object's `status.conditions`.
pub fn condition<'a>(obj: &'a DynamicObject, type_: &str) -> Option<&'a Value> {
    obj.data["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

/// Waits until the ManifestWork is Applied and Available at its current generation.
pub async fn wait_applied(hub: &kube::Client, cluster: &str, name: &str) -> DynamicObject {
    let api = mw_api(hub, cluster);
    eventually(
        &format!("{cluster}/{name} Applied and Available"),
        WAIT,
        || async {
            let mw = api.get(name).await.ok()?;
            let generation = mw.metadata.generation?;
            let ok = |t: &str| {
                condition(&mw, t).is_some_and(|c| {
                    c["status"] == "True" && c["observedGeneration"].as_i64() == Some(generation)
                })
            };
            (ok("Applied") && ok("Available")).then_some(mw)
        },
    )
    .await
}

/// Waits until a ManifestWork is gone from the hub.
pub async fn wait_mw_gone(hub: &kube::Client, cluster: &str, name: &str) {
    let api = mw_api(hub, cluster);
    eventually(&format!("{cluster}/{name} gone"), WAIT, || async {
        api.get_opt(name).await.unwrap().is_none().then_some(())
    })
    .await
}

pub async fn get_cm(spoke: &kube::Client, ns: &str, name: &str) -> Option<ConfigMap> {
    Api::<ConfigMap>::namespaced(spoke.clone(), ns)
        .get_opt(name)
        .await
        .unwrap()
}

pub async fn wait_cm<F: Fn(&ConfigMap) -> bool>(
    spoke: &kube::Client,
    ns: &str,
    name: &str,
    what: &str,
    f: F,
) -> ConfigMap {
    eventually(&format!("ConfigMap {ns}/{name}: {what}"), WAIT, || async {
        get_cm(spoke, ns, name).await.filter(|c| f(c))
    })
    .await
}

pub async fn wait_cm_gone(spoke: &kube::Client, ns: &str, name: &str) {
    eventually(&format!("ConfigMap {ns}/{name} gone"), WAIT, || async {
        get_cm(spoke, ns, name).await.is_none().then_some(())
    })
    .await
}

pub async fn create_ns(client: &kube::Client, name: &str) {
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<Namespace>::all(client.clone())
        .patch(
            name,
            &PatchParams::apply("test").force(),
            &Patch::Apply(&ns),
        )
        .await
        .unwrap();
}
