use super::*;
use crate::desired::{REASON_TOO_LARGE, Rejection};
use crate::index::{Intent, WorkEntry};
use crate::objects::{Meta, ObjectKey, UNREACHABLE_SINCE_ANNOTATION, WORK_FINALIZER};
use drbridge_proto::v1 as pb;
use serde_json::json;
use std::sync::Arc;

const NOW: &str = "2026-11-27T10:00:00Z";

fn meta(uid: &str, generation: i64) -> Meta {
    Meta {
        namespace: "dr1".into(),
        name: "w".into(),
        uid: uid.into(),
        generation,
        resource_version: "42".into(),
        ..Default::default()
    }
}

fn cond(
    ty: &str,
    status: &str,
    reason: &str,
    message: &str,
    generation: i64,
    ltt: &str,
) -> pb::Condition {
    pb::Condition {
        r#type: ty.into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time: ltt.into(),
    }
}

fn ocm_work_status(generation: i64) -> pb::WorkStatus {
    pb::WorkStatus {
        name: "w".into(),
        uid: "u1".into(),
        generation,
        conditions: vec![
            cond(
                "Applied",
                "True",
                "AppliedManifestWorkComplete",
                "Apply manifest work complete",
                generation,
                "2026-11-27T09:00:00Z",
            ),
            cond(
                "Available",
                "True",
                "ResourcesAvailable",
                "All resources are available",
                generation,
                "2026-11-27T09:00:01Z",
            ),
        ],
        manifests: vec![pb::ManifestStatus {
            meta: Some(pb::ResourceMeta {
                ordinal: 0,
                group: "ramendr.openshift.io".into(),
                version: "v1alpha1".into(),
                kind: "VolumeReplicationGroup".into(),
                resource: "volumereplicationgroups".into(),
                name: "app".into(),
                namespace: "ramen-ops".into(),
            }),
            conditions: vec![
                cond(
                    "Applied",
                    "True",
                    "AppliedManifestComplete",
                    "Apply manifest complete",
                    0,
                    "2026-11-27T09:00:00Z",
                ),
                cond(
                    "Available",
                    "True",
                    "ResourceAvailable",
                    "Resource is available",
                    0,
                    "2026-11-27T09:00:00Z",
                ),
                cond(
                    "StatusFeedbackSynced",
                    "True",
                    "NoStatusFeedbackSynced",
                    "",
                    0,
                    "2026-11-27T09:00:00Z",
                ),
            ],
        }],
        observed_time: "2026-11-27T09:00:01Z".into(),
    }
}

#[test]
fn work_status_has_ocm_shape() {
    let body = plan_work_status(&meta("u1", 3), &[], &ocm_work_status(3), NOW).unwrap();
    let want = json!({
        "metadata": {"uid": "u1", "resourceVersion": "42"},
        "status": {
            "conditions": [
                {"type": "Applied", "status": "True", "observedGeneration": 3,
                 "lastTransitionTime": "2026-11-27T09:00:00Z",
                 "reason": "AppliedManifestWorkComplete", "message": "Apply manifest work complete"},
                {"type": "Available", "status": "True", "observedGeneration": 3,
                 "lastTransitionTime": "2026-11-27T09:00:01Z",
                 "reason": "ResourcesAvailable", "message": "All resources are available"},
            ],
            "resourceStatus": {"manifests": [{
                "resourceMeta": {"ordinal": 0, "group": "ramendr.openshift.io", "version": "v1alpha1",
                    "kind": "VolumeReplicationGroup", "resource": "volumereplicationgroups",
                    "name": "app", "namespace": "ramen-ops"},
                "statusFeedback": {},
                "conditions": [
                    {"type": "Applied", "status": "True", "lastTransitionTime": "2026-11-27T09:00:00Z",
                     "reason": "AppliedManifestComplete", "message": "Apply manifest complete"},
                    {"type": "Available", "status": "True", "lastTransitionTime": "2026-11-27T09:00:00Z",
                     "reason": "ResourceAvailable", "message": "Resource is available"},
                    {"type": "StatusFeedbackSynced", "status": "True", "lastTransitionTime": "2026-11-27T09:00:00Z",
                     "reason": "NoStatusFeedbackSynced", "message": ""},
                ],
            }]},
        },
    });
    assert_eq!(body, want);
}

#[test]
fn empty_group_and_namespace_are_still_written() {
    // OCM's ManifestResourceMeta has no omitempty: core, cluster-scoped objects show "".
    let mut s = ocm_work_status(1);
    let m = s.manifests[0].meta.as_mut().unwrap();
    m.group.clear();
    m.namespace.clear();
    let body = plan_work_status(&meta("u1", 1), &[], &s, NOW).unwrap();
    let rm = &body["status"]["resourceStatus"]["manifests"][0]["resourceMeta"];
    assert_eq!(rm["group"], "");
    assert_eq!(rm["namespace"], "");
}

#[test]
fn work_status_fencing() {
    // Older generation: dropped.
    assert_eq!(
        plan_work_status(&meta("u1", 4), &[], &ocm_work_status(3), NOW),
        Err(Skip::StaleGeneration)
    );
    // Another uid (the work was re-created): dropped.
    assert_eq!(
        plan_work_status(&meta("u2", 3), &[], &ocm_work_status(3), NOW),
        Err(Skip::UidMismatch)
    );
    // Same: written, guarded by uid and resourceVersion.
    let body = plan_work_status(&meta("u1", 3), &[], &ocm_work_status(3), NOW).unwrap();
    assert_eq!(body["metadata"]["resourceVersion"], "42");
}

/// Issue 17 item 7: the agent only ever learns generations from the hub, so a report for a
/// generation the hub has not seen is a lie (or a bug), and is refused.
#[test]
fn a_report_for_a_generation_newer_than_the_hubs_is_refused() {
    assert_eq!(
        plan_work_status(&meta("u1", 2), &[], &ocm_work_status(3), NOW),
        Err(Skip::FutureGeneration)
    );
    assert_eq!(
        plan_view_status(&view_meta(1), &[], &view_ok(2), NOW),
        Err(Skip::FutureGeneration)
    );
    assert_eq!(Skip::FutureGeneration.label(), "future_generation");
}

/// Issue 17 item 6: one message over the API's 32768-character limit would fail the whole
/// status patch (the API server validates every condition), so it is cut with a marker.
#[test]
fn oversized_condition_messages_are_truncated_with_a_marker() {
    let long = "é".repeat(MAX_CONDITION_MESSAGE_CHARS + 10);
    let mut s = ocm_work_status(3);
    s.conditions[0].message = long.clone();
    s.manifests[0].conditions[0].message = long.clone();
    let body = plan_work_status(&meta("u1", 3), &[], &s, NOW).unwrap();
    for m in [
        &body["status"]["conditions"][0]["message"],
        &body["status"]["resourceStatus"]["manifests"][0]["conditions"][0]["message"],
    ] {
        let m = m.as_str().unwrap();
        assert_eq!(m.chars().count(), MAX_CONDITION_MESSAGE_CHARS);
        assert!(m.ends_with(TRUNCATED_MARKER), "{}", &m[m.len() - 40..]);
        assert!(m.starts_with("éé"));
    }
    // Short messages are untouched.
    assert_eq!(
        body["status"]["conditions"][1]["message"],
        "All resources are available"
    );
    // A view's error message too.
    let v = view_err("GetResourceFailed", &long);
    let body = plan_view_status(&view_meta(1), &[], &v, NOW).unwrap();
    let m = body["status"]["conditions"][0]["message"].as_str().unwrap();
    assert_eq!(m.chars().count(), MAX_CONDITION_MESSAGE_CHARS);
    assert!(m.ends_with(TRUNCATED_MARKER));
}

#[test]
fn missing_transition_time_keeps_the_stored_one_while_status_holds() {
    let existing = vec![
        json!({"type": "Applied", "status": "True", "lastTransitionTime": "2020-01-01T00:00:00Z",
        "reason": "AppliedManifestWorkComplete", "message": "Apply manifest work complete"}),
    ];
    let mut s = ocm_work_status(1);
    s.conditions[0].last_transition_time.clear();
    s.conditions[1].last_transition_time.clear();
    let body = plan_work_status(&meta("u1", 1), &existing, &s, NOW).unwrap();
    assert_eq!(
        body["status"]["conditions"][0]["lastTransitionTime"],
        "2020-01-01T00:00:00Z"
    );
    assert_eq!(body["status"]["conditions"][1]["lastTransitionTime"], NOW);
}

fn view_meta(generation: i64) -> Meta {
    Meta {
        namespace: "dr1".into(),
        name: "app-ramen-ops-vrg-mcv".into(),
        uid: "v1".into(),
        generation,
        resource_version: "7".into(),
        ..Default::default()
    }
}

fn view_ok(generation: i64) -> pb::ViewStatus {
    let obj = json!({"apiVersion": "ramendr.openshift.io/v1alpha1", "kind": "VolumeReplicationGroup",
        "metadata": {"name": "app", "namespace": "ramen-ops", "generation": 2},
        "spec": {"replicationState": "primary"}, "status": {"state": "Primary"}});
    pb::ViewStatus {
        name: "app-ramen-ops-vrg-mcv".into(),
        uid: "v1".into(),
        generation,
        outcome: Some(pb::view_status::Outcome::Object(
            serde_json::to_vec(&obj).unwrap(),
        )),
        // The agent sends milliseconds; the condition has whole seconds.
        observed_time: "2026-11-27T09:59:59.734Z".into(),
    }
}

fn view_err(reason: &str, message: &str) -> pb::ViewStatus {
    pb::ViewStatus {
        outcome: Some(pb::view_status::Outcome::Error(pb::ViewError {
            reason: reason.into(),
            message: message.into(),
        })),
        ..view_ok(1)
    }
}

#[test]
fn view_success_is_exactly_the_real_controllers() {
    let body = plan_view_status(&view_meta(1), &[], &view_ok(1), NOW).unwrap();
    assert_eq!(
        body["status"]["conditions"],
        json!([{"type": "Processing", "status": "True", "lastTransitionTime": "2026-11-27T09:59:59Z",
                "reason": "GetResourceProcessing", "message": "Watching resources successfully"}])
    );
    assert_eq!(body["status"]["result"]["status"]["state"], "Primary");
    assert_eq!(body["status"]["result"]["kind"], "VolumeReplicationGroup");
    assert!(
        body["status"]["conditions"][0]
            .get("observedGeneration")
            .is_none()
    );
}

#[test]
fn a_malformed_observed_time_is_not_written() {
    let mut v = view_ok(1);
    v.observed_time = "not a time".into();
    let body = plan_view_status(&view_meta(1), &[], &v, NOW).unwrap();
    assert_eq!(body["status"]["conditions"][0]["lastTransitionTime"], NOW);
}

#[test]
fn view_failure_keeps_result_and_message() {
    let msg = "failed to get resource with err: volumereplicationgroups.ramendr.openshift.io \"app\" not found";
    let body =
        plan_view_status(&view_meta(1), &[], &view_err("GetResourceFailed", msg), NOW).unwrap();
    let st = &body["status"];
    assert!(
        st.get("result").is_none(),
        "a merge patch without result leaves it as it was"
    );
    assert_eq!(
        st["conditions"],
        json!([{"type": "Processing", "status": "False", "lastTransitionTime": "2026-11-27T09:59:59Z",
                "reason": "GetResourceFailed", "message": msg}])
    );
    // Ramen's NotFound test: message ends with "not found".
    assert!(
        st["conditions"][0]["message"]
            .as_str()
            .unwrap()
            .ends_with("not found")
    );
}

#[test]
fn view_other_reasons_pass_through() {
    let body = plan_view_status(
        &view_meta(1),
        &[],
        &view_err(
            "ResourceGVKInvalid",
            "failed to get resource with err: no matches for kind",
        ),
        NOW,
    )
    .unwrap();
    assert_eq!(
        body["status"]["conditions"][0]["reason"],
        "ResourceGVKInvalid"
    );
    assert_eq!(body["status"]["conditions"][0]["status"], "False");
}

#[test]
fn view_keeps_exactly_one_condition_and_its_transition_time() {
    let existing = vec![
        json!({"type": "Processing", "status": "True", "lastTransitionTime": "2020-01-01T00:00:00Z",
               "reason": "GetResourceProcessing", "message": "Watching resources successfully"}),
        json!({"type": "Stray", "status": "True", "lastTransitionTime": "2020-01-01T00:00:00Z", "reason": "X", "message": ""}),
    ];
    let body = plan_view_status(&view_meta(1), &existing, &view_ok(1), NOW).unwrap();
    let conds = body["status"]["conditions"].as_array().unwrap();
    assert_eq!(conds.len(), 1);
    assert_eq!(conds[0]["lastTransitionTime"], "2020-01-01T00:00:00Z");
    // A flip moves the time.
    let body = plan_view_status(
        &view_meta(1),
        &existing,
        &view_err("GetResourceFailed", "x"),
        NOW,
    )
    .unwrap();
    assert_eq!(
        body["status"]["conditions"][0]["lastTransitionTime"],
        "2026-11-27T09:59:59Z"
    );
}

#[test]
fn view_fencing_and_bad_input() {
    assert_eq!(
        plan_view_status(&view_meta(2), &[], &view_ok(1), NOW),
        Err(Skip::StaleGeneration)
    );
    let mut other = view_ok(1);
    other.uid = "other".into();
    assert_eq!(
        plan_view_status(&view_meta(1), &[], &other, NOW),
        Err(Skip::UidMismatch)
    );
    let mut garbage = view_ok(1);
    garbage.outcome = Some(pb::view_status::Outcome::Object(b"not json".to_vec()));
    assert_eq!(
        plan_view_status(&view_meta(1), &[], &garbage, NOW),
        Err(Skip::Invalid)
    );
    let mut no_kind = view_ok(1);
    no_kind.outcome = Some(pb::view_status::Outcome::Object(
        br#"{"metadata":{}}"#.to_vec(),
    ));
    assert_eq!(
        plan_view_status(&view_meta(1), &[], &no_kind, NOW),
        Err(Skip::Invalid)
    );
    let mut none = view_ok(1);
    none.outcome = None;
    assert_eq!(
        plan_view_status(&view_meta(1), &[], &none, NOW),
        Err(Skip::Invalid)
    );
}

#[test]
fn cluster_conditions_are_ocms() {
    let cs = ClusterStatus {
        name: "dr1".into(),
        joined: true,
        available: Some(true),
        claims: Some(vec![
            ("name".into(), "dr1".into()),
            ("id.k8s.io".into(), "abc".into()),
        ]),
        kubernetes_version: Some("v1.37.0".into()),
    };
    let st = cluster_status_json(&[], &cs, NOW);
    let types: Vec<(&str, &str, &str)> = st["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["type"].as_str().unwrap(),
                c["status"].as_str().unwrap(),
                c["reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        types,
        vec![
            (
                "HubAcceptedManagedCluster",
                "True",
                "HubClusterAdminAccepted"
            ),
            ("ManagedClusterJoined", "True", "ManagedClusterJoined"),
            (
                "ManagedClusterConditionAvailable",
                "True",
                "ManagedClusterAvailable"
            ),
        ]
    );
    assert_eq!(
        st["clusterClaims"],
        json!([{"name": "id.k8s.io", "value": "abc"}, {"name": "name", "value": "dr1"}])
    );
    assert_eq!(st["version"]["kubernetes"], "v1.37.0");

    // Unknown keeps Joined and other writers' conditions, and moves only Available's time.
    let existing = st["conditions"].as_array().unwrap().clone();
    let mut existing = existing;
    existing.push(json!({"type": "Other", "status": "True", "lastTransitionTime": NOW, "reason": "R", "message": ""}));
    let later = "2026-11-27T10:05:00Z";
    let st2 = cluster_status_json(
        &existing,
        &ClusterStatus {
            available: Some(false),
            claims: None,
            kubernetes_version: None,
            ..cs
        },
        later,
    );
    let conds = st2["conditions"].as_array().unwrap();
    assert_eq!(conds.len(), 4);
    let avail = conds
        .iter()
        .find(|c| c["type"] == "ManagedClusterConditionAvailable")
        .unwrap();
    assert_eq!(avail["status"], "Unknown");
    assert_eq!(avail["reason"], "ManagedClusterLeaseUpdateStopped");
    assert_eq!(
        avail["message"],
        "Registration agent stopped updating its lease."
    );
    assert_eq!(avail["lastTransitionTime"], later);
    let joined = conds
        .iter()
        .find(|c| c["type"] == "ManagedClusterJoined")
        .unwrap();
    assert_eq!(joined["lastTransitionTime"], NOW);
    assert!(st2.get("clusterClaims").is_none());
}

fn entry(deleting: bool, finalizers: &[&str], gone: bool, payload_ok: bool) -> WorkEntry {
    let mut m = meta("u1", 2);
    m.deleting = deleting;
    m.finalizers = finalizers.iter().map(|s| s.to_string()).collect();
    WorkEntry {
        meta: m,
        conditions: vec![],
        status: Default::default(),
        payload: if payload_ok {
            Ok(Arc::new(pb::Work::default()))
        } else {
            Err(Rejection {
                reason: REASON_TOO_LARGE,
                message: "too big".into(),
            })
        },
        gone_confirmed: gone,
    }
}

#[test]
fn finalizer_plans() {
    // Add, keeping other finalizers, guarded by resourceVersion.
    let body = plan_finalizer(&entry(false, &["other"], false, true), true).unwrap();
    assert_eq!(
        body,
        json!({"metadata": {"uid": "u1", "resourceVersion": "42", "finalizers": ["other", WORK_FINALIZER]}})
    );
    // Not for an unregistered cluster or a rejected work, nor twice.
    assert_eq!(
        plan_finalizer(&entry(false, &[], false, true), false),
        Err(Skip::Unchanged)
    );
    assert_eq!(
        plan_finalizer(&entry(false, &[], false, false), true),
        Err(Skip::Unchanged)
    );
    assert_eq!(
        plan_finalizer(&entry(false, &[WORK_FINALIZER], false, true), true),
        Err(Skip::Unchanged)
    );
    // Deleting: held until the agent confirms...
    assert_eq!(
        plan_finalizer(&entry(true, &[WORK_FINALIZER, "other"], false, true), true),
        Err(Skip::Unchanged)
    );
    // ...then released, leaving other finalizers.
    let body = plan_finalizer(&entry(true, &[WORK_FINALIZER, "other"], true, true), true).unwrap();
    assert_eq!(body["metadata"]["finalizers"], json!(["other"]));
    // Unregistered cluster: released without confirmation.
    let body = plan_finalizer(&entry(true, &[WORK_FINALIZER], false, true), false).unwrap();
    assert_eq!(body["metadata"]["finalizers"], json!([]));
}

#[test]
fn rejection_plan_sets_applied_false_for_the_generation() {
    let mut e = entry(false, &[WORK_FINALIZER], false, false);
    e.conditions = vec![
        json!({"type": "Available", "status": "True", "observedGeneration": 1,
        "lastTransitionTime": "2020-01-01T00:00:00Z", "reason": "ResourcesAvailable", "message": "All resources are available"}),
    ];
    let body = plan_reject(&e, NOW).unwrap();
    let conds = body["status"]["conditions"].as_array().unwrap();
    assert_eq!(conds.len(), 2);
    assert_eq!(
        conds[1],
        json!({"type": "Applied", "status": "False", "observedGeneration": 2, "lastTransitionTime": NOW,
               "reason": REASON_TOO_LARGE, "message": "too big"})
    );
    assert_eq!(body["metadata"]["uid"], "u1");
    assert_eq!(
        plan_reject(&entry(false, &[], false, true), NOW),
        Err(Skip::Unchanged)
    );
}

#[test]
fn annotation_plans() {
    let mut m = meta("u1", 1);
    assert_eq!(plan_annotation(&m, None), Err(Skip::Unchanged));
    let body = plan_annotation(&m, Some(NOW)).unwrap();
    assert_eq!(
        body["metadata"]["annotations"][UNREACHABLE_SINCE_ANNOTATION],
        NOW
    );
    m.unreachable_since = Some(NOW.into());
    assert_eq!(plan_annotation(&m, Some(NOW)), Err(Skip::Unchanged));
    let body = plan_annotation(&m, None).unwrap();
    assert!(body["metadata"]["annotations"][UNREACHABLE_SINCE_ANNOTATION].is_null());
}

fn work_report(name: &str, generation: i64) -> WriteOp {
    WriteOp::Report(
        Report::Work {
            cluster: "dr1".into(),
            status: pb::WorkStatus {
                name: name.into(),
                generation,
                ..Default::default()
            },
        },
        Charge::none(),
    )
}

#[test]
fn pending_coalesces_per_object_in_fifo_order() {
    let mut p = Pending::default();
    p.push(work_report("a", 1));
    p.push(work_report("b", 1));
    p.push(work_report("a", 2));
    p.push(WriteOp::Intent(Intent::Reject(ObjectKey::new("dr1", "a"))));
    assert_eq!(p.len(), 3);
    assert_eq!(p.pop(), Some(work_report("a", 2)));
    assert_eq!(p.pop(), Some(work_report("b", 1)));
    assert_eq!(
        p.pop(),
        Some(WriteOp::Intent(Intent::Reject(ObjectKey::new("dr1", "a"))))
    );
    assert!(p.pop().is_none());
    assert!(p.is_empty());
}
