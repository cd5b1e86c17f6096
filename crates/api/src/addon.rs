//! `addon.open-cluster-management.io/v1alpha1` ManagedClusterAddOn, as in
//! `open-cluster-management.io/api` v1.2.0 `addon/v1alpha1`.
//!
//! Ramen (with deployment automation on) creates the ManagedClusterAddOn `volsync` in each
//! cluster's hub namespace and expects OCM to install VolSync on the cluster.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// API group.
pub const GROUP: &str = "addon.open-cluster-management.io";
/// API version.
pub const VERSION: &str = "v1alpha1";

/// ManagedClusterAddOn: an add-on installed on one managed cluster (in the cluster's hub
/// namespace).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[kube(
    group = "addon.open-cluster-management.io",
    version = "v1alpha1",
    kind = "ManagedClusterAddOn",
    namespaced,
    status = "ManagedClusterAddOnStatus",
    shortname = "mca",
    shortname = "mcas",
    derive = "PartialEq",
    derive = "Default",
    printcolumn = r#"{"name":"Available","type":"string","jsonPath":".status.conditions[?(@.type==\"Available\")].status"}"#,
    printcolumn = r#"{"name":"Degraded","type":"string","jsonPath":".status.conditions[?(@.type==\"Degraded\")].status"}"#,
    printcolumn = r#"{"name":"Progressing","type":"string","jsonPath":".status.conditions[?(@.type==\"Progressing\")].status"}"#,
    doc = "ManagedClusterAddOn: an add-on installed on one managed cluster."
)]
#[serde(rename_all = "camelCase")]
pub struct ManagedClusterAddOnSpec {
    /// Namespace on the managed cluster to install the add-on into. The API server defaults it
    /// to `open-cluster-management-agent-addon`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(
        extend("default" = "open-cluster-management-agent-addon"),
        length(max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub install_namespace: String,
    /// Configurations of the add-on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub configs: Vec<AddOnConfig>,
}

/// A configuration object of an add-on.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AddOnConfig {
    /// API group of the configuration; `""` for core.
    #[serde(default)]
    pub group: String,
    /// Plural resource name of the configuration.
    #[schemars(length(min = 1))]
    pub resource: String,
    /// Namespace of the configuration.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Name of the configuration.
    #[schemars(length(min = 1))]
    pub name: String,
}

/// Status of an add-on.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManagedClusterAddOnStatus {
    /// Conditions: Available, Degraded, Progressing, Configured, ...
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::schema::conditions_map")]
    pub conditions: Vec<Condition>,
    /// Objects the add-on created.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub related_objects: Vec<AddOnObjectReference>,
    /// Display metadata.
    #[serde(rename = "addOnMeta", default)]
    #[schemars(skip_serializing_if = "crate::schema::no_default")]
    pub add_on_meta: AddOnMeta,
    /// Deprecated configuration coordinates.
    #[serde(rename = "addOnConfiguration", default)]
    #[schemars(skip_serializing_if = "crate::schema::no_default")]
    pub add_on_configuration: ConfigCoordinates,
    /// Configuration types the add-on supports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["group", "resource"]))]
    pub supported_configs: Vec<ConfigGroupResource>,
    /// Configurations in effect.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub config_references: Vec<ConfigReference>,
    /// Namespace the add-on agent runs in.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Registrations of the add-on agent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub registrations: Vec<RegistrationConfig>,
    /// How the add-on's health is checked.
    #[serde(default)]
    #[schemars(skip_serializing_if = "crate::schema::no_default")]
    pub health_check: HealthCheck,
    /// `csr` or `token`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(extend("enum" = ["csr", "token"]))]
    pub kube_client_driver: String,
}

/// An object an add-on created (`ObjectReference` in Go).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AddOnObjectReference {
    /// API group.
    pub group: String,
    /// Plural resource name.
    pub resource: String,
    /// Namespace.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Name.
    pub name: String,
}

/// Display metadata of an add-on.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AddOnMeta {
    /// Display name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub display_name: String,
    /// Description.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

/// Deprecated configuration coordinates.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, Default, JsonSchema)]
pub struct ConfigCoordinates {
    /// CRD name of the configuration.
    #[serde(rename = "crdName", default, skip_serializing_if = "String::is_empty")]
    pub crd_name: String,
    /// Name of the configuration object.
    #[serde(rename = "crName", default, skip_serializing_if = "String::is_empty")]
    pub cr_name: String,
    /// Last generation of the configuration seen.
    #[serde(
        rename = "lastObservedGeneration",
        default,
        skip_serializing_if = "crate::schema::is_zero_i64"
    )]
    pub last_observed_generation: i64,
}

/// A configuration type.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigGroupResource {
    /// API group; `""` for core.
    #[serde(default)]
    pub group: String,
    /// Plural resource name.
    #[schemars(length(min = 1))]
    pub resource: String,
}

/// A configuration in effect.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigReference {
    /// API group; `""` for core.
    #[serde(default)]
    pub group: String,
    /// Plural resource name.
    #[schemars(length(min = 1))]
    pub resource: String,
    /// Namespace.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Name.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Last generation of the configuration seen.
    #[serde(default)]
    #[schemars(skip_serializing_if = "crate::schema::no_default")]
    pub last_observed_generation: i64,
    /// Desired configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_config: Option<ConfigSpecHash>,
    /// Configuration last applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_applied_config: Option<ConfigSpecHash>,
}

/// A configuration and the hash of its spec.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigSpecHash {
    /// Namespace.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Name.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Hash of the spec.
    #[serde(default)]
    #[schemars(skip_serializing_if = "crate::schema::no_default")]
    pub spec_hash: String,
}

/// A registration of an add-on agent.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegistrationConfig {
    /// Signer of the agent's certificate.
    #[schemars(
        length(min = 5, max = 571),
        regex(pattern = r"^([a-z0-9][a-z0-9-]*[a-z0-9]\.)+[a-z]+\/[a-z0-9-\.]+$")
    )]
    pub signer_name: String,
    /// Subject of the certificate.
    #[serde(default)]
    #[schemars(skip_serializing_if = "crate::schema::no_default")]
    pub subject: AddOnSubject,
}

/// Subject of an add-on agent certificate (`Subject` in Go).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, Default, JsonSchema)]
pub struct AddOnSubject {
    /// User name.
    #[serde(default)]
    #[schemars(skip_serializing_if = "crate::schema::no_default")]
    pub user: String,
    /// Groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Organization units.
    #[serde(
        rename = "organizationUnit",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub organization_units: Vec<String>,
}

/// How an add-on's health is checked.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheck {
    /// Lease or Customized. The API server defaults it to Lease.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "Lease"))]
    pub mode: Option<HealthCheckMode>,
}

/// `HealthCheck.mode`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default, JsonSchema)]
pub enum HealthCheckMode {
    /// The add-on agent renews a lease.
    #[default]
    Lease,
    /// The add-on manager decides.
    Customized,
}

/// Names and strings of the addon API.
pub mod consts {
    /// Name of the VolSync add-on Ramen creates.
    pub const VOLSYNC_ADDON_NAME: &str = "volsync";
    /// Default `spec.installNamespace`.
    pub const DEFAULT_INSTALL_NAMESPACE: &str = "open-cluster-management-agent-addon";
    /// Condition types.
    pub const CONDITION_AVAILABLE: &str = "Available";
    /// Degraded condition.
    pub const CONDITION_DEGRADED: &str = "Degraded";
    /// Progressing condition.
    pub const CONDITION_PROGRESSING: &str = "Progressing";
    /// Configured condition.
    pub const CONDITION_CONFIGURED: &str = "Configured";
    /// Label naming the add-on on its objects.
    pub const ADDON_LABEL: &str = "open-cluster-management.io/addon-name";
}
