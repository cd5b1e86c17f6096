//! Works: one actor per work, so a work's messages are handled in order while works
//! run in parallel, and a slow or failing work does not hold up the others.
//!
//! For each work the hub sends: fence (uid, generation), record durably, acknowledge,
//! apply, delete what a newer generation dropped, report. For a deleting work: mark the
//! record, delete (or orphan) as the delete option says, wait until the objects are gone,
//! drop the record, report `WorkGone`.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::pb;
use chrono::Utc;
use drbridge_model::fencing::{Decision, Held, Named, Offered, decide, may_delete, still_named};
use drbridge_model::merge::ApplyCache;
use drbridge_model::status::{Availability, Condition, manifest_conditions, work_conditions};
use drbridge_model::{Allowlist, DeletePolicy, OrphanRule, ResourceKey, Strategy};
use futures::StreamExt;
use parking_lot::Mutex;
use tokio::sync::{Notify, oneshot};
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::apply::{self, ApplyPolicy, ResourceMeta, Slot, Target, uid_of};
use crate::cluster::{Cluster, ClusterError, Resolved, WatchEvent};
use crate::events::Cause;
use crate::metrics::Metrics;
use crate::outbox::Outbox;
use crate::record::{AppliedKey, AppliedResource, RecordStore, WorkRecord};
use crate::watches::KindWatches;
use drbridge_runtime::events::Events;

/// Settings of the work side of the agent.
#[derive(Clone, Debug)]
pub struct WorkConfig {
    pub policy: ApplyPolicy,
    /// Quiet time before a status is recomputed after watch events.
    pub debounce: Duration,
    /// Periodic re-apply of every work (drift correction); `None` disables it.
    pub reapply: Option<Duration>,
    /// Where deletions done at the hub's request are announced.
    pub events: Events,
}

impl Default for WorkConfig {
    fn default() -> Self {
        WorkConfig {
            policy: ApplyPolicy {
                allowlist: Default::default(),
                max_work_bytes: drbridge_model::manifest::DEFAULT_MAX_WORK_BYTES,
            },
            debounce: Duration::from_millis(50),
            reapply: Some(Duration::from_secs(300)),
            events: Events::disabled(),
        }
    }
}

/// A work message waiting for its actor, with everyone waiting for it to be recorded.
#[derive(Debug)]
struct Pending {
    work: pb::Work,
    recorded: Vec<oneshot::Sender<()>>,
}

#[derive(Debug, Default)]
struct Mailbox {
    pending: Mutex<Option<Pending>>,
    notify: Notify,
}

/// What status is built from.
#[derive(Debug, Clone, Default)]
struct StatusState {
    uid: String,
    generation: i64,
    deleting: bool,
    slots: Vec<Slot>,
    manifest_conditions: Vec<Vec<Condition>>,
    work_conditions: Vec<Condition>,
}

pub(crate) struct Shared<C: Cluster, S: RecordStore> {
    cluster: Arc<C>,
    store: Arc<S>,
    cfg: WorkConfig,
    outbox: Arc<Outbox>,
    metrics: Metrics,
    kinds: KindWatches<C>,
    mailboxes: Mutex<HashMap<String, Arc<Mailbox>>>,
    /// In-memory copy of the durable records.
    records: Mutex<HashMap<String, WorkRecord>>,
    /// Generation whose spec the agent holds in memory, per work (what Hello reports).
    specs: Mutex<HashMap<String, i64>>,
    /// The uid of each work this process answered gone (deleted, or nothing to delete): a
    /// deletion is never undone, so a later spec for that uid (a new leader whose watch lags
    /// behind the old one's) must not bring the work back, unrecorded by the hub.
    gone: Mutex<HashMap<String, String>>,
    status: Mutex<HashMap<String, StatusState>>,
    dirty: Mutex<BTreeSet<String>>,
    dirty_notify: Notify,
    epoch: AtomicU64,
}

/// The works of this agent.
pub struct Works<C: Cluster, S: RecordStore> {
    shared: Arc<Shared<C, S>>,
    _status_task: crate::watches::AbortOnDrop,
}

impl<C: Cluster, S: RecordStore> std::fmt::Debug for Works<C, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Works")
            .field("records", &self.shared.records.lock().len())
            .finish()
    }
}

pub fn delete_policy_from_pb(d: Option<&pb::DeleteOption>) -> Option<DeletePolicy> {
    let d = d?;
    use pb::delete_option::Policy;
    Some(
        match Policy::try_from(d.propagation_policy).unwrap_or(Policy::Foreground) {
            Policy::Foreground => DeletePolicy::Foreground,
            Policy::Orphan => DeletePolicy::Orphan,
            Policy::SelectivelyOrphan => DeletePolicy::SelectivelyOrphan(
                d.orphaning_rules
                    .iter()
                    .map(|r| OrphanRule {
                        group: r.group.clone(),
                        resource: r.resource.clone(),
                        namespace: r.namespace.clone(),
                        name: r.name.clone(),
                    })
                    .collect(),
            ),
        },
    )
}

pub fn condition_to_pb(c: &Condition) -> pb::Condition {
    pb::Condition {
        r#type: c.type_.clone(),
        status: c.status.as_str().to_string(),
        reason: c.reason.clone(),
        message: c.message.clone(),
        observed_generation: c.observed_generation,
        last_transition_time: c.last_transition_rfc3339(),
    }
}

fn meta_to_pb(m: &ResourceMeta) -> pb::ResourceMeta {
    pb::ResourceMeta {
        ordinal: m.ordinal,
        group: m.group.clone(),
        version: m.version.clone(),
        kind: m.kind.clone(),
        resource: m.resource.clone(),
        name: m.name.clone(),
        namespace: m.namespace.clone(),
    }
}

fn resolved_of(a: &AppliedResource) -> Resolved {
    Resolved {
        group: a.group.clone(),
        version: a.version.clone(),
        kind: a.kind.clone(),
        plural: a.resource.clone(),
        namespaced: !a.namespace.is_empty(),
    }
}

fn target_of(a: &AppliedResource) -> Target {
    Target {
        resolved: resolved_of(a),
        namespace: a.namespace.clone(),
        name: a.name.clone(),
    }
}

impl<C: Cluster, S: RecordStore> Works<C, S> {
    /// Loads the durable records and resumes deletions that were under way.
    pub async fn start(
        cluster: Arc<C>,
        store: Arc<S>,
        cfg: WorkConfig,
        outbox: Arc<Outbox>,
        metrics: Metrics,
    ) -> Result<Self, crate::record::StoreError> {
        let records = store.list().await?;
        let stored = store.load_epoch().await?;
        let epoch = records
            .iter()
            .map(|r| r.hub_epoch)
            .max()
            .unwrap_or(0)
            .max(stored);
        if epoch > stored {
            // Records written before the epoch was kept on its own.
            store.save_epoch(epoch).await?;
        }
        let shared = Arc::new_cyclic(|weak: &std::sync::Weak<Shared<C, S>>| {
            let weak = weak.clone();
            let on_change: crate::watches::OnChange = Arc::new(move |names| {
                if let Some(s) = weak.upgrade() {
                    s.mark_dirty(names);
                }
            });
            Shared {
                kinds: KindWatches::new(cluster.clone(), on_change),
                cluster,
                store,
                cfg,
                outbox,
                metrics,
                mailboxes: Mutex::default(),
                records: Mutex::new(
                    records
                        .iter()
                        .map(|r| (r.name.clone(), r.clone()))
                        .collect(),
                ),
                specs: Mutex::default(),
                gone: Mutex::default(),
                status: Mutex::default(),
                dirty: Mutex::default(),
                dirty_notify: Notify::new(),
                epoch: AtomicU64::new(epoch),
            }
        });
        shared.metrics.works.set(records.len() as i64);
        let status_task = crate::watches::AbortOnDrop(tokio::spawn(
            status_loop(shared.clone()).instrument(info_span!("work_status")),
        ));
        let works = Works {
            shared,
            _status_task: status_task,
        };
        for r in records {
            // Objects keep being watched across a restart; status needs the spec again.
            for a in &r.resources {
                works.shared.kinds.register(&target_of(a), &r.name);
            }
            if r.deleting {
                info!(work = %r.name, "resuming the deletion of a work");
                let work = pb::Work {
                    name: r.name.clone(),
                    uid: r.uid.clone(),
                    generation: r.generation,
                    deleting: true,
                    ..Default::default()
                };
                works.offer(work);
            }
        }
        Ok(works)
    }

    /// The highest hub epoch accepted so far.
    pub fn max_epoch(&self) -> u64 {
        self.shared.epoch.load(Ordering::SeqCst)
    }

    /// Accepts a hub epoch, or refuses one below the highest accepted. A higher epoch is
    /// stored durably before it is accepted, so that no restart forgets it (also with no
    /// work recorded); it is written with every record from now on.
    pub async fn accept_epoch(&self, epoch: u64) -> Result<bool, crate::record::StoreError> {
        let cur = self.shared.epoch.load(Ordering::SeqCst);
        if !drbridge_model::fencing::accept_hub_epoch(cur, epoch) {
            return Ok(false);
        }
        if epoch > cur {
            self.shared.store.save_epoch(epoch).await?;
            self.shared.epoch.fetch_max(epoch, Ordering::SeqCst);
        }
        Ok(true)
    }

    /// What Hello reports: every record, with the generation whose spec the agent holds
    /// (0 when it holds only the record, so the hub sends the spec again).
    pub fn known(&self) -> Vec<pb::WorkVersion> {
        let specs = self.shared.specs.lock().clone();
        let mut out: Vec<pb::WorkVersion> = self
            .shared
            .records
            .lock()
            .values()
            .map(|r| pb::WorkVersion {
                name: r.name.clone(),
                uid: r.uid.clone(),
                generation: if r.deleting {
                    r.generation
                } else {
                    specs.get(&r.name).copied().unwrap_or(0)
                },
                deleting: r.deleting,
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Names of works recorded whose spec the hub has not sent since this process started.
    pub fn without_spec(&self) -> Vec<String> {
        let specs = self.shared.specs.lock();
        self.shared
            .records
            .lock()
            .values()
            .filter(|r| !r.deleting && !specs.contains_key(&r.name))
            .map(|r| r.name.clone())
            .collect()
    }

    pub fn records(&self) -> Vec<WorkRecord> {
        self.shared.records.lock().values().cloned().collect()
    }

    /// Hands a work from the hub to its actor. The receiver resolves once the work is
    /// recorded durably (or needed no recording).
    pub fn offer(&self, work: pb::Work) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        let mut boxes = self.shared.mailboxes.lock();
        let name = work.name.clone();
        let mailbox = match boxes.get(&name) {
            Some(m) => m.clone(),
            None => {
                let m = Arc::new(Mailbox::default());
                boxes.insert(name.clone(), m.clone());
                let shared = self.shared.clone();
                let span = info_span!("work", work = %name);
                tokio::spawn(actor(shared, name.clone(), m.clone()).instrument(span));
                m
            }
        };
        mailbox.put_later(Pending {
            work,
            recorded: vec![tx],
        });
        mailbox.notify.notify_one();
        rx
    }
}

impl<C: Cluster, S: RecordStore> Shared<C, S> {
    fn mark_dirty(&self, names: impl IntoIterator<Item = String>) {
        self.dirty.lock().extend(names);
        self.dirty_notify.notify_one();
    }

    /// Answers the hub that a work is gone, and remembers it (see `gone`).
    fn mark_gone(&self, name: &str, uid: &str) {
        self.gone.lock().insert(name.to_string(), uid.to_string());
        self.outbox.gone(name, uid);
    }

    fn other_records(&self, name: &str) -> Vec<Vec<ResourceKey>> {
        self.records
            .lock()
            .values()
            .filter(|r| r.name != name)
            .map(|r| r.resources.iter().map(AppliedResource::key).collect())
            .collect()
    }

    async fn put_record(&self, record: &WorkRecord) -> Result<(), crate::record::StoreError> {
        self.store.put(record).await?;
        self.gone.lock().remove(&record.name);
        self.records
            .lock()
            .insert(record.name.clone(), record.clone());
        self.metrics.works.set(self.records.lock().len() as i64);
        Ok(())
    }

    /// Recomputes one work's status from the watches and stores it in the outbox.
    async fn recompute(&self, name: &str) {
        let Some(state) = self.status.lock().get(name).cloned() else {
            return;
        };
        let mut availability = Vec::with_capacity(state.slots.len());
        for s in &state.slots {
            availability.push(match &s.target {
                None => Availability::IncompleteMeta,
                Some(t) => match self.kinds.exists(t) {
                    Some(true) => Availability::Available,
                    Some(false) => Availability::NotAvailable,
                    // The kind's watch has not listed yet: ask once.
                    None => match self.cluster.get(&t.resolved, &t.namespace, &t.name).await {
                        Ok(Some(_)) => Availability::Available,
                        Ok(None) => Availability::NotAvailable,
                        Err(e) => Availability::FetchFailed(e.to_string()),
                    },
                },
            });
        }
        let now = Utc::now();
        let mut status = self.status.lock();
        let Some(st) = status.get_mut(name) else {
            return;
        };
        if st.uid != state.uid || st.generation != state.generation || st.slots != state.slots {
            // A newer apply replaced the state meanwhile; it marks itself dirty.
            return;
        }
        let mcs: Vec<Vec<Condition>> = st
            .slots
            .iter()
            .zip(&availability)
            .enumerate()
            .map(|(i, (s, a))| {
                let prev = st
                    .manifest_conditions
                    .get(i)
                    .map(Vec::as_slice)
                    .unwrap_or(&[]);
                manifest_conditions(
                    prev,
                    st.generation,
                    s.applied.as_ref().map(|_| ()).map_err(String::as_str),
                    a,
                    now,
                )
            })
            .collect();
        let wcs = work_conditions(&st.work_conditions, st.generation, &mcs, st.deleting, now);
        st.manifest_conditions = mcs;
        st.work_conditions = wcs;
        let msg = pb::WorkStatus {
            name: name.to_string(),
            uid: st.uid.clone(),
            generation: st.generation,
            conditions: st.work_conditions.iter().map(condition_to_pb).collect(),
            manifests: st
                .slots
                .iter()
                .zip(&st.manifest_conditions)
                .map(|(s, c)| pb::ManifestStatus {
                    meta: Some(meta_to_pb(&s.meta)),
                    conditions: c.iter().map(condition_to_pb).collect(),
                })
                .collect(),
            observed_time: drbridge_model::status::rfc3339_millis(now),
        };
        drop(status);
        self.outbox.put_work(msg);
    }
}

async fn status_loop<C: Cluster, S: RecordStore>(s: Arc<Shared<C, S>>) {
    // Works aborts this task when dropped, which releases `s`.
    loop {
        let notified = s.dirty_notify.notified();
        if s.dirty.lock().is_empty() {
            notified.await;
        }
        // Debounce: let a burst of watch events settle into one recompute.
        tokio::time::sleep(s.cfg.debounce).await;
        let names = std::mem::take(&mut *s.dirty.lock());
        for n in names {
            s.recompute(&n).await;
        }
    }
}

/// Retry delays for a failed durable write.
fn store_backoff(attempt: u32) -> Duration {
    Duration::from_millis(200u64.saturating_mul(1 << attempt.min(7))).min(Duration::from_secs(30))
}

async fn actor<C: Cluster, S: RecordStore>(
    shared: Arc<Shared<C, S>>,
    name: String,
    mailbox: Arc<Mailbox>,
) {
    let mut cache = ApplyCache::default();
    // The spec last applied, for the periodic re-apply.
    let mut current: Option<pb::Work> = None;
    let mut attempt = 0u32;
    loop {
        let has_spec = current.is_some();
        let period = shared.cfg.reapply;
        let reapply = async move {
            match (period, has_spec) {
                (Some(d), true) => {
                    let jitter = rand::random_range(0.0..0.5);
                    tokio::time::sleep(d.mul_f64(1.0 + jitter)).await
                }
                _ => std::future::pending().await,
            }
        };
        let taken = mailbox.pending.lock().take();
        let pending = match taken {
            Some(p) => p,
            None => {
                tokio::select! {
                    () = mailbox.notify.notified() => {}
                    () = reapply => {
                        if let Some(w) = current.clone() {
                            debug!("periodic re-apply");
                            apply_work(&shared, &w, Decision::Reapply, &mut cache).await.ok();
                        }
                    }
                }
                // Exit when the work is gone and nothing new arrived.
                let mut boxes = shared.mailboxes.lock();
                if mailbox.pending.lock().is_none()
                    && !shared.records.lock().contains_key(&name)
                    && current.is_none()
                {
                    boxes.remove(&name);
                    return;
                }
                continue;
            }
        };
        let work = pending.work.clone();
        let held = shared
            .records
            .lock()
            .get(&name)
            .map(|r| Held {
                uid: r.uid.clone(),
                generation: r.generation,
                deleting: r.deleting,
            })
            .or_else(|| {
                // A work answered gone is held as deleting: its spec is not applied again.
                shared.gone.lock().get(&name).map(|uid| Held {
                    uid: uid.clone(),
                    generation: 0,
                    deleting: true,
                })
            });
        let offered = Offered {
            uid: work.uid.clone(),
            generation: work.generation,
            deleting: work.deleting,
        };
        let decision = decide(held.as_ref(), &offered);
        debug!(?decision, generation = work.generation, uid = %work.uid, deleting = work.deleting, "work received");
        let done = |p: Pending| {
            for t in p.recorded {
                let _ = t.send(());
            }
        };
        match decision {
            Decision::Stale => {
                warn!(
                    held = held.as_ref().map(|h| h.generation),
                    offered = work.generation,
                    "ignoring an older generation"
                );
                done(pending);
                shared.outbox.touch_work(&name);
            }
            Decision::IgnoreWhileDeleting => {
                warn!("ignoring a spec for a work that is being deleted");
                done(pending);
            }
            Decision::AlreadyGone => {
                if let Some(h) = &held {
                    warn!(held_uid = %h.uid, offered_uid = %work.uid, "delete for another incarnation of the work; keeping the record");
                }
                done(pending);
                shared.mark_gone(&name, &work.uid);
            }
            Decision::Apply | Decision::Reapply | Decision::Replace => {
                let started = std::time::Instant::now();
                let applied = apply_work(&shared, &work, decision, &mut cache).await;
                if decision != Decision::Reapply {
                    shared
                        .metrics
                        .apply_seconds
                        .observe(started.elapsed().as_secs_f64());
                }
                match applied {
                    Ok(()) => {
                        attempt = 0;
                        done(pending);
                        current = Some(work);
                    }
                    Err(()) => {
                        // Not recorded: try again, unless something newer arrived.
                        retry(&mailbox, pending, &mut attempt).await;
                    }
                }
            }
            Decision::Delete => match delete_work(&shared, &work, pending).await {
                Ok(()) => {
                    attempt = 0;
                    current = None;
                }
                Err(pending) => retry(&mailbox, pending, &mut attempt).await,
            },
        }
        // A work that is gone ends its actor unless a new message is waiting.
        let mut boxes = shared.mailboxes.lock();
        if mailbox.pending.lock().is_none() && !shared.records.lock().contains_key(&name) {
            boxes.remove(&name);
            return;
        }
    }
}

/// Whether `later`, arriving after `earlier` for the same work, must not replace it: the same
/// fencing as against the record (an older generation of the uid, or a spec of a uid being
/// deleted). Arrival order alone would let an older generation that arrives later (a hub
/// replica whose relist went back in time, a lagging new leader) displace a newer one, and
/// the older one's recording would answer as recorded a sync that sent the newer.
fn keeps_earlier(earlier: &pb::Work, later: &pb::Work) -> bool {
    let held = Held {
        uid: earlier.uid.clone(),
        generation: earlier.generation,
        deleting: earlier.deleting,
    };
    let offered = Offered {
        uid: later.uid.clone(),
        generation: later.generation,
        deleting: later.deleting,
    };
    matches!(
        decide(Some(&held), &offered),
        Decision::Stale | Decision::IgnoreWhileDeleting
    )
}

/// Two messages for one work, coalesced: the one the fencing prefers (the later one unless
/// [`keeps_earlier`]), answering everyone waiting for either.
fn coalesce(earlier: Pending, later: Pending) -> Pending {
    let mut recorded = earlier.recorded;
    recorded.extend(later.recorded);
    let work = if keeps_earlier(&earlier.work, &later.work) {
        earlier.work
    } else {
        later.work
    };
    Pending { work, recorded }
}

impl Mailbox {
    /// Puts a message that arrived after whatever is waiting.
    fn put_later(&self, later: Pending) {
        let mut p = self.pending.lock();
        *p = Some(match p.take() {
            Some(earlier) => coalesce(earlier, later),
            None => later,
        });
    }

    /// Puts back a message whose recording failed, which arrived before whatever is waiting.
    fn put_back(&self, earlier: Pending) {
        let mut p = self.pending.lock();
        *p = Some(match p.take() {
            Some(later) => coalesce(earlier, later),
            None => earlier,
        });
    }
}

async fn retry(mailbox: &Mailbox, pending: Pending, attempt: &mut u32) {
    tokio::time::sleep(store_backoff(*attempt)).await;
    *attempt += 1;
    mailbox.put_back(pending);
}

/// The uid to record when the work owns the object of a prepared manifest, `None` when it does
/// not. As in OCM, a work owns (and so may delete) what it writes with Update or
/// ServerSideApply, and what it created with CreateOnly; never a ReadOnly object, nor an
/// object that existed before a CreateOnly manifest found it, nor a protected namespace.
fn owned_uid(s: &Slot, old: Option<&AppliedResource>, allowlist: &Allowlist) -> Option<String> {
    let old_uid = || old.map(|a| a.uid.clone()).unwrap_or_default();
    if allowlist.protects(&s.meta.group, &s.meta.kind, &s.meta.name) {
        return None;
    }
    match s.strategy() {
        Strategy::ReadOnly => None,
        Strategy::CreateOnly => {
            if s.created {
                return Some(s.uid.clone());
            }
            let a = old?;
            // Owned if recorded under this incarnation; unknown (the read failed) keeps it.
            (s.uid.is_empty() || (!a.uid.is_empty() && a.uid == s.uid)).then(|| a.uid.clone())
        }
        Strategy::Update | Strategy::ServerSideApply { .. } => Some(if s.uid.is_empty() {
            old_uid()
        } else {
            s.uid.clone()
        }),
    }
}

fn applied_resource(s: &Slot, t: &Target, uid: String) -> AppliedResource {
    AppliedResource {
        group: t.resolved.group.clone(),
        version: t.resolved.version.clone(),
        kind: t.resolved.kind.clone(),
        resource: t.resolved.plural.clone(),
        namespace: t.namespace.clone(),
        name: t.name.clone(),
        uid,
        ordinal: s.meta.ordinal,
    }
}

/// Applies a work. `Err` means it could not be recorded durably and nothing was applied.
async fn apply_work<C: Cluster, S: RecordStore>(
    shared: &Shared<C, S>,
    work: &pb::Work,
    decision: Decision,
    cache: &mut ApplyCache,
) -> Result<(), ()> {
    let name = &work.name;
    let policy = delete_policy_from_pb(work.delete_option.as_ref()).unwrap_or_default();
    let mut slots = apply::prepare(
        shared.cluster.as_ref(),
        &work.manifests,
        &work.manifest_configs,
        &shared.cfg.policy,
    )
    .await;

    // Record first: after a crash the record must list everything that may exist.
    let old = shared.records.lock().get(name).cloned();
    let old_resources: Vec<AppliedResource> = old
        .as_ref()
        .map(|r| r.resources.clone())
        .unwrap_or_default();
    let old_of = |t: &Target| old_resources.iter().find(|a| a.key() == t.key());
    let allowlist = &shared.cfg.policy.allowlist;
    // What the work will own once applied (a CreateOnly object only once it is created).
    let intended: Vec<AppliedResource> = slots
        .iter()
        .filter_map(|s| {
            let t = s.target.as_ref()?;
            owned_uid(s, old_of(t), allowlist).map(|uid| applied_resource(s, t, uid))
        })
        .collect();
    let mut union = intended.clone();
    for a in &old_resources {
        if !union.iter().any(|b| b.key() == a.key()) {
            union.push(a.clone());
        }
    }
    let epoch = shared.epoch.load(Ordering::SeqCst);
    let pre = WorkRecord {
        name: name.clone(),
        uid: work.uid.clone(),
        generation: work.generation,
        delete_policy: policy.clone(),
        resources: union,
        deleting: false,
        hub_epoch: epoch,
    };
    if old.as_ref() != Some(&pre)
        && let Err(e) = shared.put_record(&pre).await
    {
        error!(error = %e, "cannot record the work; not applying it");
        let msg = format!("the agent cannot record the work durably: {}", e.0);
        for s in &mut slots {
            s.applied = Err(msg.clone());
        }
        set_status(shared, work, slots, false);
        return Err(());
    }

    apply::apply(shared.cluster.as_ref(), &mut slots, cache).await;
    let failed = slots.iter().filter(|s| s.applied.is_err()).count();
    shared.metrics.apply_errors.inc_by(failed as u64);
    if decision != Decision::Reapply {
        shared.metrics.works_applied.inc();
    }

    // The record now lists what this generation owns, the objects of manifests that cannot
    // be prepared or applied now, and dropped objects that could not be deleted yet.
    let mut resources: Vec<AppliedResource> = slots
        .iter()
        .filter_map(|s| {
            let t = s.target.as_ref()?;
            owned_uid(s, old_of(t), allowlist).map(|uid| applied_resource(s, t, uid))
        })
        .collect();
    let new_keys: Vec<ResourceKey> = resources.iter().map(AppliedResource::key).collect();
    let named: Vec<Named> = slots.iter().map(Slot::named).collect();
    let others = shared.other_records(name);
    for a in old_resources
        .iter()
        .filter(|a| !new_keys.contains(&a.key()))
    {
        let key = a.key();
        let t = target_of(a);
        if slots
            .iter()
            .any(|s| s.target.as_ref().is_some_and(|st| st.key() == key))
        {
            // Applied this generation, but not the work's (ReadOnly, CreateOnly over an
            // object that existed): released, never deleted.
            info!(object = %key, "the work does not own this object; released from its record, not deleted");
            continue;
        }
        if still_named(&a.group, &a.kind, &a.namespace, &a.name, &named) {
            // Only a newer generation that no longer names an object deletes it; a manifest
            // that cannot be prepared now (its condition says why) keeps it.
            info!(object = %key, "the manifest naming this object cannot be applied now; keeping the object and its record");
            resources.push(a.clone());
            continue;
        }
        if decision == Decision::Replace {
            info!(object = %key, "object of a previous incarnation of the work is no longer tracked (kept)");
        } else if allowlist.protects(&a.group, &a.kind, &a.name) {
            info!(object = %key, "a protected namespace is never deleted; released from the record");
        } else if !may_delete(&key, &policy, others.iter().map(Vec::as_slice)) {
            info!(object = %key, "object dropped from the work is orphaned or shared; not deleting it");
        } else {
            match shared
                .cluster
                .delete(
                    &t.resolved,
                    &t.namespace,
                    &t.name,
                    (!a.uid.is_empty()).then_some(a.uid.as_str()),
                )
                .await
            {
                Ok(()) => {
                    info!(object = %key, "deleted an object dropped from the work");
                    crate::events::deleted(
                        &shared.cfg.events,
                        name,
                        a,
                        Cause::Dropped {
                            generation: work.generation,
                        },
                    );
                }
                Err(ClusterError::NotFound(_)) | Err(ClusterError::Conflict(_)) => {}
                Err(e) => {
                    warn!(object = %key, error = %e, "cannot delete an object dropped from the work; will retry");
                    resources.push(a.clone());
                    continue;
                }
            }
        }
        shared.kinds.unregister(&t, name);
    }
    let post = WorkRecord { resources, ..pre };
    if shared.records.lock().get(name) != Some(&post)
        && let Err(e) = shared.put_record(&post).await
    {
        // The pre-apply record already lists every object; only the uids are missing.
        warn!(error = %e, "cannot update the work's record after applying");
    }
    shared.specs.lock().insert(name.clone(), work.generation);
    for s in &slots {
        if let Some(t) = &s.target {
            shared.kinds.register(t, name);
        }
    }
    set_status(shared, work, slots, false);
    Ok(())
}

/// Replaces the status state of a work and queues a recompute.
fn set_status<C: Cluster, S: RecordStore>(
    shared: &Shared<C, S>,
    work: &pb::Work,
    slots: Vec<Slot>,
    deleting: bool,
) {
    {
        let mut status = shared.status.lock();
        let st = status.entry(work.name.clone()).or_default();
        if st.uid != work.uid {
            *st = StatusState::default();
        }
        // Transition times survive a new generation when the manifest stays at its place.
        st.uid = work.uid.clone();
        st.generation = work.generation;
        st.deleting = deleting;
        if st.slots.len() != slots.len()
            || st
                .slots
                .iter()
                .zip(&slots)
                .any(|(a, b)| a.meta.name != b.meta.name || a.meta.kind != b.meta.kind)
        {
            st.manifest_conditions.clear();
        }
        st.slots = slots;
    }
    // Applied changes go out at once; watches only refine availability.
    shared.mark_dirty([work.name.clone()]);
}

/// Deletes a work. `Err` gives the message back when its record could not be written.
async fn delete_work<C: Cluster, S: RecordStore>(
    shared: &Shared<C, S>,
    work: &pb::Work,
    pending: Pending,
) -> Result<(), Pending> {
    let name = &work.name;
    let Some(mut record) = shared.records.lock().get(name).cloned() else {
        for t in pending.recorded {
            let _ = t.send(());
        }
        shared.mark_gone(name, &work.uid);
        return Ok(());
    };
    // The hub's latest delete option wins (Ramen sets Orphan just before deleting).
    if let Some(p) = delete_policy_from_pb(work.delete_option.as_ref()) {
        record.delete_policy = p;
    }
    if !record.deleting {
        record.deleting = true;
        record.hub_epoch = record.hub_epoch.max(shared.epoch.load(Ordering::SeqCst));
        if let Err(e) = shared.put_record(&record).await {
            error!(error = %e, "cannot record the start of the deletion");
            return Err(pending);
        }
    }
    for t in pending.recorded {
        let _ = t.send(());
    }
    {
        let mut status = shared.status.lock();
        if let Some(st) = status.get_mut(name) {
            st.deleting = true;
        }
    }
    shared.mark_dirty([name.clone()]);
    info!(policy = ?record.delete_policy, objects = record.resources.len(), "deleting the work");

    let others = shared.other_records(name);
    let mut waits = Vec::new();
    let mut kept = Vec::new();
    for a in &record.resources {
        let key = a.key();
        let t = target_of(a);
        if shared
            .cfg
            .policy
            .allowlist
            .protects(&a.group, &a.kind, &a.name)
        {
            info!(object = %key, "a protected namespace is never deleted; leaving it");
            continue;
        }
        if !may_delete(
            &key,
            &record.delete_policy,
            others.iter().map(Vec::as_slice),
        ) {
            info!(object = %key, "orphaning (delete option) or shared with another work; leaving it");
            continue;
        }
        let uid = (!a.uid.is_empty()).then_some(a.uid.as_str());
        match shared
            .cluster
            .delete(&t.resolved, &t.namespace, &t.name, uid)
            .await
        {
            Ok(()) => {
                crate::events::deleted(&shared.cfg.events, name, a, Cause::WorkDeleted);
                waits.push((t, a.uid.clone()));
            }
            // Gone already, or another incarnation that is not ours.
            Err(ClusterError::NotFound(_)) | Err(ClusterError::Conflict(_)) => {}
            Err(e) => {
                warn!(object = %key, error = %e, "cannot delete; will retry");
                kept.push(a.clone());
            }
        }
    }
    if !kept.is_empty() {
        // Keep deleting later; the record still lists everything.
        tokio::time::sleep(store_backoff(3)).await;
        return Err(Pending {
            work: work.clone(),
            recorded: vec![],
        });
    }
    // Foreground: wait until every deleted object is gone, finalizers included.
    futures::future::join_all(
        waits
            .iter()
            .map(|(t, uid)| wait_gone(shared.cluster.as_ref(), t, uid)),
    )
    .await;
    for (t, _) in &waits {
        shared.kinds.unregister(t, name);
    }
    for a in &record.resources {
        shared.kinds.unregister(&target_of(a), name);
    }
    loop {
        match shared.store.remove(name).await {
            Ok(()) => break,
            Err(e) => {
                error!(error = %e, "cannot remove the work's record; retrying");
                tokio::time::sleep(store_backoff(4)).await;
            }
        }
    }
    shared.records.lock().remove(name);
    shared.metrics.works.set(shared.records.lock().len() as i64);
    shared.specs.lock().remove(name);
    shared.status.lock().remove(name);
    shared.mark_gone(name, &record.uid);
    info!("work deleted");
    Ok(())
}

/// Waits until the object (this incarnation) no longer exists.
async fn wait_gone<C: Cluster>(cluster: &C, t: &Target, uid: &str) {
    let same = |v: &serde_json::Value| uid.is_empty() || uid_of(v) == uid;
    loop {
        let mut stream = cluster.watch_object(&t.resolved, &t.namespace, &t.name);
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(WatchEvent::Restarted(list)) if !list.iter().any(same) => return,
                Ok(WatchEvent::Deleted(v)) if same(&v) => return,
                Ok(WatchEvent::Applied(v)) if !same(&v) => return,
                Ok(_) => {}
                Err(e) => debug!(error = %e, "waiting for deletion; watch error"),
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Works the hub never mentioned after a full resync: kept, and logged.
pub fn log_unmentioned(names: &[String], mentioned: &HashSet<String>) {
    for n in names.iter().filter(|n| !mentioned.contains(*n)) {
        warn!(work = %n, "the hub did not send this recorded work; keeping its objects and record");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::MemoryStore;
    use crate::testing::FakeCluster;
    use serde_json::{Value, json};

    fn spec(generation: i64, deleting: bool) -> pb::Work {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "a", "namespace": "ns"}, "data": {"generation": generation.to_string()}});
        pb::Work {
            name: "w".into(),
            uid: "u".into(),
            generation,
            manifests: vec![serde_json::to_vec(&cm).unwrap()],
            deleting,
            ..Default::default()
        }
    }

    async fn start(store: &MemoryStore) -> (FakeCluster, Works<FakeCluster, MemoryStore>) {
        let cluster = FakeCluster::new();
        let mut cfg = WorkConfig::default();
        cfg.policy.allowlist = Allowlist::allow_all();
        cfg.reapply = None;
        let works = Works::start(
            Arc::new(cluster.clone()),
            Arc::new(store.clone()),
            cfg,
            Arc::new(Outbox::default()),
            Metrics::default(),
        )
        .await
        .unwrap();
        (cluster, works)
    }

    /// Offers `before` (and waits until it is recorded), then `first` and `second` with no
    /// await in between, so that they meet in the mailbox; waits until both are answered.
    async fn offer_together(
        before: Option<pb::Work>,
        first: pb::Work,
        second: pb::Work,
    ) -> (FakeCluster, MemoryStore) {
        let store = MemoryStore::default();
        let (cluster, works) = start(&store).await;
        if let Some(w) = before {
            works.offer(w).await.unwrap();
        }
        let a = works.offer(first);
        let b = works.offer(second);
        a.await.unwrap();
        b.await.unwrap();
        (cluster, store)
    }

    fn generation(store: &MemoryStore) -> Option<i64> {
        store.snapshot().get("w").map(|r| r.generation)
    }

    fn data(cluster: &FakeCluster) -> Option<Value> {
        cluster
            .object("ConfigMap", "ns", "a")
            .map(|a| a["data"]["generation"].clone())
    }

    /// Found by the simulation: sync 3 (generation 3) and sync 4 (generation 4) met in the
    /// mailbox in the other order; generation 3 replaced 4 and its recording answered both
    /// syncs, so the hub took generation 4 as recorded while the agent held 3.
    #[tokio::test]
    async fn an_older_spec_arriving_later_does_not_replace_a_waiting_newer_one() {
        let (cluster, store) = offer_together(None, spec(4, false), spec(3, false)).await;
        assert_eq!(generation(&store), Some(4));
        assert_eq!(data(&cluster), Some(json!("4")));
        // A newer one arriving later does.
        let (cluster, store) = offer_together(None, spec(1, false), spec(2, false)).await;
        assert_eq!(generation(&store), Some(2));
        assert_eq!(data(&cluster), Some(json!("2")));
    }

    #[tokio::test]
    async fn a_spec_arriving_after_its_delete_does_not_replace_it() {
        let (cluster, store) =
            offer_together(Some(spec(1, false)), spec(1, true), spec(2, false)).await;
        // Deleting or deleted by now; never generation 2.
        let record = store.snapshot().get("w").cloned();
        assert!(record.is_none_or(|r| r.deleting));
        let d = data(&cluster);
        assert!(d.as_ref().is_none_or(|d| d == "1"), "{d:?}");
    }

    /// The same when the newer one failed to be recorded and waits to be retried: an older
    /// one arriving meanwhile does not take its place.
    #[tokio::test]
    async fn an_older_spec_arriving_during_a_retry_does_not_replace_the_newer_one() {
        let store = MemoryStore::default();
        store.fail_puts(1);
        let (cluster, works) = start(&store).await;
        let a = works.offer(spec(4, false));
        // The actor tries to record generation 4, fails, and waits before retrying.
        while store.failing_puts() > 0 {
            tokio::task::yield_now().await;
        }
        let b = works.offer(spec(3, false));
        a.await.unwrap();
        b.await.unwrap();
        assert_eq!(generation(&store), Some(4));
        assert_eq!(data(&cluster), Some(json!("4")));
    }
}
