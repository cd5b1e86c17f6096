//! A cluster's desired state, as its agent should hold it, and how a ManifestWork or a
//! ManagedClusterView becomes the message the agent gets. The index builds it
//! ([`crate::index`]); streams diff and send it ([`crate::sync`], [`crate::grpc`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use drbridge_proto::v1 as pb;
use prost::Message;

use crate::objects::{ViewObject, WorkObject};

/// Default cap on one encoded `Sync`: under tonic's default 4 MiB decode limit, so an
/// agent with default settings accepts every message.
pub const DEFAULT_MAX_SYNC_BYTES: usize = 4 * 1024 * 1024 - 64 * 1024;
/// Room kept in every `Sync` for its own fields and the `HubMessage` envelope.
pub const SYNC_OVERHEAD: usize = 1024;

/// Reason of the `Applied=False` condition on a work whose spec cannot be decoded.
pub const REASON_INVALID: &str = "ManifestWorkInvalid";
/// Reason of the `Applied=False` condition on a work too large to dispatch.
pub const REASON_TOO_LARGE: &str = "ManifestWorkTooLarge";

/// Desired state of one cluster, as its agent should have it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Desired {
    /// False once the cluster's ManagedCluster is gone: its stream must end.
    pub registered: bool,
    pub works: BTreeMap<String, Arc<pb::Work>>,
    pub views: BTreeMap<String, Arc<pb::View>>,
}

/// Identity of a desired work: an agent that holds the same (uid, generation,
/// deleting) holds the same work, because any spec change bumps the generation.
pub fn work_version(w: &pb::Work) -> (&str, i64, bool) {
    (&w.uid, w.generation, w.deleting)
}

fn view_version(v: &pb::View) -> (&str, i64) {
    (&v.uid, v.generation)
}

impl Desired {
    /// Compares by versions, not by content (manifests can be megabytes).
    pub fn same_as(&self, other: &Desired) -> bool {
        self.registered == other.registered
            && self.works.len() == other.works.len()
            && self.views.len() == other.views.len()
            && self
                .works
                .iter()
                .zip(other.works.iter())
                .all(|((a, aw), (b, bw))| a == b && work_version(aw) == work_version(bw))
            && self
                .views
                .iter()
                .zip(other.views.iter())
                .all(|((a, av), (b, bv))| a == b && view_version(av) == view_version(bv))
    }
}

/// Why a work is not dispatched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub reason: &'static str,
    pub message: String,
}

/// Limits on what the index dispatches.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest encoded `Work` message; larger works are rejected with a condition.
    pub max_work_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_work_bytes: DEFAULT_MAX_SYNC_BYTES - SYNC_OVERHEAD,
        }
    }
}

/// The `Work` an agent gets for `obj`, or why it gets nothing.
pub fn wire_work(obj: &WorkObject, limits: &Limits) -> Result<Arc<pb::Work>, Rejection> {
    let spec = obj.spec.as_ref().map_err(|e| Rejection {
        reason: REASON_INVALID,
        message: format!("ManifestWork cannot be dispatched: {e}"),
    })?;
    let mut work = pb::Work {
        name: obj.meta.name.clone(),
        uid: obj.meta.uid.clone(),
        generation: obj.meta.generation,
        manifests: Vec::new(),
        delete_option: Some(spec.delete_option.clone()),
        manifest_configs: spec.manifest_configs.clone(),
        deleting: obj.meta.deleting,
    };
    // A deleting work carries no manifests: the agent deletes what its own record
    // says it applied, so even an over-size work can always be deleted.
    if !obj.meta.deleting {
        if spec.missing_workload {
            // Never "no manifests": that would delete everything the agent applied.
            // Left out of the desired state, the agent keeps what it has.
            return Err(Rejection {
                reason: REASON_INVALID,
                message: "ManifestWork cannot be dispatched: spec.workload is missing (an empty work is written `workload: {manifests: []}`); the managed cluster keeps the last generation it applied".to_string(),
            });
        }
        work.manifests = spec.manifests.clone();
        let size = work.encoded_len();
        if size > limits.max_work_bytes {
            return Err(Rejection {
                reason: REASON_TOO_LARGE,
                message: format!(
                    "ManifestWork cannot be dispatched: its manifests encode to {size} bytes, more than the hub's limit of {} bytes",
                    limits.max_work_bytes
                ),
            });
        }
    }
    Ok(Arc::new(work))
}

/// The `View` an agent gets for `v`.
pub fn wire_view(v: &ViewObject) -> Arc<pb::View> {
    Arc::new(pb::View {
        name: v.meta.name.clone(),
        uid: v.meta.uid.clone(),
        generation: v.meta.generation,
        scope: Some(v.scope.clone()),
    })
}
