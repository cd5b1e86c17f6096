//! Generation, uid and hub-epoch fencing, and the rules for what may be deleted.
//!
//! The agent never deletes because something is absent (the hub is unreachable, a work
//! is missing after a restart, a resync is partial). It deletes only on an explicit
//! `deleting` work, or a manifest dropped from a newer generation of a work it holds,
//! and only objects that the work's own record lists and no other record lists.

/// What the agent holds for a work.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    pub uid: String,
    pub generation: i64,
    pub deleting: bool,
}

/// What the hub sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offered {
    pub uid: String,
    pub generation: i64,
    pub deleting: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// A new work, or a newer generation of the held one.
    Apply,
    /// The generation already held: apply again (idempotent, e.g. a resync).
    Reapply,
    /// An older generation than the one held: ignore it.
    Stale,
    /// Same name, another uid (the work was re-created, for example after a hub
    /// recovery): take the objects over in place. Nothing of the old incarnation is
    /// deleted; objects it listed that the new one does not are only dropped from the
    /// record.
    Replace,
    /// Delete the held work's objects (as its delete option says), then its record.
    Delete,
    /// A delete for a work the agent does not hold under this uid: there is nothing to
    /// delete; answer that it is gone.
    AlreadyGone,
    /// The held work is being deleted and this is not a delete: a deletion is not undone.
    IgnoreWhileDeleting,
}

/// Decides what to do with a work the hub sends.
pub fn decide(held: Option<&Held>, offered: &Offered) -> Decision {
    let Some(held) = held else {
        return if offered.deleting {
            Decision::AlreadyGone
        } else {
            Decision::Apply
        };
    };
    if held.uid != offered.uid {
        return if offered.deleting {
            Decision::AlreadyGone
        } else {
            Decision::Replace
        };
    }
    if offered.deleting {
        return Decision::Delete;
    }
    if held.deleting {
        return Decision::IgnoreWhileDeleting;
    }
    match offered.generation.cmp(&held.generation) {
        std::cmp::Ordering::Less => Decision::Stale,
        std::cmp::Ordering::Equal => Decision::Reapply,
        std::cmp::Ordering::Greater => Decision::Apply,
    }
}

/// A hub is accepted only if its epoch is not below the highest accepted so far.
pub fn accept_hub_epoch(max_accepted: u64, offered: u64) -> bool {
    offered >= max_accepted
}

/// Identity of an applied object, as OCM's `ResourceIdentifier` (no version or kind).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceKey {
    pub group: String,
    pub resource: String,
    pub namespace: String,
    pub name: String,
}

impl ResourceKey {
    pub fn new(group: &str, resource: &str, namespace: &str, name: &str) -> Self {
        ResourceKey {
            group: group.to_string(),
            resource: resource.to_string(),
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }
}

impl std::fmt::Display for ResourceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let gr = if self.group.is_empty() {
            self.resource.clone()
        } else {
            format!("{}.{}", self.resource, self.group)
        };
        if self.namespace.is_empty() {
            write!(f, "{gr} {}", self.name)
        } else {
            write!(f, "{gr} {}/{}", self.namespace, self.name)
        }
    }
}

/// One orphaning rule of `deleteOption.selectivelyOrphans`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrphanRule {
    pub group: String,
    pub resource: String,
    pub namespace: String,
    pub name: String,
}

/// A work's `deleteOption`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum DeletePolicy {
    /// OCM's default: the work owns (and deletes) every object.
    #[default]
    Foreground,
    /// The work owns nothing; its objects stay when it is deleted or drops them.
    Orphan,
    /// Objects matching a rule are orphaned, the others owned.
    SelectivelyOrphan(Vec<OrphanRule>),
}

impl DeletePolicy {
    /// OCM's `OwnedByTheWork`: whether the work deletes this object when it is deleted
    /// or when a newer generation drops it.
    pub fn owns(&self, key: &ResourceKey) -> bool {
        match self {
            DeletePolicy::Foreground => true,
            DeletePolicy::Orphan => false,
            DeletePolicy::SelectivelyOrphan(rules) => !rules.iter().any(|r| {
                r.group == key.group
                    && r.resource == key.resource
                    && r.namespace == key.namespace
                    && r.name == key.name
            }),
        }
    }
}

/// Objects the old record lists and the new generation does not.
pub fn dropped<'a>(old: &'a [ResourceKey], new: &[ResourceKey]) -> Vec<&'a ResourceKey> {
    old.iter().filter(|k| !new.contains(k)).collect()
}

/// What one manifest of a newer generation names, as far as it could be read. A manifest
/// that failed before discovery has a kind but no resource, so it is matched by group, kind,
/// namespace and name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Named {
    /// An empty namespace means "not known": it matches any namespace.
    Object {
        group: String,
        kind: String,
        namespace: String,
        name: String,
    },
    /// Nothing could be read (invalid JSON, a work over the size limit, no kind or name): the
    /// manifest may name any object.
    Unknown,
}

impl Named {
    pub fn object(group: &str, kind: &str, namespace: &str, name: &str) -> Self {
        if kind.is_empty() || name.is_empty() {
            return Named::Unknown;
        }
        Named::Object {
            group: group.to_string(),
            kind: kind.to_string(),
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }
}

/// Whether a newer generation's manifests still name a recorded object (group, kind,
/// namespace, name). Only an object no manifest names may leave the work's record (and be
/// deleted): a manifest that cannot be read, resolved or applied right now (a discovery
/// timeout, an allowlist narrowed before a restart, a lowered size limit) keeps its object.
pub fn still_named(
    group: &str,
    kind: &str,
    namespace: &str,
    name: &str,
    manifests: &[Named],
) -> bool {
    manifests.iter().any(|m| match m {
        Named::Unknown => true,
        Named::Object {
            group: g,
            kind: k,
            namespace: ns,
            name: n,
        } => {
            g == group
                && k == kind
                && n == name
                && (ns.is_empty() || namespace.is_empty() || ns == namespace)
        }
    })
}

/// Whether an object may be deleted for a work: the work owns it under its delete
/// option, and no other work's record lists it (then it is only dropped from this one).
pub fn may_delete<'a>(
    key: &ResourceKey,
    policy: &DeletePolicy,
    mut other_records: impl Iterator<Item = &'a [ResourceKey]>,
) -> bool {
    policy.owns(key) && !other_records.any(|r| r.contains(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(uid: &str, generation: i64, deleting: bool) -> Held {
        Held {
            uid: uid.into(),
            generation,
            deleting,
        }
    }
    fn offered(uid: &str, generation: i64, deleting: bool) -> Offered {
        Offered {
            uid: uid.into(),
            generation,
            deleting,
        }
    }

    #[test]
    fn generations() {
        let h = held("u", 5, false);
        assert_eq!(decide(None, &offered("u", 1, false)), Decision::Apply);
        assert_eq!(decide(Some(&h), &offered("u", 6, false)), Decision::Apply);
        assert_eq!(decide(Some(&h), &offered("u", 5, false)), Decision::Reapply);
        assert_eq!(decide(Some(&h), &offered("u", 4, false)), Decision::Stale);
    }

    #[test]
    fn uids_and_deletes() {
        let h = held("u", 5, false);
        assert_eq!(decide(Some(&h), &offered("v", 1, false)), Decision::Replace);
        assert_eq!(
            decide(Some(&h), &offered("v", 9, true)),
            Decision::AlreadyGone
        );
        assert_eq!(decide(None, &offered("u", 1, true)), Decision::AlreadyGone);
        // A delete is honoured whatever its generation.
        assert_eq!(decide(Some(&h), &offered("u", 1, true)), Decision::Delete);
        assert_eq!(decide(Some(&h), &offered("u", 7, true)), Decision::Delete);
        let d = held("u", 5, true);
        assert_eq!(
            decide(Some(&d), &offered("u", 6, false)),
            Decision::IgnoreWhileDeleting
        );
        assert_eq!(decide(Some(&d), &offered("u", 5, true)), Decision::Delete);
    }

    #[test]
    fn epochs() {
        assert!(accept_hub_epoch(0, 0));
        assert!(accept_hub_epoch(3, 3));
        assert!(accept_hub_epoch(3, 4));
        assert!(!accept_hub_epoch(3, 2));
    }

    #[test]
    fn delete_policy() {
        let vrg = ResourceKey::new(
            "ramendr.openshift.io",
            "volumereplicationgroups",
            "app",
            "vrg",
        );
        let ns = ResourceKey::new("", "namespaces", "", "app");
        assert!(DeletePolicy::Foreground.owns(&vrg));
        assert!(!DeletePolicy::Orphan.owns(&ns));
        let sel = DeletePolicy::SelectivelyOrphan(vec![OrphanRule {
            group: "".into(),
            resource: "namespaces".into(),
            namespace: "".into(),
            name: "app".into(),
        }]);
        assert!(!sel.owns(&ns));
        assert!(sel.owns(&vrg));
        assert!(DeletePolicy::SelectivelyOrphan(vec![]).owns(&ns));
    }

    #[test]
    fn what_a_generation_still_names() {
        let vrg =
            |ns: &str| Named::object("ramendr.openshift.io", "VolumeReplicationGroup", ns, "app");
        let named = |m: &[Named]| {
            still_named(
                "ramendr.openshift.io",
                "VolumeReplicationGroup",
                "app",
                "app",
                m,
            )
        };
        assert!(named(&[vrg("app")]));
        // A namespaced manifest without its namespace, or a cluster-scoped record.
        assert!(named(&[vrg("")]));
        assert!(!named(&[vrg("other")]));
        assert!(!named(&[Named::object("", "ConfigMap", "app", "app")]));
        assert!(!named(&[]));
        // An unreadable manifest may name anything.
        assert!(named(&[
            Named::object("", "ConfigMap", "app", "x"),
            Named::Unknown
        ]));
        assert_eq!(Named::object("", "", "", "x"), Named::Unknown);
        assert_eq!(Named::object("", "ConfigMap", "", ""), Named::Unknown);
        assert!(still_named(
            "",
            "Namespace",
            "",
            "app",
            &[Named::object("", "Namespace", "junk", "app")]
        ));
    }

    #[test]
    fn dropped_and_shared() {
        let a = ResourceKey::new("", "configmaps", "x", "a");
        let b = ResourceKey::new("", "configmaps", "x", "b");
        let old = vec![a.clone(), b.clone()];
        let new = vec![a.clone()];
        assert_eq!(dropped(&old, &new), vec![&b]);
        let none: Vec<&[ResourceKey]> = vec![];
        assert!(may_delete(&b, &DeletePolicy::Foreground, none.into_iter()));
        let other = vec![b.clone()];
        assert!(!may_delete(
            &b,
            &DeletePolicy::Foreground,
            [other.as_slice()].into_iter()
        ));
        let none: Vec<&[ResourceKey]> = vec![];
        assert!(!may_delete(&b, &DeletePolicy::Orphan, none.into_iter()));
        assert_eq!(b.to_string(), "configmaps x/b");
        assert_eq!(
            ResourceKey::new("apps", "deployments", "", "d").to_string(),
            "deployments.apps d"
        );
    }
}
