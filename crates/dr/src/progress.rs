//! Following an action to its end (`--wait`): what changed since the last line printed, and
//! whether the action is done or can no longer complete.

use serde::Serialize;

use crate::consts::{condition as ct, phase, progression};
use crate::explain::find;
use crate::types::{DRAction, DRPlacementControl};

/// What `--wait` waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expectation {
    pub action: DRAction,
    pub target: String,
    /// The DRPC's generation once the action was requested: status older than that is
    /// about an earlier action.
    pub generation: i64,
}

/// Where the action stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "message", rename_all = "camelCase")]
pub enum Outcome {
    Pending,
    Done,
    /// The action cannot complete as requested.
    Failed(String),
}

/// Judges the DRPC (`None`: it is gone) against the expectation. `current` is where the
/// application runs according to the PlacementDecision.
pub fn evaluate(
    exp: &Expectation,
    drpc: Option<&DRPlacementControl>,
    current: Option<&str>,
) -> Outcome {
    let Some(d) = drpc else {
        return Outcome::Failed("the DRPlacementControl was deleted".into());
    };
    if d.metadata.deletion_timestamp.is_some() {
        return Outcome::Failed("the DRPlacementControl is being deleted".into());
    }
    let target = match exp.action {
        DRAction::Failover => &d.spec.failover_cluster,
        DRAction::Relocate => &d.spec.preferred_cluster,
    };
    if d.spec.action != Some(exp.action) || *target != exp.target {
        return Outcome::Failed(format!(
            "someone changed the request meanwhile: spec.action is now {}{}",
            d.spec.action.map_or("empty", |a| a.as_str()),
            if target.is_empty() {
                String::new()
            } else {
                format!(" to {target}")
            }
        ));
    }
    let Some(status) = &d.status else {
        return Outcome::Pending;
    };
    let done = status.observed_generation >= exp.generation
        && status.phase == exp.action.done_phase()
        && status.progression == progression::COMPLETED
        && current.is_none_or(|c| c == exp.target);
    if done {
        Outcome::Done
    } else {
        Outcome::Pending
    }
}

/// The part of a DRPC that `--wait` reports on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    pub phase: String,
    pub progression: String,
    pub current: Option<String>,
    /// `Available` when it is not True: Ramen's message says what it waits for.
    pub available: Option<String>,
    pub peer_ready: String,
}

impl Snapshot {
    pub fn of(d: &DRPlacementControl, current: Option<String>) -> Self {
        let status = d.status.clone().unwrap_or_default();
        let available = find(&status.conditions, ct::AVAILABLE)
            .filter(|c| c.status != "True")
            .map(|c| c.message.clone());
        Snapshot {
            phase: status.phase,
            progression: status.progression,
            current,
            available,
            peer_ready: crate::explain::status_of(&status.conditions, ct::PEER_READY),
        }
    }

    /// The line to print when the snapshot differs from `prev` (`None` if nothing changed).
    pub fn line_since(&self, prev: Option<&Snapshot>) -> Option<String> {
        if prev == Some(self) {
            return None;
        }
        let dash = |s: &str| {
            if s.is_empty() {
                "-".to_string()
            } else {
                s.to_string()
            }
        };
        let mut line = format!(
            "{:<12} {:<30} cluster {:<6} peer-ready {}",
            dash(&self.phase),
            dash(&self.progression),
            self.current.clone().unwrap_or_else(|| "-".into()),
            self.peer_ready
        );
        if let Some(msg) = &self.available
            && !msg.is_empty()
        {
            line.push_str(&format!("  ({msg})"));
        }
        Some(line)
    }

    /// A hint when Ramen waits for the user. `left` is the cluster the application left.
    pub fn hint(&self, d: &DRPlacementControl, left: Option<&str>) -> Option<String> {
        (self.progression == progression::WAIT_ON_USER_TO_CLEAN_UP).then(|| {
            let ns = d.spec.protected_namespaces.clone().unwrap_or_default();
            format!(
                "Ramen waits for you: delete the application's resources{} on {}; the action \
                 then completes.",
                if ns.is_empty() {
                    String::new()
                } else {
                    format!(" in {}", ns.join(", "))
                },
                left.unwrap_or("the cluster it left")
            )
        })
    }
}

/// Whether the phase means an action or deployment is underway.
pub fn is_transient(p: &str) -> bool {
    matches!(
        p,
        phase::INITIATING | phase::DEPLOYING | phase::FAILING_OVER | phase::RELOCATING
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{DRPlacementControlSpec, DRPlacementControlStatus};

    fn drpc(phase: &str, progression: &str, observed: i64) -> DRPlacementControl {
        let mut d = DRPlacementControl::new(
            "app",
            DRPlacementControlSpec {
                action: Some(DRAction::Failover),
                failover_cluster: "dr2".into(),
                ..Default::default()
            },
        );
        d.metadata.generation = Some(4);
        d.status = Some(DRPlacementControlStatus {
            phase: phase.into(),
            progression: progression.into(),
            observed_generation: observed,
            ..Default::default()
        });
        d
    }

    fn exp() -> Expectation {
        Expectation {
            action: DRAction::Failover,
            target: "dr2".into(),
            generation: 4,
        }
    }

    #[test]
    fn done_only_when_completed_for_this_request() {
        let e = exp();
        assert_eq!(
            evaluate(
                &e,
                Some(&drpc("FailingOver", "FailingOverToCluster", 4)),
                Some("dr1")
            ),
            Outcome::Pending
        );
        assert_eq!(
            evaluate(
                &e,
                Some(&drpc("FailedOver", "WaitOnUserToCleanUp", 4)),
                Some("dr2")
            ),
            Outcome::Pending
        );
        // A completed failover of an earlier request (older generation) is not this one.
        assert_eq!(
            evaluate(&e, Some(&drpc("FailedOver", "Completed", 2)), Some("dr2")),
            Outcome::Pending
        );
        assert_eq!(
            evaluate(&e, Some(&drpc("FailedOver", "Completed", 4)), Some("dr1")),
            Outcome::Pending
        );
        assert_eq!(
            evaluate(&e, Some(&drpc("FailedOver", "Completed", 4)), Some("dr2")),
            Outcome::Done
        );
        assert_eq!(
            evaluate(&e, Some(&drpc("FailedOver", "Completed", 4)), None),
            Outcome::Done
        );
    }

    #[test]
    fn fails_when_the_request_changes_or_the_drpc_goes() {
        let e = exp();
        assert_eq!(
            evaluate(&e, None, None),
            Outcome::Failed("the DRPlacementControl was deleted".into())
        );
        let mut d = drpc("FailingOver", "", 4);
        d.spec.action = None;
        assert!(
            matches!(evaluate(&e, Some(&d), None), Outcome::Failed(m) if m.contains("spec.action is now empty"))
        );
        let mut d = drpc("FailingOver", "", 4);
        d.spec.failover_cluster = "dr3".into();
        assert!(
            matches!(evaluate(&e, Some(&d), None), Outcome::Failed(m) if m.ends_with("Failover to dr3"))
        );
    }

    #[test]
    fn lines_only_on_change() {
        let d = drpc("FailingOver", "FailingOverToCluster", 4);
        let a = Snapshot::of(&d, Some("dr1".into()));
        let line = a.line_since(None).unwrap();
        assert!(
            line.starts_with("FailingOver  FailingOverToCluster"),
            "{line}"
        );
        assert_eq!(a.line_since(Some(&a)), None);
        let b = Snapshot::of(
            &drpc("FailedOver", "WaitOnUserToCleanUp", 4),
            Some("dr2".into()),
        );
        assert!(b.line_since(Some(&a)).is_some());
        assert_eq!(
            b.hint(&d, Some("dr1")).unwrap(),
            "Ramen waits for you: delete the application's resources on dr1; the action then completes."
        );
        assert!(a.hint(&d, None).is_none());
    }
}
