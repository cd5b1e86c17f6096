//! `drbridge dr status [NAME] [--watch]`: a row per DRPlacementControl with the problems
//! found, or the detail of one; with `--watch`, printed again on every change.

use std::collections::BTreeMap;
use std::io::Write;

use drbridge_dr::explain::{self, Problem};
use drbridge_dr::status::{Detail, DetailInput, StatusRow, rpo_problem};
use drbridge_dr::table::Table;
use drbridge_dr::types::{DRCluster, DRPlacementControl, DRPolicy};
use futures::StreamExt;
use kube::api::{Api, ListParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};

use super::args::{Global, Output, StatusArgs};
use super::hub;
use super::output::{clock, emit};

/// The status rows (and problems) of every DRPC.
pub(crate) async fn rows(client: &kube::Client) -> anyhow::Result<(Vec<StatusRow>, Vec<Problem>)> {
    let drpcs = hub::list_all::<DRPlacementControl>(client, "DRPlacementControls").await?;
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

pub(super) async fn status(g: &Global, a: StatusArgs) -> anyhow::Result<()> {
    let client = g.hub_client().await?;
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
