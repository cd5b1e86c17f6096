//! Raw JSON objects embedded in other objects (Go's `runtime.RawExtension`).

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A whole Kubernetes object stored inside another one, such as a ManifestWork manifest or a
/// ManagedClusterView result.
///
/// The JSON is kept exactly as it came (including `metadata.creationTimestamp: null` and a
/// zero-valued `status`, which Ramen's `json.Marshal` writes), so reading and writing it back
/// changes nothing. Its schema is `type: object` with `x-kubernetes-embedded-resource` and
/// `x-kubernetes-preserve-unknown-fields`, as in OCM's CRDs: the API server then requires
/// `apiVersion` and `kind` and prunes `metadata` to ObjectMeta, but keeps everything else.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(transparent)]
pub struct EmbeddedObject(pub Map<String, Value>);

impl EmbeddedObject {
    /// Wraps a JSON value; `None` if it is not an object.
    pub fn from_value(value: Value) -> Option<Self> {
        match value {
            Value::Object(map) => Some(Self(map)),
            _ => None,
        }
    }

    /// Serializes any value (for example a typed Kubernetes object) into an embedded object.
    pub fn from_serialize<T: Serialize>(obj: &T) -> Result<Self, serde_json::Error> {
        match serde_json::to_value(obj)? {
            Value::Object(map) => Ok(Self(map)),
            other => Err(serde::ser::Error::custom(format!(
                "embedded object must be a JSON object, got {other}"
            ))),
        }
    }

    /// Deserializes the embedded object into a typed value.
    pub fn to_typed<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_value(Value::Object(self.0.clone()))
    }

    /// The object as a JSON value.
    pub fn to_value(&self) -> Value {
        Value::Object(self.0.clone())
    }

    /// `apiVersion`, or `""`.
    pub fn api_version(&self) -> &str {
        self.0
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// `kind`, or `""`.
    pub fn kind(&self) -> &str {
        self.0
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// `metadata.name`, or `""`.
    pub fn name(&self) -> &str {
        self.metadata_str("name")
    }

    /// `metadata.namespace`, or `""` (cluster-scoped objects, or the namespace is not set).
    pub fn namespace(&self) -> &str {
        self.metadata_str("namespace")
    }

    fn metadata_str(&self, key: &str) -> &str {
        self.0
            .get("metadata")
            .and_then(|m| m.get(key))
            .and_then(Value::as_str)
            .unwrap_or_default()
    }
}

impl From<Map<String, Value>> for EmbeddedObject {
    fn from(map: Map<String, Value>) -> Self {
        Self(map)
    }
}

impl JsonSchema for EmbeddedObject {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "EmbeddedObject".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "object",
            "x-kubernetes-embedded-resource": true,
            "x-kubernetes-preserve-unknown-fields": true,
        })
    }
}

/// An arbitrary JSON object whose fields the API server keeps (`x-kubernetes-preserve-unknown-fields`)
/// but which is not a whole Kubernetes object, such as `Policy.spec.policy-templates[].objectDefinition`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(transparent)]
pub struct PreservedObject(pub Map<String, Value>);

impl JsonSchema for PreservedObject {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "PreservedObject".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": true,
        })
    }
}
