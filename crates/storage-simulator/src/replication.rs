//! What the simulated storage does with a VolumeReplication, without a cluster: given the
//! object, what its class, PVC and PV say, and the time, the status it writes next.
//!
//! It plays csi-addons' VolumeReplication controller and an asynchronously replicating CSI
//! driver behind it (csi-addons `internal/controller/replication.storage/
//! volumereplication_controller.go` and `status.go` at the version Ramen pins), with these
//! differences, each because of what Ramen checks (`internal/controller/vrg_volrep.go`,
//! `checkVRStatus` … `isVRConditionMet`):
//!
//! * every condition carries the current `metadata.generation` and none is `Unknown`
//!   (Ramen treats a stale or unknown condition as not met); `Validated` is always written,
//!   True unless a prerequisite fails, so an old one never goes stale;
//! * a secondary goes straight to `Completed=True, Degraded=False, Resyncing=False` (the only
//!   combination that makes Ramen's PVC DataProtected), without csi-addons' intermediate
//!   degraded pass: with no data there is nothing to correct;
//! * `DestinationInfoAvailable` is never set and no finalizer is added.
//!
//! What it refuses, and why it can know: the simulator on a cluster sees only that cluster.
//! It cannot tell whether the peer's copy is still primary, so it cannot refuse a promotion
//! for that reason; csi-addons would not either, in effect: a promotion the driver refuses
//! with `FailedPrecondition` (peer still primary) is retried with force
//! (`markVolumeAsPrimary`, `volumePromotionKnownErrors`). It refuses what the local copy's
//! own state rules out: a resync of a primary (a primary has no primary to resync from), a
//! resync of a volume whose replication was never enabled, a volume that is not a bound PVC
//! on one of its PVs, a class with no usable schedule, and data sources other than a PVC.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use crate::schedule::{go_duration, latest_sync, until_next_sync, whole_seconds};
use crate::types::{VolumeReplicationStatus, condition as ct, desired, reason, state};

/// Appended to every condition and status message, so nobody mistakes this for storage.
pub const SIMULATED: &str = " (drbridge storage simulator)";

/// How soon a refused request is looked at again when nothing it depends on changes.
pub const RETRY: Duration = Duration::from_secs(10);

/// Why a request cannot be carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// A prerequisite that will not fix itself (wrong driver, no schedule): `Validated=False`.
    pub prerequisite: bool,
    pub message: String,
}

impl Refusal {
    /// Something that may change by itself (a PVC not bound yet).
    pub fn transient(message: impl Into<String>) -> Self {
        Self {
            prerequisite: false,
            message: message.into(),
        }
    }

    /// Something only a change of the objects fixes.
    pub fn prerequisite(message: impl Into<String>) -> Self {
        Self {
            prerequisite: true,
            message: message.into(),
        }
    }
}

/// Everything [`decide`] looks at.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    /// `metadata.generation`.
    pub generation: i64,
    /// `spec.replicationState`.
    pub desired: &'a str,
    /// The status as last written.
    pub status: &'a VolumeReplicationStatus,
    /// The replication schedule, or why the volume cannot replicate
    /// ([`crate::validate::validate`]).
    pub checked: Result<Duration, Refusal>,
    /// How long a resync takes.
    pub resync_time: Duration,
    pub now: Timestamp,
}

/// What a reconcile changes.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub status: VolumeReplicationStatus,
    /// When to look again even if nothing changes (the next sync, the end of a resync).
    pub requeue: Option<Duration>,
    /// A transition to log and count, if one happened.
    pub transition: Option<Transition>,
}

/// A change of the volume's replication role or health, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Promoted,
    Demoted,
    ResyncStarted,
    ResyncCompleted,
    Refused,
}

impl Transition {
    /// The reason of the Event that records it.
    pub fn reason(self) -> &'static str {
        match self {
            Transition::Promoted => "Promoted",
            Transition::Demoted => "Demoted",
            Transition::ResyncStarted => "ResyncStarted",
            Transition::ResyncCompleted => "ResyncCompleted",
            Transition::Refused => "Refused",
        }
    }

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Transition::Promoted => "promoted",
            Transition::Demoted => "demoted",
            Transition::ResyncStarted => "resync_started",
            Transition::ResyncCompleted => "resync_completed",
            Transition::Refused => "refused",
        }
    }
}

/// The next status of a VolumeReplication.
pub fn decide(input: &Input<'_>) -> Outcome {
    let now = whole_seconds(input.now);
    let b = Builder::new(input.status, input.generation, now);
    let current = input.status.state.as_str();
    let interval = match &input.checked {
        Ok(interval) => *interval,
        Err(refusal) => return b.refuse(input.desired, refusal),
    };
    match input.desired {
        desired::PRIMARY => b.primary(current, interval),
        desired::SECONDARY => b.secondary(current, input.resync_time),
        desired::RESYNC => b.resync(current, input.resync_time),
        other => b.refuse(
            other,
            &Refusal::prerequisite(format!(
                "unsupported volume state {other:?}: use primary, secondary or resync"
            )),
        ),
    }
}

/// Builds one status: the conditions written in this pass replace all others.
struct Builder<'a> {
    old: &'a VolumeReplicationStatus,
    generation: i64,
    now: Timestamp,
    conditions: Vec<Condition>,
}

impl<'a> Builder<'a> {
    fn new(old: &'a VolumeReplicationStatus, generation: i64, now: Timestamp) -> Self {
        Self {
            old,
            generation,
            now,
            conditions: Vec::new(),
        }
    }

    /// Sets a condition; its transition time moves only when its status changes (as
    /// `meta.SetStatusCondition` and csi-addons' `setStatusCondition` do).
    fn set(&mut self, type_: &str, status: bool, reason: &str, message: &str) {
        let status = if status { "True" } else { "False" };
        let last_transition_time = find(&self.old.conditions, type_)
            .filter(|c| c.status == status)
            .map(|c| c.last_transition_time.clone())
            .unwrap_or(Time(self.now));
        self.conditions.push(Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message: format!("{message}{SIMULATED}"),
            observed_generation: Some(self.generation),
            last_transition_time,
        });
    }

    fn validated(&mut self) {
        self.set(
            ct::VALIDATED,
            true,
            reason::PREREQUISITE_MET,
            "volume is validated and met all prerequisites",
        );
    }

    fn demoted(&mut self) {
        self.set(
            ct::COMPLETED,
            true,
            reason::DEMOTED,
            "volume is demoted to secondary",
        );
    }

    fn not_resyncing(&mut self) {
        self.set(
            ct::RESYNCING,
            false,
            reason::NOT_RESYNCING,
            "volume is not resyncing",
        );
    }

    /// The status with this pass's conditions; times of the last operation kept unless
    /// `transition` says one happened now.
    fn finish(
        self,
        state: &str,
        message: &str,
        transition: Option<Transition>,
        requeue: Option<Duration>,
    ) -> Outcome {
        let mut status = self.old.clone();
        status.state = state.into();
        status.message = format!("{message}{SIMULATED}");
        status.observed_generation = self.generation;
        status.conditions = self.conditions;
        if matches!(
            transition,
            Some(Transition::Promoted | Transition::Demoted | Transition::ResyncStarted)
        ) {
            status.last_start_time = Some(Time(self.now));
        }
        if matches!(
            transition,
            Some(Transition::Promoted | Transition::Demoted | Transition::ResyncCompleted)
        ) {
            status.last_completion_time = Some(Time(self.now));
        }
        Outcome {
            status,
            requeue,
            transition,
        }
    }

    fn primary(mut self, current: &str, interval: Duration) -> Outcome {
        let promoted = current != state::PRIMARY;
        // A fresh primary's first sync completes one interval after promotion, as a
        // snapshot-mirroring driver's does; reporting it at once let Ramen call a workload
        // protected before its first kube-object capture reached S3, and a failover then
        // had nothing to restore. Later syncs follow the schedule that started then.
        let started = if promoted {
            self.now
        } else {
            self.old
                .last_start_time
                .as_ref()
                .map(|t| t.0)
                .unwrap_or(self.now)
        };
        let step = k8s_openapi::jiff::SignedDuration::try_from(interval).unwrap_or_default();
        let first = started.checked_add(step).unwrap_or(started);
        let last_sync = match (&self.old.last_sync_time, promoted) {
            (Some(t), false) => Some(latest_sync(t.0, interval, self.now)),
            _ => (first <= self.now).then_some(first),
        };
        self.set(
            ct::COMPLETED,
            true,
            reason::PROMOTED,
            "volume is promoted to primary and replicating to secondary",
        );
        self.set(ct::DEGRADED, false, reason::HEALTHY, "volume is healthy");
        self.not_resyncing();
        self.validated();
        self.set(
            ct::REPLICATING,
            true,
            reason::REPLICATING,
            &format!(
                "volume is replicating: snapshots every {}, no data copied",
                go_duration(interval)
            ),
        );
        let requeue = match last_sync {
            Some(l) => until_next_sync(l, interval, self.now),
            None => std::time::Duration::try_from(first.duration_since(self.now))
                .unwrap_or(interval)
                .max(std::time::Duration::from_secs(1)),
        };
        let mut out = self.finish(
            state::PRIMARY,
            "volume is marked primary",
            promoted.then_some(Transition::Promoted),
            Some(requeue),
        );
        out.status.last_sync_time = last_sync.map(Time);
        // A simulator copies no data: each sync takes no time and moves no bytes.
        out.status.last_sync_duration = Some(go_duration(Duration::ZERO));
        out.status.last_sync_bytes = Some(0);
        out
    }

    fn secondary(self, current: &str, resync_time: Duration) -> Outcome {
        // A resync under way (asked for with `resync`) goes on after the spec returns to
        // `secondary`, as the storage's own resync would.
        if current == state::SECONDARY
            && let Some(started) = self.resync_started()
        {
            return self.resyncing(started, resync_time, "volume is marked secondary");
        }
        let demoted = current != state::SECONDARY;
        self.healthy_secondary(
            "volume is marked secondary",
            demoted.then_some(Transition::Demoted),
        )
    }

    fn resync(self, current: &str, resync_time: Duration) -> Outcome {
        match current {
            state::PRIMARY => {
                return self.refuse(
                    desired::RESYNC,
                    &Refusal::transient(
                        "the volume is primary on this cluster, and a primary has no primary \
                         to resync from: demote it to secondary first",
                    ),
                );
            }
            state::SECONDARY => {}
            _ => {
                return self.refuse(
                    desired::RESYNC,
                    &Refusal::transient(
                        "replication is not enabled on this volume yet: make it primary or \
                         secondary first",
                    ),
                );
            }
        }
        if let Some(started) = self.resync_started() {
            return self.resyncing(started, resync_time, "volume is marked for resyncing");
        }
        // Done for this generation: the healthy status a completed resync left.
        let done = self.old.observed_generation == self.generation
            && is(&self.old.conditions, ct::RESYNCING, "False")
            && is(&self.old.conditions, ct::DEGRADED, "False");
        if done {
            return self.healthy_secondary("volume is marked for resyncing", None);
        }
        let now = self.now;
        self.resyncing(now, resync_time, "volume is marked for resyncing")
    }

    /// When the resync under way started (the Resyncing condition's transition to True).
    fn resync_started(&self) -> Option<Timestamp> {
        find(&self.old.conditions, ct::RESYNCING)
            .filter(|c| c.status == "True")
            .map(|c| c.last_transition_time.0)
    }

    fn resyncing(mut self, started: Timestamp, resync_time: Duration, done_msg: &str) -> Outcome {
        let elapsed = Duration::try_from(self.now.duration_since(started)).unwrap_or_default();
        if elapsed >= resync_time {
            return self.healthy_secondary(done_msg, Some(Transition::ResyncCompleted));
        }
        let fresh = self.resync_started().is_none();
        self.demoted();
        self.set(
            ct::DEGRADED,
            true,
            reason::VOLUME_DEGRADED,
            "volume is degraded",
        );
        self.set(
            ct::RESYNCING,
            true,
            reason::RESYNC_TRIGGERED,
            "volume is resyncing changes from primary to secondary",
        );
        self.validated();
        let requeue = (resync_time - elapsed).max(Duration::from_secs(1));
        let mut out = self.finish(
            state::SECONDARY,
            "volume is degraded",
            fresh.then_some(Transition::ResyncStarted),
            Some(requeue),
        );
        clear_sync(&mut out.status);
        out
    }

    /// A secondary in sync with its primary: what Ramen calls DataProtected.
    fn healthy_secondary(mut self, message: &str, transition: Option<Transition>) -> Outcome {
        self.demoted();
        self.set(
            ct::DEGRADED,
            false,
            reason::HEALTHY,
            "volume is demoted to secondary",
        );
        self.not_resyncing();
        self.validated();
        let mut out = self.finish(state::SECONDARY, message, transition, None);
        clear_sync(&mut out.status);
        out
    }

    /// The failure conditions csi-addons writes for the requested operation
    /// (`setFailedPromotionCondition`, `setFailedValidationCondition`,
    /// `setFailedDemotionCondition`, `setFailedResyncCondition`); the state stays what it was.
    fn refuse(mut self, requested: &str, refusal: &Refusal) -> Outcome {
        let msg = refusal.message.as_str();
        match requested {
            desired::SECONDARY => {
                self.set(
                    ct::COMPLETED,
                    false,
                    reason::FAILED_TO_DEMOTE,
                    "failed to demote volume",
                );
                self.set(
                    ct::DEGRADED,
                    true,
                    reason::ERROR,
                    &format!("volume failed to demote: {msg}"),
                );
                self.not_resyncing();
            }
            desired::RESYNC => {
                self.set(
                    ct::COMPLETED,
                    false,
                    reason::FAILED_TO_RESYNC,
                    "failed to resync volume",
                );
                self.set(
                    ct::DEGRADED,
                    true,
                    reason::ERROR,
                    &format!("volume failed to resync: {msg}"),
                );
                self.set(
                    ct::RESYNCING,
                    false,
                    reason::FAILED_TO_RESYNC,
                    "volume is not resyncing",
                );
            }
            _ => {
                self.set(
                    ct::COMPLETED,
                    false,
                    reason::FAILED_TO_PROMOTE,
                    "failed to promote volume",
                );
                self.set(
                    ct::DEGRADED,
                    true,
                    reason::ERROR,
                    &format!("volume failed to promote: {msg}"),
                );
                self.not_resyncing();
            }
        }
        if refusal.prerequisite {
            self.set(
                ct::VALIDATED,
                false,
                reason::PREREQUISITE_NOT_MET,
                &format!("failed to meet prerequisite: {msg}"),
            );
        } else {
            self.validated();
        }
        let current = match self.old.state.as_str() {
            "" => state::UNKNOWN,
            s => s,
        }
        .to_owned();
        // Keep the last sync of a primary that stays primary: the refusal changes nothing on
        // the storage.
        let keep_sync = current == state::PRIMARY;
        let mut out = self.finish(&current, msg, Some(Transition::Refused), Some(RETRY));
        if !keep_sync {
            clear_sync(&mut out.status);
        }
        out
    }
}

fn clear_sync(status: &mut VolumeReplicationStatus) {
    status.last_sync_time = None;
    status.last_sync_duration = None;
    status.last_sync_bytes = None;
}

pub fn find<'c>(conditions: &'c [Condition], type_: &str) -> Option<&'c Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

fn is(conditions: &[Condition], type_: &str, status: &str) -> bool {
    find(conditions, type_).is_some_and(|c| c.status == status)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);
    const RESYNC: Duration = Duration::from_secs(10);

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn run(
        generation: i64,
        desired: &str,
        status: &VolumeReplicationStatus,
        checked: Result<Duration, Refusal>,
        now: i64,
    ) -> Outcome {
        decide(&Input {
            generation,
            desired,
            status,
            checked,
            resync_time: RESYNC,
            now: ts(now),
        })
    }

    fn cond<'s>(s: &'s VolumeReplicationStatus, t: &str) -> Option<(&'s str, &'s str)> {
        find(&s.conditions, t).map(|c| (c.status.as_str(), c.reason.as_str()))
    }

    /// What Ramen requires of every status (`isVRConditionMet`): current generation on the
    /// status and every condition, nothing Unknown, no DestinationInfoAvailable.
    fn assert_ramen_invariants(s: &VolumeReplicationStatus, generation: i64) {
        assert_eq!(s.observed_generation, generation);
        for c in &s.conditions {
            assert_eq!(c.observed_generation, Some(generation), "{c:?}");
            assert_ne!(c.status, "Unknown", "{c:?}");
            assert!(c.message.ends_with(SIMULATED), "{c:?}");
            assert!(!c.reason.is_empty());
        }
        assert!(find(&s.conditions, ct::DESTINATION_INFO_AVAILABLE).is_none());
        let mut types: Vec<_> = s.conditions.iter().map(|c| &c.type_).collect();
        types.sort();
        types.dedup();
        assert_eq!(types.len(), s.conditions.len(), "duplicate condition types");
    }

    /// Ramen's checks for a primary VR (`validateVRStatus`): Validated, if present, True;
    /// Completed True.
    fn ramen_primary_ready(s: &VolumeReplicationStatus) -> bool {
        cond(s, ct::VALIDATED).is_none_or(|(st, _)| st == "True")
            && cond(s, ct::COMPLETED).is_some_and(|(st, _)| st == "True")
    }

    /// Ramen's checks that make a secondary PVC DataProtected (`checkResyncCompletionAsSecondary`).
    fn ramen_secondary_protected(s: &VolumeReplicationStatus) -> bool {
        cond(s, ct::COMPLETED).is_some_and(|(st, _)| st == "True")
            && cond(s, ct::RESYNCING).is_some_and(|(st, _)| st == "False")
            && cond(s, ct::DEGRADED).is_some_and(|(st, _)| st == "False")
            && s.state == state::SECONDARY
    }

    #[test]
    fn new_primary_is_promoted_and_syncs_one_interval_later() {
        let out = run(1, desired::PRIMARY, &Default::default(), Ok(MIN), 0);
        let s = &out.status;
        assert_ramen_invariants(s, 1);
        assert!(ramen_primary_ready(s));
        assert_eq!(s.state, state::PRIMARY);
        assert_eq!(cond(s, ct::COMPLETED), Some(("True", reason::PROMOTED)));
        assert_eq!(cond(s, ct::DEGRADED), Some(("False", reason::HEALTHY)));
        assert_eq!(
            cond(s, ct::RESYNCING),
            Some(("False", reason::NOT_RESYNCING))
        );
        assert_eq!(
            cond(s, ct::VALIDATED),
            Some(("True", reason::PREREQUISITE_MET))
        );
        assert_eq!(
            cond(s, ct::REPLICATING),
            Some(("True", reason::REPLICATING))
        );
        // No sync yet: Ramen must not call the workload protected before the first one.
        assert_eq!(s.last_sync_time, None);
        assert_eq!(s.last_sync_duration.as_deref(), Some("0s"));
        assert_eq!(s.last_sync_bytes, Some(0));
        assert_eq!(out.requeue, Some(MIN));
        assert_eq!(out.transition, Some(Transition::Promoted));
        assert!(s.message.starts_with("volume is marked primary"));
        let synced = run(1, desired::PRIMARY, s, Ok(MIN), 60);
        assert_eq!(synced.status.last_sync_time, Some(Time(ts(60))));
        assert_eq!(synced.transition, None);
    }

    #[test]
    fn primary_sync_time_advances_on_the_schedule_only() {
        let first = run(1, desired::PRIMARY, &Default::default(), Ok(MIN), 0).status;
        let early = run(1, desired::PRIMARY, &first, Ok(MIN), 59);
        assert_eq!(early.status.last_sync_time, None);
        assert_eq!(early.transition, None);
        assert_eq!(early.requeue, Some(Duration::from_secs(1)));
        // Nothing changed: the same status, so no write.
        assert_eq!(early.status, first);
        let on_time = run(1, desired::PRIMARY, &first, Ok(MIN), 60).status;
        assert_eq!(on_time.last_sync_time, Some(Time(ts(60))));
        let after_gap = run(1, desired::PRIMARY, &on_time, Ok(MIN), 250).status;
        assert_eq!(after_gap.last_sync_time, Some(Time(ts(240))));
        // Condition transition times stay where the promotion put them.
        for c in &after_gap.conditions {
            assert_eq!(c.last_transition_time, Time(ts(0)), "{c:?}");
        }
        assert_eq!(after_gap.last_start_time, Some(Time(ts(0))));
    }

    #[test]
    fn demotion_gives_what_ramen_calls_data_protected() {
        let primary = run(1, desired::PRIMARY, &Default::default(), Ok(MIN), 0).status;
        let out = run(2, desired::SECONDARY, &primary, Ok(MIN), 30);
        let s = &out.status;
        assert_ramen_invariants(s, 2);
        assert!(ramen_secondary_protected(s));
        assert_eq!(cond(s, ct::COMPLETED), Some(("True", reason::DEMOTED)));
        assert_eq!(
            cond(s, ct::VALIDATED),
            Some(("True", reason::PREREQUISITE_MET))
        );
        assert!(cond(s, ct::REPLICATING).is_none());
        assert_eq!(s.last_sync_time, None);
        assert_eq!(s.last_sync_bytes, None);
        assert_eq!(s.last_sync_duration, None);
        assert_eq!(out.transition, Some(Transition::Demoted));
        assert_eq!(out.requeue, None);
        assert_eq!(s.last_completion_time, Some(Time(ts(30))));
        // Degraded stayed False through the flip: its transition time is the promotion's.
        assert_eq!(
            find(&s.conditions, ct::DEGRADED)
                .unwrap()
                .last_transition_time,
            Time(ts(0))
        );
    }

    #[test]
    fn a_new_secondary_and_a_promotion_after_failover() {
        let sec = run(1, desired::SECONDARY, &Default::default(), Ok(MIN), 0).status;
        assert!(ramen_secondary_protected(&sec));
        let out = run(2, desired::PRIMARY, &sec, Ok(MIN), 100);
        assert_ramen_invariants(&out.status, 2);
        assert!(ramen_primary_ready(&out.status));
        assert_eq!(out.transition, Some(Transition::Promoted));
        // The new primary's first sync is one interval after its promotion.
        assert_eq!(out.status.last_sync_time, None);
        assert_eq!(out.requeue, Some(MIN));
    }

    #[test]
    fn a_new_generation_refreshes_every_condition() {
        let primary = run(1, desired::PRIMARY, &Default::default(), Ok(MIN), 0).status;
        // e.g. autoResync flipped: the spec changed, the state did not.
        let out = run(2, desired::PRIMARY, &primary, Ok(MIN), 5);
        assert_ramen_invariants(&out.status, 2);
        assert_eq!(out.transition, None);
        // Still before the first sync, which the new generation does not move.
        assert_eq!(out.status.last_sync_time, None);
        assert_eq!(out.requeue, Some(Duration::from_secs(55)));
    }

    #[test]
    fn resync_of_a_primary_is_refused_and_says_why() {
        let promoted = run(1, desired::PRIMARY, &Default::default(), Ok(MIN), 0).status;
        let primary = run(1, desired::PRIMARY, &promoted, Ok(MIN), 60).status;
        let out = run(2, desired::RESYNC, &primary, Ok(MIN), 10);
        let s = &out.status;
        assert_ramen_invariants(s, 2);
        assert_eq!(s.state, state::PRIMARY);
        assert_eq!(
            cond(s, ct::COMPLETED),
            Some(("False", reason::FAILED_TO_RESYNC))
        );
        assert_eq!(cond(s, ct::DEGRADED), Some(("True", reason::ERROR)));
        assert_eq!(
            cond(s, ct::RESYNCING),
            Some(("False", reason::FAILED_TO_RESYNC))
        );
        let degraded = find(&s.conditions, ct::DEGRADED).unwrap();
        assert!(
            degraded.message.contains("demote it to secondary first"),
            "{degraded:?}"
        );
        assert_eq!(out.transition, Some(Transition::Refused));
        // The storage did nothing: the primary's last sync stays.
        assert_eq!(s.last_sync_time, Some(Time(ts(60))));
    }

    #[test]
    fn resync_of_a_never_replicated_volume_is_refused() {
        let out = run(1, desired::RESYNC, &Default::default(), Ok(MIN), 0);
        assert_ramen_invariants(&out.status, 1);
        assert_eq!(out.status.state, state::UNKNOWN);
        assert_eq!(
            cond(&out.status, ct::COMPLETED),
            Some(("False", reason::FAILED_TO_RESYNC))
        );
    }

    #[test]
    fn resync_of_a_secondary_takes_its_time_then_is_healthy() {
        let sec = run(1, desired::SECONDARY, &Default::default(), Ok(MIN), 0).status;
        let started = run(2, desired::RESYNC, &sec, Ok(MIN), 100);
        let s = &started.status;
        assert_ramen_invariants(s, 2);
        assert_eq!(started.transition, Some(Transition::ResyncStarted));
        assert_eq!(cond(s, ct::COMPLETED), Some(("True", reason::DEMOTED)));
        assert_eq!(
            cond(s, ct::DEGRADED),
            Some(("True", reason::VOLUME_DEGRADED))
        );
        assert_eq!(
            cond(s, ct::RESYNCING),
            Some(("True", reason::RESYNC_TRIGGERED))
        );
        assert_eq!(started.requeue, Some(RESYNC));
        assert!(!ramen_secondary_protected(s));

        let midway = run(2, desired::RESYNC, s, Ok(MIN), 104);
        assert_eq!(midway.transition, None);
        assert_eq!(midway.requeue, Some(Duration::from_secs(6)));
        assert_eq!(&midway.status, s);

        let done = run(2, desired::RESYNC, s, Ok(MIN), 110);
        assert_eq!(done.transition, Some(Transition::ResyncCompleted));
        assert!(ramen_secondary_protected(&done.status));
        assert_ramen_invariants(&done.status, 2);
        // And it stays done for this generation.
        let later = run(2, desired::RESYNC, &done.status, Ok(MIN), 500);
        assert_eq!(later.transition, None);
        assert_eq!(later.status, done.status);
        // Back to secondary: healthy, nothing to redo.
        let back = run(3, desired::SECONDARY, &done.status, Ok(MIN), 510);
        assert!(ramen_secondary_protected(&back.status));
        assert_eq!(back.transition, None);
    }

    #[test]
    fn a_resync_under_way_continues_when_the_spec_returns_to_secondary() {
        let sec = run(1, desired::SECONDARY, &Default::default(), Ok(MIN), 0).status;
        let started = run(2, desired::RESYNC, &sec, Ok(MIN), 100).status;
        let out = run(3, desired::SECONDARY, &started, Ok(MIN), 105);
        assert_ramen_invariants(&out.status, 3);
        assert_eq!(
            cond(&out.status, ct::RESYNCING),
            Some(("True", reason::RESYNC_TRIGGERED))
        );
        assert_eq!(out.requeue, Some(Duration::from_secs(5)));
        let done = run(3, desired::SECONDARY, &out.status, Ok(MIN), 110);
        assert!(ramen_secondary_protected(&done.status));
    }

    #[test]
    fn refusals_use_csi_addons_failure_conditions() {
        let transient = Refusal::transient("PVC app/data is not bound");
        let out = run(
            1,
            desired::PRIMARY,
            &Default::default(),
            Err(transient.clone()),
            0,
        );
        let s = &out.status;
        assert_ramen_invariants(s, 1);
        assert_eq!(s.state, state::UNKNOWN);
        assert_eq!(
            cond(s, ct::COMPLETED),
            Some(("False", reason::FAILED_TO_PROMOTE))
        );
        assert_eq!(cond(s, ct::DEGRADED), Some(("True", reason::ERROR)));
        assert_eq!(
            cond(s, ct::VALIDATED),
            Some(("True", reason::PREREQUISITE_MET))
        );
        assert!(s.message.contains("not bound"));
        assert_eq!(out.requeue, Some(RETRY));

        let prereq = Refusal::prerequisite("no schedule");
        let out = run(
            1,
            desired::PRIMARY,
            &Default::default(),
            Err(prereq.clone()),
            0,
        );
        assert_eq!(
            cond(&out.status, ct::VALIDATED),
            Some(("False", reason::PREREQUISITE_NOT_MET))
        );
        assert!(!ramen_primary_ready(&out.status));

        let out = run(
            1,
            desired::SECONDARY,
            &Default::default(),
            Err(transient),
            0,
        );
        assert_eq!(
            cond(&out.status, ct::COMPLETED),
            Some(("False", reason::FAILED_TO_DEMOTE))
        );
        assert_ramen_invariants(&out.status, 1);

        // A refusal after the problem is fixed gives way to the normal status.
        let fixed = run(1, desired::SECONDARY, &out.status, Ok(MIN), 5);
        assert!(ramen_secondary_protected(&fixed.status));
        assert_eq!(fixed.transition, Some(Transition::Demoted));
    }

    #[test]
    fn unknown_state_is_refused() {
        let out = run(1, "tertiary", &Default::default(), Ok(MIN), 0);
        assert_ramen_invariants(&out.status, 1);
        assert_eq!(
            cond(&out.status, ct::VALIDATED),
            Some(("False", reason::PREREQUISITE_NOT_MET))
        );
    }

    #[test]
    fn stale_and_foreign_conditions_are_replaced() {
        let mut old = run(1, desired::PRIMARY, &Default::default(), Ok(MIN), 0).status;
        old.conditions.push(Condition {
            type_: ct::DESTINATION_INFO_AVAILABLE.into(),
            status: "Unknown".into(),
            reason: "DestinationInfoPending".into(),
            message: String::new(),
            observed_generation: Some(1),
            last_transition_time: Time(ts(0)),
        });
        let out = run(2, desired::SECONDARY, &old, Ok(MIN), 10);
        assert_ramen_invariants(&out.status, 2);
    }
}
