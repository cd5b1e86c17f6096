//! `drbridge demo`, the README's main job, end to end on the Ramen test bed: unmodified Ramen
//! deploys, protects and relocates the sample application, then a managed cluster goes dark
//! for real (its control plane, operators and agent stop), Ramen fails over while it is down,
//! and the cluster heals back as the secondary.
//!
//! Opt-in with Ramen's e2e (`DRBRIDGE_RAMEN_E2E=1`): it builds Ramen and its neighbours on first
//! use and runs for minutes.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const GATE: &str = "DRBRIDGE_RAMEN_E2E";

/// The hub, agent and storage simulator binaries: those in `DRBRIDGE_TOOLS_DIR` (CI's test
/// build), else built from this checkout into this target dir.
fn tools_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("DRBRIDGE_TOOLS_DIR") {
        return PathBuf::from(dir);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let status = Command::new(env!("CARGO"))
        .current_dir(&root)
        .args([
            "build",
            "--quiet",
            "-p",
            "drbridge-hub",
            "-p",
            "drbridge-agent",
        ])
        .args(["-p", "drbridge-storage-simulator"])
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building drbridge's binaries");
    Path::new(env!("CARGO_BIN_EXE_drbridge"))
        .parent()
        .unwrap()
        .to_path_buf()
}

#[test]
fn the_demo_protects_relocates_and_fails_over_on_real_ramen() {
    if std::env::var_os(GATE).is_none_or(|v| v != "1") {
        eprintln!("skipped: set {GATE}=1 to run the demo on the Ramen test bed (minutes)");
        return;
    }
    let tools = tools_dir();
    let base = tempfile::Builder::new()
        .prefix("drbridge-demo-")
        .tempdir()
        .unwrap()
        .keep();
    let dir = base.join("bed");
    let drbridge = env!("CARGO_BIN_EXE_drbridge");
    let out = Command::new(drbridge)
        .args(["demo", "--yes", "--plain", "--env-dir"])
        .arg(&dir)
        .env("DRBRIDGE_HUB_BIN", tools.join("drbridge-hub"))
        .env("DRBRIDGE_AGENT_BIN", tools.join("drbridge-agent"))
        .env(
            "DRBRIDGE_STORAGE_SIMULATOR_BIN",
            tools.join("drbridge-storage-simulator"),
        )
        .stderr(Stdio::inherit())
        .output()
        .expect("drbridge demo runs");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    eprintln!("{stdout}");
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
        "start", "deploy", "protect", "relocate", "disaster", "failover", "heal",
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
    let _ = std::fs::remove_dir_all(&base);
}
