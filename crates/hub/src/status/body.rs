//! The JSON of what the hub writes: conditions and the `status` of works, views and
//! ManagedClusters, built from agents' reports.

use drbridge_proto::v1 as pb;
use serde_json::{Map, Value, json};

use super::ops::{ClusterStatus, Skip};
use crate::objects::ConditionJson;

/// `maxLength` of `message` in metav1.Condition (and in the CRDs' condition schemas). The API
/// server validates every condition of a status patch, so one longer message would fail the
/// whole patch and leave the status stale.
pub const MAX_CONDITION_MESSAGE_CHARS: usize = 32768;
/// Ends a message cut to [`MAX_CONDITION_MESSAGE_CHARS`].
pub const TRUNCATED_MARKER: &str = " ... [truncated by drbridge-hub]";

/// `message` cut to [`MAX_CONDITION_MESSAGE_CHARS`] characters (the API counts characters, not
/// bytes), ending with [`TRUNCATED_MARKER`] when cut.
pub fn bounded_message(message: &str) -> String {
    match message.char_indices().nth(MAX_CONDITION_MESSAGE_CHARS) {
        None => message.to_string(),
        Some(_) => {
            let keep = MAX_CONDITION_MESSAGE_CHARS - TRUNCATED_MARKER.chars().count();
            let end = message
                .char_indices()
                .nth(keep)
                .map_or(message.len(), |(i, _)| i);
            format!("{}{TRUNCATED_MARKER}", &message[..end])
        }
    }
}

/// A metav1.Condition from the proto. An empty `last_transition_time` becomes `now`
/// (the API requires one); [`set_condition`] keeps an older time when the status did
/// not change.
pub fn condition_json(c: &pb::Condition, now: &str) -> Value {
    let mut m = Map::new();
    m.insert("type".into(), json!(c.r#type));
    m.insert("status".into(), json!(c.status));
    if c.observed_generation != 0 {
        m.insert("observedGeneration".into(), json!(c.observed_generation));
    }
    let ltt = if c.last_transition_time.is_empty() {
        now
    } else {
        &c.last_transition_time
    };
    m.insert("lastTransitionTime".into(), json!(ltt));
    m.insert("reason".into(), json!(c.reason));
    m.insert("message".into(), json!(bounded_message(&c.message)));
    Value::Object(m)
}

fn cond_field<'a>(c: &'a Value, f: &str) -> Option<&'a str> {
    c.get(f).and_then(Value::as_str)
}

/// The `status` of the condition of type `ty`, if the list has one.
pub fn condition_status(list: &[ConditionJson], ty: &str) -> Option<String> {
    list.iter()
        .find(|c| cond_field(c, "type") == Some(ty))
        .and_then(|c| cond_field(c, "status"))
        .map(str::to_owned)
}

/// `meta.SetStatusCondition`: replace the condition of the same type, keeping its
/// `lastTransitionTime` when the status did not change.
pub fn set_condition(list: &mut Vec<ConditionJson>, mut new: Value) {
    let ty = cond_field(&new, "type").unwrap_or_default().to_string();
    if let Some(old) = list
        .iter_mut()
        .find(|c| cond_field(c, "type") == Some(ty.as_str()))
    {
        if cond_field(old, "status") == cond_field(&new, "status")
            && let Some(t) = old.get("lastTransitionTime").cloned()
        {
            new["lastTransitionTime"] = t;
        }
        *old = new;
    } else {
        list.push(new);
    }
}

/// Work conditions from the agent, with OCM's transition-time rule applied against
/// what is stored.
fn merged_conditions(existing: &[ConditionJson], sent: &[pb::Condition], now: &str) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::with_capacity(sent.len());
    for c in sent {
        let mut v = condition_json(c, now);
        if c.last_transition_time.is_empty()
            && let Some(old) = existing
                .iter()
                .find(|o| cond_field(o, "type") == Some(c.r#type.as_str()))
            && cond_field(old, "status") == Some(c.status.as_str())
            && let Some(t) = old.get("lastTransitionTime")
        {
            v["lastTransitionTime"] = t.clone();
        }
        out.push(v);
    }
    out
}

/// OCM's `status` of a ManifestWork from an agent's report.
pub fn work_status_json(s: &pb::WorkStatus, existing: &[ConditionJson], now: &str) -> Value {
    let manifests: Vec<Value> = s
        .manifests
        .iter()
        .map(|m| {
            let meta = m.meta.clone().unwrap_or_default();
            json!({
                "resourceMeta": {
                    "ordinal": meta.ordinal,
                    "group": meta.group,
                    "version": meta.version,
                    "kind": meta.kind,
                    "resource": meta.resource,
                    "name": meta.name,
                    "namespace": meta.namespace,
                },
                "statusFeedback": {},
                "conditions": m.conditions.iter().map(|c| condition_json(c, now)).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "conditions": merged_conditions(existing, &s.conditions, now),
        "resourceStatus": {"manifests": manifests},
    })
}

/// The view's `Processing` condition and result, as the real controller writes them
/// (docs/ramen-contract.md, "View status"). `None` for `result` means: leave it as it is.
pub fn view_status_json(
    v: &pb::ViewStatus,
    existing: &[ConditionJson],
    now: &str,
) -> Result<Value, Skip> {
    use pb::view_status::Outcome;
    // Whole seconds, as the real controller writes; a malformed time is replaced, not written.
    let observed = chrono::DateTime::parse_from_rfc3339(&v.observed_time)
        .ok()
        .map(|t| {
            t.to_utc()
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        });
    let when = observed.as_deref().unwrap_or(now);
    let (status, reason, message, result) = match &v.outcome {
        Some(Outcome::Object(bytes)) => {
            let obj: Value = serde_json::from_slice(bytes).map_err(|_| Skip::Invalid)?;
            if !obj.is_object() || obj.get("apiVersion").is_none() || obj.get("kind").is_none() {
                return Err(Skip::Invalid);
            }
            (
                "True",
                "GetResourceProcessing".to_string(),
                "Watching resources successfully".to_string(),
                Some(obj),
            )
        }
        Some(Outcome::Error(e)) => {
            let reason = if e.reason.is_empty() {
                "GetResourceFailed".to_string()
            } else {
                e.reason.clone()
            };
            ("False", reason, bounded_message(&e.message), None)
        }
        None => return Err(Skip::Invalid),
    };
    // Exactly one condition, whatever was there before (Ramen rejects more than one).
    let mut conds: Vec<Value> = existing
        .iter()
        .filter(|c| cond_field(c, "type") == Some("Processing"))
        .take(1)
        .cloned()
        .collect();
    set_condition(
        &mut conds,
        json!({
            "type": "Processing",
            "status": status,
            "lastTransitionTime": when,
            "reason": reason,
            "message": message,
        }),
    );
    let mut st = json!({ "conditions": conds });
    if let Some(r) = result {
        st["result"] = r;
    }
    Ok(st)
}

/// OCM's ManagedCluster conditions, merged into what is stored.
pub fn cluster_status_json(existing: &[ConditionJson], cs: &ClusterStatus, now: &str) -> Value {
    let mut conds: Vec<Value> = existing.to_vec();
    set_condition(
        &mut conds,
        json!({"type": "HubAcceptedManagedCluster", "status": "True", "lastTransitionTime": now,
               "reason": "HubClusterAdminAccepted", "message": "Accepted by hub cluster admin"}),
    );
    if cs.joined {
        set_condition(
            &mut conds,
            json!({"type": "ManagedClusterJoined", "status": "True", "lastTransitionTime": now,
                   "reason": "ManagedClusterJoined", "message": "Managed cluster joined"}),
        );
    }
    match cs.available {
        Some(true) => set_condition(
            &mut conds,
            json!({"type": "ManagedClusterConditionAvailable", "status": "True", "lastTransitionTime": now,
                   "reason": "ManagedClusterAvailable", "message": "Managed cluster is available"}),
        ),
        Some(false) => set_condition(
            &mut conds,
            json!({"type": "ManagedClusterConditionAvailable", "status": "Unknown", "lastTransitionTime": now,
                   "reason": "ManagedClusterLeaseUpdateStopped",
                   "message": "Registration agent stopped updating its lease."}),
        ),
        None => {}
    }
    let mut st = json!({ "conditions": conds });
    if let Some(claims) = &cs.claims {
        let mut claims = claims.clone();
        claims.sort();
        st["clusterClaims"] = Value::Array(
            claims
                .into_iter()
                .map(|(name, value)| json!({"name": name, "value": value}))
                .collect(),
        );
    }
    if let Some(v) = &cs.kubernetes_version {
        st["version"] = json!({ "kubernetes": v });
    }
    st
}
