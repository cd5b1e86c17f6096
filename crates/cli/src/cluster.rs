//! `drbridge cluster join|remove`: membership of managed clusters, run against the hub.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use drbridge_hub::clusters::{self, DEFAULT_NAMESPACE};
use drbridge_hub::join_token::parse_duration;
use drbridge_tls::ClusterName;

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Register a managed cluster and print a single-use join token and the agent's values.
    ///
    /// Creates the cluster's hub namespace and ManagedCluster if absent (and the hub's CA
    /// Secret if there is none). The agent generates its own key on the managed cluster and
    /// trades the token for a client certificate; no private key is copied.
    Join(JoinArgs),
    /// Revoke a managed cluster's certificates: its agent is refused from now on, an open
    /// stream ends at once, and unused join tokens are deleted.
    Remove(RemoveArgs),
}

#[derive(Debug, Args)]
pub struct HubArgs {
    /// Kubeconfig of the hub cluster (default: $KUBECONFIG, ~/.kube/config, in-cluster).
    #[arg(long, env = "DRBRIDGE_HUB_KUBECONFIG")]
    pub hub_kubeconfig: Option<PathBuf>,
    /// The hub's namespace (its CA, join tokens and identity records).
    #[arg(long, env = "DRBRIDGE_NAMESPACE", default_value = DEFAULT_NAMESPACE)]
    pub namespace: String,
}

#[derive(Debug, Args)]
pub struct JoinArgs {
    /// The managed cluster's name (a DNS label).
    pub name: ClusterName,
    #[command(flatten)]
    pub hub: HubArgs,
    /// How long the token may be used (e.g. 15m, 1h, 2d).
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub ttl: Duration,
    /// The hub's agent endpoint as managed clusters reach it, for the printed values.
    #[arg(long, env = "DRBRIDGE_HUB_ENDPOINT")]
    pub hub_endpoint: Option<String>,
    /// The hub's join endpoint (default: the agent endpoint's host, port 8444).
    #[arg(long)]
    pub join_endpoint: Option<String>,
    /// Print only the token.
    #[arg(long)]
    pub token_only: bool,
}

#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// The managed cluster's name.
    pub name: ClusterName,
    #[command(flatten)]
    pub hub: HubArgs,
    /// Also delete the ManagedCluster (the hub then releases the finalizers of the cluster's
    /// ManifestWorks, since no agent can confirm their deletion any more).
    #[arg(long)]
    pub delete_managed_cluster: bool,
}

pub async fn run(cmd: ClusterCommand) -> anyhow::Result<()> {
    match cmd {
        ClusterCommand::Join(a) => join(a).await,
        ClusterCommand::Remove(a) => remove(a).await,
    }
}

async fn hub_client(args: &HubArgs) -> anyhow::Result<kube::Client> {
    drbridge_runtime::kube_client(args.hub_kubeconfig.as_deref(), None)
        .await
        .context("the hub's client (--hub-kubeconfig, KUBECONFIG, ~/.kube/config)")
}

async fn join(args: JoinArgs) -> anyhow::Result<()> {
    let _ = drbridge_tls::rustls::crypto::ring::default_provider().install_default();
    let client = hub_client(&args.hub).await?;
    let ns = &args.hub.namespace;
    let (ca, created) = clusters::ensure_ca(&client, ns).await?;
    if created {
        eprintln!(
            "Created the CA Secret {ns}/{}. The hub must trust it for client certificates \
             (--tls-ca) and serve a certificate it signed (or set ca.crt in the Secret to the \
             CA of the hub's serving certificate).",
            clusters::CA_SECRET
        );
    }
    clusters::register_cluster(&client, &args.name).await?;
    let (token, expires) = clusters::create_join_token(&client, ns, &args.name, args.ttl).await?;
    if args.token_only {
        println!("{}", token.expose());
        return Ok(());
    }
    let endpoint = args
        .hub_endpoint
        .clone()
        .unwrap_or_else(|| "https://HUB-ADDRESS:8443".to_owned());
    let join_endpoint = match (&args.join_endpoint, &args.hub_endpoint) {
        (Some(e), _) => e.clone(),
        (None, Some(hub)) => drbridge_agent_join_endpoint(hub)?,
        (None, None) => "https://HUB-ADDRESS:8444".to_owned(),
    };
    eprintln!(
        "Cluster {name} is registered. Its join token is single-use and expires at {expires}.\n\
         Install the agent on {name} with the values below (docs/install.md), e.g.:\n  \
         drbridge cluster join {name} ... > {name}-agent.yaml\n  \
         helm install drbridge-agent charts/drbridge-agent -n drbridge-agent --create-namespace -f {name}-agent.yaml",
        name = args.name
    );
    if args.hub_endpoint.is_none() {
        eprintln!(
            "No --hub-endpoint: replace HUB-ADDRESS in hub.endpoint and join.endpoint with the \
             address managed clusters reach the hub's Service at."
        );
    }
    print!(
        "{}",
        agent_values(
            args.name.as_str(),
            &endpoint,
            &join_endpoint,
            &token.expose(),
            &ca.bundle_pem
        )
    );
    Ok(())
}

/// `https://host:8444` for `https://host:port`.
fn drbridge_agent_join_endpoint(hub: &str) -> anyhow::Result<String> {
    let rest = hub
        .strip_prefix("https://")
        .with_context(|| format!("--hub-endpoint {hub:?} must be https://host:port"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    // An IPv6 literal keeps its brackets.
    let host = match authority.find(']') {
        Some(end) if authority.starts_with('[') => &authority[..=end],
        _ => authority.split(':').next().unwrap_or_default(),
    };
    anyhow::ensure!(!host.is_empty(), "--hub-endpoint {hub:?} has no host");
    Ok(format!("https://{host}:8444"))
}

/// Values for the drbridge-agent chart (`helm install -f`), keys as in
/// charts/drbridge-agent/values.yaml; tests/integration/fixtures/charts/agent-join.yaml is this
/// output for the inputs of the test below, and the chart tests install it.
fn agent_values(
    cluster: &str,
    endpoint: &str,
    join_endpoint: &str,
    token: &str,
    ca_pem: &str,
) -> String {
    let mut ca = String::new();
    for line in ca_pem.trim_end().lines() {
        ca.push_str("    ");
        ca.push_str(line);
        ca.push('\n');
    }
    format!(
        "# drbridge-agent values for cluster {cluster}.\n\
         cluster:\n  name: {cluster}\n\
         hub:\n  endpoint: {endpoint}\n\
         join:\n  # Single-use; the agent trades it for its client certificate.\n  token: \"{token}\"\n  endpoint: {join_endpoint}\n\
         \x20 # CA certificates that verify the hub.\n  hubCA: |\n{ca}"
    )
}

async fn remove(args: RemoveArgs) -> anyhow::Result<()> {
    let client = hub_client(&args.hub).await?;
    let removed = clusters::remove_cluster(
        &client,
        &args.hub.namespace,
        &args.name,
        args.delete_managed_cluster,
    )
    .await?;
    println!(
        "Cluster {} removed: its certificates are revoked{}{}.",
        args.name,
        match removed.tokens_deleted {
            0 => String::new(),
            n => format!(", {n} unused join token(s) deleted"),
        },
        if removed.managed_cluster_deleted {
            ", its ManagedCluster deleted"
        } else {
            ""
        }
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_endpoint_from_hub_endpoint() {
        assert_eq!(
            drbridge_agent_join_endpoint("https://hub.example:8443").unwrap(),
            "https://hub.example:8444"
        );
        assert_eq!(
            drbridge_agent_join_endpoint("https://hub.example").unwrap(),
            "https://hub.example:8444"
        );
        assert_eq!(
            drbridge_agent_join_endpoint("https://[::1]:8443").unwrap(),
            "https://[::1]:8444"
        );
        assert!(drbridge_agent_join_endpoint("hub:8443").is_err());
    }

    #[test]
    fn values_are_yaml_with_the_ca_as_a_block() {
        let v = agent_values(
            "dr1",
            "https://h:8443",
            "https://h:8444",
            "abc.def",
            "-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n",
        );
        assert!(v.contains("cluster:\n  name: dr1\n"), "{v}");
        assert!(v.contains("join:\n"), "{v}");
        assert!(v.contains("  token: \"abc.def\"\n"), "{v}");
        assert!(
            v.ends_with("  hubCA: |\n    -----BEGIN CERTIFICATE-----\n    AAA\n    -----END CERTIFICATE-----\n"),
            "{v}"
        );
    }

    /// The chart tests lint, render and install this fixture, so what `cluster join` prints
    /// is what the agent chart accepts.
    #[test]
    fn values_are_the_agent_chart_fixture() {
        let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/integration/fixtures/charts/agent-join.yaml");
        let v = agent_values(
            "dr1",
            "https://hub.example.com:8443",
            "https://hub.example.com:8444",
            "0123456789abcdef.00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
            "-----BEGIN CERTIFICATE-----\nMIIBfixture\n-----END CERTIFICATE-----\n",
        );
        let want = std::fs::read_to_string(&fixture)
            .unwrap_or_else(|e| panic!("{}: {e}", fixture.display()));
        assert_eq!(
            v,
            want,
            "update {} to what `drbridge cluster join` prints",
            fixture.display()
        );
    }
}
