//! The agent's Kubernetes Events: every object it deletes because the hub asked (a work
//! deleted, a manifest dropped from a newer generation) gets a `DeletedByHub` Event in the
//! object's namespace (`default` for a cluster-scoped one), so that on the managed cluster
//! `kubectl get events` says who deleted it and why.

use crate::record::AppliedResource;
use drbridge_runtime::events::{Announcement, Events, object_ref};

/// Why the agent deleted an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// The ManifestWork was deleted on the hub.
    WorkDeleted,
    /// The work's generation no longer names the object.
    Dropped { generation: i64 },
}

/// Announces that `object`, applied by `work`, was deleted for `cause`.
pub fn deleted(events: &Events, work: &str, object: &AppliedResource, cause: Cause) {
    let api_version = if object.group.is_empty() {
        object.version.clone()
    } else {
        format!("{}/{}", object.group, object.version)
    };
    let regarding = object_ref(
        &api_version,
        &object.kind,
        &object.namespace,
        &object.name,
        &object.uid,
    );
    let why = match cause {
        Cause::WorkDeleted => format!("ManifestWork {work} was deleted on the hub"),
        Cause::Dropped { generation } => {
            format!("generation {generation} of ManifestWork {work} no longer names it")
        }
    };
    events.announce(
        Announcement::normal(regarding, "DeletedByHub", "Delete")
            .note(format!("{} {} deleted: {why}", object.kind, object.name)),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deletion_names_the_object_the_work_and_the_cause() {
        let (events, mut rx) = Events::capture(4);
        let cm = AppliedResource {
            version: "v1".into(),
            kind: "ConfigMap".into(),
            resource: "configmaps".into(),
            namespace: "app".into(),
            name: "cfg".into(),
            uid: "u1".into(),
            ..Default::default()
        };
        let ns = AppliedResource {
            group: "".into(),
            kind: "Namespace".into(),
            namespace: String::new(),
            name: "app".into(),
            ..cm.clone()
        };
        deleted(&events, "w", &cm, Cause::Dropped { generation: 3 });
        deleted(&events, "w", &ns, Cause::WorkDeleted);
        let a = rx.try_recv().expect("announced");
        assert_eq!(a.reason, "DeletedByHub");
        assert!(!a.warning);
        assert_eq!(a.regarding.namespace.as_deref(), Some("app"));
        assert_eq!(a.regarding.uid.as_deref(), Some("u1"));
        assert!(
            a.note.contains("generation 3 of ManifestWork w"),
            "{}",
            a.note
        );
        let b = rx.try_recv().expect("announced");
        assert_eq!(b.regarding.namespace, None, "cluster-scoped");
        assert!(b.note.contains("was deleted on the hub"), "{}", b.note);
    }
}
