//! `drbridge dr`: configure Ramen, protect applications, fail over, relocate and watch, against
//! any Ramen hub (OCM's or drbridge's): it uses only Ramen's hub API and the OCM objects
//! Ramen reads. Also runs as the kubectl plugin `kubectl dr` (a `kubectl-dr` link to the
//! binary).
//!
//! The logic without a cluster (checks, rows, sentences, objects) is in `drbridge-dr`; this
//! module reads and writes the hub, asks for confirmation and follows actions.

mod dashboard;
pub(crate) mod hub;

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use drbridge_api::cluster::consts::PLACEMENT_LABEL;
use drbridge_api::cluster::{ManagedCluster, Placement, PlacementDecision};
use drbridge_dr::cleanup::CleanupSnapshot;
use drbridge_dr::config::{self, Change, S3Credentials, S3StoreProfile, SecretReference};
use drbridge_dr::consts::config as ramen_config;
use drbridge_dr::explain::{self, Problem};
use drbridge_dr::progress::{self, Expectation, Outcome, Snapshot};
use drbridge_dr::safety::{self, Plan, Situation};
use drbridge_dr::status::{Detail, DetailInput, StatusRow, rpo_problem};
use drbridge_dr::table::Table;
use drbridge_dr::types::{DRAction, DRCluster, DRPlacementControl, DRPolicy};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::{Api, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde::Serialize;
use serde_json::{Value, json};

use hub::{FIELD_MANAGER, KubeContext};

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
    Dashboard(dashboard::DashboardArgs),
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

pub async fn run(args: DrArgs) -> anyhow::Result<()> {
    let g = args.global;
    match args.command {
        DrCommand::S3Profile(S3ProfileCommand::Add(a)) => s3_profile_add(&g, a).await,
        DrCommand::S3Profile(S3ProfileCommand::List) => s3_profile_list(&g).await,
        DrCommand::Cluster(ClusterCommand::Add(a)) => cluster_add(&g, a).await,
        DrCommand::Cluster(ClusterCommand::List) => cluster_list(&g).await,
        DrCommand::Policy(PolicyCommand::Create(a)) => policy_create(&g, a).await,
        DrCommand::Policy(PolicyCommand::List) => policy_list(&g).await,
        DrCommand::Protect(a) => protect(&g, a).await,
        DrCommand::Failover(a) => act(&g, a, DRAction::Failover).await,
        DrCommand::Relocate(a) => act(&g, a, DRAction::Relocate).await,
        DrCommand::Clear(a) => clear(&g, a).await,
        DrCommand::Disable(a) => disable(&g, a).await,
        DrCommand::Status(a) => status(&g, a).await,
        DrCommand::Dashboard(a) => dashboard::run(&g, a).await,
    }
}

/// The ops namespace `dr` uses when none is given (Ramen's default `ramenOpsNamespace`).
pub(crate) fn default_ops_namespace() -> String {
    std::env::var("DRBRIDGE_RAMEN_OPS_NAMESPACE")
        .unwrap_or_else(|_| ramen_config::DEFAULT_OPS_NAMESPACE.to_string())
}

async fn hub_client(g: &Global) -> anyhow::Result<kube::Client> {
    hub::client(g.kubeconfig.as_deref(), g.context.as_deref()).await
}

// ---------------------------------------------------------------------------------------------
// Output

/// An object as kubectl prints it: without `metadata.managedFields`.
fn object_value<T: Serialize>(obj: &T) -> anyhow::Result<Value> {
    let mut v = serde_json::to_value(obj)?;
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    Ok(v)
}

fn list_value<T: Serialize>(items: &[T]) -> anyhow::Result<Value> {
    let items: Vec<Value> = items.iter().map(object_value).collect::<Result<_, _>>()?;
    Ok(json!({"apiVersion": "v1", "kind": "List", "items": items}))
}

fn emit(out: Output, v: &Value) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match out {
        Output::Json | Output::Table => writeln!(stdout, "{}", serde_json::to_string_pretty(v)?)?,
        Output::Yaml => write!(stdout, "{}", serde_saphyr::to_string(v)?)?,
    }
    stdout.flush()?;
    Ok(())
}

/// Progress and notes: on stdout for tables, on stderr when stdout carries JSON or YAML.
fn say(out: Output, line: &str) {
    if out == Output::Table {
        println!("{line}");
        let _ = std::io::stdout().flush();
    } else {
        eprintln!("{line}");
    }
}

fn print_problems(out: Output, problems: &[Problem]) {
    if problems.is_empty() {
        return;
    }
    say(out, "Problems:");
    for p in problems {
        say(out, &format!("  - {p}"));
    }
}

fn clock(now: k8s_openapi::jiff::Timestamp) -> String {
    let s = now.as_second().rem_euclid(86_400);
    format!("{:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}

// ---------------------------------------------------------------------------------------------
// Writes

fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER)
}

/// Creates the namespace if it is missing; true if it did.
pub(crate) async fn ensure_namespace(client: &kube::Client, name: &str) -> anyhow::Result<bool> {
    let api: Api<Namespace> = Api::all(client.clone());
    if api.get_opt(name).await?.is_some() {
        return Ok(false);
    }
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..Default::default()
        },
        ..Default::default()
    };
    match api
        .create(
            &PostParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..Default::default()
            },
            &ns,
        )
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e).kctx(|| format!("creating namespace {name}")),
    }
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(r) if r.code == 409)
}

/// Adds or replaces the profile in a RamenConfig ConfigMap, with optimistic concurrency.
async fn upsert_config(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    controller_type: &str,
    profile: &S3StoreProfile,
) -> anyhow::Result<Change> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let what = format!("ConfigMap {namespace}/{name} key {}", ramen_config::KEY);
    let pp = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    for _ in 0..5 {
        match api.get_opt(name).await.kctx(|| format!("reading {what}"))? {
            None => {
                let (yaml, change) = config::upsert_profile(None, controller_type, profile, &what)?;
                match api
                    .create(&pp, &config::configmap(namespace, name, yaml))
                    .await
                {
                    Ok(_) => return Ok(change),
                    Err(e) if is_conflict(&e) => continue,
                    Err(e) => return Err(e).kctx(|| format!("creating {what}")),
                }
            }
            Some(mut cm) => {
                let current = cm
                    .data
                    .as_ref()
                    .and_then(|d| d.get(ramen_config::KEY))
                    .cloned();
                let (yaml, change) =
                    config::upsert_profile(current.as_deref(), controller_type, profile, &what)?;
                if change == Change::Unchanged {
                    return Ok(change);
                }
                cm.data
                    .get_or_insert_with(Default::default)
                    .insert(ramen_config::KEY.into(), yaml);
                match api.replace(name, &pp, &cm).await {
                    Ok(_) => return Ok(change),
                    Err(e) if is_conflict(&e) => continue,
                    Err(e) => return Err(e).kctx(|| format!("updating {what}")),
                }
            }
        }
    }
    bail!("{what} kept changing while being updated; try again")
}

async fn apply_secret(client: &kube::Client, secret: &Secret) -> anyhow::Result<()> {
    let ns = secret.metadata.namespace.clone().unwrap_or_default();
    let name = secret.metadata.name.clone().unwrap_or_default();
    Api::<Secret>::namespaced(client.clone(), &ns)
        .patch(&name, &apply_params(), &Patch::Apply(secret))
        .await
        .kctx(|| format!("writing Secret {ns}/{name}"))?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// s3-profile

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct S3Written {
    cluster: String,
    config_map: String,
    profile: Change,
    secrets: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    notes: Vec<String>,
}

async fn s3_profile_add(g: &Global, a: Box<S3ProfileAddArgs>) -> anyhow::Result<()> {
    let (Some(access_key_id), Some(secret_access_key)) =
        (a.access_key_id.clone(), a.secret_access_key.clone())
    else {
        bail!(
            "S3 credentials are needed: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or \
             --access-key-id and --secret-access-key)"
        );
    };
    drbridge_dr::objects::check_name("S3 profile", &a.name)?;
    let creds = S3Credentials {
        access_key_id,
        secret_access_key,
    };
    let secret_name = a
        .secret_name
        .clone()
        .unwrap_or_else(|| format!("{}-s3-secret", a.name));
    let mut profile = S3StoreProfile {
        s3_profile_name: a.name.clone(),
        s3_bucket: a.bucket.clone(),
        s3_compatible_endpoint: a.endpoint.clone(),
        s3_region: a.region.clone(),
        s3_secret_ref: SecretReference {
            name: secret_name.clone(),
            namespace: g.ramen_namespace.clone(),
        },
        ..Default::default()
    };
    if let Some(path) = &a.ca_cert {
        let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        profile = profile.with_ca_pem(&pem);
    }
    let mut targets: Vec<(String, Option<PathBuf>)> = vec![("hub".into(), None)];
    for m in &a.managed_kubeconfig {
        let (name, path) = m
            .split_once('=')
            .with_context(|| format!("--managed-kubeconfig {m:?}: expected NAME=KUBECONFIG"))?;
        targets.push((name.to_string(), Some(PathBuf::from(path))));
    }
    let ns = &g.ramen_namespace;
    let mut written = Vec::new();
    for (cluster, kubeconfig) in targets {
        let managed = kubeconfig.is_some();
        let client = match &kubeconfig {
            None => hub_client(g).await?,
            Some(p) => hub::client(Some(p), None).await?,
        };
        let mut notes = Vec::new();
        if ensure_namespace(&client, ns).await? {
            notes.push(format!("created namespace {ns}"));
        }
        let (cm, controller) = if managed {
            (
                ramen_config::DR_CLUSTER_CONFIGMAP,
                ramen_config::CONTROLLER_TYPE_DR_CLUSTER,
            )
        } else {
            (
                ramen_config::HUB_CONFIGMAP,
                ramen_config::CONTROLLER_TYPE_HUB,
            )
        };
        let change = upsert_config(&client, ns, cm, controller, &profile)
            .await
            .with_context(|| format!("on {cluster}"))?;
        apply_secret(&client, &config::s3_secret(ns, &secret_name, &creds)).await?;
        let mut secrets = vec![format!("{ns}/{secret_name}")];
        if managed {
            let velero = &a.velero_namespace;
            if Api::<Namespace>::all(client.clone())
                .get_opt(velero)
                .await?
                .is_some()
            {
                apply_secret(
                    &client,
                    &config::velero_secret(velero, &secret_name, &creds),
                )
                .await?;
                secrets.push(format!(
                    "{velero}/{}",
                    drbridge_dr::consts::velero_secret_name(&secret_name)
                ));
            } else {
                notes.push(format!(
                    "namespace {velero} does not exist: install Velero, then run this again for its \
                     copy of the credentials"
                ));
            }
        }
        written.push(S3Written {
            cluster,
            config_map: format!("{ns}/{cm}"),
            profile: change,
            secrets,
            notes,
        });
    }
    match g.output {
        Output::Table => {
            let mut t = Table::new(["CLUSTER", "CONFIGMAP", "PROFILE", "SECRETS"]);
            for w in &written {
                t.row([
                    w.cluster.clone(),
                    w.config_map.clone(),
                    format!("{} {}", a.name, w.profile),
                    w.secrets.join(", "),
                ]);
            }
            print!("{}", t.render());
            for w in &written {
                for n in &w.notes {
                    say(g.output, &format!("{}: {n}", w.cluster));
                }
            }
            if a.managed_kubeconfig.is_empty() {
                say(
                    g.output,
                    "Managed clusters need the same profile: run again with --managed-kubeconfig \
                     NAME=KUBECONFIG, or let Ramen distribute it (deploymentAutomationEnabled).",
                );
            }
            Ok(())
        }
        out => emit(
            out,
            &json!({"profile": serde_json::to_value(&profile)?, "written": written}),
        ),
    }
}

async fn hub_profiles(client: &kube::Client, g: &Global) -> anyhow::Result<Vec<S3StoreProfile>> {
    let cm = Api::<ConfigMap>::namespaced(client.clone(), &g.ramen_namespace)
        .get_opt(ramen_config::HUB_CONFIGMAP)
        .await?;
    let yaml = cm
        .and_then(|c| c.data)
        .and_then(|d| d.get(ramen_config::KEY).cloned());
    Ok(config::profiles(
        yaml.as_deref(),
        &format!(
            "ConfigMap {}/{}",
            g.ramen_namespace,
            ramen_config::HUB_CONFIGMAP
        ),
    )?)
}

async fn s3_profile_list(g: &Global) -> anyhow::Result<()> {
    let client = hub_client(g).await?;
    let profiles = hub_profiles(&client, g).await?;
    match g.output {
        Output::Table => {
            let mut t = Table::new(["NAME", "BUCKET", "ENDPOINT", "REGION", "SECRET"]);
            for p in &profiles {
                t.row([
                    p.s3_profile_name.clone(),
                    p.s3_bucket.clone(),
                    p.s3_compatible_endpoint.clone(),
                    p.s3_region.clone(),
                    format!("{}/{}", p.s3_secret_ref.namespace, p.s3_secret_ref.name),
                ]);
            }
            if t.is_empty() {
                say(
                    g.output,
                    &format!(
                        "No S3 profiles in {}/{}.",
                        g.ramen_namespace,
                        ramen_config::HUB_CONFIGMAP
                    ),
                );
            } else {
                print!("{}", t.render());
            }
            Ok(())
        }
        out => emit(out, &serde_json::to_value(&profiles)?),
    }
}

// ---------------------------------------------------------------------------------------------
// cluster, policy

async fn cluster_add(g: &Global, a: ClusterAddArgs) -> anyhow::Result<()> {
    let client = hub_client(g).await?;
    let obj = drbridge_dr::objects::drcluster(&a.name, &a.s3_profile, a.region.as_deref())?;
    let mut notes = Vec::new();
    if !hub_profiles(&client, g)
        .await
        .unwrap_or_default()
        .iter()
        .any(|p| p.s3_profile_name == a.s3_profile)
    {
        notes.push(format!(
            "S3 profile {} is not in {}/{} yet: add it with `drbridge dr s3-profile add {}`.",
            a.s3_profile,
            g.ramen_namespace,
            ramen_config::HUB_CONFIGMAP,
            a.s3_profile
        ));
    }
    if Api::<ManagedCluster>::all(client.clone())
        .get_opt(&a.name)
        .await
        .ok()
        .flatten()
        .is_none()
    {
        notes.push(format!(
            "There is no ManagedCluster {}: Ramen validates a DRCluster only for a joined cluster \
             (`drbridge cluster join {}`).",
            a.name, a.name
        ));
    }
    let api: Api<DRCluster> = Api::all(client.clone());
    let stored = api
        .patch(&a.name, &apply_params(), &Patch::Apply(&obj))
        .await
        .kctx(|| format!("applying DRCluster {}", a.name))?;
    match g.output {
        Output::Table => {
            say(
                g.output,
                &format!(
                    "DRCluster {} applied (S3 profile {}).",
                    a.name, a.s3_profile
                ),
            );
            for n in &notes {
                say(g.output, n);
            }
            if stored.status.is_some() {
                print_problems(g.output, &explain::drcluster(&stored));
            }
            Ok(())
        }
        out => {
            for n in &notes {
                eprintln!("{n}");
            }
            emit(out, &object_value(&stored)?)
        }
    }
}

async fn cluster_list(g: &Global) -> anyhow::Result<()> {
    let client = hub_client(g).await?;
    let items = Api::<DRCluster>::all(client.clone())
        .list(&ListParams::default())
        .await
        .kctx(|| "listing DRClusters (is Ramen's hub API installed?)".into())?
        .items;
    if g.output != Output::Table {
        return emit(g.output, &list_value(&items)?);
    }
    let names: Vec<String> = items
        .iter()
        .filter_map(|d| d.metadata.name.clone())
        .collect();
    let conns = hub::connections(&client, &names).await;
    let now = hub::now();
    let mut t = Table::new(["NAME", "S3-PROFILE", "PHASE", "VALIDATED", "CONNECTION"]);
    let mut problems = Vec::new();
    for d in &items {
        let name = d.metadata.name.clone().unwrap_or_default();
        let st = d.status.clone().unwrap_or_default();
        t.row([
            name.clone(),
            d.spec.s3_profile_name.clone(),
            if st.phase.is_empty() {
                "-".into()
            } else {
                st.phase.clone()
            },
            explain::status_of(&st.conditions, drbridge_dr::consts::condition::VALIDATED),
            conns.get(&name).map(|c| c.short(now)).unwrap_or_default(),
        ]);
        problems.extend(explain::drcluster(d));
    }
    print!("{}", t.render());
    print_problems(g.output, &problems);
    Ok(())
}

async fn policy_create(g: &Global, a: PolicyCreateArgs) -> anyhow::Result<()> {
    let client = hub_client(g).await?;
    let obj = drbridge_dr::objects::drpolicy(
        &a.name,
        &a.clusters,
        &a.scheduling_interval,
        drbridge_dr::selector::parse(&a.replication_class_selector)?,
        drbridge_dr::selector::parse(&a.volume_snapshot_class_selector)?,
    )?;
    let dcs: Api<DRCluster> = Api::all(client.clone());
    let mut notes = Vec::new();
    for c in &a.clusters {
        if dcs.get_opt(c).await.ok().flatten().is_none() {
            notes.push(format!(
                "There is no DRCluster {c} yet: create it with `drbridge dr cluster add {c} --s3-profile ...`."
            ));
        }
    }
    let stored = Api::<DRPolicy>::all(client.clone())
        .patch(&a.name, &apply_params(), &Patch::Apply(&obj))
        .await
        .kctx(|| format!("applying DRPolicy {}", a.name))?;
    match g.output {
        Output::Table => {
            say(
                g.output,
                &format!(
                    "DRPolicy {} applied: {} every {}.",
                    a.name,
                    a.clusters.join(" <-> "),
                    a.scheduling_interval
                ),
            );
            for n in &notes {
                say(g.output, n);
            }
            if stored.status.is_some() {
                print_problems(g.output, &explain::drpolicy(&stored));
            }
            Ok(())
        }
        out => {
            for n in &notes {
                eprintln!("{n}");
            }
            emit(out, &object_value(&stored)?)
        }
    }
}

async fn policy_list(g: &Global) -> anyhow::Result<()> {
    let client = hub_client(g).await?;
    let items = Api::<DRPolicy>::all(client.clone())
        .list(&ListParams::default())
        .await
        .kctx(|| "listing DRPolicies (is Ramen's hub API installed?)".into())?
        .items;
    if g.output != Output::Table {
        return emit(g.output, &list_value(&items)?);
    }
    let mut t = Table::new(["NAME", "CLUSTERS", "INTERVAL", "VALIDATED", "PEER-CLASSES"]);
    let mut problems = Vec::new();
    for p in &items {
        let st = p.status.clone().unwrap_or_default();
        let classes: Vec<String> = st
            .r#async
            .peer_classes
            .iter()
            .chain(&st.sync.peer_classes)
            .map(|c| c.storage_class_name.clone())
            .collect();
        t.row([
            p.metadata.name.clone().unwrap_or_default(),
            p.spec.dr_clusters.join(","),
            p.spec.scheduling_interval.clone(),
            explain::status_of(&st.conditions, drbridge_dr::consts::condition::VALIDATED),
            if classes.is_empty() {
                "-".into()
            } else {
                classes.join(",")
            },
        ]);
        problems.extend(explain::drpolicy(p));
    }
    print!("{}", t.render());
    print_problems(g.output, &problems);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// protect

async fn protect(g: &Global, a: ProtectArgs) -> anyhow::Result<()> {
    let client = hub_client(g).await?;
    let req = drbridge_dr::objects::Protect {
        name: a.name.clone(),
        ops_namespace: g.ops_namespace.clone(),
        namespaces: a.namespaces.clone(),
        pvc_selector: drbridge_dr::selector::parse(&a.pvc_selector)?,
        kube_object_selector: a
            .kube_object_selector
            .as_deref()
            .map(drbridge_dr::selector::parse)
            .transpose()?,
        preferred_cluster: a.preferred_cluster.clone(),
        policy: a.policy.clone(),
        cluster_set: a.cluster_set.clone(),
    };
    let drpc = drbridge_dr::objects::drpc(&req)?;
    let policy = Api::<DRPolicy>::all(client.clone())
        .get_opt(&a.policy)
        .await
        .kctx(|| "reading DRPolicies (is Ramen's hub API installed?)".into())?
        .with_context(|| {
            format!(
                "there is no DRPolicy {}: create it with `drbridge dr policy create`",
                a.policy
            )
        })?;
    if !policy.spec.dr_clusters.contains(&a.preferred_cluster) {
        bail!(
            "{} is not a cluster of DRPolicy {} ({})",
            a.preferred_cluster,
            a.policy,
            policy.spec.dr_clusters.join(", ")
        );
    }
    ensure_namespace(&client, &g.ops_namespace).await?;
    let placement = drbridge_dr::objects::placement(&req);
    let placement = Api::<Placement>::namespaced(client.clone(), &g.ops_namespace)
        .patch(&a.name, &apply_params(), &Patch::Apply(&placement))
        .await
        .kctx(|| format!("applying Placement {}/{}", g.ops_namespace, a.name))?;
    let drpc = Api::<DRPlacementControl>::namespaced(client.clone(), &g.ops_namespace)
        .patch(&a.name, &apply_params(), &Patch::Apply(&drpc))
        .await
        .kctx(|| {
            format!(
                "applying DRPlacementControl {}/{} (pvcSelector, drPolicyRef and placementRef \
                 cannot change once set)",
                g.ops_namespace, a.name
            )
        })?;
    say(
        g.output,
        &format!(
            "Protecting namespace(s) {} (PVCs {}) with DRPolicy {}, running on {}: Placement and \
             DRPlacementControl {}/{} applied.",
            a.namespaces.join(", "),
            a.pvc_selector,
            a.policy,
            a.preferred_cluster,
            g.ops_namespace,
            a.name
        ),
    );
    let drpc = if a.wait {
        follow(&client, &drpc, a.timeout, g.output, None, protected_outcome)
            .await
            .with_context(|| {
                format!("waiting for {}/{} to be protected", g.ops_namespace, a.name)
            })?
    } else {
        drpc
    };
    match g.output {
        Output::Table => Ok(()),
        out => emit(
            out,
            &list_value(&[object_value(&placement)?, object_value(&drpc)?])?,
        ),
    }
}

/// Ready as Ramen's e2e `waitDRPCReady` judges it.
pub(crate) fn protected_outcome(d: Option<&DRPlacementControl>, _current: Option<&str>) -> Outcome {
    use drbridge_dr::consts::condition as ct;
    let Some(d) = d else {
        return Outcome::Failed("the DRPlacementControl was deleted".into());
    };
    let Some(st) = &d.status else {
        return Outcome::Pending;
    };
    let ok = |t: &str| explain::status_of(&st.conditions, t) == "True";
    if ok(ct::AVAILABLE)
        && ok(ct::PEER_READY)
        && st.progression == drbridge_dr::consts::progression::COMPLETED
        && st.last_group_sync_time.is_some()
    {
        Outcome::Done
    } else {
        Outcome::Pending
    }
}

// ---------------------------------------------------------------------------------------------
// failover, relocate, clear

/// Asks on the terminal; refuses without one.
pub(crate) fn confirm(question: &str, yes: bool) -> anyhow::Result<()> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        bail!(
            "{question}\nnot confirmed: there is no terminal to ask on (stdin is not a TTY); run \
             again with --yes to confirm"
        );
    }
    eprint!("{question}\nProceed? [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    if matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
        Ok(())
    } else {
        bail!("aborted: nothing was changed")
    }
}

async fn situation_parts(
    client: &kube::Client,
    drpc: &DRPlacementControl,
) -> anyhow::Result<hub::Around> {
    hub::around(client, drpc).await
}

fn situation<'a>(drpc: &'a DRPlacementControl, around: &'a hub::Around) -> Situation<'a> {
    Situation {
        drpc,
        policy: around.policy.as_ref(),
        current: around.current.clone(),
        vrgs: around
            .clusters
            .iter()
            .map(|(k, (_, v))| (k.clone(), v.clone()))
            .collect(),
        connections: around
            .clusters
            .iter()
            .map(|(k, (c, _))| (k.clone(), c.clone()))
            .collect(),
        now: hub::now(),
    }
}

/// Checks, confirms and patches; repeats the checks if the DRPC changed meanwhile (the patch
/// carries the resourceVersion the checks read).
async fn checked_patch(
    client: &kube::Client,
    mut drpc: DRPlacementControl,
    plan_for: impl Fn(&Situation<'_>) -> Plan,
    spec: Value,
    force: bool,
    yes: bool,
    out: Output,
) -> anyhow::Result<(DRPlacementControl, Plan)> {
    let ns = drpc.metadata.namespace.clone().unwrap_or_default();
    let name = drpc.metadata.name.clone().unwrap_or_default();
    let api: Api<DRPlacementControl> = Api::namespaced(client.clone(), &ns);
    let mut confirmed = false;
    for _ in 0..5 {
        let around = situation_parts(client, &drpc).await?;
        let plan = plan_for(&situation(&drpc, &around));
        if !plan.blocking(force).is_empty() {
            bail!("{}", plan.refusal_message(force));
        }
        if plan.already_requested {
            for n in &plan.notes {
                say(out, n);
            }
            return Ok((drpc, plan));
        }
        if !confirmed {
            confirm(&plan.question(force), yes)?;
            confirmed = true;
        }
        let patch = json!({
            "metadata": {"resourceVersion": drpc.metadata.resource_version},
            "spec": spec,
        });
        let pp = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        match api.patch(&name, &pp, &Patch::Merge(&patch)).await {
            Ok(d) => return Ok((d, plan)),
            Err(e) if is_conflict(&e) => {
                drpc = api
                    .get_opt(&name)
                    .await?
                    .with_context(|| format!("DRPlacementControl {ns}/{name} was deleted"))?;
            }
            Err(e) => {
                return Err(e).kctx(|| format!("updating DRPlacementControl {ns}/{name}"));
            }
        }
    }
    bail!("DRPlacementControl {ns}/{name} kept changing while being updated; try again")
}

async fn act(g: &Global, a: ActionArgs, action: DRAction) -> anyhow::Result<()> {
    let client = hub_client(g).await?;
    let drpc = hub::find_drpc(&client, &g.ops_namespace, &a.name).await?;
    let target = a.to.clone();
    let spec = match action {
        DRAction::Failover => json!({"action": action.as_str(), "failoverCluster": target}),
        DRAction::Relocate => json!({"action": action.as_str(), "preferredCluster": target}),
    };
    let (drpc, plan) = checked_patch(
        &client,
        drpc,
        |s| match action {
            DRAction::Failover => safety::failover(s, &target),
            DRAction::Relocate => safety::relocate(s, &target),
        },
        spec,
        a.force,
        a.yes,
        g.output,
    )
    .await?;
    let qualified = format!(
        "{}/{}",
        drpc.metadata.namespace.clone().unwrap_or_default(),
        drpc.metadata.name.clone().unwrap_or_default()
    );
    if !plan.already_requested {
        say(
            g.output,
            &format!("{} of {qualified} to {target} requested.", action.noun()),
        );
    }
    let drpc = if a.wait {
        let exp = Expectation {
            action,
            target: target.clone(),
            generation: drpc.metadata.generation.unwrap_or_default(),
        };
        let started = Instant::now();
        let d = follow(
            &client,
            &drpc,
            a.timeout,
            g.output,
            plan.from.as_deref(),
            move |d, current| progress::evaluate(&exp, d, current),
        )
        .await?;
        say(
            g.output,
            &format!(
                "{} of {qualified} to {target} completed after {}: {} / {}.",
                action.noun(),
                drbridge_dr::time::human(started.elapsed()),
                action.done_phase(),
                drbridge_dr::consts::progression::COMPLETED
            ),
        );
        d
    } else {
        if g.output == Output::Table {
            say(
                g.output,
                &format!(
                    "Follow it with `drbridge dr status {} --watch`.",
                    drpc.metadata.name.clone().unwrap_or_default()
                ),
            );
        }
        drpc
    };
    match g.output {
        Output::Table => Ok(()),
        out => emit(out, &object_value(&drpc)?),
    }
}

async fn clear(g: &Global, a: ClearArgs) -> anyhow::Result<()> {
    let client = hub_client(g).await?;
    let drpc = hub::find_drpc(&client, &g.ops_namespace, &a.name).await?;
    let (drpc, plan) = checked_patch(
        &client,
        drpc,
        safety::clear,
        // `null` removes the field: Ramen's CRD admits only Failover or Relocate. A leftover
        // failoverCluster would be the default target of the next failover.
        json!({"action": null, "failoverCluster": null}),
        a.force,
        a.yes,
        g.output,
    )
    .await?;
    if !plan.already_requested {
        let action = plan.summary.trim_start_matches("Clear the ");
        say(g.output, &format!("Cleared the {action}."));
        for n in &plan.notes {
            say(g.output, n);
        }
    }
    match g.output {
        Output::Table => Ok(()),
        out => emit(out, &object_value(&drpc)?),
    }
}

async fn disable(g: &Global, a: DisableArgs) -> anyhow::Result<()> {
    let client = hub_client(g).await?;
    let mut drpc = hub::find_drpc(&client, &g.ops_namespace, &a.name).await?;
    let ns = drpc.metadata.namespace.clone().unwrap_or_default();
    let name = drpc.metadata.name.clone().unwrap_or_default();
    let api: Api<DRPlacementControl> = Api::namespaced(client.clone(), &ns);
    let mut confirmed = false;
    let mut around = hub::around(&client, &drpc).await?;
    let mut plan;
    let mut attempts = 0;
    loop {
        plan = safety::disable(&situation(&drpc, &around));
        if !plan.blocking(a.force).is_empty() {
            bail!("{}", plan.refusal_message(a.force));
        }
        if plan.already_requested {
            for n in &plan.notes {
                say(g.output, n);
            }
            break;
        }
        if !confirmed {
            confirm(&plan.question(a.force), a.yes)?;
            confirmed = true;
        }
        // Deletes exactly what the checks read: a DRPC changed meanwhile is checked again.
        let dp = kube::api::DeleteParams {
            preconditions: Some(kube::api::Preconditions {
                resource_version: drpc.metadata.resource_version.clone(),
                uid: drpc.metadata.uid.clone(),
            }),
            ..Default::default()
        };
        match api.delete(&name, &dp).await {
            Ok(_) => break,
            Err(kube::Error::Api(e)) if e.code == 404 => break,
            Err(e) if is_conflict(&e) && attempts < 5 => {
                attempts += 1;
                drpc = api
                    .get_opt(&name)
                    .await?
                    .with_context(|| format!("DRPlacementControl {ns}/{name} was deleted"))?;
                around = hub::around(&client, &drpc).await?;
            }
            Err(e) => return Err(e).kctx(|| format!("deleting DRPlacementControl {ns}/{name}")),
        }
    }
    // Ramen's e2e deletes the Placement right after the DRPC; Ramen's finalizer keeps it
    // until the DRPC is cleaned up.
    let (placement_ns, placement) = placement_of(&drpc);
    if !placement.is_empty() {
        match Api::<Placement>::namespaced(client.clone(), &placement_ns)
            .delete(&placement, &Default::default())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => {
                return Err(e).kctx(|| format!("deleting Placement {placement_ns}/{placement}"));
            }
        }
    }
    let on = plan.from.clone().unwrap_or_else(|| "?".into());
    if !plan.already_requested {
        say(
            g.output,
            &format!(
                "Removing the protection of {ns}/{name}: DRPlacementControl and Placement \
                 {placement_ns}/{placement} deleted; Ramen now deletes the VRGs."
            ),
        );
    }
    if a.no_wait {
        if g.output == Output::Table {
            say(
                g.output,
                &format!("Follow it with `drbridge dr status {name} --watch`."),
            );
        }
        return Ok(());
    }
    let clusters: Vec<String> = around.clusters.keys().cloned().collect();
    let started = Instant::now();
    let last = follow_cleanup(&client, &drpc, &clusters, a.timeout, g.output).await?;
    say(
        g.output,
        &format!(
            "Protection of {ns}/{name} removed after {}: its DRPlacementControl, Placement and \
             VRGs are gone. The application and its PVCs stay on {on}.",
            drbridge_dr::time::human(started.elapsed())
        ),
    );
    match g.output {
        Output::Table => Ok(()),
        out => emit(out, &serde_json::to_value(&last)?),
    }
}

/// The namespace and name of the DRPC's Placement.
fn placement_of(drpc: &DRPlacementControl) -> (String, String) {
    let ns = drpc
        .spec
        .placement_ref
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
        .or_else(|| drpc.metadata.namespace.clone())
        .unwrap_or_default();
    (ns, drpc.spec.placement_ref.name.clone().unwrap_or_default())
}

/// One look at a removal: the DRPC, its Placement, and per cluster the VRG's work, view
/// and connection.
async fn cleanup_snapshot(
    client: &kube::Client,
    drpc: &DRPlacementControl,
    clusters: &[String],
) -> anyhow::Result<CleanupSnapshot> {
    use drbridge_dr::cleanup::WorkState;
    let ns = drpc.metadata.namespace.clone().unwrap_or_default();
    let name = drpc.metadata.name.clone().unwrap_or_default();
    let now = hub::get_drpc(client, &ns, &name).await?.map(|d| {
        let st = d.status.unwrap_or_default();
        (st.phase, st.progression)
    });
    let (pns, pname) = placement_of(drpc);
    let placement = !pname.is_empty()
        && Api::<Placement>::namespaced(client.clone(), &pns)
            .get_opt(&pname)
            .await
            .kctx(|| format!("reading Placement {pns}/{pname}"))?
            .is_some();
    let mut per = BTreeMap::new();
    for c in clusters {
        let mw = Api::<drbridge_api::work::ManifestWork>::namespaced(client.clone(), c)
            .get_opt(&drbridge_api::ramen::manifest_work_names::vrg(&name, &ns))
            .await
            .kctx(|| format!("reading the VRG ManifestWork of {c}"))?;
        let work = match mw {
            None => WorkState::Absent,
            Some(w) if w.metadata.deletion_timestamp.is_some() => WorkState::Deleting,
            Some(_) => WorkState::Present,
        };
        let (conn, view) = hub::cluster_state(client, c, &name, &ns).await;
        per.insert(c.clone(), (work, view, conn));
    }
    Ok(CleanupSnapshot::new(now, placement, &per))
}

/// Follows Ramen's cleanup after a DRPC deletion, printing each change, until everything is
/// gone. Woken by watches of the DRPC, the VRG works and views (no polling).
async fn follow_cleanup(
    client: &kube::Client,
    drpc: &DRPlacementControl,
    clusters: &[String],
    timeout: Duration,
    out: Output,
) -> anyhow::Result<CleanupSnapshot> {
    let ns = drpc.metadata.namespace.clone().unwrap_or_default();
    let name = drpc.metadata.name.clone().unwrap_or_default();
    let deadline = tokio::time::Instant::now() + timeout;
    let (pns, pname) = placement_of(drpc);
    let streams = vec![
        hub::wake_on(
            Api::<DRPlacementControl>::namespaced(client.clone(), &ns),
            Some(&name),
        ),
        hub::wake_on(
            Api::<Placement>::namespaced(client.clone(), &pns),
            Some(&pname),
        ),
        hub::wake_on(
            Api::<drbridge_api::work::ManifestWork>::all(client.clone()),
            Some(&drbridge_api::ramen::manifest_work_names::vrg(&name, &ns)),
        ),
        hub::wake_on(
            Api::<drbridge_api::view::ManagedClusterView>::all(client.clone()),
            Some(&drbridge_dr::consts::vrg_view_name(&name, &ns)),
        ),
        hub::wake_on(Api::<ManagedCluster>::all(client.clone()), None),
    ];
    let mut wake = futures::stream::select_all(streams);
    let mut last: Option<CleanupSnapshot> = None;
    loop {
        let snap = cleanup_snapshot(client, drpc, clusters).await?;
        if let Some(line) = snap.line_since(last.as_ref()) {
            say(out, &format!("{}  {line}", clock(hub::now())));
        }
        match snap.outcome() {
            Outcome::Done => return Ok(snap),
            Outcome::Failed(why) => bail!("{why}"),
            Outcome::Pending => {}
        }
        last = Some(snap);
        match tokio::time::timeout_at(deadline, wake.next()).await {
            Ok(Some(())) => {}
            Ok(None) => bail!("the watches of {ns}/{name} ended"),
            Err(_) => {
                let mut msg = format!(
                    "timed out after {} waiting for Ramen to remove the protection of {ns}/{name}",
                    drbridge_dr::time::human(timeout)
                );
                if let Some(l) = last.as_ref().and_then(|s| s.line_since(None)) {
                    msg.push_str(&format!("; last seen: {}", l.trim_end()));
                }
                bail!("{msg}")
            }
        }
    }
}

/// Follows a DRPC until `judge` says it is done or failed, printing phase and progression
/// changes. Woken by watches of the DRPC and of its Placement's decisions (no polling).
async fn follow(
    client: &kube::Client,
    drpc: &DRPlacementControl,
    timeout: Duration,
    out: Output,
    left: Option<&str>,
    judge: impl Fn(Option<&DRPlacementControl>, Option<&str>) -> Outcome,
) -> anyhow::Result<DRPlacementControl> {
    let ns = drpc.metadata.namespace.clone().unwrap_or_default();
    let name = drpc.metadata.name.clone().unwrap_or_default();
    let deadline = tokio::time::Instant::now() + timeout;
    let drpcs = hub::wake_on(
        Api::<DRPlacementControl>::namespaced(client.clone(), &ns),
        Some(&name),
    );
    let (placement_ns, placement) = placement_of(drpc);
    let decisions = watcher(
        Api::<PlacementDecision>::namespaced(client.clone(), &placement_ns),
        watcher::Config::default().labels(&format!("{PLACEMENT_LABEL}={placement}")),
    )
    .default_backoff()
    .map(|_| ())
    .boxed();
    let mut wake = futures::stream::select(drpcs, decisions);
    let mut last: Option<Snapshot> = None;
    let mut hinted = String::new();
    loop {
        let current_drpc = hub::get_drpc(client, &ns, &name).await?;
        let current = match &current_drpc {
            Some(d) => drbridge_dr::status::current_cluster(&hub::decisions(client, d).await?, d),
            None => None,
        };
        if let Some(d) = &current_drpc {
            let snap = Snapshot::of(d, current.clone());
            if let Some(line) = snap.line_since(last.as_ref()) {
                say(out, &format!("{}  {line}", clock(hub::now())));
            }
            if let Some(h) = snap.hint(d, left)
                && snap.progression != hinted
            {
                say(out, &format!("          {h}"));
                hinted = snap.progression.clone();
            }
            last = Some(snap);
        }
        match judge(current_drpc.as_ref(), current.as_deref()) {
            Outcome::Done => return current_drpc.context("the DRPlacementControl is gone"),
            Outcome::Failed(why) => bail!("{why}"),
            Outcome::Pending => {}
        }
        match tokio::time::timeout_at(deadline, wake.next()).await {
            Ok(Some(())) => {}
            Ok(None) => bail!("the watch of {ns}/{name} ended"),
            Err(_) => {
                let mut msg = format!(
                    "timed out after {} waiting for {ns}/{name}",
                    drbridge_dr::time::human(timeout)
                );
                if let Some(s) = &last {
                    msg.push_str(&format!(
                        "; it is at {} / {}",
                        if s.phase.is_empty() { "-" } else { &s.phase },
                        if s.progression.is_empty() {
                            "-"
                        } else {
                            &s.progression
                        }
                    ));
                }
                if let Some(d) = &current_drpc {
                    for p in explain::drpc(d, current.as_deref()) {
                        msg.push_str(&format!("\n  - {p}"));
                    }
                }
                bail!("{msg}")
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// status

/// The status rows (and problems) of every DRPC.
async fn rows(client: &kube::Client) -> anyhow::Result<(Vec<StatusRow>, Vec<Problem>)> {
    let drpcs = Api::<DRPlacementControl>::all(client.clone())
        .list(&ListParams::default())
        .await
        .kctx(|| "listing DRPlacementControls (is Ramen's hub API installed?)".into())?
        .items;
    let policies: BTreeMap<String, DRPolicy> = Api::<DRPolicy>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .map(|p| (p.metadata.name.clone().unwrap_or_default(), p))
        .collect();
    let drclusters = Api::<DRCluster>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let now = hub::now();
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    for p in policies.values() {
        problems.extend(explain::drpolicy(p));
    }
    for d in &drclusters {
        problems.extend(explain::drcluster(d));
    }
    for d in &drpcs {
        let policy = d
            .spec
            .dr_policy_ref
            .name
            .as_ref()
            .and_then(|n| policies.get(n));
        let current = drbridge_dr::status::current_cluster(&hub::decisions(client, d).await?, d);
        problems.extend(explain::drpc(d, current.as_deref()));
        let row = StatusRow::new(d, policy, current, now);
        problems.extend(rpo_problem(&row));
        rows.push(row);
    }
    rows.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    Ok((rows, problems))
}

async fn detail(client: &kube::Client, g: &Global, name: &str) -> anyhow::Result<Detail> {
    let drpc = hub::find_drpc(client, &g.ops_namespace, name).await?;
    let around = hub::around(client, &drpc).await?;
    Ok(Detail::new(DetailInput {
        drpc: &drpc,
        policy: around.policy.as_ref(),
        drclusters: &around.drclusters,
        current: around.current.clone(),
        clusters: around
            .clusters
            .into_iter()
            .map(|(k, (c, v))| (k, c, v))
            .collect(),
        now: hub::now(),
    }))
}

/// One rendering of the status (table text, or a JSON value).
async fn render_status(
    client: &kube::Client,
    g: &Global,
    name: Option<&str>,
) -> anyhow::Result<(String, Value)> {
    let now = hub::now();
    match name {
        Some(n) => {
            let d = detail(client, g, n).await?;
            Ok((d.render(now), serde_json::to_value(&d)?))
        }
        None => {
            let (rows, problems) = rows(client).await?;
            let mut text = String::new();
            if rows.is_empty() {
                text.push_str("No DRPlacementControls.\n");
            } else {
                let mut t = Table::new(StatusRow::HEADERS);
                for r in &rows {
                    t.row(r.cells());
                }
                text.push_str(&t.render());
            }
            if !problems.is_empty() {
                text.push_str("\nProblems:\n");
                for p in &problems {
                    text.push_str(&format!("  - {p}\n"));
                }
            }
            Ok((text, json!({"items": rows, "problems": problems})))
        }
    }
}

async fn status(g: &Global, a: StatusArgs) -> anyhow::Result<()> {
    let client = hub_client(g).await?;
    let print = |text: &str, value: &Value| -> anyhow::Result<()> {
        match g.output {
            Output::Table => {
                print!("{text}");
                std::io::stdout().flush()?;
                Ok(())
            }
            // One document per change: JSON lines, YAML documents.
            Output::Json => {
                println!("{}", serde_json::to_string(value)?);
                std::io::stdout().flush()?;
                Ok(())
            }
            Output::Yaml => {
                if a.watch {
                    println!("---");
                }
                emit(Output::Yaml, value)
            }
        }
    };
    let (text, value) = render_status(&client, g, a.name.as_deref()).await?;
    if !a.watch {
        return match g.output {
            Output::Json => emit(Output::Json, &value),
            _ => print(&text, &value),
        };
    }
    print(&text, &value)?;
    let mut last = value;
    let api: Api<DRPlacementControl> = Api::all(client.clone());
    let cfg = match &a.name {
        Some(n) => watcher::Config::default().fields(&format!("metadata.name={n}")),
        None => watcher::Config::default(),
    };
    let mut wake = watcher(api, cfg).default_backoff().boxed();
    while let Some(ev) = wake.next().await {
        if ev.is_err() {
            continue;
        }
        let (text, value) = render_status(&client, g, a.name.as_deref()).await?;
        // Ages change every second; print only when something else did.
        if strip_ages(&value) != strip_ages(&last) {
            if g.output == Output::Table {
                println!("\n--- {}", clock(hub::now()));
            }
            print(&text, &value)?;
            last = value;
        }
    }
    Ok(())
}

/// The status without the fields that change by themselves as time passes.
fn strip_ages(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.ends_with("AgeSeconds") && k.as_str() != "problems")
                .map(|(k, v)| (k.clone(), strip_ages(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_ages).collect()),
        other => other.clone(),
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
