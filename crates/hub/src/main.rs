use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    drbridge_hub::run(drbridge_hub::Args::parse()).await
}
