//! Kubernetes watches feeding the index.
//!
//! Objects are read as `DynamicObject` (only `metadata` must be valid) and decoded by
//! [`crate::objects`], so a malformed ManifestWork becomes a rejected entry with a
//! condition instead of a broken watch. `Init`..`InitDone` is buffered and applied as
//! one `reset_*`, so a relist never shows a partial state.

use futures::{Stream, StreamExt};
use kube::api::{Api, DynamicObject};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::index::{Index, SharedIndex};
use crate::objects::{ClusterObject, ViewObject, WorkObject};
use crate::objects::{cluster_resource, view_resource, work_resource};

/// A kind the index holds.
pub trait Indexed: Sized + Send + 'static {
    const NAME: &'static str;
    fn decode(obj: &DynamicObject) -> Option<Self>;
    fn apply(index: &mut Index, obj: Self);
    fn delete(index: &mut Index, namespace: &str, name: &str);
    fn reset(index: &mut Index, objs: Vec<Self>);
}

impl Indexed for WorkObject {
    const NAME: &'static str = "manifestworks";
    fn decode(obj: &DynamicObject) -> Option<Self> {
        WorkObject::from_dynamic(obj)
    }
    fn apply(index: &mut Index, obj: Self) {
        if let Err(e) = &obj.spec {
            info!(key = %obj.meta.key(), error = %e, "ManifestWork spec cannot be decoded; it is not dispatched");
        }
        index.apply_work(obj)
    }
    fn delete(index: &mut Index, namespace: &str, name: &str) {
        index.delete_work(namespace, name)
    }
    fn reset(index: &mut Index, objs: Vec<Self>) {
        index.reset_works(objs)
    }
}

impl Indexed for ViewObject {
    const NAME: &'static str = "managedclusterviews";
    fn decode(obj: &DynamicObject) -> Option<Self> {
        ViewObject::from_dynamic(obj)
    }
    fn apply(index: &mut Index, obj: Self) {
        index.apply_view(obj)
    }
    fn delete(index: &mut Index, namespace: &str, name: &str) {
        index.delete_view(namespace, name)
    }
    fn reset(index: &mut Index, objs: Vec<Self>) {
        index.reset_views(objs)
    }
}

impl Indexed for ClusterObject {
    const NAME: &'static str = "managedclusters";
    fn decode(obj: &DynamicObject) -> Option<Self> {
        ClusterObject::from_dynamic(obj)
    }
    fn apply(index: &mut Index, obj: Self) {
        index.apply_cluster(obj)
    }
    fn delete(index: &mut Index, _namespace: &str, name: &str) {
        index.delete_cluster(name)
    }
    fn reset(index: &mut Index, objs: Vec<Self>) {
        index.reset_clusters(objs)
    }
}

/// Applies watch events to the index until the stream ends. Errors are logged; the
/// watcher's backoff retries.
pub async fn drive<T, S>(index: SharedIndex, events: S)
where
    T: Indexed,
    S: Stream<Item = Result<Event<DynamicObject>, watcher::Error>>,
{
    futures::pin_mut!(events);
    let mut buffer: Option<Vec<T>> = None;
    while let Some(ev) = events.next().await {
        match ev {
            Ok(Event::Init) => buffer = Some(Vec::new()),
            Ok(Event::InitApply(o)) => match T::decode(&o) {
                Some(obj) => buffer.get_or_insert_with(Vec::new).push(obj),
                None => warn!(kind = T::NAME, "object without a name ignored"),
            },
            Ok(Event::InitDone) => {
                let objs = buffer.take().unwrap_or_default();
                info!(kind = T::NAME, count = objs.len(), "listed");
                T::reset(&mut index.write(), objs);
            }
            Ok(Event::Apply(o)) => match T::decode(&o) {
                Some(obj) => T::apply(&mut index.write(), obj),
                None => warn!(kind = T::NAME, "object without a name ignored"),
            },
            Ok(Event::Delete(o)) => {
                let ns = o.metadata.namespace.clone().unwrap_or_default();
                if let Some(name) = &o.metadata.name {
                    debug!(kind = T::NAME, %ns, %name, "deleted");
                    T::delete(&mut index.write(), &ns, name);
                }
            }
            Err(e) => warn!(kind = T::NAME, error = %e, "watch failed; retrying"),
        }
    }
}

/// Spawns the three watches (all namespaces: the index keeps only what is in a
/// registered cluster's namespace relevant).
pub fn spawn_all(client: kube::Client, index: SharedIndex) -> Vec<tokio::task::JoinHandle<()>> {
    let cfg = watcher::Config::default();
    let works = watcher::watcher(
        Api::<DynamicObject>::all_with(client.clone(), &work_resource()),
        cfg.clone(),
    )
    .default_backoff();
    let views = watcher::watcher(
        Api::<DynamicObject>::all_with(client.clone(), &view_resource()),
        cfg.clone(),
    )
    .default_backoff();
    let clusters = watcher::watcher(
        Api::<DynamicObject>::all_with(client, &cluster_resource()),
        cfg,
    )
    .default_backoff();
    vec![
        tokio::spawn(
            drive::<WorkObject, _>(index.clone(), works)
                .instrument(info_span!("watch", kind = "manifestworks")),
        ),
        tokio::spawn(
            drive::<ViewObject, _>(index.clone(), views)
                .instrument(info_span!("watch", kind = "managedclusterviews")),
        ),
        tokio::spawn(
            drive::<ClusterObject, _>(index, clusters)
                .instrument(info_span!("watch", kind = "managedclusters")),
        ),
    ]
}
