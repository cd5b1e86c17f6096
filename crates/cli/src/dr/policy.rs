//! `drbridge dr policy create|list`: DRPolicies, the DR relationship of two clusters.

use drbridge_dr::explain;
use drbridge_dr::table::Table;
use drbridge_dr::types::{DRCluster, DRPolicy};
use kube::api::{Api, Patch};

use super::args::{Global, Output, PolicyCreateArgs};
use super::hub::{self, KubeContext};
use super::output::{emit, list_value, print_applied, print_problems};
use super::write::apply_params;

pub(super) async fn policy_create(g: &Global, a: PolicyCreateArgs) -> anyhow::Result<()> {
    let client = g.hub_client().await?;
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
    let problems = if stored.status.is_some() {
        explain::drpolicy(&stored)
    } else {
        Vec::new()
    };
    let sentence = format!(
        "DRPolicy {} applied: {} every {}.",
        a.name,
        a.clusters.join(" <-> "),
        a.scheduling_interval
    );
    print_applied(g.output, &stored, &sentence, &notes, &problems)
}

pub(super) async fn policy_list(g: &Global) -> anyhow::Result<()> {
    let client = g.hub_client().await?;
    let items = hub::list_all::<DRPolicy>(&client, "DRPolicies").await?;
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
