//! Helpers that make the derived schemas and the JSON match OCM's Go types. Public so that
//! other crates with Go-mirroring types (drbridge-dr's Ramen types) follow the same rules.
//!
//! Go's `encoding/json` rules, and how the types here mirror them:
//!
//! * `json:"x,omitempty"` on a string, number, bool, slice or map: the zero value is left out.
//!   We use the plain Rust type with `#[serde(default, skip_serializing_if = ...)]`.
//! * `json:"x,omitempty"` on a pointer: `nil` is left out. We use `Option<T>`.
//! * `json:"x"` (no `omitempty`) on a scalar, and `omitempty` on a struct (which Go never
//!   omits): the field is always written. We use the plain type, with `#[serde(default)]` when
//!   OCM's CRD does not require the field. Such a field must not get a `default:` in the CRD
//!   (OCM's has none), so it also carries `#[schemars(skip_serializing_if =
//!   "crate::schema::no_default")]`, which only the schema generator sees: it keeps the field
//!   optional and drops the default.
//! * `json:"x"` on a slice: Go writes `null` for nil, which the API server prunes. We leave an
//!   empty slice out (the same object once stored) and read `null` as empty.
//!
//! Where OCM's CRD sets a default, the field says so with `#[schemars(extend("default" = ...))]`.

use schemars::{Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};

/// For `#[schemars(skip_serializing_if = ...)]`: tells schemars that the default value is never
/// written, so it puts no `default:` into the CRD. Serde does not see this attribute.
pub fn no_default<T>(_: &T) -> bool {
    true
}

pub fn is_zero_i32(v: &i32) -> bool {
    *v == 0
}

pub fn is_zero_i64(v: &i64) -> bool {
    *v == 0
}

pub fn is_false(v: &bool) -> bool {
    !*v
}

/// Reads `null` as the default value. Go writes `null` for a nil slice or map in a field without
/// `omitempty`; such objects must still deserialize.
pub fn null_as_default<'de, D, T>(de: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Option::<T>::deserialize(de).map(Option::unwrap_or_default)
}

/// Schema of one `metav1.Condition`, with the validations controller-gen writes for it.
/// k8s-openapi's own schema for `Condition` lacks them.
fn condition_item() -> Value {
    json!({
        "description": "Condition contains details for one aspect of the current state of this API Resource.",
        "type": "object",
        "required": ["lastTransitionTime", "message", "reason", "status", "type"],
        "properties": {
            "lastTransitionTime": {
                "description": "lastTransitionTime is the last time the condition transitioned from one status to another.",
                "type": "string",
                "format": "date-time",
            },
            "message": {
                "description": "message is a human readable message indicating details about the transition.",
                "type": "string",
                "maxLength": 32768,
            },
            "observedGeneration": {
                "description": "observedGeneration represents the .metadata.generation that the condition was set based upon.",
                "type": "integer",
                "format": "int64",
                "minimum": 0,
            },
            "reason": {
                "description": "reason contains a programmatic identifier indicating the reason for the condition's last transition.",
                "type": "string",
                "maxLength": 1024,
                "minLength": 1,
                "pattern": "^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
            },
            "status": {
                "description": "status of the condition, one of True, False, Unknown.",
                "type": "string",
                "enum": ["True", "False", "Unknown"],
            },
            "type": {
                "description": "type of condition in CamelCase or in foo.example.com/CamelCase.",
                "type": "string",
                "maxLength": 316,
                "pattern": "^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$",
            },
        },
    })
}

/// `[]metav1.Condition` with `+listType=map` `+listMapKey=type`.
pub fn conditions_map(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "items": condition_item(),
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"],
    })
}

/// `[]metav1.Condition` without list-type markers (as in the CRDs that have none).
pub fn conditions_list(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "items": condition_item(),
    })
}

/// `corev1.ResourceList`-like map of quantities (`map[string]resource.Quantity`).
pub fn resource_list(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "additionalProperties": {
            "x-kubernetes-int-or-string": true,
            "pattern": "^(\\+|-)?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\\+|-)?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))))?$",
        },
    })
}

fn label_selector_requirement() -> Value {
    json!({
        "description": "A label selector requirement: a key, an operator and values.",
        "type": "object",
        "required": ["key", "operator"],
        "properties": {
            "key": {"description": "The key the selector applies to.", "type": "string"},
            "operator": {
                "description": "In, NotIn, Exists or DoesNotExist.",
                "type": "string",
            },
            "values": {
                "description": "Values for In and NotIn; empty for Exists and DoesNotExist.",
                "type": "array",
                "items": {"type": "string"},
                "x-kubernetes-list-type": "atomic",
            },
        },
    })
}

/// `metav1.LabelSelector` as controller-gen writes it (atomic, unlike k8s-openapi's schema).
pub fn label_selector(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "properties": {
            "matchExpressions": {
                "description": "Label selector requirements (ANDed).",
                "type": "array",
                "items": label_selector_requirement(),
                "x-kubernetes-list-type": "atomic",
            },
            "matchLabels": {
                "description": "Labels that must match exactly (ANDed).",
                "type": "object",
                "additionalProperties": {"type": "string"},
            },
        },
        "x-kubernetes-map-type": "atomic",
    })
}

/// `[]metav1.LabelSelectorRequirement` (OCM's claim selectors).
pub fn selector_requirements(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "items": label_selector_requirement(),
    })
}

/// `corev1.ObjectReference` as controller-gen writes it (atomic).
pub fn object_reference(_: &mut SchemaGenerator) -> Schema {
    let props = [
        "apiVersion",
        "fieldPath",
        "kind",
        "name",
        "namespace",
        "resourceVersion",
        "uid",
    ]
    .map(|p| (p.to_string(), json!({"type": "string"})));
    json_schema!({
        "type": "object",
        "properties": serde_json::Map::from_iter(props),
        "x-kubernetes-map-type": "atomic",
    })
}

/// A qualified name (`prefix/name`), as used for taint keys, at most 316 characters.
pub const QUALIFIED_NAME: &str = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$";
