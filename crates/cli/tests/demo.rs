//! `drbridge demo`, the README's main job, end to end on the Ramen test bed: unmodified Ramen
//! deploys, protects and relocates the sample application, then a managed cluster goes dark
//! for real (its control plane, operators and agent stop), Ramen fails over while it is down,
//! the cluster heals back as the secondary (its VRG the same object: nothing deleted it), and
//! the application relocates back to it.
//!
//! Opt-in with Ramen's e2e (`DRBRIDGE_RAMEN_E2E=1`): it builds Ramen and its neighbours on first
//! use and runs for minutes.

use std::path::Path;
use std::process::{Command, Stdio};

const GATE: &str = "DRBRIDGE_RAMEN_E2E";

/// drbridge's binaries: CI's, or built from this checkout into this target dir.
fn tools() -> drbridge_testbed::Tools {
    let dir = Path::new(env!("CARGO_BIN_EXE_drbridge")).parent().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    drbridge_testbed::Tools::for_test(Path::new(env!("CARGO")), &root, dir).unwrap()
}

#[test]
fn the_demo_protects_relocates_and_fails_over_on_real_ramen() {
    if std::env::var_os(GATE).is_none_or(|v| v != "1") {
        eprintln!("skipped: set {GATE}=1 to run the demo on the Ramen test bed (minutes)");
        return;
    }
    let tools = tools();
    let base = tempfile::Builder::new()
        .prefix("drbridge-demo-")
        .tempdir()
        .unwrap()
        .keep();
    let dir = base.join("bed");
    let drbridge = env!("CARGO_BIN_EXE_drbridge");
    // No --yes and no terminal (stdin is closed), as the README's first command on CI: a
    // test bed the demo starts itself needs no confirmation.
    let out = Command::new(drbridge)
        .args(["demo", "--plain", "--env-dir"])
        .arg(&dir)
        .env("DRBRIDGE_HUB_BIN", &tools.hub)
        .env("DRBRIDGE_AGENT_BIN", &tools.agent)
        .env("DRBRIDGE_STORAGE_SIMULATOR_BIN", &tools.storage_simulator)
        .stderr(Stdio::inherit())
        .output()
        .expect("drbridge demo runs");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    eprintln!("{stdout}");
    let after = out
        .status
        .success()
        .then(|| dr_verbs_after_the_demo(drbridge, &dir));
    // The demo leaves the bed running for the user; the test stops it either way.
    let down = Command::new(drbridge)
        .args(["demo", "--down", "--env-dir"])
        .arg(&dir)
        .status()
        .expect("drbridge demo --down runs");
    assert!(
        out.status.success(),
        "the demo failed; test bed logs are in {}",
        dir.join("logs").display()
    );
    assert!(down.success(), "drbridge demo --down");
    let summary = stdout
        .split("\nSummary\n")
        .nth(1)
        .expect("the demo prints a summary");
    for phase in [
        "start", "deploy", "protect", "relocate", "disaster", "failover", "heal", "return",
    ] {
        let row = summary
            .lines()
            .find(|l| l.split_whitespace().next() == Some(phase))
            .unwrap_or_else(|| panic!("no {phase} row in:\n{summary}"));
        assert_eq!(
            row.split_whitespace().nth(1),
            Some("ok"),
            "{phase}: {row}\n{summary}"
        );
    }
    if let Some(Err(e)) = after {
        panic!(
            "after the demo: {e}\ntest bed logs are in {}",
            dir.join("logs").display()
        );
    }
    let _ = std::fs::remove_dir_all(&base);
}

/// `drbridge dr status -o json|yaml`, `clear` and `disable` on the real operators the demo
/// left running: the application is back on dr2 and protected; clearing the completed
/// relocate leaves it there; disabling removes the DRPC, Placement and VRGs and leaves the
/// application and its PVC where they run.
fn dr_verbs_after_the_demo(drbridge: &str, dir: &Path) -> Result<(), String> {
    let hub = dir.join("hub.kubeconfig");
    let dr = |args: &[&str]| {
        Command::new(drbridge)
            .arg("dr")
            .arg("--kubeconfig")
            .arg(&hub)
            .args(args)
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| format!("running drbridge dr: {e}"))
    };
    let out = dr(&["status", "busybox", "-o", "json"])?;
    if !out.status.success() {
        return Err("drbridge dr status -o json failed".into());
    }
    let st: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("status JSON: {e}"))?;
    if st["phase"] != "Relocated" || st["currentCluster"] != "dr2" || st["protected"] != "True" {
        return Err(format!("unexpected status after the demo: {st:#}"));
    }
    if st["rpo"] != "ok" {
        return Err(format!("RPO not ok right after a sync: {}", st["rpo"]));
    }
    let out = dr(&["status", "busybox", "-o", "yaml"])?;
    let yaml = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || !yaml.lines().any(|l| l == "phase: Relocated") {
        return Err(format!("drbridge dr status -o yaml:\n{yaml}"));
    }
    // `status --watch` prints the status, then again on every change: the clear below.
    let mut watch = Command::new(drbridge)
        .arg("dr")
        .arg("--kubeconfig")
        .arg(&hub)
        .args(["status", "busybox", "--watch", "-o", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("running drbridge dr status --watch: {e}"))?;
    let docs = json_lines(watch.stdout.take().unwrap());
    let watched = (|| {
        let first = next_doc(&docs, "the status as it is")?;
        if first["action"] != "Relocate" {
            return Err(format!("status --watch began with {first:#}"));
        }
        // The completed relocate is cleared; the application stays where it runs.
        if !dr(&["clear", "busybox", "--yes"])?.status.success() {
            return Err("drbridge dr clear failed".into());
        }
        loop {
            let doc = next_doc(&docs, "the status after clear")?;
            if doc["action"].is_null() || doc["action"] == "" {
                return Ok(());
            }
        }
    })();
    let _ = watch.kill();
    let _ = watch.wait();
    watched?;
    let out = dr(&["status", "busybox", "-o", "json"])?;
    let st: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("status JSON: {e}"))?;
    let cleared = |v: &serde_json::Value| v.is_null() || v == "";
    if !cleared(&st["action"]) || !cleared(&st["failoverCluster"]) || st["currentCluster"] != "dr2"
    {
        return Err(format!("unexpected status after clear: {st:#}"));
    }
    let out = dr(&["disable", "busybox", "--yes", "--timeout", "5m"])?;
    eprintln!("{}", String::from_utf8_lossy(&out.stdout));
    if !out.status.success() {
        return Err("drbridge dr disable failed".into());
    }
    if dr(&["status", "busybox"])?.status.success() {
        return Err("the DRPlacementControl is still there after disable".into());
    }
    let state = drbridge_localenv::EnvState::load(dir).map_err(|e| e.to_string())?;
    let get = Command::new(&state.kubectl)
        .arg("--kubeconfig")
        .arg(dir.join("dr2.kubeconfig"))
        .args([
            "-n",
            "busybox-demo",
            "get",
            "deployment/busybox",
            "pvc/busybox-pvc",
        ])
        .output()
        .map_err(|e| format!("running kubectl: {e}"))?;
    if !get.status.success() {
        return Err(format!(
            "the application or its PVC is gone from dr2 after disable: {}",
            String::from_utf8_lossy(&get.stderr)
        ));
    }
    Ok(())
}

/// The JSON documents a command prints one per line, as they come.
fn json_lines(
    out: impl std::io::Read + Send + 'static,
) -> std::sync::mpsc::Receiver<serde_json::Value> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for doc in serde_json::Deserializer::from_reader(out).into_iter() {
            let Ok(doc) = doc else { break };
            if tx.send(doc).is_err() {
                break;
            }
        }
    });
    rx
}

/// The next document from [`json_lines`], within a minute: the watch prints on each change.
fn next_doc(
    docs: &std::sync::mpsc::Receiver<serde_json::Value>,
    what: &str,
) -> Result<serde_json::Value, String> {
    docs.recv_timeout(std::time::Duration::from_secs(60))
        .map_err(|e| format!("status --watch printed no document for {what}: {e}"))
}
