//! The pinned releases of what the local environment runs.

use crate::gobuild::GoProgram;

/// The Kubernetes release: the newest that k8s-openapi's `v1_37` feature covers.
pub const KUBERNETES_VERSION: &str = "v1.37.2";
/// etcd of the line Kubernetes 1.37 is tested with.
pub const ETCD_VERSION: &str = "v3.7.3";
/// Helm, to lint, render and install the charts as users do. v4.3.1 is built
/// against client-go v0.37, the release above.
pub const HELM_VERSION: &str = "v4.3.1";
/// Prometheus, for `promtool check rules` and `promtool test rules` on the charts' alerts.
/// Its Go module tags 3.x releases as v0.3xx.y: v0.316.0 is Prometheus 3.16.0.
pub const PROMETHEUS_VERSION: &str = "v0.316.0";

/// Open Cluster Management, for its work agent (`work agent`), which the latency bench
/// measures beside drbridge (`-- --ocm`). Never built unless asked for.
pub const OCM_VERSION: &str = "v1.2.0";
/// The module of OCM's commands.
pub const OCM_MODULE: &str = "open-cluster-management.io/ocm";
/// The module of OCM's API types and CRDs; its version is the one OCM's go.mod requires.
pub const OCM_API_MODULE: &str = "open-cluster-management.io/api";

/// Staging modules of k8s.io/kubernetes that are published as `k8s.io/<name>`
/// at `v0.<minor>.<patch>`. Sample modules are left out: they are not
/// published and nothing we build imports them.
const STAGING: &[&str] = &[
    "api",
    "apiextensions-apiserver",
    "apimachinery",
    "apiserver",
    "cli-runtime",
    "client-go",
    "cloud-provider",
    "cluster-bootstrap",
    "code-generator",
    "component-base",
    "component-helpers",
    "controller-manager",
    "cri-api",
    "cri-client",
    "cri-streaming",
    "csi-translation-lib",
    "dynamic-resource-allocation",
    "endpointslice",
    "externaljwt",
    "kms",
    "kube-aggregator",
    "kube-controller-manager",
    "kube-proxy",
    "kube-scheduler",
    "kubectl",
    "kubelet",
    "metrics",
    "mount-utils",
    "pod-security-admission",
    "sample-apiserver",
    "streaming",
];

/// kube-apiserver, kube-controller-manager, kube-scheduler and kubectl.
pub fn kubernetes() -> GoProgram {
    let v = KUBERNETES_VERSION;
    let staging_version = format!("v0.{}", v.trim_start_matches("v1."));
    let mut minor = v.trim_start_matches("v1.").split('.');
    let minor = minor.next().unwrap_or_default();
    // What `kubectl version` and /version report, as a release build would.
    let ldflags = [
        "k8s.io/component-base/version",
        "k8s.io/client-go/pkg/version",
    ]
    .iter()
    .map(|p| {
        format!("-X {p}.gitVersion={v} -X {p}.gitMajor=1 -X {p}.gitMinor={minor} -X {p}.gitTreeState=clean")
    })
    .collect::<Vec<_>>()
    .join(" ");
    GoProgram {
        name: "kubernetes",
        version: v.to_string(),
        requires: vec![("k8s.io/kubernetes".into(), v.into())],
        replaces: STAGING
            .iter()
            .map(|m| (format!("k8s.io/{m}"), staging_version.clone()))
            .collect(),
        packages: [
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
            "kubectl",
        ]
        .iter()
        .map(|c| (format!("k8s.io/kubernetes/cmd/{c}"), (*c).to_string()))
        .collect(),
        ldflags: format!("-s -w {ldflags}"),
        tags: Vec::new(),
        go_directive: "1.26.0",
        seed_go_sum: false,
    }
}

/// etcd's server. Its module points sibling modules at `../`; replace them
/// with the same release.
pub fn etcd() -> GoProgram {
    let v = ETCD_VERSION;
    GoProgram {
        name: "etcd",
        version: v.to_string(),
        requires: vec![("go.etcd.io/etcd/server/v3".into(), v.into())],
        replaces: ["api/v3", "client/pkg/v3", "client/v3", "pkg/v3"]
            .iter()
            .map(|m| (format!("go.etcd.io/etcd/{m}"), v.to_string()))
            .collect(),
        packages: vec![("go.etcd.io/etcd/server/v3".into(), "etcd".into())],
        ldflags: "-s -w".into(),
        tags: Vec::new(),
        go_directive: "1.26.0",
        seed_go_sum: false,
    }
}

/// The helm command. Its module has no replace directives, so it builds as a
/// plain dependency; the default `.Capabilities.KubeVersion` of `helm
/// template` comes from the client-go version in the build info.
pub fn helm() -> GoProgram {
    let v = HELM_VERSION;
    // What `helm version` reports for a release build (the Makefile's flags).
    let pkg = "helm.sh/helm/v4/internal/version";
    let ldflags = format!("-X {pkg}.version={v} -X {pkg}.gitTreeState=clean");
    GoProgram {
        name: "helm",
        version: v.to_string(),
        requires: vec![("helm.sh/helm/v4".into(), v.into())],
        replaces: Vec::new(),
        packages: vec![("helm.sh/helm/v4/cmd/helm".into(), "helm".into())],
        ldflags: format!("-s -w {ldflags}"),
        tags: Vec::new(),
        go_directive: "1.26.0",
        seed_go_sum: false,
    }
}

/// promtool, which checks and unit-tests alerting rules with Prometheus' own rule engine.
pub fn promtool() -> GoProgram {
    let v = PROMETHEUS_VERSION;
    // v0.316.0 -> 3.16.0, what `promtool --version` of the release says.
    let release = v
        .strip_prefix("v0.")
        .and_then(|r| r.split_once('.'))
        .map(|(minor, patch)| format!("{}.{}.{patch}", &minor[..1], &minor[1..]))
        .unwrap_or_else(|| v.to_string());
    GoProgram {
        name: "promtool",
        version: v.to_string(),
        requires: vec![("github.com/prometheus/prometheus".into(), v.into())],
        replaces: Vec::new(),
        packages: vec![(
            "github.com/prometheus/prometheus/cmd/promtool".into(),
            "promtool".into(),
        )],
        ldflags: format!("-s -w -X github.com/prometheus/common/version.Version={release}"),
        // Rules need no service discovery: leaving out every cloud provider's SDK roughly
        // halves what a cold build compiles.
        tags: vec!["remove_all_sd".into()],
        // Prometheus' go.mod says go 1.26.7.
        go_directive: "1.26.7",
        seed_go_sum: false,
    }
}

/// OCM's `work` command (its work agent, webhook and hub controller). Its go.mod has no
/// replace directives; its go.sum seeds ours.
pub fn ocm_work() -> GoProgram {
    let v = OCM_VERSION;
    // What `work --version` reports for a release build (the Makefile's flags).
    let pkg = "open-cluster-management.io/ocm/pkg/version";
    GoProgram {
        name: "ocm-work",
        version: v.to_string(),
        requires: vec![(OCM_MODULE.into(), v.into())],
        replaces: Vec::new(),
        packages: vec![(format!("{OCM_MODULE}/cmd/work"), "work".into())],
        ldflags: format!("-s -w -X {pkg}.versionFromGit={v}"),
        tags: Vec::new(),
        // OCM's go.mod says go 1.25.0.
        go_directive: "1.25.0",
        seed_go_sum: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_modules_follow_the_release() {
        let k = kubernetes();
        assert!(
            k.replaces
                .contains(&("k8s.io/api".into(), "v0.37.2".into()))
        );
        assert!(k.ldflags.contains("gitVersion=v1.37.2"));
        assert!(k.ldflags.contains("gitMinor=37"));
    }

    #[test]
    fn helm_reports_its_release() {
        let h = helm();
        assert!(
            h.ldflags
                .contains("-X helm.sh/helm/v4/internal/version.version=v4.3.1")
        );
        assert!(h.replaces.is_empty());
    }

    #[test]
    fn ocm_work_builds_the_pinned_release() {
        let o = ocm_work();
        assert_eq!(
            o.packages,
            vec![(
                "open-cluster-management.io/ocm/cmd/work".into(),
                "work".into()
            )]
        );
        assert!(o.seed_go_sum && o.replaces.is_empty());
        assert!(o.ldflags.ends_with("pkg/version.versionFromGit=v1.2.0"));
    }

    #[test]
    fn promtool_reports_the_prometheus_release() {
        let p = promtool();
        assert!(
            p.ldflags
                .ends_with("-X github.com/prometheus/common/version.Version=3.16.0"),
            "{}",
            p.ldflags
        );
    }
}
