//! Runs drbridge itself in a local environment: the hub on the hub cluster and
//! one agent per managed cluster, as processes with their own certificates.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use drbridge_localenv::Env;

/// Where the hub and agent binaries are: flags or env, else next to this
/// binary, built on demand when running from a source checkout.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub hub: PathBuf,
    pub agent: PathBuf,
}

impl Binaries {
    pub fn find(hub: Option<PathBuf>, agent: Option<PathBuf>) -> anyhow::Result<Self> {
        let dir = std::env::current_exe()?
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let named = hub.is_some() && agent.is_some();
        let hub = hub.unwrap_or_else(|| dir.join("drbridge-hub"));
        let agent = agent.unwrap_or_else(|| dir.join("drbridge-agent"));
        // Under `cargo run`, build the siblings so they match this binary's source.
        if let Some(cargo) = std::env::var_os("CARGO").filter(|_| !named) {
            let release = dir.ends_with("release");
            // The storage simulator too: `env up --ramen` starts it beside each agent.
            eprintln!("… building drbridge-hub, drbridge-agent and drbridge-storage-simulator");
            let mut cmd = std::process::Command::new(cargo);
            cmd.args([
                "build",
                "--quiet",
                "-p",
                "drbridge-hub",
                "-p",
                "drbridge-agent",
                "-p",
                "drbridge-storage-simulator",
            ]);
            if release {
                cmd.arg("--release");
            }
            let status = cmd.status().context("running cargo build")?;
            if !status.success() {
                bail!(
                    "building drbridge-hub, drbridge-agent and drbridge-storage-simulator failed"
                );
            }
        }
        for b in [&hub, &agent] {
            if !b.exists() {
                bail!(
                    "{} not found; build it with `cargo build -p drbridge-hub -p drbridge-agent`, or pass --hub-bin/--agent-bin",
                    b.display()
                );
            }
        }
        Ok(Binaries { hub, agent })
    }
}

/// The binaries the Ramen test bed runs: this `drbridge`, the hub and agent (see
/// [`Binaries::find`]) and the storage simulator beside this binary unless named.
pub fn ramen_tools(
    hub: Option<PathBuf>,
    agent: Option<PathBuf>,
    storage_simulator: Option<PathBuf>,
) -> anyhow::Result<drbridge_testbed::Tools> {
    let bins = Binaries::find(hub, agent)?;
    let me = std::env::current_exe()?;
    Ok(drbridge_testbed::Tools {
        storage_simulator: storage_simulator
            .unwrap_or_else(|| me.with_file_name("drbridge-storage-simulator")),
        drbridge: me,
        hub: bins.hub,
        agent: bins.agent,
    })
}

/// Starts the hub and the agents of every cluster after the first, and waits
/// until every ManagedCluster is Available.
pub async fn start(env: &mut Env, bins: &Binaries, timeout: Duration) -> anyhow::Result<String> {
    Ok(drbridge_testbed::drbridge::start_drbridge(env, &bins.hub, &bins.agent, timeout).await?)
}

/// Where to look for the upstream snapshots: this checkout (the working
/// directory, else where this binary was built from).
pub fn repo_root() -> PathBuf {
    std::env::current_dir()
        .ok()
        .filter(|d| d.join("Cargo.toml").exists())
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.."))
}
