use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    drbridge_storage_simulator::run(drbridge_storage_simulator::Args::parse()).await
}
