//! Ramen's operator configuration: the RamenConfig YAML in the ConfigMaps
//! `ramen-hub-operator-config` (hub) and `ramen-dr-cluster-operator-config` (managed
//! clusters), key `ramen_manager_config.yaml`, and the S3 credentials Secrets its profiles
//! name (docs/ramen-contract.md, "Ramen's configuration").
//!
//! Only `s3StoreProfiles` is edited; every other setting is kept as it was. Ramen merges the
//! YAML over its defaults and writes it back, so the ConfigMap need not hold the defaults.

use std::collections::BTreeMap;

use base64::Engine;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::ObjectMeta;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::consts::config as names;

/// One entry of `s3StoreProfiles` (`S3StoreProfile`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct S3StoreProfile {
    /// The name DRClusters refer to.
    #[serde(rename = "s3ProfileName")]
    pub s3_profile_name: String,
    #[serde(rename = "s3Bucket")]
    pub s3_bucket: String,
    #[serde(rename = "s3CompatibleEndpoint")]
    pub s3_compatible_endpoint: String,
    #[serde(rename = "s3Region")]
    pub s3_region: String,
    /// The Secret with `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`.
    #[serde(rename = "s3SecretRef")]
    pub s3_secret_ref: SecretReference,
    /// Where Velero finds the credentials (default: secret `v<name>`, key `ramengenerated`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub velero_namespace_secret_key_ref: Option<Value>,
    /// CA certificates (PEM) for the endpoint; Go `[]byte`, so base64 in the YAML.
    #[serde(
        rename = "caCertificates",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ca_certificates: Option<String>,
}

/// `corev1.SecretReference`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct SecretReference {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
}

impl S3StoreProfile {
    /// Sets the CA bundle from PEM text.
    pub fn with_ca_pem(mut self, pem: &[u8]) -> Self {
        self.ca_certificates = Some(base64::engine::general_purpose::STANDARD.encode(pem));
        self
    }
}

/// Errors reading or editing a RamenConfig.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{what} is not valid YAML: {source}")]
    Yaml {
        what: String,
        #[source]
        source: Box<serde_saphyr::Error>,
    },
    #[error("{what} is not a YAML mapping")]
    NotAMapping { what: String },
    #[error("{what}: s3StoreProfiles is not a list of profiles: {source}")]
    Profiles {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("writing the RamenConfig YAML: {0}")]
    Write(String),
}

/// What [`upsert_profile`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Added,
    Updated,
    Unchanged,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Change::Added => "added",
            Change::Updated => "updated",
            Change::Unchanged => "unchanged",
        })
    }
}

fn parse_doc(yaml: &str, what: &str) -> Result<Map<String, Value>, ConfigError> {
    if yaml.trim().is_empty() {
        return Ok(Map::new());
    }
    let v: Value = serde_saphyr::from_str(yaml).map_err(|source| ConfigError::Yaml {
        what: what.to_string(),
        source: Box::new(source),
    })?;
    match v {
        Value::Object(m) => Ok(m),
        Value::Null => Ok(Map::new()),
        _ => Err(ConfigError::NotAMapping {
            what: what.to_string(),
        }),
    }
}

/// The S3 profiles of a RamenConfig YAML (`None`: no ConfigMap or no key).
pub fn profiles(yaml: Option<&str>, what: &str) -> Result<Vec<S3StoreProfile>, ConfigError> {
    let doc = parse_doc(yaml.unwrap_or_default(), what)?;
    match doc.get("s3StoreProfiles") {
        None | Some(Value::Null) => Ok(vec![]),
        Some(v) => serde_json::from_value(v.clone()).map_err(|source| ConfigError::Profiles {
            what: what.to_string(),
            source,
        }),
    }
}

/// Adds `profile` to the RamenConfig YAML, or replaces the profile of the same name. A new
/// document gets `ramenControllerType` (Ramen requires the field). Other settings and other
/// profiles are kept; the key order of the output is sorted.
pub fn upsert_profile(
    yaml: Option<&str>,
    controller_type: &str,
    profile: &S3StoreProfile,
    what: &str,
) -> Result<(String, Change), ConfigError> {
    let mut doc = parse_doc(yaml.unwrap_or_default(), what)?;
    doc.entry("ramenControllerType")
        .or_insert_with(|| Value::String(controller_type.to_string()));
    let mut list = match doc.remove("s3StoreProfiles") {
        None | Some(Value::Null) => vec![],
        Some(Value::Array(a)) => a,
        Some(_) => {
            return Err(ConfigError::Profiles {
                what: what.to_string(),
                source: serde::de::Error::custom("expected a list"),
            });
        }
    };
    let new = serde_json::to_value(profile).map_err(|e| ConfigError::Write(e.to_string()))?;
    let existing = list.iter().position(|p| {
        p.get("s3ProfileName").and_then(Value::as_str) == Some(&profile.s3_profile_name)
    });
    let change = match existing {
        Some(i) if list[i] == new => Change::Unchanged,
        Some(i) => {
            list[i] = new;
            Change::Updated
        }
        None => {
            list.push(new);
            Change::Added
        }
    };
    doc.insert("s3StoreProfiles".into(), Value::Array(list));
    let out = serde_saphyr::to_string(&Value::Object(doc))
        .map_err(|e| ConfigError::Write(e.to_string()))?;
    Ok((out, change))
}

/// A ConfigMap holding `yaml` under the RamenConfig key.
pub fn configmap(namespace: &str, name: &str, yaml: String) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(names::KEY.to_string(), yaml)])),
        ..Default::default()
    }
}

/// S3 credentials as the profile's Secret holds them.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

fn secret(namespace: &str, name: &str, data: BTreeMap<String, ByteString>) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some(data),
        ..Default::default()
    }
}

/// The Secret an S3 profile's `s3SecretRef` names (keys `AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`), on the hub and on each managed cluster.
pub fn s3_secret(namespace: &str, name: &str, creds: &S3Credentials) -> Secret {
    secret(
        namespace,
        name,
        BTreeMap::from([
            (
                names::AWS_ACCESS_KEY_ID.to_string(),
                ByteString(creds.access_key_id.clone().into_bytes()),
            ),
            (
                names::AWS_SECRET_ACCESS_KEY.to_string(),
                ByteString(creds.secret_access_key.clone().into_bytes()),
            ),
        ]),
    )
}

/// The Velero-format copy on a managed cluster: `<veleroNamespace>/v<name>`, key
/// `ramengenerated`, in the format of Ramen's secret policy (`newVeleroSecret`).
pub fn velero_secret(
    velero_namespace: &str,
    s3_secret_name: &str,
    creds: &S3Credentials,
) -> Secret {
    let ini = format!(
        "[default]\n  aws_access_key_id = {}\n  aws_secret_access_key = {}\n",
        creds.access_key_id, creds.secret_access_key
    );
    secret(
        velero_namespace,
        &crate::consts::velero_secret_name(s3_secret_name),
        BTreeMap::from([(
            names::VELERO_SECRET_KEY.to_string(),
            ByteString(ini.into_bytes()),
        )]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(name: &str, bucket: &str) -> S3StoreProfile {
        S3StoreProfile {
            s3_profile_name: name.into(),
            s3_bucket: bucket.into(),
            s3_compatible_endpoint: "http://minio.example:9000".into(),
            s3_region: "us-east-1".into(),
            s3_secret_ref: SecretReference {
                name: "s3-secret".into(),
                namespace: "ramen-system".into(),
            },
            ..Default::default()
        }
    }

    #[test]
    fn adds_a_profile_to_a_new_config() {
        let (yaml, change) =
            upsert_profile(None, "dr-hub", &profile("minio-dr1", "b1"), "hub").unwrap();
        assert_eq!(change, Change::Added);
        let v: Value = serde_saphyr::from_str(&yaml).unwrap();
        assert_eq!(v["ramenControllerType"], "dr-hub");
        assert_eq!(v["s3StoreProfiles"][0]["s3ProfileName"], "minio-dr1");
        assert_eq!(v["s3StoreProfiles"][0]["s3Bucket"], "b1");
        assert_eq!(
            v["s3StoreProfiles"][0]["s3SecretRef"],
            serde_json::json!({"name": "s3-secret", "namespace": "ramen-system"})
        );
        assert!(v["s3StoreProfiles"][0].get("caCertificates").is_none());
        assert_eq!(
            profiles(Some(&yaml), "hub").unwrap(),
            [profile("minio-dr1", "b1")]
        );
    }

    #[test]
    fn keeps_other_settings_and_replaces_by_name() {
        let existing = "\
ramenControllerType: dr-hub
leaderElection:
  leaderElect: false
drClusterOperator:
  deploymentAutomationEnabled: false
s3StoreProfiles:
- s3ProfileName: minio-dr1
  s3Bucket: old
  s3CompatibleEndpoint: http://x
  s3Region: r
  s3SecretRef: {name: s}
- s3ProfileName: minio-dr2
  s3Bucket: b2
  s3CompatibleEndpoint: http://y
  s3Region: r
  s3SecretRef: {name: s}
";
        let (yaml, change) = upsert_profile(
            Some(existing),
            "dr-hub",
            &profile("minio-dr1", "new"),
            "hub",
        )
        .unwrap();
        assert_eq!(change, Change::Updated);
        let v: Value = serde_saphyr::from_str(&yaml).unwrap();
        assert_eq!(v["leaderElection"]["leaderElect"], false);
        assert_eq!(v["drClusterOperator"]["deploymentAutomationEnabled"], false);
        let names: Vec<_> = profiles(Some(&yaml), "hub")
            .unwrap()
            .into_iter()
            .map(|p| (p.s3_profile_name, p.s3_bucket))
            .collect();
        assert_eq!(
            names,
            [
                ("minio-dr1".to_string(), "new".to_string()),
                ("minio-dr2".to_string(), "b2".to_string())
            ]
        );
        let (again, change) =
            upsert_profile(Some(&yaml), "dr-hub", &profile("minio-dr1", "new"), "hub").unwrap();
        assert_eq!(change, Change::Unchanged);
        assert_eq!(again, yaml);
    }

    #[test]
    fn ca_certificates_are_base64_as_go_bytes() {
        let p = profile("p", "b").with_ca_pem(b"-----BEGIN CERTIFICATE-----\n");
        let (yaml, _) = upsert_profile(None, "dr-cluster", &p, "x").unwrap();
        let v: Value = serde_saphyr::from_str(&yaml).unwrap();
        assert_eq!(
            v["s3StoreProfiles"][0]["caCertificates"],
            "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg=="
        );
        assert_eq!(v["ramenControllerType"], "dr-cluster");
    }

    #[test]
    fn bad_yaml_is_reported_with_its_source() {
        let e = upsert_profile(
            Some("- just\n- a list\n"),
            "dr-hub",
            &profile("p", "b"),
            "hub cm",
        )
        .unwrap_err();
        assert!(e.to_string().contains("hub cm"), "{e}");
        assert!(profiles(Some("s3StoreProfiles: 3\n"), "x").is_err());
    }

    #[test]
    fn secrets_have_ramens_keys_and_velero_format() {
        let creds = S3Credentials {
            access_key_id: "AKID".into(),
            secret_access_key: "SECRET".into(),
        };
        let s = s3_secret("ramen-system", "s3-secret", &creds);
        let data = s.data.unwrap();
        assert_eq!(data["AWS_ACCESS_KEY_ID"].0, b"AKID");
        assert_eq!(data["AWS_SECRET_ACCESS_KEY"].0, b"SECRET");
        let v = velero_secret("velero", "s3-secret", &creds);
        assert_eq!(v.metadata.name.as_deref(), Some("vs3-secret"));
        assert_eq!(
            String::from_utf8(v.data.unwrap()["ramengenerated"].0.clone()).unwrap(),
            "[default]\n  aws_access_key_id = AKID\n  aws_secret_access_key = SECRET\n"
        );
        assert!(!format!("{creds:?}").contains("SECRET"));
    }
}
