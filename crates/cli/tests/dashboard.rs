//! `drbridge dr dashboard` in a real headless Chromium: against real control planes with
//! drbridge's hub and agents, the test writes the DRPolicy and DRPC (status included) Ramen
//! would, then reads what the page shows over the DevTools protocol, and checks that it
//! follows changes live: a DRPC's new phase and a lost cluster, without a reload.
//!
//! Needs `chromium` (Debian's package; .ci/run installs it), or DRBRIDGE_CHROMIUM=<path>.
//! DRBRIDGE_DASHBOARD_SCREENSHOT=<file.png> also saves a screenshot of the page.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use drbridge_dr::types::{DRPlacementControl, DRPolicy};
use drbridge_integration_tests::bridge::{Bridge, BridgeOptions};
use drbridge_integration_tests::works::create_ns;
use drbridge_integration_tests::{eventually, init_logging, install_crds, repo_root};
use futures::{SinkExt, StreamExt};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(30);
const OPS: &str = "ramen-ops";

fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("DRBRIDGE_CHROMIUM") {
        return p.into();
    }
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        for name in ["chromium", "chromium-browser"] {
            let p = PathBuf::from(dir).join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    panic!(
        "this test needs a headless Chromium and found none: `apt-get install -y chromium` \
         (.ci/run installs it), or set DRBRIDGE_CHROMIUM to its path"
    );
}

fn ts(secs_ago: i64) -> String {
    Timestamp::from_second(Timestamp::now().as_second() - secs_ago)
        .unwrap()
        .to_string()
}

/// A DRPC's status as Ramen's hub operator writes it.
fn status(phase: &str, progression: &str, on: &str, sync_secs_ago: i64) -> Value {
    let cond = |t: &str| {
        json!({"type": t, "status": "True", "reason": phase, "message": "", "observedGeneration": 1,
               "lastTransitionTime": ts(0)})
    };
    json!({"status": {
        "phase": phase, "progression": progression, "observedGeneration": 1,
        "preferredDecision": {"clusterName": on, "clusterNamespace": on},
        "conditions": [cond("Available"), cond("PeerReady"), cond("Protected")],
        "lastGroupSyncTime": ts(sync_secs_ago),
    }})
}

/// One page of a headless Chromium, over the DevTools protocol.
struct Page {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    id: u64,
}

impl Page {
    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.id += 1;
        let id = self.id;
        let msg = json!({"id": id, "method": method, "params": params}).to_string();
        self.ws.send(Message::text(msg)).await.expect("CDP send");
        loop {
            let m = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("CDP answers")
                .expect("CDP open")
                .expect("CDP message");
            let Message::Text(t) = m else { continue };
            let v: Value = serde_json::from_str(&t).expect("CDP JSON");
            // Events (no id) and other answers are not ours.
            if v["id"] == json!(id) {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    async fn eval(&mut self, expr: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expr, "returnByValue": true}),
            )
            .await;
        r["result"]["value"].clone()
    }

    /// The text of the element `selector` (empty if there is none yet).
    async fn text(&mut self, selector: &str) -> String {
        let expr = format!(
            "(document.querySelector({}) || {{innerText: ''}}).innerText",
            json!(selector)
        );
        self.eval(&expr)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Waits (condition-polled, with a deadline) until `selector` shows every one of `want`.
    async fn shows(&mut self, selector: &str, want: &[&str]) {
        let mut last = String::new();
        let found = drbridge_localenv::within(WAIT, async || {
            last = self.text(selector).await;
            want.iter().all(|w| last.contains(w)).then_some(())
        })
        .await;
        assert!(
            found.is_some(),
            "{selector} did not show {want:?} within {WAIT:?}; it shows:\n{last}"
        );
    }
}

/// A plain HTTP GET on loopback (Chromium's /json/list). Chromium answers HTTP/1.1 only
/// and keeps the connection open, so the body is read by its Content-Length.
async fn http_get(addr: &str, path: &str) -> Option<String> {
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_string())
                })?
                .parse()
                .ok()?;
            if body.len() >= len {
                return Some(body[..len].to_string());
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dashboard_in_a_real_browser_follows_the_hub_live() {
    init_logging();
    let chromium = chromium();
    let mut opts = BridgeOptions::default();
    opts.hub.presence_timeout = Duration::from_secs(3);
    let mut b = Bridge::start_with(&["dr1", "dr2"], opts).await;
    let hub = b.hub_client().await;
    install_crds(
        &hub,
        &repo_root().join("tests/integration/fixtures/ramen-crds/hub"),
    )
    .await;
    create_ns(&hub, OPS).await;

    // --- What Ramen's hub would hold: a DRPolicy and two protected applications. ---------
    let policy: DRPolicy = serde_json::from_value(json!({
        "apiVersion": "ramendr.openshift.io/v1alpha1", "kind": "DRPolicy",
        "metadata": {"name": "dr-policy-1m"},
        "spec": {"drClusters": ["dr1", "dr2"], "schedulingInterval": "1m",
                 "replicationClassSelector": {}, "volumeSnapshotClassSelector": {}},
    }))
    .unwrap();
    Api::<DRPolicy>::all(hub.clone())
        .create(&PostParams::default(), &policy)
        .await
        .unwrap();
    let drpcs: Api<DRPlacementControl> = Api::namespaced(hub.clone(), OPS);
    for (app, on, sync) in [("busybox", "dr1", 20), ("mysql", "dr2", 150)] {
        let d: DRPlacementControl = serde_json::from_value(json!({
            "apiVersion": "ramendr.openshift.io/v1alpha1", "kind": "DRPlacementControl",
            "metadata": {"name": app, "namespace": OPS},
            "spec": {"drPolicyRef": {"name": "dr-policy-1m"}, "preferredCluster": on,
                     "placementRef": {"kind": "Placement", "name": app, "namespace": OPS},
                     "pvcSelector": {"matchLabels": {"appname": app}},
                     "protectedNamespaces": [format!("{app}-app")]},
        }))
        .unwrap();
        drpcs.create(&PostParams::default(), &d).await.unwrap();
        drpcs
            .patch_status(
                app,
                &PatchParams::default(),
                &Patch::Merge(status("Deployed", "Completed", on, sync)),
            )
            .await
            .unwrap();
    }

    // --- The dashboard, on a port of its choosing. --------------------------------------
    let mut dash = tokio::process::Command::new(env!("CARGO_BIN_EXE_drbridge"))
        .args(["dr", "dashboard", "--listen", "127.0.0.1:0", "--tick", "1s"])
        .env("KUBECONFIG", b.env.kubeconfig("hub").unwrap())
        .env_remove("DRBRIDGE_DASHBOARD_LISTEN")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("drbridge starts");
    let mut lines = BufReader::new(dash.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .expect("the dashboard says where it serves")
        .unwrap()
        .expect("a line");
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .to_string();

    // --- Chromium, headless, on the page. ------------------------------------------------
    let profile = tempfile::tempdir().unwrap();
    let mut browser = tokio::process::Command::new(&chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--window-size=1280,900",
            "--remote-debugging-port=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(&url)
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", chromium.display()));
    let mut err = BufReader::new(browser.stderr.take().unwrap()).lines();
    let devtools = tokio::time::timeout(WAIT, async {
        while let Ok(Some(l)) = err.next_line().await {
            if let Some(rest) = l.strip_prefix("DevTools listening on ws://") {
                return rest.split('/').next().map(str::to_string);
            }
        }
        None
    })
    .await
    .expect("Chromium says where DevTools listens")
    .expect("a DevTools address");
    // Keep reading Chromium's stderr so that it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = err.next_line().await {} });
    let ws_url = eventually("Chromium's page target", WAIT, async || {
        let list: Value = serde_json::from_str(&http_get(&devtools, "/json/list").await?).ok()?;
        list.as_array()?
            .iter()
            .find(|t| t["type"] == "page" && t["url"].as_str().is_some_and(|u| u.starts_with(&url)))
            .and_then(|t| t["webSocketDebuggerUrl"].as_str().map(str::to_string))
    })
    .await;
    let (ws, _) = tokio_tungstenite::connect_async(&ws_url)
        .await
        .expect("CDP connects");
    let mut page = Page { ws, id: 0 };

    // --- What it shows. -------------------------------------------------------------------
    page.shows("[data-cluster=dr1]", &["dr1", "reachable", "since"])
        .await;
    page.shows("[data-cluster=dr2]", &["dr2", "reachable"])
        .await;
    page.shows(
        "[data-app='ramen-ops/busybox']",
        &[
            "busybox",
            "dr-policy-1m",
            "Deployed",
            "Completed",
            "dr1",
            "OK",
        ],
    )
    .await;
    page.shows(
        "[data-app='ramen-ops/mysql']",
        &["mysql", "Deployed", "dr2", "late"],
    )
    .await;
    page.shows("#transport", &["2 / 2", "clusters reachable"])
        .await;
    // A mark in the page's JavaScript state: still there at the end means no reload.
    page.eval("window.__notReloaded = true").await;

    // --- Live: Ramen starts a failover of busybox. -----------------------------------------
    drpcs
        .patch_status(
            "busybox",
            &PatchParams::default(),
            &Patch::Merge(status(
                "FailingOver",
                "WaitingForResourceRestore",
                "dr2",
                20,
            )),
        )
        .await
        .unwrap();
    page.shows(
        "[data-app='ramen-ops/busybox']",
        &["FailingOver", "WaitingForResourceRestore", "dr2"],
    )
    .await;

    // --- Live: dr1's agent stops; the hub marks the cluster lost. --------------------------
    b.stop_agent("dr1").await;
    page.shows("[data-cluster=dr1]", &["lost", "since"]).await;
    page.shows("#transport", &["1 / 2"]).await;
    assert_eq!(
        page.eval("window.__notReloaded === true").await,
        json!(true),
        "the page was reloaded"
    );

    if let Some(path) = std::env::var_os("DRBRIDGE_DASHBOARD_SCREENSHOT") {
        // A chart worth looking at: a few syncs of busybox, each after some points.
        for _ in 0..3 {
            let n = page.eval("document.querySelector(\"[data-app='ramen-ops/busybox'] polyline\")?.points.length || 0").await;
            let n = n.as_u64().unwrap_or(0);
            eventually("more chart points", WAIT, async || {
                let m = page.eval("document.querySelector(\"[data-app='ramen-ops/busybox'] polyline\")?.points.length || 0").await;
                (m.as_u64().unwrap_or(0) >= n + 6).then_some(())
            })
            .await;
            drpcs
                .patch_status(
                    "busybox",
                    &PatchParams::default(),
                    &Patch::Merge(status("FailingOver", "WaitingForResourceRestore", "dr2", 0)),
                )
                .await
                .unwrap();
        }
        let shot = page
            .call("Page.captureScreenshot", json!({"format": "png"}))
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("screenshot data"))
            .unwrap();
        std::fs::write(&path, png).unwrap();
    }

    // --- Ctrl-C stops the dashboard cleanly, with the browser's event stream open. --------
    let pid = dash.id().expect("running").to_string();
    let killed = tokio::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    let exit = tokio::time::timeout(WAIT, dash.wait())
        .await
        .expect("the dashboard stops on Ctrl-C")
        .unwrap();
    assert!(exit.success(), "the dashboard exited with {exit}");
    let _ = browser.kill().await;
}
