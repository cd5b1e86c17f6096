//! `drbridge env up` as a user runs it: real control planes, the hub and an
//! agent per managed cluster as processes, the printed kubectl working, and
//! `env down` leaving nothing behind.

use std::path::Path;
use std::process::Command;

/// The command under test, running the hub and agent built for this test (CI's, or built
/// here from this checkout), not building them itself.
fn drbridge() -> Command {
    static TOOLS: std::sync::OnceLock<drbridge_testbed::Tools> = std::sync::OnceLock::new();
    let tools = TOOLS.get_or_init(|| {
        let dir = Path::new(env!("CARGO_BIN_EXE_drbridge")).parent().unwrap();
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        drbridge_testbed::Tools::for_test(Path::new(env!("CARGO")), &root, dir).unwrap()
    });
    let mut c = Command::new(env!("CARGO_BIN_EXE_drbridge"));
    c.env_remove("CARGO");
    c.env("DRBRIDGE_HUB_BIN", &tools.hub);
    c.env("DRBRIDGE_AGENT_BIN", &tools.agent);
    c
}

#[test]
fn env_up_runs_drbridge_and_env_down_cleans_up() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("env");
    let out = drbridge()
        .args(["env", "up", "--dir"])
        .arg(&dir)
        .args(["--clusters", "hub,dr1,dr2"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "env up failed:\n{stdout}\n{stderr}");
    assert!(stderr.contains("agents of dr1, dr2 connected"), "{stderr}");

    // The printed kubectl works against the printed kubeconfig.
    let line = stdout
        .lines()
        .find(|l| l.contains("get ns"))
        .expect("a kubectl example");
    let argv: Vec<&str> = line.split_whitespace().collect();
    let ns = Command::new(argv[0]).args(&argv[1..]).output().unwrap();
    assert!(
        ns.status.success(),
        "{}",
        String::from_utf8_lossy(&ns.stderr)
    );
    assert!(String::from_utf8_lossy(&ns.stdout).contains("kube-system"));
    let kubectl = argv[0];
    let mcs = Command::new(kubectl)
        .arg("--kubeconfig")
        .arg(dir.join("hub.kubeconfig"))
        .args(["get", "managedclusters", "-o", "jsonpath={.items[*].status.conditions[?(@.type==\"ManagedClusterConditionAvailable\")].status}"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&mcs.stdout).trim(), "True True");

    // A second `up` on the same directory is refused with what to do.
    let again = drbridge()
        .args(["env", "up", "--no-drbridge", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    let again_err = String::from_utf8_lossy(&again.stderr);
    assert!(!again.status.success());
    assert!(
        again_err.contains("already running") && again_err.contains("env down"),
        "{again_err}"
    );

    let status = drbridge()
        .args(["env", "status", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&status.stdout).to_string();
    assert!(
        status.contains("drbridge-agent-dr2") && !status.contains("gone"),
        "{status}"
    );
    let pids: Vec<u32> = status
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().rev().nth(1)?.parse().ok())
        .collect();
    assert_eq!(pids.len(), 12, "{status}");

    let down = drbridge()
        .args(["env", "down", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    assert!(!dir.exists());
    for pid in pids {
        assert!(
            !drbridge_localenv::process::pid_alive(pid),
            "pid {pid} still runs"
        );
    }
}
