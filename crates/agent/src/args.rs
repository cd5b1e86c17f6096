//! Command line of drbridge-agent.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use drbridge_model::Allowlist;
use drbridge_runtime::LogFormat;

/// drbridge agent: applies the hub's ManifestWorks on this cluster and serves its views.
#[derive(clap::Parser, Clone, Debug)]
#[command(name = "drbridge-agent", version, about)]
pub struct Args {
    /// The hub's gRPC endpoint, `https://host:port`.
    #[arg(long, env = "DRBRIDGE_HUB_ENDPOINT")]
    pub hub_endpoint: String,
    /// Name expected in the hub's certificate (default: the endpoint's host).
    #[arg(long, env = "DRBRIDGE_HUB_SERVER_NAME")]
    pub hub_server_name: Option<String>,
    /// Client certificate (PEM, may hold a chain); re-read on every connection.
    #[arg(long, env = "DRBRIDGE_TLS_CERT")]
    pub tls_cert: PathBuf,
    /// Client private key (PEM).
    #[arg(long, env = "DRBRIDGE_TLS_KEY")]
    pub tls_key: PathBuf,
    /// CA certificates that sign the hub's certificate (PEM).
    #[arg(long, env = "DRBRIDGE_TLS_CA")]
    pub tls_ca: PathBuf,
    /// This cluster's name; must match the name in the client certificate.
    #[arg(long, env = "DRBRIDGE_CLUSTER")]
    pub cluster: String,
    /// Kubeconfig of the managed cluster (default: $KUBECONFIG, ~/.kube/config, in-cluster).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Address of /live, /ready and /metrics.
    #[arg(long, env = "DRBRIDGE_ADMIN_ADDR", default_value = "0.0.0.0:9991")]
    pub admin_addr: SocketAddr,
    #[arg(long, env = "DRBRIDGE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Plain)]
    pub log_format: LogFormat,
    /// Log filter, RUST_LOG syntax.
    #[arg(long, env = "DRBRIDGE_LOG", default_value = "info")]
    pub log_filter: String,
    /// JSON file with the kinds and namespaces this agent may write (default: what Ramen sends).
    #[arg(long, env = "DRBRIDGE_ALLOWLIST", conflicts_with = "allow_all")]
    pub allowlist: Option<PathBuf>,
    /// Allow every kind in every namespace.
    #[arg(long, env = "DRBRIDGE_ALLOW_ALL")]
    pub allow_all: bool,
    /// The agent's own namespace (its credentials and configuration): denied to every work
    /// and view, whatever the allowlist says.
    #[arg(long, env = "DRBRIDGE_NAMESPACE")]
    pub namespace: Option<String>,
    /// Largest total size of a work's manifests, bytes.
    #[arg(long, env = "DRBRIDGE_MAX_WORK_BYTES", default_value_t = drbridge_model::manifest::DEFAULT_MAX_WORK_BYTES)]
    pub max_work_bytes: usize,
    /// Re-apply every work this often (drift correction), seconds; 0 disables.
    #[arg(long, env = "DRBRIDGE_REAPPLY_SECONDS", default_value_t = 300)]
    pub reapply_seconds: u64,
    /// Quiet time before a status is recomputed after changes, milliseconds.
    #[arg(long, env = "DRBRIDGE_STATUS_DEBOUNCE_MS", default_value_t = 50)]
    pub status_debounce_ms: u64,
    /// Longest pause between connection attempts, seconds.
    #[arg(long, env = "DRBRIDGE_MAX_BACKOFF_SECONDS", default_value_t = 30)]
    pub max_backoff_seconds: u64,
    #[command(flatten)]
    pub join: JoinArgs,
}

/// Flags for joining and certificate rotation (flattened into [`Args`]). `Debug`
/// shows only the token's id.
#[derive(clap::Args, Clone, Default)]
pub struct JoinArgs {
    /// Single-use join token from `drbridge cluster join` on the hub. Used only while the agent
    /// has no certificate made with it.
    #[arg(long, env = "DRBRIDGE_JOIN_TOKEN", hide_env_values = true)]
    pub join_token: Option<String>,
    /// The hub's join endpoint, `https://host:port` (default: the hub endpoint's host, port
    /// 8444).
    #[arg(long, env = "DRBRIDGE_JOIN_ENDPOINT")]
    pub join_endpoint: Option<String>,
    /// CA certificates that verify the hub during the join (default: --tls-ca).
    #[arg(long, env = "DRBRIDGE_JOIN_CA")]
    pub join_ca: Option<PathBuf>,
    /// Secret on this cluster in which the agent keeps its key, certificate and CA, so a
    /// restarted pod keeps its identity.
    #[arg(long, env = "DRBRIDGE_TLS_SECRET")]
    pub tls_secret: Option<String>,
    /// Namespace of --tls-secret (default: the agent's own, from its service account).
    #[arg(long, env = "DRBRIDGE_TLS_SECRET_NAMESPACE")]
    pub tls_secret_namespace: Option<String>,
    /// Renew the client certificate with the hub before it expires even without a join token
    /// (on by default with one). Leave off when something else (cert-manager) rotates it.
    #[arg(long, env = "DRBRIDGE_ROTATE_CERTIFICATE")]
    pub rotate_certificate: bool,
}

impl std::fmt::Debug for JoinArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let id = self
            .join_token
            .as_deref()
            .map(|t| token_id(t).unwrap_or("<malformed>"));
        f.debug_struct("JoinArgs")
            .field("join_token_id", &id)
            .field("join_endpoint", &self.join_endpoint)
            .field("join_ca", &self.join_ca)
            .field("tls_secret", &self.tls_secret)
            .field("tls_secret_namespace", &self.tls_secret_namespace)
            .field("rotate_certificate", &self.rotate_certificate)
            .finish()
    }
}

/// The id, the public half, of a join token `id.secret`; `None` when it is malformed.
pub(crate) fn token_id(token: &str) -> Option<&str> {
    token.trim().split_once('.').map(|(id, _)| id)
}

#[derive(Debug, thiserror::Error)]
pub enum ArgsError {
    #[error("--hub-endpoint {0:?} must be https://host:port")]
    Endpoint(String),
    #[error("--cluster: {0}")]
    Cluster(String),
    #[error("reading --allowlist {path}: {reason}")]
    Allowlist { path: PathBuf, reason: String },
}

impl Args {
    /// Checks what clap cannot.
    pub fn validate(&self) -> Result<(), ArgsError> {
        self.server_name()?;
        drbridge_tls::ClusterName::new(self.cluster.clone())
            .map_err(|e| ArgsError::Cluster(e.to_string()))?;
        Ok(())
    }

    /// The expected hub certificate name.
    pub fn server_name(&self) -> Result<String, ArgsError> {
        if let Some(n) = &self.hub_server_name {
            return Ok(n.clone());
        }
        let rest = self
            .hub_endpoint
            .strip_prefix("https://")
            .ok_or_else(|| ArgsError::Endpoint(self.hub_endpoint.clone()))?;
        let authority = rest.split('/').next().unwrap_or("");
        let host = if let Some(v6) = authority.strip_prefix('[') {
            v6.split(']').next().unwrap_or("")
        } else {
            authority
                .rsplit_once(':')
                .map(|(h, _)| h)
                .unwrap_or(authority)
        };
        if host.is_empty() {
            return Err(ArgsError::Endpoint(self.hub_endpoint.clone()));
        }
        Ok(host.to_string())
    }

    /// The allowlist to enforce, with the agent's own namespace denied.
    pub fn allowlist(&self) -> Result<Allowlist, ArgsError> {
        let mut allowlist = self.configured_allowlist()?;
        if let Some(ns) = &self.namespace {
            allowlist.deny_namespace(ns);
        }
        Ok(allowlist)
    }

    fn configured_allowlist(&self) -> Result<Allowlist, ArgsError> {
        if self.allow_all {
            return Ok(Allowlist::allow_all());
        }
        let Some(path) = &self.allowlist else {
            return Ok(Allowlist::default());
        };
        let fail = |reason: String| ArgsError::Allowlist {
            path: path.clone(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
        serde_json::from_slice(&bytes).map_err(|e| fail(e.to_string()))
    }

    pub fn reapply(&self) -> Option<Duration> {
        (self.reapply_seconds > 0).then(|| Duration::from_secs(self.reapply_seconds))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(extra: &[&str]) -> Args {
        let mut v = vec![
            "drbridge-agent",
            "--hub-endpoint",
            "https://hub.example:8443",
            "--tls-cert",
            "c.crt",
            "--tls-key",
            "c.key",
            "--tls-ca",
            "ca.crt",
            "--cluster",
            "dr1",
        ];
        v.extend_from_slice(extra);
        Args::try_parse_from(v).unwrap()
    }

    #[test]
    fn defaults() {
        let a = parse(&[]);
        a.validate().unwrap();
        assert_eq!(a.server_name().unwrap(), "hub.example");
        assert_eq!(a.admin_addr.to_string(), "0.0.0.0:9991");
        assert_eq!(
            a.max_work_bytes,
            drbridge_model::manifest::DEFAULT_MAX_WORK_BYTES
        );
        assert_eq!(a.reapply(), Some(Duration::from_secs(300)));
        assert_eq!(a.allowlist().unwrap(), Allowlist::default());
        assert_eq!(a.log_format, LogFormat::Plain);
    }

    #[test]
    fn server_name_and_validation() {
        let a = parse(&["--hub-server-name", "hub.drbridge.svc"]);
        assert_eq!(a.server_name().unwrap(), "hub.drbridge.svc");
        let mut a = parse(&[]);
        a.hub_endpoint = "https://[::1]:8443".into();
        assert_eq!(a.server_name().unwrap(), "::1");
        a.hub_endpoint = "http://hub:80".into();
        assert!(a.validate().is_err());
        let mut a = parse(&[]);
        a.cluster = "Not A Name".into();
        assert!(a.validate().is_err());
        assert_eq!(parse(&["--reapply-seconds", "0"]).reapply(), None);
        assert_eq!(
            parse(&["--allow-all"]).allowlist().unwrap(),
            Allowlist::allow_all()
        );
        // The agent's own namespace is denied, even with --allow-all.
        for extra in [
            &["--namespace", "drbridge-agent"][..],
            &["--namespace", "drbridge-agent", "--allow-all"],
        ] {
            let a = parse(extra).allowlist().unwrap();
            assert!(
                a.check(
                    "",
                    "ConfigMap",
                    "drbridge-agent",
                    "drbridge-agent-allowlist"
                )
                .is_err()
            );
            assert!(a.check("", "Namespace", "", "drbridge-agent").is_err());
            assert!(
                a.check_view("", "namespaces", "", "drbridge-agent")
                    .is_err()
            );
            assert!(a.protects("", "Namespace", "drbridge-agent"));
        }
    }

    #[test]
    fn allowlist_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.json");
        std::fs::write(
            &p,
            r#"{"kinds":[{"group":"","kind":"ConfigMap"}],"namespaces":{"allow":["*"]}}"#,
        )
        .unwrap();
        let a = parse(&["--allowlist", p.to_str().unwrap()]);
        assert!(
            a.allowlist()
                .unwrap()
                .check("", "ConfigMap", "x", "y")
                .is_ok()
        );
        std::fs::write(&p, "nope").unwrap();
        assert!(a.allowlist().is_err());
    }

    #[test]
    fn debug_hides_the_token_secret() {
        let args = JoinArgs {
            join_token: Some("0123456789abcdef.s3cr3t".into()),
            ..Default::default()
        };
        let dbg = format!("{args:?}");
        assert!(
            dbg.contains("0123456789abcdef") && !dbg.contains("s3cr3t"),
            "{dbg}"
        );
    }
}
