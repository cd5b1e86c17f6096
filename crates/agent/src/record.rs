//! The agent's durable record of what each work applied (drbridge's `AppliedWork`,
//! cluster-scoped, one per work).
//!
//! It is written before anything is applied, so after a crash the agent still knows
//! every object it may have created; it is the only basis for deleting anything.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use drbridge_api::applied_work::{AppliedWork, AppliedWorkSpec};
use drbridge_api::work::{
    DeleteOption, DeletePropagationPolicyType, ResourceIdentifier, SelectivelyOrphan,
};
use drbridge_model::{DeletePolicy, OrphanRule, ResourceKey};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use parking_lot::Mutex;

/// One object a work applied, as the `AppliedWork` stores it (its uid is empty until the
/// object was created or seen).
pub use drbridge_api::applied_work::AppliedResource;

/// The key the delete rules compare applied objects by.
pub trait AppliedKey {
    fn key(&self) -> ResourceKey;
}

impl AppliedKey for AppliedResource {
    fn key(&self) -> ResourceKey {
        ResourceKey::new(&self.group, &self.resource, &self.namespace, &self.name)
    }
}

/// What the agent holds for one work.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct WorkRecord {
    pub name: String,
    pub uid: String,
    pub generation: i64,
    pub delete_policy: DeletePolicy,
    pub resources: Vec<AppliedResource>,
    /// The agent has started deleting this work.
    pub deleting: bool,
    /// The highest hub epoch the agent had accepted when it wrote this record.
    pub hub_epoch: u64,
}

#[derive(Clone, Debug, thiserror::Error)]
#[error("durable record: {0}")]
pub struct StoreError(pub String);

/// Where records live.
pub trait RecordStore: Send + Sync + 'static {
    fn list(&self) -> impl Future<Output = Result<Vec<WorkRecord>, StoreError>> + Send;
    fn put(&self, record: &WorkRecord) -> impl Future<Output = Result<(), StoreError>> + Send;
    fn remove(&self, name: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// The highest hub epoch accepted, kept on its own (not only in work records), so that
    /// an agent holding no work still refuses an older hub after a restart. 0 when none.
    fn load_epoch(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;
    fn save_epoch(&self, epoch: u64) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Records in memory (tests, and the in-process hub+agent harness).
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    records: Arc<Mutex<BTreeMap<String, WorkRecord>>>,
    epoch: Arc<Mutex<u64>>,
    /// How many of the next puts fail.
    failing_puts: Arc<Mutex<u32>>,
}

impl MemoryStore {
    /// The next `n` puts fail (a store that is unreachable for a while).
    pub fn fail_puts(&self, n: u32) {
        *self.failing_puts.lock() = n;
    }

    /// How many of the next puts still fail.
    pub fn failing_puts(&self) -> u32 {
        *self.failing_puts.lock()
    }

    pub fn snapshot(&self) -> BTreeMap<String, WorkRecord> {
        self.records.lock().clone()
    }

    /// The stored hub epoch.
    pub fn epoch(&self) -> u64 {
        *self.epoch.lock()
    }
}

impl RecordStore for MemoryStore {
    async fn list(&self) -> Result<Vec<WorkRecord>, StoreError> {
        Ok(self.records.lock().values().cloned().collect())
    }
    async fn put(&self, record: &WorkRecord) -> Result<(), StoreError> {
        {
            let mut failing = self.failing_puts.lock();
            if *failing > 0 {
                *failing -= 1;
                return Err(StoreError("injected failure".into()));
            }
        }
        self.records
            .lock()
            .insert(record.name.clone(), record.clone());
        Ok(())
    }
    async fn remove(&self, name: &str) -> Result<(), StoreError> {
        self.records.lock().remove(name);
        Ok(())
    }
    async fn load_epoch(&self) -> Result<u64, StoreError> {
        Ok(self.epoch())
    }
    async fn save_epoch(&self, epoch: u64) -> Result<(), StoreError> {
        *self.epoch.lock() = epoch;
        Ok(())
    }
}

/// Label selecting one agent's records (several agents may share an API server in tests).
pub const CLUSTER_LABEL: &str = "drbridge.io/cluster";
/// Marks the AppliedWork that holds only the agent's highest accepted hub epoch.
pub const EPOCH_ANNOTATION: &str = "drbridge.io/hub-epoch";
/// Set while the agent deletes the work's objects: the deletion resumes after a restart.
pub const DELETING_ANNOTATION: &str = "drbridge.io/deleting";
const FIELD_MANAGER: &str = "drbridge-agent";

/// Records as `AppliedWork` objects (drbridge.io/v1alpha1, cluster-scoped).
#[derive(Clone)]
pub struct KubeRecordStore {
    api: Api<AppliedWork>,
    cluster: String,
    /// The hub namespace of the works: the cluster's name on the hub.
    work_namespace: String,
}

impl std::fmt::Debug for KubeRecordStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeRecordStore")
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

impl KubeRecordStore {
    pub fn new(client: kube::Client, cluster: &str) -> Self {
        KubeRecordStore {
            api: Api::all(client),
            cluster: cluster.to_string(),
            work_namespace: cluster.to_string(),
        }
    }

    /// The AppliedWork holding the epoch: the work namespace's name alone, which no work's
    /// record can have (theirs are `<namespace>.<name>`). Its empty `workName` keeps it out of
    /// [`RecordStore::list`].
    fn epoch_object(&self) -> String {
        self.work_namespace.clone()
    }
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

/// A delete policy as OCM's `deleteOption`.
pub fn delete_option(p: &DeletePolicy) -> DeleteOption {
    let (policy, rules) = match p {
        DeletePolicy::Foreground => (DeletePropagationPolicyType::Foreground, None),
        DeletePolicy::Orphan => (DeletePropagationPolicyType::Orphan, None),
        DeletePolicy::SelectivelyOrphan(rules) => (
            DeletePropagationPolicyType::SelectivelyOrphan,
            Some(SelectivelyOrphan {
                orphaning_rules: rules
                    .iter()
                    .map(|r| ResourceIdentifier {
                        group: r.group.clone(),
                        resource: r.resource.clone(),
                        name: r.name.clone(),
                        namespace: r.namespace.clone(),
                    })
                    .collect(),
            }),
        ),
    };
    DeleteOption {
        propagation_policy: policy,
        selectively_orphan: rules,
        ..Default::default()
    }
}

/// OCM's `deleteOption` as a delete policy (unset means Foreground).
pub fn delete_policy(d: Option<&DeleteOption>) -> DeletePolicy {
    let Some(d) = d else {
        return DeletePolicy::Foreground;
    };
    match d.propagation_policy {
        DeletePropagationPolicyType::Foreground => DeletePolicy::Foreground,
        DeletePropagationPolicyType::Orphan => DeletePolicy::Orphan,
        DeletePropagationPolicyType::SelectivelyOrphan => DeletePolicy::SelectivelyOrphan(
            d.selectively_orphan
                .iter()
                .flat_map(|s| &s.orphaning_rules)
                .map(|r| OrphanRule {
                    group: r.group.clone(),
                    resource: r.resource.clone(),
                    namespace: r.namespace.clone(),
                    name: r.name.clone(),
                })
                .collect(),
        ),
    }
}

fn to_object(cluster: &str, work_namespace: &str, r: &WorkRecord) -> AppliedWork {
    let mut o = AppliedWork::new(
        &AppliedWork::name_for(work_namespace, &r.name),
        AppliedWorkSpec {
            cluster: cluster.to_string(),
            work_namespace: work_namespace.to_string(),
            work_name: r.name.clone(),
            work_uid: r.uid.clone(),
            generation: r.generation,
            hub_epoch: r.hub_epoch,
            delete_option: Some(delete_option(&r.delete_policy)),
            applied_resources: r.resources.clone(),
        },
    );
    o.metadata.labels = Some(BTreeMap::from([(
        CLUSTER_LABEL.to_string(),
        cluster.to_string(),
    )]));
    // Under server-side apply an annotation left out is removed, which clears the flag.
    if r.deleting {
        o.metadata.annotations = Some(BTreeMap::from([(
            DELETING_ANNOTATION.to_string(),
            "true".to_string(),
        )]));
    }
    o
}

fn from_object(o: &AppliedWork) -> WorkRecord {
    let spec = &o.spec;
    WorkRecord {
        name: spec.work_name.clone(),
        uid: spec.work_uid.clone(),
        generation: spec.generation,
        delete_policy: delete_policy(spec.delete_option.as_ref()),
        resources: spec.applied_resources.clone(),
        deleting: o
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(DELETING_ANNOTATION))
            .is_some_and(|v| v == "true"),
        hub_epoch: spec.hub_epoch,
    }
}

impl RecordStore for KubeRecordStore {
    async fn list(&self) -> Result<Vec<WorkRecord>, StoreError> {
        let lp = ListParams::default().labels(&format!("{CLUSTER_LABEL}={}", self.cluster));
        let list = self.api.list(&lp).await.map_err(err)?;
        Ok(list
            .items
            .iter()
            .filter(|o| o.spec.cluster == self.cluster)
            .map(from_object)
            .filter(|r| !r.name.is_empty())
            .collect())
    }

    async fn put(&self, record: &WorkRecord) -> Result<(), StoreError> {
        let obj = to_object(&self.cluster, &self.work_namespace, record);
        let name = AppliedWork::name_for(&self.work_namespace, &record.name);
        // Server-side apply is create-or-update in one idempotent call; the agent is the
        // only writer of its records.
        self.api
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(obj),
            )
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn load_epoch(&self) -> Result<u64, StoreError> {
        let o = self.api.get_opt(&self.epoch_object()).await.map_err(err)?;
        Ok(o.filter(|o| o.spec.cluster == self.cluster)
            .map(|o| o.spec.hub_epoch)
            .unwrap_or(0))
    }

    async fn save_epoch(&self, epoch: u64) -> Result<(), StoreError> {
        let mut o = AppliedWork::new(
            &self.epoch_object(),
            AppliedWorkSpec {
                cluster: self.cluster.clone(),
                work_namespace: self.work_namespace.clone(),
                hub_epoch: epoch,
                ..Default::default()
            },
        );
        o.metadata.labels = Some(BTreeMap::from([(
            CLUSTER_LABEL.to_string(),
            self.cluster.clone(),
        )]));
        o.metadata.annotations = Some(BTreeMap::from([(
            EPOCH_ANNOTATION.to_string(),
            "true".to_string(),
        )]));
        self.api
            .patch(
                &self.epoch_object(),
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(o),
            )
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn remove(&self, name: &str) -> Result<(), StoreError> {
        let object = AppliedWork::name_for(&self.work_namespace, name);
        match self.api.delete(&object, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(err(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_round_trip() {
        let r = WorkRecord {
            name: "app-ns-vrg-mw".into(),
            uid: "u1".into(),
            generation: 3,
            delete_policy: DeletePolicy::SelectivelyOrphan(vec![OrphanRule {
                group: "".into(),
                resource: "namespaces".into(),
                namespace: "".into(),
                name: "app".into(),
            }]),
            resources: vec![AppliedResource {
                group: "ramendr.openshift.io".into(),
                version: "v1alpha1".into(),
                kind: "VolumeReplicationGroup".into(),
                resource: "volumereplicationgroups".into(),
                namespace: "app".into(),
                name: "app".into(),
                uid: "x".into(),
                ordinal: 0,
            }],
            deleting: true,
            hub_epoch: 77,
        };
        let o = to_object("c1", "c1", &r);
        assert_eq!(o.metadata.name.as_deref(), Some("c1.app-ns-vrg-mw"));
        assert_eq!(o.metadata.labels.as_ref().unwrap()[CLUSTER_LABEL], "c1");
        let v = serde_json::to_value(&o).unwrap();
        assert_eq!(v["apiVersion"], "drbridge.io/v1alpha1");
        assert_eq!(v["kind"], "AppliedWork");
        assert_eq!(
            v["spec"]["deleteOption"]["propagationPolicy"],
            "SelectivelyOrphan"
        );
        assert_eq!(from_object(&o), r);
        for p in [DeletePolicy::Foreground, DeletePolicy::Orphan] {
            assert_eq!(delete_policy(Some(&delete_option(&p))), p);
        }
        assert_eq!(delete_policy(None), DeletePolicy::Foreground);
    }
}
