//! A cluster's desired state, as its agent should hold it, and how a ManifestWork or a
//! ManagedClusterView becomes the message the agent gets. The index builds it
//! ([`crate::index`]); streams diff and send it ([`crate::sync`], [`crate::grpc`]).

use std::collections::{BTreeMap, VecDeque};
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

/// Desired state of one cluster, as its agent should have it, with a bounded log of which
/// works and views changed: a stream reads what changed since the version it last sent
/// instead of cloning and diffing the whole state on every change.
#[derive(Clone, Debug, Default)]
pub struct Desired {
    /// False once the cluster's ManagedCluster is gone: its stream must end.
    pub registered: bool,
    pub works: BTreeMap<String, Arc<pb::Work>>,
    pub views: BTreeMap<String, Arc<pb::View>>,
    /// Bumped by every change.
    version: u64,
    /// What each change since `forgotten` touched, oldest first, with its version.
    log: VecDeque<(u64, Changed)>,
    /// The log no longer holds changes up to this version.
    forgotten: u64,
}

/// The name of a work or view whose desired version changed (added, changed or gone).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Changed {
    Work(String),
    View(String),
}

/// Changes kept beyond one per work and view: past that, diffing the whole state costs no
/// more than reading the log, so a longer log would only hold memory.
const LOG_SLACK: usize = 32;

/// Identity of a desired work: an agent that holds the same (uid, generation,
/// deleting) holds the same work, because any spec change bumps the generation.
pub fn work_version(w: &pb::Work) -> (&str, i64, bool) {
    (&w.uid, w.generation, w.deleting)
}

fn view_version(v: &pb::View) -> (&str, i64) {
    (&v.uid, v.generation)
}

fn same_work(a: Option<&Arc<pb::Work>>, b: Option<&Arc<pb::Work>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => work_version(a) == work_version(b),
        (None, None) => true,
        _ => false,
    }
}

fn same_view(a: Option<&Arc<pb::View>>, b: Option<&Arc<pb::View>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => view_version(a) == view_version(b),
        (None, None) => true,
        _ => false,
    }
}

impl Desired {
    /// A registered cluster's state with these works and views (version 0, nothing logged).
    pub fn new(
        works: BTreeMap<String, Arc<pb::Work>>,
        views: BTreeMap<String, Arc<pb::View>>,
    ) -> Desired {
        Desired {
            registered: true,
            works,
            views,
            ..Default::default()
        }
    }

    /// The version of this state; every change bumps it.
    pub fn version(&self) -> u64 {
        self.version
    }

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

    fn record(&mut self, what: Changed) {
        self.version += 1;
        self.log.push_back((self.version, what));
        let cap = self.works.len() + self.views.len() + LOG_SLACK;
        while self.log.len() > cap {
            if let Some((v, _)) = self.log.pop_front() {
                self.forgotten = v;
            }
        }
    }

    /// Sets (or, with `None`, removes) work `name`; true if its version changed.
    pub fn set_work(&mut self, name: &str, work: Option<Arc<pb::Work>>) -> bool {
        if same_work(self.works.get(name), work.as_ref()) {
            return false;
        }
        match work {
            Some(w) => self.works.insert(name.to_string(), w),
            None => self.works.remove(name),
        };
        self.record(Changed::Work(name.to_string()));
        true
    }

    /// Sets (or, with `None`, removes) view `name`; true if its version changed.
    pub fn set_view(&mut self, name: &str, view: Option<Arc<pb::View>>) -> bool {
        if same_view(self.views.get(name), view.as_ref()) {
            return false;
        }
        match view {
            Some(v) => self.views.insert(name.to_string(), v),
            None => self.views.remove(name),
        };
        self.record(Changed::View(name.to_string()));
        true
    }

    /// Becomes `new` (a relist, a cluster registered or gone), logging each work and view
    /// that differs; true if anything did.
    pub fn replace(&mut self, new: Desired) -> bool {
        let mut changed = false;
        if self.registered != new.registered {
            self.registered = new.registered;
            self.version += 1;
            changed = true;
        }
        let gone: Vec<String> = self
            .works
            .keys()
            .filter(|n| !new.works.contains_key(*n))
            .cloned()
            .collect();
        for n in gone {
            changed |= self.set_work(&n, None);
        }
        for (n, w) in new.works {
            changed |= self.set_work(&n, Some(w));
        }
        let gone: Vec<String> = self
            .views
            .keys()
            .filter(|n| !new.views.contains_key(*n))
            .cloned()
            .collect();
        for n in gone {
            changed |= self.set_view(&n, None);
        }
        for (n, v) in new.views {
            changed |= self.set_view(&n, Some(v));
        }
        changed
    }

    /// The works and views changed after `version`, each once, sorted; `None` when the log no
    /// longer reaches back that far (the caller diffs the whole state instead).
    pub fn changed_since(&self, version: u64) -> Option<Vec<Changed>> {
        if version < self.forgotten {
            return None;
        }
        let mut out: Vec<Changed> = self
            .log
            .iter()
            .rev()
            .take_while(|(v, _)| *v > version)
            .map(|(_, c)| c.clone())
            .collect();
        out.sort();
        out.dedup();
        Some(out)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn work(name: &str, generation: i64) -> Arc<pb::Work> {
        Arc::new(pb::Work {
            name: name.into(),
            uid: format!("{name}-uid"),
            generation,
            manifests: vec![b"{}".to_vec()],
            ..Default::default()
        })
    }

    #[test]
    fn only_a_new_version_is_a_change() {
        let mut d = Desired::new(BTreeMap::new(), BTreeMap::new());
        assert!(d.set_work("a", Some(work("a", 1))));
        let v = d.version();
        // The same (uid, generation, deleting): no change, nothing logged.
        assert!(!d.set_work("a", Some(work("a", 1))));
        assert!(!d.set_work("b", None));
        assert_eq!(d.version(), v);
        assert_eq!(d.changed_since(v), Some(vec![]));
        assert!(d.set_work("a", Some(work("a", 2))));
        assert!(d.set_work("b", Some(work("b", 1))));
        assert!(d.set_work("a", None));
        assert_eq!(
            d.changed_since(v),
            Some(vec![Changed::Work("a".into()), Changed::Work("b".into())]),
            "each name once, sorted"
        );
        assert_eq!(d.changed_since(d.version()), Some(vec![]));
    }

    #[test]
    fn the_log_is_bounded_and_a_reader_behind_it_is_told_so() {
        let mut d = Desired::new(BTreeMap::new(), BTreeMap::new());
        d.set_work("a", Some(work("a", 1)));
        let start = d.version();
        for g in 2..200 {
            d.set_work("a", Some(work("a", g)));
        }
        assert!(d.log.len() <= 1 + LOG_SLACK);
        assert_eq!(d.changed_since(start), None, "must diff everything");
        assert_eq!(
            d.changed_since(d.version() - 1),
            Some(vec![Changed::Work("a".into())])
        );
    }

    #[test]
    fn replace_logs_every_difference_and_only_those() {
        let mut d = Desired::new(
            [("a", 1), ("b", 1), ("c", 1)]
                .into_iter()
                .map(|(n, g)| (n.to_string(), work(n, g)))
                .collect(),
            BTreeMap::new(),
        );
        let v = d.version();
        let new = Desired::new(
            [("a", 1), ("b", 2), ("d", 1)]
                .into_iter()
                .map(|(n, g)| (n.to_string(), work(n, g)))
                .collect(),
            BTreeMap::new(),
        );
        assert!(d.replace(new.clone()));
        assert!(d.same_as(&new));
        let names = ["b", "c", "d"].map(|n| Changed::Work(n.into())).to_vec();
        assert_eq!(d.changed_since(v), Some(names));
        let v = d.version();
        assert!(!d.replace(new));
        assert_eq!(d.version(), v);
        // Unregistered: every work leaves, and the flag alone is a change.
        assert!(d.replace(Desired::default()));
        assert!(!d.registered && d.works.is_empty());
    }
}
