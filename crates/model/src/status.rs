//! Work status with the OCM work agent's exact strings (docs/ramen-contract.md, "Work status").
//!
//! Per manifest: `Applied` (manifestwork reconciler), `Available` (object reader) and
//! `StatusFeedbackSynced` (status controller, only when the object could be read).
//! Per work: `Applied` (all manifests applied) and `Available` (aggregate), both with
//! `observedGeneration`. `lastTransitionTime` moves only when a condition's status flips,
//! as `meta.SetStatusCondition` does.

use chrono::{DateTime, SecondsFormat, Utc};
use std::fmt;

pub const APPLIED: &str = "Applied";
pub const AVAILABLE: &str = "Available";
pub const STATUS_FEEDBACK_SYNCED: &str = "StatusFeedbackSynced";
pub const DELETING: &str = "Deleting";

pub const REASON_APPLIED_MANIFEST_COMPLETE: &str = "AppliedManifestComplete";
pub const REASON_APPLIED_MANIFEST_FAILED: &str = "AppliedManifestFailed";
pub const REASON_RESOURCE_AVAILABLE: &str = "ResourceAvailable";
pub const REASON_RESOURCE_NOT_AVAILABLE: &str = "ResourceNotAvailable";
pub const REASON_FETCHING_RESOURCE_FAILED: &str = "FetchingResourceFailed";
pub const REASON_INCOMPLETE_RESOURCE_META: &str = "IncompleteResourceMeta";
pub const REASON_NO_STATUS_FEEDBACK_SYNCED: &str = "NoStatusFeedbackSynced";
pub const REASON_WORK_APPLIED: &str = "AppliedManifestWorkComplete";
pub const REASON_WORK_APPLY_FAILED: &str = "AppliedManifestWorkFailed";
pub const REASON_RESOURCES_AVAILABLE: &str = "ResourcesAvailable";
pub const REASON_RESOURCES_NOT_AVAILABLE: &str = "ResourcesNotAvailable";
pub const REASON_RESOURCES_STATUS_UNKNOWN: &str = "ResourcesStatusUnknown";
pub const REASON_WORK_DELETING: &str = "WorkDeleting";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

impl ConditionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionStatus::True => "True",
            ConditionStatus::False => "False",
            ConditionStatus::Unknown => "Unknown",
        }
    }
}

impl fmt::Display for ConditionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `metav1.Condition`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    pub type_: String,
    pub status: ConditionStatus,
    pub reason: String,
    pub message: String,
    pub observed_generation: i64,
    /// Set by [`set_condition`]; `None` on a freshly built condition.
    pub last_transition_time: Option<DateTime<Utc>>,
}

impl Condition {
    pub fn new(
        type_: &str,
        status: ConditionStatus,
        reason: &str,
        message: impl Into<String>,
    ) -> Self {
        Condition {
            type_: type_.to_string(),
            status,
            reason: reason.to_string(),
            message: message.into(),
            observed_generation: 0,
            last_transition_time: None,
        }
    }

    pub fn with_generation(mut self, generation: i64) -> Self {
        self.observed_generation = generation;
        self
    }

    /// RFC 3339 with seconds, as metav1.Time serialises.
    pub fn last_transition_rfc3339(&self) -> String {
        self.last_transition_time.map(rfc3339).unwrap_or_default()
    }

    /// Equal apart from the transition time.
    pub fn same_as(&self, other: &Condition) -> bool {
        self.type_ == other.type_
            && self.status == other.status
            && self.reason == other.reason
            && self.message == other.message
            && self.observed_generation == other.observed_generation
    }
}

/// A time as Kubernetes writes it in conditions: whole seconds.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A time to measure latency with: milliseconds.
pub fn rfc3339_millis(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// `meta.SetStatusCondition`: adds or updates by type; the transition time changes only
/// when the status flips. Returns true if anything changed.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    mut new: Condition,
    now: DateTime<Utc>,
) -> bool {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        None => {
            new.last_transition_time.get_or_insert(now);
            conditions.push(new);
            true
        }
        Some(existing) => {
            let changed = !existing.same_as(&new);
            if existing.status != new.status {
                existing.status = new.status;
                existing.last_transition_time = Some(new.last_transition_time.unwrap_or(now));
            }
            existing.reason = new.reason;
            existing.message = new.message;
            existing.observed_generation = new.observed_generation;
            changed
        }
    }
}

/// Per-manifest `Applied`.
pub fn manifest_applied(generation: i64, result: Result<(), &str>) -> Condition {
    match result {
        Ok(()) => Condition::new(
            APPLIED,
            ConditionStatus::True,
            REASON_APPLIED_MANIFEST_COMPLETE,
            "Apply manifest complete",
        ),
        Err(e) => Condition::new(
            APPLIED,
            ConditionStatus::False,
            REASON_APPLIED_MANIFEST_FAILED,
            format!("Failed to apply manifest: {e}"),
        ),
    }
    .with_generation(generation)
}

/// What is known of the live object behind a manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Availability {
    /// The object exists.
    Available,
    /// The object does not exist.
    NotAvailable,
    /// Reading the object failed.
    FetchFailed(String),
    /// The manifest has no resource, version or name (it failed before discovery).
    IncompleteMeta,
}

/// Per-manifest `Available` (no observedGeneration, as OCM's object reader).
pub fn manifest_available(a: &Availability) -> Condition {
    match a {
        Availability::Available => Condition::new(
            AVAILABLE,
            ConditionStatus::True,
            REASON_RESOURCE_AVAILABLE,
            "Resource is available",
        ),
        Availability::NotAvailable => Condition::new(
            AVAILABLE,
            ConditionStatus::False,
            REASON_RESOURCE_NOT_AVAILABLE,
            "Resource is not available",
        ),
        Availability::FetchFailed(e) => Condition::new(
            AVAILABLE,
            ConditionStatus::Unknown,
            REASON_FETCHING_RESOURCE_FAILED,
            format!("Failed to fetch resource: {e}"),
        ),
        Availability::IncompleteMeta => Condition::new(
            AVAILABLE,
            ConditionStatus::Unknown,
            REASON_INCOMPLETE_RESOURCE_META,
            "Resource meta is incomplete",
        ),
    }
}

/// Per-manifest `StatusFeedbackSynced` when the work has no feedback rules.
pub fn status_feedback_synced() -> Condition {
    Condition::new(
        STATUS_FEEDBACK_SYNCED,
        ConditionStatus::True,
        REASON_NO_STATUS_FEEDBACK_SYNCED,
        "",
    )
}

/// The conditions of one manifest in OCM's order. `previous` keeps transition times.
pub fn manifest_conditions(
    previous: &[Condition],
    generation: i64,
    applied: Result<(), &str>,
    availability: &Availability,
    now: DateTime<Utc>,
) -> Vec<Condition> {
    let mut out: Vec<Condition> = Vec::with_capacity(3);
    let mut put = |c: Condition| {
        let mut c = c;
        c.last_transition_time = match previous.iter().find(|p| p.type_ == c.type_) {
            Some(p) if p.status == c.status => p.last_transition_time.or(Some(now)),
            _ => Some(now),
        };
        out.push(c);
    };
    put(manifest_applied(generation, applied));
    put(manifest_available(availability));
    // The status controller stops before feedback when the object cannot be read.
    if *availability == Availability::Available {
        put(status_feedback_synced());
    }
    out
}

/// Work-level `Applied`: True only when every manifest's `Applied` is True. `None` when no
/// manifest has an `Applied` condition (OCM then leaves the work condition alone).
pub fn work_applied<'a>(
    generation: i64,
    manifests: impl IntoIterator<Item = &'a [Condition]>,
) -> Option<Condition> {
    let mut exists = false;
    for conds in manifests {
        for c in conds.iter().filter(|c| c.type_ == APPLIED) {
            exists = true;
            if c.status == ConditionStatus::False {
                return Some(work_applied_condition(generation, false));
            }
        }
    }
    exists.then(|| work_applied_condition(generation, true))
}

fn work_applied_condition(generation: i64, ok: bool) -> Condition {
    if ok {
        Condition::new(
            APPLIED,
            ConditionStatus::True,
            REASON_WORK_APPLIED,
            "Apply manifest work complete",
        )
    } else {
        Condition::new(
            APPLIED,
            ConditionStatus::False,
            REASON_WORK_APPLY_FAILED,
            "Failed to apply manifest work",
        )
    }
    .with_generation(generation)
}

/// Work-level `Available` (`conditions/helpers.go:newAggregateAvailableCondition`).
pub fn work_available<'a>(
    generation: i64,
    manifests: impl IntoIterator<Item = &'a [Condition]>,
) -> Condition {
    let (mut t, mut f, mut u, mut total) = (0usize, 0usize, 0usize, 0usize);
    for conds in manifests {
        total += 1;
        for c in conds.iter().filter(|c| c.type_ == AVAILABLE) {
            match c.status {
                ConditionStatus::True => t += 1,
                ConditionStatus::False => f += 1,
                ConditionStatus::Unknown => u += 1,
            }
        }
    }
    let c = if f > 0 {
        Condition::new(
            AVAILABLE,
            ConditionStatus::False,
            REASON_RESOURCES_NOT_AVAILABLE,
            format!("{f} of {total} resources are not available"),
        )
    } else if u > 0 {
        Condition::new(
            AVAILABLE,
            ConditionStatus::Unknown,
            REASON_RESOURCES_STATUS_UNKNOWN,
            format!("{u} of {total} resources have unknown status"),
        )
    } else if t == 0 {
        // The trailing space is OCM's.
        Condition::new(
            AVAILABLE,
            ConditionStatus::Unknown,
            REASON_RESOURCES_STATUS_UNKNOWN,
            "cannot get any available resource ",
        )
    } else {
        Condition::new(
            AVAILABLE,
            ConditionStatus::True,
            REASON_RESOURCES_AVAILABLE,
            "All resources are available",
        )
    };
    c.with_generation(generation)
}

/// Work-level `Deleting`, added when the agent starts deleting a work.
pub fn work_deleting(generation: i64) -> Condition {
    Condition::new(
        DELETING,
        ConditionStatus::True,
        REASON_WORK_DELETING,
        "ManifestWork is being deleted",
    )
    .with_generation(generation)
}

/// The work-level conditions in OCM's order (Applied, Available, then Deleting), with
/// transition times carried from `previous`.
pub fn work_conditions(
    previous: &[Condition],
    generation: i64,
    manifests: &[Vec<Condition>],
    deleting: bool,
    now: DateTime<Utc>,
) -> Vec<Condition> {
    let mut out = previous.to_vec();
    let slices = || manifests.iter().map(Vec::as_slice);
    if let Some(c) = work_applied(generation, slices()) {
        set_condition(&mut out, c, now);
    }
    set_condition(&mut out, work_available(generation, slices()), now);
    if deleting {
        set_condition(&mut out, work_deleting(generation), now);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + s, 0).unwrap()
    }

    #[test]
    fn exact_manifest_strings() {
        let ok = manifest_applied(4, Ok(()));
        assert_eq!(
            (ok.status.as_str(), ok.reason.as_str(), ok.message.as_str()),
            ("True", "AppliedManifestComplete", "Apply manifest complete")
        );
        assert_eq!(ok.observed_generation, 4);
        let bad = manifest_applied(
            4,
            Err("the server doesn't have a resource type \"OperatorGroup\""),
        );
        assert_eq!(bad.reason, "AppliedManifestFailed");
        assert_eq!(
            bad.message,
            "Failed to apply manifest: the server doesn't have a resource type \"OperatorGroup\""
        );
        let a = manifest_available(&Availability::Available);
        assert_eq!(
            (a.reason.as_str(), a.message.as_str(), a.observed_generation),
            ("ResourceAvailable", "Resource is available", 0)
        );
        let n = manifest_available(&Availability::NotAvailable);
        assert_eq!(
            (n.status, n.reason.as_str(), n.message.as_str()),
            (
                ConditionStatus::False,
                "ResourceNotAvailable",
                "Resource is not available"
            )
        );
        let u = manifest_available(&Availability::FetchFailed("forbidden".into()));
        assert_eq!(
            (u.status, u.message.as_str()),
            (
                ConditionStatus::Unknown,
                "Failed to fetch resource: forbidden"
            )
        );
        let i = manifest_available(&Availability::IncompleteMeta);
        assert_eq!(
            (i.reason.as_str(), i.message.as_str()),
            ("IncompleteResourceMeta", "Resource meta is incomplete")
        );
        let s = status_feedback_synced();
        assert_eq!(
            (
                s.type_.as_str(),
                s.status,
                s.reason.as_str(),
                s.message.as_str()
            ),
            (
                "StatusFeedbackSynced",
                ConditionStatus::True,
                "NoStatusFeedbackSynced",
                ""
            )
        );
    }

    #[test]
    fn feedback_only_when_available() {
        let c = manifest_conditions(&[], 1, Ok(()), &Availability::Available, t(0));
        assert_eq!(
            c.iter().map(|c| c.type_.as_str()).collect::<Vec<_>>(),
            ["Applied", "Available", "StatusFeedbackSynced"]
        );
        let c = manifest_conditions(&[], 1, Ok(()), &Availability::NotAvailable, t(0));
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn transition_time_moves_only_on_flip() {
        let c1 = manifest_conditions(&[], 1, Ok(()), &Availability::Available, t(0));
        let c2 = manifest_conditions(&c1, 2, Ok(()), &Availability::Available, t(10));
        assert!(c2.iter().all(|c| c.last_transition_time == Some(t(0))));
        assert_eq!(c2[0].observed_generation, 2);
        let c3 = manifest_conditions(&c2, 2, Ok(()), &Availability::NotAvailable, t(20));
        assert_eq!(c3[0].last_transition_time, Some(t(0)));
        assert_eq!(c3[1].last_transition_time, Some(t(20)));
        assert_eq!(c3[1].last_transition_rfc3339(), "2023-11-14T22:13:40Z");
        let at = c3[1].last_transition_time.unwrap();
        assert_eq!(rfc3339_millis(at), "2023-11-14T22:13:40.000Z");
    }

    #[test]
    fn set_condition_semantics() {
        let mut v = vec![];
        assert!(set_condition(&mut v, manifest_applied(1, Ok(())), t(0)));
        assert!(!set_condition(&mut v, manifest_applied(1, Ok(())), t(5)));
        assert!(set_condition(&mut v, manifest_applied(2, Ok(())), t(6)));
        assert_eq!(v[0].last_transition_time, Some(t(0)));
        assert!(set_condition(&mut v, manifest_applied(2, Err("x")), t(7)));
        assert_eq!(v[0].last_transition_time, Some(t(7)));
        assert_eq!(v.len(), 1);
    }

    #[test]
    fn work_applied_aggregate() {
        let ok = vec![manifest_applied(3, Ok(()))];
        let bad = vec![manifest_applied(3, Err("x"))];
        let c = work_applied(3, [ok.as_slice(), ok.as_slice()]).unwrap();
        assert_eq!(
            (
                c.status,
                c.reason.as_str(),
                c.message.as_str(),
                c.observed_generation
            ),
            (
                ConditionStatus::True,
                "AppliedManifestWorkComplete",
                "Apply manifest work complete",
                3
            )
        );
        let c = work_applied(3, [ok.as_slice(), bad.as_slice()]).unwrap();
        assert_eq!(
            (c.status, c.reason.as_str(), c.message.as_str()),
            (
                ConditionStatus::False,
                "AppliedManifestWorkFailed",
                "Failed to apply manifest work"
            )
        );
        assert!(work_applied(3, std::iter::empty::<&[Condition]>()).is_none());
    }

    #[test]
    fn work_available_aggregate() {
        let yes = vec![manifest_available(&Availability::Available)];
        let no = vec![manifest_available(&Availability::NotAvailable)];
        let unk = vec![manifest_available(&Availability::IncompleteMeta)];
        let c = work_available(2, [yes.as_slice(), yes.as_slice()]);
        assert_eq!(
            (
                c.status,
                c.reason.as_str(),
                c.message.as_str(),
                c.observed_generation
            ),
            (
                ConditionStatus::True,
                "ResourcesAvailable",
                "All resources are available",
                2
            )
        );
        let c = work_available(2, [yes.as_slice(), no.as_slice(), unk.as_slice()]);
        assert_eq!(
            (c.status, c.reason.as_str(), c.message.as_str()),
            (
                ConditionStatus::False,
                "ResourcesNotAvailable",
                "1 of 3 resources are not available"
            )
        );
        let c = work_available(2, [yes.as_slice(), unk.as_slice()]);
        assert_eq!(
            (c.status, c.reason.as_str(), c.message.as_str()),
            (
                ConditionStatus::Unknown,
                "ResourcesStatusUnknown",
                "1 of 2 resources have unknown status"
            )
        );
        let c = work_available(2, std::iter::empty::<&[Condition]>());
        assert_eq!(
            (c.status, c.message.as_str()),
            (
                ConditionStatus::Unknown,
                "cannot get any available resource "
            )
        );
    }

    #[test]
    fn work_conditions_order_and_deleting() {
        let m = vec![manifest_conditions(
            &[],
            5,
            Ok(()),
            &Availability::Available,
            t(0),
        )];
        let w = work_conditions(&[], 5, &m, false, t(0));
        assert_eq!(
            w.iter().map(|c| c.type_.as_str()).collect::<Vec<_>>(),
            ["Applied", "Available"]
        );
        let w2 = work_conditions(&w, 6, &m, true, t(9));
        assert_eq!(
            w2.iter().map(|c| c.type_.as_str()).collect::<Vec<_>>(),
            ["Applied", "Available", "Deleting"]
        );
        assert_eq!(w2[0].last_transition_time, Some(t(0)));
        assert_eq!(w2[0].observed_generation, 6);
        assert_eq!(w2[2].reason, "WorkDeleting");
        assert_eq!(w2[2].message, "ManifestWork is being deleted");
    }
}
