//! `drbridge dr protect`: a Placement managed by Ramen and a DRPlacementControl for a
//! discovered application, and (with `--wait`) following it until it is protected.

use anyhow::{Context, bail};
use drbridge_api::cluster::Placement;
use drbridge_dr::explain;
use drbridge_dr::progress::Outcome;
use drbridge_dr::types::{DRPlacementControl, DRPolicy};
use kube::api::{Api, Patch};

use super::args::{Global, Output, ProtectArgs};
use super::follow::follow;
use super::hub::KubeContext;
use super::output::{emit, list_value, object_value, say};
use super::write::{apply_params, ensure_namespace};

pub(super) async fn protect(g: &Global, a: ProtectArgs) -> anyhow::Result<()> {
    let client = g.hub_client().await?;
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
