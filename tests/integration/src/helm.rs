//! The pinned helm, run as the chart tests run it (`tests/charts.rs`, `tests/alerts.rs`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::Value;

use crate::repo_root;

/// The pinned helm, built from its Go module on first use (drbridge-localenv).
pub fn helm() -> &'static Path {
    static HELM: OnceLock<PathBuf> = OnceLock::new();
    HELM.get_or_init(|| {
        drbridge_localenv::ensure_helm(&drbridge_localenv::cache_dir(), &|_| {})
            .expect("building helm")
    })
}

/// Runs helm with its own config, cache and data directories, so the user's repositories
/// and plugins play no part.
pub fn run_helm(home: &Path, args: &[&str]) -> Output {
    Command::new(helm())
        .args(args)
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_DATA_HOME", home.join("data"))
        .env_remove("KUBECONFIG")
        .output()
        .expect("running helm")
}

pub fn helm_ok(home: &Path, args: &[&str]) -> String {
    let out = run_helm(home, args);
    assert!(
        out.status.success(),
        "helm {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The chart's directory in this repository.
pub fn chart(name: &str) -> String {
    repo_root().join("charts").join(name).display().to_string()
}

/// `helm template` output as objects.
pub fn render(home: &Path, chart_name: &str, extra: &[&str]) -> Vec<Value> {
    let chart = chart(chart_name);
    let mut args = vec!["template", chart_name, &chart, "--namespace", "drbridge"];
    args.extend_from_slice(extra);
    let text = helm_ok(home, &args);
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text)
        .unwrap_or_else(|e| panic!("helm template {chart_name} is not YAML: {e}\n{text}"));
    docs.into_iter().filter(|d| !d.is_null()).collect()
}
