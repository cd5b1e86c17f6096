//! The planners: pure functions from the index's view of an object and a report or intent
//! to the merge patch to send, or why none. Unit-tested in `status/tests.rs`.

use drbridge_proto::v1 as pb;
use serde_json::{Value, json};

use super::body::{set_condition, view_status_json, work_status_json};
use super::ops::Skip;
use crate::index::WorkEntry;
use crate::objects::{
    ConditionJson, Meta, UNACKNOWLEDGED_SINCE_ANNOTATION, UNREACHABLE_SINCE_ANNOTATION,
    WORK_FINALIZER,
};

/// Fences a report against the object: same uid, same generation. Older is stale; newer
/// cannot be honest, since the agent learns generations only from the hub (and the hub's copy
/// of an object is never behind what it sent).
pub fn fence(meta: &Meta, uid: &str, generation: i64) -> Result<(), Skip> {
    if meta.uid != uid {
        return Err(Skip::UidMismatch);
    }
    if generation < meta.generation {
        return Err(Skip::StaleGeneration);
    }
    if generation > meta.generation {
        return Err(Skip::FutureGeneration);
    }
    Ok(())
}

fn status_patch(meta: &Meta, status: Value) -> Value {
    json!({
        "metadata": {"uid": meta.uid, "resourceVersion": meta.resource_version},
        "status": status,
    })
}

/// The merge patch for a work's status, or why none.
pub fn plan_work_status(
    meta: &Meta,
    existing: &[ConditionJson],
    s: &pb::WorkStatus,
    now: &str,
) -> Result<Value, Skip> {
    fence(meta, &s.uid, s.generation)?;
    Ok(status_patch(meta, work_status_json(s, existing, now)))
}

pub fn plan_view_status(
    meta: &Meta,
    existing: &[ConditionJson],
    v: &pb::ViewStatus,
    now: &str,
) -> Result<Value, Skip> {
    fence(meta, &v.uid, v.generation)?;
    Ok(status_patch(meta, view_status_json(v, existing, now)?))
}

/// The finalizer change a work needs, if any: added while its cluster is registered,
/// removed once it is deleting and either its agent confirmed the cleanup or its
/// cluster is gone. Guarded by resourceVersion so a concurrent change of the list is
/// never lost.
pub fn plan_finalizer(entry: &WorkEntry, registered: bool) -> Result<Value, Skip> {
    let m = &entry.meta;
    let has = m.has_finalizer();
    let finalizers: Vec<String> = if m.deleting {
        let may_release = entry.gone_confirmed || !registered;
        if !has || !may_release {
            return Err(Skip::Unchanged);
        }
        m.finalizers
            .iter()
            .filter(|f| *f != WORK_FINALIZER)
            .cloned()
            .collect()
    } else {
        if has || !registered || entry.payload.is_err() {
            return Err(Skip::Unchanged);
        }
        let mut f = m.finalizers.clone();
        f.push(WORK_FINALIZER.to_string());
        f
    };
    Ok(json!({"metadata": {
        "uid": m.uid, "resourceVersion": m.resource_version, "finalizers": finalizers,
    }}))
}

/// `Applied=False` with the rejection reason, for the current generation.
pub fn plan_reject(entry: &WorkEntry, now: &str) -> Result<Value, Skip> {
    let Err(rej) = &entry.payload else {
        return Err(Skip::Unchanged);
    };
    let mut conds = entry.conditions.clone();
    set_condition(
        &mut conds,
        json!({"type": "Applied", "status": "False", "observedGeneration": entry.meta.generation,
               "lastTransitionTime": now, "reason": rej.reason, "message": rej.message}),
    );
    Ok(status_patch(&entry.meta, json!({ "conditions": conds })))
}

/// The ManagedCluster's [`UNACKNOWLEDGED_SINCE_ANNOTATION`] set to `since` (or removed).
pub fn plan_unacknowledged(meta: &Meta, since: Option<&str>) -> Result<Value, Skip> {
    if meta.unacknowledged_since.as_deref() == since {
        return Err(Skip::Unchanged);
    }
    Ok(json!({"metadata": {"annotations": {UNACKNOWLEDGED_SINCE_ANNOTATION: since}}}))
}

pub fn plan_annotation(meta: &Meta, since: Option<&str>) -> Result<Value, Skip> {
    if meta.unreachable_since.as_deref() == since {
        return Err(Skip::Unchanged);
    }
    Ok(json!({"metadata": {"annotations": {UNREACHABLE_SINCE_ANNOTATION: since}}}))
}
