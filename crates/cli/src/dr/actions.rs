//! `drbridge dr failover|relocate|clear|disable`: changes to a DRPlacementControl that are
//! checked against what the hub sees (`drbridge_dr::safety`), confirmed, and made only if
//! the DRPC did not change meanwhile.

use std::io::{IsTerminal, Write};
use std::time::Instant;

use anyhow::{Context, bail};
use drbridge_api::cluster::Placement;
use drbridge_dr::progress::{self, Expectation};
use drbridge_dr::safety::{self, Plan, Situation};
use drbridge_dr::types::{DRAction, DRPlacementControl};
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

use super::args::{ActionArgs, ClearArgs, DisableArgs, Global, Output};
use super::follow::{follow, follow_cleanup, placement_of};
use super::hub::{self, FIELD_MANAGER, KubeContext};
use super::output::{emit, object_value, say};
use super::write::is_conflict;

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

pub(super) async fn act(g: &Global, a: ActionArgs, action: DRAction) -> anyhow::Result<()> {
    let client = g.hub_client().await?;
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

pub(super) async fn clear(g: &Global, a: ClearArgs) -> anyhow::Result<()> {
    let client = g.hub_client().await?;
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

pub(super) async fn disable(g: &Global, a: DisableArgs) -> anyhow::Result<()> {
    let client = g.hub_client().await?;
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
