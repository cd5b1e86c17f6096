//! Update strategy per manifest, from a work's `spec.manifestConfigs` (OCM's
//! `helper.FindManifestConfiguration`: the first matching option that sets a strategy
//! wins; namespace and name match with `*` wildcards).

use serde::Deserialize;

use crate::fencing::ResourceKey;

/// Field manager of server-side apply when the work names none (OCM's default).
pub const DEFAULT_FIELD_MANAGER: &str = "work-agent";

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Strategy {
    /// Create, or merge metadata and replace the rest (OCM's default).
    #[default]
    Update,
    /// Create if absent; never update.
    CreateOnly,
    /// Server-side apply.
    ServerSideApply { field_manager: String, force: bool },
    /// Never write.
    ReadOnly,
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(rename_all = "camelCase")]
struct Option_ {
    #[serde(default)]
    resource_identifier: Identifier,
    #[serde(default)]
    update_strategy: Option<UpdateStrategy>,
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(rename_all = "camelCase")]
struct Identifier {
    #[serde(default)]
    group: String,
    #[serde(default)]
    resource: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: String,
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(rename_all = "camelCase")]
struct UpdateStrategy {
    #[serde(default, rename = "type")]
    type_: String,
    #[serde(default)]
    server_side_apply: Option<Ssa>,
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(rename_all = "camelCase")]
struct Ssa {
    #[serde(default)]
    force: bool,
    #[serde(default)]
    field_manager: String,
}

/// A work's parsed `manifestConfigs`.
#[derive(Debug, Default, Clone)]
pub struct ManifestConfigs(Vec<Option_>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid manifestConfigs: {0}")]
pub struct InvalidConfigs(String);

impl ManifestConfigs {
    /// Parses the JSON of `spec.manifestConfigs`; empty bytes mean none.
    pub fn parse(bytes: &[u8]) -> Result<Self, InvalidConfigs> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self::default());
        }
        let v: Option<Vec<Option_>> =
            serde_json::from_slice(bytes).map_err(|e| InvalidConfigs(e.to_string()))?;
        Ok(ManifestConfigs(v.unwrap_or_default()))
    }

    /// The strategy for one object.
    pub fn strategy_for(&self, key: &ResourceKey) -> Result<Strategy, InvalidConfigs> {
        let Some(us) = self
            .0
            .iter()
            .filter(|o| {
                let id = &o.resource_identifier;
                id.group == key.group
                    && id.resource == key.resource
                    && wildcard_match(&key.namespace, &id.namespace)
                    && wildcard_match(&key.name, &id.name)
            })
            .find_map(|o| o.update_strategy.as_ref())
        else {
            return Ok(Strategy::Update);
        };
        Ok(match us.type_.as_str() {
            "" | "Update" => Strategy::Update,
            "CreateOnly" => Strategy::CreateOnly,
            "ReadOnly" => Strategy::ReadOnly,
            "ServerSideApply" => {
                let ssa = us.server_side_apply.clone().unwrap_or_default();
                Strategy::ServerSideApply {
                    field_manager: if ssa.field_manager.is_empty() {
                        DEFAULT_FIELD_MANAGER.to_string()
                    } else {
                        ssa.field_manager
                    },
                    force: ssa.force,
                }
            }
            other => {
                return Err(InvalidConfigs(format!(
                    "unknown update strategy type {other:?}"
                )));
            }
        })
    }
}

/// OCM's `wildcardMatch`: equal, or `target` is a pattern where `*` matches any run.
pub fn wildcard_match(value: &str, target: &str) -> bool {
    if value == target || target == "*" {
        return true;
    }
    if !target.contains('*') {
        return false;
    }
    let parts: Vec<&str> = target.split('*').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !value.starts_with(first) || value.len() < first.len() + last.len() || !value.ends_with(last)
    {
        return false;
    }
    let mut rest = &value[first.len()..value.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_update() {
        let c = ManifestConfigs::parse(b"").unwrap();
        assert_eq!(
            c.strategy_for(&ResourceKey::new("", "configmaps", "a", "b"))
                .unwrap(),
            Strategy::Update
        );
        let c = ManifestConfigs::parse(b"null").unwrap();
        assert_eq!(
            c.strategy_for(&ResourceKey::new("", "configmaps", "a", "b"))
                .unwrap(),
            Strategy::Update
        );
    }

    #[test]
    fn ssa_and_wildcards() {
        let c = ManifestConfigs::parse(
            br#"[{"resourceIdentifier":{"group":"apps","resource":"deployments","namespace":"*","name":"web-*"},
                  "feedbackRules":[{"type":"WellKnownStatus"}]},
                 {"resourceIdentifier":{"group":"apps","resource":"deployments","namespace":"*","name":"web-*"},
                  "updateStrategy":{"type":"ServerSideApply","serverSideApply":{"force":true}}},
                 {"resourceIdentifier":{"resource":"configmaps","namespace":"ns","name":"c"},
                  "updateStrategy":{"type":"CreateOnly"}},
                 {"resourceIdentifier":{"resource":"secrets","namespace":"ns","name":"s"},
                  "updateStrategy":{"type":"ReadOnly"}}]"#,
        )
        .unwrap();
        assert_eq!(
            c.strategy_for(&ResourceKey::new("apps", "deployments", "x", "web-1"))
                .unwrap(),
            Strategy::ServerSideApply {
                field_manager: "work-agent".into(),
                force: true
            }
        );
        assert_eq!(
            c.strategy_for(&ResourceKey::new("apps", "deployments", "x", "db"))
                .unwrap(),
            Strategy::Update
        );
        assert_eq!(
            c.strategy_for(&ResourceKey::new("", "configmaps", "ns", "c"))
                .unwrap(),
            Strategy::CreateOnly
        );
        assert_eq!(
            c.strategy_for(&ResourceKey::new("", "secrets", "ns", "s"))
                .unwrap(),
            Strategy::ReadOnly
        );
    }

    #[test]
    fn bad_configs() {
        assert!(ManifestConfigs::parse(b"{").is_err());
        let c = ManifestConfigs::parse(br#"[{"resourceIdentifier":{"resource":"configmaps","name":"c"},"updateStrategy":{"type":"Bogus"}}]"#).unwrap();
        let e = c
            .strategy_for(&ResourceKey::new("", "configmaps", "", "c"))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid manifestConfigs: unknown update strategy type \"Bogus\""
        );
    }

    #[test]
    fn wildcard() {
        assert!(wildcard_match("abc", "*"));
        assert!(wildcard_match("abc", "abc"));
        assert!(wildcard_match("abc", "a*"));
        assert!(wildcard_match("abc", "*c"));
        assert!(wildcard_match("abc", "a*c"));
        assert!(wildcard_match("axxbyyc", "a*b*c"));
        assert!(!wildcard_match("abc", "b*"));
        assert!(!wildcard_match("ac", "ab*bc"));
        assert!(!wildcard_match("abc", "abd"));
        assert!(wildcard_match("", ""));
    }
}
