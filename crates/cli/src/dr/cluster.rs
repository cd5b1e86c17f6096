//! `drbridge dr cluster add|list`: DRClusters, Ramen's settings for each managed cluster.

use drbridge_api::cluster::ManagedCluster;
use drbridge_dr::consts::config as ramen_config;
use drbridge_dr::explain;
use drbridge_dr::table::Table;
use drbridge_dr::types::DRCluster;
use kube::api::{Api, Patch};

use super::args::{ClusterAddArgs, Global, Output};
use super::hub::{self, KubeContext};
use super::output::{emit, list_value, print_applied, print_problems};
use super::write::apply_params;

pub(super) async fn cluster_add(g: &Global, a: ClusterAddArgs) -> anyhow::Result<()> {
    let client = g.hub_client().await?;
    let obj = drbridge_dr::objects::drcluster(&a.name, &a.s3_profile, a.region.as_deref())?;
    let mut notes = Vec::new();
    if !hub::profiles(&client, &g.ramen_namespace)
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
    let problems = if stored.status.is_some() {
        explain::drcluster(&stored)
    } else {
        Vec::new()
    };
    let sentence = format!(
        "DRCluster {} applied (S3 profile {}).",
        a.name, a.s3_profile
    );
    print_applied(g.output, &stored, &sentence, &notes, &problems)
}

pub(super) async fn cluster_list(g: &Global) -> anyhow::Result<()> {
    let client = g.hub_client().await?;
    let items = hub::list_all::<DRCluster>(&client, "DRClusters").await?;
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
