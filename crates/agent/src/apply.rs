//! Applying the manifests of one work: validation, allowlist, discovery, then the
//! per-manifest write in OCM's kind order with the manifest's update strategy.

use drbridge_model::fencing::Named;
use drbridge_model::manifest::{InvalidManifest, parse_work};
use drbridge_model::merge::{
    ApplyCache, manifest_hash, merge_for_update, prepare_create, sanitize,
};
use drbridge_model::order::apply_order;
use drbridge_model::strategy::{ManifestConfigs, Strategy};
use drbridge_model::{Allowlist, ResourceKey, unknown_kind_message};
use serde_json::Value;
use tracing::{debug, info, warn};

use crate::cluster::{Cluster, ClusterError, Resolved};

/// How many times an update is retried after a conflict (someone else wrote between
/// our read and our write).
const CONFLICT_RETRIES: usize = 3;

/// Where a manifest lands on the cluster (known once discovery has run).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Target {
    pub resolved: Resolved,
    /// Empty for cluster-scoped kinds.
    pub namespace: String,
    pub name: String,
}

impl Target {
    pub fn key(&self) -> ResourceKey {
        ResourceKey::new(
            &self.resolved.group,
            &self.resolved.plural,
            &self.namespace,
            &self.name,
        )
    }

    fn cache_key(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.resolved.group, self.resolved.plural, self.namespace, self.name
        )
    }
}

/// `resourceMeta` of a manifest in status.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ResourceMeta {
    pub ordinal: i32,
    pub group: String,
    pub version: String,
    pub kind: String,
    pub resource: String,
    pub name: String,
    pub namespace: String,
}

/// One manifest of a work and what became of it.
#[derive(Clone, Debug, PartialEq)]
pub struct Slot {
    pub meta: ResourceMeta,
    pub target: Option<Target>,
    /// `Err` holds the text after "Failed to apply manifest: ".
    pub applied: Result<(), String>,
    /// Uid of the live object after the apply, when known.
    pub uid: String,
    /// This apply created the object (it did not exist before).
    pub created: bool,
    object: Option<Value>,
    strategy: Strategy,
    kind: Option<String>,
}

impl Slot {
    pub fn strategy(&self) -> &Strategy {
        &self.strategy
    }

    /// What this manifest names, as far as it could be read.
    pub fn named(&self) -> Named {
        Named::object(
            &self.meta.group,
            &self.meta.kind,
            &self.meta.namespace,
            &self.meta.name,
        )
    }

    fn failed(meta: ResourceMeta, kind: Option<String>, error: String) -> Self {
        Slot {
            meta,
            target: None,
            applied: Err(error),
            uid: String::new(),
            created: false,
            object: None,
            strategy: Strategy::Update,
            kind,
        }
    }
}

/// What the agent checks before it writes.
#[derive(Clone, Debug)]
pub struct ApplyPolicy {
    pub allowlist: Allowlist,
    pub max_work_bytes: usize,
}

/// Validates, checks the allowlist and resolves every manifest. No object is written.
pub async fn prepare<C: Cluster>(
    cluster: &C,
    manifests: &[Vec<u8>],
    configs: &[u8],
    policy: &ApplyPolicy,
) -> Vec<Slot> {
    let configs = ManifestConfigs::parse(configs);
    let parsed = parse_work(manifests, policy.max_work_bytes);
    let mut slots = Vec::with_capacity(parsed.len());
    for p in parsed {
        let m = match p {
            Ok(m) => m,
            Err(bad) => {
                let InvalidManifest { meta, error } = *bad;
                let kind = (!meta.gvk.kind.is_empty()).then(|| meta.gvk.kind.clone());
                let rm = ResourceMeta {
                    ordinal: meta.ordinal as i32,
                    group: meta.gvk.group,
                    version: meta.gvk.version,
                    kind: meta.gvk.kind,
                    name: meta.name,
                    namespace: meta.namespace,
                    ..Default::default()
                };
                slots.push(Slot::failed(rm, kind, error.to_string()));
                continue;
            }
        };
        let gvk = m.meta.gvk.clone();
        let mut rm = ResourceMeta {
            ordinal: m.meta.ordinal as i32,
            group: gvk.group.clone(),
            version: gvk.version.clone(),
            kind: gvk.kind.clone(),
            name: m.meta.name.clone(),
            namespace: m.meta.namespace.clone(),
            ..Default::default()
        };
        let kind = Some(gvk.kind.clone());
        // The kind check comes first: a refused kind is not even looked up.
        if let Err(e) = policy
            .allowlist
            .check(&gvk.group, &gvk.kind, "", &m.meta.name)
        {
            slots.push(Slot::failed(rm, kind, e.to_string()));
            continue;
        }
        let resolved = match cluster.resolve_kind(&gvk).await {
            Ok(r) => r,
            Err(ClusterError::NoKind(_)) => {
                slots.push(Slot::failed(rm, kind, unknown_kind_message(&gvk.kind)));
                continue;
            }
            Err(e) => {
                slots.push(Slot::failed(rm, kind, e.to_string()));
                continue;
            }
        };
        rm.resource = resolved.plural.clone();
        let mut object = m.object;
        let namespace = if resolved.namespaced {
            if m.meta.namespace.is_empty() {
                slots.push(Slot::failed(
                    rm,
                    kind,
                    format!("namespaced kind {:?} needs metadata.namespace", gvk.kind),
                ));
                continue;
            }
            m.meta.namespace.clone()
        } else {
            // A namespace on a cluster-scoped object means nothing; OCM reports it empty.
            if let Some(md) = object.get_mut("metadata").and_then(Value::as_object_mut) {
                md.remove("namespace");
            }
            String::new()
        };
        rm.namespace = namespace.clone();
        if let Err(e) = policy
            .allowlist
            .check_object(&gvk.group, &gvk.kind, &namespace, &object)
        {
            slots.push(Slot::failed(rm, kind, e.to_string()));
            continue;
        }
        let target = Target {
            resolved,
            namespace,
            name: m.meta.name.clone(),
        };
        let strategy = match &configs {
            Ok(c) => match c.strategy_for(&target.key()) {
                Ok(s) => s,
                Err(e) => {
                    slots.push(Slot::failed(rm, kind, e.to_string()));
                    continue;
                }
            },
            Err(e) => {
                slots.push(Slot::failed(rm, kind, e.to_string()));
                continue;
            }
        };
        slots.push(Slot {
            meta: rm,
            target: Some(target),
            applied: Ok(()),
            uid: String::new(),
            created: false,
            object: Some(object),
            strategy,
            kind,
        });
    }
    slots
}

/// Writes every prepared manifest, in OCM's kind order. Failed slots stay failed; the
/// others get their apply result and the live uid.
pub async fn apply<C: Cluster>(cluster: &C, slots: &mut [Slot], cache: &mut ApplyCache) {
    let kinds: Vec<Option<&str>> = slots.iter().map(|s| s.kind.as_deref()).collect();
    for i in apply_order(&kinds) {
        let slot = &mut slots[i];
        let (Some(target), Some(object)) = (slot.target.clone(), slot.object.clone()) else {
            continue;
        };
        match apply_one(cluster, &target, &object, &slot.strategy, cache).await {
            Ok((uid, created)) => {
                slot.applied = Ok(());
                slot.uid = uid;
                slot.created = created;
            }
            Err(e) => {
                warn!(ordinal = slot.meta.ordinal, kind = %slot.meta.kind, name = %target.name, error = %e, "apply failed");
                cache.forget(&target.cache_key());
                slot.applied = Err(e.to_string());
                // The object may exist anyway (for example an update was refused).
                if let Ok(Some(live)) = cluster
                    .get(&target.resolved, &target.namespace, &target.name)
                    .await
                {
                    slot.uid = uid_of(&live);
                }
            }
        }
    }
}

pub fn uid_of(v: &Value) -> String {
    v.pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

fn resource_version(v: &Value) -> &str {
    v.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .unwrap_or("")
}

async fn apply_one<C: Cluster>(
    cluster: &C,
    t: &Target,
    required: &Value,
    strategy: &Strategy,
    cache: &mut ApplyCache,
) -> Result<(String, bool), ClusterError> {
    let r = &t.resolved;
    match strategy {
        Strategy::ReadOnly => Ok((
            cluster
                .get(r, &t.namespace, &t.name)
                .await?
                .map(|v| uid_of(&v))
                .unwrap_or_default(),
            false,
        )),
        Strategy::CreateOnly => match cluster.get(r, &t.namespace, &t.name).await? {
            Some(live) => Ok((uid_of(&live), false)),
            None => Ok((
                uid_of(
                    &cluster
                        .create(r, &t.namespace, prepare_create(required))
                        .await?,
                ),
                true,
            )),
        },
        Strategy::ServerSideApply {
            field_manager,
            force,
        } => {
            let out = cluster
                .server_side_apply(
                    r,
                    &t.namespace,
                    &t.name,
                    prepare_create(required),
                    field_manager,
                    *force,
                )
                .await?;
            Ok((uid_of(&out), false))
        }
        Strategy::Update => {
            let hash = manifest_hash(&sanitize(required));
            let key = t.cache_key();
            let mut attempt = 0;
            loop {
                attempt += 1;
                let res = update_once(cluster, t, required, &hash, &key, cache).await;
                match res {
                    Err(ClusterError::Conflict(m)) if attempt <= CONFLICT_RETRIES => {
                        debug!(name = %t.name, attempt, "conflict, retrying: {m}");
                        continue;
                    }
                    other => return other,
                }
            }
        }
    }
}

async fn update_once<C: Cluster>(
    cluster: &C,
    t: &Target,
    required: &Value,
    hash: &str,
    key: &str,
    cache: &mut ApplyCache,
) -> Result<(String, bool), ClusterError> {
    let r = &t.resolved;
    let Some(live) = cluster.get(r, &t.namespace, &t.name).await? else {
        let created = cluster
            .create(r, &t.namespace, prepare_create(required))
            .await?;
        info!(kind = %r.kind, namespace = %t.namespace, name = %t.name, "created");
        cache.record(key, hash, resource_version(&created));
        return Ok((uid_of(&created), true));
    };
    if cache.safe_to_skip(key, hash, resource_version(&live)) {
        return Ok((uid_of(&live), false));
    }
    let plan = merge_for_update(&live, required);
    if !plan.changed {
        cache.record(key, hash, resource_version(&live));
        return Ok((uid_of(&live), false));
    }
    let updated = cluster
        .replace(r, &t.namespace, &t.name, plan.object)
        .await?;
    info!(kind = %r.kind, namespace = %t.namespace, name = %t.name, "updated");
    cache.record(key, hash, resource_version(&updated));
    Ok((uid_of(&updated), false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeCluster;
    use drbridge_model::Allowlist;
    use serde_json::json;

    fn policy() -> ApplyPolicy {
        ApplyPolicy {
            allowlist: Allowlist::allow_all(),
            max_work_bytes: 1 << 20,
        }
    }

    fn b(v: Value) -> Vec<u8> {
        serde_json::to_vec(&v).unwrap()
    }

    fn cm(name: &str, data: Value) -> Vec<u8> {
        b(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "ns"}, "data": data}),
        )
    }

    #[tokio::test]
    async fn create_then_noop_then_update() {
        let c = FakeCluster::new();
        let mut cache = ApplyCache::default();
        let m = vec![cm("a", json!({"k": "1"}))];
        let mut slots = prepare(&c, &m, b"", &policy()).await;
        apply(&c, &mut slots, &mut cache).await;
        assert_eq!(slots[0].applied, Ok(()));
        assert!(!slots[0].uid.is_empty());
        assert_eq!(slots[0].meta.resource, "configmaps");
        let writes = c.writes();
        // Same manifest again: nothing is written.
        let mut again = prepare(&c, &m, b"", &policy()).await;
        apply(&c, &mut again, &mut ApplyCache::default()).await;
        assert_eq!(c.writes(), writes, "no-op apply must not write");
        // Changed data is written and labels added by others are kept.
        let mut live = c.object("ConfigMap", "ns", "a").unwrap();
        live["metadata"]["labels"] = json!({"other": "x"});
        c.put("ConfigMap", live);
        let m2 = vec![cm("a", json!({"k": "2"}))];
        let mut s2 = prepare(&c, &m2, b"", &policy()).await;
        apply(&c, &mut s2, &mut cache).await;
        let live = c.object("ConfigMap", "ns", "a").unwrap();
        assert_eq!(live["data"]["k"], "2");
        assert_eq!(live["metadata"]["labels"]["other"], "x");
        assert_eq!(s2[0].uid, slots[0].uid, "updated in place");
    }

    #[tokio::test]
    async fn bad_manifests_fail_alone_with_clear_messages() {
        let c = FakeCluster::new();
        let mut allow = Allowlist::default();
        allow.kinds.push(drbridge_model::allowlist::KindRule::new(
            "example.com",
            "Widget",
        ));
        allow
            .kinds
            .push(drbridge_model::allowlist::KindRule::new("", "ConfigMap"));
        let p = ApplyPolicy {
            allowlist: allow,
            max_work_bytes: 1 << 20,
        };
        let m = vec![
            b"{oops".to_vec(),
            b(
                json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "namespace": "ns"}}),
            ),
            b(
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "ns"}}),
            ),
            cm("ok", json!({})),
            b(
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "kube-system"}}),
            ),
            b(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "nons"}})),
        ];
        let mut slots = prepare(&c, &m, b"", &p).await;
        apply(&c, &mut slots, &mut ApplyCache::default()).await;
        let errs: Vec<String> = slots
            .iter()
            .map(|s| s.applied.clone().err().unwrap_or_default())
            .collect();
        assert!(errs[0].starts_with("invalid manifest JSON"), "{}", errs[0]);
        assert_eq!(
            errs[1],
            "the server doesn't have a resource type \"Widget\""
        );
        assert_eq!(
            errs[2],
            "kind \"Secret\" of group \"\" is not allowed by the agent's allowlist"
        );
        assert_eq!(errs[3], "");
        assert!(
            errs[4].contains("namespace \"kube-system\" is not allowed"),
            "{}",
            errs[4]
        );
        assert_eq!(
            errs[5],
            "namespaced kind \"ConfigMap\" needs metadata.namespace"
        );
        assert!(c.object("ConfigMap", "ns", "ok").is_some());
        assert_eq!(slots[1].meta.kind, "Widget");
        assert_eq!(slots[1].meta.resource, "");
        assert!(slots[1].target.is_none());
    }

    #[tokio::test]
    async fn cluster_scoped_namespace_is_cleared_and_order_is_ocm() {
        let c = FakeCluster::new();
        let m = vec![
            cm("cfg", json!({})),
            b(
                json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "r", "namespace": "junk"}}),
            ),
            b(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns"}})),
        ];
        let mut slots = prepare(&c, &m, b"", &policy()).await;
        assert_eq!(slots[1].meta.namespace, "");
        apply(&c, &mut slots, &mut ApplyCache::default()).await;
        // Namespace (rank 0) was created first: lowest uid.
        let uid = |k: &str, ns: &str, n: &str| {
            c.object(k, ns, n).unwrap()["metadata"]["uid"]
                .as_str()
                .unwrap()
                .to_string()
        };
        assert_eq!(uid("Namespace", "", "ns"), "uid-1");
        assert_eq!(uid("ClusterRole", "", "r"), "uid-2");
        assert_eq!(uid("ConfigMap", "ns", "cfg"), "uid-3");
    }

    #[tokio::test]
    async fn strategies() {
        let c = FakeCluster::new();
        let configs = br#"[
          {"resourceIdentifier":{"resource":"configmaps","namespace":"ns","name":"create-only"},"updateStrategy":{"type":"CreateOnly"}},
          {"resourceIdentifier":{"resource":"configmaps","namespace":"ns","name":"ro"},"updateStrategy":{"type":"ReadOnly"}},
          {"resourceIdentifier":{"resource":"configmaps","namespace":"ns","name":"ssa"},"updateStrategy":{"type":"ServerSideApply"}}]"#;
        let m = vec![
            cm("create-only", json!({"k": "1"})),
            cm("ro", json!({})),
            cm("ssa", json!({"k": "1"})),
        ];
        let mut slots = prepare(&c, &m, configs, &policy()).await;
        apply(&c, &mut slots, &mut ApplyCache::default()).await;
        assert!(slots.iter().all(|s| s.applied.is_ok()));
        assert!(
            c.object("ConfigMap", "ns", "ro").is_none(),
            "ReadOnly never writes"
        );
        assert!(c.object("ConfigMap", "ns", "ssa").is_some());
        let m2 = vec![
            cm("create-only", json!({"k": "2"})),
            cm("ro", json!({})),
            cm("ssa", json!({"k": "2"})),
        ];
        let mut s2 = prepare(&c, &m2, configs, &policy()).await;
        apply(&c, &mut s2, &mut ApplyCache::default()).await;
        assert_eq!(
            c.object("ConfigMap", "ns", "create-only").unwrap()["data"]["k"],
            "1"
        );
        assert_eq!(
            c.object("ConfigMap", "ns", "ssa").unwrap()["data"]["k"],
            "2"
        );
    }

    #[tokio::test]
    async fn api_errors_and_conflicts() {
        let c = FakeCluster::new();
        c.fail_next_write(
            "ConfigMap",
            ClusterError::Api("admission webhook denied the request".into()),
        );
        let m = vec![cm("a", json!({}))];
        let mut slots = prepare(&c, &m, b"", &policy()).await;
        apply(&c, &mut slots, &mut ApplyCache::default()).await;
        assert_eq!(
            slots[0].applied,
            Err("admission webhook denied the request".into())
        );
        // A conflict on update is retried.
        apply(&c, &mut slots, &mut ApplyCache::default()).await;
        assert!(slots[0].applied.is_ok());
        let m2 = vec![cm("a", json!({"k": "v"}))];
        let mut s2 = prepare(&c, &m2, b"", &policy()).await;
        c.fail_next_write(
            "ConfigMap",
            ClusterError::Conflict("the object has been modified".into()),
        );
        apply(&c, &mut s2, &mut ApplyCache::default()).await;
        assert!(s2[0].applied.is_ok(), "{:?}", s2[0].applied);
        assert_eq!(c.object("ConfigMap", "ns", "a").unwrap()["data"]["k"], "v");
    }
}
