//! Leader-kill benchmark (not a test): two hub replicas on a real API server electing on a
//! Lease, CLUSTERS simulated agents (the real agent over an in-memory cluster, one mTLS
//! stream each) with WORKS works each. The leader is killed as SIGKILL would (no release);
//! the benchmark prints the time to a new leader, until every agent is connected again, and
//! until every agent is resynced (a new work for every cluster applied and its status
//! written), and checks that no work status regressed and nothing was deleted on any cluster.
//!
//! cargo bench -p drbridge-integration-tests --bench leader_kill [-- CLUSTERS [WORKS]]
//! DRBRIDGE_LEASE=10,7,2 sets lease duration, renew deadline and retry period (seconds;
//! the default is the hub's).

use std::time::{Duration, Instant};

use drbridge_hub::LeaderOptions;
use drbridge_hub::leader::LeaseConfig;
use drbridge_integration_tests::bench::{Snapshot, wait_all_applied};
use drbridge_integration_tests::bridge::{Bridge, BridgeOptions};
use drbridge_integration_tests::works::*;
use serde_json::json;

fn lease_from_env() -> LeaseConfig {
    let secs: Vec<u64> = std::env::var("DRBRIDGE_LEASE")
        .unwrap_or_else(|_| "10,7,2".into())
        .split(',')
        .map(|s| {
            s.trim()
                .parse()
                .expect("DRBRIDGE_LEASE: three whole seconds")
        })
        .collect();
    assert_eq!(secs.len(), 3, "DRBRIDGE_LEASE: lease,renew,retry");
    let lease = LeaseConfig {
        name: "drbridge-hub".into(),
        identity: String::new(),
        lease_duration: Duration::from_secs(secs[0]),
        renew_deadline: Duration::from_secs(secs[1]),
        retry_period: Duration::from_secs(secs[2]),
    };
    lease.validate().expect("DRBRIDGE_LEASE");
    lease
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    drbridge_integration_tests::init_logging();
    let mut args = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse::<usize>().ok());
    let clusters = args.next().unwrap_or(100);
    let works = args.next().unwrap_or(10);
    let lease = lease_from_env();
    let names: Vec<String> = (0..clusters).map(|i| format!("sim{i:04}")).collect();

    let mut opts = BridgeOptions {
        replicas: 2,
        simulated: names.clone(),
        ..Default::default()
    };
    opts.hub.election = Some(LeaderOptions {
        namespace: "default".into(),
        lease: lease.clone(),
    });
    eprintln!("starting 2 hub replicas and {clusters} simulated agents ...");
    let started = Instant::now();
    let mut b = Bridge::start_with(&[], opts).await;
    eprintln!("up in {:.1}s", started.elapsed().as_secs_f64());
    let hub = b.hub_client().await;

    let mut all = Vec::new();
    for c in &names {
        for w in 0..works {
            let name = format!("w{w}");
            create_mw(
                &hub,
                c,
                &name,
                vec![configmap("app", &name, json!({"v": "1"}))],
                None,
            )
            .await;
            all.push(format!("{c}/{name}"));
        }
    }
    let t = Instant::now();
    wait_all_applied(&hub, &all, Duration::from_secs(600)).await;
    eprintln!(
        "{} works applied in {:.1}s",
        all.len(),
        t.elapsed().as_secs_f64()
    );
    let before = Snapshot::take(&b, &names).await;

    let old = b.leader().expect("a replica leads");
    let old_epoch = b.leadership(old).unwrap().epoch().unwrap();
    let new_leadership = b.leadership(1 - old).unwrap();
    let mut connected: Vec<_> = names.iter().map(|c| b.agent_connected(c)).collect();
    for c in &mut connected {
        c.mark_unchanged();
    }

    let killed = Instant::now();
    b.crash_replica(old);
    let bound = lease.takeover_bound() + Duration::from_secs(60);
    let new_epoch = tokio::time::timeout(bound, new_leadership.wait_leader())
        .await
        .expect("a new leader");
    let to_leader = killed.elapsed();
    assert!(new_epoch > old_epoch);
    for c in &mut connected {
        tokio::time::timeout(bound, c.wait_for(|up| !*up))
            .await
            .expect("every agent notices the kill")
            .unwrap();
    }
    for c in &mut connected {
        tokio::time::timeout(bound, c.wait_for(|up| *up))
            .await
            .expect("every agent connects to the new leader")
            .unwrap();
    }
    let to_connected = killed.elapsed();
    let mut after_names = Vec::new();
    for c in &names {
        create_mw(
            &hub,
            c,
            "after",
            vec![configmap("app", "after", json!({"v": "1"}))],
            None,
        )
        .await;
        after_names.push(format!("{c}/after"));
    }
    wait_all_applied(&hub, &after_names, bound).await;
    let to_resynced = killed.elapsed();

    // Nothing lost, regressed or deleted.
    let losses = before.check(&b).await;

    println!(
        "leader kill: {clusters} simulated agents x {works} works, lease {:?}/{:?}/{:?} (duration/renew deadline/retry)",
        lease.lease_duration, lease.renew_deadline, lease.retry_period
    );
    println!(
        "  new leader after        {:6.2}s (epoch {old_epoch} -> {new_epoch})",
        to_leader.as_secs_f64()
    );
    println!(
        "  every agent connected   {:6.2}s",
        to_connected.as_secs_f64()
    );
    println!(
        "  every agent resynced    {:6.2}s (a new work on each cluster applied and reported)",
        to_resynced.as_secs_f64()
    );
    println!("  {losses}");
    assert!(losses.none(), "{losses:?}");
}
