//! Following what Ramen does after a change, printing each step: a DRPC until an action
//! (or protection) completes, and a removal until the DRPC, Placement and VRGs are gone.
//! Woken by watches, never polling.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, bail};
use drbridge_api::cluster::consts::PLACEMENT_LABEL;
use drbridge_api::cluster::{ManagedCluster, Placement, PlacementDecision};
use drbridge_dr::cleanup::CleanupSnapshot;
use drbridge_dr::explain;
use drbridge_dr::progress::{Outcome, Snapshot};
use drbridge_dr::types::DRPlacementControl;
use futures::StreamExt;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};

use super::args::Output;
use super::hub::{self, KubeContext};
use super::output::{clock, say};

/// The namespace and name of the DRPC's Placement.
pub(super) fn placement_of(drpc: &DRPlacementControl) -> (String, String) {
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
pub(super) async fn follow_cleanup(
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
pub(super) async fn follow(
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
