//! `drbridge dr dashboard`: a read-only web page of the DR state of a hub, updated live.
//!
//! One task keeps a JSON snapshot up to date: it wakes on watch events of the objects the
//! page shows (DRPlacementControls, DRPolicies, ManagedClusters, PlacementDecisions) and on
//! a periodic tick (ages grow by themselves), reads the hub with the same code as
//! `drbridge dr status` ([`super::status::rows`]) and publishes the snapshot on a `watch` channel.
//! Every browser holds a server-sent-events stream of that channel: a slow browser only
//! ever gets the newest snapshot, so nothing queues up per client.
//!
//! What the page shows is built by pure functions ([`snapshot`], [`History`],
//! [`parse_metrics`]), tested without Kubernetes. The page itself (`dashboard.html`) is
//! static; it inserts every value with `textContent`, never as HTML.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use clap::Args;
use drbridge_api::cluster::consts::condition::{
    MANAGED_CLUSTER_CONDITION_AVAILABLE, MANAGED_CLUSTER_JOINED,
};
use drbridge_api::cluster::{ManagedCluster, PlacementDecision};
use drbridge_dr::explain::Problem;
use drbridge_dr::status::{RpoHealth, StatusRow};
use drbridge_dr::time::{age, parse_scheduling_interval, rfc3339};
use drbridge_dr::types::{DRPlacementControl, DRPolicy};
use futures::{FutureExt, Stream, StreamExt};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{Instrument, debug, info, info_span, warn};

use super::hub::{self, KubeContext};

/// The page: HTML, CSS and JavaScript in one file, no third-party code.
const PAGE: &str = include_str!("dashboard.html");

/// The page loads nothing from elsewhere; its inline script and style are all it runs.
const CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                   connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'";

/// The most a `/metrics` answer may be: the hub's is a few kilobytes.
const METRICS_MAX_BYTES: usize = 4 << 20;
const METRICS_TIMEOUT: Duration = Duration::from_secs(3);

/// `drbridge dr dashboard`.
#[derive(Debug, Args)]
pub struct DashboardArgs {
    /// Address to serve the page on. Loopback by default: the page has no authentication,
    /// and shows the hub's DR state to whoever can reach it.
    #[arg(
        long,
        env = "DRBRIDGE_DASHBOARD_LISTEN",
        default_value = "127.0.0.1:8089"
    )]
    pub listen: SocketAddr,
    /// The drbridge hub's admin address (HOST:PORT or http://HOST:PORT/metrics): its
    /// transport metrics (connected agents, syncs sent, status writes) join the page.
    #[arg(long, env = "DRBRIDGE_DASHBOARD_HUB_METRICS")]
    pub hub_metrics: Option<String>,
    /// How often ages are refreshed and a point is added to each application's chart
    /// (changes on the hub show at once, whatever this is).
    #[arg(long, env = "DRBRIDGE_DASHBOARD_TICK", default_value = "5s", value_parser = super::parse_timeout)]
    pub tick: Duration,
    /// Points kept in each application's chart; older ones are dropped (with the default
    /// tick, 720 points are an hour).
    #[arg(long, env = "DRBRIDGE_DASHBOARD_HISTORY", default_value_t = 720)]
    pub history: usize,
}

// ---------------------------------------------------------------------------------------------
// The snapshot: what the page shows, as JSON.

/// Everything the page shows at one moment.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    /// False until the hub was read once.
    pub loaded: bool,
    pub generated_at: String,
    /// Why the last read of the hub failed; the rest is then what the read before showed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub clusters: Vec<ClusterView>,
    pub apps: Vec<AppView>,
    pub transport: Transport,
    pub problems: Vec<ProblemView>,
}

/// Whether the hub hears from a managed cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Reachability {
    /// `ManagedClusterConditionAvailable=True`.
    Reachable,
    /// The condition is False or Unknown: the agent was not heard from.
    Lost,
    /// No such condition yet (the cluster never connected).
    Unknown,
}

/// One managed cluster.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterView {
    pub name: String,
    pub state: Reachability,
    /// When the Available condition last changed: reachable or lost since then.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since_seconds: Option<u64>,
    pub joined: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kubernetes_version: String,
}

/// One protected application (DRPlacementControl).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppView {
    #[serde(flatten)]
    pub row: StatusRow,
    /// The DRPolicy's scheduling interval, in seconds (none for synchronous policies).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval_seconds: Option<u64>,
    /// [`RpoHealth::word`], for the badge.
    pub rpo_word: &'static str,
    /// The age of the last group sync over time: `[seconds since the dashboard started,
    /// age in seconds or null (no sync yet)]`, oldest first.
    pub history: Vec<(i64, Option<u64>)>,
}

/// The transport between the hub and its clusters.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Transport {
    pub clusters: usize,
    pub reachable: usize,
    pub lost: usize,
    pub joined: usize,
    /// From the hub's `/metrics`, when `--hub-metrics` is given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hub_metrics: Option<BTreeMap<String, f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hub_metrics_error: Option<String>,
}

/// A problem, as the page lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProblemView {
    pub object: String,
    pub text: String,
}

/// What one read of the hub found.
#[derive(Debug, Clone, Default)]
pub struct HubState {
    pub clusters: Vec<ManagedCluster>,
    pub rows: Vec<StatusRow>,
    pub problems: Vec<Problem>,
}

/// The view of one ManagedCluster, from the conditions drbridge's hub (or OCM) writes.
pub fn cluster_view(mc: &ManagedCluster, now: Timestamp) -> ClusterView {
    let conditions = mc
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let available = conditions
        .iter()
        .find(|c| c.type_ == MANAGED_CLUSTER_CONDITION_AVAILABLE);
    let state = match available.map(|c| c.status.as_str()) {
        Some("True") => Reachability::Reachable,
        Some(_) => Reachability::Lost,
        None => Reachability::Unknown,
    };
    ClusterView {
        name: mc.metadata.name.clone().unwrap_or_default(),
        state,
        since: available.map(|c| rfc3339(&c.last_transition_time)),
        since_seconds: available.map(|c| age(now, &c.last_transition_time).as_secs()),
        joined: conditions
            .iter()
            .any(|c| c.type_ == MANAGED_CLUSTER_JOINED && c.status == "True"),
        reason: available.map(|c| c.reason.clone()).unwrap_or_default(),
        message: available.map(|c| c.message.clone()).unwrap_or_default(),
        kubernetes_version: mc
            .status
            .as_ref()
            .map(|s| s.version.kubernetes.clone())
            .unwrap_or_default(),
    }
}

/// The snapshot of `hub` at `now`. `metrics` is the hub's `/metrics` if it was asked for.
pub fn snapshot(
    hub: &HubState,
    history: &History,
    metrics: Option<&Result<BTreeMap<String, f64>, String>>,
    error: Option<String>,
    now: Timestamp,
) -> Snapshot {
    let mut clusters: Vec<ClusterView> =
        hub.clusters.iter().map(|c| cluster_view(c, now)).collect();
    clusters.sort_by(|a, b| a.name.cmp(&b.name));
    let count = |s: Reachability| clusters.iter().filter(|c| c.state == s).count();
    let transport = Transport {
        clusters: clusters.len(),
        reachable: count(Reachability::Reachable),
        lost: count(Reachability::Lost),
        joined: clusters.iter().filter(|c| c.joined).count(),
        hub_metrics: metrics.and_then(|m| m.as_ref().ok().cloned()),
        hub_metrics_error: metrics.and_then(|m| m.as_ref().err().cloned()),
    };
    let apps = hub
        .rows
        .iter()
        .map(|row| AppView {
            interval_seconds: interval_seconds(row),
            rpo_word: row.rpo.word(),
            history: history.points(&app_key(row)),
            row: row.clone(),
        })
        .collect();
    Snapshot {
        loaded: true,
        generated_at: now.to_string(),
        error,
        clusters,
        apps,
        transport,
        problems: hub
            .problems
            .iter()
            .map(|p| ProblemView {
                object: p.object.clone(),
                text: p.text.clone(),
            })
            .collect(),
    }
}

/// What the page shows before the hub was read once.
pub fn loading(now: Timestamp) -> Snapshot {
    Snapshot {
        loaded: false,
        generated_at: now.to_string(),
        error: None,
        clusters: vec![],
        apps: vec![],
        transport: Transport::default(),
        problems: vec![],
    }
}

fn interval_seconds(row: &StatusRow) -> Option<u64> {
    if row.rpo == RpoHealth::NotApplicable {
        return None;
    }
    parse_scheduling_interval(&row.scheduling_interval)
        .ok()
        .flatten()
        .map(|d| d.as_secs())
}

fn app_key(row: &StatusRow) -> String {
    format!("{}/{}", row.namespace, row.name)
}

/// The age of each application's last group sync over time, since the dashboard started:
/// at most `capacity` points per application, and only for applications that still exist,
/// so memory stays bounded however long the dashboard runs.
#[derive(Debug, Clone)]
pub struct History {
    started: i64,
    capacity: usize,
    /// Points closer in time than this replace the last one instead of adding one: a burst
    /// of watch events does not crowd out the chart's past.
    min_gap: i64,
    apps: BTreeMap<String, VecDeque<(i64, Option<u64>)>>,
}

impl History {
    pub fn new(started: Timestamp, capacity: usize, tick: Duration) -> Self {
        History {
            started: started.as_second(),
            capacity: capacity.max(2),
            min_gap: (tick.as_secs() as i64 / 2).max(1),
            apps: BTreeMap::new(),
        }
    }

    /// Adds the rows' ages at `now`; forgets applications that are gone.
    pub fn record(&mut self, rows: &[StatusRow], now: Timestamp) {
        let t = now.as_second() - self.started;
        let keys: Vec<String> = rows.iter().map(app_key).collect();
        self.apps.retain(|k, _| keys.contains(k));
        for (row, key) in rows.iter().zip(keys) {
            let points = self.apps.entry(key).or_default();
            let point = (t, row.last_group_sync_age_seconds);
            match points.back_mut() {
                Some(last) if t - last.0 < self.min_gap => *last = point,
                _ => points.push_back(point),
            }
            while points.len() > self.capacity {
                points.pop_front();
            }
        }
    }

    pub fn points(&self, key: &str) -> Vec<(i64, Option<u64>)> {
        self.apps
            .get(key)
            .map(|p| p.iter().copied().collect())
            .unwrap_or_default()
    }
}

/// The hub's transport metrics the page shows, from its `/metrics` text (OpenMetrics or
/// Prometheus): samples of a family are added up over their labels.
pub fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    const SHOWN: [&str; 6] = [
        "drbridge_hub_connected_agents",
        "drbridge_hub_clusters_registered",
        "drbridge_hub_syncs_sent",
        "drbridge_hub_status_patches",
        "drbridge_hub_connections_refused",
        "drbridge_hub_write_queue_depth",
    ];
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let (name_labels, rest) = match line.find('{') {
            Some(i) => match line[i..].find('}') {
                Some(j) => (&line[..i], &line[i + j + 1..]),
                None => continue,
            },
            None => match line.split_once(' ') {
                Some((n, r)) => (n, r),
                None => continue,
            },
        };
        // Counters are `NAME_total` in OpenMetrics.
        let name = name_labels.strip_suffix("_total").unwrap_or(name_labels);
        if !SHOWN.contains(&name) {
            continue;
        }
        let Some(value) = rest
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
        else {
            continue;
        };
        *out.entry(name.trim_start_matches("drbridge_hub_").to_string())
            .or_insert(0.0) += value;
    }
    out
}

/// Where the hub's metrics are: `HOST:PORT` or `http://HOST:PORT[/PATH]`.
fn metrics_target(s: &str) -> anyhow::Result<(String, String)> {
    if s.starts_with("https://") {
        bail!("--hub-metrics {s:?}: the hub's admin port serves plain HTTP; give http://HOST:PORT");
    }
    let rest = s.strip_prefix("http://").unwrap_or(s);
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/metrics"),
    };
    if authority.is_empty() || !authority.contains(':') {
        bail!("--hub-metrics {s:?}: expected HOST:PORT or http://HOST:PORT/metrics");
    }
    Ok((authority.to_string(), path.to_string()))
}

/// One GET of the hub's `/metrics`. A plain HTTP/1.0 request on a socket: the admin port is
/// unencrypted, and HTTP/1.0 keeps the answer simple (no chunked encoding, the server
/// closes when done), so the CLI needs no HTTP client library for it.
async fn fetch_metrics(authority: &str, path: &str) -> Result<BTreeMap<String, f64>, String> {
    let get = async {
        let mut s = tokio::net::TcpStream::connect(authority)
            .await
            .map_err(|e| format!("connecting to {authority}: {e}"))?;
        let req = format!("GET {path} HTTP/1.0\r\nHost: {authority}\r\nAccept: text/plain\r\n\r\n");
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| format!("asking {authority}: {e}"))?;
        let mut body = Vec::new();
        (&mut s)
            .take(METRICS_MAX_BYTES as u64 + 1)
            .read_to_end(&mut body)
            .await
            .map_err(|e| format!("reading {authority}: {e}"))?;
        if body.len() > METRICS_MAX_BYTES {
            return Err(format!(
                "{authority}{path}: more than {METRICS_MAX_BYTES} bytes"
            ));
        }
        let text = String::from_utf8_lossy(&body);
        let (head, body) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| format!("{authority}{path}: not an HTTP answer"))?;
        let status = head.lines().next().unwrap_or_default();
        if status.split_whitespace().nth(1) != Some("200") {
            return Err(format!("{authority}{path}: {status}"));
        }
        Ok(parse_metrics(body))
    };
    tokio::time::timeout(METRICS_TIMEOUT, get)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "{authority}{path}: no answer in {METRICS_TIMEOUT:?}"
            ))
        })
}

// ---------------------------------------------------------------------------------------------
// Reading the hub.

async fn read_hub(client: &kube::Client) -> anyhow::Result<HubState> {
    let (rows, problems) = super::status::rows(client).await?;
    let clusters = Api::<ManagedCluster>::all(client.clone())
        .list(&ListParams::default())
        .await
        .kctx(|| "listing ManagedClusters".into())?
        .items;
    Ok(HubState {
        clusters,
        rows,
        problems,
    })
}

/// Keeps `out` up to date until `shutdown`.
async fn refresher(
    client: kube::Client,
    args: &DashboardArgs,
    out: watch::Sender<Arc<str>>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let metrics = args
        .hub_metrics
        .as_deref()
        .map(metrics_target)
        .transpose()?;
    let mut wake = futures::stream::select_all([
        hub::wake_on(Api::<DRPlacementControl>::all(client.clone()), None),
        hub::wake_on(Api::<DRPolicy>::all(client.clone()), None),
        hub::wake_on(Api::<ManagedCluster>::all(client.clone()), None),
        hub::wake_on(Api::<PlacementDecision>::all(client.clone()), None),
    ]);
    let mut tick = tokio::time::interval(args.tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut history = History::new(hub::now(), args.history, args.tick);
    let mut last = HubState::default();
    let mut loaded = false;
    loop {
        let why = tokio::select! {
            _ = tick.tick() => "tick",
            Some(()) = wake.next() => "change",
            _ = shutdown.wait_for(|s| *s) => return Ok(()),
        };
        // A burst of watch events (the initial lists, a controller's patches) is one read.
        while let Some(Some(())) = wake.next().now_or_never() {}
        let span = info_span!("dashboard_refresh", why);
        let (error, fetched) = async {
            let error = match read_hub(&client).await {
                Ok(state) => {
                    last = state;
                    loaded = true;
                    None
                }
                Err(e) => {
                    warn!(error = format!("{e:#}"), "reading the hub failed");
                    Some(format!("{e:#}"))
                }
            };
            let fetched = match &metrics {
                Some((authority, path)) => Some(fetch_metrics(authority, path).await),
                None => None,
            };
            (error, fetched)
        }
        .instrument(span)
        .await;
        let now = hub::now();
        history.record(&last.rows, now);
        let mut snap = snapshot(&last, &history, fetched.as_ref(), error, now);
        snap.loaded = loaded;
        match serde_json::to_string(&snap) {
            Ok(json) => {
                debug!(bytes = json.len(), "snapshot");
                out.send_replace(json.into());
            }
            Err(e) => warn!(error = %e, "encoding the snapshot failed"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Serving.

#[derive(Clone)]
struct AppState {
    snapshots: watch::Receiver<Arc<str>>,
    shutdown: watch::Receiver<bool>,
}

fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/events", get(events))
        .route("/snapshot.json", get(snapshot_json))
        .with_state(state)
}

async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::CACHE_CONTROL, "no-store"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        PAGE,
    )
        .into_response()
}

async fn snapshot_json(State(s): State<AppState>) -> Response {
    let json = s.snapshots.borrow().clone();
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        json.to_string(),
    )
        .into_response()
}

/// The snapshot now, then each new one, until the dashboard stops (an open stream would
/// otherwise hold the graceful shutdown forever).
async fn events(State(s): State<AppState>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    debug!("a browser follows the events");
    let stream = futures::stream::unfold(
        (s.snapshots, s.shutdown, true),
        |(mut rx, mut shutdown, first)| async move {
            if !first {
                tokio::select! {
                    changed = rx.changed() => changed.ok()?,
                    _ = shutdown.wait_for(|s| *s) => return None,
                }
            }
            if *shutdown.borrow() {
                return None;
            }
            let json = rx.borrow_and_update().clone();
            let event = Event::default().event("snapshot").data(&*json);
            Some((Ok(event), (rx, shutdown, false)))
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// `drbridge dr dashboard`: serves until Ctrl-C.
pub async fn run(g: &super::args::Global, a: DashboardArgs) -> anyhow::Result<()> {
    if a.tick.is_zero() {
        bail!("--tick must be at least 1s");
    }
    if let Some(m) = &a.hub_metrics {
        metrics_target(m)?;
    }
    let client = g.hub_client().await?;
    let listener = TcpListener::bind(a.listen)
        .await
        .with_context(|| format!("listening on {}", a.listen))?;
    let addr = listener.local_addr().context("the listening address")?;
    let (snap_tx, snap_rx) = watch::channel::<Arc<str>>(
        serde_json::to_string(&loading(hub::now()))
            .unwrap_or_default()
            .into(),
    );
    let (stop_tx, stop_rx) = watch::channel(false);
    let refresh = {
        let stop_rx = stop_rx.clone();
        tokio::spawn(
            async move { refresher(client, &a, snap_tx, stop_rx).await }
                .instrument(info_span!("dashboard_refresher")),
        )
    };
    // The address, so that a script (or a test) that asked for port 0 learns the port.
    println!("DR dashboard on http://{addr}/ (Ctrl-C stops it)");
    info!(%addr, "serving the DR dashboard");
    let app = router(AppState {
        snapshots: snap_rx,
        shutdown: stop_rx,
    });
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        stop_signal().await;
        info!("stopping the DR dashboard");
        let _ = stop_tx.send(true);
    });
    let served = server.await.context("serving the dashboard");
    // The refresher stops on the same signal, once its read of the hub (if one is under
    // way) ends; it has no state to save, so a slow read is cut short.
    let abort = refresh.abort_handle();
    match tokio::time::timeout(Duration::from_secs(5), refresh).await {
        Ok(Ok(Err(e))) => return Err(e),
        Ok(Err(e)) if !e.is_cancelled() => {
            return Err(anyhow::anyhow!("the dashboard's refresher failed: {e}"));
        }
        Err(_) => abort.abort(),
        _ => {}
    }
    served
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(s: &str) -> Timestamp {
        s.parse().expect("a valid time")
    }

    fn mc(name: &str, available: Option<&str>, since: &str) -> ManagedCluster {
        let mut conditions = vec![json!({"type": "ManagedClusterJoined", "status": "True",
            "reason": "Joined", "message": "", "lastTransitionTime": "2026-11-27T09:00:00Z"})];
        if let Some(status) = available {
            conditions.push(
                json!({"type": "ManagedClusterConditionAvailable", "status": status,
                "reason": "R", "message": "<b>agent</b> stopped", "lastTransitionTime": since}),
            );
        }
        serde_json::from_value(json!({
            "apiVersion": "cluster.open-cluster-management.io/v1", "kind": "ManagedCluster",
            "metadata": {"name": name}, "spec": {},
            "status": {"conditions": conditions, "version": {"kubernetes": "v1.37.0"}},
        }))
        .expect("a ManagedCluster")
    }

    fn row(name: &str, sync: Option<&str>, interval: &str, now: Timestamp) -> StatusRow {
        let mut status = json!({"phase": "Deployed", "progression": "Completed",
            "preferredDecision": {"clusterName": "dr1", "clusterNamespace": "dr1"}});
        if let Some(t) = sync {
            status["lastGroupSyncTime"] = json!(t);
        }
        let drpc: DRPlacementControl = serde_json::from_value(json!({
            "apiVersion": "ramendr.openshift.io/v1alpha1", "kind": "DRPlacementControl",
            "metadata": {"name": name, "namespace": "ramen-ops"},
            "spec": {"drPolicyRef": {"name": "p"}, "placementRef": {"name": name},
                     "pvcSelector": {}},
            "status": status,
        }))
        .expect("a DRPC");
        let policy: DRPolicy = serde_json::from_value(json!({
            "apiVersion": "ramendr.openshift.io/v1alpha1", "kind": "DRPolicy",
            "metadata": {"name": "p"},
            "spec": {"drClusters": ["dr1", "dr2"], "schedulingInterval": interval},
        }))
        .expect("a DRPolicy");
        StatusRow::new(&drpc, Some(&policy), Some("dr1".into()), now)
    }

    #[test]
    fn clusters_are_reachable_lost_or_unknown_since_their_last_transition() {
        let now = at("2026-11-27T10:05:00Z");
        let up = cluster_view(&mc("dr1", Some("True"), "2026-11-27T10:00:00Z"), now);
        assert_eq!(up.state, Reachability::Reachable);
        assert_eq!(up.since.as_deref(), Some("2026-11-27T10:00:00Z"));
        assert_eq!(up.since_seconds, Some(300));
        assert!(up.joined);
        assert_eq!(up.kubernetes_version, "v1.37.0");
        let lost = cluster_view(&mc("dr2", Some("Unknown"), "2026-11-27T10:04:00Z"), now);
        assert_eq!(lost.state, Reachability::Lost);
        assert_eq!(lost.since_seconds, Some(60));
        let never = cluster_view(&mc("dr3", None, ""), now);
        assert_eq!(never.state, Reachability::Unknown);
        assert_eq!(never.since, None);
    }

    #[test]
    fn snapshot_counts_clusters_and_carries_rows_intervals_and_history() {
        let now = at("2026-11-27T10:05:00Z");
        let hub = HubState {
            clusters: vec![
                mc("dr2", Some("False"), "2026-11-27T10:04:00Z"),
                mc("dr1", Some("True"), "2026-11-27T10:00:00Z"),
            ],
            rows: vec![row("app", Some("2026-11-27T10:04:30Z"), "5m", now)],
            problems: vec![],
        };
        let mut history = History::new(at("2026-11-27T10:00:00Z"), 10, Duration::from_secs(5));
        history.record(&hub.rows, now);
        let metrics = Ok(BTreeMap::from([("connected_agents".to_string(), 1.0)]));
        let s = snapshot(&hub, &history, Some(&metrics), None, now);
        assert!(s.loaded);
        assert_eq!(
            s.clusters
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>(),
            ["dr1", "dr2"]
        );
        assert_eq!(
            (
                s.transport.clusters,
                s.transport.reachable,
                s.transport.lost
            ),
            (2, 1, 1)
        );
        assert_eq!(
            s.transport
                .hub_metrics
                .as_ref()
                .map(|m| m["connected_agents"]),
            Some(1.0)
        );
        let app = &s.apps[0];
        assert_eq!(app.interval_seconds, Some(300));
        assert_eq!(app.rpo_word, "OK");
        assert_eq!(app.history, [(300, Some(30))]);
        // The page reads these names.
        let v = serde_json::to_value(&s).expect("JSON");
        assert_eq!(v["apps"][0]["phase"], "Deployed");
        assert_eq!(v["apps"][0]["currentCluster"], "dr1");
        assert_eq!(v["apps"][0]["lastGroupSyncAgeSeconds"], 30);
        assert_eq!(v["apps"][0]["history"], json!([[300, 30]]));
        assert_eq!(v["clusters"][1]["state"], "lost");
        assert_eq!(v["clusters"][1]["sinceSeconds"], 60);
        // Text stays text: the page inserts it with textContent.
        assert_eq!(v["clusters"][1]["message"], "<b>agent</b> stopped");
        let failed = snapshot(
            &hub,
            &history,
            Some(&Err("refused".into())),
            Some("down".into()),
            now,
        );
        assert_eq!(failed.error.as_deref(), Some("down"));
        assert_eq!(
            failed.transport.hub_metrics_error.as_deref(),
            Some("refused")
        );
    }

    #[test]
    fn history_is_bounded_merges_bursts_and_forgets_deleted_apps() {
        let start = at("2026-11-27T10:00:00Z");
        let mut h = History::new(start, 3, Duration::from_secs(10));
        for i in 0..10 {
            let now = Timestamp::from_second(start.as_second() + 10 * i).expect("a time");
            h.record(&[row("a", Some("2026-11-27T10:00:00Z"), "1m", now)], now);
        }
        assert_eq!(
            h.points("ramen-ops/a"),
            [(70, Some(70)), (80, Some(80)), (90, Some(90))]
        );
        // Two seconds later (less than half a tick): replaces the last point.
        let now = Timestamp::from_second(start.as_second() + 92).expect("a time");
        h.record(&[row("a", None, "1m", now)], now);
        assert_eq!(
            h.points("ramen-ops/a"),
            [(70, Some(70)), (80, Some(80)), (92, None)]
        );
        h.record(&[row("b", None, "1m", now)], now);
        assert!(h.points("ramen-ops/a").is_empty());
        assert_eq!(h.points("ramen-ops/b"), [(92, None)]);
    }

    #[test]
    fn parses_the_hubs_metrics_adding_up_labels() {
        let text = "# HELP drbridge_hub_connected_agents Agents with an open stream.\n\
                    # TYPE drbridge_hub_connected_agents gauge\n\
                    drbridge_hub_connected_agents 2\n\
                    drbridge_hub_syncs_sent_total 10\n\
                    drbridge_hub_status_patches_total{kind=\"work\",result=\"ok\"} 3\n\
                    drbridge_hub_status_patches_total{kind=\"view\",result=\"ok\"} 4.5\n\
                    drbridge_hub_other 7\n\
                    drbridge_hub_write_queue_depth{broken 1\n\
                    drbridge_hub_connections_refused_total nan-ish\n\
                    # EOF\n";
        let m = parse_metrics(text);
        assert_eq!(m.get("connected_agents"), Some(&2.0));
        assert_eq!(m.get("syncs_sent"), Some(&10.0));
        assert_eq!(m.get("status_patches"), Some(&7.5));
        assert_eq!(m.len(), 3, "{m:?}");
    }

    #[test]
    fn metrics_targets() {
        assert_eq!(
            metrics_target("127.0.0.1:9990").expect("valid"),
            ("127.0.0.1:9990".into(), "/metrics".into())
        );
        assert_eq!(
            metrics_target("http://hub:9990/x/metrics").expect("valid"),
            ("hub:9990".into(), "/x/metrics".into())
        );
        assert!(metrics_target("https://hub:9990").is_err());
        assert!(metrics_target("hub").is_err());
    }

    #[test]
    fn the_page_inserts_values_as_text_only() {
        // The page must never parse hub data as HTML.
        for risky in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!PAGE.contains(risky), "dashboard.html uses {risky}");
        }
        assert!(!PAGE.contains("<script src"), "the page loads no script");
    }

    #[tokio::test]
    async fn events_stream_the_current_snapshot_then_changes_and_end_on_shutdown() {
        let (tx, rx) = watch::channel::<Arc<str>>(Arc::from("{\"n\":1}"));
        let (stop_tx, stop_rx) = watch::channel(false);
        let app = router(AppState {
            snapshots: rx,
            shutdown: stop_rx,
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut stop = stop_tx.subscribe();
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await
        });
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("ask");
        let mut seen = String::new();
        let mut buf = [0u8; 4096];
        let mut read_until = async |needle: &str, seen: &mut String| {
            while !seen.contains(needle) {
                let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
                    .await
                    .expect("in time")
                    .expect("read");
                if n == 0 {
                    return false;
                }
                seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
            true
        };
        assert!(read_until("data: {\"n\":1}", &mut seen).await, "{seen}");
        assert!(seen.contains("text/event-stream"), "{seen}");
        tx.send_replace(Arc::from("{\"n\":2}"));
        assert!(read_until("data: {\"n\":2}", &mut seen).await, "{seen}");
        // Shutdown ends the open stream, so the server stops instead of waiting for it.
        stop_tx.send_replace(true);
        tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .expect("the server stops with a stream open")
            .expect("joined")
            .expect("served");
    }
}
