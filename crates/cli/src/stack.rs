//! Runs drbridge itself in a local environment: the hub on the hub cluster and
//! one agent per managed cluster, as processes with their own certificates.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use drbridge_localenv::Env;
use drbridge_localenv::bridge::{BridgePki, prepare_hub, prepare_managed};
use drbridge_localenv::process::free_port;

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
        let hub = hub.unwrap_or_else(|| dir.join("drbridge-hub"));
        let agent = agent.unwrap_or_else(|| dir.join("drbridge-agent"));
        // Under `cargo run`, build the siblings so they match this binary's source.
        if let Some(cargo) = std::env::var_os("CARGO") {
            let release = dir.ends_with("release");
            eprintln!("… building drbridge-hub and drbridge-agent");
            let mut cmd = std::process::Command::new(cargo);
            cmd.args([
                "build",
                "--quiet",
                "-p",
                "drbridge-hub",
                "-p",
                "drbridge-agent",
            ]);
            if release {
                cmd.arg("--release");
            }
            let status = cmd.status().context("running cargo build")?;
            if !status.success() {
                bail!("building drbridge-hub and drbridge-agent failed");
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

/// Starts the hub and the agents of every cluster after the first, and waits
/// until every ManagedCluster is Available.
pub async fn start(env: &mut Env, bins: &Binaries, timeout: Duration) -> anyhow::Result<String> {
    let names = env.cluster_names();
    let (hub_name, managed) = names.split_first().context("no clusters")?;
    let managed: Vec<String> = managed.to_vec();
    let hub = env.client(hub_name).await?;
    prepare_hub(&hub, &managed)
        .await
        .context("installing CRDs and ManagedClusters on the hub")?;
    for m in &managed {
        prepare_managed(&env.client(m).await?)
            .await
            .with_context(|| format!("installing CRDs on {m}"))?;
    }
    let pki = BridgePki::ensure(&env.dir().join("drbridge-pki"))?;
    let port = free_port()?;
    let endpoint = format!("https://127.0.0.1:{port}");
    let hub_tls = pki.hub();
    let s = |p: &Path| p.display().to_string();
    let hub_args = vec![
        format!("--listen-addr=127.0.0.1:{port}"),
        format!("--admin-addr=127.0.0.1:{}", free_port()?),
        // Its own loopback port: the default 0.0.0.0:8444 is taken as soon
        // as a second environment runs on the machine.
        format!("--join-addr=127.0.0.1:{}", free_port()?),
        format!("--tls-cert={}", s(&hub_tls.cert)),
        format!("--tls-key={}", s(&hub_tls.key)),
        format!("--tls-ca={}", s(&hub_tls.ca)),
        format!("--kubeconfig={}", s(&env.kubeconfig(hub_name)?)),
        "--hub-id=local".into(),
    ];
    env.spawn("drbridge-hub", &bins.hub, &hub_args, &[])?;
    for m in &managed {
        let tls = pki.agent(m)?;
        let args = vec![
            format!("--hub-endpoint={endpoint}"),
            "--hub-server-name=localhost".into(),
            format!("--tls-cert={}", s(&tls.cert)),
            format!("--tls-key={}", s(&tls.key)),
            format!("--tls-ca={}", s(&tls.ca)),
            format!("--cluster={m}"),
            format!("--kubeconfig={}", s(&env.kubeconfig(m)?)),
            format!("--admin-addr=127.0.0.1:{}", free_port()?),
        ];
        env.spawn(&format!("drbridge-agent-{m}"), &bins.agent, &args, &[])?;
    }

    // Every agent connected and heartbeating.
    let mcs: kube::Api<drbridge_api::cluster::ManagedCluster> = kube::Api::all(hub);
    let deadline = Instant::now() + timeout;
    for m in &managed {
        loop {
            let available = mcs
                .get_opt(m)
                .await
                .ok()
                .flatten()
                .and_then(|mc| mc.status)
                .is_some_and(|st| {
                    st.conditions.iter().any(|c| {
                        c.type_ == "ManagedClusterConditionAvailable" && c.status == "True"
                    })
                });
            if available {
                break;
            }
            for p in ["drbridge-hub".to_string(), format!("drbridge-agent-{m}")] {
                if !env.process_running(&p) {
                    let log = env.log_path(&p);
                    bail!(
                        "{p} exited; its log {}:\n{}",
                        log.display(),
                        drbridge_localenv::process::log_tail(&log, 15)
                    );
                }
            }
            if Instant::now() >= deadline {
                bail!(
                    "ManagedCluster {m} did not become Available; see {} and {}",
                    env.log_path("drbridge-hub").display(),
                    env.log_path(&format!("drbridge-agent-{m}")).display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(endpoint)
}
