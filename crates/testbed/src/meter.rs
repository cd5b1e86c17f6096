//! Watches on both ends of drbridge's transport, feeding a [`TransportMeter`]: a ManifestWork
//! generation the hub writes until the hub sees it Applied for that generation, and a VRG
//! change on a managed cluster until the hub's view shows that resourceVersion. With one
//! clock on both ends, the meter says how much of a DR phase was spent in transport.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use drbridge_api::view::ManagedClusterView;
use drbridge_api::work::ManifestWork;
use drbridge_api::work::consts::condition::APPLIED;
use drbridge_dr::demo::TransportMeter;
use drbridge_dr::types::VolumeReplicationGroup;
use drbridge_dr::view::VrgEvidence;
use futures::StreamExt;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use tokio::task::JoinHandle;

/// The running watches; they stop when this is dropped.
#[derive(Debug)]
pub struct Meters {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Meters {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Starts the watches: works and views in each managed cluster's hub namespace, VRGs on each
/// managed cluster. Times are offsets from `base`.
pub fn start(
    hub: &kube::Client,
    spokes: &[(String, kube::Client)],
    meter: Arc<Mutex<TransportMeter>>,
    base: Instant,
) -> Meters {
    let mut tasks = Vec::new();
    for (cluster, spoke) in spokes {
        let works: Api<ManifestWork> = Api::namespaced(hub.clone(), cluster);
        let m = meter.clone();
        tasks.push(tokio::spawn(async move {
            let mut s = watcher(works, watcher::Config::default())
                .default_backoff()
                .applied_objects()
                .boxed();
            while let Some(Ok(w)) = s.next().await {
                let key = format!(
                    "work {}/{}",
                    w.metadata.namespace.clone().unwrap_or_default(),
                    w.metadata.name.clone().unwrap_or_default()
                );
                let g = w.metadata.generation.unwrap_or_default();
                let applied = w.status.as_ref().is_some_and(|s| {
                    s.conditions
                        .iter()
                        .any(|c| c.type_ == APPLIED && c.observed_generation == Some(g))
                });
                let mut m = m.lock().expect("meter");
                m.sent(&key, &g.to_string(), base.elapsed());
                if applied {
                    m.arrived(&key, &g.to_string(), base.elapsed());
                }
            }
        }));
        let views: Api<ManagedClusterView> = Api::namespaced(hub.clone(), cluster);
        let (m, c) = (meter.clone(), cluster.clone());
        tasks.push(tokio::spawn(async move {
            let mut s = watcher(views, watcher::Config::default())
                .default_backoff()
                .applied_objects()
                .boxed();
            while let Some(Ok(v)) = s.next().await {
                if let VrgEvidence::Found {
                    vrg,
                    stale_since: None,
                } = drbridge_dr::view::vrg_from_view(Some(&v))
                    && let Some(rv) = &vrg.metadata.resource_version
                {
                    let key = vrg_key(&c, &vrg);
                    m.lock().expect("meter").arrived(&key, rv, base.elapsed());
                }
            }
        }));
        let vrgs: Api<VolumeReplicationGroup> = Api::all(spoke.clone());
        let (m, c) = (meter.clone(), cluster.clone());
        tasks.push(tokio::spawn(async move {
            let mut s = watcher(vrgs, watcher::Config::default())
                .default_backoff()
                .applied_objects()
                .boxed();
            while let Some(item) = s.next().await {
                if let Ok(v) = item
                    && let Some(rv) = &v.metadata.resource_version
                {
                    let key = vrg_key(&c, &v);
                    m.lock().expect("meter").sent(&key, rv, base.elapsed());
                }
            }
        }));
    }
    Meters { tasks }
}

fn vrg_key(cluster: &str, vrg: &VolumeReplicationGroup) -> String {
    format!(
        "vrg {cluster}/{}/{}",
        vrg.metadata.namespace.as_deref().unwrap_or_default(),
        vrg.metadata.name.as_deref().unwrap_or_default()
    )
}
