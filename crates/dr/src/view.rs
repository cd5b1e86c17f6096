//! What a ManagedClusterView of a VRG says, read as Ramen reads it (`mcv_util.go:GetResource`,
//! docs/ramen-contract.md, "How Ramen reads a view"), plus drbridge's staleness annotation (docs/presence.md).

use drbridge_api::view::{ManagedClusterView, consts as view};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::Serialize;

use crate::types::VolumeReplicationGroup;

/// Annotation drbridge's hub puts on the views and works of a cluster it cannot reach: the
/// last time it heard from the cluster's agent.
pub const UNREACHABLE_SINCE_ANNOTATION: &str = "drbridge.io/unreachable-since";

/// What the hub knows about the VRG on one cluster.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum VrgEvidence {
    /// No view of the VRG in the cluster's namespace (Ramen creates it once it needs it).
    NoView,
    /// The view has no answer yet.
    Pending,
    /// The cluster answered: there is no VRG.
    Absent,
    /// The view failed for another reason (for example the VRG CRD is missing).
    Failed { message: String },
    /// The VRG, as last seen.
    Found {
        vrg: Box<VolumeReplicationGroup>,
        /// Set when the hub cannot reach the cluster: the VRG is as of that time.
        #[serde(skip_serializing_if = "Option::is_none")]
        stale_since: Option<Time>,
    },
}

/// Whether a `GetResourceFailed` message means "absent" (`parseErrorMessage`).
fn is_not_found(message: &str) -> bool {
    message.ends_with("not found")
        || message.ends_with("the server could not find the requested resource")
}

/// Reads a VRG view.
pub fn vrg_from_view(mcv: Option<&ManagedClusterView>) -> VrgEvidence {
    let Some(mcv) = mcv else {
        return VrgEvidence::NoView;
    };
    let stale_since = mcv
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(UNREACHABLE_SINCE_ANNOTATION))
        .and_then(|s| crate::time::parse_time(s));
    let Some(status) = &mcv.status else {
        return VrgEvidence::Pending;
    };
    let cond = match status.conditions.as_slice() {
        [] => return VrgEvidence::Pending,
        [c] if c.type_ == view::CONDITION_PROCESSING => c,
        _ => {
            return VrgEvidence::Failed {
                message: "the view has unexpected conditions".into(),
            };
        }
    };
    if cond.status != "True" {
        if cond.reason == view::REASON_GET_RESOURCE_FAILED && is_not_found(&cond.message) {
            return VrgEvidence::Absent;
        }
        return VrgEvidence::Failed {
            message: format!("{}: {}", cond.reason, cond.message),
        };
    }
    match status
        .result
        .as_ref()
        .map(|r| r.to_typed::<VolumeReplicationGroup>())
    {
        Some(Ok(mut vrg)) => {
            // Server-side bookkeeping, noise in every display of the VRG.
            vrg.metadata.managed_fields = None;
            VrgEvidence::Found {
                vrg: Box::new(vrg),
                stale_since,
            }
        }
        Some(Err(e)) => VrgEvidence::Failed {
            message: format!("the view's result is not a VolumeReplicationGroup: {e}"),
        },
        None => VrgEvidence::Failed {
            message: "the view has no result".into(),
        },
    }
}

impl VrgEvidence {
    /// The VRG, if one was seen.
    pub fn vrg(&self) -> Option<&VolumeReplicationGroup> {
        match self {
            VrgEvidence::Found { vrg, .. } => Some(vrg),
            _ => None,
        }
    }

    /// One line for a table.
    pub fn summary(&self) -> String {
        match self {
            VrgEvidence::NoView => "no view".into(),
            VrgEvidence::Pending => "view pending".into(),
            VrgEvidence::Absent => "none".into(),
            VrgEvidence::Failed { .. } => "view failed".into(),
            VrgEvidence::Found { vrg, stale_since } => {
                let status = vrg.status.clone().unwrap_or_default();
                let state = if status.state.is_empty() {
                    "-".to_string()
                } else {
                    status.state
                };
                let desired = &vrg.spec.replication_state;
                let mut s = if desired.eq_ignore_ascii_case(&state) {
                    state
                } else {
                    format!("{state} (→{desired})")
                };
                if stale_since.is_some() {
                    s.push_str(" (stale)");
                }
                s
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use drbridge_api::raw::EmbeddedObject;
    use drbridge_api::view::ViewStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
    use serde_json::json;

    fn mcv(
        conditions: Vec<(&str, &str, &str)>,
        result: Option<serde_json::Value>,
    ) -> ManagedClusterView {
        let mut v = ManagedClusterView::new("app-ramen-ops-vrg-mcv", Default::default());
        v.status = Some(ViewStatus {
            conditions: conditions
                .into_iter()
                .map(|(status, reason, message)| Condition {
                    type_: "Processing".into(),
                    status: status.into(),
                    reason: reason.into(),
                    message: message.into(),
                    last_transition_time: Time(Default::default()),
                    observed_generation: None,
                })
                .collect(),
            result: result.and_then(EmbeddedObject::from_value),
        });
        v
    }

    #[test]
    fn reads_views_as_ramen_does() {
        assert_eq!(vrg_from_view(None), VrgEvidence::NoView);
        assert_eq!(
            vrg_from_view(Some(&mcv(vec![], None))),
            VrgEvidence::Pending
        );
        let absent = mcv(
            vec![(
                "False",
                "GetResourceFailed",
                "failed to get resource with err: volumereplicationgroups.ramendr.openshift.io \"app\" not found",
            )],
            None,
        );
        assert_eq!(vrg_from_view(Some(&absent)), VrgEvidence::Absent);
        let gvk = mcv(vec![("False", "ResourceGVKInvalid", "no kind")], None);
        assert!(matches!(
            vrg_from_view(Some(&gvk)),
            VrgEvidence::Failed { .. }
        ));

        let found = mcv(
            vec![(
                "True",
                "GetResourceProcessing",
                "Watching resources successfully",
            )],
            Some(json!({
                "apiVersion": "ramendr.openshift.io/v1alpha1",
                "kind": "VolumeReplicationGroup",
                "metadata": {"name": "app", "namespace": "ramen-ops", "generation": 2},
                "spec": {"pvcSelector": {}, "replicationState": "secondary", "s3Profiles": ["p"], "volSync": {}},
                "status": {"state": "Secondary", "observedGeneration": 2, "lastUpdateTime": null,
                           "kubeObjectProtection": {}},
            })),
        );
        let e = vrg_from_view(Some(&found));
        assert_eq!(e.vrg().unwrap().status.as_ref().unwrap().state, "Secondary");
        assert_eq!(e.summary(), "Secondary");
    }

    #[test]
    fn marks_views_of_unreachable_clusters_stale() {
        let mut v = mcv(
            vec![("True", "GetResourceProcessing", "ok")],
            Some(json!({
                "apiVersion": "ramendr.openshift.io/v1alpha1", "kind": "VolumeReplicationGroup",
                "metadata": {"name": "app"},
                "spec": {"pvcSelector": {}, "replicationState": "primary", "s3Profiles": []},
                "status": {"state": "Primary"},
            })),
        );
        v.metadata.annotations = Some(
            [(
                UNREACHABLE_SINCE_ANNOTATION.to_string(),
                "2026-11-27T10:00:00Z".to_string(),
            )]
            .into(),
        );
        let e = vrg_from_view(Some(&v));
        match &e {
            VrgEvidence::Found { stale_since, .. } => {
                assert_eq!(
                    crate::time::rfc3339(stale_since.as_ref().unwrap()),
                    "2026-11-27T10:00:00Z"
                )
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(e.summary(), "Primary (stale)");
    }
}
