//! ManagedClusterViews: one watch per viewed object, shared by the views of the same
//! object; every change pushes a `ViewStatus` with the whole object.
//!
//! Never "absent" without a complete answer from the API server: an unreachable API
//! server leaves the last status in place, as the real controller does.
//!
//! A view reads only what the allowlist's `views` lists (Ramen's catalogue by default),
//! outside denied namespaces, and never a Secret: a compromised hub cannot read the cluster.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::pb;
use drbridge_model::view::{
    Scope, ViewError, check_scope, get_failed, gvk_invalid, is_secret_resource, not_allowed,
    not_found, parse_resource_arg, resource_invalid, secrets_refused,
};
use drbridge_model::{Allowlist, Gvk};
use futures::StreamExt;
use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::watch;
use tracing::{Instrument, debug, info_span, warn};

use crate::cluster::{Cluster, ClusterError, Resolved, WatchEvent};
use crate::outbox::Outbox;
use crate::watches::AbortOnDrop;

/// How often an unknown kind is looked up again (a CRD may be installed later).
const RETRY_UNKNOWN_KIND: Duration = Duration::from_secs(15);
const RETRY_TRANSPORT: Duration = Duration::from_secs(2);

#[derive(Clone, Debug, PartialEq)]
enum ObjState {
    Pending,
    Found(Value),
    Absent,
    Failed(String),
}

type ObjKey = (Resolved, String, String);

#[derive(Debug)]
struct ObjEntry {
    tx: watch::Sender<ObjState>,
    refs: usize,
    _task: AbortOnDrop,
}

#[derive(Debug)]
struct ViewEntry {
    uid: String,
    generation: i64,
    scope: Scope,
    _task: AbortOnDrop,
}

struct Shared<C> {
    cluster: Arc<C>,
    outbox: Arc<Outbox>,
    allowlist: Allowlist,
    objects: Mutex<HashMap<ObjKey, ObjEntry>>,
}

/// Every view the hub asked for.
pub struct Views<C: Cluster> {
    shared: Arc<Shared<C>>,
    views: Mutex<HashMap<String, ViewEntry>>,
}

impl<C: Cluster> std::fmt::Debug for Views<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Views")
            .field("views", &self.views.lock().len())
            .finish()
    }
}

pub fn scope_from_pb(s: &pb::ViewScope) -> Scope {
    Scope {
        group: s.api_group.clone(),
        version: s.version.clone(),
        kind: s.kind.clone(),
        resource: s.resource.clone(),
        name: s.name.clone(),
        namespace: s.namespace.clone(),
    }
}

impl<C: Cluster> Views<C> {
    pub fn new(cluster: Arc<C>, outbox: Arc<Outbox>, allowlist: Allowlist) -> Self {
        Views {
            shared: Arc::new(Shared {
                cluster,
                outbox,
                allowlist,
                objects: Mutex::default(),
            }),
            views: Mutex::default(),
        }
    }

    /// Starts or changes a view. The same view again only resends its status.
    pub fn upsert(&self, view: &pb::View) {
        let scope = scope_from_pb(&view.scope.clone().unwrap_or_default());
        let mut views = self.views.lock();
        if let Some(e) = views.get(&view.name)
            && e.uid == view.uid
            && e.generation == view.generation
            && e.scope == scope
        {
            self.shared.outbox.touch_view(&view.name);
            return;
        }
        // A changed view starts over; its old status must not be mistaken for the new one.
        views.remove(&view.name);
        self.shared.outbox.remove_view(&view.name);
        let shared = self.shared.clone();
        let (name, uid, generation) = (view.name.clone(), view.uid.clone(), view.generation);
        let span = info_span!("view", view = %name);
        let task = tokio::spawn(
            run_view(shared, name.clone(), uid.clone(), generation, scope.clone()).instrument(span),
        );
        views.insert(
            name,
            ViewEntry {
                uid,
                generation,
                scope,
                _task: AbortOnDrop(task),
            },
        );
    }

    pub fn remove(&self, name: &str) {
        self.views.lock().remove(name);
        self.shared.outbox.remove_view(name);
    }

    /// Stops every view not in `keep`.
    pub fn retain(&self, keep: &std::collections::HashSet<String>) {
        let gone: Vec<String> = self
            .views
            .lock()
            .keys()
            .filter(|n| !keep.contains(*n))
            .cloned()
            .collect();
        for n in gone {
            debug!(view = %n, "view no longer in the hub's desired state");
            self.remove(&n);
        }
    }

    pub fn len(&self) -> usize {
        self.views.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of object watches (views of the same object share one).
    pub fn object_watches(&self) -> usize {
        self.shared.objects.lock().len()
    }
}

fn publish<C>(
    shared: &Shared<C>,
    name: &str,
    uid: &str,
    generation: i64,
    outcome: pb::view_status::Outcome,
) {
    shared.outbox.put_view(pb::ViewStatus {
        name: name.to_string(),
        uid: uid.to_string(),
        generation,
        outcome: Some(outcome),
        observed_time: drbridge_model::status::rfc3339_millis(chrono::Utc::now()),
    });
}

fn error_outcome(e: ViewError) -> pb::view_status::Outcome {
    pb::view_status::Outcome::Error(pb::ViewError {
        reason: e.reason.to_string(),
        message: e.message,
    })
}

async fn resolve<C: Cluster>(cluster: &C, scope: &Scope) -> Result<Resolved, ClusterError> {
    if scope.resource.is_empty() {
        cluster
            .resolve_kind(&Gvk::new(&scope.group, &scope.version, &scope.kind))
            .await
    } else {
        let (res, v, g) = parse_resource_arg(&scope.resource);
        let g = if g.is_empty() { scope.group.clone() } else { g };
        let v = if v.is_empty() {
            scope.version.clone()
        } else {
            v
        };
        cluster.resolve_resource(&g, &v, &res).await
    }
}

/// Releases a shared object watch when the view stops.
struct Lease<C> {
    shared: Arc<Shared<C>>,
    key: ObjKey,
}

impl<C> Drop for Lease<C> {
    fn drop(&mut self) {
        let mut objects = self.shared.objects.lock();
        if let Some(e) = objects.get_mut(&self.key) {
            e.refs -= 1;
            if e.refs == 0 {
                objects.remove(&self.key);
            }
        }
    }
}

fn acquire<C: Cluster>(
    shared: &Arc<Shared<C>>,
    key: ObjKey,
) -> (Lease<C>, watch::Receiver<ObjState>) {
    let mut objects = shared.objects.lock();
    let entry = objects.entry(key.clone()).or_insert_with(|| {
        let (tx, _) = watch::channel(ObjState::Pending);
        let (r, ns, name) = key.clone();
        let mut stream = shared.cluster.watch_object(&r, &ns, &name);
        let txc = tx.clone();
        let span = info_span!("object_watch", resource = %r.plural, namespace = %ns, name = %name);
        let task = tokio::spawn(
            async move {
                while let Some(ev) = stream.next().await {
                    let state = match ev {
                        Ok(WatchEvent::Restarted(list)) => list
                            .into_iter()
                            .next()
                            .map(ObjState::Found)
                            .unwrap_or(ObjState::Absent),
                        Ok(WatchEvent::Applied(v)) => ObjState::Found(v),
                        Ok(WatchEvent::Deleted(_)) => ObjState::Absent,
                        // The API server answered with an error (forbidden, ...): report it.
                        Err(ClusterError::Api(m)) => ObjState::Failed(m),
                        // No answer: keep the last state.
                        Err(e) => {
                            warn!(error = %e, "object watch error; the watcher retries");
                            continue;
                        }
                    };
                    txc.send_if_modified(|cur| {
                        if *cur == state {
                            false
                        } else {
                            *cur = state;
                            true
                        }
                    });
                }
            }
            .instrument(span),
        );
        ObjEntry {
            tx,
            refs: 0,
            _task: AbortOnDrop(task),
        }
    });
    entry.refs += 1;
    let rx = entry.tx.subscribe();
    (
        Lease {
            shared: shared.clone(),
            key,
        },
        rx,
    )
}

async fn run_view<C: Cluster>(
    shared: Arc<Shared<C>>,
    name: String,
    uid: String,
    generation: i64,
    scope: Scope,
) {
    let out = |o| publish(&shared, &name, &uid, generation, o);
    if let Err(e) = check_scope(&scope) {
        out(error_outcome(e));
        return;
    }
    let resolved = loop {
        match resolve(shared.cluster.as_ref(), &scope).await {
            Ok(r) => break r,
            Err(ClusterError::NoKind(text)) => {
                let e = if scope.resource.is_empty() {
                    gvk_invalid(&text)
                } else {
                    resource_invalid(&text)
                };
                out(error_outcome(e));
                tokio::time::sleep(RETRY_UNKNOWN_KIND).await;
            }
            Err(e) => {
                warn!(error = %e, "cannot resolve the view's kind; retrying");
                tokio::time::sleep(RETRY_TRANSPORT).await;
            }
        }
    };
    if is_secret_resource(&resolved.plural) {
        out(error_outcome(secrets_refused()));
        return;
    }
    let ns = if resolved.namespaced {
        scope.namespace.clone()
    } else {
        String::new()
    };
    if let Err(e) = shared
        .allowlist
        .check_view(&resolved.group, &resolved.plural, &ns, &scope.name)
    {
        warn!(error = %e, "view refused");
        out(error_outcome(not_allowed(&e.to_string())));
        return;
    }
    let (group, plural) = (resolved.group.clone(), resolved.plural.clone());
    let (api_version, kind) = (resolved.api_version(), resolved.kind.clone());
    let (_lease, mut rx) = acquire(&shared, (resolved, ns, scope.name.clone()));
    loop {
        let state = rx.borrow_and_update().clone();
        match state {
            ObjState::Found(mut v) => {
                // List items come without apiVersion and kind; the view result needs both
                // (the MCV CRD marks it an embedded resource).
                if let Some(o) = v.as_object_mut() {
                    o.entry("apiVersion")
                        .or_insert_with(|| Value::String(api_version.clone()));
                    o.entry("kind")
                        .or_insert_with(|| Value::String(kind.clone()));
                }
                out(pb::view_status::Outcome::Object(
                    serde_json::to_vec(&v).unwrap_or_default(),
                ))
            }
            ObjState::Absent => out(error_outcome(not_found(&group, &plural, &scope.name))),
            ObjState::Failed(m) => out(error_outcome(get_failed(&m))),
            ObjState::Pending => {}
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}
