//! `drbridge`: the operator's command line.

mod cluster;
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
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&cli.log))
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Env(cmd) => env::run(cmd).await,
        Command::Cluster(cmd) => cluster::run(cmd).await,
    }
}
