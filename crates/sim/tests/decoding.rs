//! Property tests of what arrives from outside: protobuf messages off the wire, manifests
//! inside works, ManifestWork specs on the hub. Arbitrary or truncated input never panics,
//! fails with an error that says what is wrong, and applies nothing.

use std::sync::Arc;
use std::time::Duration;

use drbridge_agent::testing::FakeCluster;
use drbridge_agent::{Agent, MemoryStore, WorkConfig};
use drbridge_hub::objects::WorkSpec;
use drbridge_model::manifest::{ManifestError, parse_manifest};
use drbridge_proto::v1 as pb;
use proptest::prelude::*;
use prost::Message;
use serde_json::{Value, json};

fn manifest(name: &str, data: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "app"},
        "data": {"k": data},
    }))
    .unwrap()
}

fn sync_message() -> impl Strategy<Value = pb::HubMessage> {
    let work = (
        "[a-z]{1,8}",
        "[a-z0-9]{1,8}",
        1i64..100,
        any::<bool>(),
        "[ -~]{0,40}",
    )
        .prop_map(|(name, uid, generation, deleting, data)| pb::Work {
            manifests: vec![manifest(&name, &data)],
            name,
            uid,
            generation,
            deleting,
            ..Default::default()
        });
    (
        any::<u64>(),
        prop::collection::vec(work, 1..4),
        any::<bool>(),
    )
        .prop_map(|(sync_id, works, initial_sync_done)| pb::HubMessage {
            body: Some(pb::hub_message::Body::Sync(pb::Sync {
                sync_id,
                works,
                initial_sync_done,
                ..Default::default()
            })),
        })
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_a_decoder(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Err(e) = pb::HubMessage::decode(bytes.as_slice()) {
            prop_assert!(!e.to_string().is_empty());
        }
        if let Err(e) = pb::AgentMessage::decode(bytes.as_slice()) {
            prop_assert!(!e.to_string().is_empty());
        }
        // Whatever decodes encodes again (prost keeps no unknown fields, so not byte-equal).
        if let Ok(m) = pb::HubMessage::decode(bytes.as_slice()) {
            prop_assert_eq!(pb::HubMessage::decode(m.encode_to_vec().as_slice()).unwrap(), m);
        }
    }

    #[test]
    fn a_truncated_message_is_an_error(msg in sync_message(), cut in any::<prop::sample::Index>()) {
        let bytes = msg.encode_to_vec();
        prop_assert_eq!(pb::HubMessage::decode(bytes.as_slice()).unwrap(), msg);
        // The body is one length-delimited field: every cut inside it is detected.
        let at = 1 + cut.index(bytes.len() - 1);
        let err = pb::HubMessage::decode(&bytes[..at]).unwrap_err();
        prop_assert!(err.to_string().contains("failed to decode"), "{err}");
    }

    #[test]
    fn arbitrary_manifest_bytes_are_an_invalid_manifest(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        if let Err(e) = parse_manifest(0, &bytes) {
            prop_assert!(!e.error.to_string().is_empty());
        }
    }

    #[test]
    fn a_truncated_manifest_is_invalid_json(name in "[a-z]{1,12}", data in "[ -~]{0,40}", cut in any::<prop::sample::Index>()) {
        let bytes = manifest(&name, &data);
        prop_assert!(parse_manifest(0, &bytes).is_ok());
        let at = cut.index(bytes.len());
        let err = parse_manifest(0, &bytes[..at]).unwrap_err();
        prop_assert!(matches!(err.error, ManifestError::InvalidJson(_)), "{:?}", err.error);
    }

    #[test]
    fn any_spec_decodes_or_names_what_is_wrong(spec in json_value()) {
        match WorkSpec::from_json(Some(&spec)) {
            Ok(s) => {
                // Only a list of objects with apiVersion and kind is dispatchable.
                for m in &s.manifests {
                    let v: Value = serde_json::from_slice(m).unwrap();
                    prop_assert!(v["apiVersion"].is_string() && v["kind"].is_string());
                }
            }
            Err(e) => prop_assert!(e.starts_with("spec"), "{e}"),
        }
    }
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i32>().prop_map(Value::from),
        prop::sample::select(vec!["v1", "ConfigMap", "Orphan", "x"]).prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop::sample::select(vec![
                    "workload",
                    "manifests",
                    "apiVersion",
                    "kind",
                    "metadata",
                    "name",
                    "deleteOption",
                    "propagationPolicy",
                    "manifestConfigs",
                    "selectivelyOrphans",
                    "orphaningRules",
                ])
                .prop_map(str::to_string),
                inner,
                0..4,
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// The real agent, given a work whose manifests are cut short: it records the work, writes
/// nothing to the cluster, and reports why.
async fn truncated_work_applies_nothing(cut: usize) {
    let cluster = FakeCluster::new();
    cluster.put(
        "Namespace",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kube-system"}}),
    );
    let agent = Agent::start(
        Arc::new(cluster.clone()),
        Arc::new(MemoryStore::default()),
        "c1",
        WorkConfig {
            reapply: None,
            ..WorkConfig::default()
        },
        Default::default(),
    )
    .await
    .unwrap();
    let before = cluster.names();
    let whole = manifest("cm", "v");
    let work = pb::Work {
        name: "w".into(),
        uid: "u".into(),
        generation: 1,
        manifests: vec![whole[..cut.min(whole.len() - 1)].to_vec()],
        ..Default::default()
    };
    agent.works().offer(work).await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            if let Some(s) = agent.outbox().work("w") {
                return s;
            }
            agent.outbox().changed().await;
        }
    })
    .await
    .expect("a status in (virtual) time");
    assert_eq!(cluster.names(), before, "nothing was written");
    let applied = status
        .conditions
        .iter()
        .find(|c| c.r#type == "Applied")
        .unwrap();
    assert_eq!(applied.status, "False");
    let m = &status.manifests[0].conditions;
    assert!(
        m.iter()
            .any(|c| c.status == "False" && !c.message.is_empty()),
        "{m:?}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn the_agent_applies_nothing_of_a_truncated_manifest(cut in 0usize..200) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(truncated_work_applies_nothing(cut));
    }
}
