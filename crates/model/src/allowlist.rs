//! What an agent may write and view: kinds (group/kind, each optionally limited to names,
//! namespaces and label keys), namespaces, labels it refuses, namespaces it never adopts or
//! deletes, and the resources a ManagedClusterView may read.
//!
//! The agent enforces it itself, so a compromised hub cannot use it to write or read anything
//! it likes on the managed cluster. The default is what Ramen's ManifestWorks and views need
//! and no more, derived from Ramen's catalogue of works (`internal/controller/util/mw_util.go`,
//! `drclusters.go`) and of views (`mcv_util.go`); docs/ramen-contract.md,
//! "The works Ramen sends" and "The views Ramen creates".

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One allowed kind. `kind: "*"` allows every kind of the group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindRule {
    #[serde(default)]
    pub group: String,
    pub kind: String,
    /// The only names objects of this kind may have; empty: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// Namespace patterns this (namespaced) kind is limited to, within `namespaces`; empty:
    /// every namespace `namespaces` allows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// The only label keys objects of this kind may set (patterns); unset: any label not
    /// denied by `deniedLabels`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Vec<String>>,
}

impl KindRule {
    pub fn new(group: &str, kind: &str) -> Self {
        KindRule {
            group: group.to_string(),
            kind: kind.to_string(),
            names: vec![],
            namespaces: vec![],
            labels: None,
        }
    }

    pub fn named(mut self, names: &[&str]) -> Self {
        self.names = names.iter().map(|s| s.to_string()).collect();
        self
    }

    pub fn in_namespaces(mut self, namespaces: &[&str]) -> Self {
        self.namespaces = namespaces.iter().map(|s| s.to_string()).collect();
        self
    }

    pub fn with_labels(mut self, keys: &[&str]) -> Self {
        self.labels = Some(keys.iter().map(|s| s.to_string()).collect());
        self
    }

    fn matches(&self, group: &str, kind: &str) -> bool {
        (self.group == "*" || self.group == group) && (self.kind == "*" || self.kind == kind)
    }

    /// Name and namespace limits. An empty namespace (cluster-scoped, or not known yet) is
    /// not checked against `namespaces`.
    fn admits(&self, namespace: &str, name: &str) -> bool {
        (self.names.is_empty() || self.names.iter().any(|n| n == name))
            && (namespace.is_empty()
                || self.namespaces.is_empty()
                || self
                    .namespaces
                    .iter()
                    .any(|p| pattern_matches(p, namespace)))
    }
}

/// Namespace patterns: an exact name, `*` (any), or a prefix ending in `*`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceRules {
    #[serde(default)]
    pub allow: Vec<String>,
    /// Wins over `allow`: nothing is written or viewed there, not even the Namespace itself.
    #[serde(default)]
    pub deny: Vec<String>,
    /// Namespaces a work may create or update but never owns: the agent never deletes them,
    /// whatever the work's delete option (the control plane's, the platform's, Ramen's own).
    #[serde(default = "default_protected")]
    pub protect: Vec<String>,
}

fn pattern_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

impl NamespaceRules {
    pub fn allows(&self, ns: &str) -> bool {
        !self.deny.iter().any(|p| pattern_matches(p, ns))
            && self.allow.iter().any(|p| pattern_matches(p, ns))
    }

    pub fn protects(&self, ns: &str) -> bool {
        self.protect
            .iter()
            .chain(&self.deny)
            .any(|p| pattern_matches(p, ns))
    }
}

/// A label no manifest of a kind may set, unless with one of `allowValues`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelRule {
    #[serde(default)]
    pub group: String,
    pub kind: String,
    /// Key pattern (exact, or a prefix ending in `*`).
    pub key: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_values: Vec<String>,
}

/// A resource views may read. `names` limits it to those objects; empty: any.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewRule {
    #[serde(default)]
    pub group: String,
    pub resource: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
}

impl ViewRule {
    pub fn new(group: &str, resource: &str) -> Self {
        ViewRule {
            group: group.to_string(),
            resource: resource.to_string(),
            names: vec![],
        }
    }
}

/// The allowlist an agent enforces before it writes or reads anything for the hub.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Allowlist {
    pub kinds: Vec<KindRule>,
    pub namespaces: NamespaceRules,
    /// Left out of a file: the default rules.
    #[serde(default = "default_denied_labels")]
    pub denied_labels: Vec<LabelRule>,
    /// What views may read. Left out of a file: Ramen's catalogue.
    #[serde(default = "default_views")]
    pub views: Vec<ViewRule>,
}

/// Why a manifest or a view was refused; its text goes into the `Applied=False` message or
/// the view's condition.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotAllowed {
    #[error("kind {kind:?} of group {group:?} is not allowed by the agent's allowlist")]
    Kind { group: String, kind: String },
    #[error(
        "namespace {namespace:?} is not allowed by the agent's allowlist (kind {kind:?} of group {group:?})"
    )]
    Namespace {
        group: String,
        kind: String,
        namespace: String,
    },
    #[error(
        "{kind} {name:?} in namespace {namespace:?} is not allowed by the agent's allowlist (kind {kind:?} of group {group:?} is limited to certain names and namespaces)"
    )]
    Name {
        group: String,
        kind: String,
        namespace: String,
        name: String,
    },
    #[error("label {key:?}={value:?} on a {kind} is not allowed by the agent's allowlist")]
    Label {
        kind: String,
        key: String,
        value: String,
    },
    #[error("a ClusterRole with an aggregationRule is not allowed by the agent's allowlist")]
    AggregationRule,
    #[error(
        "viewing {resource:?} of group {group:?} ({what}) is not allowed by the agent's view allowlist"
    )]
    View {
        group: String,
        resource: String,
        what: String,
    },
}

/// Whether a manifest's `Applied=False` message is an allowlist refusal ([`NotAllowed`]),
/// as opposed to a failed apply: the hub announces the two differently.
pub fn is_refusal(message: &str) -> bool {
    message.contains("is not allowed by the agent's")
}

/// Namespaces no work may touch by default: the control plane's own.
pub const DEFAULT_DENIED_NAMESPACES: &[&str] = &["kube-system", "kube-public", "kube-node-lease"];

/// Namespaces a work may create or label but never owns or deletes by default.
pub const DEFAULT_PROTECTED_NAMESPACES: &[&str] = &[
    "default",
    "kube-*",
    "openshift",
    "openshift-*",
    "ramen-system",
    "ramen-ops",
];

/// Where Ramen's hub puts the DR-cluster operator's ConfigMap, OperatorGroup and Subscription
/// (`drClusterOperator.namespaceName`, default the hub's `POD_NAMESPACE`: `ramen-system`
/// upstream, `openshift-dr-system` with OpenShift's operator).
pub const RAMEN_OPERATOR_NAMESPACES: &[&str] = &["ramen-system", "openshift-dr-system"];

/// The ClusterRoles of Ramen's `ramen-dr-cluster` work.
pub const RAMEN_CLUSTER_ROLES: &[&str] = &[
    "open-cluster-management:klusterlet-work-sa:agent:volrepgroup-edit",
    "open-cluster-management:klusterlet-work-sa:agent:mmode-edit",
    "open-cluster-management:klusterlet-work-sa:agent:drclusterconfig-edit",
    "open-cluster-management:klusterlet-work-sa:agent:networkfence-edit",
    "open-cluster-management:klusterlet-work-sa:agent:recipe-edit",
    "open-cluster-management:klusterlet-work-sa:agent:olm-edit",
];

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn default_protected() -> Vec<String> {
    strings(DEFAULT_PROTECTED_NAMESPACES)
}

fn default_denied_labels() -> Vec<LabelRule> {
    // Pod Security admission: a hub must not loosen what pods may do in a namespace.
    vec![LabelRule {
        group: String::new(),
        kind: "Namespace".into(),
        key: "pod-security.kubernetes.io/enforce".into(),
        allow_values: vec!["restricted".into()],
    }]
}

fn default_views() -> Vec<ViewRule> {
    let mut v: Vec<ViewRule> = [
        ("ramendr.openshift.io", "volumereplicationgroups"),
        ("ramendr.openshift.io", "drclusterconfigs"),
        ("ramendr.openshift.io", "maintenancemodes"),
        ("ramendr.openshift.io", "recipes"),
        ("", "namespaces"),
        ("storage.k8s.io", "storageclasses"),
        ("snapshot.storage.k8s.io", "volumesnapshotclasses"),
        (
            "replication.storage.openshift.io",
            "volumereplicationclasses",
        ),
        (
            "replication.storage.openshift.io",
            "volumegroupreplicationclasses",
        ),
        ("groupsnapshot.storage.k8s.io", "volumegroupsnapshotclasses"),
        (
            "groupsnapshot.storage.openshift.io",
            "volumegroupsnapshotclasses",
        ),
        ("csiaddons.openshift.io", "networkfenceclasses"),
        ("csiaddons.openshift.io", "networkfences"),
    ]
    .into_iter()
    .map(|(g, r)| ViewRule::new(g, r))
    .collect();
    // Ramen probes which VolumeGroupSnapshot API a cluster serves through these two CRDs.
    v.push(ViewRule {
        group: "apiextensions.k8s.io".into(),
        resource: "customresourcedefinitions".into(),
        names: strings(&[
            "volumegroupsnapshots.groupsnapshot.storage.k8s.io",
            "volumegroupsnapshots.groupsnapshot.storage.openshift.io",
        ]),
    });
    v
}

impl Default for Allowlist {
    /// What Ramen's hub operator sends (docs/ramen-contract.md, "The works Ramen sends",
    /// "Apply and delete semantics") and views ("The views Ramen creates").
    fn default() -> Self {
        let ramen = "ramendr.openshift.io";
        let olm = "operators.coreos.com";
        let kinds = vec![
            KindRule::new(ramen, "VolumeReplicationGroup"),
            KindRule::new(ramen, "DRClusterConfig"),
            KindRule::new(ramen, "MaintenanceMode"),
            KindRule::new(ramen, "Recipe"),
            KindRule::new("csiaddons.openshift.io", "NetworkFence"),
            KindRule::new("", "Namespace"),
            KindRule::new("", "ConfigMap")
                .named(&["ramen-dr-cluster-operator-config"])
                .in_namespaces(RAMEN_OPERATOR_NAMESPACES),
            // Only Ramen's roles, with only Ramen's labels: no aggregation into other roles.
            KindRule::new("rbac.authorization.k8s.io", "ClusterRole")
                .named(RAMEN_CLUSTER_ROLES)
                .with_labels(&[
                    "open-cluster-management.io/aggregate-to-work",
                    "ramendr.openshift.io/created-by-ramen",
                ]),
            KindRule::new(olm, "OperatorGroup")
                .named(&["ramen-operator-group"])
                .in_namespaces(RAMEN_OPERATOR_NAMESPACES),
            KindRule::new(olm, "Subscription")
                .named(&["ramen-dr-cluster-subscription"])
                .in_namespaces(RAMEN_OPERATOR_NAMESPACES),
        ];
        Allowlist {
            kinds,
            namespaces: NamespaceRules {
                allow: vec!["*".into()],
                deny: strings(DEFAULT_DENIED_NAMESPACES),
                protect: default_protected(),
            },
            denied_labels: default_denied_labels(),
            views: default_views(),
        }
    }
}

impl Allowlist {
    /// Everything, everywhere (tests, or an operator who opts out). Secrets stay unviewable.
    pub fn allow_all() -> Self {
        Allowlist {
            kinds: vec![KindRule::new("*", "*")],
            namespaces: NamespaceRules {
                allow: vec!["*".into()],
                deny: vec![],
                protect: vec![],
            },
            denied_labels: vec![],
            views: vec![ViewRule::new("*", "*")],
        }
    }

    /// Denies a namespace to works and views: the agent's own, where its credentials and
    /// configuration live.
    pub fn deny_namespace(&mut self, ns: &str) {
        if !ns.is_empty() && !self.namespaces.deny.iter().any(|d| d == ns) {
            self.namespaces.deny.push(ns.to_string());
        }
    }

    fn kind_rules<'a>(
        &'a self,
        group: &'a str,
        kind: &'a str,
    ) -> impl Iterator<Item = &'a KindRule> {
        self.kinds.iter().filter(move |r| r.matches(group, kind))
    }

    /// Checks one object's kind, namespace and name. `namespace` is empty for cluster-scoped
    /// objects (or before discovery); a Namespace object is checked against the namespace
    /// rules by its name.
    pub fn check(
        &self,
        group: &str,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Result<(), NotAllowed> {
        if self.kind_rules(group, kind).next().is_none() {
            return Err(NotAllowed::Kind {
                group: group.to_string(),
                kind: kind.to_string(),
            });
        }
        let ns = if group.is_empty() && kind == "Namespace" {
            name
        } else {
            namespace
        };
        if !ns.is_empty() && !self.namespaces.allows(ns) {
            return Err(NotAllowed::Namespace {
                group: group.to_string(),
                kind: kind.to_string(),
                namespace: ns.to_string(),
            });
        }
        if !self
            .kind_rules(group, kind)
            .any(|r| r.admits(namespace, name))
        {
            return Err(NotAllowed::Name {
                group: group.to_string(),
                kind: kind.to_string(),
                namespace: namespace.to_string(),
                name: name.to_string(),
            });
        }
        Ok(())
    }

    /// [`Allowlist::check`], then what the object itself says: its labels, and no
    /// aggregationRule on a ClusterRole (it would collect other roles' rights).
    pub fn check_object(
        &self,
        group: &str,
        kind: &str,
        namespace: &str,
        object: &Value,
    ) -> Result<(), NotAllowed> {
        let name = object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        self.check(group, kind, namespace, name)?;
        if group == "rbac.authorization.k8s.io"
            && kind == "ClusterRole"
            && object.get("aggregationRule").is_some_and(|v| !v.is_null())
        {
            return Err(NotAllowed::AggregationRule);
        }
        let labels = object
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .into_iter()
            .flatten();
        for (key, value) in labels {
            let value = value.as_str().unwrap_or("");
            let refused = || NotAllowed::Label {
                kind: kind.to_string(),
                key: key.clone(),
                value: value.to_string(),
            };
            let denied = self.denied_labels.iter().any(|r| {
                r.group == group
                    && r.kind == kind
                    && pattern_matches(&r.key, key)
                    && !r.allow_values.iter().any(|v| v == value)
            });
            if denied {
                return Err(refused());
            }
            // Every rule for the kind that admits the object limits its labels, or none.
            let limited = self
                .kind_rules(group, kind)
                .filter(|r| r.admits(namespace, name))
                .all(|r| {
                    r.labels
                        .as_ref()
                        .is_some_and(|keys| !keys.iter().any(|p| pattern_matches(p, key)))
                });
            if limited {
                return Err(refused());
            }
        }
        Ok(())
    }

    /// Whether the agent must never own (and so never delete) this object: a Namespace the
    /// rules protect or deny.
    pub fn protects(&self, group: &str, kind: &str, name: &str) -> bool {
        group.is_empty() && kind == "Namespace" && self.namespaces.protects(name)
    }

    /// Checks a view of one object (`namespace` empty for cluster-scoped resources).
    pub fn check_view(
        &self,
        group: &str,
        resource: &str,
        namespace: &str,
        name: &str,
    ) -> Result<(), NotAllowed> {
        let refused = |what: String| NotAllowed::View {
            group: group.to_string(),
            resource: resource.to_string(),
            what,
        };
        let listed = self.views.iter().any(|v| {
            (v.group == "*" || v.group == group)
                && (v.resource == "*" || v.resource == resource)
                && (v.names.is_empty() || v.names.iter().any(|n| n == name))
        });
        if !listed {
            return Err(refused(format!("object {name:?}")));
        }
        let ns = if group.is_empty() && resource == "namespaces" {
            name
        } else {
            namespace
        };
        if !ns.is_empty() && !self.namespaces.allows(ns) {
            return Err(refused(format!("namespace {ns:?}")));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_covers_ramen() {
        let a = Allowlist::default();
        for (g, k, ns, n) in [
            (
                "ramendr.openshift.io",
                "VolumeReplicationGroup",
                "busybox",
                "busybox-drpc",
            ),
            ("ramendr.openshift.io", "DRClusterConfig", "", "c1"),
            ("ramendr.openshift.io", "MaintenanceMode", "", "rid"),
            ("ramendr.openshift.io", "Recipe", "app", "r"),
            (
                "csiaddons.openshift.io",
                "NetworkFence",
                "",
                "network-fence-c1",
            ),
            ("", "Namespace", "", "ramen-ops"),
            (
                "",
                "ConfigMap",
                "ramen-system",
                "ramen-dr-cluster-operator-config",
            ),
            (
                "rbac.authorization.k8s.io",
                "ClusterRole",
                "",
                "open-cluster-management:klusterlet-work-sa:agent:volrepgroup-edit",
            ),
            (
                "operators.coreos.com",
                "OperatorGroup",
                "ramen-system",
                "ramen-operator-group",
            ),
            (
                "operators.coreos.com",
                "Subscription",
                "ramen-system",
                "ramen-dr-cluster-subscription",
            ),
        ] {
            a.check(g, k, ns, n).unwrap_or_else(|e| panic!("{k}: {e}"));
        }
    }

    /// Issue 17, item 8: what Ramen's works never send is refused by default.
    #[test]
    fn default_refuses_what_ramen_never_sends() {
        let a = Allowlist::default();
        for (g, k, ns, n) in [
            ("", "ConfigMap", "app", "anything"),
            ("", "ConfigMap", "ramen-system", "other"),
            ("", "ConfigMap", "app", "ramen-dr-cluster-operator-config"),
            (
                "operators.coreos.com",
                "Subscription",
                "app",
                "ramen-dr-cluster-subscription",
            ),
            (
                "operators.coreos.com",
                "Subscription",
                "ramen-system",
                "evil-operator",
            ),
            (
                "operators.coreos.com",
                "OperatorGroup",
                "app",
                "ramen-operator-group",
            ),
            (
                "operators.coreos.com",
                "OperatorGroup",
                "ramen-system",
                "global",
            ),
            (
                "rbac.authorization.k8s.io",
                "ClusterRole",
                "",
                "cluster-admin",
            ),
            ("rbac.authorization.k8s.io", "ClusterRole", "", "admin"),
        ] {
            assert!(a.check(g, k, ns, n).is_err(), "{k} {ns}/{n} allowed");
        }
        for (g, k, ns, n) in [
            (
                "",
                "ConfigMap",
                "openshift-dr-system",
                "ramen-dr-cluster-operator-config",
            ),
            (
                "operators.coreos.com",
                "Subscription",
                "openshift-dr-system",
                "ramen-dr-cluster-subscription",
            ),
            (
                "rbac.authorization.k8s.io",
                "ClusterRole",
                "",
                "open-cluster-management:klusterlet-work-sa:agent:olm-edit",
            ),
        ] {
            a.check(g, k, ns, n).unwrap_or_else(|e| panic!("{k}: {e}"));
        }
    }

    #[test]
    fn refusals_name_the_kind_or_namespace() {
        let a = Allowlist::default();
        let e = a.check("", "Secret", "app", "s").unwrap_err();
        assert_eq!(
            e.to_string(),
            "kind \"Secret\" of group \"\" is not allowed by the agent's allowlist"
        );
        let e = a
            .check("rbac.authorization.k8s.io", "ClusterRoleBinding", "", "x")
            .unwrap_err();
        assert!(e.to_string().contains("ClusterRoleBinding"));
        let e = a.check("", "ConfigMap", "kube-system", "x").unwrap_err();
        assert_eq!(
            e.to_string(),
            "namespace \"kube-system\" is not allowed by the agent's allowlist (kind \"ConfigMap\" of group \"\")"
        );
        assert!(a.check("", "Namespace", "", "kube-public").is_err());
    }

    #[test]
    fn patterns_and_config() {
        let a: Allowlist = serde_json::from_str(
            r#"{"kinds":[{"group":"apps","kind":"*"},{"kind":"ConfigMap"}],
                "namespaces":{"allow":["team-*","ops"],"deny":["team-secret"]}}"#,
        )
        .unwrap();
        assert!(a.check("apps", "Deployment", "team-a", "d").is_ok());
        assert!(a.check("", "ConfigMap", "ops", "c").is_ok());
        assert!(a.check("", "ConfigMap", "other", "c").is_err());
        assert!(a.check("", "ConfigMap", "team-secret", "c").is_err());
        assert!(a.check("batch", "Job", "team-a", "j").is_err());
        // Cluster-scoped objects have no namespace to check.
        assert!(a.check("apps", "Anything", "", "x").is_ok());
        assert!(
            Allowlist::allow_all()
                .check("x.io", "Y", "kube-system", "n")
                .is_ok()
        );
    }

    #[test]
    fn labels_and_aggregation() {
        let a = Allowlist::default();
        let ns = |labels: Value| serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "app", "labels": labels}});
        let e = a
            .check_object(
                "",
                "Namespace",
                "",
                &ns(serde_json::json!({"pod-security.kubernetes.io/enforce": "privileged"})),
            )
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "label \"pod-security.kubernetes.io/enforce\"=\"privileged\" on a Namespace is not allowed by the agent's allowlist"
        );
        assert!(
            a.check_object(
                "",
                "Namespace",
                "",
                &ns(serde_json::json!({"pod-security.kubernetes.io/enforce": "baseline"}))
            )
            .is_err()
        );
        // Tightening, warnings and other labels (Ramen copies a discovered app's labels).
        for ok in [
            serde_json::json!({"pod-security.kubernetes.io/enforce": "restricted"}),
            serde_json::json!({"pod-security.kubernetes.io/warn": "privileged", "app": "busybox"}),
        ] {
            a.check_object("", "Namespace", "", &ns(ok)).unwrap();
        }
        let role = |labels: Value, extra: Value| {
            let mut r = serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": RAMEN_CLUSTER_ROLES[0], "labels": labels}});
            if let Some(o) = extra.as_object() {
                r.as_object_mut().unwrap().extend(o.clone());
            }
            r
        };
        let rbac = "rbac.authorization.k8s.io";
        a.check_object(
            rbac,
            "ClusterRole",
            "",
            &role(
                serde_json::json!({
            "open-cluster-management.io/aggregate-to-work": "true",
            "ramendr.openshift.io/created-by-ramen": "true"}),
                Value::Null,
            ),
        )
        .unwrap();
        for labels in [
            serde_json::json!({"rbac.authorization.k8s.io/aggregate-to-admin": "true"}),
            serde_json::json!({"anything": "else"}),
        ] {
            assert!(
                a.check_object(rbac, "ClusterRole", "", &role(labels, Value::Null))
                    .is_err()
            );
        }
        let e = a
            .check_object(
                rbac,
                "ClusterRole",
                "",
                &role(
                    serde_json::json!({}),
                    serde_json::json!({"aggregationRule": {"clusterRoleSelectors": []}}),
                ),
            )
            .unwrap_err();
        assert_eq!(e, NotAllowed::AggregationRule);
    }

    #[test]
    fn protected_and_own_namespaces() {
        let mut a = Allowlist::default();
        for ns in [
            "ramen-system",
            "ramen-ops",
            "openshift-dr-system",
            "default",
            "kube-system",
        ] {
            assert!(a.protects("", "Namespace", ns), "{ns}");
        }
        assert!(!a.protects("", "Namespace", "app"));
        assert!(!a.protects("", "ConfigMap", "ramen-system"));
        // Protected namespaces may be written (Ramen creates ramen-system).
        a.check("", "Namespace", "", "ramen-system").unwrap();
        a.deny_namespace("drbridge-agent");
        a.deny_namespace("drbridge-agent");
        assert_eq!(
            a.namespaces
                .deny
                .iter()
                .filter(|d| *d == "drbridge-agent")
                .count(),
            1
        );
        assert!(a.check("", "Namespace", "", "drbridge-agent").is_err());
        assert!(
            a.check(
                "ramendr.openshift.io",
                "VolumeReplicationGroup",
                "drbridge-agent",
                "x"
            )
            .is_err()
        );
        assert!(a.protects("", "Namespace", "drbridge-agent"));
    }

    #[test]
    fn views_are_ramens_catalogue() {
        let a = Allowlist::default();
        for (g, r, ns, n) in [
            (
                "ramendr.openshift.io",
                "volumereplicationgroups",
                "app",
                "app",
            ),
            ("", "namespaces", "", "app"),
            ("storage.k8s.io", "storageclasses", "", "rbd"),
            (
                "groupsnapshot.storage.openshift.io",
                "volumegroupsnapshotclasses",
                "",
                "x",
            ),
            (
                "apiextensions.k8s.io",
                "customresourcedefinitions",
                "",
                "volumegroupsnapshots.groupsnapshot.storage.k8s.io",
            ),
            (
                "csiaddons.openshift.io",
                "networkfences",
                "",
                "network-fence-c1",
            ),
        ] {
            a.check_view(g, r, ns, n)
                .unwrap_or_else(|e| panic!("{r}: {e}"));
        }
        for (g, r, ns, n) in [
            ("", "configmaps", "app", "x"),
            ("", "secrets", "app", "x"),
            ("", "namespaces", "", "kube-system"),
            (
                "ramendr.openshift.io",
                "volumereplicationgroups",
                "kube-system",
                "x",
            ),
            (
                "apiextensions.k8s.io",
                "customresourcedefinitions",
                "",
                "other.example.com",
            ),
            ("rbac.authorization.k8s.io", "clusterroles", "", "admin"),
        ] {
            assert!(a.check_view(g, r, ns, n).is_err(), "{r} {ns}/{n}");
        }
        assert_eq!(
            a.check_view("", "configmaps", "app", "x")
                .unwrap_err()
                .to_string(),
            "viewing \"configmaps\" of group \"\" (object \"x\") is not allowed by the agent's view allowlist"
        );
        assert!(
            Allowlist::allow_all()
                .check_view("", "configmaps", "kube-system", "x")
                .is_ok()
        );
    }

    #[test]
    fn files_without_the_new_sections_get_the_safe_defaults() {
        let a: Allowlist = serde_json::from_str(
            r#"{"kinds":[{"kind":"Namespace"}],"namespaces":{"allow":["*"],"deny":[]}}"#,
        )
        .unwrap();
        assert_eq!(a.views, Allowlist::default().views);
        assert_eq!(a.denied_labels, Allowlist::default().denied_labels);
        assert!(a.protects("", "Namespace", "ramen-system"));
        // And the default survives a round trip (the chart renders it).
        let d = Allowlist::default();
        let back: Allowlist = serde_json::from_str(&serde_json::to_string(&d).unwrap()).unwrap();
        assert_eq!(back, d);
    }

    #[test]
    fn every_refusal_reads_as_one() {
        let s = String::new;
        let all = [
            NotAllowed::Kind {
                group: s(),
                kind: s(),
            },
            NotAllowed::Namespace {
                group: s(),
                kind: s(),
                namespace: s(),
            },
            NotAllowed::Name {
                group: s(),
                kind: s(),
                namespace: s(),
                name: s(),
            },
            NotAllowed::Label {
                kind: s(),
                key: s(),
                value: s(),
            },
            NotAllowed::AggregationRule,
            NotAllowed::View {
                group: s(),
                resource: s(),
                what: s(),
            },
        ];
        for r in all {
            assert!(is_refusal(&r.to_string()), "{r}");
        }
        assert!(!is_refusal(
            "the server could not find the requested resource"
        ));
    }
}
