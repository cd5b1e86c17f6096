//! Real local Kubernetes control planes for drbridge's demo and tests.
//!
//! Each cluster is an etcd, a kube-apiserver and a kube-controller-manager
//! (and, on clusters that run pods, a kube-scheduler) on loopback, with its
//! own ports, data directory and PKI. The binaries are built from their Go
//! modules at pinned versions ([`releases`]) and cached outside the clone
//! ([`cache_dir`]), so only the first run builds.
//!
//! ```no_run
//! # async fn f() -> Result<(), drbridge_localenv::Error> {
//! let env = drbridge_localenv::Env::start_for_test(&["hub", "dr1"]).await?;
//! let client = env.client("dr1").await?;
//! # Ok(()) }
//! ```

pub mod bridge;
pub mod certs;
mod env;
pub mod gobuild;
pub mod ports;
pub mod process;
pub mod releases;
pub mod supervise;
mod wait;

use std::path::{Path, PathBuf};

pub use env::{
    CONTROLLERS, ClusterPorts, ClusterState, Env, EnvOptions, EnvState, ExtraProcess,
    READY_TIMEOUT, Toolchain, WORKLOAD_CONTROLLERS, client_for, ensure_helm, ensure_promtool,
    ensure_toolchain,
};
pub use gobuild::Progress;
pub use process::Lifetime;
pub use supervise::Restarts;
pub use wait::{eventually, within};

/// Where built binaries are cached: `$DRBRIDGE_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/drbridge`, else `~/.cache/drbridge`.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("DRBRIDGE_CACHE_DIR") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(d).join("drbridge");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    home.join(".cache").join("drbridge")
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "no Go toolchain found (tried {tried:?}). Go builds the local control planes once: install Go 1.26 or newer, or set DRBRIDGE_GO to its `go` binary"
    )]
    NoGo { tried: PathBuf },
    #[error(
        "Go {found} is too old to build the pinned Kubernetes release; {need} or newer is needed (set DRBRIDGE_GO to another `go`)"
    )]
    OldGo { found: String, need: String },
    #[error("building {program} failed (work directory {dir}):\n{output}")]
    GoBuild {
        program: String,
        dir: PathBuf,
        output: String,
    },
    #[error(
        "port {port} on 127.0.0.1 is already in use; stop what holds it or choose another port"
    )]
    PortInUse { port: u16 },
    #[error("{name} is not a suspended program of this environment")]
    NotSuspended { name: String },
    #[error("cluster {cluster} runs no process named {name}")]
    NoSuchProcess { cluster: String, name: String },
    #[error("no free port on 127.0.0.1 in {range}")]
    NoFreePort { range: String },
    #[error("{what} did not start: {why}. Its log is {log}")]
    Start {
        what: String,
        why: String,
        log: PathBuf,
    },
    #[error(
        "an environment is already running in {dir}; use it, or run `drbridge env down --dir {dir}` first"
    )]
    AlreadyRunning { dir: PathBuf },
    #[error(
        "{dir} holds a stale environment whose processes are gone; run `drbridge env down --dir {dir}` to clean it up"
    )]
    Stale { dir: PathBuf },
    #[error(
        "no environment in {dir} (no state.json); start one with `drbridge env up --dir {dir}`"
    )]
    NotFound { dir: PathBuf },
    #[error("no cluster named {0:?} in this environment")]
    UnknownCluster(String),
    #[error("invalid cluster name {0:?}: use lowercase letters, digits and '-' (a DNS label)")]
    InvalidClusterName(String),
    #[error("certificate generation: {0}")]
    Certs(#[from] rcgen::Error),
    #[error("kubeconfig: {0}")]
    Kubeconfig(#[from] kube::config::KubeconfigError),
    #[error(transparent)]
    KubeClient(#[from] drbridge_runtime::KubeClientError),
    #[error("kubernetes client: {0}")]
    Kube(#[from] kube::Error),
    #[error("drbridge certificates: {0}")]
    Tls(#[from] drbridge_tls::Error),
    #[error("state file {path}: {source}")]
    State {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

impl Error {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
