//! The hub's Kubernetes Events: what an operator must notice, on the object
//! `kubectl describe` shows it with.
//!
//! | object | reason | type | when |
//! |---|---|---|---|
//! | ManagedCluster | `ClusterLost` | Warning | Available went from True to Unknown |
//! | ManagedCluster | `ClusterAvailable` | Normal | Available became True |
//! | ManagedCluster | `AgentJoined` | Normal | an agent redeemed a join token |
//! | ManagedCluster | `CertificateRotated` | Normal | an agent renewed its certificate |
//! | ManagedCluster | `AgentRemoved` | Warning | the cluster's identity was removed |
//! | ManifestWork | `ManifestRefused` | Warning | the agent's allowlist refused a manifest |
//! | ManifestWork | `ManifestFailed` | Warning | a manifest could not be applied |
//! | ManifestWork | `WorkRejected` | Warning | the hub refused to dispatch the work |
//!
//! Status-derived Events are announced by the status writer after a write, so only the
//! leader announces them, and only on a change: a manifest that keeps failing is announced
//! once per failure (message), not on every report.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use drbridge_model::allowlist::is_refusal;
use drbridge_model::status::APPLIED;
use drbridge_proto::v1 as pb;
use drbridge_runtime::events::{Announcement, Events, object_ref};
use k8s_openapi::api::core::v1::ObjectReference;
use parking_lot::Mutex;

use crate::index::SharedIndex;
use crate::objects::{ObjectKey, cluster_resource, work_resource};

/// Past this many works with failures remembered, the memory starts over: at worst a
/// still-failing manifest is announced once more.
const MAX_REMEMBERED: usize = 10_000;

/// What was last announced per work.
#[derive(Debug, Default)]
struct Memory {
    /// The uid and the failing manifests (ordinal, message).
    failures: HashMap<ObjectKey, (String, BTreeSet<(i32, String)>)>,
    /// The uid and generation whose rejection was announced.
    rejected: HashMap<ObjectKey, (String, i64)>,
}

/// The hub's announcer. Cloned freely; clones share their memory.
#[derive(Clone, Debug)]
pub struct HubEvents {
    events: Events,
    index: Option<SharedIndex>,
    memory: Arc<Mutex<Memory>>,
}

impl HubEvents {
    /// Announces through `events`, taking object uids from `index`.
    pub fn new(events: Events, index: SharedIndex) -> Self {
        Self {
            events,
            index: Some(index),
            memory: Arc::default(),
        }
    }

    pub fn disabled() -> Self {
        Self {
            events: Events::disabled(),
            index: None,
            memory: Arc::default(),
        }
    }

    fn cluster_ref(&self, cluster: &str) -> ObjectReference {
        let uid = self
            .index
            .as_ref()
            .and_then(|i| i.read().cluster(cluster).map(|c| c.meta.uid.clone()))
            .unwrap_or_default();
        let r = cluster_resource();
        object_ref(&r.api_version, &r.kind, "", cluster, &uid)
    }

    fn work_ref(&self, key: &ObjectKey, uid: &str) -> ObjectReference {
        let r = work_resource();
        object_ref(&r.api_version, &r.kind, &key.namespace, &key.name, uid)
    }

    /// After a ManagedCluster status write: `was` is the Available status the object had
    /// (`"True"`, `"Unknown"`, ... or `None`), `now` what was written.
    pub fn cluster_availability(&self, cluster: &str, was: Option<&str>, now: Option<bool>) {
        let regarding = || self.cluster_ref(cluster);
        match (was, now) {
            (Some("True"), Some(false)) => self.events.announce(
                Announcement::warning(regarding(), "ClusterLost", "Presence").note(format!(
                    "nothing heard from the agent of cluster {cluster} within the presence timeout; its works and views keep their last status"
                )),
            ),
            (w, Some(true)) if w != Some("True") => self.events.announce(
                Announcement::normal(regarding(), "ClusterAvailable", "Presence")
                    .note(format!("the agent of cluster {cluster} is connected")),
            ),
            _ => {}
        }
    }

    pub fn agent_joined(&self, cluster: &str, serial: &str) {
        self.events.announce(
            Announcement::normal(self.cluster_ref(cluster), "AgentJoined", "Join").note(format!(
                "an agent joined as cluster {cluster} with a join token; certificate serial {serial}"
            )),
        );
    }

    pub fn certificate_rotated(&self, cluster: &str, old_serial: &str, serial: &str) {
        self.events.announce(
            Announcement::normal(self.cluster_ref(cluster), "CertificateRotated", "Renew").note(
                format!("the agent renewed its certificate: serial {old_serial} -> {serial}"),
            ),
        );
    }

    pub fn agent_removed(&self, cluster: &str) {
        self.events.announce(
            Announcement::warning(self.cluster_ref(cluster), "AgentRemoved", "Remove").note(
                format!("cluster {cluster} was removed from this hub; its agent is refused until it joins again"),
            ),
        );
    }

    /// After the hub wrote `Applied=False` because it will not dispatch the work; announced
    /// once per generation, though the writer's sweep writes it again.
    pub fn work_rejected(&self, key: &ObjectKey, uid: &str, generation: i64, message: &str) {
        {
            let mut m = self.memory.lock();
            let seen = (uid.to_owned(), generation);
            if m.rejected.get(key) == Some(&seen) {
                return;
            }
            if m.rejected.len() >= MAX_REMEMBERED {
                m.rejected.clear();
            }
            m.rejected.insert(key.clone(), seen);
        }
        self.events.announce(
            Announcement::warning(self.work_ref(key, uid), "WorkRejected", "Dispatch")
                .note(message.to_owned()),
        );
    }

    /// After a work's status from its agent was written: announces manifests that newly
    /// failed.
    pub fn work_status_written(&self, key: &ObjectKey, status: &pb::WorkStatus) {
        let failures: Vec<((i32, String), pb::ResourceMeta)> = status
            .manifests
            .iter()
            .filter_map(|m| {
                let c = m
                    .conditions
                    .iter()
                    .find(|c| c.r#type == APPLIED && c.status == "False")?;
                let meta = m.meta.clone().unwrap_or_default();
                Some(((meta.ordinal, c.message.clone()), meta))
            })
            .collect();
        let fresh: Vec<&((i32, String), pb::ResourceMeta)> = {
            let mut m = self.memory.lock();
            let now: BTreeSet<(i32, String)> = failures.iter().map(|(id, _)| id.clone()).collect();
            let before = match m.failures.get(key) {
                Some((uid, set)) if *uid == status.uid => set.clone(),
                _ => BTreeSet::new(),
            };
            if now.is_empty() {
                m.failures.remove(key);
            } else {
                if m.failures.len() >= MAX_REMEMBERED {
                    m.failures.clear();
                }
                m.failures.insert(key.clone(), (status.uid.clone(), now));
            }
            failures
                .iter()
                .filter(|(id, _)| !before.contains(id))
                .collect()
        };
        for ((_, msg), meta) in fresh {
            let reason = if is_refusal(msg) {
                "ManifestRefused"
            } else {
                "ManifestFailed"
            };
            let api_version = if meta.group.is_empty() {
                meta.version.clone()
            } else {
                format!("{}/{}", meta.group, meta.version)
            };
            let name = if meta.namespace.is_empty() {
                meta.name.clone()
            } else {
                format!("{}/{}", meta.namespace, meta.name)
            };
            let manifest = object_ref(&api_version, &meta.kind, &meta.namespace, &meta.name, "");
            self.events.announce(
                Announcement::warning(self.work_ref(key, &status.uid), reason, "Apply")
                    .related(manifest)
                    .note(format!(
                        "manifest {} ({} {name}): {msg}",
                        meta.ordinal, meta.kind
                    )),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::Limits;
    use crate::index::Index;
    use crate::metrics::Metrics;
    use crate::objects::{ClusterObject, Meta};
    use drbridge_runtime::events::Announcement;
    use tokio::sync::mpsc::Receiver;

    fn announcer() -> (HubEvents, Receiver<Announcement>) {
        let index = Index::new(
            Limits {
                max_work_bytes: 1 << 20,
            },
            None,
            Metrics::default(),
        )
        .shared();
        index.write().apply_cluster(ClusterObject {
            meta: Meta {
                name: "dr1".into(),
                uid: "uid-dr1".into(),
                ..Default::default()
            },
            conditions: vec![],
            claims: vec![],
        });
        let (events, rx) = Events::capture(64);
        (HubEvents::new(events, index), rx)
    }

    fn drain(rx: &mut Receiver<Announcement>) -> Vec<Announcement> {
        std::iter::from_fn(|| rx.try_recv().ok()).collect()
    }

    fn reasons(rx: &mut Receiver<Announcement>) -> Vec<&'static str> {
        drain(rx).into_iter().map(|a| a.reason).collect()
    }

    fn status(uid: &str, failing: &[(i32, &str, &str)]) -> pb::WorkStatus {
        let manifests = failing
            .iter()
            .map(|(ordinal, kind, message)| pb::ManifestStatus {
                meta: Some(pb::ResourceMeta {
                    ordinal: *ordinal,
                    group: if *kind == "Deployment" { "apps" } else { "" }.into(),
                    version: "v1".into(),
                    kind: (*kind).into(),
                    name: format!("m{ordinal}"),
                    namespace: "app".into(),
                    ..Default::default()
                }),
                conditions: vec![pb::Condition {
                    r#type: APPLIED.into(),
                    status: if message.is_empty() { "True" } else { "False" }.into(),
                    message: (*message).into(),
                    ..Default::default()
                }],
            })
            .collect();
        pb::WorkStatus {
            name: "w".into(),
            uid: uid.into(),
            generation: 1,
            manifests,
            ..Default::default()
        }
    }

    #[test]
    fn a_cluster_is_announced_lost_and_back_only_on_transitions_with_its_uid() {
        let (ev, mut rx) = announcer();
        ev.cluster_availability("dr1", Some("True"), Some(true));
        ev.cluster_availability("dr1", None, Some(false));
        ev.cluster_availability("dr1", Some("Unknown"), Some(false));
        ev.cluster_availability("dr1", Some("True"), None);
        assert_eq!(
            reasons(&mut rx),
            Vec::<&str>::new(),
            "no transition, no Event"
        );

        ev.cluster_availability("dr1", Some("True"), Some(false));
        let lost = drain(&mut rx);
        assert_eq!(lost.len(), 1);
        assert_eq!(lost[0].reason, "ClusterLost");
        assert!(lost[0].warning);
        assert_eq!(lost[0].regarding.uid.as_deref(), Some("uid-dr1"));
        assert_eq!(lost[0].regarding.kind.as_deref(), Some("ManagedCluster"));
        assert_eq!(lost[0].regarding.namespace, None);

        ev.cluster_availability("dr1", Some("Unknown"), Some(true));
        ev.cluster_availability("dr1", None, Some(true));
        assert_eq!(reasons(&mut rx), ["ClusterAvailable", "ClusterAvailable"]);
    }

    #[test]
    fn a_failing_manifest_is_announced_once_per_failure() {
        let (ev, mut rx) = announcer();
        let key = ObjectKey::new("dr1", "w");
        let refused = "kind \"Secret\" of group \"\" is not allowed by the agent's allowlist";
        ev.work_status_written(
            &key,
            &status("u1", &[(0, "Secret", refused), (1, "Deployment", "")]),
        );
        let first = drain(&mut rx);
        assert_eq!(first.len(), 1, "{first:?}");
        assert_eq!(first[0].reason, "ManifestRefused");
        assert_eq!(first[0].regarding.kind.as_deref(), Some("ManifestWork"));
        assert_eq!(first[0].regarding.namespace.as_deref(), Some("dr1"));
        assert_eq!(first[0].regarding.uid.as_deref(), Some("u1"));
        let related = first[0].related.as_ref().expect("the manifest");
        assert_eq!(related.kind.as_deref(), Some("Secret"));
        assert_eq!(related.api_version.as_deref(), Some("v1"));
        assert!(first[0].note.contains("app/m0"), "{}", first[0].note);

        // The same failure reported again (another manifest changed): nothing new.
        ev.work_status_written(
            &key,
            &status("u1", &[(0, "Secret", refused), (1, "Deployment", "")]),
        );
        assert_eq!(reasons(&mut rx), Vec::<&str>::new());

        // A second manifest fails to apply: only it is announced, as a failure.
        ev.work_status_written(
            &key,
            &status(
                "u1",
                &[
                    (0, "Secret", refused),
                    (1, "Deployment", "admission webhook said no"),
                ],
            ),
        );
        let second = drain(&mut rx);
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].reason, "ManifestFailed");
        assert_eq!(
            second[0]
                .related
                .as_ref()
                .and_then(|r| r.api_version.as_deref()),
            Some("apps/v1")
        );

        // Healed, then failing again: announced again. A new incarnation starts over.
        ev.work_status_written(
            &key,
            &status("u1", &[(0, "Secret", ""), (1, "Deployment", "")]),
        );
        ev.work_status_written(&key, &status("u1", &[(0, "Secret", refused)]));
        ev.work_status_written(&key, &status("u2", &[(0, "Secret", refused)]));
        assert_eq!(reasons(&mut rx), ["ManifestRefused", "ManifestRefused"]);
    }

    #[test]
    fn a_rejected_work_is_announced_once_per_generation() {
        let (ev, mut rx) = announcer();
        let key = ObjectKey::new("dr1", "big");
        ev.work_rejected(&key, "u1", 1, "too large");
        ev.work_rejected(&key, "u1", 1, "too large");
        ev.work_rejected(&key, "u1", 2, "too large");
        let got = drain(&mut rx);
        assert_eq!(
            got.iter().map(|a| a.reason).collect::<Vec<_>>(),
            ["WorkRejected", "WorkRejected"]
        );
        assert_eq!(got[0].note, "too large");
    }

    #[test]
    fn registration_is_announced_on_the_cluster() {
        let (ev, mut rx) = announcer();
        ev.agent_joined("dr1", "01ab");
        ev.certificate_rotated("dr1", "01ab", "02cd");
        ev.agent_removed("dr1");
        let got = drain(&mut rx);
        assert_eq!(
            got.iter().map(|a| a.reason).collect::<Vec<_>>(),
            ["AgentJoined", "CertificateRotated", "AgentRemoved"]
        );
        assert!(
            got.iter()
                .all(|a| a.regarding.uid.as_deref() == Some("uid-dr1"))
        );
        assert!(got[1].note.contains("01ab -> 02cd"));
    }
}
