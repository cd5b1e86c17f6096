use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // The library's error, with its chain of causes, as anyhow prints it.
    drbridge_hub::run(drbridge_hub::Args::parse()).await?;
    Ok(())
}
