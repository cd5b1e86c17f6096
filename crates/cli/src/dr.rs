//! `drbridge dr`: configure Ramen, protect applications, fail over, relocate and watch, against
//! any Ramen hub (OCM's or drbridge's): it uses only Ramen's hub API and the OCM objects
//! Ramen reads. Also runs as the kubectl plugin `kubectl dr` (a `kubectl-dr` link to the
//! binary).
//!
//! The logic without a cluster (checks, rows, sentences, objects) is in `drbridge-dr`; this
//! module reads and writes the hub, asks for confirmation and follows actions.

//!
//! Where things are, one file per command family and the pieces they share:
//!
//! - [`args`]: the clap tree (every command's flags) and the kubectl plugin's entry;
//! - [`s3_profile`], [`cluster`], [`policy`]: Ramen's configuration (`s3-profile`,
//!   `cluster`, `policy`);
//! - [`protect`], [`actions`] (`failover`, `relocate`, `clear`, `disable`), [`follow`]
//!   (watching Ramen carry a change out), [`status`] (`status`, `status --watch`);
//! - shared: [`hub`] (reading the hub), [`write`] (how writes are made), [`output`]
//!   (tables, JSON and YAML, progress lines);
//! - [`dashboard`]: `dr dashboard`, the live read-only web page.
//!
//! Each command file uses only those shared ones (and `follow`), never another command's.

mod actions;
pub(crate) mod args;
mod cluster;
mod dashboard;
mod follow;
pub(crate) mod hub;
mod output;
mod policy;
mod protect;
mod s3_profile;
pub(crate) mod status;
mod write;

use drbridge_dr::types::DRAction;

pub(crate) use actions::confirm;
pub use args::{DrArgs, DrCommand, PluginCli, invoked_as_plugin};
pub(crate) use args::{default_ops_namespace, parse_timeout};
pub(crate) use protect::protected_outcome;
pub(crate) use write::ensure_namespace;

use args::{ClusterCommand, PolicyCommand, S3ProfileCommand};

pub async fn run(args: DrArgs) -> anyhow::Result<()> {
    let g = args.global;
    match args.command {
        DrCommand::S3Profile(S3ProfileCommand::Add(a)) => s3_profile::s3_profile_add(&g, a).await,
        DrCommand::S3Profile(S3ProfileCommand::List) => s3_profile::s3_profile_list(&g).await,
        DrCommand::Cluster(ClusterCommand::Add(a)) => cluster::cluster_add(&g, a).await,
        DrCommand::Cluster(ClusterCommand::List) => cluster::cluster_list(&g).await,
        DrCommand::Policy(PolicyCommand::Create(a)) => policy::policy_create(&g, a).await,
        DrCommand::Policy(PolicyCommand::List) => policy::policy_list(&g).await,
        DrCommand::Protect(a) => protect::protect(&g, a).await,
        DrCommand::Failover(a) => actions::act(&g, a, DRAction::Failover).await,
        DrCommand::Relocate(a) => actions::act(&g, a, DRAction::Relocate).await,
        DrCommand::Clear(a) => actions::clear(&g, a).await,
        DrCommand::Disable(a) => actions::disable(&g, a).await,
        DrCommand::Status(a) => status::status(&g, a).await,
        DrCommand::Dashboard(a) => dashboard::run(&g, a).await,
    }
}
