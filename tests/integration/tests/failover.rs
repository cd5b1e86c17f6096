//! Two hub replicas on one API server: one leads, the agent is served by it; the leader
//! crashes, the other takes the Lease, the agent resyncs with it, and nothing is lost on
//! the way: no ManifestWork status regresses, nothing on the managed cluster is deleted.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use drbridge_hub::LeaderOptions;
use drbridge_hub::leader::LeaseConfig;
use drbridge_integration_tests::bench::applied_available;
use drbridge_integration_tests::bridge::{Bridge, BridgeOptions};
use drbridge_integration_tests::init_logging;
use drbridge_integration_tests::works::*;
use serde_json::json;

const WORKS: usize = 4;

async fn statuses(hub: &kube::Client) -> BTreeMap<String, (i64, bool)> {
    mw_api(hub, "dr1")
        .list(&Default::default())
        .await
        .unwrap()
        .into_iter()
        .map(|mw| (mw.metadata.name.clone().unwrap(), applied_available(&mw)))
        .collect()
}

/// Every status change of the works in `before`, seen through a watch, until `stop`: the
/// regressions among them (an older generation, Available lost, or the work gone). `listed`
/// fires once the watch has its initial list, so no change after that is missed.
async fn regressions(
    hub: kube::Client,
    before: BTreeMap<String, (i64, bool)>,
    listed: tokio::sync::oneshot::Sender<()>,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> Vec<String> {
    use futures::StreamExt;
    use kube::runtime::{WatchStreamExt, watcher};
    let mut listed = Some(listed);
    let mut found = Vec::new();
    let events = watcher(mw_api(&hub, "dr1"), watcher::Config::default()).default_backoff();
    let mut events = std::pin::pin!(events);
    let mut stop = std::pin::pin!(stop);
    loop {
        let event = tokio::select! {
            _ = &mut stop => return found,
            e = events.next() => e.expect("the watch goes on"),
        };
        let (mw, gone) = match event {
            Ok(watcher::Event::Apply(mw) | watcher::Event::InitApply(mw)) => (mw, false),
            Ok(watcher::Event::Delete(mw)) => (mw, true),
            Ok(watcher::Event::InitDone) => {
                if let Some(listed) = listed.take() {
                    let _ = listed.send(());
                }
                continue;
            }
            // A watch error is retried by the watcher; the relist replays every object.
            Ok(watcher::Event::Init) | Err(_) => continue,
        };
        let name = mw.metadata.name.clone().unwrap_or_default();
        let Some(was) = before.get(&name) else {
            continue;
        };
        let is = applied_available(&mw);
        if gone || is.0 < was.0 || !is.1 {
            found.push(format!(
                "{name}: {was:?} -> {is:?}{}",
                if gone { " (deleted)" } else { "" }
            ));
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_other_replica_takes_over_when_the_leader_crashes() {
    init_logging();
    let lease = LeaseConfig {
        name: "drbridge-hub".into(),
        identity: String::new(),
        lease_duration: Duration::from_secs(6),
        renew_deadline: Duration::from_secs(4),
        retry_period: Duration::from_secs(1),
    };
    let mut opts = BridgeOptions {
        replicas: 2,
        ..Default::default()
    };
    opts.hub.election = Some(LeaderOptions {
        namespace: "default".into(),
        lease: lease.clone(),
    });
    let mut b = Bridge::start_with(&["dr1"], opts).await;
    let hub = b.hub_client().await;
    let dr1 = b.client("dr1").await;

    for i in 0..WORKS {
        create_mw(
            &hub,
            "dr1",
            &format!("w{i}"),
            vec![
                namespace("app"),
                configmap("app", &format!("cm{i}"), json!({"v": "1"})),
            ],
            None,
        )
        .await;
    }
    let mut uids = BTreeMap::new();
    for i in 0..WORKS {
        wait_applied(&hub, "dr1", &format!("w{i}")).await;
        let cm = wait_cm(&dr1, "app", &format!("cm{i}"), "applied", |_| true).await;
        uids.insert(format!("cm{i}"), cm.metadata.uid.unwrap());
    }
    let before = statuses(&hub).await;
    assert!(before.values().all(|(g, a)| *g >= 1 && *a), "{before:?}");

    let old = b.leader().expect("a replica leads");
    let other = 1 - old;
    let old_epoch = b.leadership(old).unwrap().epoch().unwrap();
    let new_leadership = b.leadership(other).unwrap();
    assert!(!new_leadership.is_leader(), "exactly one replica leads");

    // Watch the works' status all through the failover: it must never regress.
    let (stop_watching, stop) = tokio::sync::oneshot::channel();
    let (listed, watch_listed) = tokio::sync::oneshot::channel();
    let observer = tokio::spawn(regressions(hub.clone(), before.clone(), listed, stop));
    tokio::time::timeout(Duration::from_secs(30), watch_listed)
        .await
        .expect("the status watch lists the works")
        .unwrap();

    let mut connected = b.agent_connected("dr1");
    connected.mark_unchanged();
    let crashed = Instant::now();
    b.crash_replica(old);

    // The bound follows from the configured lease timing; the margin is for a loaded machine.
    let bound = lease.takeover_bound() + Duration::from_secs(20);
    let new_epoch = tokio::time::timeout(bound, new_leadership.wait_leader())
        .await
        .expect("the other replica leads within the lease timing");
    let to_leader = crashed.elapsed();
    assert!(new_epoch > old_epoch, "{new_epoch} > {old_epoch}");

    // The agent's stream broke with the old leader; it dials the new one at once.
    tokio::time::timeout(bound, connected.wait_for(|c| !*c))
        .await
        .expect("the agent notices the crash")
        .unwrap();
    tokio::time::timeout(bound, connected.wait_for(|c| *c))
        .await
        .expect("the agent connects to the new leader")
        .unwrap();
    // Resynced: a change made now reaches the managed cluster through the new leader, and
    // its status comes back.
    create_mw(
        &hub,
        "dr1",
        "after",
        vec![
            namespace("app"),
            configmap("app", "cm-after", json!({"v": "1"})),
        ],
        None,
    )
    .await;
    wait_applied(&hub, "dr1", "after").await;
    let to_resync = crashed.elapsed();
    eprintln!(
        "failover: new leader after {:.2}s, agent resynced (new work applied and reported) after {:.2}s \
         (lease {:?}, renew deadline {:?}, retry {:?})",
        to_leader.as_secs_f64(),
        to_resync.as_secs_f64(),
        lease.lease_duration,
        lease.renew_deadline,
        lease.retry_period
    );

    // An update of an existing work goes through the new leader too.
    update_mw_manifests(
        &hub,
        "dr1",
        "w0",
        vec![namespace("app"), configmap("app", "cm0", json!({"v": "2"}))],
    )
    .await;
    wait_applied(&hub, "dr1", "w0").await;
    wait_cm(&dr1, "app", "cm0", "v=2", |c| {
        c.data.as_ref().and_then(|d| d.get("v")).map(String::as_str) == Some("2")
    })
    .await;

    stop_watching.send(()).unwrap();
    let regressed = observer.await.unwrap();
    assert!(
        regressed.is_empty(),
        "ManifestWork status regressed: {regressed:?}"
    );
    let after = statuses(&hub).await;
    for (name, (generation, available)) in &before {
        let (g, a) = after[name];
        assert!(
            g >= *generation && a == *available,
            "{name}: {:?} -> {:?}",
            (generation, available),
            (g, a)
        );
    }
    // Nothing on the managed cluster was deleted (or deleted and made again).
    for (name, uid) in &uids {
        let cm = get_cm(&dr1, "app", name)
            .await
            .unwrap_or_else(|| panic!("{name} was deleted"));
        assert_eq!(cm.metadata.uid.as_ref(), Some(uid), "{name} was recreated");
    }
    // The cluster is Available through the new leader.
    b.wait_connected("dr1").await;

    // The crashed replica comes back as a follower; work still flows through the leader.
    b.start_replica(old).await;
    create_mw(
        &hub,
        "dr1",
        "later",
        vec![
            namespace("app"),
            configmap("app", "cm-later", json!({"v": "1"})),
        ],
        None,
    )
    .await;
    wait_applied(&hub, "dr1", "later").await;
    assert!(new_leadership.holds(new_epoch));
    assert!(!b.leadership(old).unwrap().is_leader());
}
