use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // The library's error, with its chain of causes, as anyhow prints it.
    drbridge_storage_simulator::run(drbridge_storage_simulator::Args::parse()).await?;
    Ok(())
}
