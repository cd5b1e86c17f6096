//! The Helm charts, used as users use them: `helm lint` and `helm template` (default values and
//! a values file with most options), assertions on the rendered RBAC, then `helm install` into
//! real local control planes and the real hub and agent running as the ServiceAccounts the
//! charts created, showing their RBAC is enough, and no more than that.
//!
//! There is no kubelet, so the charts' pods never run: the hub and the agent run in this test
//! process, each with a kubeconfig holding a token of its chart's ServiceAccount.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use drbridge_integration_tests::{eventually, repo_root};
use drbridge_localenv::Env;
use drbridge_model::Allowlist;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, ServiceAccount};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PostParams};
use serde_json::{Value, json};

const DEADLINE: Duration = Duration::from_secs(60);

/// The pinned helm, built from its Go module on first use (drbridge-localenv).
fn helm() -> &'static Path {
    static HELM: OnceLock<PathBuf> = OnceLock::new();
    HELM.get_or_init(|| {
        drbridge_localenv::ensure_helm(&drbridge_localenv::cache_dir(), &|_| {})
            .expect("building helm")
    })
}

/// Runs helm with its own config, cache and data directories, so the user's repositories
/// and plugins play no part.
fn run_helm(home: &Path, args: &[&str]) -> Output {
    Command::new(helm())
        .args(args)
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_DATA_HOME", home.join("data"))
        .env_remove("KUBECONFIG")
        .output()
        .expect("running helm")
}

fn helm_ok(home: &Path, args: &[&str]) -> String {
    let out = run_helm(home, args);
    assert!(
        out.status.success(),
        "helm {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn helm_err(home: &Path, args: &[&str]) -> String {
    let out = run_helm(home, args);
    assert!(
        !out.status.success(),
        "helm {args:?} should have failed:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn chart(name: &str) -> String {
    repo_root().join("charts").join(name).display().to_string()
}

fn fixture(name: &str) -> String {
    repo_root()
        .join("tests/integration/fixtures/charts")
        .join(name)
        .display()
        .to_string()
}

/// `helm template` output as objects.
fn render(home: &Path, chart_name: &str, extra: &[&str]) -> Vec<Value> {
    let chart = chart(chart_name);
    let mut args = vec!["template", chart_name, &chart, "--namespace", "drbridge"];
    args.extend_from_slice(extra);
    let text = helm_ok(home, &args);
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text)
        .unwrap_or_else(|e| panic!("helm template {chart_name} is not YAML: {e}\n{text}"));
    docs.into_iter().filter(|d| !d.is_null()).collect()
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

/// No role of the chart may hold wildcards, privilege-escalation verbs, or Secrets.
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
            assert!(
                !strings(&rule["resources"]).contains(&"secrets".to_string()),
                "{name}: Secrets: {rule}"
            );
            assert!(rule.get("nonResourceURLs").is_none(), "{name}: {rule}");
        }
    }
    for binding in find(objs, "ClusterRoleBinding") {
        assert_ne!(binding["roleRef"]["name"], "cluster-admin");
    }
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

fn assert_single_writer_deployment(deploy: &Value, grpc: bool, admin_port: i64) {
    let spec = &deploy["spec"];
    assert_eq!(spec["replicas"], 1);
    assert_eq!(spec["strategy"]["type"], "Recreate");
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
    assert!(c["resources"]["requests"]["cpu"].is_string(), "{c}");
    assert!(c["resources"]["requests"]["memory"].is_string(), "{c}");
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    let mounts = c["volumeMounts"].as_array().unwrap();
    assert!(
        mounts
            .iter()
            .any(|m| m["mountPath"] == "/etc/drbridge/tls" && m["readOnly"] == true)
    );
}

/// The projected TLS volume: (secret name, key, path) per item.
fn tls_items(deploy: &Value) -> BTreeSet<(String, String, String)> {
    let vols = deploy["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap();
    let tls = vols.iter().find(|v| v["name"] == "tls").unwrap();
    let mut items = BTreeSet::new();
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
        (cluster, "managedclusters", &["get", "list", "watch"]),
        (cluster, "managedclusters/status", &["patch"]),
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
fn hub_chart_lints_and_renders_a_least_privilege_single_writer() {
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
            "Service",
            "ServiceAccount",
        ]),
        "no ServiceMonitor by default"
    );
    assert_least_privilege(&objs);
    assert_eq!(
        unrestricted_grants(one(&objs, "ClusterRole")),
        hub_expected_grants()
    );
    let binding = one(&objs, "ClusterRoleBinding");
    assert_eq!(binding["subjects"][0]["name"], "drbridge-hub");
    assert_eq!(binding["subjects"][0]["namespace"], "drbridge");
    assert_eq!(
        one(&objs, "ServiceAccount")["metadata"]["name"],
        "drbridge-hub"
    );

    let deploy = one(&objs, "Deployment");
    assert_single_writer_deployment(deploy, true, 9990);
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
    assert!(
        !env.contains_key("DRBRIDGE_HEARTBEAT_SECONDS"),
        "unset values keep the binary's defaults"
    );
    assert_eq!(
        tls_items(deploy),
        set_of(&[
            ("drbridge-hub-tls", "tls.crt", "tls.crt"),
            ("drbridge-hub-tls", "tls.key", "tls.key"),
            ("drbridge-hub-tls", "ca.crt", "ca.crt"),
        ])
    );
    let services = find(&objs, "Service");
    let port_of = |name: &str| {
        let s = services
            .iter()
            .find(|s| s["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("Service {name}"));
        assert_eq!(s["spec"]["type"], "ClusterIP");
        s["spec"]["ports"][0].clone()
    };
    assert_eq!(port_of("drbridge-hub")["port"], 8443);
    assert_eq!(port_of("drbridge-hub")["targetPort"], "grpc");
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
    assert_single_writer_deployment(deploy, true, 9000);
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
    assert_eq!(env["DRBRIDGE_HEARTBEAT_SECONDS"], "3");
    assert_eq!(env["DRBRIDGE_PRESENCE_TIMEOUT_SECONDS"], "9");
    assert_eq!(env["DRBRIDGE_STATUS_QUEUE"], "100");
    assert_eq!(env["DRBRIDGE_LOG_FORMAT"], "plain");
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

    // The schema refuses nonsense before anything renders.
    for (set, what) in [
        ("config.logFormat=xml", "logFormat"),
        ("admin.port=8443", "admin"),
        ("config.maxSyncBytes=10", "maxSyncBytes"),
        ("replicas=2", "replicas"),
    ] {
        let err = helm_err(home, &["template", "x", &hub, "--set", set]);
        assert!(err.contains(what), "--set {set}: {err}");
    }
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
    // Views are read-only and cover Ramen's catalogue.
    for (g, r) in [
        ("storage.k8s.io", "storageclasses"),
        ("apiextensions.k8s.io", "customresourcedefinitions"),
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
    let agent_tls = pki.agent("dr1").unwrap();
    let hub_tls = pki.hub();

    // The hub listens before the agent chart is installed, so its address can be a value.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!(
        "https://127.0.0.1:{}",
        listener.local_addr().unwrap().port()
    );

    // Install both charts as a user would: namespace, TLS Secret, helm install.
    create_namespace(&hub_admin, "drbridge-system").await;
    create_tls_secret(
        &hub_admin,
        "drbridge-system",
        "drbridge-hub-tls",
        &[
            ("tls.crt", &hub_tls.cert),
            ("tls.key", &hub_tls.key),
            ("ca.crt", &hub_tls.ca),
        ],
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
    create_namespace(&dr1_admin, "drbridge-agent").await;
    create_tls_secret(
        &dr1_admin,
        "drbridge-agent",
        "drbridge-agent-tls",
        &[
            ("tls.crt", &agent_tls.cert),
            ("tls.key", &agent_tls.key),
            ("ca.crt", &agent_tls.ca),
        ],
    )
    .await;
    let dr1_kc = env.kubeconfig("dr1").unwrap().display().to_string();
    let agent_chart = chart("drbridge-agent");
    let endpoint_value = format!("hub.endpoint={endpoint}");
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
                "--set",
                "cluster.name=dr1",
                "--set",
                &endpoint_value,
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
    for (client, crd) in [
        (&hub_admin, "manifestworks.work.open-cluster-management.io"),
        (&dr1_admin, "appliedworks.drbridge.io"),
        (
            &dr1_admin,
            "clusterclaims.cluster.open-cluster-management.io",
        ),
    ] {
        let api: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
            Api::all(client.clone());
        eventually(&format!("CRD {crd} established"), DEADLINE, || async {
            let c = api.get(crd).await.ok()?;
            c.status?
                .conditions?
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
                .then_some(())
        })
        .await;
    }

    // What registration would have made on the hub: the cluster's namespace and ManagedCluster.
    create_namespace(&hub_admin, "dr1").await;
    managed_clusters(&hub_admin)
        .create(
            &PostParams::default(),
            &dynamic(json!({
                "apiVersion": "cluster.open-cluster-management.io/v1", "kind": "ManagedCluster",
                "metadata": {"name": "dr1", "labels": {"name": "dr1"}},
                "spec": {"hubAcceptsClient": true},
            })),
        )
        .await
        .unwrap();

    // The hub, as its chart's ServiceAccount.
    let hub_sa_kc =
        service_account_kubeconfig(&env, "hub", "drbridge-system", "drbridge-hub").await;
    let hub_client = drbridge_localenv::client_for(&hub_sa_kc).await.unwrap();
    let hub = drbridge_hub::Hub::start(
        hub_client.clone(),
        drbridge_hub::HubOptions::default(),
        drbridge_hub::metrics::Metrics::default(),
    );
    let mut ready = hub.ready();
    tokio::time::timeout(DEADLINE, ready.wait_for(|r| *r))
        .await
        .expect("the hub lists every watched kind as its ServiceAccount")
        .unwrap();
    let server_tls = drbridge_tls::ServerTls::new(hub_tls.clone()).unwrap();
    let service = hub.service.clone();
    let server = tokio::spawn(async move {
        drbridge_hub::serve(
            service,
            drbridge_tls::incoming(listener, server_tls),
            std::future::pending(),
        )
        .await
        .unwrap();
    });

    // The agent, as its chart's ServiceAccount, with the allowlist its chart rendered.
    let agent_sa_kc =
        service_account_kubeconfig(&env, "dr1", "drbridge-agent", "drbridge-agent").await;
    let agent_client = drbridge_localenv::client_for(&agent_sa_kc).await.unwrap();
    let cm = Api::<ConfigMap>::namespaced(dr1_admin.clone(), "drbridge-agent")
        .get("drbridge-agent-allowlist")
        .await
        .unwrap();
    let allowlist: Allowlist = serde_json::from_str(&cm.data.unwrap()["allowlist.json"]).unwrap();
    assert_eq!(allowlist, Allowlist::default());
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
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let hub_endpoint = drbridge_agent::HubEndpoint {
        endpoint: endpoint.clone(),
        server_name: "localhost".into(),
        tls: agent_tls.clone(),
        channel: drbridge_tls::ChannelOptions::default(),
        backoff_base: Duration::from_millis(200),
        backoff_cap: Duration::from_secs(2),
    };
    let running = agent.clone();
    let agent_task =
        tokio::spawn(async move { running.run(&hub_endpoint, &ready_tx, stop_rx).await });

    // Ramen's kind of work: a namespace, a ConfigMap and Ramen's VRG-edit ClusterRole, which the
    // agent may create without `escalate` because it holds every permission the role grants.
    works(&hub_admin, "dr1")
        .create(
            &PostParams::default(),
            &manifest_work(
                "app-mw",
                "dr1",
                vec![
                    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "app"}}),
                    json!({"apiVersion": "v1", "kind": "ConfigMap",
                           "metadata": {"name": "cm", "namespace": "app"}, "data": {"k": "v"}}),
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
                "metadata": {"name": "cm-view", "namespace": "dr1"},
                "spec": {"scope": {"version": "v1", "kind": "ConfigMap", "name": "cm", "namespace": "app"}},
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
    let cm = Api::<ConfigMap>::namespaced(dr1_admin.clone(), "app")
        .get("cm")
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

    let view = eventually("cm-view result", DEADLINE, || async {
        let v = views(&hub_admin, "dr1").get("cm-view").await.ok()?;
        (v.data["status"]["result"]["data"]["k"] == "v").then_some(v)
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
    assert_eq!(
        refused(
            Api::<Secret>::namespaced(hub_client.clone(), "drbridge-system")
                .list(&Default::default())
                .await
        ),
        403,
        "the hub may not read Secrets"
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

    stop_tx.send(true).unwrap();
    tokio::time::timeout(DEADLINE, agent_task)
        .await
        .expect("the agent stops")
        .unwrap();
    server.abort();
    drop(hub);
}
