//! ManagedClusterView texts, as the stolostron view controller writes them
//! (`pkg/klusterlet/view/view_controller.go`, docs/ramen-contract.md, "View status").
//!
//! Ramen reads a view as "absent" only when the reason is `GetResourceFailed` and the
//! message ends with `not found`, so these strings are part of the contract.

pub const CONDITION_PROCESSING: &str = "Processing";
pub const REASON_GET_RESOURCE: &str = "GetResourceProcessing";
pub const REASON_GET_RESOURCE_FAILED: &str = "GetResourceFailed";
pub const REASON_RESOURCE_GVK_INVALID: &str = "ResourceGVKInvalid";
pub const REASON_RESOURCE_TYPE_INVALID: &str = "ResourceTypeInvalid";
pub const REASON_RESOURCE_NAME_INVALID: &str = "ResourceNameInvalid";
pub const MESSAGE_WATCHING: &str = "Watching resources successfully";
pub const MESSAGE_SECRETS_REFUSED: &str = "viewing secrets is not allowed";

/// A view's error: the reason and message of its `Processing=False` condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ViewError {
    pub reason: &'static str,
    pub message: String,
}

fn failed(reason: &'static str, err: &str) -> ViewError {
    ViewError {
        reason,
        message: format!("failed to get resource with err: {err}"),
    }
}

/// The scope of a view, as the hub sends it.
#[derive(Clone, Debug, PartialEq, Eq, Default, Hash)]
pub struct Scope {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub resource: String,
    pub name: String,
    pub namespace: String,
}

/// The checks made before any lookup: a name, and either a resource or kind+version.
pub fn check_scope(scope: &Scope) -> Result<(), ViewError> {
    if scope.name.is_empty() {
        return Err(failed(
            REASON_RESOURCE_NAME_INVALID,
            "invalid resource name",
        ));
    }
    if scope.resource.is_empty() && (scope.kind.is_empty() || scope.version.is_empty()) {
        return Err(failed(
            REASON_RESOURCE_TYPE_INVALID,
            "invalid resource type",
        ));
    }
    Ok(())
}

/// The kind+version could not be mapped to a resource (`ResourceGVKInvalid`).
pub fn gvk_invalid(mapper_error: &str) -> ViewError {
    failed(REASON_RESOURCE_GVK_INVALID, mapper_error)
}

/// The `resource` form could not be mapped (`ResourceTypeInvalid`).
pub fn resource_invalid(mapper_error: &str) -> ViewError {
    failed(REASON_RESOURCE_TYPE_INVALID, mapper_error)
}

/// Secrets are never viewable, whatever the group.
pub fn is_secret_resource(resource: &str) -> bool {
    resource == "secrets"
}

pub fn secrets_refused() -> ViewError {
    ViewError {
        reason: REASON_RESOURCE_TYPE_INVALID,
        message: MESSAGE_SECRETS_REFUSED.to_string(),
    }
}

/// The agent's view allowlist refuses the object (as for Secrets, a type error: Ramen must not
/// read it as "absent").
pub fn not_allowed(message: &str) -> ViewError {
    ViewError {
        reason: REASON_RESOURCE_TYPE_INVALID,
        message: message.to_string(),
    }
}

/// The GET failed (`GetResourceFailed`), with the client error's text.
pub fn get_failed(client_error: &str) -> ViewError {
    failed(REASON_GET_RESOURCE_FAILED, client_error)
}

/// apimachinery's NotFound text: `<resource>[.<group>] "<name>" not found`.
pub fn not_found_text(group: &str, resource: &str, name: &str) -> String {
    if group.is_empty() {
        format!("{resource} {name:?} not found")
    } else {
        format!("{resource}.{group} {name:?} not found")
    }
}

/// The view of an absent object.
pub fn not_found(group: &str, resource: &str, name: &str) -> ViewError {
    get_failed(&not_found_text(group, resource, name))
}

/// apimachinery's `NoKindMatchError` text for one searched version.
pub fn no_kind_match_text(group: &str, version: &str, kind: &str) -> String {
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    format!("no matches for kind {kind:?} in version {gv:?}")
}

/// `restutil.MappingFor`'s text when a resource name is unknown.
pub fn unknown_resource_text(resource: &str) -> String {
    format!("the server doesn't have a resource type {resource:?}")
}

/// Splits the `resource` form (`plural`, `plural.group` or `plural.version.group`)
/// the way `schema.ParseResourceArg` does. Returns (resource, version, group); the
/// version is empty unless given.
pub fn parse_resource_arg(arg: &str) -> (String, String, String) {
    match arg.split_once('.') {
        None => (arg.to_string(), String::new(), String::new()),
        Some((res, rest)) => match rest.split_once('.') {
            // "plural.version.group" only when the middle looks like a version.
            Some((v, g)) if looks_like_version(v) => {
                (res.to_string(), v.to_string(), g.to_string())
            }
            _ => (res.to_string(), String::new(), rest.to_string()),
        },
    }
}

fn looks_like_version(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next() == Some('v') && chars.next().is_some_and(|c| c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(kind: &str, version: &str, name: &str) -> Scope {
        Scope {
            kind: kind.into(),
            version: version.into(),
            name: name.into(),
            ..Default::default()
        }
    }

    #[test]
    fn exact_texts() {
        assert_eq!(
            not_found(
                "ramendr.openshift.io",
                "volumereplicationgroups",
                "busybox-drpc"
            )
            .message,
            "failed to get resource with err: volumereplicationgroups.ramendr.openshift.io \"busybox-drpc\" not found"
        );
        let nf = not_found("", "namespaces", "x");
        assert_eq!(nf.reason, "GetResourceFailed");
        assert_eq!(
            nf.message,
            "failed to get resource with err: namespaces \"x\" not found"
        );
        // Ramen's parseErrorMessage needs this suffix.
        assert!(nf.message.ends_with("not found"));
        let e = check_scope(&scope("Namespace", "v1", "")).unwrap_err();
        assert_eq!(
            (e.reason, e.message.as_str()),
            (
                "ResourceNameInvalid",
                "failed to get resource with err: invalid resource name"
            )
        );
        let e = check_scope(&scope("", "v1", "x")).unwrap_err();
        assert_eq!(
            (e.reason, e.message.as_str()),
            (
                "ResourceTypeInvalid",
                "failed to get resource with err: invalid resource type"
            )
        );
        assert!(check_scope(&scope("Namespace", "", "x")).is_err());
        assert!(
            check_scope(&Scope {
                resource: "namespaces".into(),
                name: "x".into(),
                ..Default::default()
            })
            .is_ok()
        );
        let e = secrets_refused();
        assert_eq!(
            (e.reason, e.message.as_str()),
            ("ResourceTypeInvalid", "viewing secrets is not allowed")
        );
        let e = gvk_invalid(&no_kind_match_text("example.com", "v1", "Foo"));
        assert_eq!(e.reason, "ResourceGVKInvalid");
        assert_eq!(
            e.message,
            "failed to get resource with err: no matches for kind \"Foo\" in version \"example.com/v1\""
        );
        assert_eq!(
            no_kind_match_text("", "v2", "Pod"),
            "no matches for kind \"Pod\" in version \"v2\""
        );
        assert_eq!(
            resource_invalid(&unknown_resource_text("foos")).message,
            "failed to get resource with err: the server doesn't have a resource type \"foos\""
        );
        assert!(is_secret_resource("secrets"));
        assert!(!is_secret_resource("configmaps"));
    }

    #[test]
    fn resource_arg() {
        let s = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());
        assert_eq!(parse_resource_arg("pods"), s("pods", "", ""));
        assert_eq!(
            parse_resource_arg("deployments.apps"),
            s("deployments", "", "apps")
        );
        assert_eq!(
            parse_resource_arg("deployments.v1.apps"),
            s("deployments", "v1", "apps")
        );
        assert_eq!(
            parse_resource_arg("volumereplicationgroups.ramendr.openshift.io"),
            s("volumereplicationgroups", "", "ramendr.openshift.io")
        );
    }
}
