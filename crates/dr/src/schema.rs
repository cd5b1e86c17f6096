//! Schemas for fields whose Ramen CRD carries more than the derived schema: CEL rules
//! (`x-kubernetes-validations`), patterns, and shapes drbridge does not model field by field.
//! Go's JSON rules are those of `drbridge_api::schema`.

use drbridge_api::schema as api;
use schemars::{Schema, SchemaGenerator, json_schema};
use serde_json::json;

fn with_rules(mut schema: Schema, rules: &[(&str, &str)]) -> Schema {
    let rules: Vec<_> = rules
        .iter()
        .map(|(rule, message)| json!({"rule": rule, "message": message}))
        .collect();
    schema.insert("x-kubernetes-validations".into(), json!(rules));
    schema
}

fn immutable(schema: Schema, field: &str) -> Schema {
    with_rules(
        schema,
        &[("self == oldSelf", &format!("{field} is immutable"))],
    )
}

pub(crate) fn placement_ref(g: &mut SchemaGenerator) -> Schema {
    immutable(api::object_reference(g), "placementRef")
}

pub(crate) fn dr_policy_ref(g: &mut SchemaGenerator) -> Schema {
    immutable(api::object_reference(g), "drPolicyRef")
}

pub(crate) fn pvc_selector(g: &mut SchemaGenerator) -> Schema {
    immutable(api::label_selector(g), "pvcSelector")
}

/// A selector Ramen defaults to `{}` and makes immutable.
fn class_selector(g: &mut SchemaGenerator, field: &str) -> Schema {
    let mut s = immutable(api::label_selector(g), field);
    s.insert("default".into(), json!({}));
    s
}

pub(crate) fn replication_class_selector(g: &mut SchemaGenerator) -> Schema {
    class_selector(g, "replicationClassSelector")
}

pub(crate) fn volume_snapshot_class_selector(g: &mut SchemaGenerator) -> Schema {
    class_selector(g, "volumeSnapshotClassSelector")
}

pub(crate) fn scheduling_interval(_: &mut SchemaGenerator) -> Schema {
    immutable(
        json_schema!({"type": "string", "pattern": r"^(|\d+[mhd])$"}),
        "schedulingInterval",
    )
}

pub(crate) fn vrg_scheduling_interval(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "pattern": r"^\d+[mhd]$"})
}

pub(crate) fn dr_clusters(_: &mut SchemaGenerator) -> Schema {
    with_rules(
        json_schema!({"type": "array", "items": {"type": "string"}}),
        &[
            (
                "size(self) == 2",
                "drClusters requires a list of 2 clusters",
            ),
            ("self == oldSelf", "drClusters is immutable"),
        ],
    )
}

pub(crate) fn immutable_string_s3_profile(_: &mut SchemaGenerator) -> Schema {
    immutable(json_schema!({"type": "string"}), "s3ProfileName")
}

pub(crate) fn immutable_string_region(_: &mut SchemaGenerator) -> Schema {
    immutable(json_schema!({"type": "string"}), "region")
}

/// `metav1.Duration`: a Go duration string.
pub(crate) fn duration(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string"})
}

pub(crate) fn optional_duration(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "format": "duration"})
}

/// A structure drbridge reads and writes only as a whole (VolSync settings, static-IP data):
/// kept as JSON, with a schema that preserves every field.
pub(crate) fn opaque_object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "object", "x-kubernetes-preserve-unknown-fields": true})
}

pub(crate) fn opaque_list(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
    })
}

pub(crate) fn nullable_time(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "format": "date-time", "nullable": true})
}

pub(crate) fn optional_label_selector(g: &mut SchemaGenerator) -> Schema {
    api::label_selector(g)
}

/// `corev1.LocalObjectReference` as controller-gen writes it.
pub(crate) fn local_object_reference(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "properties": {"name": {"type": "string", "default": ""}},
        "x-kubernetes-map-type": "atomic",
    })
}
