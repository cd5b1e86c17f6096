//! The managed cluster as the agent uses it: discovery, object CRUD, watches.
//!
//! [`Cluster`] is small on purpose so that the apply, delete, status and view logic can
//! be tested against `testing::FakeCluster` (feature `testing`); [`KubeCluster`] is the real one
//! (kube discovery + `DynamicObject`).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use drbridge_model::Gvk;
use drbridge_model::view::{no_kind_match_text, unknown_resource_text};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams,
    PostParams, Preconditions, PropagationPolicy,
};
use kube::core::PartialObjectMeta;
use kube::discovery::{ApiCapabilities, Scope};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, watcher};
use parking_lot::Mutex;
use serde_json::Value;
use tracing::debug;

/// A kind the API server serves.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Resolved {
    pub group: String,
    pub version: String,
    pub kind: String,
    /// Plural resource name.
    pub plural: String,
    pub namespaced: bool,
}

impl Resolved {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn api_resource(&self) -> ApiResource {
        ApiResource {
            group: self.group.clone(),
            version: self.version.clone(),
            api_version: self.api_version(),
            kind: self.kind.clone(),
            plural: self.plural.clone(),
        }
    }

    fn from_discovery(ar: &ApiResource, caps: &ApiCapabilities) -> Self {
        Resolved {
            group: ar.group.clone(),
            version: ar.version.clone(),
            kind: ar.kind.clone(),
            plural: ar.plural.clone(),
            namespaced: caps.scope == Scope::Namespaced,
        }
    }
}

/// An API error, reduced to what the agent acts on. Texts are the API server's, so they
/// read like the Go client's errors in OCM's conditions.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// Discovery does not know the kind or resource.
    #[error("{0}")]
    NoKind(String),
    /// Another error the API server returned (forbidden, invalid, ...).
    #[error("{0}")]
    Api(String),
    /// No answer from the API server (connection, timeout): never a reason to conclude
    /// that something is absent.
    #[error("{0}")]
    Transport(String),
}

impl ClusterError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, ClusterError::NotFound(_))
    }
}

impl From<kube::Error> for ClusterError {
    fn from(e: kube::Error) -> Self {
        match e {
            kube::Error::Api(s) => match s.code {
                404 => ClusterError::NotFound(s.message.clone()),
                409 => ClusterError::Conflict(s.message.clone()),
                _ => ClusterError::Api(if s.message.is_empty() {
                    s.to_string()
                } else {
                    s.message.clone()
                }),
            },
            other => ClusterError::Transport(other.to_string()),
        }
    }
}

/// A watch, reduced to what the agent needs. `Restarted` carries the whole current list
/// (the watcher's Init..InitDone), so "absent" is only concluded from a complete list.
#[derive(Clone, Debug, PartialEq)]
pub enum WatchEvent {
    Restarted(Vec<Value>),
    Applied(Value),
    Deleted(Value),
}

pub type WatchStream = BoxStream<'static, Result<WatchEvent, ClusterError>>;

/// What the agent does with the managed cluster.
pub trait Cluster: Send + Sync + 'static {
    /// Maps a kind (group, version, kind) to its resource.
    fn resolve_kind(
        &self,
        gvk: &Gvk,
    ) -> impl Future<Output = Result<Resolved, ClusterError>> + Send;
    /// Maps a resource name (plural) in a group, optionally pinned to a version.
    fn resolve_resource(
        &self,
        group: &str,
        version: &str,
        plural: &str,
    ) -> impl Future<Output = Result<Resolved, ClusterError>> + Send;
    fn get(
        &self,
        r: &Resolved,
        ns: &str,
        name: &str,
    ) -> impl Future<Output = Result<Option<Value>, ClusterError>> + Send;
    fn create(
        &self,
        r: &Resolved,
        ns: &str,
        obj: Value,
    ) -> impl Future<Output = Result<Value, ClusterError>> + Send;
    fn replace(
        &self,
        r: &Resolved,
        ns: &str,
        name: &str,
        obj: Value,
    ) -> impl Future<Output = Result<Value, ClusterError>> + Send;
    fn server_side_apply(
        &self,
        r: &Resolved,
        ns: &str,
        name: &str,
        obj: Value,
        field_manager: &str,
        force: bool,
    ) -> impl Future<Output = Result<Value, ClusterError>> + Send;
    /// Deletes with background propagation; with `uid`, only that incarnation.
    fn delete(
        &self,
        r: &Resolved,
        ns: &str,
        name: &str,
        uid: Option<&str>,
    ) -> impl Future<Output = Result<(), ClusterError>> + Send;
    /// Metadata-only watch of every object of a kind.
    fn watch_kind(&self, r: &Resolved) -> WatchStream;
    /// Full-object watch of one object.
    fn watch_object(&self, r: &Resolved, ns: &str, name: &str) -> WatchStream;
    /// `gitVersion` of the API server.
    fn server_version(&self) -> impl Future<Output = Result<String, ClusterError>> + Send;
}

/// How long a failed discovery is remembered, so a work with an unknown kind does not
/// hammer discovery, while a CRD installed later is found soon.
const NEGATIVE_DISCOVERY_TTL: Duration = Duration::from_secs(5);

/// A discovery answer and when it was obtained.
type CachedKind = (Result<Resolved, ClusterError>, Instant);

/// [`Cluster`] over a kube client.
#[derive(Clone)]
pub struct KubeCluster {
    client: kube::Client,
    kinds: Arc<Mutex<HashMap<Gvk, CachedKind>>>,
}

impl std::fmt::Debug for KubeCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeCluster").finish_non_exhaustive()
    }
}

impl KubeCluster {
    pub fn new(client: kube::Client) -> Self {
        KubeCluster {
            client,
            kinds: Arc::default(),
        }
    }

    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    fn api(&self, r: &Resolved, ns: &str) -> Api<DynamicObject> {
        let ar = r.api_resource();
        if r.namespaced {
            Api::namespaced_with(self.client.clone(), ns, &ar)
        } else {
            Api::all_with(self.client.clone(), &ar)
        }
    }
}

fn to_value(o: DynamicObject) -> Result<Value, ClusterError> {
    serde_json::to_value(o).map_err(|e| ClusterError::Api(format!("encoding object: {e}")))
}

fn to_object(v: Value) -> Result<DynamicObject, ClusterError> {
    serde_json::from_value(v).map_err(|e| ClusterError::Api(format!("decoding object: {e}")))
}

/// Folds a kube watcher stream into [`WatchEvent`]s.
fn fold_watch<K, S>(stream: S) -> WatchStream
where
    K: serde::Serialize + Send + 'static,
    S: futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
{
    let mut buffer: Vec<Value> = Vec::new();
    stream
        .map(move |ev| -> Option<Result<WatchEvent, ClusterError>> {
            let json = |k: &K| serde_json::to_value(k).unwrap_or(Value::Null);
            match ev {
                Ok(watcher::Event::Init) => {
                    buffer.clear();
                    None
                }
                Ok(watcher::Event::InitApply(k)) => {
                    buffer.push(json(&k));
                    None
                }
                Ok(watcher::Event::InitDone) => {
                    Some(Ok(WatchEvent::Restarted(std::mem::take(&mut buffer))))
                }
                Ok(watcher::Event::Apply(k)) => Some(Ok(WatchEvent::Applied(json(&k)))),
                Ok(watcher::Event::Delete(k)) => Some(Ok(WatchEvent::Deleted(json(&k)))),
                Err(e) => Some(Err(watch_error(e))),
            }
        })
        .filter_map(futures::future::ready)
        .boxed()
}

fn watch_error(e: watcher::Error) -> ClusterError {
    match e {
        watcher::Error::InitialListFailed(k)
        | watcher::Error::WatchStartFailed(k)
        | watcher::Error::WatchFailed(k) => ClusterError::from(k),
        watcher::Error::WatchError(s) => ClusterError::Api(s.message.clone()),
        other => ClusterError::Transport(other.to_string()),
    }
}

impl Cluster for KubeCluster {
    async fn resolve_kind(&self, gvk: &Gvk) -> Result<Resolved, ClusterError> {
        if let Some((res, at)) = self.kinds.lock().get(gvk).cloned()
            && (res.is_ok() || at.elapsed() < NEGATIVE_DISCOVERY_TTL)
        {
            return res;
        }
        let k = GroupVersionKind::gvk(&gvk.group, &gvk.version, &gvk.kind);
        let res = match kube::discovery::pinned_kind(&self.client, &k).await {
            Ok((ar, caps)) => Ok(Resolved::from_discovery(&ar, &caps)),
            Err(kube::Error::Api(s)) if s.code == 404 => Err(ClusterError::NoKind(
                no_kind_match_text(&gvk.group, &gvk.version, &gvk.kind),
            )),
            Err(kube::Error::Discovery(_)) => Err(ClusterError::NoKind(no_kind_match_text(
                &gvk.group,
                &gvk.version,
                &gvk.kind,
            ))),
            // Do not cache "cannot ask".
            Err(e) => return Err(ClusterError::from(e)),
        };
        debug!(?gvk, ok = res.is_ok(), "discovery");
        self.kinds
            .lock()
            .insert(gvk.clone(), (res.clone(), Instant::now()));
        res
    }

    async fn resolve_resource(
        &self,
        group: &str,
        version: &str,
        plural: &str,
    ) -> Result<Resolved, ClusterError> {
        let unknown = || ClusterError::NoKind(unknown_resource_text(plural));
        let g = match kube::discovery::group(&self.client, group).await {
            Ok(g) => g,
            Err(kube::Error::Api(s)) if s.code == 404 => return Err(unknown()),
            Err(kube::Error::Discovery(_)) => return Err(unknown()),
            Err(e) => return Err(ClusterError::from(e)),
        };
        let pairs = if version.is_empty() {
            g.recommended_resources()
        } else {
            g.versioned_resources(version)
        };
        pairs
            .iter()
            .find(|(ar, _)| ar.plural == plural)
            .map(|(ar, caps)| Resolved::from_discovery(ar, caps))
            .ok_or_else(unknown)
    }

    async fn get(&self, r: &Resolved, ns: &str, name: &str) -> Result<Option<Value>, ClusterError> {
        match self.api(r, ns).get_opt(name).await? {
            Some(o) => Ok(Some(to_value(o)?)),
            None => Ok(None),
        }
    }

    async fn create(&self, r: &Resolved, ns: &str, obj: Value) -> Result<Value, ClusterError> {
        to_value(
            self.api(r, ns)
                .create(&PostParams::default(), &to_object(obj)?)
                .await?,
        )
    }

    async fn replace(
        &self,
        r: &Resolved,
        ns: &str,
        name: &str,
        obj: Value,
    ) -> Result<Value, ClusterError> {
        to_value(
            self.api(r, ns)
                .replace(name, &PostParams::default(), &to_object(obj)?)
                .await?,
        )
    }

    async fn server_side_apply(
        &self,
        r: &Resolved,
        ns: &str,
        name: &str,
        obj: Value,
        field_manager: &str,
        force: bool,
    ) -> Result<Value, ClusterError> {
        let mut pp = PatchParams::apply(field_manager);
        if force {
            pp = pp.force();
        }
        to_value(self.api(r, ns).patch(name, &pp, &Patch::Apply(obj)).await?)
    }

    async fn delete(
        &self,
        r: &Resolved,
        ns: &str,
        name: &str,
        uid: Option<&str>,
    ) -> Result<(), ClusterError> {
        let dp = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            preconditions: uid.map(|u| Preconditions {
                uid: Some(u.to_string()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        self.api(r, ns).delete(name, &dp).await?;
        Ok(())
    }

    fn watch_kind(&self, r: &Resolved) -> WatchStream {
        let api: Api<PartialObjectMeta<DynamicObject>> =
            Api::all_with(self.client.clone(), &r.api_resource());
        fold_watch(watcher(api, watcher::Config::default()).default_backoff())
    }

    fn watch_object(&self, r: &Resolved, ns: &str, name: &str) -> WatchStream {
        let cfg = watcher::Config::default().fields(&format!("metadata.name={name}"));
        fold_watch(
            watcher(self.api(r, ns), cfg)
                .default_backoff()
                .map_ok(|e| e),
        )
    }

    async fn server_version(&self) -> Result<String, ClusterError> {
        Ok(self.client.apiserver_version().await?.git_version)
    }
}
