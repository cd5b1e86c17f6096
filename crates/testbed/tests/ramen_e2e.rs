//! Ramen's own e2e suite, unmodified (`TestDR`, test `disapp-deploy-rbd`:
//! Deploy, Enable, Failover, Relocate, Disable, Undeploy), against real Ramen
//! operators whose only transport is drbridge.
//!
//! Opt-in: set `DRBRIDGE_RAMEN_E2E=1`. It builds Ramen (from its source
//! snapshot, see `drbridge_testbed::source`), Velero, KWOK and versitygw into
//! the cache on first use, and runs for tens of minutes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use drbridge_dr::demo::TransportMeter;
use drbridge_localenv::Lifetime;
use drbridge_testbed::{Testbed, TestbedOptions, Tools, e2e, meter, source};

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

    let config = e2e::prepare(&bed, &samples).expect("e2e config");
    let transcript = config.with_file_name("ramen-e2e.out");
    let mut out = std::fs::File::create(&transcript).unwrap();
    // The transport's share of each step: watches on both ends of drbridge, one clock.
    let t0 = Instant::now();
    let meter = Arc::new(Mutex::new(TransportMeter::default()));
    let mut spokes = Vec::new();
    for c in drbridge_testbed::bed::MANAGED {
        spokes.push((c.to_string(), bed.env.client(c).await.unwrap()));
    }
    let hub = bed.env.client(drbridge_testbed::bed::HUB).await.unwrap();
    let meters = meter::start(&hub, &spokes, meter.clone(), t0);
    // When each step began: go test -v prints `=== RUN   TestDR/<test>/<step>` as it starts.
    let mut began: Vec<(String, Duration)> = Vec::new();
    let run_prefix = format!("=== RUN   TestDR/{}/", e2e::TEST);
    let report = e2e::run(
        &bed.programs.ramen_e2e,
        &config,
        // The sum of e2e's own step timeouts (5+5+15+15+10+5 minutes) and
        // some room for its setup.
        Duration::from_secs(60 * 60),
        |line| {
            eprintln!("e2e| {line}");
            let _ = writeln!(out, "{line}");
            if let Some(step) = line.trim_start().strip_prefix(&run_prefix) {
                began.push((step.trim().to_string(), t0.elapsed()));
            }
        },
    )
    .await
    .expect("Ramen's e2e ran");
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
