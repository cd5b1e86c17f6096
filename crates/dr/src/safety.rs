//! Checks before `drbridge dr failover|relocate|clear|disable` changes a DRPC, from what the hub shows.
//!
//! Ramen checks again when it acts; these checks exist so that a user does not start an
//! action Ramen would refuse or stall on (or one that loses data needlessly) without being
//! told. Each refusal says whether `--force` may override it: the ones that are not
//! forceable name requests Ramen can never carry out.

use std::collections::BTreeMap;

use k8s_openapi::jiff::Timestamp;
use serde::Serialize;

use crate::connection::Connection;
use crate::consts::{condition as ct, phase, progression, vrg_state};
use crate::explain::find;
use crate::types::{DRAction, DRPlacementControl, DRPolicy};
use crate::view::VrgEvidence;

/// What the checks look at.
#[derive(Debug, Clone)]
pub struct Situation<'a> {
    pub drpc: &'a DRPlacementControl,
    /// The DRPC's DRPolicy, if it could be read.
    pub policy: Option<&'a DRPolicy>,
    /// Where the application runs now ([`crate::status::current_cluster`]).
    pub current: Option<String>,
    /// The VRG on each cluster, as the hub's views show it.
    pub vrgs: BTreeMap<String, VrgEvidence>,
    /// The hub's connection to each cluster.
    pub connections: BTreeMap<String, Connection>,
    pub now: Timestamp,
}

/// A reason not to go ahead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Refusal {
    pub text: String,
    /// `--force` overrides it.
    pub forceable: bool,
}

/// The outcome of the checks: what would be done, and why not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// `Fail over ramen-ops/app from dr1 to dr2`.
    pub summary: String,
    /// Where the application runs before the action, if known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The DRPC already asks for exactly this: nothing to change.
    pub already_requested: bool,
    pub refusals: Vec<Refusal>,
    /// What the user should know before confirming (data loss, downtime, ...).
    pub notes: Vec<String>,
}

impl Plan {
    fn new(summary: String, from: Option<String>) -> Self {
        Plan {
            summary,
            from,
            already_requested: false,
            refusals: vec![],
            notes: vec![],
        }
    }

    fn refuse(&mut self, text: impl Into<String>) {
        self.refusals.push(Refusal {
            text: text.into(),
            forceable: true,
        });
    }

    fn refuse_hard(&mut self, text: impl Into<String>) {
        self.refusals.push(Refusal {
            text: text.into(),
            forceable: false,
        });
    }

    /// The refusals that stop the action with or without `--force`.
    pub fn blocking(&self, force: bool) -> Vec<&Refusal> {
        self.refusals
            .iter()
            .filter(|r| !force || !r.forceable)
            .collect()
    }

    /// The error text for a refused action.
    pub fn refusal_message(&self, force: bool) -> String {
        let blocking = self.blocking(force);
        let mut s = format!("refusing to {}:", lower_first(&self.summary));
        for r in &blocking {
            s.push_str("\n  - ");
            s.push_str(&r.text);
        }
        if blocking.iter().all(|r| r.forceable) {
            s.push_str(
                "\nIf you are sure (for example the checks read stale state), repeat with --force.",
            );
        } else if blocking.iter().any(|r| r.forceable) {
            s.push_str("\n--force cannot override every reason above.");
        } else {
            s.push_str("\n--force cannot override this: Ramen cannot carry out such a request.");
        }
        s
    }

    /// The confirmation question, with the notes.
    pub fn question(&self, force: bool) -> String {
        let mut s = format!("{}?", self.summary);
        for n in &self.notes {
            s.push_str("\n  ");
            s.push_str(n);
        }
        if force {
            for r in self.refusals.iter().filter(|r| r.forceable) {
                s.push_str("\n  OVERRIDDEN by --force: ");
                s.push_str(&r.text);
            }
        }
        s
    }
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

fn qualified(d: &DRPlacementControl) -> String {
    format!(
        "{}/{}",
        d.metadata.namespace.clone().unwrap_or_default(),
        d.metadata.name.clone().unwrap_or_default()
    )
}

fn common(s: &Situation<'_>, target: &str, plan: &mut Plan) {
    let d = s.drpc;
    let status = d.status.clone().unwrap_or_default();
    if d.metadata.deletion_timestamp.is_some() || status.phase == phase::DELETING {
        plan.refuse_hard("it is being deleted");
    }
    let policy_name = d.spec.dr_policy_ref.name.clone().unwrap_or_default();
    match s.policy {
        None => plan.refuse(format!(
            "its DRPolicy {policy_name} cannot be read, so drbridge cannot check that {target} is one of its clusters"
        )),
        Some(p) if !p.spec.dr_clusters.iter().any(|c| c == target) => plan.refuse_hard(format!(
            "{target} is not a cluster of its DRPolicy {policy_name} ({})",
            p.spec.dr_clusters.join(", ")
        )),
        Some(_) => {}
    }
}

fn action_in_progress(d: &DRPlacementControl) -> Option<String> {
    let action = d.spec.action?;
    let status = d.status.clone().unwrap_or_default();
    if status.progression == progression::COMPLETED {
        return None;
    }
    let target = match action {
        DRAction::Failover => &d.spec.failover_cluster,
        DRAction::Relocate => &d.spec.preferred_cluster,
    };
    Some(format!(
        "a {} to {target} is in progress (phase {}, progression {}); wait for it to complete",
        action.verb(),
        dash(&status.phase),
        dash(&status.progression)
    ))
}

fn dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

fn peer_ready(s: &Situation<'_>, plan: &mut Plan, consequence: &str) {
    let conds = s
        .drpc
        .status
        .as_ref()
        .map(|st| st.conditions.as_slice())
        .unwrap_or_default();
    match find(conds, ct::PEER_READY) {
        Some(c) if c.status == "True" => {}
        Some(c) => plan.refuse(format!(
            "PeerReady is {} ({}: {}): {consequence}",
            c.status,
            c.reason,
            c.message.trim_end_matches('.')
        )),
        None => plan.refuse(format!(
            "Ramen has not reported PeerReady yet: {consequence}"
        )),
    }
}

fn data_loss_note(s: &Situation<'_>, from: &str, plan: &mut Plan) {
    let status = s.drpc.status.clone().unwrap_or_default();
    match &status.last_group_sync_time {
        Some(t) => plan.notes.push(format!(
            "Writes on {from} after the last group sync, {}, are lost.",
            crate::time::when(s.now, t)
        )),
        None => plan.notes.push(format!(
            "No group sync has completed: the application's data on {from} may not have reached the peer at all."
        )),
    }
}

/// A note when replication lags more than three times the interval (Ramen's own lag
/// threshold, `isGroupSyncLagging`): the loss is larger than the policy promises.
fn lagging_note(s: &Situation<'_>, plan: &mut Plan) {
    let Some(p) = s.policy else { return };
    let status = s.drpc.status.clone().unwrap_or_default();
    let Some(t) = &status.last_group_sync_time else {
        return;
    };
    let interval = crate::time::parse_scheduling_interval(&p.spec.scheduling_interval)
        .ok()
        .flatten();
    let age = crate::time::age(s.now, t);
    if crate::status::RpoHealth::judge(Some(age), interval) == crate::status::RpoHealth::Stale {
        plan.notes.push(format!(
            "Replication is behind: the last group sync is {} old, more than three times the {} \
             interval, so more is lost than the policy promises.",
            crate::time::human(age),
            p.spec.scheduling_interval
        ));
    }
}

/// Refuses a target whose VRG is not an established secondary (Ramen's
/// `isValidFailoverTarget`): no VRG, a state other than Secondary (or Primary), or status
/// for an older spec. `acts` completes "Ramen ... only to a cluster whose VRG is Secondary".
fn established_secondary(s: &Situation<'_>, target: &str, plan: &mut Plan, acts: &str) {
    match s.vrgs.get(target).unwrap_or(&VrgEvidence::NoView) {
        VrgEvidence::Found { vrg, stale_since } => {
            let st = vrg.status.clone().unwrap_or_default();
            let current_gen = vrg
                .metadata
                .generation
                .is_none_or(|g| st.observed_generation == g);
            if st.state == vrg_state::PRIMARY {
                plan.notes
                    .push(format!("The VRG on {target} is already Primary."));
            } else if st.state != vrg_state::SECONDARY || !current_gen {
                let mut why = format!("its VRG reports state {}", dash(&st.state));
                if !current_gen {
                    why.push_str(" for an older spec");
                }
                plan.refuse(format!(
                    "{target} is not an established secondary: {why}; Ramen {acts} only to a \
                     cluster whose VRG is Secondary"
                ));
            }
            if let Some(t) = stale_since {
                plan.notes.push(format!(
                    "The VRG on {target} is shown as of {}, when the hub last heard from {target}.",
                    crate::time::rfc3339(t)
                ));
            }
        }
        VrgEvidence::Absent => plan.refuse(format!(
            "{target} is not an established secondary: it has no VRG for the application, so it \
             holds no replica to start the application from"
        )),
        other => plan.notes.push(format!(
            "drbridge cannot see the VRG on {target} ({}); Ramen checks it before it starts.",
            other.summary()
        )),
    }
}

/// Checks a failover of the DRPC to `target`.
pub fn failover(s: &Situation<'_>, target: &str) -> Plan {
    let d = s.drpc;
    let from = s.current.clone().unwrap_or_else(|| "?".into());
    let mut plan = Plan::new(
        format!("Fail over {} from {from} to {target}", qualified(d)),
        s.current.clone(),
    );
    common(s, target, &mut plan);
    if d.spec.action == Some(DRAction::Failover) && d.spec.failover_cluster == target {
        plan.already_requested = true;
        plan.notes.push(format!(
            "A failover to {target} is already requested; nothing changes."
        ));
        return plan;
    }
    if let Some(p) = action_in_progress(d) {
        plan.refuse(p);
    }
    if s.current.as_deref() == Some(target) {
        plan.refuse(format!("the application already runs on {target}"));
    }
    established_secondary(s, target, &mut plan, "fails over");
    peer_ready(
        s,
        &mut plan,
        "Ramen has not finished protecting the application on its peer, so the failover may find no replica",
    );
    if let Some(c) = s.connections.get(target)
        && !c.is_connected()
    {
        plan.refuse(format!(
            "{target} is {}: Ramen cannot restore the application there until it is back",
            c.describe(s.now)
        ));
    }
    data_loss_note(s, &from, &mut plan);
    lagging_note(s, &mut plan);
    if let Some(c) = s.current.as_ref().and_then(|c| s.connections.get(c)) {
        if c.is_connected() {
            plan.notes.push(format!(
                "{from} is connected: `drbridge dr relocate` would move the application without data loss."
            ));
        } else {
            plan.notes.push(format!("{from} is {}.", c.describe(s.now)));
        }
    }
    plan
}

/// Checks a relocation of the DRPC to `target`.
pub fn relocate(s: &Situation<'_>, target: &str) -> Plan {
    let d = s.drpc;
    let from = s.current.clone().unwrap_or_else(|| "?".into());
    let mut plan = Plan::new(
        format!("Relocate {} from {from} to {target}", qualified(d)),
        s.current.clone(),
    );
    common(s, target, &mut plan);
    if d.spec.action == Some(DRAction::Relocate) && d.spec.preferred_cluster == target {
        plan.already_requested = true;
        plan.notes.push(format!(
            "A relocation to {target} is already requested; nothing changes."
        ));
        return plan;
    }
    if let Some(p) = action_in_progress(d) {
        plan.refuse(p);
    }
    if s.current.as_deref() == Some(target) {
        plan.refuse(format!("the application already runs on {target}"));
    }
    established_secondary(s, target, &mut plan, "relocates");
    peer_ready(
        s,
        &mut plan,
        "the peer is not ready to take the application over",
    );
    let status = d.status.clone().unwrap_or_default();
    if let Some(c) = find(&status.conditions, ct::PROTECTED)
        && c.status != "True"
    {
        plan.refuse(format!(
            "the application is not protected (Protected={}, {}: {})",
            c.status,
            c.reason,
            c.message.trim_end_matches('.')
        ));
    }
    let vrg_conds = &status.resource_conditions.conditions;
    if !status.resource_conditions.resource_meta.name.is_empty()
        && let Some(c) = find(vrg_conds, ct::CLUSTER_DATA_PROTECTED)
        && c.status != "True"
    {
        plan.refuse(format!(
            "the VRG on {from} has not uploaded its cluster data to S3 (ClusterDataProtected={}: {}); \
             Ramen would not stop the application there",
            c.status,
            c.message.trim_end_matches('.')
        ));
    }
    let clusters: Vec<String> = s
        .policy
        .map(|p| p.spec.dr_clusters.clone())
        .unwrap_or_else(|| s.connections.keys().cloned().collect());
    for c in clusters {
        if let Some(conn) = s.connections.get(&c)
            && !conn.is_connected()
        {
            plan.refuse(format!(
                "{c} is {}: a relocate needs both clusters (fail over if {c} is lost)",
                conn.describe(s.now)
            ));
        }
    }
    plan.notes.push(format!(
        "The application stops on {from}, its volumes get a final sync, and it starts on {target}: \
         no data is lost, but it is down in between."
    ));
    if d.spec.protected_namespaces.is_some() {
        plan.notes.push(format!(
            "Ramen then waits for you to delete the application's resources on {from} (progression {}).",
            progression::WAIT_ON_USER_TO_CLEAN_UP
        ));
    }
    plan
}

/// Checks clearing the DRPC's action. Clearing also resets `spec.failoverCluster`: a target
/// left over from a finished failover would otherwise be the default of the next one.
pub fn clear(s: &Situation<'_>) -> Plan {
    let d = s.drpc;
    let leftover = (!d.spec.failover_cluster.is_empty()).then(|| d.spec.failover_cluster.clone());
    let Some(action) = d.spec.action else {
        let mut plan = Plan::new(
            format!("Clear the action of {}", qualified(d)),
            s.current.clone(),
        );
        match leftover {
            None => {
                plan.already_requested = true;
                plan.notes.push("It has no action; nothing changes.".into());
            }
            Some(c) => plan.notes.push(format!(
                "It has no action; its leftover failoverCluster {c} is reset."
            )),
        }
        return plan;
    };
    let mut plan = Plan::new(
        format!("Clear the {} action of {}", action.as_str(), qualified(d)),
        s.current.clone(),
    );
    if d.metadata.deletion_timestamp.is_some() {
        plan.refuse_hard("it is being deleted");
    }
    if let Some(p) = action_in_progress(d) {
        plan.refuse(format!("{p}; clearing now leaves the action half done"));
    }
    let on = s.current.clone().unwrap_or_else(|| "?".into());
    plan.notes.push(format!(
        "The application stays on {on}; Ramen keeps it protected there."
    ));
    if let Some(c) = leftover {
        plan.notes
            .push(format!("spec.failoverCluster ({c}) is reset too."));
    }
    plan
}

/// Checks removing the protection of an application (`drbridge dr disable`): deleting its
/// DRPC and Placement. Ramen then deletes the VRGs (the secondary's first) and its views; the
/// application and its PVCs stay where they run.
pub fn disable(s: &Situation<'_>) -> Plan {
    let d = s.drpc;
    let on = s.current.clone().unwrap_or_else(|| "?".into());
    let mut plan = Plan::new(
        format!("Remove the protection of {}", qualified(d)),
        s.current.clone(),
    );
    let status = d.status.clone().unwrap_or_default();
    if d.metadata.deletion_timestamp.is_some() {
        plan.already_requested = true;
        plan.notes.push(format!(
            "Its deletion is underway (phase {}, progression {}); nothing changes.",
            dash(&status.phase),
            dash(&status.progression)
        ));
        return plan;
    }
    if let Some(p) = action_in_progress(d) {
        plan.refuse(format!(
            "{p}; removing protection now leaves the application wherever the action stopped"
        ));
    }
    let clusters: Vec<String> = s
        .policy
        .map(|p| p.spec.dr_clusters.clone())
        .unwrap_or_else(|| s.connections.keys().cloned().collect());
    for c in &clusters {
        if let Some(conn) = s.connections.get(c)
            && !conn.is_connected()
        {
            plan.refuse(format!(
                "{c} is {}: Ramen deletes the VRG there only once it is back, so the protection \
                 stays half removed (phase Deleting) until then",
                conn.describe(s.now)
            ));
        }
    }
    plan.notes.push(format!(
        "The application and its PVCs stay on {on}; only Ramen's VRGs go (the peer's first), \
         and replication stops: there is no recovery point afterwards."
    ));
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{
        DRPlacementControlSpec, DRPlacementControlStatus, DRPolicySpec, VolumeReplicationGroup,
        VolumeReplicationGroupSpec, VolumeReplicationGroupStatus,
    };
    use drbridge_api::cluster::{ManagedCluster, ManagedClusterStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

    fn cond(type_: &str, status: &str) -> Condition {
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: if status == "True" {
                "Success"
            } else {
                "NotStarted"
            }
            .into(),
            message: "msg".into(),
            last_transition_time: Time(Default::default()),
            observed_generation: None,
        }
    }

    fn drpc() -> DRPlacementControl {
        let mut d = DRPlacementControl::new(
            "app",
            DRPlacementControlSpec {
                preferred_cluster: "dr1".into(),
                protected_namespaces: Some(vec!["app".into()]),
                ..Default::default()
            },
        );
        d.metadata.namespace = Some("ramen-ops".into());
        d.spec.dr_policy_ref.name = Some("p".into());
        d.status = Some(DRPlacementControlStatus {
            phase: "Deployed".into(),
            progression: "Completed".into(),
            conditions: vec![
                cond("Available", "True"),
                cond("PeerReady", "True"),
                cond("Protected", "True"),
            ],
            last_group_sync_time: crate::time::parse_time("2026-11-27T09:58:00Z"),
            ..Default::default()
        });
        d
    }

    fn policy() -> DRPolicy {
        DRPolicy::new(
            "p",
            DRPolicySpec {
                scheduling_interval: "1m".into(),
                dr_clusters: vec!["dr1".into(), "dr2".into()],
                ..Default::default()
            },
        )
    }

    fn vrg(state: &str) -> VrgEvidence {
        let mut v = VolumeReplicationGroup::new("app", VolumeReplicationGroupSpec::default());
        v.metadata.generation = Some(3);
        v.status = Some(VolumeReplicationGroupStatus {
            state: state.into(),
            observed_generation: 3,
            ..Default::default()
        });
        VrgEvidence::Found {
            vrg: Box::new(v),
            stale_since: None,
        }
    }

    fn connected(available: &str) -> Connection {
        let mut mc = ManagedCluster::new("x", Default::default());
        mc.status = Some(ManagedClusterStatus {
            conditions: vec![Condition {
                type_: "ManagedClusterConditionAvailable".into(),
                ..cond("x", available)
            }],
            ..Default::default()
        });
        Connection::new(Some(&mc), None)
    }

    fn situation<'a>(d: &'a DRPlacementControl, p: &'a DRPolicy) -> Situation<'a> {
        Situation {
            drpc: d,
            policy: Some(p),
            current: Some("dr1".into()),
            vrgs: BTreeMap::from([
                ("dr1".into(), vrg("Primary")),
                ("dr2".into(), vrg("Secondary")),
            ]),
            connections: BTreeMap::from([
                ("dr1".into(), connected("True")),
                ("dr2".into(), connected("True")),
            ]),
            now: "2026-11-27T10:00:00Z".parse().unwrap(),
        }
    }

    #[test]
    fn failover_to_the_established_secondary_is_allowed() {
        let (d, p) = (drpc(), policy());
        let plan = failover(&situation(&d, &p), "dr2");
        assert!(plan.refusals.is_empty(), "{plan:?}");
        assert_eq!(plan.summary, "Fail over ramen-ops/app from dr1 to dr2");
        assert!(
            plan.notes[0]
                .contains("after the last group sync, 2026-11-27T09:58:00Z (2m ago), are lost"),
            "{:?}",
            plan.notes
        );
        assert!(plan.notes[1].contains("relocate"));
        // Replication far behind (4m against a 1m interval): said, not refused.
        let mut d2 = drpc();
        d2.status.as_mut().unwrap().last_group_sync_time =
            crate::time::parse_time("2026-11-27T09:56:00Z");
        let plan = failover(&situation(&d2, &p), "dr2");
        assert!(plan.refusals.is_empty());
        assert!(
            plan.notes.iter().any(|n| n.starts_with(
                "Replication is behind: the last group sync is 4m old, more than three times the 1m interval"
            )),
            "{:?}",
            plan.notes
        );
    }

    #[test]
    fn failover_refusals() {
        let (d, p) = (drpc(), policy());
        // Not in the policy: never.
        let plan = failover(&situation(&d, &p), "dr3");
        assert_eq!(plan.blocking(true).len(), 1);
        let msg = plan.refusal_message(true);
        assert!(
            msg.contains("dr3 is not a cluster of its DRPolicy p (dr1, dr2)"),
            "{msg}"
        );
        assert!(
            msg.ends_with("--force cannot override this: Ramen cannot carry out such a request."),
            "{msg}"
        );
        // The current cluster.
        let plan = failover(&situation(&d, &p), "dr1");
        assert!(
            plan.refusals
                .iter()
                .any(|r| r.text.contains("already runs on dr1"))
        );
        // Not the established secondary.
        let mut s = situation(&d, &p);
        s.vrgs.insert("dr2".into(), VrgEvidence::Absent);
        let plan = failover(&s, "dr2");
        assert_eq!(plan.blocking(false).len(), 1);
        assert!(plan.blocking(true).is_empty());
        assert!(
            plan.refusals[0]
                .text
                .starts_with("dr2 is not an established secondary")
        );
        s.vrgs.insert("dr2".into(), vrg("Unknown"));
        assert!(
            failover(&s, "dr2").refusals[0]
                .text
                .contains("state Unknown")
        );
        // PeerReady False.
        let mut d2 = drpc();
        d2.status.as_mut().unwrap().conditions[1] = cond("PeerReady", "False");
        let plan = failover(&situation(&d2, &p), "dr2");
        assert_eq!(plan.refusals.len(), 1);
        assert!(
            plan.refusals[0]
                .text
                .starts_with("PeerReady is False (NotStarted: msg)")
        );
        let msg = plan.refusal_message(false);
        assert!(
            msg.starts_with("refusing to fail over ramen-ops/app from dr1 to dr2:\n  - PeerReady"),
            "{msg}"
        );
        assert!(msg.ends_with("repeat with --force."), "{msg}");
        assert!(
            plan.question(true)
                .contains("OVERRIDDEN by --force: PeerReady is False")
        );
    }

    #[test]
    fn failover_of_a_lost_primary_is_allowed_and_says_so() {
        let (d, p) = (drpc(), policy());
        let mut s = situation(&d, &p);
        s.connections.insert(
            "dr1".into(),
            Connection {
                unreachable_since: crate::time::parse_time("2026-11-27T09:59:00Z"),
                ..connected("Unknown")
            },
        );
        let plan = failover(&s, "dr2");
        assert!(plan.refusals.is_empty(), "{plan:?}");
        assert!(
            plan.notes
                .iter()
                .any(|n| n.starts_with("dr1 is unreachable since"))
        );
    }

    #[test]
    fn repeating_a_requested_action_changes_nothing() {
        let (mut d, p) = (drpc(), policy());
        d.spec.action = Some(DRAction::Failover);
        d.spec.failover_cluster = "dr2".into();
        d.status.as_mut().unwrap().progression = "FailingOverToCluster".into();
        let plan = failover(&situation(&d, &p), "dr2");
        assert!(plan.already_requested && plan.refusals.is_empty());
        // Another action while it runs is refused.
        let plan = relocate(&situation(&d, &p), "dr2");
        assert!(
            plan.refusals
                .iter()
                .any(|r| r.text.starts_with("a failover to dr2 is in progress"))
        );
    }

    #[test]
    fn relocate_needs_both_clusters_and_protection() {
        let (mut d, p) = (drpc(), policy());
        d.spec.action = Some(DRAction::Failover);
        d.spec.failover_cluster = "dr2".into();
        d.status.as_mut().unwrap().phase = "FailedOver".into();
        let mut s = situation(&d, &p);
        s.current = Some("dr2".into());
        let plan = relocate(&s, "dr1");
        assert!(plan.refusals.is_empty(), "{plan:?}");
        assert!(plan.notes.iter().any(|n| n.contains("WaitOnUserToCleanUp")));
        s.connections.insert("dr1".into(), connected("Unknown"));
        let plan = relocate(&s, "dr1");
        assert_eq!(plan.refusals.len(), 1);
        assert!(
            plan.refusals[0]
                .text
                .contains("a relocate needs both clusters")
        );

        // The target holds no replica.
        s.connections.insert("dr1".into(), connected("True"));
        s.vrgs.insert("dr1".into(), VrgEvidence::Absent);
        let plan = relocate(&s, "dr1");
        assert_eq!(plan.refusals.len(), 1, "{plan:?}");
        assert!(
            plan.refusals[0]
                .text
                .starts_with("dr1 is not an established secondary: it has no VRG"),
            "{plan:?}"
        );

        let mut d2 = d.clone();
        d2.status.as_mut().unwrap().conditions[2] = cond("Protected", "False");
        let mut s = situation(&d2, &p);
        s.current = Some("dr2".into());
        assert!(
            relocate(&s, "dr1").refusals[0]
                .text
                .starts_with("the application is not protected")
        );
    }

    #[test]
    fn clear_waits_for_completion() {
        let (mut d, p) = (drpc(), policy());
        assert!(clear(&situation(&d, &p)).already_requested);
        d.spec.action = Some(DRAction::Relocate);
        d.status.as_mut().unwrap().progression = "WaitOnUserToCleanUp".into();
        let plan = clear(&situation(&d, &p));
        assert_eq!(plan.refusals.len(), 1);
        d.status.as_mut().unwrap().progression = "Completed".into();
        assert!(clear(&situation(&d, &p)).refusals.is_empty());
    }

    #[test]
    fn clear_resets_a_leftover_failover_cluster() {
        let (mut d, p) = (drpc(), policy());
        d.spec.action = Some(DRAction::Failover);
        d.spec.failover_cluster = "dr2".into();
        let mut s = situation(&d, &p);
        s.current = Some("dr2".into());
        let plan = clear(&s);
        assert!(plan.refusals.is_empty() && !plan.already_requested);
        assert_eq!(plan.summary, "Clear the Failover action of ramen-ops/app");
        assert!(
            plan.notes
                .iter()
                .any(|n| n == "spec.failoverCluster (dr2) is reset too."),
            "{:?}",
            plan.notes
        );
        // The action is gone but the target stayed: clearing still has work to do.
        let mut d2 = d.clone();
        d2.spec.action = None;
        let plan = clear(&situation(&d2, &p));
        assert!(!plan.already_requested);
        assert_eq!(
            plan.notes,
            ["It has no action; its leftover failoverCluster dr2 is reset."]
        );
    }

    #[test]
    fn disable_keeps_the_application_and_waits_for_both_clusters() {
        let (mut d, p) = (drpc(), policy());
        let plan = disable(&situation(&d, &p));
        assert!(plan.refusals.is_empty(), "{plan:?}");
        assert_eq!(plan.summary, "Remove the protection of ramen-ops/app");
        assert!(
            plan.notes[0].starts_with("The application and its PVCs stay on dr1"),
            "{:?}",
            plan.notes
        );
        // A lost cluster: Ramen could not delete its VRG, the DRPC would hang in Deleting.
        let mut s = situation(&d, &p);
        s.connections.insert(
            "dr2".into(),
            Connection {
                unreachable_since: crate::time::parse_time("2026-11-27T09:59:00Z"),
                ..connected("Unknown")
            },
        );
        let plan = disable(&s);
        assert_eq!(plan.blocking(false).len(), 1);
        assert!(plan.blocking(true).is_empty());
        assert!(
            plan.refusals[0]
                .text
                .starts_with("dr2 is unreachable since 2026-11-27T09:59:00Z (60s ago): Ramen deletes the VRG there only once it is back"),
            "{:?}",
            plan.refusals
        );
        // An action underway.
        d.spec.action = Some(DRAction::Relocate);
        d.spec.preferred_cluster = "dr2".into();
        d.status.as_mut().unwrap().progression = "RunningFinalSync".into();
        let plan = disable(&situation(&d, &p));
        assert!(
            plan.refusals[0]
                .text
                .starts_with("a relocate to dr2 is in progress"),
            "{:?}",
            plan.refusals
        );
        // Already deleting: nothing to do but follow.
        d.metadata.deletion_timestamp = Some(Time(Default::default()));
        d.status.as_mut().unwrap().phase = "Deleting".into();
        let plan = disable(&situation(&d, &p));
        assert!(plan.already_requested && plan.refusals.is_empty());
    }
}
