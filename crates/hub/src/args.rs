//! The command line of `drbridge-hub` and its checks.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::leader::{self, LeaderOptions};
use crate::{clusters, desired, grpc, join_token, status};
use drbridge_runtime::LogFormat;

/// Command line of `drbridge-hub`. Every flag has an environment fallback.
#[derive(Clone, Debug, clap::Parser)]
#[command(
    name = "drbridge-hub",
    version,
    about = "drbridge hub: dispatches ManifestWorks and ManagedClusterViews to agents"
)]
pub struct Args {
    /// gRPC listen address for agents (mTLS).
    #[arg(long, env = "DRBRIDGE_LISTEN_ADDR", default_value = "0.0.0.0:8443")]
    pub listen_addr: SocketAddr,

    /// Admin HTTP address: /live, /ready, /metrics.
    #[arg(long, env = "DRBRIDGE_ADMIN_ADDR", default_value = "0.0.0.0:9990")]
    pub admin_addr: SocketAddr,

    /// Server certificate (PEM).
    #[arg(long, env = "DRBRIDGE_TLS_CERT")]
    pub tls_cert: PathBuf,

    /// Server private key (PEM).
    #[arg(long, env = "DRBRIDGE_TLS_KEY")]
    pub tls_key: PathBuf,

    /// CA that signs agent client certificates (PEM).
    #[arg(long, env = "DRBRIDGE_TLS_CA")]
    pub tls_ca: PathBuf,

    /// Kubeconfig of the hub cluster; default: kube's inference (KUBECONFIG,
    /// ~/.kube/config, in-cluster).
    #[arg(long, env = "DRBRIDGE_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,

    /// Log format.
    #[arg(long, env = "DRBRIDGE_LOG_FORMAT", value_enum, default_value_t = LogFormat::default())]
    pub log_format: LogFormat,

    /// Log filter (tracing EnvFilter syntax).
    #[arg(long, env = "DRBRIDGE_LOG", default_value = "info")]
    pub log: String,

    /// Identity of this hub process, sent to agents; default: the host name.
    #[arg(long, env = "DRBRIDGE_HUB_ID")]
    pub hub_id: Option<String>,

    /// Heartbeat interval asked of agents (and used for the hub's own keepalives).
    #[arg(long, env = "DRBRIDGE_HEARTBEAT_SECONDS", default_value_t = 5)]
    pub heartbeat_seconds: u64,

    /// Silence after which a cluster's Available condition becomes Unknown.
    #[arg(long, env = "DRBRIDGE_PRESENCE_TIMEOUT_SECONDS", default_value_t = 15)]
    pub presence_timeout_seconds: u64,

    /// Largest encoded Sync message; a work that does not fit alone is rejected
    /// with a condition. The default fits tonic's default 4 MiB decode limit.
    #[arg(long, env = "DRBRIDGE_MAX_SYNC_BYTES", default_value_t = desired::DEFAULT_MAX_SYNC_BYTES)]
    pub max_sync_bytes: usize,

    /// Deadline of each API call of the status writer.
    #[arg(long, env = "DRBRIDGE_PATCH_TIMEOUT_SECONDS", default_value_t = 10)]
    pub patch_timeout_seconds: u64,

    /// Largest message read from an agent; a bigger one ends its stream. Also sets each
    /// cluster's budget of queued reports (8 times this) and each stream's read rate (4 times
    /// this a second). The default (2 MiB) is etcd's object limit plus room: no bigger report
    /// could ever be written (docs/security.md).
    #[arg(long, env = "DRBRIDGE_MAX_REPORT_BYTES", default_value_t = grpc::DEFAULT_MAX_REPORT_BYTES)]
    pub max_report_bytes: usize,

    /// Status writes in flight at once (never two for one object). Throughput is this divided
    /// by the API server's latency: 64 at 1 s a write keeps up with a reconnect storm of
    /// 3,500 agents on a slow API server, far below kube-apiserver's 200 mutating requests.
    #[arg(long, env = "DRBRIDGE_STATUS_WRITES_IN_FLIGHT", default_value_t = status::WriterConfig::DEFAULT_IN_FLIGHT)]
    pub status_writes_in_flight: usize,

    /// Capacity of the status queue (agent reports wait when it is full).
    #[arg(long, env = "DRBRIDGE_STATUS_QUEUE", default_value_t = 4096)]
    pub status_queue: usize,

    /// Namespace of the hub's own state: the CA Secret `drbridge-ca`, join tokens and
    /// cluster identity records.
    #[arg(long, env = "DRBRIDGE_NAMESPACE", default_value = clusters::DEFAULT_NAMESPACE)]
    pub namespace: String,

    /// Listen address for agents joining with a token (TLS, no client certificate).
    #[arg(long, env = "DRBRIDGE_JOIN_ADDR", default_value = "0.0.0.0:8444")]
    pub join_addr: SocketAddr,

    /// Do not open the join listener (certificates are issued some other way).
    #[arg(long, env = "DRBRIDGE_DISABLE_JOIN")]
    pub disable_join: bool,

    /// Lifetime of the client certificates the hub signs (e.g. 24h, 30m, 90s); agents
    /// renew after two thirds of it.
    #[arg(long, env = "DRBRIDGE_CERT_VALIDITY", default_value = "24h", value_parser = join_token::parse_duration)]
    pub cert_validity: Duration,

    /// Refuse clusters that have not joined with a token (no identity record), instead of
    /// accepting any certificate from the CA that names them.
    #[arg(long, env = "DRBRIDGE_REQUIRE_JOIN")]
    pub require_join: bool,

    /// A change its agent has not acknowledged for this long marks the ManagedCluster with
    /// the annotation drbridge.io/oldest-unacknowledged-since.
    #[arg(
        long,
        env = "DRBRIDGE_UNACKNOWLEDGED_THRESHOLD_SECONDS",
        default_value_t = 60
    )]
    pub unacknowledged_threshold_seconds: u64,

    /// Elect a leader among hub replicas on a Lease in --namespace; only the leader serves
    /// agents and writes. Needed for more than one replica; off, this hub always leads.
    #[arg(long, env = "DRBRIDGE_LEADER_ELECTION")]
    pub leader_election: bool,

    /// Name of the Lease of the leader election.
    #[arg(long, env = "DRBRIDGE_LEASE_NAME", default_value = leader::DEFAULT_LEASE_NAME)]
    pub lease_name: String,

    /// How long the other replicas wait after the Lease last changed before taking it. The
    /// default replaces a crashed leader within about 12 s (docs/performance.md).
    #[arg(long, env = "DRBRIDGE_LEASE_DURATION_SECONDS", default_value_t = 10)]
    pub lease_duration_seconds: u64,

    /// The leader stops leading this long after its last successful renewal (below the
    /// lease duration, so it has stopped before another replica can take over).
    #[arg(
        long,
        env = "DRBRIDGE_LEASE_RENEW_DEADLINE_SECONDS",
        default_value_t = 7
    )]
    pub lease_renew_deadline_seconds: u64,

    /// Pause between lease renewals (and attempts to take it).
    #[arg(long, env = "DRBRIDGE_LEASE_RETRY_SECONDS", default_value_t = 2)]
    pub lease_retry_seconds: u64,
}

/// A flag, or a relation between flags, that clap cannot check.
#[derive(Debug, thiserror::Error)]
pub enum ArgsError {
    /// `--{flag}` is below its least value, `{least}` (as the flag is written).
    #[error("--{flag} must be at least {least}")]
    TooSmall {
        flag: &'static str,
        least: &'static str,
    },
    #[error(
        "--presence-timeout-seconds ({presence}) must be at least twice --heartbeat-seconds ({heartbeat})"
    )]
    PresenceTimeout { presence: u64, heartbeat: u64 },
    #[error("--namespace must not be empty")]
    EmptyNamespace,
    /// The lease durations do not fit together; the reason is
    /// [`leader::LeaseConfig::validate`]'s.
    #[error("--lease-*: {0}")]
    Lease(String),
}

impl Args {
    /// Checks relations between flags that clap cannot.
    pub fn validate(&self) -> Result<(), ArgsError> {
        let too_small = |flag, least| Err(ArgsError::TooSmall { flag, least });
        if self.heartbeat_seconds == 0 {
            return too_small("heartbeat-seconds", "1");
        }
        if self.presence_timeout_seconds < 2 * self.heartbeat_seconds {
            return Err(ArgsError::PresenceTimeout {
                presence: self.presence_timeout_seconds,
                heartbeat: self.heartbeat_seconds,
            });
        }
        if self.max_sync_bytes < 64 * 1024 {
            return too_small("max-sync-bytes", "65536");
        }
        if self.max_report_bytes < 64 * 1024 {
            return too_small("max-report-bytes", "65536");
        }
        if self.status_queue == 0 {
            return too_small("status-queue", "1");
        }
        if self.status_writes_in_flight == 0 {
            return too_small("status-writes-in-flight", "1");
        }
        if self.cert_validity < Duration::from_secs(10) {
            return too_small("cert-validity", "10s");
        }
        if self.namespace.is_empty() {
            return Err(ArgsError::EmptyNamespace);
        }
        if self.leader_election {
            self.lease_config("check".into())
                .validate()
                .map_err(ArgsError::Lease)?;
        }
        Ok(())
    }

    /// The leader election these flags ask for, with `identity` as this replica's name.
    pub fn election(&self, identity: &str) -> Option<LeaderOptions> {
        self.leader_election.then(|| LeaderOptions {
            namespace: self.namespace.clone(),
            lease: self.lease_config(identity.to_string()),
        })
    }

    fn lease_config(&self, identity: String) -> leader::LeaseConfig {
        leader::LeaseConfig {
            name: self.lease_name.clone(),
            identity,
            lease_duration: Duration::from_secs(self.lease_duration_seconds),
            renew_deadline: Duration::from_secs(self.lease_renew_deadline_seconds),
            retry_period: Duration::from_secs(self.lease_retry_seconds),
        }
    }

    pub(crate) fn hub_id(&self) -> String {
        self.hub_id
            .clone()
            .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
            .unwrap_or_else(|| format!("drbridge-hub-{}", std::process::id()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(extra: &[&str]) -> Result<Args, clap::Error> {
        let mut argv = vec![
            "drbridge-hub",
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "k.pem",
            "--tls-ca",
            "ca.pem",
        ];
        argv.extend_from_slice(extra);
        Args::try_parse_from(argv)
    }

    #[test]
    fn defaults() {
        let a = parse(&[]).unwrap();
        assert_eq!(a.listen_addr, "0.0.0.0:8443".parse().unwrap());
        assert_eq!(a.admin_addr, "0.0.0.0:9990".parse().unwrap());
        assert_eq!(a.heartbeat_seconds, 5);
        assert_eq!(a.presence_timeout_seconds, 15);
        assert_eq!(a.max_sync_bytes, desired::DEFAULT_MAX_SYNC_BYTES);
        assert_eq!(a.max_report_bytes, 2 * 1024 * 1024);
        assert_eq!(a.log_format, LogFormat::Plain);
        assert!(a.kubeconfig.is_none());
        assert_eq!(a.namespace, "drbridge-system");
        assert_eq!(a.join_addr, "0.0.0.0:8444".parse().unwrap());
        assert_eq!(a.cert_validity, Duration::from_secs(24 * 3600));
        assert!(!a.disable_join && !a.require_join);
        a.validate().unwrap();
        let a = parse(&["--cert-validity", "90s", "--namespace", "ns"]).unwrap();
        assert_eq!(a.cert_validity, Duration::from_secs(90));
        a.validate().unwrap();
        assert!(
            parse(&["--cert-validity", "5s"])
                .unwrap()
                .validate()
                .is_err()
        );
        assert!(parse(&["--cert-validity", "soon"]).is_err());
    }

    #[test]
    fn leader_election_flags() {
        let a = parse(&[]).unwrap();
        assert!(!a.leader_election);
        assert!(a.election("h1").is_none());
        assert_eq!(a.unacknowledged_threshold_seconds, 60);
        let a = parse(&["--leader-election", "--namespace", "ns"]).unwrap();
        a.validate().unwrap();
        let e = a.election("h1").expect("election on");
        assert_eq!(e.namespace, "ns");
        assert_eq!(e.lease.name, "drbridge-hub");
        assert_eq!(e.lease.identity, "h1");
        assert_eq!(e.lease.lease_duration, Duration::from_secs(10));
        assert_eq!(e.lease.renew_deadline, Duration::from_secs(7));
        assert_eq!(e.lease.retry_period, Duration::from_secs(2));
        // The leader must stop before another replica may start.
        let a = parse(&[
            "--leader-election",
            "--lease-duration-seconds",
            "10",
            "--lease-renew-deadline-seconds",
            "10",
        ])
        .unwrap();
        assert!(
            a.validate()
                .unwrap_err()
                .to_string()
                .contains("renew deadline")
        );
        // Unchecked when off.
        let a = parse(&["--lease-renew-deadline-seconds", "99"]).unwrap();
        a.validate().unwrap();
    }

    #[test]
    fn tls_files_are_required() {
        assert!(Args::try_parse_from(["drbridge-hub"]).is_err());
    }

    #[test]
    fn validation() {
        let a = parse(&[
            "--heartbeat-seconds",
            "10",
            "--presence-timeout-seconds",
            "15",
        ])
        .unwrap();
        assert!(a.validate().unwrap_err().to_string().contains("twice"));
        let a = parse(&["--max-sync-bytes", "1000"]).unwrap();
        assert!(a.validate().is_err());
        let a = parse(&["--heartbeat-seconds", "0"]).unwrap();
        assert!(a.validate().is_err());
        let a = parse(&["--log-format", "json", "--hub-id", "h1"]).unwrap();
        assert_eq!(a.log_format, LogFormat::Json);
        assert_eq!(a.hub_id(), "h1");
    }
}
