//! The generated CRDs must be structural (so a real kube-apiserver accepts them) and keep the
//! names, scopes and subresources of OCM's CRDs.

use std::collections::BTreeSet;

use drbridge_api::crds;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::Value;

fn all() -> Vec<CustomResourceDefinition> {
    crds::hub().into_iter().chain(crds::agent()).collect()
}

/// Checks the rules of a structural schema
/// (k8s.io/apiextensions-apiserver/pkg/apiserver/schema, `ValidateStructural`) that a derived
/// schema can break. Returns one message per problem.
fn structural_errors(path: &str, node: &Value, inside_junctor: bool, errors: &mut Vec<String>) {
    let Some(obj) = node.as_object() else {
        errors.push(format!("{path}: schema is not an object"));
        return;
    };
    for forbidden in ["$ref", "definitions", "$defs", "$schema", "title"] {
        if obj.contains_key(forbidden) {
            errors.push(format!("{path}: has {forbidden}"));
        }
    }
    let flag = |k: &str| obj.get(k) == Some(&Value::Bool(true));
    let int_or_string = flag("x-kubernetes-int-or-string");
    let preserve = flag("x-kubernetes-preserve-unknown-fields");
    let ty = obj.get("type").and_then(Value::as_str);
    if inside_junctor {
        for k in [
            "type",
            "default",
            "nullable",
            "description",
            "additionalProperties",
        ] {
            if obj.contains_key(k) {
                errors.push(format!("{path}: {k} inside anyOf/oneOf/allOf/not"));
            }
        }
    } else if ty.is_none() && !int_or_string && !preserve {
        errors.push(format!("{path}: no type"));
    }
    if flag("x-kubernetes-embedded-resource") && ty != Some("object") {
        errors.push(format!("{path}: embedded resource is not type object"));
    }
    if int_or_string && ty.is_some() {
        errors.push(format!("{path}: int-or-string with a type"));
    }
    if obj.contains_key("properties") && obj.contains_key("additionalProperties") {
        errors.push(format!(
            "{path}: properties and additionalProperties together"
        ));
    }
    if let Some(list_type) = obj.get("x-kubernetes-list-type").and_then(Value::as_str) {
        if ty != Some("array") {
            errors.push(format!("{path}: list-type on a non-array"));
        }
        let items = obj.get("items").cloned().unwrap_or_default();
        match list_type {
            "map" => {
                let keys = obj
                    .get("x-kubernetes-list-map-keys")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                if keys.is_empty() {
                    errors.push(format!("{path}: list-type map without keys"));
                }
                let required: BTreeSet<&str> = items["required"]
                    .as_array()
                    .map(|r| r.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                for key in keys.iter().filter_map(Value::as_str) {
                    let prop = &items["properties"][key];
                    if prop.is_null() {
                        errors.push(format!("{path}: map key {key} is not a property"));
                    } else if !required.contains(key) && prop.get("default").is_none() {
                        errors.push(format!(
                            "{path}: map key {key} is neither required nor defaulted"
                        ));
                    }
                }
            }
            "set" | "atomic" => {}
            other => errors.push(format!("{path}: unknown list-type {other}")),
        }
    }
    if let Some(props) = obj.get("properties").and_then(Value::as_object) {
        let required = obj
            .get("required")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for r in required.iter().filter_map(Value::as_str) {
            if !props.contains_key(r) {
                errors.push(format!("{path}: required {r} is not a property"));
            }
        }
        for (name, prop) in props {
            structural_errors(&format!("{path}.{name}"), prop, inside_junctor, errors);
        }
    }
    if let Some(items) = obj.get("items") {
        structural_errors(&format!("{path}[]"), items, inside_junctor, errors);
    }
    if let Some(ap) = obj.get("additionalProperties")
        && ap.is_object()
    {
        structural_errors(&format!("{path}{{}}"), ap, inside_junctor, errors);
    }
    for junctor in ["anyOf", "oneOf", "allOf"] {
        for (i, sub) in obj
            .get(junctor)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            structural_errors(&format!("{path}/{junctor}[{i}]"), sub, true, errors);
        }
    }
    if let Some(not) = obj.get("not") {
        structural_errors(&format!("{path}/not"), not, true, errors);
    }
}

#[test]
fn every_crd_is_structural() {
    let mut errors = Vec::new();
    for crd in all() {
        let name = crd.metadata.name.clone().unwrap();
        assert_eq!(crd.spec.versions.len(), 1, "{name}");
        let version = &crd.spec.versions[0];
        assert!(version.served && version.storage, "{name}");
        let schema =
            serde_json::to_value(&version.schema.as_ref().unwrap().open_api_v3_schema).unwrap();
        assert!(
            schema["properties"].get("metadata").is_none(),
            "{name}: metadata must be left to the API server"
        );
        structural_errors(&name, &schema, false, &mut errors);
    }
    assert!(
        errors.is_empty(),
        "non-structural schemas:\n{}",
        errors.join("\n")
    );
}

#[test]
fn names_scopes_and_subresources_match_ocm() {
    // (name, scope, served version, has status subresource, short names)
    let want: &[(&str, &str, &str, bool, &[&str])] = &[
        ("appliedworks.drbridge.io", "Cluster", "v1alpha1", true, &[]),
        (
            "channels.apps.open-cluster-management.io",
            "Namespaced",
            "v1",
            false,
            &[],
        ),
        (
            "clusterclaims.cluster.open-cluster-management.io",
            "Cluster",
            "v1alpha1",
            false,
            &[],
        ),
        (
            "managedclusteraddons.addon.open-cluster-management.io",
            "Namespaced",
            "v1alpha1",
            true,
            &["mca", "mcas"],
        ),
        (
            "managedclusters.cluster.open-cluster-management.io",
            "Cluster",
            "v1",
            true,
            &["mcl", "mcls"],
        ),
        (
            "managedclustersetbindings.cluster.open-cluster-management.io",
            "Namespaced",
            "v1beta2",
            true,
            &["mclsetbinding", "mclsetbindings"],
        ),
        (
            "managedclustersets.cluster.open-cluster-management.io",
            "Cluster",
            "v1beta2",
            true,
            &["mclset", "mclsets"],
        ),
        (
            "managedclusterviews.view.open-cluster-management.io",
            "Namespaced",
            "v1beta1",
            true,
            &[],
        ),
        (
            "manifestworks.work.open-cluster-management.io",
            "Namespaced",
            "v1",
            true,
            &[],
        ),
        (
            "placementbindings.policy.open-cluster-management.io",
            "Namespaced",
            "v1",
            true,
            &["pb"],
        ),
        (
            "placementdecisions.cluster.open-cluster-management.io",
            "Namespaced",
            "v1beta1",
            true,
            &[],
        ),
        (
            "placementrules.apps.open-cluster-management.io",
            "Namespaced",
            "v1",
            true,
            &[],
        ),
        (
            "placements.cluster.open-cluster-management.io",
            "Namespaced",
            "v1beta1",
            true,
            &[],
        ),
        (
            "policies.policy.open-cluster-management.io",
            "Namespaced",
            "v1",
            true,
            &["plc"],
        ),
    ];
    let mut got: Vec<_> = all();
    got.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    assert_eq!(got.len(), want.len());
    for (crd, (name, scope, version, status, short)) in got.iter().zip(want) {
        assert_eq!(crd.metadata.name.as_deref(), Some(*name));
        assert_eq!(crd.spec.scope, *scope, "{name}");
        let v = &crd.spec.versions[0];
        assert_eq!(v.name, *version, "{name}");
        let has_status = v.subresources.as_ref().is_some_and(|s| s.status.is_some());
        assert_eq!(has_status, *status, "{name}");
        let shorts = crd.spec.names.short_names.clone().unwrap_or_default();
        assert_eq!(
            shorts,
            short.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            "{name}"
        );
        let kind = &crd.spec.names.kind;
        assert_eq!(
            crd.spec.names.list_kind.as_deref(),
            Some(format!("{kind}List").as_str())
        );
    }
}

#[test]
fn embedded_objects_keep_unknown_fields() {
    let mw = crds::hub()
        .into_iter()
        .find(|c| c.spec.names.kind == "ManifestWork")
        .unwrap();
    let schema = serde_json::to_value(&mw.spec.versions[0].schema).unwrap();
    let manifest = &schema["openAPIV3Schema"]["properties"]["spec"]["properties"]["workload"]["properties"]
        ["manifests"]["items"];
    assert_eq!(manifest["type"], "object");
    assert_eq!(manifest["x-kubernetes-embedded-resource"], true);
    assert_eq!(manifest["x-kubernetes-preserve-unknown-fields"], true);

    let mcv = crds::hub()
        .into_iter()
        .find(|c| c.spec.names.kind == "ManagedClusterView")
        .unwrap();
    let schema = serde_json::to_value(&mcv.spec.versions[0].schema).unwrap();
    let result = &schema["openAPIV3Schema"]["properties"]["status"]["properties"]["result"];
    assert_eq!(result["type"], "object");
    assert_eq!(result["nullable"], true);
    assert_eq!(result["x-kubernetes-embedded-resource"], true);
    assert_eq!(result["x-kubernetes-preserve-unknown-fields"], true);
}
