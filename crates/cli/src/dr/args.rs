//! The command line of `drbridge dr` (and of `kubectl dr`): every command's flags, with
//! the defaults they share.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use drbridge_dr::consts::config as ramen_config;

use super::hub;

/// `drbridge dr ...` / `kubectl dr ...`.
#[derive(Debug, Args)]
pub struct DrArgs {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: DrCommand,
}

/// Options of every `dr` command.
#[derive(Debug, Args, Clone)]
pub struct Global {
    /// Kubeconfig of the Ramen hub (default: $KUBECONFIG, ~/.kube/config, in-cluster).
    #[arg(long, global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context to use.
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Ramen's ops namespace (RamenConfig `ramenOpsNamespace`): where discovered applications'
    /// DRPlacementControls and Placements live.
    #[arg(
        long,
        global = true,
        env = "DRBRIDGE_RAMEN_OPS_NAMESPACE",
        default_value = ramen_config::DEFAULT_OPS_NAMESPACE
    )]
    pub ops_namespace: String,
    /// Namespace of Ramen's operators (their RamenConfig ConfigMap and S3 Secrets).
    #[arg(
        long,
        global = true,
        env = "DRBRIDGE_RAMEN_NAMESPACE",
        default_value = ramen_config::DEFAULT_OPERATOR_NAMESPACE
    )]
    pub ramen_namespace: String,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
    Yaml,
}

#[derive(Debug, Subcommand)]
pub enum DrCommand {
    /// S3 profiles in Ramen's configuration (where PV metadata is stored).
    #[command(subcommand, name = "s3-profile")]
    S3Profile(S3ProfileCommand),
    /// DRClusters: Ramen's settings for each managed cluster.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// DRPolicies: the DR relationship of two clusters.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Protect a discovered application: a Placement managed by Ramen and a DRPlacementControl.
    Protect(ProtectArgs),
    /// Fail an application over to its peer cluster (unplanned: accepts data loss since the
    /// last sync).
    Failover(ActionArgs),
    /// Relocate an application to another cluster (planned: final sync, no data loss,
    /// downtime).
    Relocate(ActionArgs),
    /// Clear the action of a DRPlacementControl after it completed (and its failoverCluster).
    Clear(ClearArgs),
    /// Remove the protection of an application: delete its DRPlacementControl and Placement.
    /// The application and its PVCs stay where they run; Ramen deletes its VRGs.
    Disable(DisableArgs),
    /// Status of protected applications; with NAME, the detail of one.
    Status(StatusArgs),
    /// A read-only web page of clusters, protected applications and the transport, live.
    Dashboard(super::dashboard::DashboardArgs),
}

#[derive(Debug, Subcommand)]
pub enum S3ProfileCommand {
    /// Add (or update) an S3 profile in the hub's RamenConfig and its credentials Secret, and
    /// with --managed-kubeconfig on managed clusters too.
    Add(Box<S3ProfileAddArgs>),
    /// List the hub's S3 profiles.
    List,
}

#[derive(Debug, Args)]
pub struct S3ProfileAddArgs {
    /// Profile name (DRClusters refer to it).
    pub name: String,
    /// Bucket; it must exist (Ramen never creates buckets).
    #[arg(long)]
    pub bucket: String,
    /// S3 endpoint URL, e.g. http://minio.example:9000.
    #[arg(long)]
    pub endpoint: String,
    /// S3 region.
    #[arg(long, default_value = "us-east-1")]
    pub region: String,
    /// Access key id.
    #[arg(long, env = "AWS_ACCESS_KEY_ID", hide_env_values = true)]
    pub access_key_id: Option<String>,
    /// Secret access key (prefer the environment variable to the flag).
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub secret_access_key: Option<String>,
    /// Name of the credentials Secret (default: <profile>-s3-secret).
    #[arg(long)]
    pub secret_name: Option<String>,
    /// PEM file with the CA certificates of the endpoint.
    #[arg(long)]
    pub ca_cert: Option<PathBuf>,
    /// Also configure a managed cluster: NAME=KUBECONFIG (repeatable). Writes the profile to
    /// its ramen-dr-cluster-operator-config, the Secret, and the Velero copy of the Secret.
    #[arg(long, value_name = "NAME=KUBECONFIG")]
    pub managed_kubeconfig: Vec<String>,
    /// Velero's namespace on managed clusters.
    #[arg(long, default_value = ramen_config::DEFAULT_VELERO_NAMESPACE)]
    pub velero_namespace: String,
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Create (or update) the DRCluster of a managed cluster.
    Add(ClusterAddArgs),
    /// List DRClusters with their validation and connection.
    List,
}

#[derive(Debug, Args)]
pub struct ClusterAddArgs {
    /// The managed cluster's name (the DRCluster has the same name).
    pub name: String,
    /// S3 profile for the cluster's PV metadata.
    #[arg(long)]
    pub s3_profile: String,
    /// Region (clusters in one region are Metro DR peers; leave empty for Regional DR).
    #[arg(long)]
    pub region: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Create (or update) a DRPolicy for two clusters.
    Create(PolicyCreateArgs),
    /// List DRPolicies with their validation.
    List,
}

#[derive(Debug, Args)]
pub struct PolicyCreateArgs {
    /// Policy name.
    pub name: String,
    /// The two clusters, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    pub clusters: Vec<String>,
    /// Replication interval: the RPO target (e.g. 5m, 1h, 1d).
    #[arg(long)]
    pub scheduling_interval: String,
    /// Label selector of the VolumeReplicationClasses (default: all).
    #[arg(long, default_value = "")]
    pub replication_class_selector: String,
    /// Label selector of the VolumeSnapshotClasses (VolSync; default: all).
    #[arg(long, default_value = "")]
    pub volume_snapshot_class_selector: String,
}

#[derive(Debug, Args)]
pub struct ProtectArgs {
    /// Name of the DRPlacementControl and its Placement.
    pub name: String,
    /// The application's namespace(s) on the managed clusters.
    #[arg(long = "namespace", value_delimiter = ',', required = true)]
    pub namespaces: Vec<String>,
    /// Label selector of the PVCs to protect.
    #[arg(long)]
    pub pvc_selector: String,
    /// Label selector of the kube objects to protect (default: every object in the namespaces).
    #[arg(long)]
    pub kube_object_selector: Option<String>,
    /// The cluster the application runs on now.
    #[arg(long)]
    pub preferred_cluster: String,
    /// The DRPolicy.
    #[arg(long)]
    pub policy: String,
    /// ManagedClusterSet of the Placement (optional; Ramen schedules it).
    #[arg(long)]
    pub cluster_set: Option<String>,
    /// Wait until the application is protected (deployed, peer ready, first sync done).
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits.
    #[arg(long, default_value = "10m", value_parser = parse_timeout)]
    pub timeout: Duration,
}

#[derive(Debug, Args)]
pub struct ActionArgs {
    /// The DRPlacementControl.
    pub name: String,
    /// The target cluster.
    #[arg(long)]
    pub to: String,
    /// Override the checks that can be overridden.
    #[arg(long)]
    pub force: bool,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Follow the action until it completes or fails.
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits.
    #[arg(long, default_value = "15m", value_parser = parse_timeout)]
    pub timeout: Duration,
}

#[derive(Debug, Args)]
pub struct ClearArgs {
    /// The DRPlacementControl.
    pub name: String,
    /// Clear even though the action has not completed.
    #[arg(long)]
    pub force: bool,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct DisableArgs {
    /// The DRPlacementControl.
    pub name: String,
    /// Remove protection even though an action is underway or a cluster is unreachable.
    #[arg(long)]
    pub force: bool,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Return once the deletion is requested instead of following Ramen's cleanup.
    #[arg(long)]
    pub no_wait: bool,
    /// How long to follow the cleanup.
    #[arg(long, default_value = "10m", value_parser = parse_timeout)]
    pub timeout: Duration,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// A DRPlacementControl: show its detail.
    pub name: Option<String>,
    /// Keep watching and print again on every change.
    #[arg(long, short = 'w')]
    pub watch: bool,
}

pub(crate) fn parse_timeout(s: &str) -> Result<Duration, String> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?}: expected e.g. 90s, 15m, 1h"))?;
    let secs = match unit {
        "s" | "" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("{s:?}: expected e.g. 90s, 15m, 1h")),
    };
    Ok(Duration::from_secs(secs))
}

/// `kubectl dr ...`: the binary invoked through a `kubectl-dr` link.
#[derive(Debug, Parser)]
#[command(
    name = "kubectl-dr",
    bin_name = "kubectl dr",
    version,
    about = "Ramen DR operations (drbridge dr as a kubectl plugin)"
)]
pub struct PluginCli {
    /// Log filter for drbridge's own diagnostics (RUST_LOG syntax).
    #[arg(
        long,
        env = "DRBRIDGE_LOG",
        default_value = "warn,kube_client=off",
        global = true
    )]
    pub log: String,
    #[command(flatten)]
    pub dr: DrArgs,
}

/// Whether the binary was invoked as the kubectl plugin (`kubectl-dr`, any extension).
pub fn invoked_as_plugin(argv0: Option<&std::ffi::OsStr>) -> bool {
    argv0
        .map(std::path::Path::new)
        .and_then(|p| p.file_stem())
        .is_some_and(|s| s == "kubectl-dr")
}

/// The ops namespace `dr` uses when none is given (Ramen's default `ramenOpsNamespace`).
pub(crate) fn default_ops_namespace() -> String {
    std::env::var("DRBRIDGE_RAMEN_OPS_NAMESPACE")
        .unwrap_or_else(|_| ramen_config::DEFAULT_OPS_NAMESPACE.to_string())
}

impl Global {
    /// A client of the Ramen hub these flags name.
    pub(crate) async fn hub_client(&self) -> anyhow::Result<kube::Client> {
        hub::client(self.kubeconfig.as_deref(), self.context.as_deref()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts() {
        assert_eq!(parse_timeout("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_timeout("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_timeout("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_timeout("30"), Ok(Duration::from_secs(30)));
        assert!(parse_timeout("1d").is_err());
        assert!(parse_timeout("m").is_err());
    }

    #[test]
    fn plugin_name_from_argv0() {
        use std::ffi::OsStr;
        assert!(invoked_as_plugin(Some(OsStr::new(
            "/home/u/.local/bin/kubectl-dr"
        ))));
        assert!(invoked_as_plugin(Some(OsStr::new("kubectl-dr.exe"))));
        assert!(!invoked_as_plugin(Some(OsStr::new("/usr/bin/drbridge"))));
        assert!(!invoked_as_plugin(Some(OsStr::new("kubectl-drx"))));
        assert!(!invoked_as_plugin(None));
    }

    #[test]
    fn the_cli_is_consistent() {
        use clap::CommandFactory;
        PluginCli::command().debug_assert();
    }
}
