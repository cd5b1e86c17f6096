use std::sync::atomic::{AtomicBool, Ordering};

use super::*;

/// One Lease shared by every replica's handle, with resourceVersion checks as the API
/// server makes them; a handle can be cut off from it.
#[derive(Debug, Default)]
struct Server {
    lease: Mutex<Option<Lease>>,
    version: Mutex<u64>,
}

#[derive(Clone, Debug)]
struct FakeLeases {
    server: Arc<Server>,
    cut_off: Arc<AtomicBool>,
}

impl FakeLeases {
    fn new(server: &Arc<Server>) -> Self {
        Self {
            server: server.clone(),
            cut_off: Arc::new(AtomicBool::new(false)),
        }
    }

    fn check(&self) -> Result<(), LeaseError> {
        if self.cut_off.load(Ordering::SeqCst) {
            Err(LeaseError::Kube(kube::Error::Api(
                kube::core::Status::failure("unreachable", "ServiceUnavailable")
                    .with_code(503)
                    .boxed(),
            )))
        } else {
            Ok(())
        }
    }

    fn stamp(&self, mut lease: Lease) -> Lease {
        let mut v = self.server.version.lock();
        *v += 1;
        lease.metadata.resource_version = Some(v.to_string());
        lease
    }
}

impl LeaseStore for FakeLeases {
    async fn get(&self) -> Result<Option<Lease>, LeaseError> {
        self.check()?;
        Ok(self.server.lease.lock().clone())
    }

    async fn create(&self, lease: Lease) -> Result<Lease, LeaseError> {
        self.check()?;
        let mut cur = self.server.lease.lock();
        if cur.is_some() {
            return Err(LeaseError::Conflict);
        }
        let lease = self.stamp(lease);
        *cur = Some(lease.clone());
        Ok(lease)
    }

    async fn replace(&self, lease: Lease) -> Result<Lease, LeaseError> {
        self.check()?;
        let mut cur = self.server.lease.lock();
        let current_rv = cur
            .as_ref()
            .and_then(|l| l.metadata.resource_version.clone());
        if current_rv.is_none() || current_rv != lease.metadata.resource_version {
            return Err(LeaseError::Conflict);
        }
        let lease = self.stamp(lease);
        *cur = Some(lease.clone());
        Ok(lease)
    }
}

fn cfg(identity: &str) -> LeaseConfig {
    LeaseConfig {
        name: DEFAULT_LEASE_NAME.into(),
        identity: identity.into(),
        lease_duration: Duration::from_secs(15),
        renew_deadline: Duration::from_secs(10),
        retry_period: Duration::from_secs(2),
    }
}

fn elector(server: &Arc<Server>, identity: &str) -> (Elector<FakeLeases>, Arc<AtomicBool>) {
    let store = FakeLeases::new(server);
    let cut = store.cut_off.clone();
    (
        Elector::new(store, cfg(identity), Leadership::follower()),
        cut,
    )
}

fn lease(server: &Server) -> Lease {
    server.lease.lock().clone().expect("a lease")
}

#[tokio::test(start_paused = true)]
async fn the_first_replica_creates_the_lease_and_leads() {
    let server = Arc::new(Server::default());
    let (mut a, _) = elector(&server, "a");
    a.round().await.unwrap();
    let epoch = a.leadership().epoch().expect("leading");
    let l = lease(&server);
    assert_eq!(epoch_of(&l), Some(epoch));
    let spec = l.spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("a"));
    assert_eq!(spec.lease_transitions, Some(0));
    // The epoch continues the start-time epochs of hubs without election.
    assert!(epoch >= start_epoch() - 60_000);
    // The term lasts until the renew deadline, counted from the round's start.
    assert_eq!(a.leadership().remaining(), Some(cfg("a").renew_deadline));
    tokio::time::advance(cfg("a").renew_deadline).await;
    assert!(!a.leadership().is_leader(), "not past its own deadline");
    assert_eq!(a.leadership().remaining(), Some(Duration::ZERO));
    assert_eq!(Leadership::fixed(3).remaining(), None);
    assert_eq!(Leadership::follower().remaining(), Some(Duration::ZERO));
}

#[tokio::test(start_paused = true)]
async fn a_follower_waits_a_full_lease_duration_after_the_last_change() {
    let server = Arc::new(Server::default());
    let (mut a, _) = elector(&server, "a");
    let (mut b, _) = elector(&server, "b");
    a.round().await.unwrap();
    let first = a.leadership().epoch().unwrap();
    b.round().await.unwrap();
    assert!(!b.leadership().is_leader());
    // A renews for a while: B never takes over.
    for _ in 0..20 {
        tokio::time::advance(Duration::from_secs(2)).await;
        a.round().await.unwrap();
        b.round().await.unwrap();
        assert!(a.leadership().holds(first));
        assert!(!b.leadership().is_leader());
    }
    // A dies (no more rounds). B takes the Lease only once it has seen no change for the
    // lease duration.
    let died = Instant::now();
    loop {
        tokio::time::advance(Duration::from_secs(1)).await;
        b.round().await.unwrap();
        if b.leadership().is_leader() {
            break;
        }
    }
    assert!(Instant::now().duration_since(died) >= Duration::from_secs(15));
    let second = b.leadership().epoch().unwrap();
    assert!(second > first);
    let l = lease(&server);
    assert_eq!(epoch_of(&l), Some(second));
    assert_eq!(l.spec.unwrap().lease_transitions, Some(1));
    // A's term ran out on its own deadline; and seeing the Lease, it knows it is over.
    assert!(!a.leadership().is_leader());
    a.round().await.unwrap();
    assert_eq!(*a.leadership().watch().borrow(), Role::Follower);
}

#[tokio::test(start_paused = true)]
async fn a_leader_cut_off_stops_before_another_can_take_over() {
    let server = Arc::new(Server::default());
    let (a, cut_a) = elector(&server, "a");
    let (b, _) = elector(&server, "b");
    let (la, lb) = (a.leadership().clone(), b.leadership().clone());
    let (stop_tx, stop) = watch::channel(false);
    let ta = tokio::spawn(a.run(stop.clone()));
    let first = la.wait_leader().await;
    let tb = tokio::spawn(b.run(stop.clone()));
    // B has seen the Lease held.
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(la.holds(first) && !lb.is_leader());

    cut_a.store(true, Ordering::SeqCst);
    let cut_at = Instant::now();
    la.wait_lost(first).await;
    let stepped_down = Instant::now();
    let second = lb.wait_leader().await;
    let taken = Instant::now();
    assert!(second > first);
    assert!(
        stepped_down < taken,
        "the old leader stopped at {:?}, the new one started at {:?}",
        stepped_down - cut_at,
        taken - cut_at
    );
    assert!(stepped_down - cut_at <= cfg("a").renew_deadline);
    assert!(taken - cut_at <= cfg("a").takeover_bound());
    // Back on the network, A follows.
    cut_a.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(!la.is_leader() && lb.holds(second));
    let _ = stop_tx.send(true);
    ta.await.unwrap();
    tb.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn releasing_hands_over_at_once() {
    let server = Arc::new(Server::default());
    let (a, _) = elector(&server, "a");
    let (b, _) = elector(&server, "b");
    let (la, lb) = (a.leadership().clone(), b.leadership().clone());
    let (stop_a_tx, stop_a) = watch::channel(false);
    let (stop_b_tx, stop_b) = watch::channel(false);
    let ta = tokio::spawn(a.run(stop_a));
    let first = la.wait_leader().await;
    let tb = tokio::spawn(b.run(stop_b));
    tokio::time::sleep(Duration::from_secs(5)).await;
    let _ = stop_a_tx.send(true);
    ta.await.unwrap();
    assert!(!la.is_leader());
    let released = Instant::now();
    let second = lb.wait_leader().await;
    assert!(second > first);
    // Within a round or two, not a lease duration.
    assert!(Instant::now() - released <= 2 * cfg("b").retry_period);
    let _ = stop_b_tx.send(true);
    tb.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_epoch_grows_even_when_the_clock_steps_back() {
    assert_eq!(next_epoch(None, 1_000), 1_000);
    assert_eq!(next_epoch(Some(5_000), 1_000), 5_001);
    assert_eq!(next_epoch(Some(5_000), 9_000), 9_000);
    // A Lease whose last term has an epoch from the future.
    let server = Arc::new(Server::default());
    let (mut a, _) = elector(&server, "a");
    a.round().await.unwrap();
    {
        let mut cur = server.lease.lock();
        let l = cur.as_mut().unwrap();
        l.metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(EPOCH_ANNOTATION.into(), (u64::MAX / 2).to_string());
        l.spec.as_mut().unwrap().holder_identity = Some("old".into());
    }
    let (mut b, _) = elector(&server, "b");
    b.round().await.unwrap();
    tokio::time::advance(Duration::from_secs(16)).await;
    b.round().await.unwrap();
    assert_eq!(b.leadership().epoch(), Some(u64::MAX / 2 + 1));
}

#[tokio::test(start_paused = true)]
async fn a_fixed_leadership_always_leads() {
    let l = Leadership::fixed(7);
    assert_eq!(l.epoch(), Some(7));
    tokio::time::advance(Duration::from_secs(3600)).await;
    assert!(l.holds(7));
    assert_eq!(l.wait_leader().await, 7);
}

#[test]
fn config_relations() {
    assert!(cfg("a").validate().is_ok());
    let mut c = cfg("a");
    c.renew_deadline = c.lease_duration;
    assert!(c.validate().is_err());
    let mut c = cfg("a");
    c.retry_period = c.renew_deadline;
    assert!(c.validate().is_err());
}

#[test]
fn epoch_is_the_start_time_in_ms() {
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let e = start_epoch();
    assert!(e >= before && e < before + 60_000);
}
