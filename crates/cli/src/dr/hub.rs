//! Reading what `drbridge dr` needs from a Ramen hub: the DRPC and everything around it.
//! Only Kubernetes APIs are used, so this works on any Ramen hub (OCM's or drbridge's).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, bail};
use drbridge_api::apps::PlacementRule;
use drbridge_api::cluster::consts::PLACEMENT_LABEL;
use drbridge_api::cluster::{ClusterDecision, ManagedCluster, PlacementDecision};
use drbridge_api::view::ManagedClusterView;
use drbridge_api::work::ManifestWork;
use drbridge_dr::config::{self, S3StoreProfile};
use drbridge_dr::connection::Connection;
use drbridge_dr::consts::config as ramen_config;
use drbridge_dr::consts::vrg_view_name;
use drbridge_dr::status::current_cluster;
use drbridge_dr::types::{DRCluster, DRPlacementControl, DRPolicy};
use drbridge_dr::view::{UNREACHABLE_SINCE_ANNOTATION, VrgEvidence, vrg_from_view};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams};

/// Context for kube results. kube's API errors print the API server's Status twice (Display
/// and Debug); the user needs only its message.
pub trait KubeContext<T> {
    fn kctx<F: FnOnce() -> String>(self, what: F) -> anyhow::Result<T>;
}

impl<T> KubeContext<T> for Result<T, kube::Error> {
    fn kctx<F: FnOnce() -> String>(self, what: F) -> anyhow::Result<T> {
        self.map_err(|e| match e {
            kube::Error::Api(s) if !s.message.is_empty() => {
                anyhow::anyhow!("{}: {}", what(), s.message)
            }
            e => anyhow::Error::new(e).context(what()),
        })
    }
}

/// Field manager of every write `drbridge dr` makes.
pub const FIELD_MANAGER: &str = "drbridge-dr";

/// A client for the cluster of `kubeconfig` (else $KUBECONFIG, ~/.kube/config, in-cluster).
pub async fn client(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
) -> anyhow::Result<kube::Client> {
    drbridge_runtime::kube_client(kubeconfig, context)
        .await
        .context("the hub's client (--kubeconfig, KUBECONFIG, ~/.kube/config)")
}

/// Finds a DRPC: in `namespace` first, else the only one of that name in any namespace.
pub async fn find_drpc(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> anyhow::Result<DRPlacementControl> {
    let api: Api<DRPlacementControl> = Api::namespaced(client.clone(), namespace);
    if let Some(d) = api.get_opt(name).await.kctx(|| {
        format!("reading DRPlacementControl {namespace}/{name} (is Ramen's hub API installed?)")
    })? {
        return Ok(d);
    }
    let all: Api<DRPlacementControl> = Api::all(client.clone());
    let found: Vec<_> = all
        .list(&ListParams::default())
        .await
        .kctx(|| "listing DRPlacementControls".into())?
        .items
        .into_iter()
        .filter(|d| d.metadata.name.as_deref() == Some(name))
        .collect();
    match found.len() {
        1 => Ok(found.into_iter().next().unwrap_or_default()),
        0 => bail!(
            "there is no DRPlacementControl {name} (looked in namespace {namespace} and in all namespaces)"
        ),
        _ => bail!(
            "DRPlacementControl {name} exists in several namespaces ({}); say which with --ops-namespace",
            found
                .iter()
                .filter_map(|d| d.metadata.namespace.clone())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The DRPC again, by its namespace and name (`None` once it is gone).
pub async fn get_drpc(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> anyhow::Result<Option<DRPlacementControl>> {
    Api::<DRPlacementControl>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .kctx(|| format!("reading DRPlacementControl {namespace}/{name}"))
}

/// The decisions of the DRPC's Placement (or PlacementRule).
pub async fn decisions(
    client: &kube::Client,
    drpc: &DRPlacementControl,
) -> anyhow::Result<Vec<ClusterDecision>> {
    let r = &drpc.spec.placement_ref;
    let Some(name) = r.name.as_deref().filter(|n| !n.is_empty()) else {
        return Ok(vec![]);
    };
    let ns = r
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
        .or_else(|| drpc.metadata.namespace.clone())
        .unwrap_or_default();
    if r.kind.as_deref() == Some("PlacementRule") {
        let pr = Api::<PlacementRule>::namespaced(client.clone(), &ns)
            .get_opt(name)
            .await
            .unwrap_or(None);
        return Ok(pr
            .and_then(|p| p.status)
            .map(|s| {
                s.decisions
                    .into_iter()
                    .map(|d| ClusterDecision {
                        cluster_name: d.cluster_name,
                        reason: String::new(),
                    })
                    .collect()
            })
            .unwrap_or_default());
    }
    let pds = Api::<PlacementDecision>::namespaced(client.clone(), &ns)
        .list(&ListParams::default().labels(&format!("{PLACEMENT_LABEL}={name}")))
        .await;
    // A hub without the PlacementDecision API has no decisions; the DRPC's own status then
    // says where the application runs.
    Ok(pds
        .map(|l| {
            l.items
                .first()
                .map(|pd| drbridge_dr::status::decisions(Some(pd)))
                .unwrap_or_default()
        })
        .unwrap_or_default())
}

/// The DRPC's DRPolicy, if it can be read.
pub async fn policy_of(client: &kube::Client, drpc: &DRPlacementControl) -> Option<DRPolicy> {
    let name = drpc.spec.dr_policy_ref.name.as_deref()?;
    Api::<DRPolicy>::all(client.clone())
        .get_opt(name)
        .await
        .ok()
        .flatten()
}

/// Everything around one DRPC.
#[derive(Debug, Clone)]
pub struct Around {
    pub policy: Option<DRPolicy>,
    pub current: Option<String>,
    pub drclusters: Vec<DRCluster>,
    /// Per policy cluster (or, without a policy, per decision cluster).
    pub clusters: BTreeMap<String, (Connection, VrgEvidence)>,
}

/// Reads the DRPC's policy, placement, DRClusters, and for each cluster the hub's connection
/// and the VRG view Ramen keeps (`<drpc>-<namespace>-vrg-mcv` in the cluster's namespace).
pub async fn around(client: &kube::Client, drpc: &DRPlacementControl) -> anyhow::Result<Around> {
    let policy = policy_of(client, drpc).await;
    let decisions = decisions(client, drpc).await?;
    let current = current_cluster(&decisions, drpc);
    let mut names: Vec<String> = policy
        .as_ref()
        .map(|p| p.spec.dr_clusters.clone())
        .unwrap_or_default();
    for d in &decisions {
        if !names.contains(&d.cluster_name) {
            names.push(d.cluster_name.clone());
        }
    }
    let drclusters = Api::<DRCluster>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let ns = drpc.metadata.namespace.clone().unwrap_or_default();
    let name = drpc.metadata.name.clone().unwrap_or_default();
    let mut clusters = BTreeMap::new();
    for cluster in names {
        let (conn, vrg) = cluster_state(client, &cluster, &name, &ns).await;
        clusters.insert(cluster, (conn, vrg));
    }
    Ok(Around {
        policy,
        current,
        drclusters,
        clusters,
    })
}

fn unreachable_since(meta: &kube::api::ObjectMeta) -> Option<Time> {
    meta.annotations
        .as_ref()?
        .get(UNREACHABLE_SINCE_ANNOTATION)
        .and_then(|s| drbridge_dr::time::parse_time(s))
}

/// The hub's connection to `cluster` and the VRG of the DRPC there.
pub async fn cluster_state(
    client: &kube::Client,
    cluster: &str,
    drpc: &str,
    vrg_namespace: &str,
) -> (Connection, VrgEvidence) {
    let mc = Api::<ManagedCluster>::all(client.clone())
        .get_opt(cluster)
        .await
        .ok()
        .flatten();
    let view = Api::<ManagedClusterView>::namespaced(client.clone(), cluster)
        .get_opt(&vrg_view_name(drpc, vrg_namespace))
        .await
        .ok()
        .flatten();
    let mut since = view.as_ref().and_then(|v| unreachable_since(&v.metadata));
    if since.is_none() {
        // Without a view, the VRG's ManifestWork carries the same annotation.
        let mw = Api::<ManifestWork>::namespaced(client.clone(), cluster)
            .get_opt(&drbridge_api::ramen::manifest_work_names::vrg(
                drpc,
                vrg_namespace,
            ))
            .await
            .ok()
            .flatten();
        since = mw.as_ref().and_then(|w| unreachable_since(&w.metadata));
    }
    (
        Connection::new(mc.as_ref(), since),
        vrg_from_view(view.as_ref()),
    )
}

/// The hub's connection to each of `names`.
pub async fn connections(client: &kube::Client, names: &[String]) -> BTreeMap<String, Connection> {
    let mut out = BTreeMap::new();
    for n in names {
        let mc = Api::<ManagedCluster>::all(client.clone())
            .get_opt(n)
            .await
            .ok()
            .flatten();
        out.insert(n.clone(), Connection::new(mc.as_ref(), None));
    }
    out
}

/// A stream that yields once per watch event of `api` (restarting with backoff on errors):
/// what the followers wake on instead of polling. `name` limits it to one object.
pub fn wake_on<K>(api: Api<K>, name: Option<&str>) -> futures::stream::BoxStream<'static, ()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    use futures::StreamExt;
    use kube::runtime::{WatchStreamExt, watcher};
    let cfg = match name {
        Some(n) => watcher::Config::default().fields(&format!("metadata.name={n}")),
        None => watcher::Config::default(),
    };
    watcher(api, cfg).default_backoff().map(|_| ()).boxed()
}

/// Every object of a kind of Ramen's hub API (`plural` names it in the error).
pub async fn list_all<K>(client: &kube::Client, plural: &str) -> anyhow::Result<Vec<K>>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    Ok(Api::<K>::all(client.clone())
        .list(&ListParams::default())
        .await
        .kctx(|| format!("listing {plural} (is Ramen's hub API installed?)"))?
        .items)
}

/// The time now, for ages.
pub fn now() -> Timestamp {
    Timestamp::now()
}

/// The S3 profiles in the hub's RamenConfig, in Ramen's operator namespace `ramen_namespace`.
pub async fn profiles(
    client: &kube::Client,
    ramen_namespace: &str,
) -> anyhow::Result<Vec<S3StoreProfile>> {
    let cm = Api::<ConfigMap>::namespaced(client.clone(), ramen_namespace)
        .get_opt(ramen_config::HUB_CONFIGMAP)
        .await?;
    let yaml = cm
        .and_then(|c| c.data)
        .and_then(|d| d.get(ramen_config::KEY).cloned());
    Ok(config::profiles(
        yaml.as_deref(),
        &format!(
            "ConfigMap {}/{}",
            ramen_namespace,
            ramen_config::HUB_CONFIGMAP
        ),
    )?)
}
