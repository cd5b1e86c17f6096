//! `drbridge`: the operator's command line.

mod cluster;
mod demo;
mod dr;
mod env;
mod stack;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "drbridge",
    version,
    about = "Regional DR for Kubernetes without OCM"
)]
struct Cli {
    /// Log filter for drbridge's own diagnostics (RUST_LOG syntax).
    #[arg(
        long,
        env = "DRBRIDGE_LOG",
        default_value = "warn,kube_client=off",
        global = true
    )]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// A local multi-cluster environment: real control planes on loopback.
    #[command(subcommand)]
    Env(env::EnvCommand),
    /// Managed clusters of a hub: join (token for a new agent) and remove (revoke).
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// Ramen DR: S3 profiles, DRClusters, DRPolicies, protect, failover, relocate, status.
    /// Also installed as the kubectl plugin `kubectl dr` (link the binary as kubectl-dr).
    Dr(dr::DrArgs),
    /// Ramen's DR end to end on the local test bed: protect, relocate, a real disaster,
    /// failover, heal; with timings.
    Demo(demo::DemoArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Invoked through a `kubectl-dr` link, the binary is `kubectl dr`.
    if dr::invoked_as_plugin(std::env::args_os().next().as_deref()) {
        let cli = dr::PluginCli::parse();
        init_logging(&cli.log);
        return dr::run(cli.dr).await;
    }
    let cli = Cli::parse();
    init_logging(&cli.log);
    match cli.command {
        Command::Env(cmd) => env::run(cmd).await,
        Command::Cluster(cmd) => cluster::run(cmd).await,
        Command::Dr(args) => dr::run(args).await,
        Command::Demo(args) => demo::run(args).await,
    }
}

fn init_logging(filter: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .init();
}
