use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    drbridge_agent::run(drbridge_agent::Args::parse()).await
}
