//! Presence: each ManagedCluster's `status` from its agent's stream.
//!
//! - `HubAcceptedManagedCluster=True` for every registered cluster.
//! - `ManagedClusterJoined=True` once an agent has connected (kept forever, as OCM).
//! - `ManagedClusterConditionAvailable=True` while an agent is connected and its
//!   messages keep coming; `Unknown` when nothing was heard for `timeout` (default
//!   15 s: three missed 5 s heartbeats), whether the stream broke or went silent;
//!   `True` again as soon as it is heard from.
//! - `status.clusterClaims` and `status.version.kubernetes` from the agent's `Hello`.
//!
//! While a cluster is unreachable its works and views keep their last status and get
//! the annotation `drbridge.io/unreachable-since` (docs/presence.md).
//!
//! [`Presence`] is a pure state machine driven with explicit instants, so its timing is
//! tested with tokio's paused clock; [`run`] drives it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use drbridge_proto::v1 as pb;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info};

use crate::index::SharedIndex;
use crate::leader::Leadership;
use crate::status::{ClusterStatus, WriteOp};
use drbridge_model::status::rfc3339;

/// What the gRPC layer tells presence.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    Connected {
        cluster: String,
        conn: u64,
        info: pb::ClusterInfo,
    },
    /// Any message from the agent (heartbeats included).
    Seen {
        cluster: String,
        conn: u64,
    },
    Disconnected {
        cluster: String,
        conn: u64,
    },
}

#[derive(Debug)]
struct State {
    conn: Option<u64>,
    last_seen: Instant,
    last_seen_wall: DateTime<Utc>,
    joined: bool,
    /// What was last published: `Some(true)` available, `Some(false)` unknown.
    available: Option<bool>,
    claims: Option<Vec<(String, String)>>,
    kubernetes_version: Option<String>,
}

/// The state machine.
#[derive(Debug)]
pub struct Presence {
    timeout: Duration,
    clusters: BTreeMap<String, State>,
    out: Vec<WriteOp>,
}

impl Presence {
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            clusters: BTreeMap::new(),
            out: Vec::new(),
        }
    }

    /// Takes the writes produced so far.
    pub fn drain(&mut self) -> Vec<WriteOp> {
        std::mem::take(&mut self.out)
    }

    fn publish(&mut self, name: &str) {
        if let Some(s) = self.clusters.get(name) {
            self.out.push(WriteOp::Cluster(ClusterStatus {
                name: name.to_string(),
                joined: s.joined,
                available: s.available,
                claims: s.claims.clone(),
                kubernetes_version: s.kubernetes_version.clone(),
            }));
        }
    }

    /// Aligns the set of clusters with the registered ones. A new cluster starts its
    /// silence clock now: if no agent arrives within the timeout it becomes Unknown
    /// (this is also what happens to every cluster when the hub restarts).
    /// `joined` says whether its stored status already has `ManagedClusterJoined=True`.
    pub fn set_registered(
        &mut self,
        registered: impl IntoIterator<Item = (String, bool)>,
        now: Instant,
        wall: DateTime<Utc>,
    ) {
        let registered: BTreeMap<String, bool> = registered.into_iter().collect();
        self.clusters.retain(|n, _| registered.contains_key(n));
        for (name, joined) in registered {
            if self.clusters.contains_key(&name) {
                continue;
            }
            self.clusters.insert(
                name.clone(),
                State {
                    conn: None,
                    last_seen: now,
                    last_seen_wall: wall,
                    joined,
                    available: None,
                    claims: None,
                    kubernetes_version: None,
                },
            );
            self.publish(&name);
        }
    }

    pub fn on_event(&mut self, ev: Event, now: Instant, wall: DateTime<Utc>) {
        match ev {
            Event::Connected {
                cluster,
                conn,
                info,
            } => {
                // The stream was accepted, so the cluster is registered even if the
                // periodic read of the index has not seen it yet.
                let s = self
                    .clusters
                    .entry(cluster.clone())
                    .or_insert_with(|| State {
                        conn: None,
                        last_seen: now,
                        last_seen_wall: wall,
                        joined: true,
                        available: None,
                        claims: None,
                        kubernetes_version: None,
                    });
                s.conn = Some(conn);
                s.joined = true;
                let mut claims: Vec<(String, String)> = info.claims.into_iter().collect();
                claims.sort();
                s.claims = Some(claims);
                if !info.kubernetes_version.is_empty() {
                    s.kubernetes_version = Some(info.kubernetes_version);
                }
                self.heard(&cluster, now, wall, true);
            }
            Event::Seen { cluster, conn } => {
                if self.clusters.get(&cluster).and_then(|s| s.conn) == Some(conn) {
                    self.heard(&cluster, now, wall, false);
                }
            }
            Event::Disconnected { cluster, conn } => {
                if let Some(s) = self.clusters.get_mut(&cluster)
                    && s.conn == Some(conn)
                {
                    // Not Unknown yet: an agent that redials within the timeout keeps
                    // the cluster Available. The silence clock runs from the last message.
                    s.conn = None;
                }
            }
        }
    }

    fn heard(&mut self, cluster: &str, now: Instant, wall: DateTime<Utc>, force: bool) {
        let Some(s) = self.clusters.get_mut(cluster) else {
            return;
        };
        s.last_seen = now;
        s.last_seen_wall = wall;
        let was = s.available;
        if was != Some(true) || force {
            s.available = Some(true);
            if was == Some(false) {
                info!(%cluster, "cluster reachable again");
                self.out.push(WriteOp::Unreachable {
                    cluster: cluster.to_string(),
                    since: None,
                });
            }
            self.publish(cluster);
            if was.is_none() {
                // First contact of this hub (or of this leader's term): annotations an earlier
                // hub or leader left are removed; the writer skips objects without one.
                self.out.push(WriteOp::Unreachable {
                    cluster: cluster.to_string(),
                    since: None,
                });
            }
        }
    }

    /// Marks silent clusters Unknown.
    pub fn on_tick(&mut self, now: Instant) {
        let mut expired = Vec::new();
        for (name, s) in &mut self.clusters {
            if s.available != Some(false) && now.duration_since(s.last_seen) >= self.timeout {
                s.available = Some(false);
                expired.push((name.clone(), s.last_seen_wall));
            }
        }
        for (name, since) in expired {
            info!(cluster = %name, since = %rfc3339(since), "cluster unreachable");
            self.out.push(WriteOp::Unreachable {
                cluster: name.clone(),
                since: Some(rfc3339(since)),
            });
            self.publish(&name);
        }
    }

    /// When the next cluster may expire.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.clusters
            .values()
            .filter(|s| s.available != Some(false))
            .map(|s| s.last_seen + self.timeout)
            .min()
    }

    pub fn is_available(&self, cluster: &str) -> Option<bool> {
        self.clusters.get(cluster).and_then(|s| s.available)
    }
}

/// How often the set of registered clusters is re-read from the index.
const REGISTERED_POLL: Duration = Duration::from_secs(1);

fn joined_in(conds: &[serde_json::Value]) -> bool {
    conds.iter().any(|c| {
        c.get("type").and_then(|v| v.as_str()) == Some("ManagedClusterJoined")
            && c.get("status").and_then(|v| v.as_str()) == Some("True")
    })
}

/// Drives [`Presence`]: events from the gRPC layer, expiry timers, and the registered
/// clusters of the index. Ends when the event channel closes.
pub async fn run(
    presence: Presence,
    index: SharedIndex,
    mut events: mpsc::Receiver<Event>,
    writes: mpsc::Sender<WriteOp>,
) {
    serve_term(
        presence,
        &index,
        &mut events,
        &writes,
        std::future::pending(),
    )
    .await;
}

/// [`run`] while `leadership` leads, a fresh [`Presence`] each term: a new leader knows
/// nothing of the old one's streams, exactly as a restarted hub, so every cluster starts its
/// silence clock when the term starts. Between terms events are read and dropped (streams of
/// the old term closing). Ends when the event channel closes.
pub async fn run_leading(
    timeout: Duration,
    index: SharedIndex,
    mut events: mpsc::Receiver<Event>,
    writes: mpsc::Sender<WriteOp>,
    leadership: Leadership,
) {
    loop {
        let epoch = tokio::select! {
            epoch = leadership.wait_leader() => epoch,
            ev = events.recv() => match ev {
                Some(_) => continue,
                None => return,
            },
        };
        info!(epoch, "leading: presence starts");
        let lost = leadership.wait_lost(epoch);
        if !serve_term(Presence::new(timeout), &index, &mut events, &writes, lost).await {
            return;
        }
        info!(epoch, "not leading: presence stops");
    }
}

/// Returns false when the event channel or the writer is gone, true when `until` completed.
async fn serve_term(
    mut presence: Presence,
    index: &SharedIndex,
    events: &mut mpsc::Receiver<Event>,
    writes: &mpsc::Sender<WriteOp>,
    until: impl std::future::Future<Output = ()>,
) -> bool {
    let mut ready = index.read().ready();
    tokio::pin!(until);
    // Nothing is known about registrations before the index has listed.
    tokio::select! {
        _ = ready.wait_for(|r| *r) => {}
        () = &mut until => return true,
    }
    let mut poll = tokio::time::interval(REGISTERED_POLL);
    loop {
        let deadline = presence
            .next_deadline()
            .unwrap_or_else(|| Instant::now() + REGISTERED_POLL);
        tokio::select! {
            ev = events.recv() => match ev {
                Some(ev) => presence.on_event(ev, Instant::now(), Utc::now()),
                None => return false,
            },
            _ = tokio::time::sleep_until(deadline) => presence.on_tick(Instant::now()),
            _ = poll.tick() => {
                let registered: BTreeSet<(String, bool)> = index
                    .read()
                    .clusters()
                    .map(|c| (c.meta.name.clone(), joined_in(&c.conditions)))
                    .collect();
                presence.set_registered(registered, Instant::now(), Utc::now());
            }
            () = &mut until => return true,
        }
        for op in presence.drain() {
            if writes.send(op).await.is_err() {
                debug!("status writer gone; presence stops");
                return false;
            }
        }
    }
}

#[cfg(test)]
mod tests;
