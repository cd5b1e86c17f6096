//! The Ramen test bed: unmodified Ramen operators running DR through drbridge
//! on the local environment.
//!
//! On top of [`drbridge_localenv`]'s clusters (a hub and two managed clusters)
//! [`Testbed::start`] runs Ramen's hub operator and a dr-cluster operator per
//! managed cluster, Velero with its AWS plugin, KWOK (so pods become Running
//! and Ready and go away on delete), one versitygw S3 server with the buckets,
//! the storage simulator, and drbridge's hub and agents; it configures S3
//! profiles, DRClusters and the DRPolicy with `drbridge dr`. [`e2e`] runs
//! Ramen's own e2e suite against it.
//!
//! Every program is built once into the cache, keyed by version ([`build`]);
//! Ramen from its source snapshot ([`source`]), since the Go module proxy does
//! not serve it.

pub mod bed;
pub mod build;
pub mod drbridge;
pub mod e2e;
pub mod front;
pub mod invariants;
pub mod manifests;
pub mod meter;
pub mod source;

use std::path::{Path, PathBuf};

pub use bed::{Testbed, TestbedOptions, Tools};
pub use build::Programs;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no source for {what}: {hint}")]
    NoSource { what: String, hint: String },
    #[error(
        "{file}: SHA-256 is {actual}, expected {expected}; the snapshot is not the published one"
    )]
    Checksum {
        file: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("unpacking {file}: {why}")]
    Unpack { file: PathBuf, why: String },
    #[error("building {program} failed (in {dir}):\n{output}")]
    GoBuild {
        program: String,
        dir: PathBuf,
        output: String,
    },
    #[error(transparent)]
    Env(#[from] drbridge_localenv::Error),
    #[error("kubernetes: {0}")]
    Kube(#[from] kube::Error),
    #[error("applying {what}: {source}")]
    Apply {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("{path}: {why}")]
    Manifest { path: PathBuf, why: String },
    #[error("{what} did not start: {why}{}", log_hint(.log))]
    Start {
        what: String,
        why: String,
        log: Option<PathBuf>,
    },
    #[error("`{command}` failed: {output}")]
    Command { command: String, output: String },
    #[error("timed out after {secs}s waiting for {what}{}", detail_hint(.detail))]
    Timeout {
        what: String,
        secs: u64,
        detail: String,
    },
}

fn log_hint(log: &Option<PathBuf>) -> String {
    log.as_ref()
        .map(|l| format!(" (log: {})", l.display()))
        .unwrap_or_default()
}

fn detail_hint(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}

impl Error {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
