//! The single writer task: takes ops from the queue while this replica leads and executes
//! their patches against the API server.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use drbridge_model::status::rfc3339;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{Instrument, debug, info, info_span, warn};

use super::body::{cluster_status_json, condition_status};
use super::ops::{Report, Skip, WriteOp};
use super::plan::{
    plan_annotation, plan_finalizer, plan_reject, plan_unacknowledged, plan_view_status,
    plan_work_status,
};
use super::queue::{Lane, Pending, slot_of};
use crate::events::HubEvents;
use crate::index::{Intent, SharedIndex};
use crate::leader::Leadership;
use crate::metrics::Metrics;
use crate::objects::{
    ConditionJson, FIELD_MANAGER, Meta, ObjectKey, StatusDigest, ViewObject, WorkObject,
    cluster_resource, view_resource, work_resource,
};
use drbridge_api::cluster::consts::condition::MANAGED_CLUSTER_CONDITION_AVAILABLE as AVAILABLE_CONDITION;

fn now() -> String {
    rfc3339(chrono::Utc::now())
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

impl WriterConfig {
    pub const DEFAULT_IN_FLIGHT: usize = 64;
}

impl Default for WriterConfig {
    fn default() -> Self {
        Self {
            patch_timeout: Duration::from_secs(10),
            sweep_interval: Duration::from_secs(120),
            conflict_retries: 3,
            max_in_flight: Self::DEFAULT_IN_FLIGHT,
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
    /// Told what was written, to announce what an operator must notice.
    events: HubEvents,
    /// Reports not written because the index showed the object already holding them (a
    /// reconnecting agent resends every status). The index can be behind a write made just
    /// before (by this replica or the previous leader), so each stays here until a newer
    /// report replaces it, and is planned again whenever the index sees that object's status
    /// change ([`Intent::WorkStatusChanged`]) and on every sweep: a skip never loses a status.
    /// Keyed by the intent that makes it due again.
    skipped: parking_lot::Mutex<HashMap<Intent, Report>>,
}

/// The intent that re-checks a skipped `r`: its object's status changed.
fn recheck_of(r: &Report) -> Intent {
    match r {
        Report::Work { cluster, status } => {
            Intent::WorkStatusChanged(ObjectKey::new(cluster, &status.name))
        }
        Report::View { cluster, status } => {
            Intent::ViewStatusChanged(ObjectKey::new(cluster, &status.name))
        }
    }
}

fn is_recheck(i: &Intent) -> bool {
    matches!(
        i,
        Intent::WorkStatusChanged(_) | Intent::ViewStatusChanged(_)
    )
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
            events: HubEvents::disabled(),
            skipped: Default::default(),
        }
    }

    /// Announces Kubernetes Events for what it writes ([`HubEvents`]).
    pub fn with_events(mut self, events: HubEvents) -> Self {
        self.events = events;
        self
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
                this.take(&mut pending, op, leading);
            }
            while let Ok(i) = intents.try_recv() {
                this.take_intent(&mut pending, i);
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
                    Some(op) => this.take(&mut pending, op, this.leadership.is_leader()),
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
                        this.skipped.lock().clear();
                        running.abort_all();
                        info!(dropped, "not leading: the status writer stops");
                    }
                }
                i = intents.recv(), if intents_open => match i {
                    Some(i) => this.take_intent(&mut pending, i),
                    None => intents_open = false,
                },
                _ = sweep.tick() => {
                    for i in this.index.read().sweep() {
                        pending.push(WriteOp::Intent(i));
                    }
                    // A status-change intent lost on a full queue is made up for here.
                    for i in this.skipped.lock().keys() {
                        pending.push(WriteOp::Intent(i.clone()));
                    }
                }
            }
        }
    }

    /// Queues `op`. A newer report makes a skipped older one for the same object moot.
    fn take(&self, pending: &mut Pending, op: WriteOp, leading: bool) {
        if let WriteOp::Report(r, _) = &op {
            self.skipped.lock().remove(&recheck_of(r));
        }
        pending.push_if(op, leading);
    }

    /// Queues an index intent. A status change is queued only when a report of that object
    /// was skipped: most follow this writer's own writes, and need nothing. Checking here is
    /// enough, since a skip is recorded before the index change whose intent this is.
    fn take_intent(&self, pending: &mut Pending, i: Intent) {
        if !is_recheck(&i) || self.skipped.lock().contains_key(&i) {
            pending.push(WriteOp::Intent(i));
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
            WriteOp::Report(report, _) => self.report(report).await,
            WriteOp::Intent(i @ (Intent::WorkStatusChanged(_) | Intent::ViewStatusChanged(_))) => {
                let skipped = self.skipped.lock().remove(&i);
                if let Some(report) = skipped {
                    self.report(report).await
                }
            }
            WriteOp::Intent(Intent::AddFinalizer(key) | Intent::ReleaseFinalizer(key)) => {
                self.finalizer(&key).await
            }
            WriteOp::Intent(Intent::Reject(key)) => {
                let plan = match self.index.read().work(&key) {
                    Some(e) => plan_reject(e, &now()).map(|body| {
                        let message = e.payload.as_ref().err().map(|r| r.message.clone());
                        (body, e.meta.uid.clone(), e.meta.generation, message)
                    }),
                    None => Err(Skip::UnknownObject),
                };
                match plan {
                    Ok((body, uid, generation, message)) => {
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
                        } else {
                            let message = message.unwrap_or_default();
                            self.events.work_rejected(&key, &uid, generation, &message);
                        }
                    }
                    Err(s) => self.skip("rejection", &key, s),
                }
            }
            WriteOp::Cluster(cs) => {
                let (body, was_available) = {
                    let idx = self.index.read();
                    let Some(c) = idx.cluster(&cs.name) else {
                        return;
                    };
                    (
                        json!({ "status": cluster_status_json(&c.conditions, &cs, &now()) }),
                        condition_status(&c.conditions, AVAILABLE_CONDITION),
                    )
                };
                match self
                    .patch("cluster_status", Target::Cluster, "", &cs.name, true, body)
                    .await
                {
                    Ok(()) => self.events.cluster_availability(
                        &cs.name,
                        was_available.as_deref(),
                        cs.available,
                    ),
                    Err(e) => {
                        warn!(cluster = %cs.name, error = %e, "ManagedCluster status not written")
                    }
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

    async fn report(&self, report: Report) {
        // Whatever was skipped for this object before is older than this report.
        self.skipped.lock().remove(&recheck_of(&report));
        match &report {
            Report::Work { cluster, status } => {
                let key = ObjectKey::new(cluster, &status.name);
                let span = info_span!("work_status", %key, generation = status.generation);
                let written = self
                    .fenced(Target::Work, &key, &report, |meta, conds, now| {
                        plan_work_status(meta, conds, status, now)
                    })
                    .instrument(span)
                    .await;
                if written {
                    self.metrics.status_written("work", &status.observed_time);
                    self.events.work_status_written(&key, status);
                }
            }
            Report::View { cluster, status } => {
                let key = ObjectKey::new(cluster, &status.name);
                let span = info_span!("view_status", %key, generation = status.generation);
                let written = self
                    .fenced(Target::View, &key, &report, |meta, conds, now| {
                        plan_view_status(meta, conds, status, now)
                    })
                    .instrument(span)
                    .await;
                if written {
                    self.metrics.status_written("view", &status.observed_time);
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
    /// generation and retried on conflicts. True when it was written. A status the object
    /// already holds is not written: `report` is then kept in `skipped` if that was judged
    /// from the index (which may be behind), and dropped if from a fresh read.
    async fn fenced<F>(&self, target: Target, key: &ObjectKey, report: &Report, plan: F) -> bool
    where
        F: Fn(&Meta, &[ConditionJson], &str) -> Result<Value, Skip>,
    {
        let kind = if target == Target::Work {
            "work_status"
        } else {
            "view_status"
        };
        let planned = |current: Option<(Meta, Vec<ConditionJson>, StatusDigest)>| {
            let (meta, conds, stored) = current.ok_or(Skip::UnknownObject)?;
            let body = plan(&meta, &conds, &now())?;
            if StatusDigest::of(body.get("status")) == stored {
                return Err(Skip::Unchanged);
            }
            Ok(body)
        };
        let mut body = {
            let idx = self.index.read();
            let current = match target {
                Target::Work => idx
                    .work(key)
                    .map(|e| (e.meta.clone(), e.conditions.clone(), e.status)),
                _ => idx
                    .view(key)
                    .map(|v| (v.meta.clone(), v.conditions.clone(), v.status)),
            };
            let body = planned(current);
            if body == Err(Skip::Unchanged) {
                // Recorded under the index's lock: any later change of the object's status
                // the index sees comes with an intent that finds this entry.
                self.skipped
                    .lock()
                    .insert(recheck_of(report), report.clone());
            }
            body
        };
        for _ in 0..self.cfg.conflict_retries.max(1) {
            let b = match body {
                Ok(b) => b,
                Err(Skip::Unchanged) => {
                    self.metrics.status_unchanged.inc();
                    return false;
                }
                Err(s) => {
                    self.skip(kind, key, s);
                    return false;
                }
            };
            match self
                .patch(kind, target, &key.namespace, &key.name, true, b)
                .await
            {
                Ok(()) => return true,
                Err(WriteError::Conflict) => {
                    let fresh = self.get(target, &key.namespace, &key.name).await;
                    body = planned(fresh.and_then(|o| match target {
                        Target::Work => {
                            WorkObject::from_dynamic(&o).map(|w| (w.meta, w.conditions, w.status))
                        }
                        _ => ViewObject::from_dynamic(&o).map(|v| (v.meta, v.conditions, v.status)),
                    }));
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
