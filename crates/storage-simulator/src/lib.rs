//! drbridge's storage simulator: a small controller for test beds, named as a simulator
//! everywhere (binary, logs, condition messages, PV labels and volume handles).
//!
//! For one CSI driver name (`--provisioner`) it
//! * provisions a CSI PV, pre-bound to the claim, for each PVC of a StorageClass with that
//!   provisioner, and deletes Released PVs of that driver whose reclaim policy is Delete
//!   ([`provision`]); PVs it did not make (restored by Ramen) are served the same way;
//! * drives csi-addons VolumeReplications whose class has that provisioner as an
//!   asynchronously replicating driver would: promote, demote, resync, `lastSyncTime` on the
//!   schedule, refusals with a condition that says why ([`replication`], [`validate`]).
//!
//! It simulates state, never data. The logic is pure and tested without a cluster; the
//! [`controller`] module wires it to an API server. See README.md in this crate.

pub mod args;
pub mod controller;
pub mod crds;
pub mod metrics;
pub mod provision;
pub mod replication;
pub mod schedule;
pub mod types;
pub mod validate;

use std::sync::Arc;

use drbridge_runtime::prometheus_client::registry::Registry;
use tokio::sync::watch;
use tracing::info;

pub use args::{Args, ArgsError};

/// Why [`run`] stopped before SIGINT or SIGTERM asked it to.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Args(#[from] ArgsError),
    /// Logging or the admin server failed.
    #[error(transparent)]
    Runtime(#[from] drbridge_runtime::Error),
    #[error(transparent)]
    KubeClient(#[from] drbridge_runtime::KubeClientError),
    /// The admin server's task panicked or was cancelled.
    #[error(transparent)]
    Task(#[from] tokio::task::JoinError),
}

/// The binary: parses nothing (clap did), starts logging, the optional admin server and the
/// controllers, and runs until SIGINT or SIGTERM.
pub async fn run(args: Args) -> Result<(), RunError> {
    // One crypto provider for the process; a second install attempt is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    drbridge_runtime::init_tracing(args.log_format, &args.log_filter)?;
    args.validate()?;
    info!(
        provisioner = %args.provisioner,
        sync_interval = ?args.sync_interval,
        resync_time = ?args.resync_time,
        "starting drbridge-storage-simulator (simulated storage: no data is stored or copied)"
    );

    let mut registry = Registry::default();
    let metrics = metrics::Metrics::register(&mut registry);
    let (ready_tx, ready_rx) = watch::channel(false);
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        drbridge_runtime::shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };

    let admin_task = match args.admin_addr {
        Some(addr) => {
            let admin = drbridge_runtime::Admin::bind(addr, Arc::new(registry), ready_rx).await?;
            Some(tokio::spawn(admin.serve(stopped(stop_rx.clone()))))
        }
        None => None,
    };

    let client = drbridge_runtime::kube_client(args.kubeconfig.as_deref(), None).await?;
    let config = controller::Config {
        provisioner: args.provisioner.clone(),
        sync_interval: args.sync_interval,
        resync_time: args.resync_time,
    };
    let _ = ready_tx.send(true);
    controller::run(client, config, metrics, stopped(stop_rx)).await;
    info!("drbridge-storage-simulator stopped");
    if let Some(task) = admin_task {
        task.await??;
    }
    Ok(())
}
