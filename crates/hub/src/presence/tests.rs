use super::*;
use crate::desired::Limits;
use crate::index::Index;
use crate::metrics::Metrics;
use crate::objects::{ClusterObject, Meta};

const TIMEOUT: Duration = Duration::from_secs(15);

fn wall() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-27T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn info() -> pb::ClusterInfo {
    pb::ClusterInfo {
        claims: [
            ("id.k8s.io".to_string(), "kube-system-uid".to_string()),
            ("name".to_string(), "dr1".to_string()),
        ]
        .into_iter()
        .collect(),
        kubernetes_version: "v1.37.0".into(),
    }
}

fn connected(conn: u64) -> Event {
    Event::Connected {
        cluster: "dr1".into(),
        conn,
        info: info(),
    }
}

fn available(ops: &[WriteOp]) -> Vec<Option<bool>> {
    ops.iter()
        .filter_map(|op| match op {
            WriteOp::Cluster(c) => Some(c.available),
            _ => None,
        })
        .collect()
}

fn unreachable(ops: &[WriteOp]) -> Vec<Option<String>> {
    ops.iter()
        .filter_map(|op| match op {
            WriteOp::Unreachable { since, .. } => Some(since.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn connect_heartbeat_silence_and_return() {
    let mut p = Presence::new(TIMEOUT);
    let t0 = Instant::now();
    p.set_registered([("dr1".to_string(), false)], t0, wall());
    let ops = p.drain();
    assert_eq!(available(&ops), vec![None], "accepted, nothing known yet");

    p.on_event(connected(1), Instant::now(), wall());
    let ops = p.drain();
    assert_eq!(available(&ops), vec![Some(true)]);
    let WriteOp::Cluster(cs) = &ops[0] else {
        panic!("{ops:?}")
    };
    assert!(cs.joined);
    assert_eq!(
        cs.claims.as_deref(),
        Some(
            &[
                ("id.k8s.io".to_string(), "kube-system-uid".to_string()),
                ("name".to_string(), "dr1".to_string())
            ][..]
        )
    );
    assert_eq!(cs.kubernetes_version.as_deref(), Some("v1.37.0"));

    // Heartbeats every 5 s keep it available, without writes.
    for _ in 0..6 {
        tokio::time::advance(Duration::from_secs(5)).await;
        p.on_event(
            Event::Seen {
                cluster: "dr1".into(),
                conn: 1,
            },
            Instant::now(),
            wall(),
        );
        p.on_tick(Instant::now());
        assert!(p.drain().is_empty());
    }

    // Silence: Unknown within 15 s, not before.
    let last = Instant::now();
    assert_eq!(p.next_deadline(), Some(last + TIMEOUT));
    tokio::time::advance(Duration::from_secs(14)).await;
    p.on_tick(Instant::now());
    assert!(p.drain().is_empty());
    tokio::time::advance(Duration::from_secs(1)).await;
    p.on_tick(Instant::now());
    let ops = p.drain();
    assert_eq!(available(&ops), vec![Some(false)]);
    assert_eq!(
        unreachable(&ops),
        vec![Some("2026-11-27T10:00:00Z".to_string())]
    );
    assert_eq!(p.is_available("dr1"), Some(false));
    assert_eq!(p.next_deadline(), None, "no timer for an expired cluster");

    // Back: True again, annotations removed.
    p.on_event(
        Event::Seen {
            cluster: "dr1".into(),
            conn: 1,
        },
        Instant::now(),
        wall(),
    );
    let ops = p.drain();
    assert_eq!(available(&ops), vec![Some(true)]);
    assert_eq!(unreachable(&ops), vec![None]);
}

#[tokio::test(start_paused = true)]
async fn disconnect_goes_unknown_within_the_timeout_unless_the_agent_redials() {
    let mut p = Presence::new(TIMEOUT);
    p.set_registered([("dr1".to_string(), true)], Instant::now(), wall());
    p.on_event(connected(1), Instant::now(), wall());
    p.drain();

    // Quick redial: stays available.
    tokio::time::advance(Duration::from_secs(2)).await;
    p.on_event(
        Event::Disconnected {
            cluster: "dr1".into(),
            conn: 1,
        },
        Instant::now(),
        wall(),
    );
    tokio::time::advance(Duration::from_secs(3)).await;
    p.on_event(connected(2), Instant::now(), wall());
    p.on_tick(Instant::now());
    assert!(!available(&p.drain()).contains(&Some(false)));

    // The old stream's late disconnect is ignored.
    p.on_event(
        Event::Disconnected {
            cluster: "dr1".into(),
            conn: 1,
        },
        Instant::now(),
        wall(),
    );
    // Seen from a replaced stream does not count either.
    tokio::time::advance(Duration::from_secs(10)).await;
    p.on_event(
        Event::Seen {
            cluster: "dr1".into(),
            conn: 1,
        },
        Instant::now(),
        wall(),
    );
    tokio::time::advance(Duration::from_secs(5)).await;
    p.on_tick(Instant::now());
    assert_eq!(available(&p.drain()), vec![Some(false)]);
}

#[tokio::test(start_paused = true)]
async fn a_cluster_whose_agent_never_comes_goes_unknown() {
    // Also what a hub restart looks like for a cluster that is down.
    let mut p = Presence::new(TIMEOUT);
    p.set_registered([("dr1".to_string(), true)], Instant::now(), wall());
    let ops = p.drain();
    let WriteOp::Cluster(cs) = &ops[0] else {
        panic!()
    };
    assert!(cs.joined, "joined is kept from the stored status");
    tokio::time::advance(TIMEOUT).await;
    p.on_tick(Instant::now());
    assert_eq!(available(&p.drain()), vec![Some(false)]);
}

#[tokio::test(start_paused = true)]
async fn a_connection_before_the_registration_poll_counts() {
    let mut p = Presence::new(TIMEOUT);
    p.on_event(connected(1), Instant::now(), wall());
    assert_eq!(available(&p.drain()), vec![Some(true)]);
    // The poll then finds it registered: nothing new to say.
    p.set_registered([("dr1".to_string(), false)], Instant::now(), wall());
    assert!(p.drain().is_empty());
    assert_eq!(p.is_available("dr1"), Some(true));
}

#[tokio::test(start_paused = true)]
async fn unregistered_clusters_are_forgotten() {
    let mut p = Presence::new(TIMEOUT);
    p.set_registered([("dr1".to_string(), false)], Instant::now(), wall());
    p.set_registered(Vec::<(String, bool)>::new(), Instant::now(), wall());
    p.drain();
    assert_eq!(p.next_deadline(), None);
    p.on_event(
        Event::Seen {
            cluster: "dr1".into(),
            conn: 1,
        },
        Instant::now(),
        wall(),
    );
    assert!(p.drain().is_empty());
}

fn cluster(name: &str) -> ClusterObject {
    ClusterObject {
        meta: Meta {
            name: name.into(),
            uid: "u".into(),
            ..Default::default()
        },
        conditions: vec![],
        claims: vec![],
    }
}

/// An index that has listed, with the cluster dr1.
fn index_of_dr1() -> crate::index::SharedIndex {
    let mut index = Index::new(Limits::default(), None, Metrics::default());
    index.reset_works(vec![]);
    index.reset_views(vec![]);
    index.reset_clusters(vec![cluster("dr1")]);
    index.shared()
}

/// The driver, on tokio's paused clock: events in, writes out, timers included.
#[tokio::test(start_paused = true)]
async fn driver_publishes_and_expires() {
    let index = index_of_dr1();
    let (ev_tx, ev_rx) = mpsc::channel(16);
    let (w_tx, mut w_rx) = mpsc::channel(16);
    let task = tokio::spawn(run(Presence::new(TIMEOUT), index, ev_rx, w_tx));

    // Registration is picked up: HubAccepted.
    let op = w_rx.recv().await.unwrap();
    assert!(matches!(
        op,
        WriteOp::Cluster(ClusterStatus {
            available: None,
            ..
        })
    ));

    ev_tx.send(connected(1)).await.unwrap();
    let op = w_rx.recv().await.unwrap();
    assert!(matches!(
        op,
        WriteOp::Cluster(ClusterStatus {
            available: Some(true),
            ..
        })
    ));
    // First contact: annotations an earlier hub may have left are removed.
    let op = w_rx.recv().await.unwrap();
    assert!(
        matches!(op, WriteOp::Unreachable { since: None, .. }),
        "{op:?}"
    );

    let started = Instant::now();
    // Silence: the driver's own timer fires (the paused clock auto-advances).
    let mut got = vec![];
    while got.len() < 2 {
        got.push(w_rx.recv().await.unwrap());
    }
    assert!(Instant::now().duration_since(started) <= TIMEOUT);
    assert_eq!(available(&got), vec![Some(false)]);
    assert_eq!(unreachable(&got).len(), 1);
    drop(ev_tx);
    task.await.unwrap();
}

/// Presence runs only while this replica leads, afresh each term.
#[tokio::test(start_paused = true)]
async fn presence_runs_only_while_leading() {
    let index = index_of_dr1();
    let (ev_tx, ev_rx) = mpsc::channel(16);
    let (w_tx, mut w_rx) = mpsc::channel(16);
    let leadership = crate::leader::Leadership::follower();
    let task = tokio::spawn(run_leading(TIMEOUT, index, ev_rx, w_tx, leadership.clone()));
    // A follower reads events and writes nothing. Ten timeouts pass on the paused clock: a
    // leader would have published and expired the cluster by then.
    ev_tx.send(connected(1)).await.unwrap();
    tokio::time::advance(10 * TIMEOUT).await;
    assert!(w_rx.try_recv().is_err());
    // Leading: the registered cluster is published.
    leadership.lead(7, Instant::now() + Duration::from_secs(3600));
    let op = w_rx.recv().await.unwrap();
    assert!(
        matches!(
            op,
            WriteOp::Cluster(ClusterStatus {
                available: None,
                ..
            })
        ),
        "{op:?}"
    );
    leadership.follow();
    leadership.lead(8, Instant::now() + Duration::from_secs(3600));
    // A new term starts afresh: published again as unknown-yet.
    let mut got = vec![w_rx.recv().await.unwrap()];
    while !matches!(
        got.last(),
        Some(WriteOp::Cluster(ClusterStatus {
            available: None,
            ..
        }))
    ) {
        got.push(w_rx.recv().await.unwrap());
    }
    drop(ev_tx);
    task.await.unwrap();
}
