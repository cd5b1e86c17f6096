//! The pure parts of `drbridge demo`: its phases and their bookkeeping, the share of each
//! phase spent in drbridge's transport, the live line of a DRPC, the progress display (one
//! redrawn line on a terminal, plain lines without one) and the closing summary table.
//!
//! Times are offsets from the start of the run (`Duration`s the caller measures with its
//! monotonic clock), so everything here is testable without a clock or a cluster.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::consts::condition as ct;
use crate::explain::status_of;
use crate::table::Table;
use crate::types::DRPlacementControl;

/// The demo's phases, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Phase {
    /// Build or find everything and start the Ramen test bed.
    Start,
    /// The sample application (busybox Deployment and its PVC) on the first cluster.
    Deploy,
    /// DRPC and Placement; wait for PeerReady and a first group sync.
    Protect,
    /// Planned move to the peer: final sync, no data loss.
    Relocate,
    /// The cluster running the application goes dark (API server and agent stopped).
    Disaster,
    /// Unplanned move back, with the other cluster down.
    Failover,
    /// The lost cluster returns; Ramen makes it the secondary again.
    Heal,
    /// Planned move back to the healed cluster: it is whole again.
    Return,
}

impl Phase {
    pub const ALL: [Phase; 8] = [
        Phase::Start,
        Phase::Deploy,
        Phase::Protect,
        Phase::Relocate,
        Phase::Disaster,
        Phase::Failover,
        Phase::Heal,
        Phase::Return,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Phase::Start => "start",
            Phase::Deploy => "deploy",
            Phase::Protect => "protect",
            Phase::Relocate => "relocate",
            Phase::Disaster => "disaster",
            Phase::Failover => "failover",
            Phase::Heal => "heal",
            Phase::Return => "return",
        }
    }

    /// The heading printed when the phase begins; `a` is the first cluster, `b` its peer.
    pub fn heading(self, a: &str, b: &str) -> String {
        match self {
            Phase::Start => {
                "Start the Ramen test bed (hub, two managed clusters, S3, drbridge)".into()
            }
            Phase::Deploy => format!("Deploy the sample application (busybox + PVC) on {a}"),
            Phase::Protect => format!(
                "Protect it: DRPlacementControl and Placement; wait for PeerReady and a first group sync ({b} becomes its secondary)"
            ),
            Phase::Relocate => format!("Relocate to {b}: planned, final sync, no data loss"),
            Phase::Disaster => {
                format!(
                    "Disaster: {b} goes dark (its control plane, Ramen, storage and drbridge agent stop)"
                )
            }
            Phase::Failover => format!("Fail over to {a} while {b} is down"),
            Phase::Heal => {
                format!("Heal: {b} returns; Ramen makes its VRG Secondary, PeerReady turns True")
            }
            Phase::Return => format!("Return: relocate back to the healed {b}"),
        }
    }
}

/// How a phase ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", content = "message", rename_all = "camelCase")]
pub enum PhaseOutcome {
    Ok,
    Failed(String),
    /// Not run (an earlier phase failed, or the environment cannot do it).
    Skipped(String),
}

impl PhaseOutcome {
    fn word(&self) -> &'static str {
        match self {
            PhaseOutcome::Ok => "ok",
            PhaseOutcome::Failed(_) => "FAILED",
            PhaseOutcome::Skipped(_) => "skipped",
        }
    }
}

/// What the demo recorded of one phase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PhaseRecord {
    pub phase: Phase,
    pub outcome: PhaseOutcome,
    pub wall: Duration,
    /// The part of `wall` during which a ManifestWork or a view was in transit.
    pub transport: Duration,
    /// Where the application runs at the end of the phase.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runs_on: Option<String>,
    /// The figure the phase is about (e.g. how fast drbridge reported a cluster lost).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub facts: Vec<String>,
}

/// The phases of one run: opened and closed in order.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Run {
    pub records: Vec<PhaseRecord>,
    #[serde(skip)]
    open: Option<(Phase, Duration)>,
}

/// Misuse of [`Run`]: phases out of order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunError {
    #[error("phase {0} started while {1} is still open")]
    StillOpen(&'static str, &'static str),
    #[error("phase {0} comes after {1}, which already ran")]
    OutOfOrder(&'static str, &'static str),
    #[error("no phase is open")]
    NoneOpen,
}

impl Run {
    /// Opens `phase` at `at`.
    pub fn begin(&mut self, phase: Phase, at: Duration) -> Result<(), RunError> {
        if let Some((open, _)) = self.open {
            return Err(RunError::StillOpen(phase.name(), open.name()));
        }
        if let Some(last) = self.records.last()
            && last.phase >= phase
        {
            return Err(RunError::OutOfOrder(phase.name(), last.phase.name()));
        }
        self.open = Some((phase, at));
        Ok(())
    }

    /// The open phase and when it began.
    pub fn current(&self) -> Option<(Phase, Duration)> {
        self.open
    }

    /// Closes the open phase at `at`; its transport time comes from `meter`.
    pub fn end(
        &mut self,
        at: Duration,
        outcome: PhaseOutcome,
        runs_on: Option<String>,
        facts: Vec<String>,
        meter: &TransportMeter,
    ) -> Result<&PhaseRecord, RunError> {
        let (phase, began) = self.open.take().ok_or(RunError::NoneOpen)?;
        self.records.push(PhaseRecord {
            phase,
            outcome,
            wall: at.saturating_sub(began),
            transport: meter.within(began, at),
            runs_on,
            facts,
        });
        Ok(self.records.last().expect("just pushed"))
    }

    /// Records every phase after the last one as skipped, saying why.
    pub fn skip_rest(&mut self, why: &str) {
        let after = self.records.last().map(|r| r.phase);
        for p in Phase::ALL {
            if after.is_none_or(|a| p > a) {
                self.records.push(PhaseRecord {
                    phase: p,
                    outcome: PhaseOutcome::Skipped(why.to_string()),
                    wall: Duration::ZERO,
                    transport: Duration::ZERO,
                    runs_on: None,
                    facts: vec![],
                });
            }
        }
    }

    /// Whether every phase ran and succeeded.
    pub fn succeeded(&self) -> bool {
        self.records.len() == Phase::ALL.len()
            && self.records.iter().all(|r| r.outcome == PhaseOutcome::Ok)
    }

    /// The closing table: one row per phase and a total.
    pub fn summary(&self) -> String {
        let mut t = Table::new([
            "PHASE",
            "RESULT",
            "WALL",
            "TRANSPORT",
            "SHARE",
            "APP ON",
            "NOTE",
        ]);
        let (mut wall, mut transport) = (Duration::ZERO, Duration::ZERO);
        for r in &self.records {
            wall += r.wall;
            transport += r.transport;
            let note = match &r.outcome {
                PhaseOutcome::Ok => r.facts.join("; "),
                PhaseOutcome::Failed(m) | PhaseOutcome::Skipped(m) => m.clone(),
            };
            let ran = !matches!(r.outcome, PhaseOutcome::Skipped(_));
            t.row([
                r.phase.name().to_string(),
                r.outcome.word().to_string(),
                if ran { seconds(r.wall) } else { "-".into() },
                if ran {
                    seconds(r.transport)
                } else {
                    "-".into()
                },
                if ran {
                    share(r.transport, r.wall)
                } else {
                    "-".into()
                },
                r.runs_on.clone().unwrap_or_else(|| "-".into()),
                note,
            ]);
        }
        t.row([
            "total".to_string(),
            if self.succeeded() { "ok" } else { "FAILED" }.to_string(),
            seconds(wall),
            seconds(transport),
            share(transport, wall),
            String::new(),
            String::new(),
        ]);
        t.render()
    }
}

/// `12.3s`, `4m05s`.
pub fn seconds(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 60.0 {
        format!("{s:.1}s")
    } else {
        let whole = d.as_secs();
        format!("{}m{:02}s", whole / 60, whole % 60)
    }
}

fn share(part: Duration, whole: Duration) -> String {
    if whole.is_zero() {
        return "-".into();
    }
    format!("{:.0}%", 100.0 * part.as_secs_f64() / whole.as_secs_f64())
}

/// The time drbridge's transport is busy: from a hub write of a ManifestWork generation to
/// the hub seeing it applied, and from a change of a VRG on a managed cluster to the hub's
/// view showing it. Each is observed by the demo's own watches on both ends, with one clock.
/// Overlapping transfers count once.
#[derive(Debug, Clone, Default)]
pub struct TransportMeter {
    /// Transfers in flight: key to (version, sent at).
    open: BTreeMap<String, (String, Duration)>,
    done: Vec<(Duration, Duration)>,
}

impl TransportMeter {
    /// Something was written at one end: `key` names the object and direction (e.g.
    /// `work dr2/app-vrg-mw`), `version` what the other end must show (a generation, a
    /// resourceVersion). A newer version replaces one still in flight.
    pub fn sent(&mut self, key: &str, version: &str, at: Duration) {
        match self.open.get(key) {
            Some((v, _)) if v == version => {}
            _ => {
                self.open.insert(key.to_string(), (version.to_string(), at));
            }
        }
    }

    /// The other end shows `version` of `key` at `at`; closes the transfer if it was open.
    pub fn arrived(&mut self, key: &str, version: &str, at: Duration) {
        if let Some((v, sent)) = self.open.get(key)
            && v == version
        {
            let sent = *sent;
            self.open.remove(key);
            self.done.push((sent, at.max(sent)));
        }
    }

    /// Transport time within `[from, to)`: the union of finished transfers, clipped.
    pub fn within(&self, from: Duration, to: Duration) -> Duration {
        let mut spans: Vec<(Duration, Duration)> = self
            .done
            .iter()
            .map(|&(a, b)| (a.max(from), b.min(to)))
            .filter(|(a, b)| a < b)
            .collect();
        spans.sort();
        let mut total = Duration::ZERO;
        let mut cur: Option<(Duration, Duration)> = None;
        for (a, b) in spans {
            cur = match cur {
                Some((ca, cb)) if a <= cb => Some((ca, cb.max(b))),
                Some((ca, cb)) => {
                    total += cb - ca;
                    Some((a, b))
                }
                None => Some((a, b)),
            };
        }
        if let Some((a, b)) = cur {
            total += b - a;
        }
        total
    }

    /// Number of finished transfers.
    pub fn transfers(&self) -> usize {
        self.done.len()
    }
}

/// The DRPC as the demo shows it live: phase, progression, the three conditions, and where
/// the application runs.
pub fn live_line(d: &DRPlacementControl, runs_on: Option<&str>) -> String {
    let st = d.status.clone().unwrap_or_default();
    let dash = |s: &str| {
        if s.is_empty() {
            "-".to_string()
        } else {
            s.to_string()
        }
    };
    format!(
        "{:<12} {:<30} Available={:<5} PeerReady={:<5} Protected={:<5} app on {}",
        dash(&st.phase),
        dash(&st.progression),
        status_of(&st.conditions, ct::AVAILABLE),
        status_of(&st.conditions, ct::PEER_READY),
        status_of(&st.conditions, ct::PROTECTED),
        runs_on.unwrap_or("-")
    )
}

/// Renders the demo's output: on a terminal, a status line redrawn in place under the
/// events; without one, plain lines only (no escape codes), the status repeated only when
/// it changes or every `plain_every`.
#[derive(Debug, Clone)]
pub struct Presenter {
    tty: bool,
    plain_every: Duration,
    last_status: Option<(String, Duration)>,
    status_shown: bool,
}

impl Presenter {
    pub fn new(tty: bool) -> Self {
        Presenter {
            tty,
            plain_every: Duration::from_secs(30),
            last_status: None,
            status_shown: false,
        }
    }

    pub fn is_tty(&self) -> bool {
        self.tty
    }

    /// What to write for an event line (always shown).
    pub fn event(&mut self, line: &str) -> String {
        let mut out = String::new();
        if self.tty && self.status_shown {
            out.push_str("\r\x1b[2K");
            self.status_shown = false;
        }
        out.push_str(line);
        out.push('\n');
        out
    }

    /// What to write for the current activity at time `now` (`None`: nothing).
    /// `elapsed` is how long it has run; `expected` how long it usually takes cold.
    pub fn status(
        &mut self,
        what: &str,
        elapsed: Duration,
        expected: Option<Duration>,
        now: Duration,
    ) -> Option<String> {
        let mut line = format!("… {what}  {}", crate::time::human(elapsed));
        if let Some(e) = expected {
            line.push_str(&format!(
                " (on a cold 2-core machine usually about {})",
                crate::time::human(e)
            ));
        }
        if self.tty {
            self.status_shown = true;
            return Some(format!("\r\x1b[2K{line}"));
        }
        let due = match &self.last_status {
            Some((w, at)) => w != what || now.saturating_sub(*at) >= self.plain_every,
            None => true,
        };
        if !due {
            return None;
        }
        self.last_status = Some((what.to_string(), now));
        Some(format!("{line}\n"))
    }

    /// What to write when the activity ends (clears a terminal's status line).
    pub fn clear(&mut self) -> String {
        self.last_status = None;
        if self.tty && self.status_shown {
            self.status_shown = false;
            "\r\x1b[2K".into()
        } else {
            String::new()
        }
    }
}

/// What to print at the end when the environment stays up.
pub fn look_around(
    hub_kubeconfig: &str,
    clusters: &[(String, String)],
    kubectl: &str,
    drpc: &str,
    app_namespace: &str,
    env_dir: &str,
) -> String {
    let mut s = String::new();
    s.push_str("The environment keeps running. Look around:\n");
    s.push_str(&format!("  export KUBECONFIG={hub_kubeconfig}\n"));
    s.push_str(&format!("  drbridge dr status {drpc}\n"));
    s.push_str("  drbridge dr status --watch\n");
    for (name, kc) in clusters {
        s.push_str(&format!(
            "  {kubectl} --kubeconfig {kc} -n {app_namespace} get deploy,pvc,pods   # {name}\n"
        ));
    }
    s.push_str(&format!(
        "  {kubectl} --kubeconfig {hub_kubeconfig} get manifestworks,managedclusterviews -A\n"
    ));
    s.push_str(&format!(
        "Tear it down: drbridge demo --down --env-dir {env_dir}   (or drbridge env down --dir {env_dir})\n"
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{DRPlacementControlSpec, DRPlacementControlStatus};

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn phases_run_once_and_in_order() {
        let meter = TransportMeter::default();
        let mut run = Run::default();
        run.begin(Phase::Start, s(0)).unwrap();
        assert_eq!(
            run.begin(Phase::Deploy, s(1)),
            Err(RunError::StillOpen("deploy", "start"))
        );
        let r = run
            .end(s(40), PhaseOutcome::Ok, None, vec![], &meter)
            .unwrap();
        assert_eq!(r.wall, s(40));
        assert_eq!(
            run.begin(Phase::Start, s(41)),
            Err(RunError::OutOfOrder("start", "start"))
        );
        run.begin(Phase::Protect, s(41)).unwrap();
        run.end(
            s(100),
            PhaseOutcome::Failed("timed out".into()),
            Some("dr1".into()),
            vec![],
            &meter,
        )
        .unwrap();
        assert_eq!(
            run.end(s(101), PhaseOutcome::Ok, None, vec![], &meter),
            Err(RunError::NoneOpen)
        );
        run.skip_rest("an earlier phase failed");
        let phases: Vec<Phase> = run.records.iter().map(|r| r.phase).collect();
        assert_eq!(
            phases,
            [
                Phase::Start,
                Phase::Protect,
                Phase::Relocate,
                Phase::Disaster,
                Phase::Failover,
                Phase::Heal,
                Phase::Return
            ]
        );
        assert!(!run.succeeded());
    }

    #[test]
    fn transport_counts_overlaps_once_and_clips_to_the_phase() {
        let mut m = TransportMeter::default();
        m.sent("work dr2/app", "3", s(10));
        // The same version again (another watch event) keeps the first send time.
        m.sent("work dr2/app", "3", s(11));
        m.sent("view dr2/app", "rv-7", s(12));
        m.arrived("view dr2/app", "rv-7", s(13));
        m.arrived("work dr2/app", "3", s(14));
        // An arrival of another version closes nothing.
        m.arrived("work dr2/app", "2", s(15));
        // A newer version replaces one in flight.
        m.sent("work dr1/app", "1", s(20));
        m.sent("work dr1/app", "2", s(21));
        m.arrived("work dr1/app", "1", s(22));
        m.arrived("work dr1/app", "2", s(23));
        assert_eq!(m.transfers(), 3);
        assert_eq!(m.within(s(0), s(100)), s(4) + s(2));
        assert_eq!(m.within(s(12), s(22)), s(2) + s(1));
        assert_eq!(m.within(s(30), s(40)), Duration::ZERO);
    }

    #[test]
    fn summary_table_has_a_row_per_phase_and_a_total() {
        let mut m = TransportMeter::default();
        m.sent("work", "1", s(50));
        m.arrived("work", "1", s(52));
        let mut run = Run::default();
        for (p, from, to) in [
            (Phase::Start, 0, 30),
            (Phase::Deploy, 30, 40),
            (Phase::Protect, 40, 100),
        ] {
            run.begin(p, s(from)).unwrap();
            run.end(
                s(to),
                PhaseOutcome::Ok,
                Some("dr1".into()),
                if p == Phase::Protect {
                    vec!["first group sync after 55.0s".into()]
                } else {
                    vec![]
                },
                &m,
            )
            .unwrap();
        }
        run.skip_rest("stopped");
        let text = run.summary();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1 + Phase::ALL.len() + 1, "{text}");
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>(),
            [
                "PHASE",
                "RESULT",
                "WALL",
                "TRANSPORT",
                "SHARE",
                "APP",
                "ON",
                "NOTE"
            ]
        );
        let protect: Vec<&str> = lines[3].split_whitespace().collect();
        assert_eq!(
            &protect[..6],
            ["protect", "ok", "1m00s", "2.0s", "3%", "dr1"],
            "{text}"
        );
        assert!(lines[3].ends_with("first group sync after 55.0s"));
        assert!(lines[4].starts_with("relocate   skipped"), "{text}");
        assert!(lines[4].ends_with("stopped"), "{text}");
        let total: Vec<&str> = lines[lines.len() - 1].split_whitespace().collect();
        assert_eq!(total, ["total", "FAILED", "1m40s", "2.0s", "2%"], "{text}");
    }

    #[test]
    fn plain_output_has_no_escape_codes_and_does_not_repeat() {
        let mut p = Presenter::new(false);
        let first = p
            .status("building ramen", s(5), Some(s(480)), s(5))
            .unwrap();
        assert_eq!(
            first,
            "… building ramen  5s (on a cold 2-core machine usually about 8m)\n"
        );
        assert_eq!(p.status("building ramen", s(6), Some(s(480)), s(6)), None);
        assert!(
            p.status("building ramen", s(36), Some(s(480)), s(36))
                .is_some(),
            "repeated every 30s"
        );
        assert!(
            p.status("waiting for PeerReady", s(1), None, s(37))
                .is_some()
        );
        assert_eq!(p.event("dr2 lost"), "dr2 lost\n");
        assert_eq!(p.clear(), "");
        let all = format!("{first}{}", p.event("x"));
        assert!(!all.contains('\x1b') && !all.contains('\r'));
    }

    #[test]
    fn terminal_output_redraws_one_line() {
        let mut p = Presenter::new(true);
        let s1 = p.status("waiting", s(1), None, s(1)).unwrap();
        assert!(s1.starts_with("\r\x1b[2K… waiting  1s"));
        assert!(p.status("waiting", s(2), None, s(2)).is_some());
        assert_eq!(p.event("done"), "\r\x1b[2Kdone\n");
        assert_eq!(p.event("again"), "again\n");
        p.status("waiting", s(3), None, s(3));
        assert_eq!(p.clear(), "\r\x1b[2K");
    }

    #[test]
    fn live_line_shows_phase_conditions_and_cluster() {
        let mut d = DRPlacementControl::new("app", DRPlacementControlSpec::default());
        d.status = Some(DRPlacementControlStatus {
            phase: "Relocating".into(),
            progression: "RunningFinalSync".into(),
            conditions: vec![
                crate::explain::tests::cond("Available", "True", "Relocating", ""),
                crate::explain::tests::cond("PeerReady", "False", "NotStarted", ""),
            ],
            ..Default::default()
        });
        let line = live_line(&d, Some("dr1"));
        assert_eq!(
            line.split_whitespace().collect::<Vec<_>>(),
            [
                "Relocating",
                "RunningFinalSync",
                "Available=True",
                "PeerReady=False",
                "Protected=-",
                "app",
                "on",
                "dr1"
            ]
        );
    }

    #[test]
    fn seconds_format() {
        assert_eq!(seconds(Duration::from_millis(12_345)), "12.3s");
        assert_eq!(seconds(s(245)), "4m05s");
    }

    #[test]
    fn look_around_names_the_commands() {
        let text = look_around(
            "/e/hub.kubeconfig",
            &[("dr1".into(), "/e/dr1.kubeconfig".into())],
            "/c/kubectl",
            "busybox",
            "busybox-demo",
            "/e",
        );
        assert!(text.contains("export KUBECONFIG=/e/hub.kubeconfig"));
        assert!(text.contains("drbridge dr status busybox"));
        assert!(text.contains(
            "/c/kubectl --kubeconfig /e/dr1.kubeconfig -n busybox-demo get deploy,pvc,pods"
        ));
        assert!(text.contains("drbridge demo --down --env-dir /e"));
    }
}
