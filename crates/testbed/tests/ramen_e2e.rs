//! Ramen's own e2e suite, unmodified (`TestDR`, test `disapp-deploy-rbd`:
//! Deploy, Enable, Failover, Relocate, Disable, Undeploy), against real Ramen
//! operators whose only transport is drbridge.
//!
//! drbridge-hub runs as two replicas electing a leader, as the chart runs it. The leader is
//! killed (SIGKILL) twice: in steady state before the suite starts, and while Ramen fails
//! over. Each time the test prints the time to a new leader and until both agents are in sync
//! on it, and checks that nothing a work applied was deleted on a managed cluster without the
//! hub asking; throughout, no ManifestWork or view status may be lost or go back.
//!
//! Opt-in: set `DRBRIDGE_RAMEN_E2E=1`. It builds Ramen (from its source
//! snapshot, see `drbridge_testbed::source`), Velero, KWOK and versitygw into
//! the cache on first use, and runs for tens of minutes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use drbridge_dr::demo::TransportMeter;
use drbridge_dr::types::{DRAction, DRPlacementControl};
use drbridge_localenv::{Env, Lifetime};
use drbridge_testbed::bed::{HUB, MANAGED};
use drbridge_testbed::drbridge::{Drbridge, LeaderKill};
use drbridge_testbed::invariants::{Kept, StatusWatch};
use drbridge_testbed::{Testbed, TestbedOptions, Tools, e2e, meter, source};
use kube::api::Api;

const GATE: &str = "DRBRIDGE_RAMEN_E2E";

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// drbridge's binaries: CI's, or built from this checkout into this target dir.
fn tools() -> Tools {
    let exe = std::env::current_exe().unwrap();
    // target/debug/deps/ramen_e2e-HASH -> target/debug
    let dir = exe.parent().unwrap().parent().unwrap();
    Tools::for_test(Path::new(env!("CARGO")), &repo_root(), dir).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ramen_e2e_disapp_deploy_rbd() {
    if std::env::var_os(GATE).is_none_or(|v| v != "1") {
        eprintln!("skipped: set {GATE}=1 to run Ramen's e2e on the test bed (tens of minutes)");
        return;
    }
    let root = repo_root();
    let ramen = source::ramen(None, &root).expect("Ramen's source");
    let samples = source::samples(None, &root).expect("ocm-ramen-samples' source");
    let tools = tools();
    // Kept when anything fails, so the logs the failure names are there;
    // removed after a pass unless DRBRIDGE_RAMEN_E2E_KEEP is set.
    let base = tempfile::Builder::new()
        .prefix("drbridge-ramen-")
        .tempdir()
        .unwrap()
        .keep();
    let dir = base.join("env");
    let keep = std::env::var_os("DRBRIDGE_RAMEN_E2E_KEEP").is_some();
    let started = Instant::now();
    let bed = Testbed::start(
        TestbedOptions {
            dir: dir.clone(),
            lifetime: Lifetime::Attached,
            ramen_source: ramen,
            tools,
            timeout: Duration::from_secs(600),
            hub_replicas: 2,
        },
        &|p| eprintln!("{p:?}"),
    )
    .await
    .unwrap_or_else(|e| {
        panic!(
            "the test bed did not start: {e}\nlogs: {}",
            dir.join("logs").display()
        )
    });
    eprintln!("test bed up in {:.1}s:", started.elapsed().as_secs_f64());
    for (step, d) in &bed.timings {
        eprintln!("  {step:<36} {:>7.1}s", d.as_secs_f64());
    }

    let mut bed = bed;
    let drbridge = bed.drbridge.as_ref().expect("the bed runs drbridge");
    let hub = bed.env.client(HUB).await.unwrap();
    let mut spokes = Vec::new();
    for c in MANAGED {
        spokes.push((c.to_string(), bed.env.client(c).await.unwrap()));
    }
    let statuses = StatusWatch::start(&hub, &MANAGED);
    let steady = kill_leader(drbridge, &mut bed.env, &hub, &spokes)
        .await
        .unwrap_or_else(|e| panic!("leader kill in steady state: {e}"));
    eprintln!("leader kill in steady state: {}", kill_line(&steady));

    let config = e2e::prepare(&bed, &samples).expect("e2e config");
    let transcript = config.with_file_name("ramen-e2e.out");
    let mut out = std::fs::File::create(&transcript).unwrap();
    // The transport's share of each step: watches on both ends of drbridge, one clock.
    let t0 = Instant::now();
    let meter = Arc::new(Mutex::new(TransportMeter::default()));
    let meters = meter::start(&hub, &spokes, meter.clone(), t0);
    // When each step began: go test -v prints `=== RUN   TestDR/<test>/<step>` as it starts.
    let mut began: Vec<(String, Duration)> = Vec::new();
    let run_prefix = format!("=== RUN   TestDR/{}/", e2e::TEST);
    let (failover_began, mut failover_rx) = tokio::sync::watch::channel(false);
    let (e2e_done, mut done_rx) = tokio::sync::watch::channel(false);
    let env = &mut bed.env;
    let programs = &bed.programs;
    let suite = async {
        let report = e2e::run(
            &programs.ramen_e2e,
            &config,
            // The sum of e2e's own step timeouts (5+5+15+15+10+5 minutes) and
            // some room for its setup.
            Duration::from_secs(60 * 60),
            |line| {
                eprintln!("e2e| {line}");
                let _ = writeln!(out, "{line}");
                if let Some(step) = line.trim_start().strip_prefix(&run_prefix) {
                    let step = step.trim().to_string();
                    if step == "Failover" {
                        failover_began.send_replace(true);
                    }
                    began.push((step, t0.elapsed()));
                }
            },
        )
        .await;
        e2e_done.send_replace(true);
        report
    };
    // The leader dies while Ramen fails over: asked to, and not yet Completed.
    let chaos = async {
        let _ = failover_rx.wait_for(|b| *b).await;
        let phase = wait_failing_over(&hub).await;
        let kill = kill_leader(drbridge, env, &hub, &spokes).await;
        (phase, kill)
    };
    let (report, during_failover) = tokio::join!(suite, async {
        tokio::select! {
            r = chaos => Some(r),
            _ = done_rx.wait_for(|d| *d) => None,
        }
    });
    let report = report.expect("Ramen's e2e ran");
    drop(meters);
    eprintln!("Ramen's e2e {}:\n{}", e2e::TEST, report.table());
    eprintln!(
        "{}",
        transport_table(&report, &began, &meter.lock().unwrap())
    );
    assert!(
        report.passed(),
        "Ramen's e2e failed at {}:\n{}\ne2e log: {}\ntest bed logs: {}",
        report.failed_step().unwrap_or_default(),
        report.failure_lines.join("\n"),
        config.with_file_name("ramen-e2e.log").display(),
        dir.join("logs").display(),
    );
    let (phase, kill) = during_failover.unwrap_or_else(|| {
        panic!("Ramen's e2e ended before its Failover step, so no leader was killed during it")
    });
    let kill = kill.unwrap_or_else(|e| panic!("leader kill during Ramen's failover: {e}"));
    eprintln!(
        "leader kill during Ramen's failover (DRPC {phase}): {}",
        kill_line(&kill)
    );
    let lost = statuses.violations();
    assert!(
        lost.is_empty(),
        "ManifestWork or view status lost or gone back: {lost:#?}"
    );
    drop(bed);
    if !keep {
        let _ = std::fs::remove_dir_all(&base);
    }
}

/// Each step's wall time and the part of it in drbridge's transport (hub write of a
/// ManifestWork until Applied on the hub; VRG change on a managed cluster until the hub's view
/// shows it), overlapping transfers counted once.
fn transport_table(
    report: &e2e::Report,
    began: &[(String, Duration)],
    meter: &TransportMeter,
) -> String {
    let mut s = format!(
        "{:<9} {:>8} {:>10} {:>6}\n",
        "step", "wall", "transport", "share"
    );
    for step in &report.steps {
        let Some((_, from)) = began.iter().rev().find(|(n, _)| *n == step.name) else {
            continue;
        };
        let wall = Duration::from_secs_f64(step.secs);
        let t = meter.within(*from, *from + wall);
        let share = if wall.is_zero() {
            0.0
        } else {
            100.0 * t.as_secs_f64() / wall.as_secs_f64()
        };
        s.push_str(&format!(
            "{:<9} {:>7.1}s {:>9.1}s {:>5.0}%\n",
            step.name,
            wall.as_secs_f64(),
            t.as_secs_f64(),
            share
        ));
    }
    s
}

/// Kills the hub's leader once everything is recorded, and checks afterwards that nothing the
/// works had applied went without the hub asking.
async fn kill_leader(
    drbridge: &Drbridge,
    env: &mut Env,
    hub: &kube::Client,
    spokes: &[(String, kube::Client)],
) -> Result<LeaderKill, String> {
    let kept = Kept::record(hub, spokes).await.map_err(|e| e.to_string())?;
    let kill = drbridge
        .kill_leader(env, hub, MANAGED.len(), Duration::from_secs(120))
        .await
        .map_err(|e| e.to_string())?;
    let deleted = kept
        .violations(hub, spokes)
        .await
        .map_err(|e| e.to_string())?;
    if !deleted.is_empty() {
        return Err(format!("deleted on a managed cluster: {deleted:#?}"));
    }
    eprintln!(
        "  {} objects applied by works kept across the kill",
        kept.len()
    );
    Ok(kill)
}

fn kill_line(k: &LeaderKill) -> String {
    format!(
        "killed {}; {} leads after {:.1}s; both agents in sync on it after {:.1}s",
        k.killed,
        k.new_leader,
        k.to_new_leader.as_secs_f64(),
        k.to_in_sync.as_secs_f64()
    )
}

/// Waits until a DRPC is in the middle of a failover (asked to fail over, its progression
/// not yet Completed), and returns its phase and progression.
async fn wait_failing_over(hub: &kube::Client) -> String {
    let drpcs: Api<DRPlacementControl> = Api::all(hub.clone());
    drbridge_localenv::eventually(
        "a DRPlacementControl in the middle of a failover, within 5 minutes of Ramen's \
         Failover step",
        Duration::from_secs(300),
        async || {
            drpcs
                .list(&Default::default())
                .await
                .map(|l| l.items)
                .unwrap_or_default()
                .into_iter()
                .filter(|d| d.spec.action == Some(DRAction::Failover))
                .filter_map(|d| d.status)
                .find(|s| !s.phase.is_empty() && s.progression != "Completed")
                .map(|s| format!("{}/{}", s.phase, s.progression))
        },
    )
    .await
}
