//! The status of protected applications: one row per DRPC for `drbridge dr status`, with the
//! recovery point's health, and the detail of one DRPC.

use std::time::Duration;

use drbridge_api::cluster::{ClusterDecision, PlacementDecision as OcmPlacementDecision};
use drbridge_api::ramen::DECISION_REASON_RETAINED_FOR_FAILOVER;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde::Serialize;

use crate::connection::Connection;
use crate::consts::condition as ct;
use crate::explain::{self, Problem};
use crate::time::{age, human, parse_scheduling_interval};
use crate::types::{DRCluster, DRPlacementControl, DRPolicy};
use crate::view::VrgEvidence;

/// How old the last group sync is, against the DRPolicy's scheduling interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum RpoHealth {
    /// At most twice the interval: replication keeps up.
    Ok,
    /// More than twice the interval.
    Late,
    /// More than three times the interval: Ramen refuses a test failover (dry run) then.
    Stale,
    /// No sync has completed yet.
    NoSync,
    /// No asynchronous interval (synchronous replication, or the DRPolicy is unknown).
    NotApplicable,
}

impl RpoHealth {
    /// Judges the age of the last sync.
    pub fn judge(last_sync_age: Option<Duration>, interval: Option<Duration>) -> Self {
        let Some(interval) = interval else {
            return RpoHealth::NotApplicable;
        };
        let Some(age) = last_sync_age else {
            return RpoHealth::NoSync;
        };
        if age > 3 * interval {
            RpoHealth::Stale
        } else if age > 2 * interval {
            RpoHealth::Late
        } else {
            RpoHealth::Ok
        }
    }

    /// The word in the table.
    pub fn word(self) -> &'static str {
        match self {
            RpoHealth::Ok => "OK",
            RpoHealth::Late => "late",
            RpoHealth::Stale => "stale",
            RpoHealth::NoSync => "no sync",
            RpoHealth::NotApplicable => "-",
        }
    }
}

/// The decisions of a Placement's PlacementDecision (empty if there is none).
pub fn decisions(pd: Option<&OcmPlacementDecision>) -> Vec<ClusterDecision> {
    pd.and_then(|d| d.status.as_ref())
        .map(|s| s.decisions.clone())
        .unwrap_or_default()
}

/// The cluster the application runs on: the first decision that is not the old primary
/// Ramen retains during a failover (as Ramen's e2e reads it), else the DRPC's
/// `status.preferredDecision`.
pub fn current_cluster(decisions: &[ClusterDecision], drpc: &DRPlacementControl) -> Option<String> {
    let from_decision = decisions
        .iter()
        .find(|d| d.reason != DECISION_REASON_RETAINED_FOR_FAILOVER && !d.cluster_name.is_empty())
        .map(|d| d.cluster_name.clone());
    from_decision.or_else(|| {
        drpc.status
            .as_ref()
            .map(|s| s.preferred_decision.cluster_name.clone())
            .filter(|c| !c.is_empty())
    })
}

/// One row of `drbridge dr status`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusRow {
    pub namespace: String,
    pub name: String,
    pub policy: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// The target of the action (failoverCluster or preferredCluster).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    pub phase: String,
    pub progression: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_cluster: Option<String>,
    pub available: String,
    pub peer_ready: String,
    pub protected: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_group_sync_time: Option<Time>,
    /// Seconds since the last group sync.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_group_sync_age_seconds: Option<u64>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub scheduling_interval: String,
    pub rpo: RpoHealth,
}

impl StatusRow {
    /// Builds the row. `policy` is the DRPC's DRPolicy if it could be read.
    pub fn new(
        drpc: &DRPlacementControl,
        policy: Option<&DRPolicy>,
        current: Option<String>,
        now: Timestamp,
    ) -> Self {
        let status = drpc.status.clone().unwrap_or_default();
        let interval = policy
            .map(|p| p.spec.scheduling_interval.clone())
            .unwrap_or_default();
        let last_age = status.last_group_sync_time.as_ref().map(|t| age(now, t));
        let rpo = RpoHealth::judge(
            last_age,
            policy.and_then(|p| {
                parse_scheduling_interval(&p.spec.scheduling_interval)
                    .ok()
                    .flatten()
            }),
        );
        let action = drpc.spec.action;
        let target = action.map(|a| match a {
            crate::types::DRAction::Failover => drpc.spec.failover_cluster.clone(),
            crate::types::DRAction::Relocate => drpc.spec.preferred_cluster.clone(),
        });
        StatusRow {
            namespace: drpc.metadata.namespace.clone().unwrap_or_default(),
            name: drpc.metadata.name.clone().unwrap_or_default(),
            policy: drpc.spec.dr_policy_ref.name.clone().unwrap_or_default(),
            action: action.map(|a| a.as_str().to_string()),
            target,
            phase: status.phase.clone(),
            progression: status.progression.clone(),
            current_cluster: current,
            available: explain::status_of(&status.conditions, ct::AVAILABLE),
            peer_ready: explain::status_of(&status.conditions, ct::PEER_READY),
            protected: explain::status_of(&status.conditions, ct::PROTECTED),
            last_group_sync_time: status.last_group_sync_time.clone(),
            last_group_sync_age_seconds: last_age.map(|d| d.as_secs()),
            scheduling_interval: interval,
            rpo,
        }
    }

    /// The cells of the table row, in [`StatusRow::HEADERS`] order.
    pub fn cells(&self) -> Vec<String> {
        let dash = |s: &str| {
            if s.is_empty() {
                "-".to_string()
            } else {
                s.to_string()
            }
        };
        let last_sync = self
            .last_group_sync_age_seconds
            .map(|s| format!("{} ago", human(Duration::from_secs(s))))
            .unwrap_or_else(|| "-".into());
        let rpo = match self.rpo {
            RpoHealth::NotApplicable => "-".to_string(),
            h => format!("{} ({})", h.word(), self.scheduling_interval),
        };
        vec![
            self.namespace.clone(),
            self.name.clone(),
            dash(&self.phase),
            dash(&self.progression),
            self.current_cluster.clone().unwrap_or_else(|| "-".into()),
            self.available.clone(),
            self.peer_ready.clone(),
            self.protected.clone(),
            last_sync,
            rpo,
        ]
    }

    /// Column headers.
    pub const HEADERS: [&'static str; 10] = [
        "NAMESPACE",
        "NAME",
        "PHASE",
        "PROGRESSION",
        "CLUSTER",
        "AVAILABLE",
        "PEER-READY",
        "PROTECTED",
        "LAST-SYNC",
        "RPO",
    ];
}

/// A problem about the recovery point, if any.
pub fn rpo_problem(row: &StatusRow) -> Option<Problem> {
    let object = format!("DRPlacementControl {}/{}", row.namespace, row.name);
    let age = row
        .last_group_sync_age_seconds
        .map(|s| human(Duration::from_secs(s)))
        .unwrap_or_default();
    let text = match row.rpo {
        RpoHealth::Late => format!(
            "Replication is late: the last group sync was {age} ago, more than twice the {} interval.",
            row.scheduling_interval
        ),
        RpoHealth::Stale => format!(
            "Replication is stale: the last group sync was {age} ago, more than three times the {} \
             interval. A failover now loses {age} of writes; Ramen refuses a test failover (dry run).",
            row.scheduling_interval
        ),
        RpoHealth::NoSync
            if row.protected == "True" || row.phase == crate::consts::phase::DEPLOYED =>
        {
            "No group sync has completed yet: a failover now would have no recovery point."
                .to_string()
        }
        _ => return None,
    };
    Some(Problem {
        object,
        condition: String::new(),
        reason: String::new(),
        text,
    })
}

/// One cluster of a DRPC, in the detail view.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterDetail {
    pub name: String,
    /// `current` (the application runs there), `peer`, or `-`.
    pub role: String,
    pub connection: Connection,
    /// The DRCluster's phase and Validated status.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub drcluster_phase: String,
    pub drcluster_validated: String,
    pub vrg: VrgEvidence,
}

/// Everything `drbridge dr status NAME` shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Detail {
    #[serde(flatten)]
    pub row: StatusRow,
    /// The policy's clusters.
    pub policy_clusters: Vec<String>,
    pub preferred_cluster: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub failover_cluster: String,
    pub pvc_selector: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub protected_namespaces: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action_start_time: Option<Time>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action_duration: Option<String>,
    pub conditions: Vec<ConditionRow>,
    pub clusters: Vec<ClusterDetail>,
    pub problems: Vec<Problem>,
}

/// A condition, for display.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConditionRow {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    pub reason: String,
    pub message: String,
}

/// What the detail view is built from.
#[derive(Debug, Clone)]
pub struct DetailInput<'a> {
    pub drpc: &'a DRPlacementControl,
    pub policy: Option<&'a DRPolicy>,
    pub drclusters: &'a [DRCluster],
    pub current: Option<String>,
    /// Per policy cluster: connection and VRG.
    pub clusters: Vec<(String, Connection, VrgEvidence)>,
    pub now: Timestamp,
}

impl Detail {
    pub fn new(input: DetailInput<'_>) -> Self {
        let DetailInput {
            drpc,
            policy,
            drclusters,
            current,
            clusters,
            now,
        } = input;
        let row = StatusRow::new(drpc, policy, current.clone(), now);
        let status = drpc.status.clone().unwrap_or_default();
        let mut problems = Vec::new();
        if let Some(p) = policy {
            problems.extend(explain::drpolicy(p));
        } else {
            problems.push(Problem {
                object: format!("DRPolicy {}", row.policy),
                condition: String::new(),
                reason: String::new(),
                text: "It cannot be read (does it exist?).".into(),
            });
        }
        problems.extend(explain::drpc(drpc, current.as_deref()));
        problems.extend(rpo_problem(&row));
        let mut details = Vec::new();
        for (name, connection, vrg) in clusters {
            let dc = drclusters
                .iter()
                .find(|d| d.metadata.name.as_deref() == Some(name.as_str()));
            match dc {
                Some(dc) => problems.extend(explain::drcluster(dc)),
                None => problems.push(Problem {
                    object: format!("DRCluster {name}"),
                    condition: String::new(),
                    reason: String::new(),
                    text: "It does not exist. Create it with `drbridge dr cluster add`.".into(),
                }),
            }
            if !connection.is_connected() {
                problems.push(Problem {
                    object: format!("Cluster {name}"),
                    condition: String::new(),
                    reason: String::new(),
                    text: format!(
                        "The hub is not connected to it: {}. What the hub shows of it may be old; a \
                         relocate waits for it, a failover away from it does not.",
                        connection.describe(now)
                    ),
                });
            }
            match &vrg {
                VrgEvidence::Found { vrg: v, .. } => problems.extend(explain::vrg(&name, v)),
                VrgEvidence::Failed { message } => problems.push(Problem {
                    object: format!("VRG on {name}"),
                    condition: String::new(),
                    reason: String::new(),
                    text: format!("Its view failed: {message}"),
                }),
                _ => {}
            }
            let dc_status = dc.and_then(|d| d.status.clone()).unwrap_or_default();
            details.push(ClusterDetail {
                role: match &current {
                    Some(c) if *c == name => "current".into(),
                    Some(_) => "peer".into(),
                    None => "-".into(),
                },
                drcluster_phase: dc_status.phase.clone(),
                drcluster_validated: explain::status_of(&dc_status.conditions, ct::VALIDATED),
                name,
                connection,
                vrg,
            });
        }
        Detail {
            policy_clusters: policy
                .map(|p| p.spec.dr_clusters.clone())
                .unwrap_or_default(),
            preferred_cluster: drpc.spec.preferred_cluster.clone(),
            failover_cluster: drpc.spec.failover_cluster.clone(),
            pvc_selector: crate::selector::format(&drpc.spec.pvc_selector),
            protected_namespaces: drpc.spec.protected_namespaces.clone().unwrap_or_default(),
            action_start_time: status.action_start_time.clone(),
            action_duration: status.action_duration.clone(),
            conditions: status
                .conditions
                .iter()
                .map(|c| ConditionRow {
                    type_: c.type_.clone(),
                    status: c.status.clone(),
                    reason: c.reason.clone(),
                    message: c.message.clone(),
                })
                .collect(),
            clusters: details,
            problems,
            row,
        }
    }

    /// The human view.
    pub fn render(&self, now: Timestamp) -> String {
        use std::fmt::Write;
        let r = &self.row;
        let mut out = String::new();
        let dash = |s: &str| {
            if s.is_empty() {
                "-".to_string()
            } else {
                s.to_string()
            }
        };
        let _ = writeln!(out, "DRPlacementControl {}/{}", r.namespace, r.name);
        let _ = writeln!(
            out,
            "  Policy:       {} ({}; every {})",
            r.policy,
            if self.policy_clusters.is_empty() {
                "?".to_string()
            } else {
                self.policy_clusters.join(" <-> ")
            },
            dash(&r.scheduling_interval)
        );
        let _ = writeln!(
            out,
            "  Protects:     PVCs {}{}",
            self.pvc_selector,
            match self.protected_namespaces.as_slice() {
                [] => String::new(),
                ns => format!(" in {}", ns.join(", ")),
            }
        );
        let _ = writeln!(out, "  Preferred:    {}", dash(&self.preferred_cluster));
        let _ = writeln!(
            out,
            "  Running on:   {}",
            r.current_cluster.clone().unwrap_or_else(|| "-".into())
        );
        let action = match (&r.action, &r.target) {
            (Some(a), Some(t)) => {
                let mut s = format!("{a} to {t}");
                if let Some(start) = &self.action_start_time {
                    let _ = write!(s, ", started {}", crate::time::when(now, start));
                }
                if let Some(d) = &self.action_duration {
                    let _ = write!(s, ", took {d}");
                }
                s
            }
            _ => "none".into(),
        };
        let _ = writeln!(out, "  Action:       {action}");
        let _ = writeln!(
            out,
            "  Phase:        {} / {}",
            dash(&r.phase),
            dash(&r.progression)
        );
        let last_sync = match &r.last_group_sync_time {
            Some(t) => format!(
                "{} - {}",
                crate::time::when(now, t),
                match r.rpo {
                    RpoHealth::NotApplicable => "no interval".to_string(),
                    h => format!(
                        "{} against the {} interval",
                        h.word(),
                        r.scheduling_interval
                    ),
                }
            ),
            None => "none yet".into(),
        };
        let _ = writeln!(out, "  Last sync:    {last_sync}");
        let _ = writeln!(out, "\nConditions:");
        let mut t = crate::table::Table::new(["TYPE", "STATUS", "REASON", "MESSAGE"]);
        for c in &self.conditions {
            t.row([
                c.type_.clone(),
                c.status.clone(),
                c.reason.clone(),
                c.message.clone(),
            ]);
        }
        if self.conditions.is_empty() {
            let _ = writeln!(out, "  none reported");
        } else {
            out.push_str(&t.render_indented(2));
        }
        let _ = writeln!(out, "\nClusters:");
        let mut t = crate::table::Table::new([
            "CLUSTER",
            "ROLE",
            "CONNECTION",
            "DRCLUSTER",
            "VRG",
            "DATA-READY",
            "DATA-PROTECTED",
            "CLUSTER-DATA-PROTECTED",
            "LAST-SYNC",
        ]);
        for c in &self.clusters {
            let vrg_status = c
                .vrg
                .vrg()
                .and_then(|v| v.status.clone())
                .unwrap_or_default();
            let cond = |ty: &str| {
                if c.vrg.vrg().is_some() {
                    explain::status_of(&vrg_status.conditions, ty)
                } else {
                    "-".into()
                }
            };
            let dc = match (c.drcluster_phase.as_str(), c.drcluster_validated.as_str()) {
                ("", "-") => "-".to_string(),
                ("", v) => format!("Validated={v}"),
                (p, v) => format!("{p}, Validated={v}"),
            };
            t.row([
                c.name.clone(),
                c.role.clone(),
                c.connection.short(now),
                dc,
                c.vrg.summary(),
                cond(ct::DATA_READY),
                cond(ct::DATA_PROTECTED),
                cond(ct::CLUSTER_DATA_PROTECTED),
                vrg_status
                    .last_group_sync_time
                    .as_ref()
                    .map(|t| format!("{} ago", human(age(now, t))))
                    .unwrap_or_else(|| "-".into()),
            ]);
        }
        out.push_str(&t.render_indented(2));
        let _ = writeln!(out, "\nProblems:");
        if self.problems.is_empty() {
            let _ = writeln!(out, "  none");
        }
        for p in &self.problems {
            let _ = writeln!(out, "  - {p}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{DRPlacementControlSpec, DRPlacementControlStatus, DRPolicySpec};
    use drbridge_api::cluster::PlacementDecisionStatus;

    fn at(s: &str) -> Time {
        crate::time::parse_time(s).unwrap()
    }

    fn policy(interval: &str) -> DRPolicy {
        DRPolicy::new(
            "p",
            DRPolicySpec {
                scheduling_interval: interval.into(),
                dr_clusters: vec!["dr1".into(), "dr2".into()],
                ..Default::default()
            },
        )
    }

    #[test]
    fn rpo_thresholds_follow_ramen() {
        let m = |s| Some(Duration::from_secs(s));
        assert_eq!(RpoHealth::judge(m(600), m(300)), RpoHealth::Ok);
        assert_eq!(RpoHealth::judge(m(601), m(300)), RpoHealth::Late);
        assert_eq!(RpoHealth::judge(m(900), m(300)), RpoHealth::Late);
        assert_eq!(RpoHealth::judge(m(901), m(300)), RpoHealth::Stale);
        assert_eq!(RpoHealth::judge(None, m(300)), RpoHealth::NoSync);
        assert_eq!(RpoHealth::judge(m(10_000), None), RpoHealth::NotApplicable);
    }

    #[test]
    fn current_cluster_skips_the_retained_primary() {
        let drpc = DRPlacementControl::new("app", DRPlacementControlSpec::default());
        let mut pd = OcmPlacementDecision::new("app-decision-1", Default::default());
        pd.status = Some(PlacementDecisionStatus {
            decisions: vec![
                ClusterDecision {
                    cluster_name: "dr1".into(),
                    reason: "RetainedForFailover".into(),
                },
                ClusterDecision {
                    cluster_name: "dr2".into(),
                    reason: "dr2".into(),
                },
            ],
        });
        assert_eq!(
            current_cluster(&decisions(Some(&pd)), &drpc).as_deref(),
            Some("dr2")
        );
        let mut drpc2 = drpc.clone();
        drpc2.status = Some(DRPlacementControlStatus {
            preferred_decision: crate::types::PlacementDecision {
                cluster_name: "dr1".into(),
                cluster_namespace: "dr1".into(),
            },
            ..Default::default()
        });
        assert_eq!(current_cluster(&[], &drpc2).as_deref(), Some("dr1"));
        assert_eq!(current_cluster(&decisions(None), &drpc), None);
    }

    #[test]
    fn row_cells_and_rpo() {
        let now: Timestamp = "2026-11-27T10:20:00Z".parse().unwrap();
        let mut drpc = DRPlacementControl::new("app", DRPlacementControlSpec::default());
        drpc.metadata.namespace = Some("ramen-ops".into());
        drpc.spec.dr_policy_ref.name = Some("p".into());
        drpc.status = Some(DRPlacementControlStatus {
            phase: "Deployed".into(),
            progression: "Completed".into(),
            last_group_sync_time: Some(at("2026-11-27T10:08:00Z")),
            conditions: vec![crate::explain::tests::cond(
                "Available",
                "True",
                "Deployed",
                "",
            )],
            ..Default::default()
        });
        let row = StatusRow::new(&drpc, Some(&policy("5m")), Some("dr1".into()), now);
        assert_eq!(row.rpo, RpoHealth::Late);
        assert_eq!(
            row.cells(),
            [
                "ramen-ops",
                "app",
                "Deployed",
                "Completed",
                "dr1",
                "True",
                "-",
                "-",
                "12m ago",
                "late (5m)"
            ]
        );
        let p = rpo_problem(&row).unwrap();
        assert!(
            p.text
                .starts_with("Replication is late: the last group sync was 12m ago")
        );
        let row = StatusRow::new(&drpc, Some(&policy("1m")), Some("dr1".into()), now);
        assert_eq!(row.rpo, RpoHealth::Stale);
        let row = StatusRow::new(&drpc, None, None, now);
        assert_eq!(row.rpo, RpoHealth::NotApplicable);
        assert_eq!(row.cells()[9], "-");
    }
}
