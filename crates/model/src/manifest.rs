//! Parsing and validation of the manifests of one work.
//!
//! Each manifest is checked on its own so that one bad manifest gives one clear
//! per-manifest condition and the others are still applied (OCM behaves the same way:
//! a manifest that does not decode fails alone).

use std::collections::HashMap;
use std::fmt;

use serde_json::{Map, Value};

/// Default limit of a work's total manifest bytes: the etcd object limit (1.5 MiB) plus
/// a margin for the JSON of the ManifestWork around the manifests.
pub const DEFAULT_MAX_WORK_BYTES: usize = 1_572_864 + 262_144;

/// The group, version and kind of a manifest, from its `apiVersion` and `kind`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Gvk {
    pub group: String,
    pub version: String,
    pub kind: String,
}

impl Gvk {
    pub fn new(
        group: impl Into<String>,
        version: impl Into<String>,
        kind: impl Into<String>,
    ) -> Self {
        Gvk {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
        }
    }

    /// Splits an `apiVersion` into group and version (`v1` is the core group).
    pub fn from_api_version(api_version: &str, kind: &str) -> Self {
        match api_version.split_once('/') {
            Some((g, v)) => Gvk::new(g, v, kind),
            None => Gvk::new("", api_version, kind),
        }
    }

    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

impl fmt::Display for Gvk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}, Kind={}", self.api_version(), self.kind)
    }
}

/// What is known about a manifest, even when it is invalid. Status reports it as the
/// manifest's `resourceMeta` (resource and scope are added once discovery has run).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ManifestMeta {
    pub ordinal: usize,
    pub gvk: Gvk,
    /// As written in the manifest; cleared later for cluster-scoped kinds.
    pub namespace: String,
    pub name: String,
}

/// A manifest that passed validation.
#[derive(Clone, Debug, PartialEq)]
pub struct ParsedManifest {
    pub meta: ManifestMeta,
    /// The object, always a JSON object.
    pub object: Value,
}

/// Why a manifest cannot be applied before any API call is made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("invalid manifest JSON: {0}")]
    InvalidJson(String),
    #[error("manifest is not a JSON object")]
    NotAnObject,
    #[error("manifest has no apiVersion")]
    MissingApiVersion,
    #[error("manifest has an invalid apiVersion {0:?}")]
    InvalidApiVersion(String),
    #[error("manifest has no kind")]
    MissingKind,
    #[error("manifest has no metadata.name")]
    MissingName,
    #[error(
        "manifest sets metadata.generateName {0:?}, which the agent cannot track; set metadata.name"
    )]
    GenerateName(String),
    #[error("manifest duplicates manifest {first} (same group, kind, namespace and name)")]
    Duplicate { first: usize },
    #[error("work manifests total {size} bytes, over the agent limit of {limit} bytes")]
    WorkTooLarge { size: usize, limit: usize },
}

/// A manifest that failed validation, with what could be read of it.
#[derive(Clone, Debug, PartialEq)]
pub struct InvalidManifest {
    pub meta: ManifestMeta,
    pub error: ManifestError,
}

/// Parses and validates one manifest.
pub fn parse_manifest(
    ordinal: usize,
    bytes: &[u8],
) -> Result<ParsedManifest, Box<InvalidManifest>> {
    let mut meta = ManifestMeta {
        ordinal,
        ..Default::default()
    };
    let fail = |meta: &ManifestMeta, error| {
        Err(Box::new(InvalidManifest {
            meta: meta.clone(),
            error,
        }))
    };

    let value: Value = match serde_json::from_slice(bytes) {
        Ok(v) => v,
        Err(e) => return fail(&meta, ManifestError::InvalidJson(e.to_string())),
    };
    let Some(obj) = value.as_object() else {
        return fail(&meta, ManifestError::NotAnObject);
    };
    let api_version = str_field(obj, "apiVersion");
    let kind = str_field(obj, "kind");
    let md = obj.get("metadata").and_then(Value::as_object);
    meta.namespace = md
        .map(|m| str_field(m, "namespace"))
        .unwrap_or_default()
        .to_string();
    meta.name = md
        .map(|m| str_field(m, "name"))
        .unwrap_or_default()
        .to_string();
    meta.gvk = Gvk::from_api_version(api_version, kind);

    if api_version.is_empty() {
        return fail(&meta, ManifestError::MissingApiVersion);
    }
    if !valid_api_version(api_version) {
        return fail(
            &meta,
            ManifestError::InvalidApiVersion(api_version.to_string()),
        );
    }
    if kind.is_empty() {
        return fail(&meta, ManifestError::MissingKind);
    }
    if meta.name.is_empty() {
        let generate = md.map(|m| str_field(m, "generateName")).unwrap_or_default();
        if !generate.is_empty() {
            return fail(&meta, ManifestError::GenerateName(generate.to_string()));
        }
        return fail(&meta, ManifestError::MissingName);
    }
    Ok(ParsedManifest {
        meta,
        object: value,
    })
}

fn str_field<'a>(obj: &'a Map<String, Value>, key: &str) -> &'a str {
    obj.get(key).and_then(Value::as_str).unwrap_or("")
}

fn valid_api_version(av: &str) -> bool {
    let mut parts = av.split('/');
    let ok = |s: Option<&str>| s.is_some_and(|s| !s.is_empty() && !s.contains(char::is_whitespace));
    match av.matches('/').count() {
        0 => ok(parts.next()),
        1 => ok(parts.next()) && ok(parts.next()),
        _ => false,
    }
}

/// Parses every manifest of a work. The result has one entry per manifest, in spec order.
///
/// A work whose manifests add up to more than `max_bytes` fails as a whole (each
/// manifest carries the size error) and nothing of it is parsed further.
pub fn parse_work<B: AsRef<[u8]>>(
    manifests: &[B],
    max_bytes: usize,
) -> Vec<Result<ParsedManifest, Box<InvalidManifest>>> {
    let size: usize = manifests.iter().map(|m| m.as_ref().len()).sum();
    if size > max_bytes {
        return (0..manifests.len())
            .map(|ordinal| {
                Err(Box::new(InvalidManifest {
                    meta: ManifestMeta {
                        ordinal,
                        ..Default::default()
                    },
                    error: ManifestError::WorkTooLarge {
                        size,
                        limit: max_bytes,
                    },
                }))
            })
            .collect();
    }
    let mut seen: HashMap<(String, String, String, String), usize> = HashMap::new();
    manifests
        .iter()
        .enumerate()
        .map(|(i, bytes)| {
            let parsed = parse_manifest(i, bytes.as_ref())?;
            let m = &parsed.meta;
            let key = (
                m.gvk.group.clone(),
                m.gvk.kind.clone(),
                m.namespace.clone(),
                m.name.clone(),
            );
            if let Some(&first) = seen.get(&key) {
                return Err(Box::new(InvalidManifest {
                    meta: parsed.meta,
                    error: ManifestError::Duplicate { first },
                }));
            }
            seen.insert(key, i);
            Ok(parsed)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bytes(v: Value) -> Vec<u8> {
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn parses_a_ramen_vrg() {
        let m = bytes(json!({
            "apiVersion": "ramendr.openshift.io/v1alpha1", "kind": "VolumeReplicationGroup",
            "metadata": {"name": "busybox-drpc", "namespace": "busybox", "creationTimestamp": null},
            "spec": {"replicationState": "primary"}, "status": {}
        }));
        let p = parse_manifest(0, &m).unwrap();
        assert_eq!(
            p.meta.gvk,
            Gvk::new("ramendr.openshift.io", "v1alpha1", "VolumeReplicationGroup")
        );
        assert_eq!(p.meta.namespace, "busybox");
        assert_eq!(p.meta.name, "busybox-drpc");
    }

    #[test]
    fn core_group_api_version() {
        let g = Gvk::from_api_version("v1", "Namespace");
        assert_eq!(g.group, "");
        assert_eq!(g.api_version(), "v1");
        assert_eq!(
            Gvk::new("apps", "v1", "Deployment").api_version(),
            "apps/v1"
        );
        assert_eq!(
            Gvk::new("apps", "v1", "Deployment").to_string(),
            "apps/v1, Kind=Deployment"
        );
    }

    #[test]
    fn each_kind_of_bad_input_has_a_clear_error() {
        let cases: Vec<(Vec<u8>, ManifestError)> = vec![
            (
                b"{not json".to_vec(),
                ManifestError::InvalidJson(String::new()),
            ),
            (bytes(json!([1, 2])), ManifestError::NotAnObject),
            (
                bytes(json!({"kind": "ConfigMap", "metadata": {"name": "a"}})),
                ManifestError::MissingApiVersion,
            ),
            (
                bytes(json!({"apiVersion": "a/b/c", "kind": "X", "metadata": {"name": "a"}})),
                ManifestError::InvalidApiVersion("a/b/c".into()),
            ),
            (
                bytes(json!({"apiVersion": "v1", "metadata": {"name": "a"}})),
                ManifestError::MissingKind,
            ),
            (
                bytes(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}})),
                ManifestError::MissingName,
            ),
            (
                bytes(json!({"apiVersion": "v1", "kind": "ConfigMap"})),
                ManifestError::MissingName,
            ),
            (
                bytes(
                    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "cm-"}}),
                ),
                ManifestError::GenerateName("cm-".into()),
            ),
        ];
        for (input, want) in cases {
            let err = parse_manifest(3, &input).unwrap_err();
            assert_eq!(err.meta.ordinal, 3);
            match (&err.error, &want) {
                (ManifestError::InvalidJson(msg), ManifestError::InvalidJson(_)) => {
                    assert!(msg.contains("key must be a string"), "{msg}");
                    assert!(err.error.to_string().starts_with("invalid manifest JSON: "));
                }
                (got, want) => assert_eq!(got, want),
            }
        }
    }

    #[test]
    fn partial_meta_is_kept_for_status() {
        let err = parse_manifest(
            1,
            &bytes(
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"namespace": "ns"}}),
            ),
        )
        .unwrap_err();
        assert_eq!(err.meta.gvk.kind, "ConfigMap");
        assert_eq!(err.meta.namespace, "ns");
        assert_eq!(err.error.to_string(), "manifest has no metadata.name");
    }

    #[test]
    fn duplicates_fail_after_the_first() {
        let cm = bytes(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "x"}}),
        );
        let other_ns = bytes(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "y"}}),
        );
        // Same group/kind/ns/name with another version is still the same object.
        let cm_v2 = bytes(
            json!({"apiVersion": "v2", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "x"}}),
        );
        let out = parse_work(&[cm.clone(), other_ns, cm_v2], DEFAULT_MAX_WORK_BYTES);
        assert!(out[0].is_ok());
        assert!(out[1].is_ok());
        let e = out[2].as_ref().unwrap_err();
        assert_eq!(e.error, ManifestError::Duplicate { first: 0 });
        assert_eq!(
            e.error.to_string(),
            "manifest duplicates manifest 0 (same group, kind, namespace and name)"
        );
    }

    #[test]
    fn oversized_work_fails_every_manifest() {
        let cm = bytes(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}}));
        let out = parse_work(&[cm.clone(), cm.clone()], cm.len() * 2 - 1);
        assert_eq!(out.len(), 2);
        for (i, r) in out.iter().enumerate() {
            let e = r.as_ref().unwrap_err();
            assert_eq!(e.meta.ordinal, i);
            assert!(matches!(e.error, ManifestError::WorkTooLarge { .. }));
            assert!(e.error.to_string().contains("over the agent limit"));
        }
        // Exactly at the limit is fine.
        assert!(parse_work(std::slice::from_ref(&cm), cm.len())[0].is_ok());
    }

    #[test]
    fn default_limit_accepts_a_1_5_mib_work() {
        let pad = "x".repeat(1_572_864 - 100);
        let cm = bytes(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": pad}}),
        );
        assert!(cm.len() <= 1_572_864);
        assert!(parse_work(&[cm], DEFAULT_MAX_WORK_BYTES)[0].is_ok());
    }
}
