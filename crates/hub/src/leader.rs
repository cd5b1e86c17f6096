//! Leader election among hub replicas on a `coordination.k8s.io/v1` Lease, and the fencing
//! epoch that comes with each term.
//!
//! Only the leader serves agents and writes (status, presence, finalizers). Every term has
//! an epoch, decided in the same resourceVersion-conditional write that takes the Lease and
//! kept in the Lease's annotation [`EPOCH_ANNOTATION`]: `max(wall-clock ms, previous + 1)`.
//! So two terms never share an epoch, the epoch grows even when a clock steps back, and it
//! stays above the start-time epochs (ms) that agents recorded from hubs without election.
//! Agents refuse a hub whose epoch is below the highest they accepted, so a deposed leader's
//! late syncs are refused by the agent, and its late writes are stopped here: a leader holds
//! its term only until `renew_deadline` after the start of its last successful renewal, which
//! is before any other replica may take the Lease (`lease_duration` after it last saw the
//! Lease change, measured on its own monotonic clock, as client-go does).
//!
//! Why not a crate: `kube-lease-manager` (which does build against this workspace's kube 5
//! and k8s-openapi 0.29) takes the Lease with one server-side-apply patch and bumps
//! `leaseTransitions` in a second, unconditional one, and reports leadership as a bool; the
//! epoch must be decided atomically with the take, so this is a small loop of its own.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// Default name of the Lease, in the hub's namespace.
pub const DEFAULT_LEASE_NAME: &str = "drbridge-hub";
/// Annotation of the Lease holding the epoch of the current (or last) term.
pub const EPOCH_ANNOTATION: &str = "drbridge.io/hub-epoch";

/// What this replica is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Follower,
    Leader { epoch: u64 },
}

impl Role {
    pub fn epoch(self) -> Option<u64> {
        match self {
            Role::Leader { epoch } => Some(epoch),
            Role::Follower => None,
        }
    }
}

#[derive(Debug)]
struct Shared {
    role: watch::Sender<Role>,
    /// End of the current term unless it is renewed; `None`: no election (one hub).
    valid_until: Mutex<Option<Instant>>,
}

/// This replica's leadership, shared by everything that must only act while leading.
#[derive(Clone, Debug)]
pub struct Leadership(Arc<Shared>);

impl Leadership {
    /// Always the leader with `epoch`: a hub without election (tests, a single replica).
    pub fn fixed(epoch: u64) -> Self {
        Self::with(Role::Leader { epoch })
    }

    /// A follower until an [`Elector`] says otherwise.
    pub fn follower() -> Self {
        Self::with(Role::Follower)
    }

    fn with(role: Role) -> Self {
        Self(Arc::new(Shared {
            role: watch::channel(role).0,
            valid_until: Mutex::new(None),
        }))
    }

    /// The epoch of the term this replica holds now, if it leads. Checked against the term's
    /// deadline too, so a write never starts after the term ran out, even if the elector
    /// has not yet noticed.
    pub fn epoch(&self) -> Option<u64> {
        let epoch = self.0.role.borrow().epoch()?;
        match *self.0.valid_until.lock() {
            Some(until) if Instant::now() >= until => None,
            _ => Some(epoch),
        }
    }

    /// How long the current term lasts at least (unless renewed): `Some(ZERO)` when this
    /// replica does not lead, `None` without election (no end).
    pub fn remaining(&self) -> Option<Duration> {
        if self.0.role.borrow().epoch().is_none() {
            return Some(Duration::ZERO);
        }
        let until = (*self.0.valid_until.lock())?;
        Some(until.saturating_duration_since(Instant::now()))
    }

    pub fn is_leader(&self) -> bool {
        self.epoch().is_some()
    }

    /// This replica still leads in the term of `epoch`.
    pub fn holds(&self, epoch: u64) -> bool {
        self.epoch() == Some(epoch)
    }

    /// Role changes (not renewals).
    pub fn watch(&self) -> watch::Receiver<Role> {
        self.0.role.subscribe()
    }

    /// Completes once this replica leads, with the term's epoch.
    pub async fn wait_leader(&self) -> u64 {
        let mut rx = self.watch();
        loop {
            if let Some(epoch) = rx.borrow_and_update().epoch()
                && self.holds(epoch)
            {
                return epoch;
            }
            // The sender lives in `self`: never closed while we wait.
            let _ = rx.changed().await;
        }
    }

    /// Completes once the term of `epoch` is over.
    pub async fn wait_lost(&self, epoch: u64) {
        let mut rx = self.watch();
        let _ = rx.wait_for(|r| r.epoch() != Some(epoch)).await;
    }

    pub(crate) fn lead(&self, epoch: u64, until: Instant) {
        *self.0.valid_until.lock() = Some(until);
        self.0.role.send_replace(Role::Leader { epoch });
    }

    fn renewed(&self, until: Instant) {
        *self.0.valid_until.lock() = Some(until);
    }

    pub(crate) fn follow(&self) {
        self.0.role.send_if_modified(|r| {
            let was = *r != Role::Follower;
            *r = Role::Follower;
            was
        });
    }
}

/// Timing and names of the election.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub name: String,
    /// This replica, written as `holderIdentity`.
    pub identity: String,
    /// How long others wait after the Lease last changed before taking it.
    pub lease_duration: Duration,
    /// The leader gives up its term this long after the start of its last successful
    /// renewal; shorter than `lease_duration`, the rest is the margin for clock rates and
    /// in-flight writes.
    pub renew_deadline: Duration,
    /// Pause between rounds (renewals and attempts to take the Lease).
    pub retry_period: Duration,
}

impl LeaseConfig {
    /// Checks the relations between the durations.
    pub fn validate(&self) -> Result<(), String> {
        if self.lease_duration < Duration::from_secs(1) {
            return Err("the lease duration must be at least 1s".into());
        }
        if self.renew_deadline >= self.lease_duration {
            return Err("the renew deadline must be shorter than the lease duration".into());
        }
        if self.retry_period.is_zero() || self.retry_period >= self.renew_deadline {
            return Err("the retry period must be above zero and below the renew deadline".into());
        }
        Ok(())
    }

    /// How long a new leader may take at most after the old one stopped renewing: a full
    /// lease duration since the follower last saw the Lease change, plus one round.
    pub fn takeover_bound(&self) -> Duration {
        self.lease_duration + self.retry_period + self.renew_deadline
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("the lease changed meanwhile")]
    Conflict,
    #[error(transparent)]
    Kube(#[from] kube::Error),
}

/// Where the Lease lives: the API server, or a fake in tests.
pub trait LeaseStore: Send + Sync + 'static {
    fn get(&self) -> impl Future<Output = Result<Option<Lease>, LeaseError>> + Send;
    /// Creates the Lease; [`LeaseError::Conflict`] when it exists.
    fn create(&self, lease: Lease) -> impl Future<Output = Result<Lease, LeaseError>> + Send;
    /// Replaces the Lease if its resourceVersion is still `lease.metadata.resource_version`;
    /// [`LeaseError::Conflict`] otherwise.
    fn replace(&self, lease: Lease) -> impl Future<Output = Result<Lease, LeaseError>> + Send;
}

/// The Lease on the API server.
#[derive(Clone)]
pub struct KubeLeases {
    api: Api<Lease>,
    name: String,
}

impl std::fmt::Debug for KubeLeases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeLeases")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl KubeLeases {
    pub fn new(client: kube::Client, namespace: &str, name: &str) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.to_string(),
        }
    }
}

fn conflict(e: kube::Error) -> LeaseError {
    match e {
        kube::Error::Api(s) if s.code == 409 => LeaseError::Conflict,
        e => LeaseError::Kube(e),
    }
}

impl LeaseStore for KubeLeases {
    async fn get(&self) -> Result<Option<Lease>, LeaseError> {
        Ok(self.api.get_opt(&self.name).await?)
    }

    async fn create(&self, lease: Lease) -> Result<Lease, LeaseError> {
        let pp = PostParams {
            field_manager: Some(crate::objects::FIELD_MANAGER.into()),
            ..Default::default()
        };
        self.api.create(&pp, &lease).await.map_err(conflict)
    }

    async fn replace(&self, lease: Lease) -> Result<Lease, LeaseError> {
        let pp = PostParams {
            field_manager: Some(crate::objects::FIELD_MANAGER.into()),
            ..Default::default()
        };
        self.api
            .replace(&self.name, &pp, &lease)
            .await
            .map_err(conflict)
    }
}

/// The epoch of a hub (or a term) started now: milliseconds since the Unix epoch.
pub fn start_epoch() -> u64 {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(1);
    ms.max(1)
}

/// The epoch of a new term after one of `previous`.
pub fn next_epoch(previous: Option<u64>, now_ms: u64) -> u64 {
    now_ms.max(previous.map_or(1, |p| p.saturating_add(1)))
}

/// The epoch recorded in a Lease.
pub fn epoch_of(lease: &Lease) -> Option<u64> {
    lease
        .metadata
        .annotations
        .as_ref()?
        .get(EPOCH_ANNOTATION)?
        .parse()
        .ok()
}

fn secs(d: Duration) -> i32 {
    d.as_secs().clamp(1, i32::MAX as u64) as i32
}

/// Runs the election for one replica.
#[derive(Debug)]
pub struct Elector<S> {
    store: S,
    cfg: LeaseConfig,
    leadership: Leadership,
    /// The Lease's resourceVersion as last seen, and when (on this replica's clock): the
    /// Lease is free once it has not changed for its duration.
    observed: Option<(String, Instant)>,
    /// The term held: its epoch and the start of its last successful renewal.
    term: Option<(u64, Instant)>,
}

impl<S: LeaseStore> Elector<S> {
    pub fn new(store: S, cfg: LeaseConfig, leadership: Leadership) -> Self {
        Self {
            store,
            cfg,
            leadership,
            observed: None,
            term: None,
        }
    }

    pub fn leadership(&self) -> &Leadership {
        &self.leadership
    }

    fn won(&mut self, lease: &Lease, epoch: u64, started: Instant) {
        self.observe(lease, started);
        self.term = Some((epoch, started));
        self.leadership
            .lead(epoch, started + self.cfg.renew_deadline);
        info!(identity = %self.cfg.identity, epoch, "leading: this replica holds the hub lease");
    }

    fn step_down(&mut self, why: &str) {
        if let Some((epoch, _)) = self.term.take() {
            warn!(identity = %self.cfg.identity, epoch, reason = why, "no longer leading");
        }
        self.leadership.follow();
    }

    fn observe(&mut self, lease: &Lease, now: Instant) {
        let rv = lease.metadata.resource_version.clone().unwrap_or_default();
        if self.observed.as_ref().is_none_or(|(seen, _)| *seen != rv) {
            self.observed = Some((rv, now));
        }
    }

    fn held_spec(&self, now: &MicroTime, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.cfg.identity.clone()),
            acquire_time: Some(now.clone()),
            renew_time: Some(now.clone()),
            lease_duration_seconds: Some(secs(self.cfg.lease_duration)),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }

    /// One round: read the Lease, then renew it, take it, or follow.
    pub async fn round(&mut self) -> Result<(), LeaseError> {
        let started = Instant::now();
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let Some(current) = self.store.get().await? else {
            let epoch = next_epoch(None, start_epoch());
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.cfg.name.clone()),
                    annotations: Some([(EPOCH_ANNOTATION.to_string(), epoch.to_string())].into()),
                    ..Default::default()
                },
                spec: Some(self.held_spec(&now, 0)),
            };
            return match self.store.create(lease).await {
                Ok(created) => {
                    self.won(&created, epoch, started);
                    Ok(())
                }
                // Another replica created it first: the next round reads it.
                Err(LeaseError::Conflict) => Ok(()),
                Err(e) => Err(e),
            };
        };
        self.observe(&current, started);
        let spec = current.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.as_deref().filter(|h| !h.is_empty());
        let recorded = epoch_of(&current);
        let mine = holder == Some(self.cfg.identity.as_str());
        if let Some((epoch, _)) = self.term {
            if mine && recorded == Some(epoch) {
                let mut renewed = current.clone();
                let mut spec = spec;
                spec.renew_time = Some(now);
                spec.lease_duration_seconds = Some(secs(self.cfg.lease_duration));
                renewed.spec = Some(spec);
                let lease = self.store.replace(renewed).await?;
                self.observe(&lease, started);
                self.term = Some((epoch, started));
                self.leadership.renewed(started + self.cfg.renew_deadline);
                debug!(epoch, "lease renewed");
                return Ok(());
            }
            // Someone else took it (or a term of ours that we no longer know).
            self.step_down("the lease has another holder or term");
        }
        let duration = spec
            .lease_duration_seconds
            .map_or(self.cfg.lease_duration, |s| {
                Duration::from_secs(s.max(0) as u64)
            });
        let seen_at = self.observed.as_ref().map_or(started, |(_, t)| *t);
        // Ours from an earlier term (a restart under the same identity, or a renewal that
        // landed after we gave up): nobody else can hold it, take it anew.
        let free = holder.is_none() || mine || started.duration_since(seen_at) >= duration;
        if !free {
            return Ok(());
        }
        let epoch = next_epoch(recorded, start_epoch());
        let mut taken = current.clone();
        taken
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(EPOCH_ANNOTATION.to_string(), epoch.to_string());
        taken.spec =
            Some(self.held_spec(&now, spec.lease_transitions.unwrap_or(0).saturating_add(1)));
        match self.store.replace(taken).await {
            Ok(lease) => {
                self.won(&lease, epoch, started);
                Ok(())
            }
            // Another replica took it first.
            Err(LeaseError::Conflict) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Gives the Lease up (clears the holder) if this replica holds it, so another replica
    /// takes over at once instead of after the lease duration.
    pub async fn release(&mut self) -> Result<(), LeaseError> {
        let Some((epoch, _)) = self.term else {
            return Ok(());
        };
        // Writers stop first: from here on this replica does not lead.
        self.step_down("releasing the lease");
        let Some(mut lease) = self.store.get().await? else {
            return Ok(());
        };
        let recorded = epoch_of(&lease);
        let spec = lease.spec.get_or_insert_with(Default::default);
        if spec.holder_identity.as_deref() != Some(self.cfg.identity.as_str())
            || recorded != Some(epoch)
        {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        self.store.replace(lease).await?;
        info!(epoch, "lease released");
        Ok(())
    }

    /// Runs rounds until `stop` turns true, then releases the Lease.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        loop {
            let deadline = self.term.map(|(_, t)| t + self.cfg.renew_deadline);
            // A round may not run past the term it tries to renew.
            let bound = deadline.unwrap_or_else(|| Instant::now() + self.cfg.renew_deadline);
            match tokio::time::timeout_at(bound, self.round()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => warn!(error = %e, "lease round failed"),
                Err(_) => warn!("lease round timed out"),
            }
            let deadline = self.term.map(|(_, t)| t + self.cfg.renew_deadline);
            if deadline.is_some_and(|d| Instant::now() >= d) {
                self.step_down("the lease could not be renewed in time");
            }
            let next = Instant::now() + self.cfg.retry_period;
            let wake = deadline.map_or(next, |d| d.min(next));
            tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                () = tokio::time::sleep_until(wake) => {}
            }
        }
        if let Err(e) = self.release().await {
            warn!(error = %e, "releasing the lease failed; another replica takes it when it expires");
        }
    }
}

/// Where and how replicas elect their leader (this module).
#[derive(Clone, Debug)]
pub struct LeaderOptions {
    /// Namespace of the Lease.
    pub namespace: String,
    pub lease: LeaseConfig,
}

#[cfg(test)]
mod tests;
