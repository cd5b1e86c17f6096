//! The first invariant, attacked: nothing on the managed cluster is deleted unless a work is
//! deleted or a newer generation of it no longer names the object. Not on a discovery
//! timeout, a transport error, an allowlist narrowed before a restart, unparsable
//! `manifestConfigs`, a lowered `--max-work-bytes`, or any mix of them with restarts and
//! re-sends (the property test at the end).

mod common;

use common::*;
use drbridge_agent::cluster::ClusterError;
use drbridge_agent::pb;
use drbridge_agent::testing::FakeCluster;
use drbridge_agent::{MemoryStore, WorkConfig};
use drbridge_model::Allowlist;
use serde_json::json;

type H = Harness<FakeCluster, MemoryStore>;

const RAMEN: &str = "ramendr.openshift.io";

fn vrg(name: &str) -> Vec<u8> {
    b(
        json!({"apiVersion": "ramendr.openshift.io/v1alpha1", "kind": "VolumeReplicationGroup",
        "metadata": {"name": name, "namespace": "ns"}, "spec": {"replicationState": "primary"}}),
    )
}

async fn start_with(cluster: &FakeCluster, store: &MemoryStore, c: WorkConfig) -> H {
    start_agent(cluster, store, c, 1).await
}

/// Applies `w` and waits until every manifest is available.
async fn applied(h: &mut H, w: pb::Work) {
    let name = w.name.clone();
    h.send(vec![w]).await;
    h.status(&name, all_available).await;
}

/// The status of generation `generation` of `w` once manifest `ordinal` failed to apply;
/// returns that manifest's Applied message.
async fn failed(h: &mut H, w: &str, generation: i64, ordinal: usize) -> String {
    let s = h
        .status(w, |s| {
            s.generation == generation
                && s.manifests.get(ordinal).is_some_and(|m| {
                    m.conditions
                        .iter()
                        .any(|c| c.r#type == "Applied" && c.status == "False")
                })
        })
        .await;
    cond(&s.manifests[ordinal].conditions, "Applied")
        .message
        .clone()
}

/// The objects of the first apply are all still there, recorded, and nothing was deleted.
fn nothing_deleted(cluster: &FakeCluster, store: &MemoryStore, what: &str) {
    assert_eq!(cluster.delete_calls(), 0, "{what}: a delete was attempted");
    assert!(
        cluster
            .object("VolumeReplicationGroup", "ns", "app")
            .is_some(),
        "{what}: the VRG is gone"
    );
    assert!(
        cluster.object("ConfigMap", "ns", "a").is_some(),
        "{what}: the ConfigMap is gone"
    );
    let rec = &store.snapshot()["w"];
    let mut names: Vec<(&str, &str)> = rec
        .resources
        .iter()
        .map(|r| (r.kind.as_str(), r.name.as_str()))
        .collect();
    names.sort();
    assert_eq!(
        names,
        [("ConfigMap", "a"), ("VolumeReplicationGroup", "app")],
        "{what}: the record lost an object"
    );
}

/// A cluster and store where work `w` generation 3 applied a VRG and a ConfigMap.
async fn applied_vrg_and_cm() -> (FakeCluster, MemoryStore) {
    let (cluster, store) = (fake_cluster(), MemoryStore::default());
    let mut h = start_with(&cluster, &store, cfg()).await;
    applied(&mut h, vrg_and_cm(3)).await;
    h.stop().await;
    (cluster, store)
}

/// The scenario of issue 17: the agent restarts during an API-server blip, reports
/// generation 0 in Hello, the hub resends every work and discovery of Ramen's group fails.
#[tokio::test]
async fn discovery_failure_on_resend_after_restart_deletes_nothing() {
    for err in [
        FakeCluster::timeout(),
        ClusterError::Transport("error trying to connect: connection refused".into()),
        ClusterError::Api("the server is currently unable to handle the request".into()),
    ] {
        let (cluster, store) = applied_vrg_and_cm().await;
        cluster.fail_discovery(RAMEN, Some(err.clone()));
        let mut h = start_with(&cluster, &store, cfg()).await;
        h.send(vec![vrg_and_cm(3)]).await;
        assert_eq!(
            failed(&mut h, "w", 3, 0).await,
            format!("Failed to apply manifest: {err}")
        );
        nothing_deleted(&cluster, &store, &err.to_string());
        // A newer generation that still names the VRG keeps it while discovery fails.
        let newer = work("w", "u", 4, vec![vrg("app"), cm("a", json!({"k": "v"}))]);
        h.send(vec![newer.clone()]).await;
        failed(&mut h, "w", 4, 0).await;
        nothing_deleted(&cluster, &store, "newer generation during the blip");
        // The blip ends: everything is applied again.
        cluster.fail_discovery(RAMEN, None);
        h.send(vec![newer.clone()]).await;
        h.status("w", all_available).await;
        nothing_deleted(&cluster, &store, "after the blip");
        h.stop().await;
    }
}

/// After the first apply, an agent restarted with `c` is sent `w`: returns its session and the
/// message of manifest `ordinal`, which failed to apply.
async fn resent_after_restart(c: WorkConfig, w: pb::Work, ordinal: usize) -> (H, String) {
    let (cluster, store) = applied_vrg_and_cm().await;
    let generation = w.generation;
    let mut h = start_with(&cluster, &store, c).await;
    h.send(vec![w]).await;
    let m = failed(&mut h, "w", generation, ordinal).await;
    (h, m)
}

fn vrg_and_cm(generation: i64) -> pb::Work {
    work("w", "u", generation, vec![vrg("app"), cm("a", json!({}))])
}

#[tokio::test]
async fn allowlist_narrowed_before_a_restart_deletes_nothing() {
    let mut narrow = cfg();
    narrow.policy.allowlist = Allowlist {
        kinds: vec![drbridge_model::allowlist::KindRule::new("", "ConfigMap")],
        ..Allowlist::allow_all()
    };
    let (h, m) = resent_after_restart(narrow, vrg_and_cm(3), 0).await;
    assert!(m.contains("not allowed by the agent's allowlist"), "{m}");
    nothing_deleted(&h.cluster, &h.store, "narrowed allowlist");
    h.stop().await;
}

#[tokio::test]
async fn unparsable_manifest_configs_delete_nothing() {
    let mut w = vrg_and_cm(4);
    w.manifest_configs = b"{not json".to_vec();
    let (h, m) = resent_after_restart(cfg(), w, 1).await;
    assert!(m.contains("invalid manifestConfigs"), "{m}");
    nothing_deleted(&h.cluster, &h.store, "unparsable manifestConfigs");
    h.stop().await;
}

#[tokio::test]
async fn lowered_max_work_bytes_deletes_nothing() {
    let mut small = cfg();
    small.policy.max_work_bytes = 64;
    let (h, m) = resent_after_restart(small, vrg_and_cm(3), 0).await;
    assert!(m.contains("over the agent limit of 64 bytes"), "{m}");
    nothing_deleted(&h.cluster, &h.store, "lowered max-work-bytes");
    h.stop().await;
}

/// A newer generation with an unreadable manifest (it may name anything) deletes nothing.
#[tokio::test]
async fn unreadable_manifest_in_a_newer_generation_deletes_nothing() {
    let w = work("w", "u", 4, vec![b"{oops".to_vec()]);
    let (h, _) = resent_after_restart(cfg(), w, 0).await;
    nothing_deleted(&h.cluster, &h.store, "unreadable manifest");
    h.stop().await;
}

/// A read that times out during the apply (the object's state is unknown) deletes nothing.
#[tokio::test]
async fn read_timeouts_during_apply_delete_nothing() {
    let (cluster, store) = applied_vrg_and_cm().await;
    cluster.fail_reads("VolumeReplicationGroup", Some(FakeCluster::timeout()));
    cluster.fail_reads("ConfigMap", Some(FakeCluster::timeout()));
    let mut h = start_with(&cluster, &store, cfg()).await;
    h.send(vec![vrg_and_cm(3)]).await;
    failed(&mut h, "w", 3, 0).await;
    nothing_deleted(&cluster, &store, "read timeouts");
    h.stop().await;
}

/// The rule still deletes what a newer generation drops, even while another manifest of that
/// generation cannot be resolved.
#[tokio::test]
async fn a_dropped_object_is_deleted_while_a_named_one_fails() {
    let (cluster, store) = applied_vrg_and_cm().await;
    cluster.fail_discovery(RAMEN, Some(FakeCluster::timeout()));
    let mut h = start_with(&cluster, &store, cfg()).await;
    h.send(vec![work("w", "u", 4, vec![vrg("app")])]).await;
    failed(&mut h, "w", 4, 0).await;
    assert!(cluster.object("ConfigMap", "ns", "a").is_none(), "dropped");
    assert!(
        cluster
            .object("VolumeReplicationGroup", "ns", "app")
            .is_some()
    );
    let rec = &store.snapshot()["w"];
    assert_eq!(rec.resources.len(), 1);
    assert_eq!(rec.resources[0].kind, "VolumeReplicationGroup");
    h.stop().await;
}

fn configs(rules: &[(&str, &str, &str, &str)]) -> Vec<u8> {
    let v: Vec<serde_json::Value> = rules
        .iter()
        .map(|(resource, ns, name, strategy)| {
            json!({"resourceIdentifier": {"resource": resource, "namespace": ns, "name": name},
                   "updateStrategy": {"type": strategy}})
        })
        .collect();
    serde_json::to_vec(&v).unwrap()
}

/// OCM deletes only what a work owns: a ReadOnly manifest never owns its object, a
/// CreateOnly manifest only an object it created.
#[tokio::test]
async fn read_only_and_create_only_do_not_delete_what_they_did_not_create() {
    let (cluster, store) = (fake_cluster(), MemoryStore::default());
    cluster.put(
        "Namespace",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "app"}}),
    );
    cluster.put(
        "ConfigMap",
        json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "pre", "namespace": "ns"}, "data": {"owner": "someone else"}}),
    );
    let mut h = start_with(&cluster, &store, cfg()).await;
    let ns = b(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "app"}}));
    let mut w = work(
        "w",
        "u",
        1,
        vec![ns.clone(), cm("pre", json!({})), cm("new", json!({}))],
    );
    w.manifest_configs = configs(&[
        ("namespaces", "", "app", "ReadOnly"),
        ("configmaps", "ns", "*", "CreateOnly"),
    ]);
    applied(&mut h, w.clone()).await;
    assert_eq!(
        cluster.object("ConfigMap", "ns", "pre").unwrap()["data"]["owner"],
        "someone else",
        "CreateOnly does not update"
    );
    let rec: Vec<String> = store.snapshot()["w"]
        .resources
        .iter()
        .map(|r| r.name.clone())
        .collect();
    assert_eq!(rec, ["new"], "the work owns only what it created");
    // A re-send after a restart keeps it that way.
    h.stop().await;
    let mut h = start_with(&cluster, &store, cfg()).await;
    applied(&mut h, w.clone()).await;
    assert_eq!(store.snapshot()["w"].resources.len(), 1);
    // A newer generation that drops the ReadOnly manifest deletes nothing of it.
    let mut w2 = work(
        "w",
        "u",
        2,
        vec![cm("pre", json!({})), cm("new", json!({}))],
    );
    w2.manifest_configs = w.manifest_configs.clone();
    applied(&mut h, w2).await;
    assert!(cluster.object("Namespace", "", "app").is_some());
    // Deleting the work deletes only what it created.
    h.send(vec![deleting(
        "w",
        "u",
        2,
        pb::delete_option::Policy::Foreground,
    )])
    .await;
    h.gone("w").await;
    assert!(
        cluster.object("ConfigMap", "ns", "new").is_none(),
        "created: deleted"
    );
    assert!(
        cluster.object("ConfigMap", "ns", "pre").is_some(),
        "pre-existing: kept"
    );
    assert!(
        cluster.object("Namespace", "", "app").is_some(),
        "observed: kept"
    );
    assert_eq!(cluster.deletes("Namespace"), 0);
    h.stop().await;
}

/// A work whose ReadOnly manifest observes Namespace `app` (issue 17, item 2), deleted.
#[tokio::test]
async fn read_only_namespace_survives_the_work() {
    let (cluster, store) = (fake_cluster(), MemoryStore::default());
    cluster.put(
        "Namespace",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "app"}}),
    );
    let mut h = start_with(&cluster, &store, cfg()).await;
    let mut w = work(
        "w",
        "u",
        1,
        vec![b(
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "app"}}),
        )],
    );
    w.manifest_configs = configs(&[("namespaces", "", "app", "ReadOnly")]);
    applied(&mut h, w).await;
    h.send(vec![deleting(
        "w",
        "u",
        1,
        pb::delete_option::Policy::Foreground,
    )])
    .await;
    h.gone("w").await;
    assert!(cluster.object("Namespace", "", "app").is_some());
    assert_eq!(cluster.delete_calls(), 0);
    h.stop().await;
}

/// The highest hub epoch survives a restart on its own: an agent that holds no work still
/// refuses a hub older than one it accepted (issue 17, item 3).
#[tokio::test]
async fn a_restart_with_no_works_still_refuses_an_old_hub() {
    let (cluster, store) = (fake_cluster(), MemoryStore::default());
    let mut h = start_agent(&cluster, &store, cfg(), 10).await;
    h.send(vec![]).await;
    assert_eq!(h.agent.works().max_epoch(), 10);
    h.stop().await;
    assert!(store.snapshot().is_empty(), "no work records");

    let h = start_agent(&cluster, &store, cfg(), 5).await;
    let Some(pb::agent_message::Body::Hello(hello)) = h.agent.hello().body else {
        panic!()
    };
    assert_eq!(hello.max_hub_epoch, 10);
    let out = h.task.await.unwrap();
    assert_eq!(
        out.end,
        drbridge_agent::session::SessionEnd::StaleHub {
            offered: 5,
            accepted: 10
        }
    );
}

mod property {
    //! Any sequence of transient failures, restarts and re-sends deletes nothing that the
    //! newest generation of its work still names.

    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    const WORKS: usize = 2;
    /// Per work: one VRG (Ramen's group, discovered on its own) and three ConfigMaps.
    const OBJECTS: usize = 4;

    #[derive(Clone, Debug)]
    enum Op {
        /// A newer generation naming the objects whose flag is set.
        Send {
            work: usize,
            names: [bool; OBJECTS],
            bad_configs: bool,
            unreadable: bool,
        },
        /// The newest generation again (a resync).
        Resend { work: usize },
        /// The agent restarts; the hub resends every work. `narrow` starts it with an
        /// allowlist without VRGs, `small` with a tiny --max-work-bytes.
        Restart { narrow: bool, small: bool },
        /// Discovery of a group fails (timeout) or recovers.
        Discovery { ramen: bool, failing: bool },
        /// Reads of ConfigMaps time out, or recover.
        Reads { failing: bool },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0..WORKS, any::<[bool; OBJECTS]>(), prop::bool::weighted(0.15), prop::bool::weighted(0.15))
                .prop_map(|(work, names, bad_configs, unreadable)| Op::Send { work, names, bad_configs, unreadable }),
            2 => (0..WORKS).prop_map(|work| Op::Resend { work }),
            2 => (any::<bool>(), prop::bool::weighted(0.3)).prop_map(|(narrow, small)| Op::Restart { narrow, small }),
            3 => (any::<bool>(), any::<bool>()).prop_map(|(ramen, failing)| Op::Discovery { ramen, failing }),
            1 => any::<bool>().prop_map(|failing| Op::Reads { failing }),
        ]
    }

    /// (kind, name) of object `j` of work `w`.
    fn object(w: usize, j: usize) -> (&'static str, String) {
        if j == 0 {
            ("VolumeReplicationGroup", format!("w{w}-v"))
        } else {
            ("ConfigMap", format!("w{w}-c{j}"))
        }
    }

    #[derive(Clone, Debug, Default)]
    struct Latest {
        generation: i64,
        names: [bool; OBJECTS],
        work: Option<pb::Work>,
    }

    fn build(w: usize, l: &Latest, bad_configs: bool, unreadable: bool) -> pb::Work {
        let mut manifests: Vec<Vec<u8>> = (0..OBJECTS)
            .filter(|j| l.names[*j])
            .map(|j| match object(w, j) {
                ("ConfigMap", name) => cm(&name, json!({"g": l.generation.to_string()})),
                (_, name) => vrg(&name),
            })
            .collect();
        if unreadable {
            manifests.push(b"{oops".to_vec());
        }
        let mut out = work(&format!("w{w}"), &format!("u{w}"), l.generation, manifests);
        if bad_configs {
            out.manifest_configs = b"[{".to_vec();
        }
        out
    }

    async fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
        let (cluster, store) = (fake_cluster(), MemoryStore::default());
        let mut latest: Vec<Latest> = vec![Latest::default(); WORKS];
        // Uid of each named object when it was first seen; it must never change (a delete
        // and re-create) nor disappear while the newest generation names the object.
        let mut seen: BTreeMap<(usize, usize), String> = BTreeMap::new();
        let mut h = start_with(&cluster, &store, cfg()).await;
        for op in ops {
            let mut sends = Vec::new();
            match op {
                Op::Send {
                    work,
                    names,
                    bad_configs,
                    unreadable,
                } => {
                    let l = &mut latest[work];
                    l.generation += 1;
                    l.names = names;
                    let w = build(work, l, bad_configs, unreadable);
                    l.work = Some(w.clone());
                    sends.push(w);
                }
                Op::Resend { work } => sends.extend(latest[work].work.clone()),
                Op::Restart { narrow, small } => {
                    h.stop().await;
                    let mut c = cfg();
                    if narrow {
                        c.policy.allowlist = Allowlist {
                            kinds: vec![drbridge_model::allowlist::KindRule::new("", "ConfigMap")],
                            ..Allowlist::allow_all()
                        };
                    }
                    if small {
                        c.policy.max_work_bytes = 64;
                    }
                    h = start_with(&cluster, &store, c).await;
                    sends.extend(latest.iter().filter_map(|l| l.work.clone()));
                }
                Op::Discovery { ramen, failing } => {
                    let group = if ramen { RAMEN } else { "" };
                    cluster.fail_discovery(group, failing.then(FakeCluster::timeout));
                }
                Op::Reads { failing } => {
                    cluster.fail_reads("ConfigMap", failing.then(FakeCluster::timeout));
                }
            }
            if !sends.is_empty() {
                h.send(sends).await;
            }
            for (w, l) in latest.iter().enumerate() {
                for j in 0..OBJECTS {
                    let (kind, name) = object(w, j);
                    if !l.names[j] {
                        seen.remove(&(w, j));
                        continue;
                    }
                    let live = cluster
                        .object(kind, "ns", &name)
                        .map(|o| o["metadata"]["uid"].as_str().unwrap_or("").to_string());
                    match (seen.get(&(w, j)), live) {
                        (Some(uid), Some(now)) => prop_assert_eq!(
                            uid,
                            &now,
                            "{} {} was deleted and re-created while named",
                            kind,
                            name
                        ),
                        (Some(_), None) => {
                            prop_assert!(
                                false,
                                "{} {} was deleted while generation {} of w{} names it",
                                kind,
                                name,
                                l.generation,
                                w
                            )
                        }
                        (None, Some(now)) => {
                            seen.insert((w, j), now);
                        }
                        (None, None) => {}
                    }
                }
            }
        }
        h.stop().await;
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]
        #[test]
        fn transient_failures_restarts_and_resends_delete_nothing_still_named(
            ops in prop::collection::vec(op(), 1..16)
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(run(ops))?;
        }
    }
}
