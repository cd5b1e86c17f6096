//! Status write-back: agent reports, index intents and presence changes go through
//! one bounded queue to a single writer task, which turns them into JSON merge
//! patches with the field manager `drbridge-hub`.
//!
//! Why merge patches on the `status` subresource: Ramen Updates whole ManifestWorks
//! and ManagedClusterViews, but an Update of the main resource ignores `status` (the
//! CRDs have a status subresource), so the two writers never touch the same fields.
//! A merge patch (unlike server-side apply) leaves fields it does not mention alone,
//! which is exactly what a failed view needs: `status.result` stays as it was.
//!
//! Fencing: a report is written only if the object still has the report's uid and the
//! report's generation is not older than the object's. Status patches carry
//! `metadata.resourceVersion` of the object the check was made against, so the API
//! server refuses the write if the object changed in between (for example Ramen bumped
//! the generation); the writer then re-reads the object and checks again.
//!
//! The planners (`plan_*`) are pure functions, unit-tested below; [`StatusWriter`]
//! only executes their patches.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use drbridge_model::status::rfc3339;
use drbridge_proto::v1 as pb;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::index::{Intent, SharedIndex, WorkEntry};
use crate::leader::Leadership;
use crate::metrics::Metrics;
use crate::objects::{
    ConditionJson, FIELD_MANAGER, Meta, ObjectKey, UNACKNOWLEDGED_SINCE_ANNOTATION,
    UNREACHABLE_SINCE_ANNOTATION, ViewObject, WORK_FINALIZER, WorkObject, cluster_resource,
    view_resource, work_resource,
};

/// A message from an agent that needs a write. `cluster` comes from the stream's
/// certificate, never from the message: an agent can only address its own namespace.
/// (A `WorkGone` is not one: it changes the index, which emits the finalizer release.)
#[derive(Clone, Debug, PartialEq)]
pub enum Report {
    Work {
        cluster: String,
        status: pb::WorkStatus,
    },
    View {
        cluster: String,
        status: pb::ViewStatus,
    },
}

/// ManagedCluster status as presence wants it.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterStatus {
    pub name: String,
    /// An agent has connected at least once.
    pub joined: bool,
    /// `Some(true)`: connected and heartbeating; `Some(false)`: Unknown; `None`: not
    /// known yet (leave the condition alone).
    pub available: Option<bool>,
    /// Claims from the agent's `ClusterInfo`, when it sent some.
    pub claims: Option<Vec<(String, String)>>,
    pub kubernetes_version: Option<String>,
}

/// What a report holds against its cluster's budget while the hub keeps it (queued or being
/// written): released when the write is done, or when a newer report for the same object
/// replaces it in the queue. See `grpc::GrpcConfig::report_budget_bytes`.
#[derive(Clone, Debug, Default)]
pub struct Charge {
    _held: Option<Arc<Held>>,
}

#[derive(Debug)]
struct Held {
    _permit: tokio::sync::OwnedSemaphorePermit,
    cost: usize,
    gauge: prometheus_client::metrics::gauge::Gauge,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.gauge.dec_by(self.cost as i64);
    }
}

impl Charge {
    /// Holds `permit` (of `cost` units), counted in `gauge`, until dropped.
    pub fn new(
        permit: tokio::sync::OwnedSemaphorePermit,
        cost: usize,
        gauge: prometheus_client::metrics::gauge::Gauge,
    ) -> Self {
        gauge.inc_by(cost as i64);
        Self {
            _held: Some(Arc::new(Held {
                _permit: permit,
                cost,
                gauge,
            })),
        }
    }

    /// No budget (reports made inside the hub, tests).
    pub fn none() -> Self {
        Self { _held: None }
    }
}

/// Charges are bookkeeping, not content: two ops are equal whatever they hold.
impl PartialEq for Charge {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// Everything the writer does.
#[derive(Clone, Debug, PartialEq)]
pub enum WriteOp {
    Report(Report, Charge),
    Intent(Intent),
    Cluster(ClusterStatus),
    /// Mark (`Some(since)`) or unmark (`None`) the works and views of a cluster as
    /// unreachable; see docs/presence.md.
    Unreachable {
        cluster: String,
        since: Option<String>,
    },
    /// Set (`Some(since)`) or remove (`None`) the ManagedCluster's annotation of changes its
    /// agent has not acknowledged; see `acks`.
    Unacknowledged {
        cluster: String,
        since: Option<String>,
    },
}

/// Why a write was not made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Skip {
    #[error("the object is not in the index")]
    UnknownObject,
    #[error("the report is for another uid than the object's")]
    UidMismatch,
    #[error("the report is for an older generation than the object's")]
    StaleGeneration,
    #[error("the report is for a newer generation than the hub has seen")]
    FutureGeneration,
    #[error("the report is malformed")]
    Invalid,
    #[error("nothing to change")]
    Unchanged,
}

impl Skip {
    pub fn label(self) -> &'static str {
        match self {
            Skip::UnknownObject => "unknown_object",
            Skip::UidMismatch => "uid_mismatch",
            Skip::StaleGeneration => "stale_generation",
            Skip::FutureGeneration => "future_generation",
            Skip::Invalid => "invalid",
            Skip::Unchanged => "unchanged",
        }
    }
}

// ---------------------------------------------------------------- conversions

/// `maxLength` of `message` in metav1.Condition (and in the CRDs' condition schemas). The API
/// server validates every condition of a status patch, so one longer message would fail the
/// whole patch and leave the status stale.
pub const MAX_CONDITION_MESSAGE_CHARS: usize = 32768;
/// Ends a message cut to [`MAX_CONDITION_MESSAGE_CHARS`].
pub const TRUNCATED_MARKER: &str = " ... [truncated by drbridge-hub]";

fn now() -> String {
    rfc3339(chrono::Utc::now())
}

/// `message` cut to [`MAX_CONDITION_MESSAGE_CHARS`] characters (the API counts characters, not
/// bytes), ending with [`TRUNCATED_MARKER`] when cut.
pub fn bounded_message(message: &str) -> String {
    match message.char_indices().nth(MAX_CONDITION_MESSAGE_CHARS) {
        None => message.to_string(),
        Some(_) => {
            let keep = MAX_CONDITION_MESSAGE_CHARS - TRUNCATED_MARKER.chars().count();
            let end = message
                .char_indices()
                .nth(keep)
                .map_or(message.len(), |(i, _)| i);
            format!("{}{TRUNCATED_MARKER}", &message[..end])
        }
    }
}

/// A metav1.Condition from the proto. An empty `last_transition_time` becomes `now`
/// (the API requires one); [`set_condition`] keeps an older time when the status did
/// not change.
pub fn condition_json(c: &pb::Condition, now: &str) -> Value {
    let mut m = Map::new();
    m.insert("type".into(), json!(c.r#type));
    m.insert("status".into(), json!(c.status));
    if c.observed_generation != 0 {
        m.insert("observedGeneration".into(), json!(c.observed_generation));
    }
    let ltt = if c.last_transition_time.is_empty() {
        now
    } else {
        &c.last_transition_time
    };
    m.insert("lastTransitionTime".into(), json!(ltt));
    m.insert("reason".into(), json!(c.reason));
    m.insert("message".into(), json!(bounded_message(&c.message)));
    Value::Object(m)
}

fn cond_field<'a>(c: &'a Value, f: &str) -> Option<&'a str> {
    c.get(f).and_then(Value::as_str)
}

/// `meta.SetStatusCondition`: replace the condition of the same type, keeping its
/// `lastTransitionTime` when the status did not change.
pub fn set_condition(list: &mut Vec<ConditionJson>, mut new: Value) {
    let ty = cond_field(&new, "type").unwrap_or_default().to_string();
    if let Some(old) = list
        .iter_mut()
        .find(|c| cond_field(c, "type") == Some(ty.as_str()))
    {
        if cond_field(old, "status") == cond_field(&new, "status")
            && let Some(t) = old.get("lastTransitionTime").cloned()
        {
            new["lastTransitionTime"] = t;
        }
        *old = new;
    } else {
        list.push(new);
    }
}

/// Work conditions from the agent, with OCM's transition-time rule applied against
/// what is stored.
fn merged_conditions(existing: &[ConditionJson], sent: &[pb::Condition], now: &str) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::with_capacity(sent.len());
    for c in sent {
        let mut v = condition_json(c, now);
        if c.last_transition_time.is_empty()
            && let Some(old) = existing
                .iter()
                .find(|o| cond_field(o, "type") == Some(c.r#type.as_str()))
            && cond_field(old, "status") == Some(c.status.as_str())
            && let Some(t) = old.get("lastTransitionTime")
        {
            v["lastTransitionTime"] = t.clone();
        }
        out.push(v);
    }
    out
}

/// OCM's `status` of a ManifestWork from an agent's report.
pub fn work_status_json(s: &pb::WorkStatus, existing: &[ConditionJson], now: &str) -> Value {
    let manifests: Vec<Value> = s
        .manifests
        .iter()
        .map(|m| {
            let meta = m.meta.clone().unwrap_or_default();
            json!({
                "resourceMeta": {
                    "ordinal": meta.ordinal,
                    "group": meta.group,
                    "version": meta.version,
                    "kind": meta.kind,
                    "resource": meta.resource,
                    "name": meta.name,
                    "namespace": meta.namespace,
                },
                "statusFeedback": {},
                "conditions": m.conditions.iter().map(|c| condition_json(c, now)).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "conditions": merged_conditions(existing, &s.conditions, now),
        "resourceStatus": {"manifests": manifests},
    })
}

/// The view's `Processing` condition and result, as the real controller writes them
/// (docs/ramen-contract.md, "View status"). `None` for `result` means: leave it as it is.
pub fn view_status_json(
    v: &pb::ViewStatus,
    existing: &[ConditionJson],
    now: &str,
) -> Result<Value, Skip> {
    use pb::view_status::Outcome;
    // Whole seconds, as the real controller writes; a malformed time is replaced, not written.
    let observed = chrono::DateTime::parse_from_rfc3339(&v.observed_time)
        .ok()
        .map(|t| {
            t.to_utc()
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        });
    let when = observed.as_deref().unwrap_or(now);
    let (status, reason, message, result) = match &v.outcome {
        Some(Outcome::Object(bytes)) => {
            let obj: Value = serde_json::from_slice(bytes).map_err(|_| Skip::Invalid)?;
            if !obj.is_object() || obj.get("apiVersion").is_none() || obj.get("kind").is_none() {
                return Err(Skip::Invalid);
            }
            (
                "True",
                "GetResourceProcessing".to_string(),
                "Watching resources successfully".to_string(),
                Some(obj),
            )
        }
        Some(Outcome::Error(e)) => {
            let reason = if e.reason.is_empty() {
                "GetResourceFailed".to_string()
            } else {
                e.reason.clone()
            };
            ("False", reason, bounded_message(&e.message), None)
        }
        None => return Err(Skip::Invalid),
    };
    // Exactly one condition, whatever was there before (Ramen rejects more than one).
    let mut conds: Vec<Value> = existing
        .iter()
        .filter(|c| cond_field(c, "type") == Some("Processing"))
        .take(1)
        .cloned()
        .collect();
    set_condition(
        &mut conds,
        json!({
            "type": "Processing",
            "status": status,
            "lastTransitionTime": when,
            "reason": reason,
            "message": message,
        }),
    );
    let mut st = json!({ "conditions": conds });
    if let Some(r) = result {
        st["result"] = r;
    }
    Ok(st)
}

/// OCM's ManagedCluster conditions, merged into what is stored.
pub fn cluster_status_json(existing: &[ConditionJson], cs: &ClusterStatus, now: &str) -> Value {
    let mut conds: Vec<Value> = existing.to_vec();
    set_condition(
        &mut conds,
        json!({"type": "HubAcceptedManagedCluster", "status": "True", "lastTransitionTime": now,
               "reason": "HubClusterAdminAccepted", "message": "Accepted by hub cluster admin"}),
    );
    if cs.joined {
        set_condition(
            &mut conds,
            json!({"type": "ManagedClusterJoined", "status": "True", "lastTransitionTime": now,
                   "reason": "ManagedClusterJoined", "message": "Managed cluster joined"}),
        );
    }
    match cs.available {
        Some(true) => set_condition(
            &mut conds,
            json!({"type": "ManagedClusterConditionAvailable", "status": "True", "lastTransitionTime": now,
                   "reason": "ManagedClusterAvailable", "message": "Managed cluster is available"}),
        ),
        Some(false) => set_condition(
            &mut conds,
            json!({"type": "ManagedClusterConditionAvailable", "status": "Unknown", "lastTransitionTime": now,
                   "reason": "ManagedClusterLeaseUpdateStopped",
                   "message": "Registration agent stopped updating its lease."}),
        ),
        None => {}
    }
    let mut st = json!({ "conditions": conds });
    if let Some(claims) = &cs.claims {
        let mut claims = claims.clone();
        claims.sort();
        st["clusterClaims"] = Value::Array(
            claims
                .into_iter()
                .map(|(name, value)| json!({"name": name, "value": value}))
                .collect(),
        );
    }
    if let Some(v) = &cs.kubernetes_version {
        st["version"] = json!({ "kubernetes": v });
    }
    st
}

// ---------------------------------------------------------------- planners

/// Fences a report against the object: same uid, same generation. Older is stale; newer
/// cannot be honest, since the agent learns generations only from the hub (and the hub's copy
/// of an object is never behind what it sent).
pub fn fence(meta: &Meta, uid: &str, generation: i64) -> Result<(), Skip> {
    if meta.uid != uid {
        return Err(Skip::UidMismatch);
    }
    if generation < meta.generation {
        return Err(Skip::StaleGeneration);
    }
    if generation > meta.generation {
        return Err(Skip::FutureGeneration);
    }
    Ok(())
}

fn status_patch(meta: &Meta, status: Value) -> Value {
    json!({
        "metadata": {"uid": meta.uid, "resourceVersion": meta.resource_version},
        "status": status,
    })
}

/// The merge patch for a work's status, or why none.
pub fn plan_work_status(
    meta: &Meta,
    existing: &[ConditionJson],
    s: &pb::WorkStatus,
    now: &str,
) -> Result<Value, Skip> {
    fence(meta, &s.uid, s.generation)?;
    Ok(status_patch(meta, work_status_json(s, existing, now)))
}

pub fn plan_view_status(
    meta: &Meta,
    existing: &[ConditionJson],
    v: &pb::ViewStatus,
    now: &str,
) -> Result<Value, Skip> {
    fence(meta, &v.uid, v.generation)?;
    Ok(status_patch(meta, view_status_json(v, existing, now)?))
}

/// The finalizer change a work needs, if any: added while its cluster is registered,
/// removed once it is deleting and either its agent confirmed the cleanup or its
/// cluster is gone. Guarded by resourceVersion so a concurrent change of the list is
/// never lost.
pub fn plan_finalizer(entry: &WorkEntry, registered: bool) -> Result<Value, Skip> {
    let m = &entry.meta;
    let has = m.has_finalizer();
    let finalizers: Vec<String> = if m.deleting {
        let may_release = entry.gone_confirmed || !registered;
        if !has || !may_release {
            return Err(Skip::Unchanged);
        }
        m.finalizers
            .iter()
            .filter(|f| *f != WORK_FINALIZER)
            .cloned()
            .collect()
    } else {
        if has || !registered || entry.payload.is_err() {
            return Err(Skip::Unchanged);
        }
        let mut f = m.finalizers.clone();
        f.push(WORK_FINALIZER.to_string());
        f
    };
    Ok(json!({"metadata": {
        "uid": m.uid, "resourceVersion": m.resource_version, "finalizers": finalizers,
    }}))
}

/// `Applied=False` with the rejection reason, for the current generation.
pub fn plan_reject(entry: &WorkEntry, now: &str) -> Result<Value, Skip> {
    let Err(rej) = &entry.payload else {
        return Err(Skip::Unchanged);
    };
    let mut conds = entry.conditions.clone();
    set_condition(
        &mut conds,
        json!({"type": "Applied", "status": "False", "observedGeneration": entry.meta.generation,
               "lastTransitionTime": now, "reason": rej.reason, "message": rej.message}),
    );
    Ok(status_patch(&entry.meta, json!({ "conditions": conds })))
}

/// The ManagedCluster's [`UNACKNOWLEDGED_SINCE_ANNOTATION`] set to `since` (or removed).
pub fn plan_unacknowledged(meta: &Meta, since: Option<&str>) -> Result<Value, Skip> {
    if meta.unacknowledged_since.as_deref() == since {
        return Err(Skip::Unchanged);
    }
    Ok(json!({"metadata": {"annotations": {UNACKNOWLEDGED_SINCE_ANNOTATION: since}}}))
}

pub fn plan_annotation(meta: &Meta, since: Option<&str>) -> Result<Value, Skip> {
    if meta.unreachable_since.as_deref() == since {
        return Err(Skip::Unchanged);
    }
    Ok(json!({"metadata": {"annotations": {UNREACHABLE_SINCE_ANNOTATION: since}}}))
}

// ---------------------------------------------------------------- the writer

/// Slot of the coalescing queue: a newer op for the same slot replaces an older one.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Slot {
    WorkStatus(ObjectKey),
    WorkFinalizer(ObjectKey),
    WorkReject(ObjectKey),
    ViewStatus(ObjectKey),
    Cluster(String),
    Unreachable(String),
    Unacknowledged(String),
}

fn slot_of(op: &WriteOp) -> Slot {
    match op {
        WriteOp::Report(Report::Work { cluster, status }, _) => {
            Slot::WorkStatus(ObjectKey::new(cluster, &status.name))
        }
        WriteOp::Report(Report::View { cluster, status }, _) => {
            Slot::ViewStatus(ObjectKey::new(cluster, &status.name))
        }
        WriteOp::Intent(Intent::AddFinalizer(k) | Intent::ReleaseFinalizer(k)) => {
            Slot::WorkFinalizer(k.clone())
        }
        WriteOp::Intent(Intent::Reject(k)) => Slot::WorkReject(k.clone()),
        WriteOp::Cluster(c) => Slot::Cluster(c.name.clone()),
        WriteOp::Unreachable { cluster, .. } => Slot::Unreachable(cluster.clone()),
        WriteOp::Unacknowledged { cluster, .. } => Slot::Unacknowledged(cluster.clone()),
    }
}

/// What must not be written concurrently: one object.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Lane {
    Work(ObjectKey),
    View(ObjectKey),
    Cluster(String),
    Unreachable(String),
}

impl Slot {
    fn lane(&self) -> Lane {
        match self {
            Slot::WorkStatus(k) | Slot::WorkFinalizer(k) | Slot::WorkReject(k) => {
                Lane::Work(k.clone())
            }
            Slot::ViewStatus(k) => Lane::View(k.clone()),
            Slot::Cluster(c) | Slot::Unacknowledged(c) => Lane::Cluster(c.clone()),
            Slot::Unreachable(c) => Lane::Unreachable(c.clone()),
        }
    }
}

/// A keyed FIFO that keeps only the latest op per slot, so its size is bounded by the
/// number of objects, and a burst of reports for one work costs one write.
#[derive(Debug, Default)]
pub struct Pending {
    order: VecDeque<Slot>,
    ops: HashMap<Slot, WriteOp>,
}

impl Pending {
    pub fn push(&mut self, op: WriteOp) {
        let slot = slot_of(&op);
        if self.ops.insert(slot.clone(), op).is_none() {
            self.order.push_back(slot);
        }
    }

    /// Pushes `op`, but only index intents while `leading` is false: reports and presence
    /// of a replica that does not lead are never written (intents are re-checked against
    /// the index when written, so they keep for the next term).
    pub fn push_if(&mut self, op: WriteOp, leading: bool) {
        if leading || matches!(op, WriteOp::Intent(_)) {
            self.push(op);
        }
    }

    pub fn pop(&mut self) -> Option<WriteOp> {
        let slot = self.order.pop_front()?;
        self.ops.remove(&slot)
    }

    /// The oldest op whose slot `ready` accepts.
    fn pop_where(&mut self, ready: impl Fn(&Slot) -> bool) -> Option<WriteOp> {
        let i = self.order.iter().position(ready)?;
        let slot = self.order.remove(i)?;
        self.ops.remove(&slot)
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// The queued ops, in no particular order.
    pub fn ops(&self) -> impl Iterator<Item = &WriteOp> {
        self.ops.values()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

#[derive(Clone, Copy, Debug)]
pub struct WriterConfig {
    /// Deadline of one API call.
    pub patch_timeout: Duration,
    /// How often the index's implied intents are re-queued.
    pub sweep_interval: Duration,
    /// Attempts for a fenced status patch that meets a conflict.
    pub conflict_retries: usize,
    /// Writes in flight at once (never two for one object).
    pub max_in_flight: usize,
}

impl Default for WriterConfig {
    fn default() -> Self {
        Self {
            patch_timeout: Duration::from_secs(10),
            sweep_interval: Duration::from_secs(120),
            conflict_retries: 3,
            max_in_flight: 16,
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum WriteError {
    #[error("conflict")]
    Conflict,
    #[error("not found")]
    NotFound,
    #[error("timed out")]
    Timeout,
    #[error("this replica does not lead")]
    NotLeader,
    #[error(transparent)]
    Kube(#[from] kube::Error),
}

impl WriteError {
    fn label(&self) -> &'static str {
        match self {
            WriteError::Conflict => "conflict",
            WriteError::NotFound => "not_found",
            WriteError::Timeout => "timeout",
            WriteError::NotLeader => "not_leader",
            WriteError::Kube(_) => "failed",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Work,
    View,
    Cluster,
}

/// The single writer task.
pub struct StatusWriter {
    client: kube::Client,
    index: SharedIndex,
    metrics: Metrics,
    cfg: WriterConfig,
    /// Writes are made only while this replica leads.
    leadership: Leadership,
}

impl std::fmt::Debug for StatusWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusWriter")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl StatusWriter {
    pub fn new(
        client: kube::Client,
        index: SharedIndex,
        metrics: Metrics,
        cfg: WriterConfig,
    ) -> Self {
        Self {
            client,
            index,
            metrics,
            cfg,
            leadership: Leadership::fixed(1),
        }
    }

    /// Writes only while `leadership` leads (instead of always).
    pub fn with_leadership(mut self, leadership: Leadership) -> Self {
        self.leadership = leadership;
        self
    }

    /// Runs until both queues are closed. Up to `max_in_flight` writes run at
    /// once, but never two for the same object, so each object's writes stay in
    /// order while one slow object (or a burst of 200 new works) does not hold
    /// up the rest.
    pub async fn run(self, mut ops: mpsc::Receiver<WriteOp>, mut intents: mpsc::Receiver<Intent>) {
        let this = Arc::new(self);
        let mut pending = Pending::default();
        let mut busy: HashSet<Lane> = HashSet::new();
        let mut running: JoinSet<()> = JoinSet::new();
        let mut lanes: HashMap<tokio::task::Id, Lane> = HashMap::new();
        let mut sweep = tokio::time::interval(this.cfg.sweep_interval);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (mut ops_open, mut intents_open) = (true, true);
        let mut role = this.leadership.watch();
        loop {
            let leading = this.leadership.is_leader();
            // Drain whatever is queued, so a burst coalesces before the next write.
            while let Ok(op) = ops.try_recv() {
                pending.push_if(op, leading);
            }
            while let Ok(i) = intents.try_recv() {
                pending.push(WriteOp::Intent(i));
            }
            while leading && running.len() < this.cfg.max_in_flight.max(1) {
                let Some(op) = pending.pop_where(|slot| !busy.contains(&slot.lane())) else {
                    break;
                };
                let lane = slot_of(&op).lane();
                busy.insert(lane.clone());
                let w = this.clone();
                let id = running.spawn(async move { w.execute(op).await }).id();
                lanes.insert(id, lane);
            }
            this.metrics.write_queue_depth.set(pending.len() as i64);
            if !ops_open && !intents_open && pending.is_empty() && running.is_empty() {
                return;
            }
            tokio::select! {
                Some(done) = running.join_next_with_id(), if !running.is_empty() => {
                    let id = match &done {
                        Ok((id, ())) => *id,
                        Err(e) => {
                            warn!(error = %e, "status write task failed");
                            e.id()
                        }
                    };
                    if let Some(lane) = lanes.remove(&id) {
                        busy.remove(&lane);
                    }
                }
                op = ops.recv(), if ops_open => match op {
                    Some(op) => pending.push_if(op, this.leadership.is_leader()),
                    None => ops_open = false,
                },
                Ok(()) = role.changed() => {
                    if role.borrow_and_update().epoch().is_some() {
                        // A new term: what the index implies is written again (finalizers,
                        // rejections); agents' reports come with their streams.
                        info!("leading: the status writer starts");
                        for i in this.index.read().sweep() {
                            pending.push(WriteOp::Intent(i));
                        }
                    } else {
                        // Nothing of the old term is written any more.
                        let dropped = pending.len();
                        pending = Pending::default();
                        running.abort_all();
                        info!(dropped, "not leading: the status writer stops");
                    }
                }
                i = intents.recv(), if intents_open => match i {
                    Some(i) => pending.push(WriteOp::Intent(i)),
                    None => intents_open = false,
                },
                _ = sweep.tick() => {
                    for i in this.index.read().sweep() {
                        pending.push(WriteOp::Intent(i));
                    }
                }
            }
        }
    }

    fn api(&self, target: Target, namespace: &str) -> Api<DynamicObject> {
        match target {
            Target::Work => Api::namespaced_with(self.client.clone(), namespace, &work_resource()),
            Target::View => Api::namespaced_with(self.client.clone(), namespace, &view_resource()),
            Target::Cluster => Api::all_with(self.client.clone(), &cluster_resource()),
        }
    }

    async fn patch(
        &self,
        kind: &'static str,
        target: Target,
        namespace: &str,
        name: &str,
        status: bool,
        body: Value,
    ) -> Result<(), WriteError> {
        // Checked before every call, not only per batch: a term can end mid-batch.
        if !self.leadership.is_leader() {
            self.metrics.patched(kind, WriteError::NotLeader.label());
            return Err(WriteError::NotLeader);
        }
        let api = self.api(target, namespace);
        let pp = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..Default::default()
        };
        let patch = Patch::Merge(body);
        let started = std::time::Instant::now();
        let fut = async {
            if status {
                api.patch_status(name, &pp, &patch).await
            } else {
                api.patch(name, &pp, &patch).await
            }
        };
        // Never waits past the end of the term: a write still unanswered then is abandoned.
        let deadline = self
            .leadership
            .remaining()
            .map_or(self.cfg.patch_timeout, |r| r.min(self.cfg.patch_timeout));
        let res = match tokio::time::timeout(deadline, fut).await {
            Err(_) => Err(WriteError::Timeout),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(kube::Error::Api(s))) if s.code == 409 => Err(WriteError::Conflict),
            Ok(Err(kube::Error::Api(s))) if s.code == 404 => Err(WriteError::NotFound),
            // A uid that no longer matches is refused as an invalid update of an
            // immutable field: the object was replaced, the report is stale.
            Ok(Err(kube::Error::Api(s))) if s.code == 422 && s.message.contains("uid") => {
                Err(WriteError::Conflict)
            }
            Ok(Err(e)) => Err(WriteError::Kube(e)),
        };
        self.metrics
            .status_patch_seconds
            .observe(started.elapsed().as_secs_f64());
        self.metrics.patched(
            kind,
            match &res {
                Ok(()) => "ok",
                Err(e) => e.label(),
            },
        );
        res
    }

    async fn get(&self, target: Target, namespace: &str, name: &str) -> Option<DynamicObject> {
        let api = self.api(target, namespace);
        match tokio::time::timeout(self.cfg.patch_timeout, api.get_opt(name)).await {
            Ok(Ok(obj)) => obj,
            Ok(Err(e)) => {
                warn!(%namespace, %name, error = %e, "re-reading object after a conflict failed");
                None
            }
            Err(_) => None,
        }
    }

    fn skip(&self, what: &str, key: &dyn std::fmt::Display, skip: Skip) {
        if skip != Skip::Unchanged {
            self.metrics.dropped(skip.label());
            debug!(%key, reason = %skip, "{what} not written");
        }
    }

    async fn execute(&self, op: WriteOp) {
        match op {
            WriteOp::Report(Report::Work { cluster, status }, _) => {
                let key = ObjectKey::new(&cluster, &status.name);
                let span = info_span!("work_status", %key, generation = status.generation);
                let written = self
                    .fenced(Target::Work, &key, |meta, conds, now| {
                        plan_work_status(meta, conds, &status, now)
                    })
                    .instrument(span)
                    .await;
                if written {
                    self.metrics.status_written("work", &status.observed_time);
                }
            }
            WriteOp::Report(Report::View { cluster, status }, _) => {
                let key = ObjectKey::new(&cluster, &status.name);
                let span = info_span!("view_status", %key, generation = status.generation);
                let written = self
                    .fenced(Target::View, &key, |meta, conds, now| {
                        plan_view_status(meta, conds, &status, now)
                    })
                    .instrument(span)
                    .await;
                if written {
                    self.metrics.status_written("view", &status.observed_time);
                }
            }
            WriteOp::Intent(Intent::AddFinalizer(key) | Intent::ReleaseFinalizer(key)) => {
                self.finalizer(&key).await
            }
            WriteOp::Intent(Intent::Reject(key)) => {
                let plan = match self.index.read().work(&key) {
                    Some(e) => plan_reject(e, &now()),
                    None => Err(Skip::UnknownObject),
                };
                match plan {
                    Ok(body) => {
                        if let Err(e) = self
                            .patch(
                                "work_status",
                                Target::Work,
                                &key.namespace,
                                &key.name,
                                true,
                                body,
                            )
                            .await
                        {
                            debug!(%key, error = %e, "rejection condition not written; the next event or sweep retries");
                        }
                    }
                    Err(s) => self.skip("rejection", &key, s),
                }
            }
            WriteOp::Cluster(cs) => {
                let body = {
                    let idx = self.index.read();
                    let Some(c) = idx.cluster(&cs.name) else {
                        return;
                    };
                    json!({ "status": cluster_status_json(&c.conditions, &cs, &now()) })
                };
                if let Err(e) = self
                    .patch("cluster_status", Target::Cluster, "", &cs.name, true, body)
                    .await
                {
                    warn!(cluster = %cs.name, error = %e, "ManagedCluster status not written");
                }
            }
            WriteOp::Unacknowledged { cluster, since } => {
                let plan = match self.index.read().cluster(&cluster) {
                    Some(c) => plan_unacknowledged(&c.meta, since.as_deref()),
                    None => Err(Skip::UnknownObject),
                };
                match plan {
                    Ok(body) => {
                        if let Err(e) = self
                            .patch("annotation", Target::Cluster, "", &cluster, false, body)
                            .await
                        {
                            debug!(%cluster, error = %e, "unacknowledged annotation not written; the next round retries");
                        }
                    }
                    Err(s) => self.skip("unacknowledged annotation", &cluster, s),
                }
            }
            WriteOp::Unreachable { cluster, since } => {
                let (works, views) = {
                    let idx = self.index.read();
                    (idx.works_in(&cluster), idx.views_in(&cluster))
                };
                for (target, metas) in [(Target::Work, works), (Target::View, views)] {
                    for meta in metas {
                        if let Ok(body) = plan_annotation(&meta, since.as_deref())
                            && let Err(e) = self
                                .patch(
                                    "annotation",
                                    target,
                                    &meta.namespace,
                                    &meta.name,
                                    false,
                                    body,
                                )
                                .await
                        {
                            debug!(key = %meta.key(), error = %e, "unreachable annotation not written");
                        }
                    }
                }
            }
        }
    }

    async fn finalizer(&self, key: &ObjectKey) {
        let plan = {
            let idx = self.index.read();
            match idx.work(key) {
                Some(e) => plan_finalizer(e, idx.is_registered(&key.namespace)),
                None => Err(Skip::UnknownObject),
            }
        };
        match plan {
            Ok(body) => {
                // On a conflict the watch brings the newer object, and the index emits
                // the intent again (the agent's confirmation is kept in the index).
                if let Err(e) = self
                    .patch(
                        "finalizer",
                        Target::Work,
                        &key.namespace,
                        &key.name,
                        false,
                        body,
                    )
                    .await
                {
                    debug!(%key, error = %e, "finalizer not updated");
                }
            }
            Err(s) => self.skip("finalizer", key, s),
        }
    }

    /// Writes what `plan` makes of the object's current state, fenced by its uid and
    /// generation and retried on conflicts. True when it was written.
    async fn fenced<F>(&self, target: Target, key: &ObjectKey, plan: F) -> bool
    where
        F: Fn(&Meta, &[ConditionJson], &str) -> Result<Value, Skip>,
    {
        let kind = if target == Target::Work {
            "work_status"
        } else {
            "view_status"
        };
        let mut current: Option<(Meta, Vec<ConditionJson>)> = {
            let idx = self.index.read();
            match target {
                Target::Work => idx
                    .work(key)
                    .map(|e| (e.meta.clone(), e.conditions.clone())),
                _ => idx
                    .view(key)
                    .map(|v| (v.meta.clone(), v.conditions.clone())),
            }
        };
        for _ in 0..self.cfg.conflict_retries.max(1) {
            let Some((meta, conds)) = &current else {
                self.skip(kind, key, Skip::UnknownObject);
                return false;
            };
            let body = match plan(meta, conds, &now()) {
                Ok(b) => b,
                Err(s) => {
                    self.skip(kind, key, s);
                    return false;
                }
            };
            match self
                .patch(kind, target, &key.namespace, &key.name, true, body)
                .await
            {
                Ok(()) => return true,
                Err(WriteError::Conflict) => {
                    current = self
                        .get(target, &key.namespace, &key.name)
                        .await
                        .and_then(|o| match target {
                            Target::Work => {
                                WorkObject::from_dynamic(&o).map(|w| (w.meta, w.conditions))
                            }
                            _ => ViewObject::from_dynamic(&o).map(|v| (v.meta, v.conditions)),
                        });
                }
                Err(WriteError::NotFound) => return false,
                Err(e) => {
                    warn!(%key, error = %e, "{kind} not written");
                    return false;
                }
            }
        }
        warn!(%key, "{kind} not written: the object kept changing");
        false
    }
}

#[cfg(test)]
mod tests;
