//! Command line of drbridge-storage-simulator. Every flag has an environment fallback.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use drbridge_runtime::LogFormat;

use crate::schedule::parse_interval;

/// drbridge storage simulator: provisions simulated CSI volumes for one provisioner and drives
/// csi-addons VolumeReplications as an asynchronously replicating driver would. A test-bed
/// tool: it keeps state (roles, sync times, PVs), never data.
#[derive(clap::Parser, Clone, Debug)]
#[command(name = "drbridge-storage-simulator", version, about)]
pub struct Args {
    /// Kubeconfig of the cluster whose storage is simulated (default: $KUBECONFIG,
    /// ~/.kube/config, in-cluster).
    #[arg(long, env = "DRBRIDGE_STORAGE_SIM_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// The CSI driver name simulated: StorageClasses and VolumeReplicationClasses with this
    /// provisioner are served (e.g. sim.storage.drbridge.io).
    #[arg(long, env = "DRBRIDGE_STORAGE_SIM_PROVISIONER")]
    pub provisioner: String,
    /// Replication interval for every volume (e.g. 1m, 30s). Default: each
    /// VolumeReplicationClass's parameters.schedulingInterval.
    #[arg(long, env = "DRBRIDGE_STORAGE_SIM_SYNC_INTERVAL", value_parser = interval_arg)]
    pub sync_interval: Option<Duration>,
    /// How long a requested resync (replicationState: resync) takes.
    #[arg(long, env = "DRBRIDGE_STORAGE_SIM_RESYNC_TIME", default_value = "10s", value_parser = interval_arg)]
    pub resync_time: Duration,
    /// Address of /live, /ready and /metrics; not served when not given.
    #[arg(long, env = "DRBRIDGE_STORAGE_SIM_ADMIN_ADDR")]
    pub admin_addr: Option<SocketAddr>,
    #[arg(long, env = "DRBRIDGE_STORAGE_SIM_LOG_FORMAT", value_enum, default_value_t = LogFormat::Plain)]
    pub log_format: LogFormat,
    /// Log filter, RUST_LOG syntax.
    #[arg(long, env = "DRBRIDGE_STORAGE_SIM_LOG", default_value = "info")]
    pub log_filter: String,
}

fn interval_arg(s: &str) -> Result<Duration, String> {
    parse_interval(s).map_err(|e| e.to_string())
}

#[derive(Debug, thiserror::Error)]
pub enum ArgsError {
    #[error(
        "--provisioner {0:?} is not a CSI driver name: at most 63 characters, lowercase letters, digits, '-' and '.', beginning and ending with a letter or digit"
    )]
    Provisioner(String),
}

impl Args {
    /// Checks what clap cannot.
    pub fn validate(&self) -> Result<(), ArgsError> {
        if !is_driver_name(&self.provisioner) {
            return Err(ArgsError::Provisioner(self.provisioner.clone()));
        }
        Ok(())
    }
}

/// A CSI driver name as Kubernetes validates `CSIDriver` names (a DNS subdomain of at most 63
/// characters); lowercase, as StorageClass provisioners are written.
fn is_driver_name(name: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes.first().copied().is_some_and(alnum)
        && bytes.last().copied().is_some_and(alnum)
        && bytes.iter().all(|&b| alnum(b) || b == b'-' || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(extra: &[&str]) -> Result<Args, clap::Error> {
        let mut v = vec!["drbridge-storage-simulator"];
        v.extend_from_slice(extra);
        Args::try_parse_from(v)
    }

    #[test]
    fn defaults() {
        let a = parse(&["--provisioner", "sim.storage.drbridge.io"]).unwrap();
        a.validate().unwrap();
        assert_eq!(a.sync_interval, None);
        assert_eq!(a.resync_time, Duration::from_secs(10));
        assert_eq!(a.admin_addr, None);
        assert_eq!(a.kubeconfig, None);
    }

    #[test]
    fn flags() {
        let a = parse(&[
            "--provisioner",
            "sim.storage.drbridge.io",
            "--sync-interval",
            "30s",
            "--resync-time",
            "1m",
            "--admin-addr",
            "127.0.0.1:0",
            "--kubeconfig",
            "/k",
        ])
        .unwrap();
        assert_eq!(a.sync_interval, Some(Duration::from_secs(30)));
        assert_eq!(a.resync_time, Duration::from_secs(60));
        assert_eq!(a.admin_addr.unwrap().to_string(), "127.0.0.1:0");
        assert!(parse(&["--provisioner", "p", "--sync-interval", "soon"]).is_err());
        assert!(parse(&[]).is_err(), "the provisioner is required");
    }

    #[test]
    fn provisioner_names() {
        for good in ["sim.storage.drbridge.io", "a", "rbd.csi.ceph.com", "x-1"] {
            assert!(is_driver_name(good), "{good}");
        }
        let long = "a".repeat(64);
        for bad in ["", "-a", "a.", "Sim.io", "a/b", "a b", long.as_str()] {
            assert!(!is_driver_name(bad), "{bad}");
        }
    }
}
