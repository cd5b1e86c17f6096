//! The Helm charts, used as users use them: `helm lint` and `helm template` (default values and
//! a values file with most options), assertions on the rendered RBAC, then `helm install` into
//! real local control planes and the real hub and agent running as the ServiceAccounts the
//! charts created, showing their RBAC is enough, and no more than that.
//!
//! There is no kubelet, so the charts' pods never run: the hub and the agent run in this test
//! process, each with a kubeconfig holding a token of its chart's ServiceAccount.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use drbridge_integration_tests::helm::{chart, helm, helm_ok, render, run_helm};
use drbridge_integration_tests::{eventually, repo_root};
use drbridge_localenv::Env;
use drbridge_model::Allowlist;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, ServiceAccount};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PostParams};
use serde_json::{Value, json};

const DEADLINE: Duration = Duration::from_secs(60);

fn helm_err(home: &Path, args: &[&str]) -> String {
    let out = run_helm(home, args);
    assert!(
        !out.status.success(),
        "helm {args:?} should have failed:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn fixture(name: &str) -> String {
    repo_root()
        .join("tests/integration/fixtures/charts")
        .join(name)
        .display()
        .to_string()
}

fn find<'a>(objs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objs.iter().filter(|o| o["kind"] == kind).collect()
}

fn one<'a>(objs: &'a [Value], kind: &str) -> &'a Value {
    let found = find(objs, kind);
    assert_eq!(found.len(), 1, "exactly one {kind}: {found:#?}");
    found[0]
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

/// (apiGroup, resource) -> verbs, merged over the rules that have no resourceNames.
fn unrestricted_grants(role: &Value) -> BTreeMap<(String, String), BTreeSet<String>> {
    let mut m: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for rule in role["rules"].as_array().unwrap() {
        if rule.get("resourceNames").is_some() {
            continue;
        }
        for g in strings(&rule["apiGroups"]) {
            for r in strings(&rule["resources"]) {
                m.entry((g.clone(), r))
                    .or_default()
                    .extend(strings(&rule["verbs"]));
            }
        }
    }
    m
}

/// No role of the chart may hold wildcards or privilege-escalation verbs, and no ClusterRole
/// Secrets: Secrets only by a Role in the release namespace, which each test checks exactly
/// ([`secret_rules`]).
fn assert_least_privilege(objs: &[Value]) {
    let roles: Vec<&Value> = objs
        .iter()
        .filter(|o| o["kind"] == "ClusterRole" || o["kind"] == "Role")
        .collect();
    assert!(!roles.is_empty(), "the chart has a role");
    for role in roles {
        let name = &role["metadata"]["name"];
        for rule in role["rules"].as_array().unwrap() {
            for field in ["apiGroups", "resources", "verbs", "resourceNames"] {
                assert!(
                    !strings(&rule[field]).iter().any(|s| s.contains('*')),
                    "{name}: wildcard in {field}: {rule}"
                );
            }
            for verb in strings(&rule["verbs"]) {
                assert!(
                    !["escalate", "bind", "impersonate"].contains(&verb.as_str()),
                    "{name}: verb {verb}: {rule}"
                );
            }
            if role["kind"] == "ClusterRole" {
                assert!(
                    !strings(&rule["resources"]).contains(&"secrets".to_string()),
                    "{name}: Secrets cluster-wide: {rule}"
                );
            } else {
                assert_eq!(role["metadata"]["namespace"], "drbridge", "{name}");
            }
            assert!(rule.get("nonResourceURLs").is_none(), "{name}: {rule}");
        }
    }
    for binding in find(objs, "ClusterRoleBinding") {
        assert_ne!(binding["roleRef"]["name"], "cluster-admin");
        assert_eq!(binding["roleRef"]["kind"], "ClusterRole");
    }
    for binding in find(objs, "RoleBinding") {
        assert_eq!(binding["roleRef"]["kind"], "Role", "{binding}");
        assert_eq!(binding["metadata"]["namespace"], "drbridge");
    }
}

/// The rules of the chart's Roles that grant Secrets: (resourceNames, verbs) each.
fn secret_rules(objs: &[Value]) -> Vec<(BTreeSet<String>, BTreeSet<String>)> {
    find(objs, "Role")
        .into_iter()
        .flat_map(|role| role["rules"].as_array().unwrap().iter())
        .filter(|rule| strings(&rule["resources"]).contains(&"secrets".to_string()))
        .map(|rule| {
            assert_eq!(strings(&rule["resources"]), ["secrets"], "{rule}");
            assert_eq!(strings(&rule["apiGroups"]), [""], "{rule}");
            (
                strings(&rule["resourceNames"]).into_iter().collect(),
                strings(&rule["verbs"]).into_iter().collect(),
            )
        })
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// The container's env entries by name, whole (for `valueFrom`).
fn env_entries(deploy: &Value) -> BTreeMap<String, Value> {
    deploy["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap().to_string(), e.clone()))
        .collect()
}

fn env_of(deploy: &Value) -> BTreeMap<String, Value> {
    deploy["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_string(),
                e.get("value").cloned().unwrap_or(Value::Null),
            )
        })
        .collect()
}

fn chart_app_version(chart_name: &str) -> String {
    let text = std::fs::read_to_string(
        repo_root()
            .join("charts")
            .join(chart_name)
            .join("Chart.yaml"),
    )
    .unwrap();
    let c: Value = serde_saphyr::from_str(&text).unwrap();
    c["appVersion"].as_str().unwrap().to_string()
}

/// The agent's Deployment, TLS files from Secrets: one replica, the old pod gone before the
/// new one starts.
fn assert_single_writer_deployment(deploy: &Value, grpc: bool, admin_port: i64) {
    assert_eq!(deploy["spec"]["replicas"], 1);
    assert_eq!(deploy["spec"]["strategy"]["type"], "Recreate");
    assert_deployment(deploy, grpc, grpc, admin_port, true)
}

/// The hub's Deployment: `replicas` that elect a leader, rolled one new pod at a time before an
/// old one goes, spread over nodes by default.
fn assert_hub_deployment(deploy: &Value, replicas: i64, join: bool, admin_port: i64) {
    let spec = &deploy["spec"];
    assert_eq!(spec["replicas"], replicas);
    assert_eq!(spec["strategy"]["type"], "RollingUpdate");
    assert_eq!(spec["strategy"]["rollingUpdate"]["maxUnavailable"], 0);
    assert_eq!(spec["strategy"]["rollingUpdate"]["maxSurge"], 1);
    let anti = &spec["template"]["spec"]["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"];
    assert_eq!(
        anti[0]["podAffinityTerm"]["topologyKey"], "kubernetes.io/hostname",
        "{anti}"
    );
    assert_eq!(
        anti[0]["podAffinityTerm"]["labelSelector"]["matchLabels"],
        spec["selector"]["matchLabels"]
    );
    assert_eq!(env_of(deploy)["DRBRIDGE_LEADER_ELECTION"], "true");
    assert_deployment(deploy, true, join, admin_port, true)
}

/// `grpc`: port grpc 8443; `join`: port join 8444; `tls_read_only`: the TLS files come from
/// Secrets (false in the agent's join mode, which writes them itself).
fn assert_deployment(deploy: &Value, grpc: bool, join: bool, admin_port: i64, tls_read_only: bool) {
    let spec = &deploy["spec"];
    let c = &spec["template"]["spec"]["containers"][0];
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/live");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/ready");
    assert_eq!(c["livenessProbe"]["httpGet"]["port"], "admin");
    let ports: BTreeMap<String, i64> = c["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["containerPort"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(ports.get("admin"), Some(&admin_port));
    assert_eq!(ports.get("grpc"), grpc.then_some(&8443));
    assert_eq!(ports.get("join"), join.then_some(&8444));
    assert!(c["resources"]["requests"]["cpu"].is_string(), "{c}");
    assert!(c["resources"]["requests"]["memory"].is_string(), "{c}");
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    let mounts = c["volumeMounts"].as_array().unwrap();
    let tls = mounts
        .iter()
        .find(|m| m["mountPath"] == "/etc/drbridge/tls")
        .expect("TLS files at /etc/drbridge/tls");
    assert_eq!(tls["readOnly"] == true, tls_read_only, "{tls}");
}

/// The projected TLS volume: (secret name, key, path) per item.
fn tls_items(deploy: &Value) -> BTreeSet<(String, String, String)> {
    let vols = deploy["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap();
    let tls = vols.iter().find(|v| v["name"] == "tls").unwrap();
    let mut items = BTreeSet::new();
    if tls.get("projected").is_none() {
        return items;
    }
    for src in tls["projected"]["sources"].as_array().unwrap() {
        let s = &src["secret"];
        for i in s["items"].as_array().unwrap() {
            items.insert((
                s["name"].as_str().unwrap().to_string(),
                i["key"].as_str().unwrap().to_string(),
                i["path"].as_str().unwrap().to_string(),
            ));
        }
    }
    items
}

fn set_of(items: &[(&str, &str, &str)]) -> BTreeSet<(String, String, String)> {
    items
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect()
}

/// What drbridge-hub does, and nothing else (crates/hub: watches.rs, status.rs).
fn hub_expected_grants() -> BTreeMap<(String, String), BTreeSet<String>> {
    let work = "work.open-cluster-management.io";
    let view = "view.open-cluster-management.io";
    let cluster = "cluster.open-cluster-management.io";
    [
        (
            work,
            "manifestworks",
            &["get", "list", "watch", "patch"][..],
        ),
        (work, "manifestworks/status", &["patch"]),
        (
            view,
            "managedclusterviews",
            &["get", "list", "watch", "patch"],
        ),
        (view, "managedclusterviews/status", &["patch"]),
        (
            cluster,
            "managedclusters",
            &["get", "list", "watch", "patch"],
        ),
        (cluster, "managedclusters/status", &["patch"]),
        // Its Events on ManifestWorks and ManagedClusters (patch: a repeat's count).
        ("events.k8s.io", "events", &["create", "patch"]),
    ]
    .into_iter()
    .map(|(g, r, v)| {
        (
            (g.to_string(), r.to_string()),
            v.iter().map(|s| s.to_string()).collect(),
        )
    })
    .collect()
}

#[test]
fn hub_chart_lints_and_renders_least_privilege_replicas_with_a_leader() {
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let hub = chart("drbridge-hub");
    helm_ok(home, &["lint", "--strict", &hub]);
    helm_ok(
        home,
        &["lint", "--strict", &hub, "-f", &fixture("hub-options.yaml")],
    );

    // Default values.
    let objs = render(home, "drbridge-hub", &[]);
    let kinds: BTreeSet<&str> = objs.iter().map(|o| o["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        BTreeSet::from([
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "PodDisruptionBudget",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount",
        ]),
        "no ServiceMonitor, no Certificate by default"
    );
    assert_least_privilege(&objs);
    assert_eq!(
        unrestricted_grants(one(&objs, "ClusterRole")),
        hub_expected_grants()
    );
    // Registration's Secrets (CA, tokens, identity records), in the release namespace only,
    // with exactly the verbs crates/hub uses: no patch.
    assert_eq!(
        secret_rules(&objs),
        vec![(
            set(&[]),
            set(&["get", "list", "watch", "create", "update", "delete"])
        )]
    );
    // The leader election's Lease, in the release namespace only.
    let role = one(&objs, "Role");
    assert_eq!(
        unrestricted_grants(role).get(&("coordination.k8s.io".into(), "leases".into())),
        Some(&set(&["get", "list", "watch", "create", "update", "patch"]))
    );
    let role_binding = one(&objs, "RoleBinding");
    assert_eq!(role_binding["roleRef"]["name"], "drbridge-hub");
    assert_eq!(role_binding["subjects"][0]["name"], "drbridge-hub");
    assert_eq!(role_binding["subjects"][0]["namespace"], "drbridge");
    let binding = one(&objs, "ClusterRoleBinding");
    assert_eq!(binding["subjects"][0]["name"], "drbridge-hub");
    assert_eq!(binding["subjects"][0]["namespace"], "drbridge");
    assert_eq!(
        one(&objs, "ServiceAccount")["metadata"]["name"],
        "drbridge-hub"
    );

    let deploy = one(&objs, "Deployment");
    assert_hub_deployment(deploy, 2, true, 9990);
    let c = &deploy["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        c["image"],
        format!(
            "ghcr.io/drbridge/drbridge-hub:{}",
            chart_app_version("drbridge-hub")
        )
    );
    let env = env_of(deploy);
    assert_eq!(env["DRBRIDGE_LISTEN_ADDR"], "0.0.0.0:8443");
    assert_eq!(env["DRBRIDGE_ADMIN_ADDR"], "0.0.0.0:9990");
    assert_eq!(env["DRBRIDGE_TLS_CA"], "/etc/drbridge/tls/ca.crt");
    assert_eq!(
        env["DRBRIDGE_NAMESPACE"], "drbridge",
        "the release namespace"
    );
    assert_eq!(env["DRBRIDGE_JOIN_ADDR"], "0.0.0.0:8444");
    for unset in [
        "DRBRIDGE_HEARTBEAT_SECONDS",
        "DRBRIDGE_CERT_VALIDITY",
        "DRBRIDGE_REQUIRE_JOIN",
        "DRBRIDGE_DISABLE_JOIN",
    ] {
        assert!(
            !env.contains_key(unset),
            "{unset}: unset values keep the binary's defaults"
        );
    }
    // Agents' client certificates are trusted from the CA that signs them at join and
    // renewal: the certificate of `drbridge-ca`, never its key.
    assert_eq!(
        tls_items(deploy),
        set_of(&[
            ("drbridge-hub-tls", "tls.crt", "tls.crt"),
            ("drbridge-hub-tls", "tls.key", "tls.key"),
            ("drbridge-ca", "tls.crt", "ca.crt"),
        ])
    );
    let services = find(&objs, "Service");
    let ports_of = |name: &str| {
        let s = services
            .iter()
            .find(|s| s["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("Service {name}"));
        assert_eq!(s["spec"]["type"], "ClusterIP");
        s["spec"]["ports"].as_array().unwrap().clone()
    };
    let port_of = |name: &str| ports_of(name)[0].clone();
    assert_eq!(port_of("drbridge-hub")["port"], 8443);
    assert_eq!(port_of("drbridge-hub")["targetPort"], "grpc");
    let join = &ports_of("drbridge-hub")[1];
    assert_eq!(
        (&join["name"], &join["port"], &join["targetPort"]),
        (&json!("join"), &json!(8444), &json!("join"))
    );
    assert_eq!(ports_of("drbridge-hub-admin").len(), 1);
    assert_eq!(port_of("drbridge-hub-admin")["port"], 9990);
    assert_eq!(
        one(&objs, "PodDisruptionBudget")["spec"]["maxUnavailable"],
        1
    );

    // Most options changed.
    let objs = render(home, "drbridge-hub", &["-f", &fixture("hub-options.yaml")]);
    assert_least_privilege(&objs);
    assert_eq!(
        unrestricted_grants(one(&objs, "ClusterRole")),
        hub_expected_grants()
    );
    let deploy = one(&objs, "Deployment");
    assert_hub_deployment(deploy, 3, true, 9000);
    assert_eq!(env_of(deploy)["DRBRIDGE_LEASE_DURATION_SECONDS"], "20");
    assert_eq!(deploy["metadata"]["name"], "bridge-hub");
    assert_eq!(deploy["metadata"]["labels"]["team"], "dr");
    let pod = &deploy["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "hub-sa");
    assert_eq!(pod["priorityClassName"], "system-cluster-critical");
    assert!(
        pod["containers"][0]["image"].as_str().unwrap().ends_with(
            "/hub@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
        )
    );
    let env = env_of(deploy);
    // Numbers are rendered as integers, never in exponent form.
    assert_eq!(env["DRBRIDGE_MAX_SYNC_BYTES"], "8388608");
    assert_eq!(env["DRBRIDGE_MAX_REPORT_BYTES"], "4194304");
    assert_eq!(env["DRBRIDGE_HEARTBEAT_SECONDS"], "3");
    assert_eq!(env["DRBRIDGE_PRESENCE_TIMEOUT_SECONDS"], "9");
    assert_eq!(env["DRBRIDGE_STATUS_QUEUE"], "100");
    assert_eq!(env["DRBRIDGE_STATUS_WRITES_IN_FLIGHT"], "32");
    assert_eq!(env["DRBRIDGE_LOG_FORMAT"], "plain");
    assert_eq!(env["DRBRIDGE_CERT_VALIDITY"], "90m");
    assert_eq!(env["DRBRIDGE_REQUIRE_JOIN"], "true");
    assert_eq!(env["RUST_BACKTRACE"], "1");
    assert_eq!(
        tls_items(deploy),
        set_of(&[
            ("hub-serving", "tls.crt", "tls.crt"),
            ("hub-serving", "tls.key", "tls.key"),
            ("agents-ca", "agents-ca.pem", "ca.crt"),
        ])
    );
    let grpc = find(&objs, "Service")
        .into_iter()
        .find(|s| s["metadata"]["name"] == "bridge-hub")
        .unwrap();
    assert_eq!(grpc["spec"]["type"], "LoadBalancer");
    assert_eq!(grpc["spec"]["ports"][0]["port"], 443);
    assert_eq!(grpc["spec"]["ports"][0]["nodePort"], 30443);
    assert_eq!(grpc["spec"]["ports"][1]["name"], "join");
    assert_eq!(grpc["spec"]["ports"][1]["port"], 9443);
    assert_eq!(grpc["spec"]["ports"][1]["nodePort"], 30444);
    // cert-manager issues the serving certificate with the given issuer (no Issuer of the
    // chart's own), for the given names and the Service's.
    assert!(find(&objs, "Issuer").is_empty());
    let cert = one(&objs, "Certificate");
    assert_eq!(cert["spec"]["secretName"], "hub-serving");
    assert_eq!(cert["spec"]["issuerRef"]["name"], "corp-ca");
    assert_eq!(cert["spec"]["issuerRef"]["kind"], "ClusterIssuer");
    let names = strings(&cert["spec"]["dnsNames"]);
    for n in [
        "drbridge-hub.example.com",
        "bridge-hub",
        "bridge-hub.drbridge.svc",
    ] {
        assert!(names.contains(&n.to_string()), "{n}: {names:?}");
    }
    assert_eq!(strings(&cert["spec"]["ipAddresses"]), ["192.0.2.10"]);
    let pdb = one(&objs, "PodDisruptionBudget");
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    assert!(pdb["spec"].get("maxUnavailable").is_none());
    let sm = one(&objs, "ServiceMonitor");
    assert_eq!(sm["spec"]["endpoints"][0]["port"], "admin");
    assert_eq!(sm["spec"]["endpoints"][0]["path"], "/metrics");
    assert_eq!(
        sm["spec"]["selector"]["matchLabels"]["drbridge.io/service"],
        "admin"
    );
    assert_eq!(sm["metadata"]["labels"]["release"], "prometheus");

    // cert-manager needs an issuer of the admin's: the chart creates none over `drbridge-ca`
    // (whose key signs agents' identities), so anyone who may create CertificateRequests in the
    // namespace cannot mint a cluster's client certificate through it.
    let err = helm_err(
        home,
        &["template", "x", &hub, "--set", "certManager.enabled=true"],
    );
    assert!(
        err.contains("certManager.issuerRef.name is required"),
        "{err}"
    );
    // With one, and no join listener.
    let objs = render(
        home,
        "drbridge-hub",
        &[
            "--set",
            "certManager.enabled=true",
            "--set",
            "certManager.issuerRef.name=server-ca",
            "--set",
            "config.disableJoin=true",
        ],
    );
    assert!(find(&objs, "Issuer").is_empty());
    let cert = one(&objs, "Certificate");
    assert_eq!(cert["spec"]["issuerRef"]["name"], "server-ca");
    assert_eq!(cert["spec"]["issuerRef"]["kind"], "Issuer");
    assert_eq!(cert["spec"]["secretName"], "drbridge-hub-tls");
    let deploy = one(&objs, "Deployment");
    assert_hub_deployment(deploy, 2, false, 9990);
    let env = env_of(deploy);
    assert_eq!(env["DRBRIDGE_DISABLE_JOIN"], "true");
    assert!(!env.contains_key("DRBRIDGE_JOIN_ADDR"));
    let svc = find(&objs, "Service")
        .into_iter()
        .find(|s| s["metadata"]["name"] == "drbridge-hub")
        .unwrap();
    assert_eq!(svc["spec"]["ports"].as_array().unwrap().len(), 1);

    // The schema refuses nonsense before anything renders.
    for (set, what) in [
        ("config.logFormat=xml", "logFormat"),
        ("admin.port=8443", "admin"),
        ("admin.port=8444", "admin"),
        ("config.certValidity=soon", "certValidity"),
        ("service.joinPort=0", "joinPort"),
        ("certManager.issuer=x", "certManager"),
        ("config.maxSyncBytes=10", "maxSyncBytes"),
        ("config.maxReportBytes=10", "maxReportBytes"),
        ("replicas=0", "replicas"),
        (
            "leaderElection.leaseDurationSeconds=0",
            "leaseDurationSeconds",
        ),
        (
            "prometheusRule.deliveryP99Seconds=fast",
            "deliveryP99Seconds",
        ),
        ("prometheusRule.deliveryP99Seconds=0", "deliveryP99Seconds"),
        ("prometheusRule.latencyFor=15", "latencyFor"),
    ] {
        let err = helm_err(home, &["template", "x", &hub, "--set", set]);
        assert!(err.contains(what), "--set {set}: {err}");
    }
    // More than one replica without an election would be two writers.
    let err = helm_err(
        home,
        &[
            "template",
            "x",
            &hub,
            "--set",
            "leaderElection.enabled=false",
        ],
    );
    assert!(err.contains("leaderElection.enabled"), "{err}");
    // One replica without election: no Lease rule, no election flag.
    let objs = render(
        home,
        "drbridge-hub",
        &[
            "--set",
            "replicas=1",
            "--set",
            "leaderElection.enabled=false",
        ],
    );
    let role = one(&objs, "Role");
    assert!(
        !unrestricted_grants(role).contains_key(&("coordination.k8s.io".into(), "leases".into()))
    );
    assert!(!env_of(one(&objs, "Deployment")).contains_key("DRBRIDGE_LEADER_ELECTION"));
}

/// The agent's ClusterRole grants exactly the allowlist (plus the agent's own records,
/// claims and reads), and the allowlist file it renders is the one the agent enforces.
#[test]
fn agent_chart_grants_exactly_its_allowlist() {
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let agent = chart("drbridge-agent");
    let required = [
        "--set",
        "cluster.name=dr1",
        "--set",
        "hub.endpoint=https://hub.example:8443",
    ];

    // Lint with default values reports the missing required values without failing;
    // rendering them fails with a message naming the value.
    helm_ok(home, &["lint", "--strict", &agent]);
    let err = helm_err(home, &["template", "x", &agent]);
    assert!(err.contains("cluster.name is required"), "{err}");
    let err = helm_err(
        home,
        &["template", "x", &agent, "--set", "cluster.name=dr1"],
    );
    assert!(err.contains("hub.endpoint is required"), "{err}");
    let mut lint = vec!["lint", "--strict", agent.as_str()];
    lint.extend_from_slice(&required);
    helm_ok(home, &lint);
    helm_ok(
        home,
        &[
            "lint",
            "--strict",
            &agent,
            "-f",
            &fixture("agent-options.yaml"),
        ],
    );

    // The chart's default allowlist is drbridge's default allowlist, kind for kind.
    let values: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(repo_root().join("charts/drbridge-agent/values.yaml")).unwrap(),
    )
    .unwrap();
    let chart_kinds: Vec<(String, String)> = values["allowlist"]["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["group"].as_str().unwrap().to_string(),
                k["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let model_kinds: Vec<(String, String)> = Allowlist::default()
        .kinds
        .iter()
        .map(|k| (k.group.clone(), k.kind.clone()))
        .collect();
    assert_eq!(
        chart_kinds, model_kinds,
        "charts/drbridge-agent/values.yaml allowlist.kinds must follow drbridge_model::Allowlist::default()"
    );

    let objs = render(home, "drbridge-agent", &required);
    assert_least_privilege(&objs);
    let allowlist_of = |objs: &[Value]| -> Allowlist {
        let cm = one(objs, "ConfigMap");
        serde_json::from_str(cm["data"]["allowlist.json"].as_str().unwrap()).unwrap()
    };
    assert_eq!(allowlist_of(&objs), Allowlist::default());

    let role = one(&objs, "ClusterRole");
    let grants = unrestricted_grants(role);
    let write = ["create", "update", "patch", "delete"];
    let writable =
        |grants: &BTreeMap<(String, String), BTreeSet<String>>| -> BTreeSet<(String, String)> {
            grants
                .iter()
                .filter(|(_, verbs)| verbs.iter().any(|v| write.contains(&v.as_str())))
                .map(|(k, _)| k.clone())
                .collect()
        };
    let resources_of = |values: &Value| -> BTreeSet<(String, String)> {
        values["allowlist"]["kinds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| {
                (
                    k["group"].as_str().unwrap().to_string(),
                    k["resource"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let own = [
        ("drbridge.io", "appliedworks"),
        ("cluster.open-cluster-management.io", "clusterclaims"),
        // Events on what it deleted at the hub's request.
        ("events.k8s.io", "events"),
    ];
    let mut expected = resources_of(&values);
    expected.extend(own.iter().map(|(g, r)| (g.to_string(), r.to_string())));
    assert_eq!(
        writable(&grants),
        expected,
        "writable = allowlist + own records"
    );
    for key in resources_of(&values) {
        let verbs = &grants[&key];
        assert!(
            verbs.contains("list") && verbs.contains("watch"),
            "{key:?}: {verbs:?}"
        );
    }
    // ClusterRoles: get/update/patch/delete only on Ramen's roles.
    let named: Vec<&Value> = role["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r.get("resourceNames").is_some())
        .collect();
    let cr = named
        .iter()
        .find(|r| strings(&r["resources"]) == ["clusterroles"])
        .expect("ClusterRole rule with resourceNames");
    assert_eq!(
        strings(&cr["verbs"]).into_iter().collect::<BTreeSet<_>>(),
        ["get", "update", "patch", "delete"]
            .map(String::from)
            .into()
    );
    let names = strings(&cr["resourceNames"]);
    assert_eq!(names.len(), 6);
    assert!(
        names
            .iter()
            .all(|n| n.starts_with("open-cluster-management:klusterlet-work-sa:agent:"))
    );
    assert!(
        !grants[&("rbac.authorization.k8s.io".into(), "clusterroles".into())].contains("delete"),
        "deleting any ClusterRole is not granted"
    );
    // Views are read-only and cover Ramen's catalogue; CRDs only the two Ramen probes.
    for (g, r) in [
        ("storage.k8s.io", "storageclasses"),
        ("csiaddons.openshift.io", "networkfenceclasses"),
        (
            "replication.storage.openshift.io",
            "volumereplicationclasses",
        ),
    ] {
        assert_eq!(
            grants[&(g.to_string(), r.to_string())],
            ["get", "list", "watch"].map(String::from).into(),
            "{g}/{r}"
        );
    }
    assert!(!grants.contains_key(&(
        "apiextensions.k8s.io".into(),
        "customresourcedefinitions".into()
    )));
    let crd = named
        .iter()
        .find(|r| strings(&r["resources"]) == ["customresourcedefinitions"])
        .expect("CRD view rule with resourceNames");
    assert_eq!(
        strings(&crd["resourceNames"]),
        [
            "volumegroupsnapshots.groupsnapshot.storage.k8s.io",
            "volumegroupsnapshots.groupsnapshot.storage.openshift.io"
        ]
    );
    assert_eq!(strings(&crd["verbs"]), ["get", "list", "watch"]);
    // The agent denies its own namespace (the release namespace) to works and views.
    let deploy = one(&objs, "Deployment");
    assert_eq!(env_of(deploy)["DRBRIDGE_NAMESPACE"], "drbridge");

    let deploy = one(&objs, "Deployment");
    assert_single_writer_deployment(deploy, false, 9991);
    let env = env_of(deploy);
    assert_eq!(env["DRBRIDGE_CLUSTER"], "dr1");
    assert_eq!(env["DRBRIDGE_HUB_ENDPOINT"], "https://hub.example:8443");
    assert_eq!(
        env["DRBRIDGE_ALLOWLIST"],
        "/etc/drbridge/allowlist/allowlist.json"
    );
    assert!(!env.contains_key("DRBRIDGE_HUB_SERVER_NAME"));
    assert!(!env.contains_key("DRBRIDGE_REAPPLY_SECONDS"));
    // Static credentials: no join, no Secret access at all.
    for join in [
        "DRBRIDGE_JOIN_TOKEN",
        "DRBRIDGE_JOIN_CA",
        "DRBRIDGE_TLS_SECRET",
    ] {
        assert!(!env.contains_key(join), "{join}");
    }
    assert!(find(&objs, "Role").is_empty() && find(&objs, "Secret").is_empty());
    assert_eq!(
        tls_items(deploy),
        set_of(&[
            ("drbridge-agent-tls", "tls.crt", "tls.crt"),
            ("drbridge-agent-tls", "tls.key", "tls.key"),
            ("drbridge-agent-tls", "ca.crt", "ca.crt"),
        ])
    );

    // Most options changed.
    let objs = render(
        home,
        "drbridge-agent",
        &["-f", &fixture("agent-options.yaml")],
    );
    assert_least_privilege(&objs);
    let options: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(fixture("agent-options.yaml")).unwrap())
            .unwrap();
    let grants = unrestricted_grants(one(&objs, "ClusterRole"));
    let mut expected = resources_of(&options);
    expected.extend(own.iter().map(|(g, r)| (g.to_string(), r.to_string())));
    assert_eq!(writable(&grants), expected);
    assert!(!grants.contains_key(&("ramendr.openshift.io".into(), "recipes".into())));
    let al = allowlist_of(&objs);
    assert!(al.check("batch", "Job", "team-a", "j").is_ok());
    assert!(al.check("batch", "Job", "team-secret", "j").is_err());
    assert!(al.check("", "Namespace", "", "x").is_err());
    let deploy = one(&objs, "Deployment");
    assert_single_writer_deployment(deploy, false, 9100);
    let env = env_of(deploy);
    assert_eq!(env["DRBRIDGE_CLUSTER"], "dr-east-1");
    assert_eq!(env["DRBRIDGE_HUB_SERVER_NAME"], "drbridge-hub.example.com");
    assert_eq!(
        env["DRBRIDGE_REAPPLY_SECONDS"], "0",
        "0 disables, and is passed"
    );
    assert_eq!(env["DRBRIDGE_MAX_WORK_BYTES"], "2097152");
    assert_eq!(env["DRBRIDGE_MAX_BACKOFF_SECONDS"], "10");
    assert_eq!(
        deploy["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.example.com/drbridge/agent:9.9.9"
    );
    assert_eq!(
        tls_items(deploy),
        set_of(&[
            ("agent-client", "tls.crt", "tls.crt"),
            ("agent-client", "tls.key", "tls.key"),
            ("hub-ca", "hub-ca.pem", "ca.crt"),
        ])
    );

    // Wildcards and Secrets are refused by the schema, and by the template when the schema
    // is skipped.
    let ns = r#"namespaces: {allow: ["*"], deny: []}"#;
    for (name, values, what) in [
        (
            "wildcard group",
            format!("allowlist:\n  kinds: [{{group: \"*\", kind: Foo, resource: foos}}]\n  {ns}\n"),
            "/allowlist/kinds/0/group",
        ),
        (
            "wildcard resource",
            format!(
                "allowlist:\n  kinds: [{{group: apps, kind: Deployment, resource: \"*\"}}]\n  {ns}\n"
            ),
            "/allowlist/kinds/0/resource",
        ),
        (
            "secrets",
            format!(
                "allowlist:\n  kinds: [{{group: \"\", kind: Secret, resource: secrets}}]\n  {ns}\n"
            ),
            "/allowlist/kinds/0/resource",
        ),
        (
            "viewing secrets",
            "views:\n  resources: [{group: \"\", resource: secrets}]\n".to_string(),
            "/views/resources/0/resource",
        ),
    ] {
        let file = home.join(format!("{}.yaml", name.replace(' ', "-")));
        std::fs::write(&file, values).unwrap();
        let file = file.display().to_string();
        let mut args = vec!["template", "x", agent.as_str(), "-f", file.as_str()];
        args.extend_from_slice(&required);
        let err = helm_err(home, &args);
        assert!(err.contains(what), "{name}: {err}");
        args.push("--skip-schema-validation");
        let err = helm_err(home, &args);
        assert!(
            err.contains("cannot be granted by this chart"),
            "{name}: {err}"
        );
    }
    for set in ["cluster.name=Not_A_Name", "hub.endpoint=http://hub:80"] {
        let mut args = vec!["template", "x", agent.as_str()];
        args.extend_from_slice(&required);
        args.extend_from_slice(&["--set", set]);
        let err = helm_err(home, &args);
        let field = set.split('=').next().unwrap().replace('.', "/");
        assert!(err.contains(&field), "--set {set}: {err}");
    }
}

/// Join mode, with the values `drbridge cluster join` prints (the fixture is its output,
/// checked by crates/cli): the token in a Secret, the agent's files in a writable emptyDir,
/// and Secret access only to its own TLS Secret, by name.
#[test]
fn agent_chart_join_mode_renders_what_cluster_join_prints() {
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let agent = chart("drbridge-agent");
    let printed = fixture("agent-join.yaml");
    let values: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(&printed).unwrap()).unwrap();
    let token = values["join"]["token"].as_str().unwrap();
    helm_ok(home, &["lint", "--strict", &agent, "-f", &printed]);

    let objs = render(home, "drbridge-agent", &["-f", &printed]);
    assert_least_privilege(&objs);
    let cluster_role = one(&objs, "ClusterRole");
    assert!(
        !unrestricted_grants(cluster_role)
            .keys()
            .any(|(_, r)| r == "secrets"),
        "no cluster-wide Secrets in join mode either"
    );
    // get at start, patch (server-side apply) after a join or renewal, create when that apply
    // makes the Secret (authorised with its name); by name, so not the token's Secret nor any
    // other. The install test below shows the API server needs and accepts exactly this.
    assert_eq!(
        secret_rules(&objs),
        vec![(
            set(&["drbridge-agent-tls"]),
            set(&["get", "create", "patch"])
        )]
    );
    let role = one(&objs, "Role");
    let binding = one(&objs, "RoleBinding");
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    assert_eq!(binding["subjects"][0]["name"], "drbridge-agent");
    assert_eq!(binding["subjects"][0]["namespace"], "drbridge");

    let deploy = one(&objs, "Deployment");
    assert_eq!(deploy["spec"]["replicas"], 1);
    assert_deployment(deploy, false, false, 9991, false);
    let env = env_of(deploy);
    assert_eq!(env["DRBRIDGE_CLUSTER"], "dr1");
    assert_eq!(env["DRBRIDGE_HUB_ENDPOINT"], "https://hub.example.com:8443");
    assert_eq!(
        env["DRBRIDGE_JOIN_ENDPOINT"],
        "https://hub.example.com:8444"
    );
    assert_eq!(env["DRBRIDGE_JOIN_CA"], "/etc/drbridge/join/ca.crt");
    assert_eq!(env["DRBRIDGE_TLS_SECRET"], "drbridge-agent-tls");
    assert_eq!(env["DRBRIDGE_TLS_SECRET_NAMESPACE"], "drbridge");
    assert_eq!(env["DRBRIDGE_TLS_CERT"], "/etc/drbridge/tls/tls.crt");
    assert_eq!(env["DRBRIDGE_TLS_KEY"], "/etc/drbridge/tls/tls.key");
    assert_eq!(env["DRBRIDGE_TLS_CA"], "/etc/drbridge/tls/ca.crt");
    let token_env = &env_entries(deploy)["DRBRIDGE_JOIN_TOKEN"];
    assert!(token_env.get("value").is_none(), "never in the pod spec");
    let key_ref = &token_env["valueFrom"]["secretKeyRef"];
    let secret = one(&objs, "Secret");
    assert_eq!(key_ref["name"], secret["metadata"]["name"]);
    assert_eq!(
        secret["stringData"][key_ref["key"].as_str().unwrap()],
        token
    );
    let pod = &deploy["spec"]["template"]["spec"];
    assert_eq!(
        deploy["spec"]["template"]["metadata"]["annotations"]["drbridge.io/join-token-id"],
        token.split('.').next().unwrap(),
        "a new token restarts the agent; only the public id is shown"
    );
    let volumes = pod["volumes"].as_array().unwrap();
    let volume = |name: &str| {
        volumes
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("volume {name}"))
    };
    assert_eq!(volume("tls")["emptyDir"]["medium"], "Memory");
    let ca_map = find(&objs, "ConfigMap")
        .into_iter()
        .find(|c| c["metadata"]["name"] == volume("join-ca")["configMap"]["name"])
        .expect("the join CA ConfigMap");
    assert_eq!(
        ca_map["data"]["ca.crt"].as_str().unwrap().trim(),
        values["join"]["hubCA"].as_str().unwrap().trim()
    );
    let mounts = pod["containers"][0]["volumeMounts"].as_array().unwrap();
    assert!(mounts.iter().any(|m| m["name"] == "join-ca"
        && m["mountPath"] == "/etc/drbridge/join"
        && m["readOnly"] == true));

    // A Secret the user made instead of a token value: the chart makes none.
    let objs = render(
        home,
        "drbridge-agent",
        &[
            "-f",
            &printed,
            "--set",
            "join.token=",
            "--set",
            "join.tokenSecret.name=dr1-join",
            "--set",
            "join.tokenSecret.key=t",
        ],
    );
    assert!(find(&objs, "Secret").is_empty());
    let key_ref =
        &env_entries(one(&objs, "Deployment"))["DRBRIDGE_JOIN_TOKEN"]["valueFrom"]["secretKeyRef"];
    assert_eq!(
        (&key_ref["name"], &key_ref["key"]),
        (&json!("dr1-join"), &json!("t"))
    );
    assert_eq!(secret_rules(&objs).len(), 1);
    // Without RBAC from the chart, no Role either.
    let objs = render(
        home,
        "drbridge-agent",
        &["-f", &printed, "--set", "rbac.create=false"],
    );
    assert!(find(&objs, "Role").is_empty() && find(&objs, "ClusterRole").is_empty());

    for (set, what) in [
        ("join.hubCA=", "join.hubCA is required"),
        ("join.tokenSecret.name=x", "alternatives"),
        ("join.token=not-a-token", "/join/token"),
        ("join.endpoint=hub:8444", "/join/endpoint"),
        ("join.hubCA=hello", "/join/hubCA"),
    ] {
        let err = helm_err(
            home,
            &["template", "x", &agent, "-f", &printed, "--set", set],
        );
        assert!(err.contains(what), "--set {set}: {err}");
    }
}

// ---------------------------------------------------------------------------------------
// Installed into real control planes.

/// A kubeconfig that authenticates as a ServiceAccount with a fresh token.
async fn service_account_kubeconfig(
    env: &Env,
    cluster: &str,
    namespace: &str,
    sa: &str,
) -> PathBuf {
    let admin = env.client(cluster).await.unwrap();
    let sas: Api<ServiceAccount> = Api::namespaced(admin, namespace);
    let req = TokenRequest {
        spec: Some(TokenRequestSpec {
            expiration_seconds: Some(3600),
            ..Default::default()
        }),
        ..Default::default()
    };
    let token = sas
        .create_token_request(sa, &PostParams::default(), &req)
        .await
        .unwrap_or_else(|e| panic!("TokenRequest for {namespace}/{sa} on {cluster}: {e}"))
        .status
        .expect("token issued")
        .token;
    let ca = env.dir().join(cluster).join("pki").join("ca.crt");
    let kc = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster, "cluster": {
            "server": env.server(cluster).unwrap(),
            "certificate-authority": ca,
        }}],
        "users": [{"name": sa, "user": {"token": token}}],
        "contexts": [{"name": sa, "context": {"cluster": cluster, "user": sa}}],
        "current-context": sa,
    });
    let path = env.dir().join(format!("{cluster}-{sa}.kubeconfig"));
    std::fs::write(&path, serde_json::to_string_pretty(&kc).unwrap()).unwrap();
    path
}

async fn create_namespace(client: &kube::Client, name: &str) {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
}

/// A Secret shaped as `kubectl create secret generic --from-file` makes it.
async fn create_tls_secret(client: &kube::Client, ns: &str, name: &str, files: &[(&str, &Path)]) {
    let data: BTreeMap<String, String> = files
        .iter()
        .map(|(k, p)| (k.to_string(), std::fs::read_to_string(p).unwrap()))
        .collect();
    let s: Secret = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": ns},
        "stringData": data,
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &s)
        .await
        .unwrap();
}

fn dynamic_api(
    client: &kube::Client,
    gvk: (&str, &str, &str),
    plural: &str,
    ns: Option<&str>,
) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(gvk.0, gvk.1, gvk.2), plural);
    match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    }
}

fn works(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    dynamic_api(
        client,
        ("work.open-cluster-management.io", "v1", "ManifestWork"),
        "manifestworks",
        Some(ns),
    )
}

fn views(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    dynamic_api(
        client,
        (
            "view.open-cluster-management.io",
            "v1beta1",
            "ManagedClusterView",
        ),
        "managedclusterviews",
        Some(ns),
    )
}

fn managed_clusters(client: &kube::Client) -> Api<DynamicObject> {
    dynamic_api(
        client,
        ("cluster.open-cluster-management.io", "v1", "ManagedCluster"),
        "managedclusters",
        None,
    )
}

fn dynamic(v: Value) -> DynamicObject {
    serde_json::from_value(v).unwrap()
}

fn condition<'a>(obj: &'a DynamicObject, type_: &str) -> Option<&'a Value> {
    obj.data["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

/// The status code of a refused request, or panics if it was not refused.
fn refused<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> u16 {
    match r {
        Err(kube::Error::Api(s)) => s.code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Ramen's `volrepgroup-edit` ClusterRole, as its ramen-dr-cluster work carries it.
fn ramen_cluster_role(name: &str, resource: &str) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {
            "name": format!("open-cluster-management:klusterlet-work-sa:agent:{name}"),
            "labels": {"open-cluster-management.io/aggregate-to-work": "true"},
        },
        "rules": [{
            "apiGroups": ["ramendr.openshift.io"], "resources": [resource],
            "verbs": ["create", "get", "list", "update", "delete"],
        }],
    })
}

fn manifest_work(name: &str, ns: &str, manifests: Vec<Value>) -> DynamicObject {
    dynamic(json!({
        "apiVersion": "work.open-cluster-management.io/v1", "kind": "ManifestWork",
        "metadata": {"name": name, "namespace": ns,
                     "labels": {"ramendr.openshift.io/created-by-ramen": "true"}},
        "spec": {"workload": {"manifests": manifests}},
    }))
}

/// What the kubelet does for the chart's pod, in a local directory: each volume the container
/// mounts becomes a directory (projected Secrets and ConfigMaps written out, emptyDirs empty).
/// Returns mountPath -> local directory.
async fn kubelet_mounts(
    admin: &kube::Client,
    ns: &str,
    deploy: &Value,
    dir: &Path,
) -> BTreeMap<String, PathBuf> {
    let pod = &deploy["spec"]["template"]["spec"];
    let volumes = pod["volumes"].as_array().unwrap();
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), ns);
    let maps: Api<ConfigMap> = Api::namespaced(admin.clone(), ns);
    let mut mounts = BTreeMap::new();
    for m in pod["containers"][0]["volumeMounts"].as_array().unwrap() {
        let name = m["name"].as_str().unwrap();
        let local = dir.join(name);
        std::fs::create_dir_all(&local).unwrap();
        let v = volumes.iter().find(|v| v["name"] == name).unwrap();
        let mut files: Vec<(String, Vec<u8>)> = Vec::new();
        if let Some(sources) = v["projected"]["sources"].as_array() {
            for src in sources {
                let s = &src["secret"];
                let name = s["name"].as_str().unwrap();
                let data = secrets
                    .get(name)
                    .await
                    .unwrap_or_else(|e| panic!("Secret {ns}/{name} for the pod: {e}"))
                    .data
                    .unwrap_or_default();
                for item in s["items"].as_array().unwrap() {
                    let key = item["key"].as_str().unwrap();
                    let bytes = data
                        .get(key)
                        .unwrap_or_else(|| panic!("Secret {ns}/{name} has no {key}"));
                    files.push((item["path"].as_str().unwrap().into(), bytes.0.clone()));
                }
            }
        } else if let Some(cm) = v["configMap"]["name"].as_str() {
            for (k, val) in maps.get(cm).await.unwrap().data.unwrap_or_default() {
                files.push((k, val.into_bytes()));
            }
        } else {
            assert!(v.get("emptyDir").is_some(), "volume {v}");
        }
        for (path, bytes) in files {
            std::fs::write(local.join(path), bytes).unwrap();
        }
        mounts.insert(m["mountPath"].as_str().unwrap().to_string(), local);
    }
    mounts
}

/// The binary's command line as clap reads it from the pod's environment. Every variable the
/// chart sets must be a flag of the binary; paths under the pod's mounts become the local
/// directories of [`kubelet_mounts`]; `secretKeyRef` values are read as the kubelet reads
/// them; `fieldRef`s (the pod's name) are left out.
async fn args_from_pod_env(
    command: clap::Command,
    admin: &kube::Client,
    ns: &str,
    deploy: &Value,
    mounts: &BTreeMap<String, PathBuf>,
) -> Vec<String> {
    let mut argv = vec![command.get_name().to_string()];
    for (name, e) in env_entries(deploy) {
        let value = if let Some(v) = e.get("value") {
            v.as_str().unwrap().to_string()
        } else if let Some(r) = e["valueFrom"].get("secretKeyRef") {
            let secret = Api::<Secret>::namespaced(admin.clone(), ns)
                .get(r["name"].as_str().unwrap())
                .await
                .unwrap();
            String::from_utf8(secret.data.unwrap()[r["key"].as_str().unwrap()].0.clone()).unwrap()
        } else {
            assert!(e["valueFrom"].get("fieldRef").is_some(), "{e}");
            continue;
        };
        let arg = command
            .get_arguments()
            .find(|a| a.get_env().is_some_and(|n| n == name.as_str()))
            .unwrap_or_else(|| panic!("{name} is not a flag of {}", command.get_name()));
        let long = arg.get_long().unwrap();
        let value = mounts
            .iter()
            .find_map(|(mount, local)| {
                value
                    .strip_prefix(&format!("{mount}/"))
                    .map(|rest| local.join(rest).display().to_string())
            })
            .unwrap_or(value);
        if arg.get_action().takes_values() {
            argv.push(format!("--{long}={value}"));
        } else if value == "true" {
            argv.push(format!("--{long}"));
        }
    }
    argv
}

#[tokio::test(flavor = "multi_thread")]
async fn charts_install_and_their_service_accounts_are_enough_for_hub_and_agent() {
    drbridge_integration_tests::init_logging();
    let _ = drbridge_tls::rustls::crypto::ring::default_provider().install_default();
    // Build helm (first run only) before the clusters start, not while they wait.
    tokio::task::block_in_place(helm);
    let env = Env::start_for_test(&["hub", "dr1"]).await.unwrap();
    let home = env.dir().join("helm-home");
    let hub_admin = env.client("hub").await.unwrap();
    let dr1_admin = env.client("dr1").await.unwrap();
    let pki =
        drbridge_localenv::bridge::BridgePki::ensure(&env.dir().join("drbridge-pki")).unwrap();
    let hub_tls = pki.hub();

    // The hub listens before the agent chart is installed, so its addresses can be values.
    // Two replicas, as the chart runs them, behind a front that plays their Service.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let listener1 = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let front = drbridge_testbed::front::Front::start(
        "127.0.0.1:0".parse().unwrap(),
        vec![
            listener.local_addr().unwrap(),
            listener1.local_addr().unwrap(),
        ],
    )
    .await
    .unwrap();
    let endpoint = format!("https://127.0.0.1:{}", front.addr().port());
    let join_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let join_endpoint = format!(
        "https://127.0.0.1:{}",
        join_listener.local_addr().unwrap().port()
    );

    // Install the hub as a user would (docs/install.md): namespace, the CA Secret
    // `drbridge-ca`, the serving certificate that CA signed, helm install.
    create_namespace(&hub_admin, "drbridge-system").await;
    let read = |p: PathBuf| std::fs::read_to_string(p).unwrap();
    let ca = drbridge_tls::pki::Ca::from_pem(&read(pki.ca_cert()), &read(pki.dir.join("ca.key")))
        .unwrap();
    let (_, created) = drbridge_hub::clusters::install_ca(&hub_admin, "drbridge-system", &ca)
        .await
        .unwrap();
    assert!(created);
    create_tls_secret(
        &hub_admin,
        "drbridge-system",
        "drbridge-hub-tls",
        &[("tls.crt", &hub_tls.cert), ("tls.key", &hub_tls.key)],
    )
    .await;
    let hub_kc = env.kubeconfig("hub").unwrap().display().to_string();
    let hub_chart = chart("drbridge-hub");
    tokio::task::block_in_place(|| {
        helm_ok(
            &home,
            &[
                "install",
                "drbridge-hub",
                &hub_chart,
                "-n",
                "drbridge-system",
                "--kubeconfig",
                &hub_kc,
            ],
        )
    });
    let crd_established = |client: &kube::Client, crd: &'static str| {
        let api: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
            Api::all(client.clone());
        async move {
            eventually(&format!("CRD {crd} established"), DEADLINE, || async {
                let c = api.get(crd).await.ok()?;
                c.status?
                    .conditions?
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
                    .then_some(())
            })
            .await
        }
    };
    for crd in [
        "manifestworks.work.open-cluster-management.io",
        "managedclusters.cluster.open-cluster-management.io",
    ] {
        crd_established(&hub_admin, crd).await;
    }

    // The hub as its chart runs it: the Deployment's environment (namespace = the release's,
    // registration always on), its mounted files, its ServiceAccount.
    let hub_deploy: Value = serde_json::to_value(
        Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(
            hub_admin.clone(),
            "drbridge-system",
        )
        .get("drbridge-hub")
        .await
        .unwrap(),
    )
    .unwrap();
    let hub_mounts = kubelet_mounts(
        &hub_admin,
        "drbridge-system",
        &hub_deploy,
        &env.dir().join("hub-pod"),
    )
    .await;
    let hub_args = <drbridge_hub::Args as clap::Parser>::try_parse_from(
        args_from_pod_env(
            <drbridge_hub::Args as clap::CommandFactory>::command(),
            &hub_admin,
            "drbridge-system",
            &hub_deploy,
            &hub_mounts,
        )
        .await,
    )
    .unwrap();
    hub_args.validate().unwrap();
    assert_eq!(hub_args.namespace, "drbridge-system");
    assert!(!hub_args.disable_join);
    let hub_files =
        drbridge_tls::TlsPaths::new(&hub_args.tls_cert, &hub_args.tls_key, &hub_args.tls_ca);
    assert_eq!(
        read(hub_files.ca.clone()),
        read(pki.ca_cert()),
        "the hub trusts the CA in drbridge-ca"
    );
    let hub_sa_kc =
        service_account_kubeconfig(&env, "hub", "drbridge-system", "drbridge-hub").await;
    let hub_client = drbridge_localenv::client_for(&hub_sa_kc).await.unwrap();
    let replica = |identity: &str| {
        drbridge_hub::Hub::start(
            hub_client.clone(),
            drbridge_hub::HubOptions {
                registration: Some(drbridge_hub::registration::RegistrationConfig {
                    namespace: hub_args.namespace.clone(),
                    cert_validity: hub_args.cert_validity,
                    require_join: hub_args.require_join,
                }),
                // The chart's leader election, on the chart's Role.
                election: hub_args.election(identity),
                ..Default::default()
            },
            drbridge_hub::metrics::Metrics::default(),
        )
    };
    let hub = Arc::new(replica("drbridge-hub-0"));
    let mut ready = hub.ready();
    tokio::time::timeout(DEADLINE, ready.wait_for(|r| *r))
        .await
        .expect("the hub lists every watched kind and its identity Secrets as its ServiceAccount")
        .unwrap();
    assert!(hub_args.leader_election, "the chart elects a leader");
    tokio::time::timeout(DEADLINE, hub.leadership.wait_leader())
        .await
        .expect("the hub takes the Lease as its ServiceAccount");
    // The second replica: ready, and a follower while the first leads.
    let hub1 = Arc::new(replica("drbridge-hub-1"));
    let mut ready1 = hub1.ready();
    tokio::time::timeout(DEADLINE, ready1.wait_for(|r| *r))
        .await
        .expect("the second replica lists everything as the same ServiceAccount")
        .unwrap();
    assert!(hub.leadership.is_leader() && !hub1.leadership.is_leader());
    let serve = |hub: &Arc<drbridge_hub::Hub>, listener: tokio::net::TcpListener| {
        let server_tls = drbridge_tls::ServerTls::new(hub_files.clone()).unwrap();
        let serving = hub.clone();
        tokio::spawn(async move {
            serving
                .serve(
                    drbridge_tls::incoming(listener, server_tls),
                    std::future::pending(),
                )
                .await
                .unwrap();
        })
    };
    let server = serve(&hub, listener);
    let server1 = serve(&hub1, listener1);
    let join_tls = drbridge_tls::ServerTls::server_only(hub_files.clone()).unwrap();
    let join_service = hub.join_service().expect("registration is on");
    let join_server = tokio::spawn(async move {
        drbridge_hub::serve_join(
            join_service,
            drbridge_tls::incoming_server_only(join_listener, join_tls),
            std::future::pending(),
        )
        .await
        .unwrap();
    });

    // `drbridge cluster join dr1` (an admin on the hub): namespace, ManagedCluster, token.
    let dr1: drbridge_tls::ClusterName = "dr1".parse().unwrap();
    let (hub_ca, created) = drbridge_hub::clusters::ensure_ca(&hub_admin, "drbridge-system")
        .await
        .unwrap();
    assert!(!created, "the admin's CA is kept");
    drbridge_hub::clusters::register_cluster(&hub_admin, &dr1)
        .await
        .unwrap();
    let (token, _) = drbridge_hub::clusters::create_join_token(
        &hub_admin,
        "drbridge-system",
        &dr1,
        Duration::from_secs(3600),
    )
    .await
    .unwrap();
    let token = token.expose();

    // The agent chart with what `cluster join` prints (the fixture is its output, keys and
    // all), filled with this hub's values.
    let mut values: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(fixture("agent-join.yaml")).unwrap())
            .unwrap();
    values["hub"]["endpoint"] = json!(endpoint);
    values["join"]["endpoint"] = json!(join_endpoint);
    values["join"]["token"] = json!(token);
    values["join"]["hubCA"] = json!(hub_ca.bundle_pem);
    let values_file = env.dir().join("dr1-agent.yaml");
    std::fs::write(&values_file, serde_json::to_string_pretty(&values).unwrap()).unwrap();
    let values_file = values_file.display().to_string();
    create_namespace(&dr1_admin, "drbridge-agent").await;
    let dr1_kc = env.kubeconfig("dr1").unwrap().display().to_string();
    let agent_chart = chart("drbridge-agent");
    tokio::task::block_in_place(|| {
        helm_ok(
            &home,
            &[
                "install",
                "drbridge-agent",
                &agent_chart,
                "-n",
                "drbridge-agent",
                "--kubeconfig",
                &dr1_kc,
                "-f",
                &values_file,
                "--set",
                "hub.serverName=localhost",
            ],
        )
    });
    for (kc, ns, release) in [
        (&hub_kc, "drbridge-system", "drbridge-hub"),
        (&dr1_kc, "drbridge-agent", "drbridge-agent"),
    ] {
        let status = tokio::task::block_in_place(|| {
            helm_ok(
                &home,
                &[
                    "status",
                    release,
                    "-n",
                    ns,
                    "--kubeconfig",
                    kc,
                    "-o",
                    "json",
                ],
            )
        });
        let status: Value = serde_json::from_str(&status).unwrap();
        assert_eq!(status["info"]["status"], "deployed", "{release}: {status}");
    }

    // The charts' CRDs are served.
    for crd in [
        "appliedworks.drbridge.io",
        "clusterclaims.cluster.open-cluster-management.io",
    ] {
        crd_established(&dr1_admin, crd).await;
    }

    // The agent as its chart runs it: the Deployment's environment (join token from the
    // chart's Secret, join CA from its ConfigMap, files in the emptyDir), its ServiceAccount.
    let agent_deploy: Value = serde_json::to_value(
        Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(
            dr1_admin.clone(),
            "drbridge-agent",
        )
        .get("drbridge-agent")
        .await
        .unwrap(),
    )
    .unwrap();
    let agent_mounts = kubelet_mounts(
        &dr1_admin,
        "drbridge-agent",
        &agent_deploy,
        &env.dir().join("agent-pod"),
    )
    .await;
    let agent_sa_kc =
        service_account_kubeconfig(&env, "dr1", "drbridge-agent", "drbridge-agent").await;
    let mut argv = args_from_pod_env(
        <drbridge_agent::Args as clap::CommandFactory>::command(),
        &dr1_admin,
        "drbridge-agent",
        &agent_deploy,
        &agent_mounts,
    )
    .await;
    argv.push(format!("--kubeconfig={}", agent_sa_kc.display()));
    let agent_args = <drbridge_agent::Args as clap::Parser>::try_parse_from(argv).unwrap();
    agent_args.validate().unwrap();
    assert_eq!(agent_args.join.join_token.as_deref(), Some(token.as_str()));
    let agent_client = drbridge_localenv::client_for(&agent_sa_kc).await.unwrap();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // Join (the agent makes its key, trades the token, writes its Secret as its
    // ServiceAccount), then keep the certificate renewed.
    let rotation = drbridge_agent::join::prepare(&agent_args, &agent_client, stop_rx.clone())
        .await
        .expect("the agent joins as its ServiceAccount")
        .expect("a joined agent rotates its certificate");
    let stored = Api::<Secret>::namespaced(dr1_admin.clone(), "drbridge-agent")
        .get("drbridge-agent-tls")
        .await
        .expect("the agent keeps its identity in its TLS Secret");
    assert_eq!(
        stored.metadata.annotations.unwrap_or_default()[drbridge_agent::join::TOKEN_ID_ANNOTATION],
        token.split('.').next().unwrap()
    );
    let allowlist = agent_args.allowlist().unwrap();
    // The chart's allowlist, with the agent's own namespace denied (DRBRIDGE_NAMESPACE).
    let mut expected = Allowlist::default();
    expected.deny_namespace("drbridge-agent");
    assert_eq!(allowlist, expected);
    let mut cfg = drbridge_agent::WorkConfig::default();
    cfg.policy.allowlist = allowlist;
    cfg.reapply = None;
    let agent = Arc::new(
        drbridge_agent::Agent::start(
            Arc::new(drbridge_agent::KubeCluster::new(agent_client.clone())),
            Arc::new(drbridge_agent::KubeRecordStore::new(
                agent_client.clone(),
                "dr1",
            )),
            "dr1",
            cfg,
            drbridge_agent::metrics::Metrics::default(),
        )
        .await
        .expect("the agent starts as its ServiceAccount (records, claims, kube-system uid)"),
    );
    let (ready_tx, _ready_rx) = tokio::sync::watch::channel(false);
    let hub_endpoint = drbridge_agent::HubEndpoint {
        endpoint: agent_args.hub_endpoint.clone(),
        server_name: agent_args.server_name().unwrap(),
        tls: drbridge_tls::TlsPaths::new(
            &agent_args.tls_cert,
            &agent_args.tls_key,
            &agent_args.tls_ca,
        ),
        channel: drbridge_tls::ChannelOptions::default(),
        backoff_base: Duration::from_millis(200),
        backoff_cap: Duration::from_secs(2),
    };
    let running = agent.clone();
    let agent_task =
        tokio::spawn(async move { running.run(&hub_endpoint, &ready_tx, stop_rx).await });

    // Ramen's kind of work: namespaces, the DR-cluster operator's ConfigMap and Ramen's
    // VRG-edit ClusterRole, which the agent may create without `escalate` because it holds
    // every permission the role grants.
    works(&hub_admin, "dr1")
        .create(
            &PostParams::default(),
            &manifest_work(
                "app-mw",
                "dr1",
                vec![
                    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "app"}}),
                    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ramen-system"}}),
                    json!({"apiVersion": "v1", "kind": "ConfigMap",
                           "metadata": {"name": "ramen-dr-cluster-operator-config", "namespace": "ramen-system"},
                           "data": {"k": "v"}}),
                    ramen_cluster_role("volrepgroup-edit", "volumereplicationgroups"),
                ],
            ),
        )
        .await
        .unwrap();
    // A role under one of Ramen's names that grants more than the agent holds: the API server
    // refuses it (no escalate), and the work says so.
    let mut greedy = ramen_cluster_role("mmode-edit", "maintenancemodes");
    greedy["rules"] = json!([{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]);
    works(&hub_admin, "dr1")
        .create(
            &PostParams::default(),
            &manifest_work("greedy-mw", "dr1", vec![greedy]),
        )
        .await
        .unwrap();
    views(&hub_admin, "dr1")
        .create(
            &PostParams::default(),
            &dynamic(json!({
                "apiVersion": "view.open-cluster-management.io/v1beta1", "kind": "ManagedClusterView",
                "metadata": {"name": "ns-view", "namespace": "dr1"},
                "spec": {"scope": {"version": "v1", "kind": "Namespace", "name": "app"}},
            })),
        )
        .await
        .unwrap();

    // The hub wrote status, finalizers and cluster status; the agent applied.
    let mw = eventually("app-mw Applied and Available", DEADLINE, || async {
        let mw = works(&hub_admin, "dr1").get("app-mw").await.ok()?;
        let ok = |t| condition(&mw, t).is_some_and(|c| c["status"] == "True");
        (ok("Applied") && ok("Available")).then_some(mw)
    })
    .await;
    assert!(
        mw.metadata.finalizers.as_ref().is_some_and(|f| f
            .iter()
            .any(|f| f == "cluster.open-cluster-management.io/manifest-work-cleanup")),
        "the hub patched its finalizer in: {:?}",
        mw.metadata.finalizers
    );
    let cm = Api::<ConfigMap>::namespaced(dr1_admin.clone(), "ramen-system")
        .get("ramen-dr-cluster-operator-config")
        .await
        .unwrap();
    assert_eq!(cm.data.unwrap()["k"], "v");
    let role: k8s_openapi::api::rbac::v1::ClusterRole = Api::all(dr1_admin.clone())
        .get("open-cluster-management:klusterlet-work-sa:agent:volrepgroup-edit")
        .await
        .unwrap();
    assert_eq!(
        role.rules.unwrap()[0].resources.as_ref().unwrap()[0],
        "volumereplicationgroups"
    );

    // The work is not applied, and its manifest's condition carries the API server's refusal.
    let greedy = eventually("greedy-mw refused", DEADLINE, || async {
        let mw = works(&hub_admin, "dr1").get("greedy-mw").await.ok()?;
        condition(&mw, "Applied")
            .is_some_and(|c| c["status"] == "False")
            .then_some(mw)
    })
    .await;
    let manifest = &greedy.data["status"]["resourceStatus"]["manifests"][0];
    let applied = manifest["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Applied"))
        .unwrap_or_else(|| panic!("manifest conditions: {manifest}"));
    assert_eq!(applied["status"], "False", "{applied}");
    assert!(
        applied["message"]
            .as_str()
            .is_some_and(|m| m.contains("attempting to grant RBAC permissions not currently held")),
        "{applied}"
    );
    assert!(
        Api::<k8s_openapi::api::rbac::v1::ClusterRole>::all(dr1_admin.clone())
            .get_opt("open-cluster-management:klusterlet-work-sa:agent:mmode-edit")
            .await
            .unwrap()
            .is_none()
    );

    let view = eventually("ns-view result", DEADLINE, || async {
        let v = views(&hub_admin, "dr1").get("ns-view").await.ok()?;
        (v.data["status"]["result"]["metadata"]["name"] == "app").then_some(v)
    })
    .await;
    assert!(
        condition(&view, "Processing").is_some_and(|c| c["status"] == "True"),
        "{:?}",
        view.data
    );

    let mc = eventually("ManagedCluster dr1 Available", DEADLINE, || async {
        let mc = managed_clusters(&hub_admin).get("dr1").await.ok()?;
        condition(&mc, "ManagedClusterConditionAvailable")
            .is_some_and(|c| c["status"] == "True")
            .then_some(mc)
    })
    .await;
    let claims = mc.data["status"]["clusterClaims"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        claims.iter().any(|c| c["name"] == "id.k8s.io"),
        "{claims:?}"
    );

    // The agent's own records and claims, written as its ServiceAccount.
    let applied = dynamic_api(
        &dr1_admin,
        ("drbridge.io", "v1alpha1", "AppliedWork"),
        "appliedworks",
        None,
    );
    let record = applied
        .get("dr1.app-mw")
        .await
        .expect("AppliedWork of app-mw");
    assert_eq!(
        record.data["spec"]["workName"], "app-mw",
        "{:?}",
        record.data
    );
    let claim_api = dynamic_api(
        &dr1_admin,
        (
            "cluster.open-cluster-management.io",
            "v1alpha1",
            "ClusterClaim",
        ),
        "clusterclaims",
        None,
    );
    claim_api
        .get("id.k8s.io")
        .await
        .expect("ClusterClaim id.k8s.io");

    // Registration as the ServiceAccounts: the join made the identity record (hub: create);
    // a renewal rewrites it (hub: get, update) and the agent's Secret (agent: patch).
    let record_of = || async {
        let s = Api::<Secret>::namespaced(hub_admin.clone(), "drbridge-system")
            .get("drbridge-identity-dr1")
            .await
            .expect("dr1's identity record");
        drbridge_hub::identity::IdentityRecord::from_secret(&s)
            .unwrap()
            .1
    };
    let joined = record_of().await;
    assert_eq!(joined.certificates.len(), 1, "{joined:?}");
    let creds = drbridge_agent::join::Credentials::from_args(&agent_args, &agent_client).unwrap();
    let renewed = creds
        .renew_once()
        .await
        .expect("the agent renews over mutual TLS; the hub rewrites the record");
    let serials: BTreeSet<String> = record_of()
        .await
        .certificates
        .iter()
        .map(|c| c.serial.clone())
        .collect();
    assert_eq!(
        serials,
        BTreeSet::from([
            joined.certificates[0].serial.clone(),
            renewed.serial.clone()
        ])
    );
    let stored = Api::<Secret>::namespaced(dr1_admin.clone(), "drbridge-agent")
        .get("drbridge-agent-tls")
        .await
        .unwrap();
    assert_eq!(
        stored.data.unwrap()["tls.crt"].0,
        std::fs::read(&agent_args.tls_cert).unwrap(),
        "the renewed certificate is in the Secret and the files"
    );

    // And no more: what the ServiceAccounts may not do, the API server refuses.
    let secret: Secret =
        serde_json::from_value(json!({"metadata": {"name": "s", "namespace": "app"}})).unwrap();
    assert_eq!(
        refused(
            Api::<Secret>::namespaced(agent_client.clone(), "app")
                .create(&PostParams::default(), &secret)
                .await
        ),
        403,
        "the agent may not create Secrets"
    );
    let deployment: k8s_openapi::api::apps::v1::Deployment = serde_json::from_value(json!({
        "metadata": {"name": "d", "namespace": "app"},
        "spec": {"selector": {"matchLabels": {"a": "b"}},
                 "template": {"metadata": {"labels": {"a": "b"}},
                              "spec": {"containers": [{"name": "c", "image": "busybox"}]}}},
    }))
    .unwrap();
    assert_eq!(
        refused(
            Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(agent_client.clone(), "app")
                .create(&PostParams::default(), &deployment)
                .await
        ),
        403,
        "the agent may not create Deployments"
    );
    assert_eq!(
        refused(
            Api::<Secret>::namespaced(agent_client.clone(), "drbridge-agent")
                .list(&Default::default())
                .await
        ),
        403,
        "the agent may not read Secrets, not even its own namespace's"
    );
    let crb: k8s_openapi::api::rbac::v1::ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "take-over"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": "drbridge-agent", "namespace": "drbridge-agent"}],
    }))
    .unwrap();
    assert_eq!(
        refused(
            Api::all(agent_client.clone())
                .create(&PostParams::default(), &crb)
                .await
        ),
        403,
        "the agent may not bind roles"
    );
    let cluster_roles: Api<k8s_openapi::api::rbac::v1::ClusterRole> =
        Api::all(agent_client.clone());
    assert_eq!(
        refused(
            cluster_roles
                .delete("cluster-admin", &Default::default())
                .await
        ),
        403,
        "the agent may delete only Ramen's ClusterRoles"
    );
    let agent_secrets = Api::<Secret>::namespaced(agent_client.clone(), "drbridge-agent");
    assert_eq!(
        refused(agent_secrets.get("drbridge-agent-join-token").await),
        403,
        "the agent may not read its join token's Secret (the kubelet puts it in the env)"
    );
    let other: Secret = serde_json::from_value(
        json!({"metadata": {"name": "other", "namespace": "drbridge-agent"}}),
    )
    .unwrap();
    assert_eq!(
        refused(agent_secrets.create(&PostParams::default(), &other).await),
        403,
        "the agent may not create other Secrets"
    );
    assert_eq!(
        refused(
            agent_secrets
                .patch(
                    "other",
                    &kube::api::PatchParams::apply("x"),
                    &kube::api::Patch::Apply(&other),
                )
                .await
        ),
        403,
        "nor apply them"
    );
    assert_eq!(
        refused(
            Api::<Secret>::namespaced(hub_client.clone(), "dr1")
                .list(&Default::default())
                .await
        ),
        403,
        "the hub may not read Secrets outside its namespace"
    );
    assert_eq!(
        refused(
            Api::<Secret>::all(hub_client.clone())
                .list(&Default::default())
                .await
        ),
        403,
        "nor cluster-wide"
    );
    assert_eq!(
        refused(
            Api::<Secret>::namespaced(hub_client.clone(), "drbridge-system")
                .patch(
                    "drbridge-ca",
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
                )
                .await
        ),
        403,
        "the hub does not patch Secrets"
    );
    assert_eq!(
        refused(
            works(&hub_client, "dr1")
                .delete("app-mw", &Default::default())
                .await
        ),
        403,
        "the hub may not delete ManifestWorks"
    );
    assert_eq!(
        refused(
            works(&hub_client, "dr1")
                .create(&PostParams::default(), &manifest_work("x", "dr1", vec![]))
                .await
        ),
        403,
        "the hub may not create ManifestWorks"
    );

    // A rolling update stops the leader: it releases the Lease, the second replica takes it
    // as its ServiceAccount, and the agent, through the front, goes on with it.
    server.abort();
    let _ = server.await;
    let mut hub = Arc::try_unwrap(hub).unwrap_or_else(|_| panic!("the server held the hub"));
    hub.release_leadership().await;
    tokio::time::timeout(DEADLINE, hub1.leadership.wait_leader())
        .await
        .expect("the second replica takes the released Lease as its ServiceAccount");
    works(&hub_admin, "dr1")
        .create(
            &PostParams::default(),
            &manifest_work(
                "after-handover",
                "dr1",
                vec![json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "handover"}})],
            ),
        )
        .await
        .unwrap();
    eventually(
        "after-handover Applied by the new leader's agent",
        DEADLINE,
        || async {
            let mw = works(&hub_admin, "dr1").get("after-handover").await.ok()?;
            condition(&mw, "Applied")
                .is_some_and(|c| c["status"] == "True")
                .then_some(())
        },
    )
    .await;
    assert!(
        Api::<k8s_openapi::api::core::v1::Namespace>::all(dr1_admin.clone())
            .get_opt("handover")
            .await
            .unwrap()
            .is_some()
    );

    stop_tx.send(true).unwrap();
    tokio::time::timeout(DEADLINE, agent_task)
        .await
        .expect("the agent stops")
        .unwrap();
    tokio::time::timeout(DEADLINE, rotation)
        .await
        .expect("certificate rotation stops")
        .unwrap();
    server1.abort();
    join_server.abort();
    drop((hub, hub1, front));
}
