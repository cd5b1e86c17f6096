//! The hub against a real kube-apiserver (drbridge-localenv), with the OCM CRDs of
//! drbridge-api, and a test agent speaking the protocol over real mTLS.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use drbridge_hub::index::Index;
use drbridge_hub::leader::{EPOCH_ANNOTATION, LeaseConfig, epoch_of};
use drbridge_hub::objects::{
    ObjectKey, UNACKNOWLEDGED_SINCE_ANNOTATION, UNREACHABLE_SINCE_ANNOTATION, WORK_FINALIZER,
    cluster_resource, view_resource, work_resource,
};
use drbridge_hub::status::{Charge, Report, StatusWriter, WriteOp, WriterConfig};
use drbridge_hub::{Hub, HubOptions, grpc, metrics::Metrics};
use drbridge_proto::v1 as pb;
use drbridge_proto::v1::dispatch_client::DispatchClient;
use drbridge_tls::{ClusterName, TlsPaths, pki::Ca};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, PostParams};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

const DEADLINE: Duration = Duration::from_secs(30);

/// Polls until `f` returns `Some`, failing the test after [`DEADLINE`].
async fn eventually<T>(what: &str, f: impl AsyncFnMut() -> Option<T>) -> T {
    drbridge_localenv::eventually(what, DEADLINE, f).await
}

struct World {
    _env: drbridge_localenv::Env,
    client: kube::Client,
    hub: Hub,
    addr: SocketAddr,
    dir: tempfile::TempDir,
    ca: Ca,
    ca_path: std::path::PathBuf,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for World {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn install_crds(client: &kube::Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in drbridge_api::crds::hub() {
        api.create(&PostParams::default(), &crd).await.unwrap();
    }
    for crd in drbridge_api::crds::hub() {
        let name = crd.metadata.name.clone().unwrap();
        eventually(&format!("CRD {name} established"), || {
            let api = api.clone();
            let name = name.clone();
            async move {
                let crd = api.get(&name).await.ok()?;
                crd.status?
                    .conditions?
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
                    .then_some(())
            }
        })
        .await;
    }
}

/// A hub API server with the OCM CRDs and the namespace `dr1`.
async fn hub_with_dr1() -> (drbridge_localenv::Env, kube::Client) {
    let env = drbridge_localenv::Env::start_for_test(&["hub"])
        .await
        .unwrap();
    let client = env.client("hub").await.unwrap();
    install_crds(&client).await;
    create_namespace(&client, "dr1").await;
    (env, client)
}

fn dynamic(v: Value) -> DynamicObject {
    serde_json::from_value(v).unwrap()
}

fn works(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &work_resource())
}

fn views(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &view_resource())
}

fn clusters(client: &kube::Client) -> Api<DynamicObject> {
    Api::all_with(client.clone(), &cluster_resource())
}

async fn create_namespace(client: &kube::Client, name: &str) {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
}

async fn create_cluster(client: &kube::Client, name: &str) {
    let mc = dynamic(json!({
        "apiVersion": "cluster.open-cluster-management.io/v1", "kind": "ManagedCluster",
        "metadata": {"name": name, "labels": {"name": name}},
        "spec": {"hubAcceptsClient": true},
    }));
    clusters(client)
        .create(&PostParams::default(), &mc)
        .await
        .unwrap();
}

fn manifest_work(name: &str, ns: &str, data: &str) -> DynamicObject {
    dynamic(json!({
        "apiVersion": "work.open-cluster-management.io/v1", "kind": "ManifestWork",
        "metadata": {"name": name, "namespace": ns, "labels": {"ramendr.openshift.io/created-by-ramen": "true"}},
        "spec": {"workload": {"manifests": [{
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "cm", "namespace": "default", "creationTimestamp": null},
            "data": {"k": data},
        }]}},
    }))
}

fn view(name: &str, ns: &str) -> DynamicObject {
    dynamic(json!({
        "apiVersion": "view.open-cluster-management.io/v1beta1", "kind": "ManagedClusterView",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"scope": {"version": "v1", "kind": "ConfigMap", "name": "cm", "namespace": "default"}},
    }))
}

async fn world(clusters_: &[&str], namespaces: &[&str], opts: HubOptions) -> World {
    world_with_lease(clusters_, namespaces, opts, None).await
}

/// [`world`], with `lease` created in `default` before the hub starts.
async fn world_with_lease(
    clusters_: &[&str],
    namespaces: &[&str],
    opts: HubOptions,
    lease: Option<Lease>,
) -> World {
    let env = drbridge_localenv::Env::start_for_test(&["hub"])
        .await
        .unwrap();
    let client = env.client("hub").await.unwrap();
    install_crds(&client).await;
    if let Some(lease) = lease {
        Api::<Lease>::namespaced(client.clone(), "default")
            .create(&PostParams::default(), &lease)
            .await
            .unwrap();
    }
    for ns in namespaces {
        create_namespace(&client, ns).await;
    }
    for c in clusters_ {
        create_cluster(&client, c).await;
    }
    let hub = Hub::start(client.clone(), opts, Metrics::default());
    let mut ready = hub.ready();
    tokio::time::timeout(DEADLINE, ready.wait_for(|r| *r))
        .await
        .expect("hub ready in time")
        .unwrap();

    let _ = drbridge_tls::rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::generate("drbridge-test-ca").unwrap();
    let (ca_path, _) = ca.to_issued().write(dir.path(), "ca").unwrap();
    let server = ca
        .issue_server(
            &["localhost"],
            &[IpAddr::V4(Ipv4Addr::LOCALHOST)],
            Duration::from_secs(3600),
        )
        .unwrap();
    let (cert, key) = server.write(dir.path(), "hub").unwrap();
    let tls = drbridge_tls::ServerTls::new(TlsPaths::new(cert, key, ca_path.clone())).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = hub.service.clone();
    let server = tokio::spawn(async move {
        drbridge_hub::serve(
            service,
            drbridge_tls::incoming(listener, tls),
            std::future::pending(),
        )
        .await
        .unwrap();
    });
    World {
        _env: env,
        client,
        hub,
        addr,
        dir,
        ca,
        ca_path,
        server,
    }
}

struct Agent {
    tx: mpsc::Sender<pb::AgentMessage>,
    rx: tonic::Streaming<pb::HubMessage>,
}

impl World {
    fn agent_paths(&self, cluster: &str) -> TlsPaths {
        let issued = self
            .ca
            .issue_client(
                &ClusterName::new(cluster).unwrap(),
                Duration::from_secs(3600),
            )
            .unwrap();
        let (cert, key) = issued.write(self.dir.path(), cluster).unwrap();
        TlsPaths::new(cert, key, self.ca_path.clone())
    }

    async fn dial(
        &self,
        cluster: &str,
        known: Vec<pb::WorkVersion>,
    ) -> Result<Agent, tonic::Status> {
        dial(self.addr, &self.agent_paths(cluster), cluster, known).await
    }
}

async fn dial(
    addr: SocketAddr,
    paths: &TlsPaths,
    cluster: &str,
    known: Vec<pb::WorkVersion>,
) -> Result<Agent, tonic::Status> {
    let channel = drbridge_tls::connect_channel(
        &format!("https://127.0.0.1:{}", addr.port()),
        "127.0.0.1",
        paths,
        Default::default(),
    )
    .await
    .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let (tx, rx) = mpsc::channel(16);
    tx.send(pb::AgentMessage {
        body: Some(pb::agent_message::Body::Hello(pb::Hello {
            agent_version: "test".into(),
            known_works: known,
            cluster: Some(pb::ClusterInfo {
                claims: [
                    ("id.k8s.io".to_string(), format!("{cluster}-id")),
                    ("name".to_string(), cluster.to_string()),
                ]
                .into_iter()
                .collect(),
                kubernetes_version: "v1.37.2".into(),
            }),
            max_hub_epoch: 0,
        })),
    })
    .await
    .unwrap();
    let resp = DispatchClient::new(channel)
        .max_decoding_message_size(64 << 20)
        .connect(ReceiverStream::new(rx))
        .await?;
    Ok(Agent {
        tx,
        rx: resp.into_inner(),
    })
}

impl Agent {
    async fn next(&mut self) -> Result<pb::hub_message::Body, tonic::Status> {
        loop {
            let msg = tokio::time::timeout(DEADLINE, self.rx.message())
                .await
                .expect("message in time")?
                .expect("stream open");
            match msg.body.unwrap() {
                pb::hub_message::Body::Heartbeat(_) => continue,
                b => return Ok(b),
            }
        }
    }

    async fn sync(&mut self) -> pb::Sync {
        match self.next().await.unwrap() {
            pb::hub_message::Body::Sync(s) => s,
            other => panic!("expected Sync, got {other:?}"),
        }
    }

    /// Welcome plus the initial resync, merged.
    async fn start(&mut self) -> (pb::Welcome, pb::Sync) {
        let welcome = match self.next().await.unwrap() {
            pb::hub_message::Body::Welcome(w) => w,
            other => panic!("expected Welcome, got {other:?}"),
        };
        let mut all = pb::Sync::default();
        loop {
            let s = self.sync().await;
            all.works.extend(s.works);
            all.views.extend(s.views);
            if s.initial_sync_done {
                return (welcome, all);
            }
        }
    }

    async fn send(&self, body: pb::agent_message::Body) {
        self.tx
            .send(pb::AgentMessage { body: Some(body) })
            .await
            .unwrap();
    }
}

fn cond(ty: &str, status: &str, reason: &str, message: &str, generation: i64) -> pb::Condition {
    pb::Condition {
        r#type: ty.into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time: "2026-11-27T10:00:00Z".into(),
    }
}

fn work_status(name: &str, uid: &str, generation: i64, message: &str) -> pb::agent_message::Body {
    pb::agent_message::Body::WorkStatus(pb::WorkStatus {
        name: name.into(),
        uid: uid.into(),
        generation,
        conditions: vec![
            cond(
                "Applied",
                "True",
                "AppliedManifestWorkComplete",
                message,
                generation,
            ),
            cond(
                "Available",
                "True",
                "ResourcesAvailable",
                "All resources are available",
                generation,
            ),
        ],
        manifests: vec![pb::ManifestStatus {
            meta: Some(pb::ResourceMeta {
                ordinal: 0,
                group: "".into(),
                version: "v1".into(),
                kind: "ConfigMap".into(),
                resource: "configmaps".into(),
                name: "cm".into(),
                namespace: "default".into(),
            }),
            conditions: vec![cond(
                "Applied",
                "True",
                "AppliedManifestComplete",
                "Apply manifest complete",
                0,
            )],
        }],
        observed_time: String::new(),
    })
}

fn conditions(obj: &DynamicObject) -> Vec<Value> {
    obj.data
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn condition(obj: &DynamicObject, ty: &str) -> Option<Value> {
    conditions(obj).into_iter().find(|c| c["type"] == ty)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_work_delivery_status_and_deletion() {
    let w = world(&["dr1"], &["dr1", "dr2"], HubOptions::default()).await;
    let mws = works(&w.client, "dr1");
    mws.create(
        &PostParams::default(),
        &manifest_work("vrg-mw", "dr1", "v1"),
    )
    .await
    .unwrap();

    // The hub puts its finalizer on the work.
    let obj = eventually("finalizer added", || async {
        let o = mws.get("vrg-mw").await.ok()?;
        o.metadata
            .finalizers
            .as_ref()?
            .iter()
            .any(|f| f == WORK_FINALIZER)
            .then_some(o)
    })
    .await;
    let uid = obj.metadata.uid.clone().unwrap();

    // An unregistered cluster (namespace, but no ManagedCluster) is refused.
    let err = w.dial("dr2", vec![]).await.err().expect("refused");
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");

    // The agent of dr1 gets exactly its work.
    let mut agent = w.dial("dr1", vec![]).await.unwrap();
    let (welcome, initial) = agent.start().await;
    assert_eq!(welcome.cluster, "dr1");
    assert_eq!(initial.works.len(), 1);
    let sent = &initial.works[0];
    assert_eq!(
        (sent.name.as_str(), sent.uid.as_str(), sent.generation),
        ("vrg-mw", uid.as_str(), 1)
    );
    let manifest: Value = serde_json::from_slice(&sent.manifests[0]).unwrap();
    assert_eq!(manifest["data"]["k"], "v1");

    // Status from the agent lands in OCM's shape.
    agent
        .send(work_status(
            "vrg-mw",
            &uid,
            1,
            "Apply manifest work complete",
        ))
        .await;
    let obj = eventually("work status written", || async {
        let o = mws.get("vrg-mw").await.ok()?;
        condition(&o, "Available").map(|_| o)
    })
    .await;
    let applied = condition(&obj, "Applied").unwrap();
    assert_eq!(applied["status"], "True");
    assert_eq!(applied["observedGeneration"], 1);
    assert_eq!(
        obj.data["status"]["resourceStatus"]["manifests"][0]["resourceMeta"]["kind"],
        "ConfigMap"
    );
    let managers: Vec<String> = obj
        .metadata
        .managed_fields
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert!(managers.iter().any(|m| m == "drbridge-hub"), "{managers:?}");

    // Ramen updates the whole object (spec only changes): generation 2, status kept.
    let mut current = mws.get("vrg-mw").await.unwrap();
    current.data["spec"]["workload"]["manifests"][0]["data"]["k"] = json!("v2");
    current.data.as_object_mut().unwrap().remove("status");
    let updated = mws
        .replace("vrg-mw", &PostParams::default(), &current)
        .await
        .unwrap();
    assert_eq!(updated.metadata.generation, Some(2));
    assert!(
        condition(&updated, "Applied").is_some(),
        "an Update of the object does not touch status"
    );
    let s = agent.sync().await;
    assert_eq!(s.works[0].generation, 2);

    // A late report for generation 1 is fenced off; generation 2 is written.
    agent.send(work_status("vrg-mw", &uid, 1, "stale")).await;
    agent
        .send(work_status(
            "vrg-mw",
            &uid,
            2,
            "Apply manifest work complete",
        ))
        .await;
    let obj = eventually("generation 2 status", || async {
        let o = mws.get("vrg-mw").await.ok()?;
        (condition(&o, "Applied")?["observedGeneration"] == 2).then_some(o)
    })
    .await;
    assert_ne!(condition(&obj, "Applied").unwrap()["message"], "stale");
    // And a report for another uid never lands.
    agent
        .send(work_status("vrg-mw", "not-the-uid", 3, "alien"))
        .await;

    // Deletion: the agent is told, the object waits for its confirmation.
    mws.delete("vrg-mw", &DeleteParams::default())
        .await
        .unwrap();
    let s = agent.sync().await;
    assert!(s.works[0].deleting);
    assert!(s.works[0].manifests.is_empty());
    let o = mws.get("vrg-mw").await.unwrap();
    assert!(o.metadata.deletion_timestamp.is_some());
    assert_ne!(condition(&o, "Applied").unwrap()["message"], "alien");
    agent
        .send(pb::agent_message::Body::WorkGone(pb::WorkGone {
            name: "vrg-mw".into(),
            uid: uid.clone(),
        }))
        .await;
    eventually("work deleted after WorkGone", || async {
        mws.get_opt("vrg-mw").await.ok()?.is_none().then_some(())
    })
    .await;
    assert!(w.hub.index.read().is_ready());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_presence_and_bad_works() {
    let opts = HubOptions {
        grpc: grpc::GrpcConfig {
            heartbeat: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(3),
            max_sync_bytes: 64 * 1024,
            ..Default::default()
        },
        presence_timeout: Duration::from_secs(2),
        ..Default::default()
    };
    let w = world(&["dr1"], &["dr1"], opts).await;
    let mcvs = views(&w.client, "dr1");
    let mws = works(&w.client, "dr1");
    let mcs = clusters(&w.client);
    mcvs.create(&PostParams::default(), &view("cm-mcv", "dr1"))
        .await
        .unwrap();
    mws.create(&PostParams::default(), &manifest_work("small", "dr1", "x"))
        .await
        .unwrap();
    mws.create(
        &PostParams::default(),
        &manifest_work("big", "dr1", &"x".repeat(100 * 1024)),
    )
    .await
    .unwrap();

    // An over-size work gets a clear condition and no finalizer; the other carries on.
    let big = eventually("rejection condition", || async {
        let o = mws.get("big").await.ok()?;
        condition(&o, "Applied").map(|_| o)
    })
    .await;
    let applied = condition(&big, "Applied").unwrap();
    assert_eq!(applied["status"], "False");
    assert_eq!(applied["reason"], "ManifestWorkTooLarge");
    assert!(applied["message"].as_str().unwrap().contains("limit"));
    eventually("small work finalized", || async {
        let o = mws.get("small").await.ok()?;
        o.metadata.finalizers.filter(|f| !f.is_empty()).map(|_| ())
    })
    .await;
    // Views and works come through separate watches: the initial sync carries what the hub has
    // indexed, so wait for the view too rather than racing its watch.
    eventually("the hub indexes the view", || async {
        w.hub
            .index
            .read()
            .view(&ObjectKey::new("dr1", "cm-mcv"))
            .map(|_| ())
    })
    .await;

    let mut agent = w.dial("dr1", vec![]).await.unwrap();
    let (_, initial) = agent.start().await;
    assert_eq!(initial.views.len(), 1);
    let v = initial.views[0].clone();
    assert_eq!(v.scope.as_ref().unwrap().kind, "ConfigMap");
    let names: Vec<_> = initial.works.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(names, vec!["small"]);

    // Presence: joined, available, claims.
    let mc = eventually("cluster available", || async {
        let o = mcs.get("dr1").await.ok()?;
        (condition(&o, "ManagedClusterConditionAvailable")?["status"] == "True").then_some(o)
    })
    .await;
    assert_eq!(
        condition(&mc, "ManagedClusterJoined").unwrap()["status"],
        "True"
    );
    assert_eq!(
        condition(&mc, "HubAcceptedManagedCluster").unwrap()["status"],
        "True"
    );
    let claims = mc.data["status"]["clusterClaims"].as_array().unwrap();
    assert!(claims.contains(&json!({"name": "id.k8s.io", "value": "dr1-id"})));
    assert!(claims.contains(&json!({"name": "name", "value": "dr1"})));

    // A view result, then a failure that keeps it.
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "cm", "namespace": "default", "resourceVersion": "5"}, "data": {"k": "v"}});
    agent
        .send(pb::agent_message::Body::ViewStatus(pb::ViewStatus {
            name: v.name.clone(),
            uid: v.uid.clone(),
            generation: v.generation,
            outcome: Some(pb::view_status::Outcome::Object(
                serde_json::to_vec(&cm).unwrap(),
            )),
            observed_time: "2026-11-27T10:00:00Z".into(),
        }))
        .await;
    let o = eventually("view result", || async {
        let o = mcvs.get("cm-mcv").await.ok()?;
        o.data.pointer("/status/result").is_some().then_some(o)
    })
    .await;
    assert_eq!(o.data["status"]["result"]["data"]["k"], "v");
    assert_eq!(
        conditions(&o),
        vec![
            json!({"type": "Processing", "status": "True", "lastTransitionTime": "2026-11-27T10:00:00Z",
            "reason": "GetResourceProcessing", "message": "Watching resources successfully"})
        ]
    );
    let msg = "failed to get resource with err: configmaps \"cm\" not found";
    agent
        .send(pb::agent_message::Body::ViewStatus(pb::ViewStatus {
            name: v.name.clone(),
            uid: v.uid.clone(),
            generation: v.generation,
            outcome: Some(pb::view_status::Outcome::Error(pb::ViewError {
                reason: "GetResourceFailed".into(),
                message: msg.into(),
            })),
            observed_time: "2026-11-27T10:00:05Z".into(),
        }))
        .await;
    let o = eventually("view failure", || async {
        let o = mcvs.get("cm-mcv").await.ok()?;
        (condition(&o, "Processing")?["status"] == "False").then_some(o)
    })
    .await;
    assert_eq!(conditions(&o).len(), 1);
    assert_eq!(condition(&o, "Processing").unwrap()["message"], msg);
    assert_eq!(
        o.data["status"]["result"]["data"]["k"], "v",
        "result left as it was"
    );

    // The agent goes away: Unknown, and works and views are marked stale.
    drop(agent);
    eventually("cluster unknown", || async {
        let o = mcs.get("dr1").await.ok()?;
        (condition(&o, "ManagedClusterConditionAvailable")?["status"] == "Unknown").then_some(())
    })
    .await;
    for api in [&mcvs, &mws] {
        let name = if std::ptr::eq(api, &mcvs) {
            "cm-mcv"
        } else {
            "small"
        };
        eventually("unreachable annotation", || async {
            let o = api.get(name).await.ok()?;
            o.metadata
                .annotations?
                .get(UNREACHABLE_SINCE_ANNOTATION)
                .map(|_| ())
        })
        .await;
    }
    // View status stays as it was: no NotFound for an unreachable cluster.
    let o = mcvs.get("cm-mcv").await.unwrap();
    assert_eq!(condition(&o, "Processing").unwrap()["message"], msg);

    // Back: available again, marks removed; the agent's record means no resend.
    let known = vec![pb::WorkVersion {
        name: "small".into(),
        uid: initial.works[0].uid.clone(),
        generation: 1,
        deleting: false,
    }];
    let mut agent = w.dial("dr1", known.clone()).await.unwrap();
    let (_, again) = agent.start().await;
    assert!(again.works.is_empty());
    assert_eq!(again.views.len(), 1);
    eventually("marks removed", || async {
        let o = mcvs.get("cm-mcv").await.ok()?;
        let stale = o
            .metadata
            .annotations
            .unwrap_or_default()
            .contains_key(UNREACHABLE_SINCE_ANNOTATION);
        let mc = mcs.get("dr1").await.ok()?;
        (!stale && condition(&mc, "ManagedClusterConditionAvailable")?["status"] == "True")
            .then_some(())
    })
    .await;

    // A second stream replaces the first.
    let mut second = w.dial("dr1", known).await.unwrap();
    second.start().await;
    let st = loop {
        match agent.rx.message().await {
            Err(s) => break s,
            Ok(Some(_)) => continue,
            Ok(None) => panic!("no status"),
        }
    };
    assert_eq!(st.code(), tonic::Code::Aborted);

    // Deleting the view stops it on the agent.
    mcvs.delete("cm-mcv", &DeleteParams::default())
        .await
        .unwrap();
    let s = second.sync().await;
    assert_eq!(s.removed_views, vec!["cm-mcv".to_string()]);
}

fn free_port() -> u16 {
    drbridge_localenv::ports::free_port().unwrap()
}

async fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.ok()?;
    let code = buf.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, buf))
}

/// The binary's wiring: `run(Args)` with a kubeconfig, TLS files and the admin server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_serves_agents_and_reports_ready() {
    let (env, client) = hub_with_dr1().await;
    create_cluster(&client, "dr1").await;

    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::generate("drbridge-test-ca").unwrap();
    let (ca_path, _) = ca.to_issued().write(dir.path(), "ca").unwrap();
    let (cert, key) = ca
        .issue_server(
            &["localhost"],
            &[IpAddr::V4(Ipv4Addr::LOCALHOST)],
            Duration::from_secs(3600),
        )
        .unwrap()
        .write(dir.path(), "hub")
        .unwrap();
    let (acert, akey) = ca
        .issue_client(&ClusterName::new("dr1").unwrap(), Duration::from_secs(3600))
        .unwrap()
        .write(dir.path(), "dr1")
        .unwrap();
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    // Not the default 0.0.0.0:8444: another hub on this machine may hold it.
    let join: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let kubeconfig = env.kubeconfig("hub").unwrap();
    let args = <drbridge_hub::Args as clap::Parser>::try_parse_from([
        "drbridge-hub".to_string(),
        format!("--listen-addr={listen}"),
        format!("--admin-addr={admin}"),
        format!("--join-addr={join}"),
        format!("--tls-cert={}", cert.display()),
        format!("--tls-key={}", key.display()),
        format!("--tls-ca={}", ca_path.display()),
        format!("--kubeconfig={}", kubeconfig.display()),
        "--hub-id=hub-under-test".to_string(),
    ])
    .unwrap();
    let hub = tokio::spawn(drbridge_hub::run(args));

    eventually("/ready", || async {
        let (code, _) = http_get(admin, "/ready").await?;
        (code == 200).then_some(())
    })
    .await;
    let mut agent = eventually("agent stream", || {
        let paths = TlsPaths::new(acert.clone(), akey.clone(), ca_path.clone());
        async move { dial(listen, &paths, "dr1", vec![]).await.ok() }
    })
    .await;
    let (welcome, _) = agent.start().await;
    assert_eq!(welcome.hub_id, "hub-under-test");
    assert!(
        welcome.epoch > 1_700_000_000_000,
        "epoch is the start time in ms"
    );
    let (_, metrics) = http_get(admin, "/metrics").await.unwrap();
    assert!(
        metrics.contains("drbridge_hub_connected_agents"),
        "{metrics}"
    );

    // A work created while the hub watches is timed from there to its agent's Applied, and
    // the agent's status from its observation to the write.
    let mws = works(&client, "dr1");
    let created = mws
        .create(&PostParams::default(), &manifest_work("timed", "dr1", "v1"))
        .await
        .unwrap();
    let uid = created.metadata.uid.unwrap();
    let sync = agent.sync().await;
    assert_eq!(sync.works[0].name, "timed");
    let mut report = work_status("timed", &uid, 1, "Apply manifest work complete");
    if let pb::agent_message::Body::WorkStatus(w) = &mut report {
        w.observed_time = chrono::Utc::now().to_rfc3339();
    }
    agent.send(report).await;
    eventually("both latencies observed once", || async {
        let (_, m) = http_get(admin, "/metrics").await?;
        (m.contains("drbridge_hub_work_delivery_seconds_count{cluster=\"dr1\"} 1")
            && m.contains("drbridge_hub_status_latency_seconds_count{kind=\"work\"} 1"))
        .then_some(())
    })
    .await;
    assert!(!hub.is_finished());
    hub.abort();
}

fn has_finalizer(o: &DynamicObject) -> bool {
    o.metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|f| f == WORK_FINALIZER))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_serves_no_agent_and_writes_nothing_until_it_leads() {
    // Another replica holds the Lease, for longer than the test.
    let held = Lease {
        metadata: kube::api::ObjectMeta {
            name: Some("drbridge-hub".into()),
            annotations: Some([(EPOCH_ANNOTATION.to_string(), "5000".to_string())].into()),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some("other".into()),
            lease_duration_seconds: Some(3600),
            renew_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
                k8s_openapi::jiff::Timestamp::now(),
            )),
            lease_transitions: Some(4),
            ..Default::default()
        }),
    };
    let opts = HubOptions {
        election: Some(drbridge_hub::LeaderOptions {
            namespace: "default".into(),
            lease: LeaseConfig {
                name: "drbridge-hub".into(),
                identity: "hub-a".into(),
                lease_duration: Duration::from_secs(6),
                renew_deadline: Duration::from_secs(4),
                retry_period: Duration::from_secs(1),
            },
        }),
        ..Default::default()
    };
    let w = world_with_lease(&["dr1"], &["dr1"], opts, Some(held)).await;
    assert!(!w.hub.leadership.is_leader());
    let mws = works(&w.client, "dr1");
    mws.create(&PostParams::default(), &manifest_work("w", "dr1", "v1"))
        .await
        .unwrap();
    eventually("the follower indexes the work", || async {
        w.hub
            .index
            .read()
            .work(&ObjectKey::new("dr1", "w"))
            .map(|_| ())
    })
    .await;
    // It refuses agents, marked so they dial again at once.
    let err = w.dial("dr1", vec![]).await.err().expect("refused");
    assert_eq!(err.code(), tonic::Code::Unavailable);
    assert!(
        err.metadata()
            .get(drbridge_proto::NOT_LEADER_METADATA)
            .is_some()
    );
    // And it has written nothing: no finalizer, no ManagedCluster status.
    assert!(!has_finalizer(&mws.get("w").await.unwrap()));
    let mc = clusters(&w.client).get("dr1").await.unwrap();
    assert!(
        condition(&mc, "HubAcceptedManagedCluster").is_none(),
        "{mc:?}"
    );

    // The other replica releases the Lease: this one takes it with a newer epoch.
    let leases = Api::<Lease>::namespaced(w.client.clone(), "default");
    let mut lease = leases.get("drbridge-hub").await.unwrap();
    lease.spec.as_mut().unwrap().holder_identity = None;
    leases
        .replace("drbridge-hub", &PostParams::default(), &lease)
        .await
        .unwrap();
    let epoch = tokio::time::timeout(DEADLINE, w.hub.leadership.wait_leader())
        .await
        .expect("leads once the Lease is free");
    assert!(epoch > 5000);
    let lease = leases.get("drbridge-hub").await.unwrap();
    assert_eq!(epoch_of(&lease), Some(epoch));
    let spec = lease.spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("hub-a"));
    assert_eq!(spec.lease_transitions, Some(5));
    // What the index implied while it followed is written now; agents are served in the term.
    eventually("finalizer added by the leader", || async {
        has_finalizer(&mws.get("w").await.ok()?).then_some(())
    })
    .await;
    let mut agent = w.dial("dr1", vec![]).await.unwrap();
    let (welcome, initial) = agent.start().await;
    assert_eq!(welcome.epoch, epoch);
    assert_eq!(initial.works.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacknowledged_syncs_mark_the_managed_cluster_until_acknowledged() {
    let opts = HubOptions {
        unacknowledged_threshold: Duration::from_secs(1),
        ..Default::default()
    };
    let w = world(&["dr1"], &["dr1"], opts).await;
    let mws = works(&w.client, "dr1");
    mws.create(&PostParams::default(), &manifest_work("w", "dr1", "v1"))
        .await
        .unwrap();
    eventually("finalizer added", || async {
        has_finalizer(&mws.get("w").await.ok()?).then_some(())
    })
    .await;
    let mut agent = w.dial("dr1", vec![]).await.unwrap();
    match agent.next().await.unwrap() {
        pb::hub_message::Body::Welcome(_) => {}
        other => panic!("expected Welcome, got {other:?}"),
    }
    let mut ids = Vec::new();
    loop {
        let s = agent.sync().await;
        ids.push(s.sync_id);
        if s.initial_sync_done {
            break;
        }
    }
    // Not acknowledged: past the threshold the ManagedCluster says since when.
    let mcs = clusters(&w.client);
    let annotated = |present: bool| {
        let mcs = mcs.clone();
        async move {
            let mc = mcs.get("dr1").await.ok()?;
            let since = mc
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(UNACKNOWLEDGED_SINCE_ANNOTATION).cloned());
            (since.is_some() == present).then_some(since)
        }
    };
    let since = eventually("the unacknowledged annotation", || annotated(true))
        .await
        .unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(&since).is_ok(),
        "{since}"
    );
    for sync_id in ids {
        agent
            .send(pb::agent_message::Body::SyncAck(pb::SyncAck { sync_id }))
            .await;
    }
    eventually("the annotation removed once all is acknowledged", || {
        annotated(false)
    })
    .await;
}

/// The status writer over a real API server, with an index the test feeds by hand instead of
/// a watch, so it decides how far behind the object the index is.
struct HandFed {
    _env: drbridge_localenv::Env,
    works: Api<DynamicObject>,
    index: drbridge_hub::index::SharedIndex,
    metrics: Metrics,
    ops: mpsc::Sender<WriteOp>,
    uids: std::collections::HashMap<String, String>,
}

impl HandFed {
    /// Works `names` in `dr1`, each seen by the index as created; one write at a time, so
    /// the writer's queue is strictly first in, first out.
    async fn start(names: &[&str]) -> Self {
        let (env, client) = hub_with_dr1().await;
        let (intents_tx, intents_rx) = mpsc::channel(64);
        let metrics = Metrics::default();
        let limits = drbridge_hub::desired::Limits {
            max_work_bytes: 1 << 20,
        };
        let index = Index::new(limits, Some(intents_tx), metrics.clone()).shared();
        let (ops, ops_rx) = mpsc::channel(64);
        let cfg = WriterConfig {
            max_in_flight: 1,
            ..WriterConfig::default()
        };
        let writer = StatusWriter::new(client.clone(), index.clone(), metrics.clone(), cfg);
        tokio::spawn(writer.run(ops_rx, intents_rx));
        let mut fed = Self {
            _env: env,
            works: works(&client, "dr1"),
            index,
            metrics,
            ops,
            uids: Default::default(),
        };
        for name in names {
            let w = fed
                .works
                .create(&PostParams::default(), &manifest_work(name, "dr1", "a"))
                .await
                .unwrap();
            fed.uids
                .insert(name.to_string(), w.metadata.uid.clone().unwrap());
            fed.observe(&w);
        }
        fed
    }

    /// The index catches up with `obj`, as its watch would.
    fn observe(&self, obj: &DynamicObject) {
        let w = drbridge_hub::objects::WorkObject::from_dynamic(obj).unwrap();
        self.index.write().apply_work(w);
    }

    async fn observe_now(&self, name: &str) {
        self.observe(&self.works.get(name).await.unwrap());
    }

    async fn report(&self, name: &str, message: &str) {
        let pb::agent_message::Body::WorkStatus(status) =
            work_status(name, &self.uids[name], 1, message)
        else {
            unreachable!("work_status builds a WorkStatus")
        };
        let report = Report::Work {
            cluster: "dr1".into(),
            status,
        };
        self.ops
            .send(WriteOp::Report(report, Charge::none()))
            .await
            .unwrap();
    }

    /// The object once its Applied condition says `message`.
    async fn says(&self, name: &str, message: &str) -> DynamicObject {
        eventually(&format!("{name} says {message:?}"), || async {
            let w = self.works.get(name).await.ok()?;
            (condition(&w, "Applied")?["message"] == message).then_some(w)
        })
        .await
    }

    async fn skipped(&self, n: u64) {
        eventually(&format!("{n} reports skipped as unchanged"), || async {
            (self.metrics.status_unchanged.get() >= n).then_some(())
        })
        .await;
    }
}

/// A reconnecting agent resends every status; one the object already holds is not written
/// again. But the index can be behind a write (the writer's own, or the previous leader's),
/// so a skip judged against it must not lose a status: once the index sees the object's
/// status change, the skipped report is written after all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resent_status_is_not_written_and_a_skip_on_a_stale_index_is_made_good() {
    let fed = HandFed::start(&["w"]).await;
    fed.report("w", "s0").await;
    let s0 = fed.says("w", "s0").await;
    fed.observe(&s0);

    fed.report("w", "s0").await;
    fed.skipped(1).await;
    let unchanged = fed.works.get("w").await.unwrap();
    assert_eq!(
        unchanged.metadata.resource_version, s0.metadata.resource_version,
        "a resent status must not be written"
    );

    // s1 is written, but the index still shows s0; then the agent's status goes back to s0.
    fed.report("w", "s1").await;
    fed.says("w", "s1").await;
    fed.report("w", "s0").await;
    fed.skipped(2).await;
    assert_eq!(
        condition(&fed.works.get("w").await.unwrap(), "Applied").unwrap()["message"],
        "s1",
        "judged against the stale index, the report was skipped"
    );
    // The index catches up: the skipped report is planned again and written.
    fed.observe_now("w").await;
    fed.says("w", "s0").await;
}

/// A skipped report is only ever made good while it is the newest: a newer report of the same
/// object replaces it, and a later status change must not bring the older one back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skipped_report_never_overwrites_a_newer_one() {
    let fed = HandFed::start(&["w", "marker"]).await;
    for name in ["w", "marker"] {
        fed.report(name, "s0").await;
        let s0 = fed.says(name, "s0").await;
        fed.observe(&s0);
    }
    // Both skip s0 against an index that has not seen s1.
    for name in ["w", "marker"] {
        fed.report(name, "s1").await;
        fed.says(name, "s1").await;
    }
    fed.report("w", "s0").await;
    fed.report("marker", "s0").await;
    fed.skipped(2).await;
    // w's newer report s2 is written; its skipped s0 is moot.
    fed.report("w", "s2").await;
    fed.says("w", "s2").await;
    // The index sees w change, then marker. One write at a time, first in first out: once
    // marker's skipped report is made good, whatever w's recheck did is done.
    fed.observe_now("w").await;
    fed.observe_now("marker").await;
    fed.says("marker", "s0").await;
    assert_eq!(
        condition(&fed.works.get("w").await.unwrap(), "Applied").unwrap()["message"],
        "s2",
        "the skipped s0 must not overwrite the newer s2"
    );
}
