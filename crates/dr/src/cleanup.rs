//! Following the removal of protection (`drbridge dr disable`): Ramen deletes the VRG
//! ManifestWork of the secondary, then of the primary; the agent deletes each VRG (the hub's
//! finalizer holds the work until it confirms); Ramen sees the VRGs gone through its views,
//! deletes the views, and releases the DRPC and the Placement.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::connection::Connection;
use crate::progress::Outcome;
use crate::view::VrgEvidence;

/// The VRG ManifestWork of one cluster on the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum WorkState {
    Absent,
    Present,
    /// Deleted, held by the hub's finalizer until the agent confirms the VRG is gone.
    Deleting,
}

/// Where the VRG of one cluster stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "detail", rename_all = "camelCase")]
pub enum VrgCleanup {
    /// Still there and not asked to go (its state, e.g. `Primary`).
    Present(String),
    /// Ramen deleted its work; the agent deletes it.
    Deleting,
    /// Gone: the cluster answered that there is no VRG, or neither work nor view remain.
    Gone,
    /// The hub cannot tell (the view is pending or failed).
    Unknown(String),
}

impl VrgCleanup {
    /// Judges one cluster from its VRG work and view.
    pub fn judge(work: WorkState, view: &VrgEvidence) -> Self {
        match (view, work) {
            (VrgEvidence::Absent, _) => VrgCleanup::Gone,
            (VrgEvidence::NoView, WorkState::Absent) => VrgCleanup::Gone,
            (_, WorkState::Deleting) => VrgCleanup::Deleting,
            // The work is gone (the agent confirmed) but the view has not caught up yet.
            (VrgEvidence::Found { .. }, WorkState::Absent) => VrgCleanup::Deleting,
            (VrgEvidence::Found { vrg, .. }, WorkState::Present) => VrgCleanup::Present(
                vrg.status
                    .as_ref()
                    .map(|s| s.state.clone())
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "-".into()),
            ),
            (other, _) => VrgCleanup::Unknown(other.summary()),
        }
    }

    /// A word for the progress line.
    pub fn word(&self) -> String {
        match self {
            VrgCleanup::Present(s) => s.clone(),
            VrgCleanup::Deleting => "deleting".into(),
            VrgCleanup::Gone => "gone".into(),
            VrgCleanup::Unknown(s) => s.clone(),
        }
    }
}

/// One look at the removal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CleanupSnapshot {
    /// The DRPC's phase and progression; `None` once it is gone.
    pub drpc: Option<(String, String)>,
    pub placement: bool,
    /// Per DRPolicy cluster.
    pub vrgs: BTreeMap<String, VrgCleanup>,
    /// Clusters the hub cannot reach: Ramen cannot finish until they are back.
    pub unreachable: Vec<String>,
}

impl CleanupSnapshot {
    /// Builds the snapshot; `clusters` holds, per cluster, its work, view and connection.
    pub fn new(
        drpc: Option<(String, String)>,
        placement: bool,
        clusters: &BTreeMap<String, (WorkState, VrgEvidence, Connection)>,
    ) -> Self {
        let mut vrgs = BTreeMap::new();
        let mut unreachable = Vec::new();
        for (name, (work, view, conn)) in clusters {
            let v = VrgCleanup::judge(*work, view);
            if v != VrgCleanup::Gone && !conn.is_connected() {
                unreachable.push(name.clone());
            }
            vrgs.insert(name.clone(), v);
        }
        CleanupSnapshot {
            drpc,
            placement,
            vrgs,
            unreachable,
        }
    }

    /// The line to print when it differs from `prev`.
    pub fn line_since(&self, prev: Option<&CleanupSnapshot>) -> Option<String> {
        if prev == Some(self) {
            return None;
        }
        let drpc = match &self.drpc {
            Some((p, g)) => format!(
                "{:<12} {:<14}",
                if p.is_empty() { "-" } else { p },
                if g.is_empty() { "-" } else { g }
            ),
            None => format!("{:<12} {:<14}", "(deleted)", ""),
        };
        let vrgs: Vec<String> = self
            .vrgs
            .iter()
            // Padded to the longest state (Secondary) so the columns line up line after line.
            .map(|(c, v)| format!("VRG {c} {:<9}", v.word()))
            .collect();
        let mut line = format!(
            "{drpc} {}   placement {}",
            vrgs.join("   "),
            if self.placement { "present" } else { "gone" }
        );
        if !self.unreachable.is_empty() {
            line.push_str(&format!(
                "   (waiting for {} to come back)",
                self.unreachable.join(", ")
            ));
        }
        Some(line)
    }

    /// Done when the DRPC and the Placement are gone and no VRG remains. A DRPC that went
    /// while a VRG work was never deleted was not finalized by Ramen (is its hub operator
    /// running?). A VRG still deleting is not that: Ramen releases the DRPC once its views
    /// say the VRGs are gone, while the hub's finalizer may hold the work a moment longer,
    /// until the agent's confirmation lands.
    pub fn outcome(&self) -> Outcome {
        let all_gone = self.vrgs.values().all(|v| *v == VrgCleanup::Gone);
        let left: Vec<&str> = self
            .vrgs
            .iter()
            .filter(|(_, v)| matches!(v, VrgCleanup::Present(_)))
            .map(|(c, _)| c.as_str())
            .collect();
        match (&self.drpc, self.placement, all_gone) {
            (None, false, true) => Outcome::Done,
            (None, _, false) if !left.is_empty() => Outcome::Failed(format!(
                "the DRPlacementControl is gone but the VRG of {} remains: Ramen did not \
                     finalize it (is Ramen's hub operator running?)",
                left.join(", ")
            )),
            _ => Outcome::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{
        VolumeReplicationGroup, VolumeReplicationGroupSpec, VolumeReplicationGroupStatus,
    };

    fn found(state: &str) -> VrgEvidence {
        let mut v = VolumeReplicationGroup::new("app", VolumeReplicationGroupSpec::default());
        v.status = Some(VolumeReplicationGroupStatus {
            state: state.into(),
            ..Default::default()
        });
        VrgEvidence::Found {
            vrg: Box::new(v),
            stale_since: None,
        }
    }

    fn up() -> Connection {
        Connection {
            registered: true,
            available: "True".into(),
            ..Default::default()
        }
    }

    #[test]
    fn judges_each_vrg_from_work_and_view() {
        use WorkState::*;
        assert_eq!(
            VrgCleanup::judge(Present, &found("Primary")),
            VrgCleanup::Present("Primary".into())
        );
        assert_eq!(
            VrgCleanup::judge(Deleting, &found("Primary")),
            VrgCleanup::Deleting
        );
        assert_eq!(
            VrgCleanup::judge(Absent, &found("Secondary")),
            VrgCleanup::Deleting
        );
        assert_eq!(
            VrgCleanup::judge(Present, &VrgEvidence::Absent),
            VrgCleanup::Gone
        );
        assert_eq!(
            VrgCleanup::judge(Absent, &VrgEvidence::NoView),
            VrgCleanup::Gone
        );
        assert_eq!(
            VrgCleanup::judge(Present, &VrgEvidence::Pending),
            VrgCleanup::Unknown("view pending".into())
        );
    }

    #[test]
    fn done_only_when_everything_is_gone() {
        let mut clusters = BTreeMap::from([
            (
                "dr1".to_string(),
                (WorkState::Present, found("Primary"), up()),
            ),
            (
                "dr2".to_string(),
                (WorkState::Deleting, found("Secondary"), up()),
            ),
        ]);
        let deleting = Some(("Deleting".to_string(), "Deleting".to_string()));
        let a = CleanupSnapshot::new(deleting.clone(), true, &clusters);
        assert_eq!(a.outcome(), Outcome::Pending);
        let line = a.line_since(None).unwrap();
        assert_eq!(
            line,
            "Deleting     Deleting       VRG dr1 Primary     VRG dr2 deleting    placement present"
        );
        assert_eq!(a.line_since(Some(&a)), None);

        // dr1 lost meanwhile: the line says what Ramen waits for.
        clusters.get_mut("dr1").unwrap().2 = Connection::default();
        let b = CleanupSnapshot::new(deleting, true, &clusters);
        assert!(
            b.line_since(Some(&a))
                .unwrap()
                .ends_with("(waiting for dr1 to come back)")
        );

        for (w, v, _) in clusters.values_mut() {
            *w = WorkState::Absent;
            *v = VrgEvidence::NoView;
        }
        assert_eq!(
            CleanupSnapshot::new(None, true, &clusters).outcome(),
            Outcome::Pending,
            "the Placement is still there"
        );
        assert_eq!(
            CleanupSnapshot::new(None, false, &clusters).outcome(),
            Outcome::Done
        );
        // Ramen released the DRPC on its views while the hub still holds dr2's work for the
        // agent's confirmation: still deleting, not left behind.
        clusters.get_mut("dr2").unwrap().0 = WorkState::Deleting;
        let held = CleanupSnapshot::new(None, false, &clusters);
        assert_eq!(held.vrgs["dr2"], VrgCleanup::Deleting);
        assert_eq!(held.outcome(), Outcome::Pending);
        clusters.get_mut("dr2").unwrap().0 = WorkState::Absent;
        assert_eq!(
            CleanupSnapshot::new(None, false, &clusters).outcome(),
            Outcome::Done
        );
        // The DRPC went without Ramen: a VRG is left behind.
        clusters.get_mut("dr2").unwrap().0 = WorkState::Present;
        clusters.get_mut("dr2").unwrap().1 = found("Secondary");
        let c = CleanupSnapshot::new(None, false, &clusters);
        assert!(
            matches!(c.outcome(), Outcome::Failed(m) if m.contains("the VRG of dr2 remains")),
            "{:?}",
            c.outcome()
        );
    }
}
