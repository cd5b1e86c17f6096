use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // The library's error, with its chain of causes, as anyhow prints it.
    drbridge_agent::run(drbridge_agent::Args::parse()).await?;
    Ok(())
}
