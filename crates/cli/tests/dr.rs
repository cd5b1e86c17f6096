//! `drbridge dr` as a user runs it, against real control planes: a hub and two managed
//! clusters with drbridge's hub and agents between them, Ramen's CRDs installed (generated
//! from drbridge-dr's types, checked against Ramen's own), and **the test playing Ramen**:
//! Ramen's operators cannot be built here, so the test writes the status, ManifestWorks,
//! views and PlacementDecisions Ramen would write, at the moments Ramen would.
//!
//! Set DRBRIDGE_DR_TRANSCRIPT=<file> to record every command and its output (the session in
//! docs/dr-operations.md comes from such a run).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use drbridge_api::cluster::{ManagedCluster, PlacementDecision};
use drbridge_api::view::ManagedClusterView;
use drbridge_dr::config::S3StoreProfile;
use drbridge_dr::types::{DRCluster, DRPlacementControl, DRPolicy, VolumeReplicationGroup};
use drbridge_dr::view::{VrgEvidence, vrg_from_view};
use drbridge_integration_tests::bridge::{Bridge, BridgeOptions};
use drbridge_integration_tests::works::{create_mw, create_ns, mcv_api, update_mw_manifests};
use drbridge_integration_tests::{eventually, init_logging, install_crds, repo_root};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(30);
const OPS: &str = "ramen-ops";
const APP: &str = "busybox";

/// The CLI under test, run as a process with the hub's kubeconfig in KUBECONFIG.
struct Cli {
    kubeconfig: PathBuf,
    transcript: Option<PathBuf>,
}

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Cli {
    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_drbridge"));
        c.arg("dr").args(args);
        c.env("KUBECONFIG", &self.kubeconfig)
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("DRBRIDGE_RAMEN_OPS_NAMESPACE")
            .env_remove("DRBRIDGE_RAMEN_NAMESPACE")
            // Errors as users see them, without anyhow's backtraces.
            .env_remove("RUST_BACKTRACE")
            .env_remove("RUST_LIB_BACKTRACE")
            // Never a terminal: confirmations need --yes.
            .stdin(Stdio::null())
            .kill_on_drop(true);
        c
    }

    fn record(&self, args: &[&str], out: &str) {
        let Some(path) = &self.transcript else { return };
        let shown: Vec<String> = args
            .iter()
            .map(|a| {
                if a.contains(' ') || a.contains('(') {
                    format!("'{a}'")
                } else if a.ends_with(".kubeconfig") {
                    // NAME=/tmp/drbridge-env-xyz/NAME.kubeconfig -> NAME=NAME.kubeconfig
                    let (prefix, path) = a.split_once('=').map_or(("", *a), |(k, v)| (k, v));
                    let file = Path::new(path).file_name().unwrap().to_string_lossy();
                    if prefix.is_empty() {
                        file.into_owned()
                    } else {
                        format!("{prefix}={file}")
                    }
                } else {
                    a.to_string()
                }
            })
            .collect();
        let mut text = std::fs::read_to_string(path).unwrap_or_default();
        text.push_str(&format!("$ drbridge dr {}\n{out}\n", shown.join(" ")));
        std::fs::write(path, text).unwrap();
    }

    async fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Out {
        let mut c = self.command(args);
        for (k, v) in env {
            c.env(k, v);
        }
        let o = c.output().await.expect("drbridge runs");
        let out = Out {
            ok: o.status.success(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        };
        self.record(args, &format!("{}{}", out.stdout, out.stderr));
        out
    }

    async fn run(&self, args: &[&str]) -> Out {
        self.run_env(args, &[]).await
    }

    /// Runs and expects success; returns stdout.
    async fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args).await;
        assert!(
            o.ok,
            "drbridge dr {args:?} failed:\n{}\n{}",
            o.stdout, o.stderr
        );
        o.stdout
    }

    /// Runs and expects failure; returns stderr.
    async fn fails(&self, args: &[&str]) -> String {
        let o = self.run(args).await;
        assert!(!o.ok, "drbridge dr {args:?} succeeded:\n{}", o.stdout);
        o.stderr
    }

    /// Starts a long-running command; its stdout and stderr lines arrive on the receiver.
    fn spawn(&self, args: &[&str]) -> Running {
        let mut c = self.command(args);
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = c.spawn().expect("drbridge starts");
        let (tx, rx) = mpsc::unbounded_channel();
        for (stream, tag) in [
            (
                Box::new(child.stdout.take().unwrap())
                    as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
                "out",
            ),
            (Box::new(child.stderr.take().unwrap()), "err"),
        ] {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stream).lines();
                while let Ok(Some(l)) = lines.next_line().await {
                    let _ = tx.send((tag, l));
                }
            });
        }
        Running {
            child,
            rx,
            stdout: String::new(),
            stderr: String::new(),
            args: args.iter().map(|s| s.to_string()).collect(),
        }
    }
}

struct Running {
    child: tokio::process::Child,
    rx: mpsc::UnboundedReceiver<(&'static str, String)>,
    stdout: String,
    stderr: String,
    args: Vec<String>,
}

impl Running {
    /// Waits for an output line (stdout or stderr) containing `needle`.
    async fn expect(&mut self, needle: &str) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some((tag, line))) => {
                    let buf = if tag == "out" {
                        &mut self.stdout
                    } else {
                        &mut self.stderr
                    };
                    buf.push_str(&line);
                    buf.push('\n');
                    if line.contains(needle) {
                        return line;
                    }
                }
                Ok(None) => panic!(
                    "{:?} ended before printing {needle:?}:\n{}\n{}",
                    self.args, self.stdout, self.stderr
                ),
                Err(_) => panic!(
                    "{:?} did not print {needle:?} within {WAIT:?}:\n{}\n{}",
                    self.args, self.stdout, self.stderr
                ),
            }
        }
    }

    /// Records what the (still running) process printed so far in the transcript.
    fn record_so_far(&self, cli: &Cli) {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        cli.record(
            &args,
            &format!("{}{}(interrupted)\n", self.stdout, self.stderr),
        );
    }

    /// Waits for the process to exit; returns success and the rest of its output.
    async fn finish(mut self, cli: &Cli) -> Out {
        let status = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{:?} did not exit:\n{}\n{}",
                    self.args, self.stdout, self.stderr
                )
            })
            .unwrap();
        while let Some((tag, line)) = self.rx.recv().await {
            let buf = if tag == "out" {
                &mut self.stdout
            } else {
                &mut self.stderr
            };
            buf.push_str(&line);
            buf.push('\n');
        }
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        cli.record(&args, &format!("{}{}", self.stdout, self.stderr));
        Out {
            ok: status.success(),
            stdout: self.stdout,
            stderr: self.stderr,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Playing Ramen.

fn ts(secs_ago: i64) -> String {
    Timestamp::from_second(Timestamp::now().as_second() - secs_ago)
        .unwrap()
        .to_string()
}

fn cond(type_: &str, status: &str, reason: &str, message: &str, generation: i64) -> Value {
    json!({"type": type_, "status": status, "reason": reason, "message": message,
           "observedGeneration": generation, "lastTransitionTime": ts(0)})
}

async fn drpc(hub: &kube::Client) -> DRPlacementControl {
    Api::<DRPlacementControl>::namespaced(hub.clone(), OPS)
        .get(APP)
        .await
        .unwrap()
}

/// Writes the DRPC status as Ramen's hub operator would (merge patch on status).
async fn drpc_status(hub: &kube::Client, status: Value) {
    Api::<DRPlacementControl>::namespaced(hub.clone(), OPS)
        .patch_status(
            APP,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": status})),
        )
        .await
        .unwrap();
}

/// DRPC status with the three conditions.
fn drpc_state(
    generation: i64,
    phase: &str,
    progression: &str,
    peer_ready: (&str, &str, &str),
    on: &str,
    sync_secs_ago: i64,
) -> Value {
    json!({
        "phase": phase,
        "progression": progression,
        "observedGeneration": generation,
        // Ramen sets preferredDecision only while it is empty (`updatePreferredDecision`).
        "preferredDecision": {"clusterName": "dr1", "clusterNamespace": "dr1"},
        "conditions": [
            cond("Available", "True", phase, "Completed", generation),
            cond("PeerReady", peer_ready.0, peer_ready.1, peer_ready.2, generation),
            cond("Protected", "True", "Protected",
                 &format!("VolumeReplicationGroup (ramen-ops/busybox) on cluster {on} is protecting required resources and data"),
                 generation),
        ],
        "resourceConditions": {
            "resourceMeta": {"kind": "VolumeReplicationGroup", "name": APP, "namespace": OPS, "generation": 1,
                             "protectedpvcs": ["busybox-pvc"]},
            "conditions": [
                cond("DataReady", "True", "Ready", "PVCs in the VolumeReplicationGroup are ready for use", 1),
                cond("ClusterDataProtected", "True", "Uploaded", "VRG Kube object protected", 1),
            ],
        },
        "lastGroupSyncTime": ts(sync_secs_ago),
        "lastUpdateTime": ts(0),
    })
}

/// Ramen writes the PlacementDecision of a Placement it schedules.
async fn decide(hub: &kube::Client, decisions: &[(&str, &str)]) {
    let api: Api<PlacementDecision> = Api::namespaced(hub.clone(), OPS);
    let name = format!("{APP}-decision-1");
    if api.get_opt(&name).await.unwrap().is_none() {
        let pd: PlacementDecision = serde_json::from_value(json!({
            "apiVersion": "cluster.open-cluster-management.io/v1beta1",
            "kind": "PlacementDecision",
            "metadata": {"name": name, "namespace": OPS, "labels": {
                "cluster.open-cluster-management.io/placement": APP,
                "ramendr.openshift.io/created-by-ramen": "true",
                "velero.io/exclude-from-backup": "true",
            }},
        }))
        .unwrap();
        api.create(&PostParams::default(), &pd).await.unwrap();
    }
    let decisions: Vec<Value> = decisions
        .iter()
        .map(|(c, r)| json!({"clusterName": c, "reason": r}))
        .collect();
    api.patch_status(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"decisions": decisions}})),
    )
    .await
    .unwrap();
}

fn vrg_manifest(cluster: &str, state: &str, action: Option<&str>) -> Value {
    let mut spec = json!({
        "pvcSelector": {"matchLabels": {"appname": APP}},
        "replicationState": state,
        "s3Profiles": ["minio-dr1", "minio-dr2"],
        "async": {"replicationClassSelector": {}, "volumeSnapshotClassSelector": {},
                  "volumeGroupSnapshotClassSelector": {}, "schedulingInterval": "1m"},
        "volSync": {},
        "protectedNamespaces": ["busybox-app"],
        "kubeObjectProtection": {"kubeObjectSelector": {"matchLabels": {"appname": APP}}},
    });
    if let Some(a) = action {
        spec["action"] = json!(a);
    }
    json!({
        "apiVersion": "ramendr.openshift.io/v1alpha1", "kind": "VolumeReplicationGroup",
        "metadata": {"name": APP, "namespace": OPS, "creationTimestamp": null,
                     "annotations": {"drplacementcontrol.ramendr.openshift.io/destination-cluster": cluster}},
        "spec": spec,
        "status": {"lastUpdateTime": null, "kubeObjectProtection": {}},
    })
}

fn vrg_mw_name() -> String {
    drbridge_api::ramen::manifest_work_names::vrg(APP, OPS)
}

/// Ramen's dr-cluster operator: the VRG reports `state` for its current generation, once the
/// agent has applied the spec that asks for it.
async fn vrg_reports(spoke: &kube::Client, state: &str, synced: bool) {
    let api: Api<VolumeReplicationGroup> = Api::namespaced(spoke.clone(), OPS);
    let want = match state {
        "Primary" => Some("primary"),
        "Secondary" => Some("secondary"),
        _ => None,
    };
    let v = eventually(
        &format!("the VRG on the managed cluster asks for {state}"),
        WAIT,
        || async {
            let v = api.get_opt(APP).await.ok().flatten()?;
            want.is_none_or(|w| v.spec.replication_state == w)
                .then_some(v)
        },
    )
    .await;
    let g = v.metadata.generation.unwrap_or(1);
    let primary = state == "Primary";
    let mut conditions = vec![
        cond(
            "DataReady",
            "True",
            if primary { "Ready" } else { "Unused" },
            "ready",
            g,
        ),
        cond(
            "DataProtected",
            if primary { "False" } else { "True" },
            if primary { "Replicating" } else { "Unused" },
            "",
            g,
        ),
        cond(
            "ClusterDataReady",
            "True",
            if primary { "Restored" } else { "Unused" },
            "",
            g,
        ),
        cond(
            "ClusterDataProtected",
            "True",
            if primary { "Uploaded" } else { "Unused" },
            "",
            g,
        ),
    ];
    if !synced {
        conditions.truncate(1);
    }
    let mut status = json!({"state": state, "observedGeneration": g, "conditions": conditions,
                            "lastUpdateTime": ts(0), "kubeObjectProtection": {}});
    if primary && synced {
        status["lastGroupSyncTime"] = json!(ts(20));
        status["protectedPVCs"] = json!([{"namespace": "busybox-app", "name": "busybox-pvc",
            "storageClassName": "rbd", "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
            "replicationID": {"id": "rid-1"}, "storageID": {"id": "sid"}, "lastSyncTime": ts(20)}]);
    }
    api.patch_status(
        APP,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": status})),
    )
    .await
    .unwrap();
}

/// Waits until the hub's view of the VRG on `cluster` shows `state`.
async fn view_shows(hub: &kube::Client, cluster: &str, state: &str) {
    let api: Api<ManagedClusterView> = Api::namespaced(hub.clone(), cluster);
    let name = drbridge_dr::consts::vrg_view_name(APP, OPS);
    eventually(
        &format!("the view on {cluster} shows {state}"),
        WAIT,
        || async {
            let v = api.get_opt(&name).await.ok().flatten()?;
            match vrg_from_view(Some(&v)) {
                VrgEvidence::Found { vrg, .. } if vrg.status.as_ref()?.state == state => Some(()),
                _ => None,
            }
        },
    )
    .await;
}

/// Ramen moves the primary role for `action`: the secondary's VRG work first, then the
/// primary's, and the dr-cluster operators report the new states.
async fn swap_roles(
    hub: &kube::Client,
    primary: (&str, &kube::Client),
    secondary: (&str, &kube::Client),
    action: &str,
) {
    update_mw_manifests(
        hub,
        secondary.0,
        &vrg_mw_name(),
        vec![vrg_manifest(secondary.0, "secondary", Some(action))],
    )
    .await;
    update_mw_manifests(
        hub,
        primary.0,
        &vrg_mw_name(),
        vec![vrg_manifest(primary.0, "primary", Some(action))],
    )
    .await;
    vrg_reports(secondary.1, "Secondary", true).await;
    vrg_reports(primary.1, "Primary", true).await;
}

/// Waits until the hub shows `cluster` reachable (ManagedCluster Available, views without
/// drbridge's unreachable-since annotation) or lost (the opposite of both).
async fn hub_sees(hub: &kube::Client, cluster: &str, reachable: bool) {
    let mcs: Api<ManagedCluster> = Api::all(hub.clone());
    let what = if reachable {
        "reachable"
    } else {
        "unreachable"
    };
    eventually(&format!("{cluster} {what}"), WAIT, || async {
        let v = mcv_api(hub, cluster)
            .get(&drbridge_dr::consts::vrg_view_name(APP, OPS))
            .await
            .ok()?;
        let available = mcs
            .get(cluster)
            .await
            .ok()?
            .status?
            .conditions
            .iter()
            .any(|c| c.type_ == "ManagedClusterConditionAvailable" && c.status == "True");
        let marked = v
            .metadata
            .annotations
            .unwrap_or_default()
            .contains_key("drbridge.io/unreachable-since");
        (available == reachable && marked != reachable).then_some(())
    })
    .await;
}

// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dr_commands_against_a_hub_where_the_test_plays_ramen() {
    init_logging();
    let mut opts = BridgeOptions::default();
    opts.hub.presence_timeout = Duration::from_secs(3);
    let mut b = Bridge::start_with(&["dr1", "dr2"], opts).await;
    let hub = b.hub_client().await;
    let dr1 = b.client("dr1").await;
    let dr2 = b.client("dr2").await;
    let fixtures = repo_root().join("tests/integration/fixtures/ramen-crds");
    install_crds(&hub, &fixtures.join("hub")).await;
    for spoke in [&dr1, &dr2] {
        install_crds(spoke, &fixtures.join("managed")).await;
        create_ns(spoke, OPS).await;
    }
    create_ns(&dr1, "velero").await;
    let kc = |c: &str| b.env.kubeconfig(c).unwrap().display().to_string();
    let cli = Cli {
        kubeconfig: b.env.kubeconfig("hub").unwrap(),
        transcript: std::env::var_os("DRBRIDGE_DR_TRANSCRIPT").map(PathBuf::from),
    };
    if let Some(t) = &cli.transcript {
        let _ = std::fs::remove_file(t);
    }

    // --- Configure: S3 profiles on the hub and the managed clusters. ---------------------
    let creds = [
        ("AWS_ACCESS_KEY_ID", "minio"),
        ("AWS_SECRET_ACCESS_KEY", "minio-secret"),
    ];
    let no_creds = cli
        .run(&[
            "s3-profile",
            "add",
            "minio-dr1",
            "--bucket",
            "bucket",
            "--endpoint",
            "http://minio:9000",
        ])
        .await;
    assert!(
        !no_creds.ok && no_creds.stderr.contains("S3 credentials are needed"),
        "{}",
        no_creds.stderr
    );
    for (profile, endpoint) in [
        ("minio-dr1", "http://minio-dr1.example:30000"),
        ("minio-dr2", "http://minio-dr2.example:30000"),
    ] {
        let m1 = format!("dr1={}", kc("dr1"));
        let m2 = format!("dr2={}", kc("dr2"));
        let o = cli
            .run_env(
                &[
                    "s3-profile",
                    "add",
                    profile,
                    "--bucket",
                    "bucket",
                    "--endpoint",
                    endpoint,
                    "--managed-kubeconfig",
                    &m1,
                    "--managed-kubeconfig",
                    &m2,
                ],
                &creds,
            )
            .await;
        assert!(o.ok, "{}\n{}", o.stdout, o.stderr);
        assert!(
            o.stdout.contains(&format!("{profile} added")),
            "{}",
            o.stdout
        );
        assert!(
            o.stdout.contains("dr2: namespace velero does not exist"),
            "{}",
            o.stdout
        );
    }
    let hub_cm = Api::<ConfigMap>::namespaced(hub.clone(), "ramen-system")
        .get("ramen-hub-operator-config")
        .await
        .unwrap();
    let yaml = &hub_cm.data.unwrap()["ramen_manager_config.yaml"];
    let doc: Value = serde_saphyr::from_str(yaml).unwrap();
    assert_eq!(doc["ramenControllerType"], "dr-hub");
    assert_eq!(
        doc["s3StoreProfiles"][1]["s3CompatibleEndpoint"],
        "http://minio-dr2.example:30000"
    );
    let spoke_cm = Api::<ConfigMap>::namespaced(dr2.clone(), "ramen-system")
        .get("ramen-dr-cluster-operator-config")
        .await
        .unwrap();
    let spoke_doc: Value =
        serde_saphyr::from_str(&spoke_cm.data.unwrap()["ramen_manager_config.yaml"]).unwrap();
    assert_eq!(spoke_doc["ramenControllerType"], "dr-cluster");
    assert_eq!(spoke_doc["s3StoreProfiles"].as_array().unwrap().len(), 2);
    let s = Api::<Secret>::namespaced(dr1.clone(), "ramen-system")
        .get("minio-dr1-s3-secret")
        .await
        .unwrap();
    assert_eq!(s.data.unwrap()["AWS_SECRET_ACCESS_KEY"].0, b"minio-secret");
    let v = Api::<Secret>::namespaced(dr1.clone(), "velero")
        .get("vminio-dr1-s3-secret")
        .await
        .unwrap();
    assert!(
        String::from_utf8_lossy(&v.data.unwrap()["ramengenerated"].0)
            .contains("aws_access_key_id = minio")
    );
    // Again with the same values: unchanged.
    let again = cli
        .run_env(
            &[
                "s3-profile",
                "add",
                "minio-dr1",
                "--bucket",
                "bucket",
                "--endpoint",
                "http://minio-dr1.example:30000",
            ],
            &creds,
        )
        .await;
    assert!(
        again.stdout.contains("minio-dr1 unchanged"),
        "{}",
        again.stdout
    );
    let profiles: Vec<S3StoreProfile> =
        serde_json::from_str(&cli.ok(&["s3-profile", "list", "-o", "json"]).await).unwrap();
    assert_eq!(profiles.len(), 2);
    cli.ok(&["s3-profile", "list"]).await;

    // --- DRClusters and the DRPolicy. -----------------------------------------------------
    cli.ok(&["cluster", "add", "dr1", "--s3-profile", "minio-dr1"])
        .await;
    let dc: DRCluster = serde_saphyr::from_str(
        &cli.ok(&[
            "cluster",
            "add",
            "dr2",
            "--s3-profile",
            "minio-dr2",
            "-o",
            "yaml",
        ])
        .await,
    )
    .unwrap();
    assert_eq!(dc.spec.s3_profile_name, "minio-dr2");
    let missing = cli
        .ok(&["cluster", "add", "dr9", "--s3-profile", "nope"])
        .await;
    assert!(
        missing.contains("S3 profile nope is not in ramen-system/ramen-hub-operator-config"),
        "{missing}"
    );
    assert!(
        missing.contains("There is no ManagedCluster dr9"),
        "{missing}"
    );
    Api::<DRCluster>::all(hub.clone())
        .delete("dr9", &Default::default())
        .await
        .unwrap();

    let bad = cli
        .fails(&[
            "policy",
            "create",
            "p",
            "--clusters",
            "dr1",
            "--scheduling-interval",
            "1m",
        ])
        .await;
    assert!(bad.contains("exactly two different clusters"), "{bad}");
    let bad = cli
        .fails(&[
            "policy",
            "create",
            "p",
            "--clusters",
            "dr1,dr2",
            "--scheduling-interval",
            "30s",
        ])
        .await;
    assert!(
        bad.contains("is not <number>m, <number>h or <number>d"),
        "{bad}"
    );
    let p: DRPolicy = serde_json::from_str(
        &cli.ok(&[
            "policy",
            "create",
            "dr-policy",
            "--clusters",
            "dr1,dr2",
            "--scheduling-interval",
            "1m",
            "--replication-class-selector",
            "ramendr.openshift.io/replicationid=rid-1",
            "-o",
            "json",
        ])
        .await,
    )
    .unwrap();
    assert_eq!(p.spec.dr_clusters, ["dr1", "dr2"]);
    assert_eq!(
        p.spec.replication_class_selector.match_labels.unwrap()["ramendr.openshift.io/replicationid"],
        "rid-1"
    );
    // The API server enforces Ramen's immutability rule.
    let immutable = cli
        .fails(&[
            "policy",
            "create",
            "dr-policy",
            "--clusters",
            "dr1,dr2",
            "--scheduling-interval",
            "5m",
        ])
        .await;
    assert!(
        immutable.contains("schedulingInterval is immutable"),
        "{immutable}"
    );

    // Ramen validates: first the clusters fail S3, then all is well.
    for (name, reason, msg) in [
        (
            "dr1",
            "s3BucketNotFound",
            "minio-dr1: NoSuchBucket: The specified bucket does not exist",
        ),
        ("dr2", "Succeeded", "Validated the cluster"),
    ] {
        let ok = if reason == "Succeeded" {
            "True"
        } else {
            "False"
        };
        Api::<DRCluster>::all(hub.clone())
            .patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {
                "phase": "Available", "conditions": [cond("Validated", ok, reason, msg, 1)]}})),
            )
            .await
            .unwrap();
    }
    Api::<DRPolicy>::all(hub.clone())
        .patch_status("dr-policy", &PatchParams::default(), &Patch::Merge(json!({"status": {
            "conditions": [cond("Validated", "False", "DRClustersUnavailable", "none of the DRClusters are validated ([dr1])", 1)]}})))
        .await
        .unwrap();
    let list = cli.ok(&["cluster", "list"]).await;
    assert!(
        list.contains("The bucket of S3 profile minio-dr1 does not exist or cannot be reached"),
        "{list}"
    );
    assert!(
        list.lines()
            .any(|l| l.starts_with("dr2 ") && l.contains("connected")),
        "{list}"
    );
    let list = cli.ok(&["policy", "list"]).await;
    assert!(
        list.contains("None of its DRClusters (dr1, dr2) is validated yet"),
        "{list}"
    );
    Api::<DRCluster>::all(hub.clone())
        .patch_status(
            "dr1",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {
            "conditions": [cond("Validated", "True", "Succeeded", "Validated the cluster", 1)]}})),
        )
        .await
        .unwrap();
    Api::<DRPolicy>::all(hub.clone())
        .patch_status("dr-policy", &PatchParams::default(), &Patch::Merge(json!({"status": {
            "conditions": [cond("Validated", "True", "Succeeded", "drpolicy validated", 1)],
            "async": {"peerClasses": [{"replicationID": "rid-1", "storageClassName": "rbd", "storageID": ["sid-dr1", "sid-dr2"]}]}}})))
        .await
        .unwrap();
    let list = cli.ok(&["policy", "list"]).await;
    assert!(!list.contains("Problems"), "{list}");

    // --- Protect. --------------------------------------------------------------------------
    let bad = cli
        .fails(&[
            "protect",
            APP,
            "--namespace",
            "busybox-app",
            "--pvc-selector",
            "appname=busybox",
            "--preferred-cluster",
            "dr3",
            "--policy",
            "dr-policy",
        ])
        .await;
    assert!(
        bad.contains("dr3 is not a cluster of DRPolicy dr-policy"),
        "{bad}"
    );
    // `protect --wait` returns once Ramen reports the application protected; meanwhile the
    // test deploys it as Ramen would.
    let mut protect = cli.spawn(&[
        "protect",
        APP,
        "--namespace",
        "busybox-app",
        "--pvc-selector",
        "appname=busybox",
        "--kube-object-selector",
        "appname=busybox",
        "--preferred-cluster",
        "dr1",
        "--policy",
        "dr-policy",
        "--wait",
        "-o",
        "json",
    ]);
    protect
        .expect("Placement and DRPlacementControl ramen-ops/busybox applied")
        .await;

    // Ramen deploys: VRG works (Primary on dr1, Secondary on dr2), views, the decision, status.
    let g = drpc(&hub).await.metadata.generation.unwrap();
    drpc_status(
        &hub,
        json!({"phase": "Deploying", "progression": "CreatingMW", "observedGeneration": g,
               "preferredDecision": {}, "resourceConditions": {"resourceMeta":
                   {"kind": "", "name": "", "namespace": "", "generation": 0}}}),
    )
    .await;
    protect.expect("Deploying").await;
    create_mw(
        &hub,
        "dr1",
        &vrg_mw_name(),
        vec![vrg_manifest("dr1", "primary", None)],
        None,
    )
    .await;
    create_mw(
        &hub,
        "dr2",
        &vrg_mw_name(),
        vec![vrg_manifest("dr2", "secondary", None)],
        None,
    )
    .await;
    for c in ["dr1", "dr2"] {
        let mcv: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "view.open-cluster-management.io/v1beta1", "kind": "ManagedClusterView",
            "metadata": {"name": drbridge_dr::consts::vrg_view_name(APP, OPS), "namespace": c,
                         "labels": {"ramendr.openshift.io/created-by-ramen": "true"},
                         "annotations": {"drplacementcontrol.ramendr.openshift.io/drpc-name": APP,
                                         "drplacementcontrol.ramendr.openshift.io/drpc-namespace": OPS}},
            "spec": {"scope": {"apiGroup": "ramendr.openshift.io", "version": "v1alpha1",
                               "kind": "VolumeReplicationGroup", "name": APP, "namespace": OPS}},
        }))
        .unwrap();
        mcv_api(&hub, c)
            .create(&PostParams::default(), &mcv)
            .await
            .unwrap();
    }
    vrg_reports(&dr1, "Primary", true).await;
    vrg_reports(&dr2, "Secondary", true).await;
    decide(&hub, &[("dr1", "dr1")]).await;
    drpc_status(
        &hub,
        drpc_state(
            g,
            "Deployed",
            "Completed",
            ("True", "Success", "Ready"),
            "dr1",
            30,
        ),
    )
    .await;
    view_shows(&hub, "dr1", "Primary").await;
    view_shows(&hub, "dr2", "Secondary").await;
    let out = protect.finish(&cli).await;
    assert!(out.ok, "{}\n{}", out.stdout, out.stderr);
    let list: Value = serde_json::from_str(&out.stdout).unwrap();
    let placement = &list["items"][0];
    assert_eq!(
        placement["metadata"]["annotations"]["cluster.open-cluster-management.io/experimental-scheduling-disable"],
        "true"
    );
    let protected: DRPlacementControl = serde_json::from_value(list["items"][1].clone()).unwrap();
    assert_eq!(
        protected.spec.protected_namespaces.as_deref(),
        Some(&["busybox-app".to_string()][..])
    );
    assert_eq!(protected.spec.preferred_cluster, "dr1");
    assert_eq!(protected.status.unwrap().phase, "Deployed");

    // --- Status. ---------------------------------------------------------------------------
    let table = cli.ok(&["status"]).await;
    let row = table.lines().find(|l| l.contains(APP)).expect("a row");
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        &cells[..8],
        [
            "ramen-ops",
            "busybox",
            "Deployed",
            "Completed",
            "dr1",
            "True",
            "True",
            "True"
        ],
        "{table}"
    );
    assert!(row.contains("OK (1m)"), "{table}");
    assert!(!table.contains("Problems"), "{table}");
    let json: Value = serde_json::from_str(&cli.ok(&["status", "-o", "json"]).await).unwrap();
    assert_eq!(json["items"][0]["currentCluster"], "dr1");
    assert_eq!(json["items"][0]["rpo"], "ok");
    let detail = cli.ok(&["status", APP]).await;
    assert!(detail.contains("Running on:   dr1"), "{detail}");
    let dr1_line = detail
        .lines()
        .find(|l| l.trim_start().starts_with("dr1 "))
        .unwrap();
    assert!(
        dr1_line.contains("current")
            && dr1_line.contains("connected")
            && dr1_line.contains("Primary"),
        "{detail}"
    );
    let dr2_line = detail
        .lines()
        .find(|l| l.trim_start().starts_with("dr2 "))
        .unwrap();
    assert!(
        dr2_line.contains("peer") && dr2_line.contains("Secondary"),
        "{detail}"
    );
    let detail: Value =
        serde_saphyr::from_str(&cli.ok(&["status", APP, "-o", "yaml"]).await).unwrap();
    assert_eq!(detail["clusters"][1]["vrg"]["kind"], "found");
    assert_eq!(
        detail["clusters"][1]["vrg"]["vrg"]["status"]["state"],
        "Secondary"
    );
    assert_eq!(detail["problems"], json!([]));

    // Replication falls behind: late, in words.
    drpc_status(&hub, json!({"lastGroupSyncTime": ts(150)})).await;
    let table = cli.ok(&["status"]).await;
    assert!(table.contains("late (1m)"), "{table}");
    assert!(
        table.contains("Replication is late: the last group sync was 2m"),
        "{table}"
    );
    drpc_status(&hub, json!({"lastGroupSyncTime": ts(30)})).await;

    // --- Refusals. -------------------------------------------------------------------------
    let e = cli
        .fails(&["failover", APP, "--to", "dr3", "--yes", "--force"])
        .await;
    assert!(
        e.contains("dr3 is not a cluster of its DRPolicy dr-policy (dr1, dr2)"),
        "{e}"
    );
    assert!(e.contains("--force cannot override"), "{e}");
    let e = cli.fails(&["failover", APP, "--to", "dr1", "--yes"]).await;
    assert!(e.contains("the application already runs on dr1"), "{e}");
    // No terminal and no --yes: the question is shown, nothing changes.
    let e = cli.fails(&["failover", APP, "--to", "dr2"]).await;
    assert!(
        e.contains("Fail over ramen-ops/busybox from dr1 to dr2?"),
        "{e}"
    );
    assert!(e.contains("after the last group sync"), "{e}");
    assert!(
        e.contains("not confirmed: there is no terminal to ask on"),
        "{e}"
    );
    assert_eq!(drpc(&hub).await.spec.action, None);
    // PeerReady False.
    drpc_status(
        &hub,
        drpc_state(
            g,
            "Deployed",
            "Completed",
            (
                "False",
                "Progressing",
                "Waiting for VRG on dr2 to report Secondary",
            ),
            "dr1",
            30,
        ),
    )
    .await;
    let e = cli.fails(&["failover", APP, "--to", "dr2", "--yes"]).await;
    assert!(
        e.contains("PeerReady is False (Progressing: Waiting for VRG on dr2 to report Secondary)"),
        "{e}"
    );
    assert!(e.contains("repeat with --force"), "{e}");
    let e = cli.fails(&["relocate", APP, "--to", "dr2", "--yes"]).await;
    assert!(e.contains("PeerReady is False"), "{e}");
    drpc_status(
        &hub,
        drpc_state(
            g,
            "Deployed",
            "Completed",
            ("True", "Success", "Ready"),
            "dr1",
            30,
        ),
    )
    .await;
    // dr2 is not an established secondary.
    vrg_reports(&dr2, "Unknown", false).await;
    view_shows(&hub, "dr2", "Unknown").await;
    let e = cli.fails(&["failover", APP, "--to", "dr2", "--yes"]).await;
    assert!(
        e.contains("dr2 is not an established secondary: its VRG reports state Unknown"),
        "{e}"
    );
    vrg_reports(&dr2, "Secondary", true).await;
    view_shows(&hub, "dr2", "Secondary").await;
    assert_eq!(
        drpc(&hub).await.spec.action,
        None,
        "no refused command changed the DRPC"
    );

    // --- Failover with --wait: the test moves the DRPC as Ramen would. ---------------------
    let mut run = cli.spawn(&[
        "failover",
        APP,
        "--to",
        "dr2",
        "--yes",
        "--wait",
        "--timeout",
        "2m",
    ]);
    run.expect("Failover of ramen-ops/busybox to dr2 requested.")
        .await;
    let d = drpc(&hub).await;
    assert_eq!(d.spec.failover_cluster, "dr2");
    let g = d.metadata.generation.unwrap();
    run.expect("Deployed").await;
    drpc_status(
        &hub,
        drpc_state(
            g,
            "FailingOver",
            "CheckingFailoverPrerequisites",
            ("False", "NotStarted", "Started failover to cluster \"dr2\""),
            "dr1",
            30,
        ),
    )
    .await;
    run.expect("CheckingFailoverPrerequisites").await;
    update_mw_manifests(
        &hub,
        "dr2",
        &vrg_mw_name(),
        vec![vrg_manifest("dr2", "primary", Some("Failover"))],
    )
    .await;
    decide(&hub, &[("dr1", "RetainedForFailover"), ("dr2", "dr2")]).await;
    drpc_status(
        &hub,
        drpc_state(
            g,
            "FailingOver",
            "FailingOverToCluster",
            ("False", "NotStarted", "Started failover to cluster \"dr2\""),
            "dr1",
            30,
        ),
    )
    .await;
    run.expect("FailingOverToCluster").await;
    drpc_status(
        &hub,
        drpc_state(
            g,
            "FailedOver",
            "WaitOnUserToCleanUp",
            ("False", "NotStarted", "Started failover to cluster \"dr2\""),
            "dr1",
            30,
        ),
    )
    .await;
    run.expect("Ramen waits for you: delete the application's resources in busybox-app on dr1")
        .await;
    update_mw_manifests(
        &hub,
        "dr1",
        &vrg_mw_name(),
        vec![vrg_manifest("dr1", "secondary", Some("Failover"))],
    )
    .await;
    vrg_reports(&dr2, "Primary", true).await;
    vrg_reports(&dr1, "Secondary", true).await;
    decide(&hub, &[("dr2", "dr2")]).await;
    drpc_status(
        &hub,
        drpc_state(
            g,
            "FailedOver",
            "Completed",
            ("True", "Success", "Ready"),
            "dr2",
            10,
        ),
    )
    .await;
    let out = run.finish(&cli).await;
    assert!(out.ok, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains("Failover of ramen-ops/busybox to dr2 completed after"),
        "{}",
        out.stdout
    );
    view_shows(&hub, "dr2", "Primary").await;
    view_shows(&hub, "dr1", "Secondary").await;
    let detail = cli.ok(&["status", APP]).await;
    assert!(detail.contains("Running on:   dr2"), "{detail}");
    assert!(detail.contains("Action:       Failover to dr2"), "{detail}");
    // Asking again changes nothing.
    let again = cli.ok(&["failover", APP, "--to", "dr2", "--yes"]).await;
    assert!(
        again.contains("A failover to dr2 is already requested; nothing changes."),
        "{again}"
    );

    // --- Relocate back, requested first, then followed with --wait -o yaml. ------------------
    let out = cli.ok(&["relocate", APP, "--to", "dr1", "--yes"]).await;
    assert!(
        out.contains("Relocation of ramen-ops/busybox to dr1 requested."),
        "{out}"
    );
    let d = drpc(&hub).await;
    assert_eq!(d.spec.preferred_cluster, "dr1");
    let g = d.metadata.generation.unwrap();
    let mut run = cli.spawn(&[
        "relocate", APP, "--to", "dr1", "--yes", "--wait", "-o", "yaml",
    ]);
    run.expect("A relocation to dr1 is already requested").await;
    run.expect("FailedOver").await;
    drpc_status(
        &hub,
        drpc_state(
            g,
            "Relocating",
            "RunningFinalSync",
            ("False", "NotStarted", "Started relocation"),
            "dr2",
            10,
        ),
    )
    .await;
    run.expect("RunningFinalSync").await;
    swap_roles(&hub, ("dr1", &dr1), ("dr2", &dr2), "Relocate").await;
    decide(&hub, &[("dr1", "dr1")]).await;
    drpc_status(
        &hub,
        drpc_state(
            g,
            "Relocated",
            "Completed",
            ("True", "Success", "Ready"),
            "dr1",
            5,
        ),
    )
    .await;
    let out = run.finish(&cli).await;
    assert!(out.ok, "{}\n{}", out.stdout, out.stderr);
    let relocated: DRPlacementControl = serde_saphyr::from_str(&out.stdout).unwrap();
    assert_eq!(relocated.status.unwrap().phase, "Relocated");
    assert!(
        out.stderr
            .contains("Relocation of ramen-ops/busybox to dr1 completed after"),
        "{}",
        out.stderr
    );

    // --- Clear. -----------------------------------------------------------------------------
    let out = cli.ok(&["clear", APP, "--yes"]).await;
    assert!(
        out.contains("Cleared the Relocate action of ramen-ops/busybox."),
        "{out}"
    );
    assert!(out.contains("The application stays on dr1"), "{out}");
    let d = drpc(&hub).await;
    assert_eq!(d.spec.action, None);
    let out = cli.ok(&["clear", APP, "--yes"]).await;
    assert!(out.contains("It has no action; nothing changes."), "{out}");

    // --- status --watch sees a change. --------------------------------------------------------
    let mut watch = cli.spawn(&["status", "--watch"]);
    watch.expect("busybox").await;
    let g = d.metadata.generation.unwrap();
    drpc_status(
        &hub,
        drpc_state(
            g,
            "Relocated",
            "Cleaning Up",
            ("True", "Success", "Ready"),
            "dr1",
            5,
        ),
    )
    .await;
    watch.expect("Cleaning Up").await;
    watch.record_so_far(&cli);
    drop(watch);
    drpc_status(
        &hub,
        drpc_state(
            g,
            "Relocated",
            "Completed",
            ("True", "Success", "Ready"),
            "dr1",
            5,
        ),
    )
    .await;

    // --- A managed cluster is lost: connection state, relocate refused, failover allowed. ----
    b.stop_agent("dr1").await;
    hub_sees(&hub, "dr1", false).await;
    let detail = cli.ok(&["status", APP]).await;
    let dr1_line = detail
        .lines()
        .find(|l| l.trim_start().starts_with("dr1 "))
        .unwrap();
    assert!(
        dr1_line.contains("unreachable") && dr1_line.contains("Primary (stale)"),
        "{detail}"
    );
    assert!(
        detail.contains("Cluster dr1: The hub is not connected to it: unreachable since"),
        "{detail}"
    );
    let e = cli.fails(&["relocate", APP, "--to", "dr2", "--yes"]).await;
    assert!(
        e.contains("a relocate needs both clusters (fail over if dr1 is lost)"),
        "{e}"
    );
    let e = cli.fails(&["failover", APP, "--to", "dr2"]).await;
    assert!(
        e.contains("dr1 is unreachable since"),
        "the question says so: {e}"
    );
    // Removing protection now would leave Ramen unable to delete dr1's VRG: refused.
    let e = cli.fails(&["disable", APP, "--yes"]).await;
    assert!(
        e.contains("dr1 is unreachable since")
            && e.contains("Ramen deletes the VRG there only once it is back"),
        "{e}"
    );
    assert!(e.contains("repeat with --force"), "{e}");
    let out = cli
        .ok(&["failover", APP, "--to", "dr2", "--yes", "-o", "json"])
        .await;
    let d: DRPlacementControl = serde_json::from_str(&out).unwrap();
    assert_eq!(d.spec.failover_cluster, "dr2");
    b.start_agent("dr1").await;
    hub_sees(&hub, "dr1", true).await;

    // --- Clear after a failover also resets failoverCluster. --------------------------------
    // Ramen completes the failover: dr2 Primary, dr1 Secondary.
    let g = d.metadata.generation.unwrap();
    swap_roles(&hub, ("dr2", &dr2), ("dr1", &dr1), "Failover").await;
    view_shows(&hub, "dr2", "Primary").await;
    view_shows(&hub, "dr1", "Secondary").await;
    decide(&hub, &[("dr2", "dr2")]).await;
    drpc_status(
        &hub,
        drpc_state(
            g,
            "FailedOver",
            "Completed",
            ("True", "Success", "Ready"),
            "dr2",
            5,
        ),
    )
    .await;
    let out = cli.ok(&["clear", APP, "--yes"]).await;
    assert!(
        out.contains("Cleared the Failover action of ramen-ops/busybox."),
        "{out}"
    );
    assert!(
        out.contains("spec.failoverCluster (dr2) is reset too."),
        "{out}"
    );
    let d = drpc(&hub).await;
    assert_eq!(d.spec.action, None);
    assert_eq!(d.spec.failover_cluster, "", "failoverCluster is reset");

    // --- Disable: the DRPC and Placement go, Ramen's cleanup is shown, the app stays. --------
    // The application's own objects on dr2, which removing protection must not touch.
    create_ns(&dr2, "busybox-app").await;
    let pvc: k8s_openapi::api::core::v1::PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": "busybox-pvc", "namespace": "busybox-app", "labels": {"appname": APP}},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }))
    .unwrap();
    Api::<k8s_openapi::api::core::v1::PersistentVolumeClaim>::namespaced(
        dr2.clone(),
        "busybox-app",
    )
    .create(&PostParams::default(), &pvc)
    .await
    .unwrap();
    // Ramen holds the DRPC and the Placement with its finalizer until it has cleaned up.
    let finalizer = json!({"metadata": {"finalizers": ["drpc.ramendr.openshift.io/finalizer"]}});
    let no_finalizer = json!({"metadata": {"finalizers": null}});
    let placements: Api<DynamicObject> = Api::namespaced_with(
        hub.clone(),
        OPS,
        &kube::discovery::ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(
            "cluster.open-cluster-management.io",
            "v1beta1",
            "Placement",
        )),
    );
    let drpcs: Api<DRPlacementControl> = Api::namespaced(hub.clone(), OPS);
    drpcs
        .patch(APP, &PatchParams::default(), &Patch::Merge(&finalizer))
        .await
        .unwrap();
    placements
        .patch(APP, &PatchParams::default(), &Patch::Merge(&finalizer))
        .await
        .unwrap();
    let mut run = cli.spawn(&["disable", APP, "--yes", "--timeout", "2m"]);
    run.expect("Removing the protection of ramen-ops/busybox")
        .await;
    run.expect("VRG dr1 Secondary   VRG dr2 Primary     placement present")
        .await;
    let d = drpc(&hub).await;
    assert!(d.metadata.deletion_timestamp.is_some());
    assert!(
        placements
            .get(APP)
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_some()
    );
    // Ramen: Deleting, the secondary's VRG work first (here dr1's), then the primary's.
    drpc_status(
        &hub,
        json!({"phase": "Deleting", "progression": "Deleting"}),
    )
    .await;
    run.expect("Deleting     Deleting").await;
    drbridge_integration_tests::works::delete_mw(&hub, "dr1", &vrg_mw_name()).await;
    run.expect("VRG dr1 gone").await;
    drbridge_integration_tests::works::delete_mw(&hub, "dr2", &vrg_mw_name()).await;
    run.expect("VRG dr1 gone        VRG dr2 gone").await;
    for c in ["dr1", "dr2"] {
        mcv_api(&hub, c)
            .delete(
                &drbridge_dr::consts::vrg_view_name(APP, OPS),
                &Default::default(),
            )
            .await
            .unwrap();
    }
    placements
        .patch(APP, &PatchParams::default(), &Patch::Merge(&no_finalizer))
        .await
        .unwrap();
    drpcs
        .patch(APP, &PatchParams::default(), &Patch::Merge(&no_finalizer))
        .await
        .unwrap();
    let out = run.finish(&cli).await;
    assert!(out.ok, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains("Protection of ramen-ops/busybox removed after")
            && out
                .stdout
                .contains("The application and its PVCs stay on dr2."),
        "{}",
        out.stdout
    );
    for spoke in [&dr1, &dr2] {
        assert!(
            Api::<VolumeReplicationGroup>::namespaced(spoke.clone(), OPS)
                .get_opt(APP)
                .await
                .unwrap()
                .is_none(),
            "the VRGs are gone"
        );
    }
    assert!(
        Api::<k8s_openapi::api::core::v1::PersistentVolumeClaim>::namespaced(
            dr2.clone(),
            "busybox-app"
        )
        .get_opt("busybox-pvc")
        .await
        .unwrap()
        .is_some(),
        "the application's PVC stays"
    );
    let e = cli.fails(&["disable", APP, "--yes"]).await;
    assert!(e.contains("there is no DRPlacementControl busybox"), "{e}");

    // --- The kubectl plugin: the same binary through a kubectl-dr link. -----------------------
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("kubectl-dr");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_drbridge"), &link).unwrap();
    let o = tokio::process::Command::new(&link)
        .args(["status", "--kubeconfig"])
        .arg(&cli.kubeconfig)
        .env_remove("KUBECONFIG")
        .output()
        .await
        .unwrap();
    let plugin = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{plugin}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(plugin.contains("No DRPlacementControls."), "{plugin}");
    let help = tokio::process::Command::new(&link)
        .arg("--help")
        .output()
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&help.stdout).contains("Usage: kubectl dr"));
}
