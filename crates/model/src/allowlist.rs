//! What an agent may apply: kinds (group/kind) and namespaces.
//!
//! The agent enforces it itself, so a compromised hub cannot use it to write anything
//! it likes on the managed cluster. The default covers what Ramen sends.

use serde::{Deserialize, Serialize};

/// One allowed kind. `kind: "*"` allows every kind of the group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindRule {
    #[serde(default)]
    pub group: String,
    pub kind: String,
}

impl KindRule {
    pub fn new(group: &str, kind: &str) -> Self {
        KindRule {
            group: group.to_string(),
            kind: kind.to_string(),
        }
    }

    fn matches(&self, group: &str, kind: &str) -> bool {
        self.group == group && (self.kind == "*" || self.kind == kind)
    }
}

/// Namespace patterns: an exact name, `*` (any), or a prefix ending in `*`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceRules {
    #[serde(default)]
    pub allow: Vec<String>,
    /// Wins over `allow`.
    #[serde(default)]
    pub deny: Vec<String>,
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
}

/// The allowlist an agent enforces before it writes anything.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allowlist {
    pub kinds: Vec<KindRule>,
    pub namespaces: NamespaceRules,
}

/// Why a manifest was refused; its text goes into the `Applied=False` message.
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
}

/// Namespaces no work may touch by default: the control plane's own.
pub const DEFAULT_DENIED_NAMESPACES: &[&str] = &["kube-system", "kube-public", "kube-node-lease"];

impl Default for Allowlist {
    /// What Ramen's hub operator sends (contract §2.2 and §2.6.7).
    fn default() -> Self {
        let kinds = [
            ("ramendr.openshift.io", "VolumeReplicationGroup"),
            ("ramendr.openshift.io", "DRClusterConfig"),
            ("ramendr.openshift.io", "MaintenanceMode"),
            ("ramendr.openshift.io", "Recipe"),
            ("csiaddons.openshift.io", "NetworkFence"),
            ("", "Namespace"),
            ("", "ConfigMap"),
            ("rbac.authorization.k8s.io", "ClusterRole"),
            ("operators.coreos.com", "OperatorGroup"),
            ("operators.coreos.com", "Subscription"),
        ]
        .into_iter()
        .map(|(g, k)| KindRule::new(g, k))
        .collect();
        Allowlist {
            kinds,
            namespaces: NamespaceRules {
                allow: vec!["*".into()],
                deny: DEFAULT_DENIED_NAMESPACES
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            },
        }
    }
}

impl Allowlist {
    /// Everything, everywhere (tests, or an operator who opts out).
    pub fn allow_all() -> Self {
        Allowlist {
            kinds: vec![],
            namespaces: NamespaceRules {
                allow: vec!["*".into()],
                deny: vec![],
            },
        }
        .with_any_kind()
    }

    fn with_any_kind(mut self) -> Self {
        self.kinds.push(KindRule::new("*", "*"));
        self
    }

    /// Checks one object. `namespace` is empty for cluster-scoped objects; a Namespace
    /// object is checked against the namespace rules by its name.
    pub fn check(
        &self,
        group: &str,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Result<(), NotAllowed> {
        let any = |r: &KindRule| r.group == "*" && r.kind == "*";
        if !self.kinds.iter().any(|r| any(r) || r.matches(group, kind)) {
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
}
