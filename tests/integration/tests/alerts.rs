//! The charts' alerts and Grafana dashboard, as an on-call operator gets them: rendered by helm
//! with them enabled; every `drbridge_*` series they query is one the hub or the agent exports
//! (read from their real metric registries); every alert has a summary, a description and a
//! runbook link to a section of docs/operations.md; and Prometheus' own rule engine (the pinned
//! promtool) checks the rules and runs `charts/*/tests/alerts_test.yaml`, which fires and clears
//! every alert on synthetic series.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use drbridge_integration_tests::helm::{chart, render};
use drbridge_integration_tests::repo_root;
use serde_json::Value;

/// The pinned promtool, built from its Go module on first use (drbridge-localenv).
fn promtool() -> &'static Path {
    static PROMTOOL: OnceLock<PathBuf> = OnceLock::new();
    PROMTOOL.get_or_init(|| {
        drbridge_localenv::ensure_promtool(&drbridge_localenv::cache_dir(), &|_| {})
            .expect("building promtool")
    })
}

const AGENT_REQUIRED: &[&str] = &[
    "--set",
    "cluster.name=dr1",
    "--set",
    "hub.endpoint=https://hub.example:8443",
];

/// The series names a registry's exposition has, from its `# TYPE` lines: families without
/// children print no samples, yet their series are what a query names.
fn series_names(exposition: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in exposition.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
        match kind {
            "counter" => {
                names.insert(format!("{name}_total"));
            }
            "histogram" => names.extend(histogram_series(name)),
            _ => {
                names.insert(name.to_string());
            }
        }
    }
    names
}

fn histogram_series(name: &str) -> [String; 3] {
    ["bucket", "sum", "count"].map(|s| format!("{name}_{s}"))
}

/// Every series the hub and the agent export, read from their real registries.
fn exported() -> BTreeSet<String> {
    let mut hub = prometheus_client::registry::Registry::default();
    let m = drbridge_hub::metrics::Metrics::register(&mut hub);
    // The encoder leaves out a labelled family until it has a child: give each one.
    m.delivered("dr1", std::time::Duration::from_millis(40));
    m.status_written("work", "2026-01-01T00:00:00Z");
    m.unacknowledged_age("dr1", 0.0);
    m.registered("join", "ok");
    m.dropped("unknown_object");
    m.patched("work_status", "ok");
    let mut agent = prometheus_client::registry::Registry::default();
    drbridge_agent::metrics::Metrics::register(&mut agent).sent("work_status");
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &hub).unwrap();
    prometheus_client::encoding::text::encode(&mut text, &agent).unwrap();
    let names = series_names(&text);
    assert!(names.contains("drbridge_hub_connected_agents"), "{text}");
    assert!(
        names.contains("drbridge_agent_apply_errors_total"),
        "{text}"
    );
    // The latency histograms the SLOs are measured by, with no observation yet.
    for h in [
        "drbridge_hub_work_delivery_seconds",
        "drbridge_hub_status_latency_seconds",
        "drbridge_agent_apply_duration_seconds",
    ] {
        assert!(names.contains(&format!("{h}_bucket")), "{text}");
    }
    names
}

/// The `drbridge_*` names a PromQL expression mentions.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some(at) = rest.find("drbridge_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

fn assert_exported(what: &str, exprs: &[String], exported: &BTreeSet<String>) {
    let used: BTreeSet<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();
    assert!(!used.is_empty(), "{what} queries no drbridge metric");
    let unknown: Vec<&String> = used.difference(exported).collect();
    assert!(
        unknown.is_empty(),
        "{what} queries series nobody exports: {unknown:?} (a new labelled family is encoded only once it has a child: give it one in exported())\nexported: {exported:?}"
    );
}

fn of_kind<'a>(objs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objs.iter().filter(|o| o["kind"] == kind).collect()
}

/// The alerting rules of a rendered PrometheusRule.
fn alert_rules(rule: &Value) -> Vec<&Value> {
    rule["spec"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .filter(|r| r.get("alert").is_some())
        .collect()
}

/// GitHub's anchor of each heading of docs/operations.md.
fn operations_anchors() -> BTreeSet<String> {
    let text = std::fs::read_to_string(repo_root().join("docs/operations.md")).unwrap();
    text.lines()
        .filter_map(|l| l.strip_prefix('#'))
        .map(|h| {
            h.trim_start_matches('#')
                .trim()
                .to_lowercase()
                .chars()
                .filter_map(|c| match c {
                    ' ' => Some('-'),
                    c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                    _ => None,
                })
                .collect()
        })
        .collect()
}

/// What an operator needs on each alert, and a runbook section that exists.
fn assert_alerts_documented(rule: &Value, base: &str) -> BTreeSet<String> {
    let anchors = operations_anchors();
    let mut names = BTreeSet::new();
    for r in alert_rules(rule) {
        let name = r["alert"].as_str().unwrap();
        assert!(names.insert(name.to_string()), "{name} twice");
        for key in ["summary", "description"] {
            let text = r["annotations"][key].as_str().unwrap_or_default();
            assert!(text.len() > 20, "{name}: {key} {text:?}");
        }
        assert!(
            ["critical", "warning"].contains(&r["labels"]["severity"].as_str().unwrap()),
            "{name}: {r}"
        );
        let url = r["annotations"]["runbook_url"].as_str().unwrap();
        let anchor = url
            .strip_prefix(&format!("{base}#"))
            .unwrap_or_else(|| panic!("{name}: runbook_url {url} is not {base}#..."));
        assert_eq!(anchor, name.to_lowercase(), "{name}: its own section");
        assert!(
            anchors.contains(anchor),
            "{name}: docs/operations.md has no section #{anchor}"
        );
    }
    names
}

/// Where the runbook links of default values point.
const DEFAULT_RUNBOOKS: &str = "https://example.invalid/drbridge/blob/main/docs/operations.md";

/// The one PrometheusRule of a rendering with default runbook links: its alerts are exactly
/// `expected`, each documented ([`assert_alerts_documented`]); their expressions.
fn alert_exprs(objs: &[Value], expected: &[&str]) -> Vec<String> {
    let rules = of_kind(objs, "PrometheusRule");
    assert_eq!(rules.len(), 1);
    let names = assert_alerts_documented(rules[0], DEFAULT_RUNBOOKS);
    let expected: BTreeSet<String> = expected.iter().map(|n| n.to_string()).collect();
    assert_eq!(names, expected);
    alert_rules(rules[0])
        .iter()
        .map(|r| r["expr"].as_str().unwrap().to_string())
        .collect()
}

/// The hub chart's values that turn its alerts and dashboard on.
const HUB_ALERTS_AND_DASHBOARD: &[&str] = &[
    "--set",
    "prometheusRule.enabled=true",
    "--set",
    "grafanaDashboard.enabled=true",
];

#[test]
fn hub_alerts_and_dashboard_render_and_query_only_exported_metrics() {
    let home = tempfile::tempdir().unwrap();
    let objs = render(home.path(), "drbridge-hub", HUB_ALERTS_AND_DASHBOARD);
    let exported = exported();

    let exprs = alert_exprs(
        &objs,
        &[
            "DrbridgeHubDown",
            "DrbridgeHubNoLeader",
            "DrbridgeClusterDisconnected",
            "DrbridgeChangesUnacknowledged",
            "DrbridgeDeliveryLatencyHigh",
            "DrbridgeStatusLatencyHigh",
            "DrbridgeStatusWritesFailing",
            "DrbridgeAgentReportsRefused",
            "DrbridgeWriteQueueStuck",
        ],
    );
    assert_exported("the hub's alerts", &exprs, &exported);
    // Every query picks this release's series: the ServiceMonitor's job in its namespace.
    for e in exprs.iter().filter(|e| e.contains("drbridge_hub_")) {
        assert!(
            e.contains(r#"job="drbridge-hub-admin", namespace="drbridge""#),
            "{e}"
        );
    }

    // The dashboard: the chart's file, for Grafana's sidecar.
    let cms: Vec<&Value> = of_kind(&objs, "ConfigMap");
    assert_eq!(cms.len(), 1);
    let cm = cms[0];
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(cm["metadata"]["namespace"], "drbridge");
    let file =
        std::fs::read_to_string(Path::new(&chart("drbridge-hub")).join("dashboards/drbridge.json"))
            .unwrap();
    let shipped = cm["data"]["drbridge.json"].as_str().unwrap();
    assert_eq!(shipped.trim_end(), file.trim_end());
    let dashboard: Value = serde_json::from_str(shipped).expect("the dashboard is JSON");
    assert_eq!(dashboard["uid"], "drbridge-transport");
    let mut exprs = Vec::new();
    let mut titles = Vec::new();
    collect_queries(&dashboard, &mut exprs, &mut titles);
    assert_exported("the dashboard", &exprs, &exported);
    // What the on-call operator looks at, each in some panel.
    for metric in [
        "drbridge_hub_work_delivery_seconds_bucket",
        "drbridge_hub_status_latency_seconds_bucket",
        "drbridge_hub_connected_agents",
        "drbridge_hub_clusters_registered",
        "drbridge_hub_write_queue_depth",
        "drbridge_hub_report_bytes_held",
        "drbridge_hub_status_patches_total",
        "drbridge_hub_status_dropped_total",
        "drbridge_hub_connections_refused_total",
        "drbridge_hub_oldest_unacknowledged_seconds",
    ] {
        assert!(
            exprs.iter().any(|e| metric_names(e).contains(metric)),
            "no panel shows {metric}"
        );
    }
    assert!(titles.iter().all(|t| !t.is_empty()), "{titles:?}");

    // Thresholds, selector, labels and the sidecar's namespace come from values.
    let objs = render(
        home.path(),
        "drbridge-hub",
        &[
            HUB_ALERTS_AND_DASHBOARD,
            &[
                "--set",
                "prometheusRule.deliveryP99Seconds=0.5",
                "--set",
                "prometheusRule.selector=cluster_id=\"hub-a\"",
                "--set",
                "prometheusRule.alertLabels.team=dr",
                "--set",
                "prometheusRule.runbookBaseUrl=https://wiki.example/drbridge",
                "--set",
                "grafanaDashboard.namespace=monitoring",
            ],
        ]
        .concat(),
    );
    let rule = of_kind(&objs, "PrometheusRule")[0];
    assert_alerts_documented(rule, "https://wiki.example/drbridge");
    for r in alert_rules(rule) {
        assert_eq!(r["labels"]["team"], "dr", "{r}");
        let expr = r["expr"].as_str().unwrap();
        if expr.contains("drbridge_hub_") {
            assert!(expr.contains(r#"{cluster_id="hub-a""#), "{expr}");
        }
        if r["alert"] == "DrbridgeDeliveryLatencyHigh" {
            assert!(expr.trim_end().ends_with("> 0.5"), "{expr}");
        }
    }
    assert_eq!(
        of_kind(&objs, "ConfigMap")[0]["metadata"]["namespace"],
        "monitoring"
    );
}

/// The `expr` of every target and the query of every template variable, and panel titles.
fn collect_queries(v: &Value, exprs: &mut Vec<String>, titles: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(e)) = m.get("expr") {
                exprs.push(e.clone());
            }
            if let Some(Value::String(d)) = m.get("definition") {
                exprs.push(d.clone());
            }
            if m.contains_key("gridPos") {
                titles.push(m["title"].as_str().unwrap_or_default().to_string());
            }
            m.values().for_each(|v| collect_queries(v, exprs, titles));
        }
        Value::Array(a) => a.iter().for_each(|v| collect_queries(v, exprs, titles)),
        _ => {}
    }
}

#[test]
fn agent_alerts_render_and_query_only_exported_metrics() {
    let home = tempfile::tempdir().unwrap();
    let mut args = AGENT_REQUIRED.to_vec();
    args.extend(["--set", "prometheusRule.enabled=true"]);
    let objs = render(home.path(), "drbridge-agent", &args);
    let exprs = alert_exprs(
        &objs,
        &[
            "DrbridgeAgentDown",
            "DrbridgeAgentDisconnected",
            "DrbridgeAgentApplyErrors",
            "DrbridgeAgentApplySlow",
        ],
    );
    assert_exported("the agent's alerts", &exprs, &exported());
    for e in &exprs {
        assert!(e.contains(r#"{namespace="drbridge""#), "{e}");
    }

    // Off by default.
    let objs = render(home.path(), "drbridge-agent", AGENT_REQUIRED);
    assert!(of_kind(&objs, "PrometheusRule").is_empty());
}

/// Runs promtool, asserting it succeeds; its output for the failure message.
fn promtool_ok(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(promtool())
        .args(args)
        .current_dir(dir)
        .output()
        .expect("running promtool");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

/// The chart's rendered rules checked by promtool, then its unit tests run against them. The
/// tests must fire each alert at least once and also show it silent.
fn promtool_checks_and_tests(chart_name: &str, extra: &[&str]) {
    let home = tempfile::tempdir().unwrap();
    let mut args = extra.to_vec();
    args.extend(["--set", "prometheusRule.enabled=true"]);
    let objs = render(home.path(), chart_name, &args);
    let rule = of_kind(&objs, "PrometheusRule")[0];
    let dir = tempfile::tempdir().unwrap();
    // A rule file is the PrometheusRule's spec.
    let rules = serde_json::to_string_pretty(&rule["spec"]).unwrap();
    std::fs::write(dir.path().join("rules.yaml"), rules).unwrap();
    let out = promtool_ok(dir.path(), &["check", "rules", "rules.yaml"]);
    let alerts = alert_rules(rule).len();
    assert!(
        out.contains(&format!("SUCCESS: {alerts} rules found")),
        "{out}"
    );

    let tests_file = Path::new(&chart(chart_name)).join("tests/alerts_test.yaml");
    let tests = std::fs::read_to_string(&tests_file).unwrap();
    std::fs::write(dir.path().join("alerts_test.yaml"), &tests).unwrap();
    let out = promtool_ok(dir.path(), &["test", "rules", "alerts_test.yaml"]);
    assert!(out.contains("SUCCESS"), "{out}");

    let tests: Value = serde_saphyr::from_str(&tests).unwrap();
    let mut fired = BTreeSet::new();
    let mut silent = BTreeSet::new();
    for case in tests["tests"].as_array().unwrap() {
        for t in case["alert_rule_test"].as_array().unwrap() {
            let name = t["alertname"].as_str().unwrap().to_string();
            match t["exp_alerts"].as_array() {
                Some(a) if !a.is_empty() => fired.insert(name),
                _ => silent.insert(name),
            };
        }
    }
    for r in alert_rules(rule) {
        let name = r["alert"].as_str().unwrap();
        assert!(
            fired.contains(name),
            "{}: nothing fires {name}",
            tests_file.display()
        );
        assert!(
            silent.contains(name),
            "{}: nothing shows {name} silent",
            tests_file.display()
        );
    }
}

#[test]
fn promtool_checks_the_hub_alerts_and_fires_and_clears_each() {
    promtool_checks_and_tests("drbridge-hub", &[]);
}

#[test]
fn promtool_checks_the_agent_alerts_and_fires_and_clears_each() {
    promtool_checks_and_tests("drbridge-agent", AGENT_REQUIRED);
}
