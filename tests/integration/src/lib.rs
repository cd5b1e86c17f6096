//! Helpers shared by the integration tests.

pub mod bench;
pub mod bridge;
pub mod helm;
pub mod ocm;
pub mod proxy;
pub mod works;

use std::time::Duration;

pub use drbridge_localenv::eventually;

/// Logs from the code under test when RUST_LOG asks for them.
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        // The readiness wait's refused connections are expected; kube logs them as errors.
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,kube_client=off")),
        )
        .with_test_writer()
        .with_writer(std::io::stderr)
        .try_init();
}

use std::path::{Path, PathBuf};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Creates every CRD in `dir` (generated YAML, one per file) and waits until
/// each is Established.
pub async fn install_crds(client: &kube::Client, dir: &Path) -> Vec<String> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut names = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let crd: CustomResourceDefinition =
            serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let name = crd.metadata.name.clone().unwrap();
        api.create(&PostParams::default(), &crd)
            .await
            .unwrap_or_else(|e| panic!("creating CRD {name} from {}: {e}", f.display()));
        names.push(name);
    }
    for name in &names {
        eventually(
            &format!("CRD {name} Established"),
            Duration::from_secs(30),
            || async {
                let crd = api.get(name).await.ok()?;
                crd.status?
                    .conditions?
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
                    .then_some(())
            },
        )
        .await;
    }
    names
}

/// Asserts that every field of `expected` is in `actual` with the same value.
/// `null` in `expected` matches a missing field (the API server drops nulls).
pub fn assert_subset(expected: &serde_json::Value, actual: &serde_json::Value, path: &str) {
    use serde_json::Value;
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (k, ev) in e {
                let p = format!("{path}.{k}");
                match a.get(k) {
                    Some(av) => assert_subset(ev, av, &p),
                    None => assert!(ev.is_null(), "{p} was dropped (expected {ev})"),
                }
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            assert_eq!(e.len(), a.len(), "{path}: array length changed");
            for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                assert_subset(ev, av, &format!("{path}[{i}]"));
            }
        }
        (Value::Null, _) => {}
        (e, a) => assert_eq!(e, a, "{path} changed"),
    }
}
