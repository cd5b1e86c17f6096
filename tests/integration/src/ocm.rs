//! OCM's own work agent beside drbridge, for the latency bench's `--ocm` leg: how it is
//! run out of cluster (its flags, read from `open-cluster-management.io/ocm` v1.2.0), and
//! the quantiles and side-by-side table the bench prints.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crate::bench::percentile;

/// How one OCM row runs the work agent.
#[derive(Clone, Debug, PartialEq)]
pub struct Profile {
    /// Short name, used in object and process names.
    pub name: &'static str,
    /// What the row is, as the table prints it.
    pub label: &'static str,
    /// `--status-sync-interval`: how often the agent re-reads each work's resources.
    pub status_sync: Duration,
    /// `--kube-api-qps`/`--kube-api-burst` (spoke) and `--hub-kube-api-qps`/
    /// `--hub-kube-api-burst` (hub): both clients get the same limits.
    pub qps: f32,
    pub burst: u32,
}

/// The rows the bench measures.
pub fn profiles() -> Vec<Profile> {
    vec![
        // pkg/work/spoke/options.go (StatusSyncInterval 10s) and
        // pkg/common/options/{options,agent}.go (QPS 50, burst 100, hub and spoke).
        Profile {
            name: "default",
            label: "OCM defaults (sync 10 s, QPS 50/100)",
            status_sync: Duration::from_secs(10),
            qps: 50.0,
            burst: 100,
        },
        // manifests/klusterlet/management/klusterlet-work-deployment.yaml passes
        // --status-sync-interval=60s when the deployment has 1 replica, which
        // pkg/operator/helpers/helpers.go DetermineReplicaByNodes picks for <= 1
        // control-plane node.
        Profile {
            name: "sno",
            label: "OCM klusterlet, single node (sync 60 s)",
            status_sync: Duration::from_secs(60),
            qps: 50.0,
            burst: 100,
        },
        // Throttling raised far above what the run needs, so client-side waiting is not
        // counted as transport.
        Profile {
            name: "fast",
            label: "OCM, throttling raised (sync 10 s, QPS 10000/20000)",
            status_sync: Duration::from_secs(10),
            qps: 10000.0,
            burst: 20000,
        },
    ]
}

/// Where and as whom one work agent runs.
#[derive(Clone, Debug)]
pub struct AgentSetup<'a> {
    /// The managed cluster's name: the hub namespace whose works it applies.
    pub cluster: &'a str,
    pub hub_kubeconfig: &'a Path,
    pub spoke_kubeconfig: &'a Path,
    /// Its health and metrics endpoint; each agent needs its own.
    pub listen: SocketAddr,
    /// The spoke namespace it records events in.
    pub namespace: &'a str,
}

/// The arguments of `work agent` run out of cluster: works from the hub's API server
/// (the `kube` source driver), applied with the spoke's admin kubeconfig, one replica.
pub fn agent_args(setup: &AgentSetup<'_>, profile: &Profile) -> Vec<String> {
    vec![
        "agent".into(),
        format!("--spoke-cluster-name={}", setup.cluster),
        "--workload-source-driver=kube".into(),
        format!(
            "--workload-source-config={}",
            setup.hub_kubeconfig.display()
        ),
        format!("--kubeconfig={}", setup.spoke_kubeconfig.display()),
        "--disable-leader-election".into(),
        format!("--listen={}", setup.listen),
        format!("--namespace={}", setup.namespace),
        format!(
            "--status-sync-interval={}",
            go_duration(profile.status_sync)
        ),
        format!("--kube-api-qps={}", profile.qps),
        format!("--kube-api-burst={}", profile.burst),
        format!("--hub-kube-api-qps={}", profile.qps),
        format!("--hub-kube-api-burst={}", profile.burst),
    ]
}

/// A duration as Go's `time.ParseDuration` reads it.
fn go_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Quantiles of one path's latencies.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    pub n: usize,
    /// Samples that never arrived before the deadline.
    pub missing: usize,
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Summary {
    /// None without samples.
    pub fn of(mut samples: Vec<Duration>, missing: usize) -> Option<Summary> {
        samples.sort();
        let max = *samples.last()?;
        Some(Summary {
            n: samples.len(),
            missing,
            p50: percentile(&samples, 0.50),
            p90: percentile(&samples, 0.90),
            p99: percentile(&samples, 0.99),
            max,
        })
    }
}

/// What a row of the table holds.
#[derive(Clone, Debug, PartialEq)]
pub enum Figures {
    Measured(Summary),
    /// A figure from documentation, not measured in the run.
    Documented(String),
    /// Measured, but nothing arrived.
    Missing,
}

/// One row: a path (A, B, C, C′) as one system ran it.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub path: String,
    pub run: String,
    pub figures: Figures,
}

/// The label of drbridge's rows, against which the ratios are taken.
pub const DRBRIDGE: &str = "drbridge";

/// A Markdown table of the rows, each OCM row with its p50 and p99 as a multiple of
/// drbridge's on the same path (C′ against drbridge's C: the nearest OCM has to a view).
pub fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| path | run | n | p50 | p90 | p99 | max | OCM/drbridge p50 | OCM/drbridge p99 |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    let baseline = |path: &str| {
        let path = path.trim_end_matches('′');
        rows.iter().find_map(|r| match &r.figures {
            Figures::Measured(s) if r.run == DRBRIDGE && r.path == path => Some(*s),
            _ => None,
        })
    };
    for r in rows {
        let cells = match &r.figures {
            Figures::Measured(s) => {
                let n = if s.missing > 0 {
                    format!("{} ({} missing)", s.n, s.missing)
                } else {
                    s.n.to_string()
                };
                let (r50, r99) = match baseline(&r.path) {
                    Some(b) if r.run != DRBRIDGE => (ratio(s.p50, b.p50), ratio(s.p99, b.p99)),
                    _ => ("".into(), "".into()),
                };
                [
                    n,
                    human(s.p50),
                    human(s.p90),
                    human(s.p99),
                    human(s.max),
                    r50,
                    r99,
                ]
            }
            Figures::Documented(what) => [
                "".into(),
                what.clone(),
                "".into(),
                "".into(),
                "".into(),
                "".into(),
                "".into(),
            ],
            Figures::Missing => [
                "0".into(),
                "none arrived".into(),
                "".into(),
                "".into(),
                "".into(),
                "".into(),
                "".into(),
            ],
        };
        let _ = writeln!(out, "| {} | {} | {} |", r.path, r.run, cells.join(" | "));
    }
    out
}

/// A latency as the docs write it: milliseconds below a second, else seconds.
pub fn human(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{:.1} s", ms / 1e3)
    }
}

fn ratio(ocm: Duration, drbridge: Duration) -> String {
    if drbridge.is_zero() {
        return "".into();
    }
    let r = ocm.as_secs_f64() / drbridge.as_secs_f64();
    if r >= 10.0 {
        format!("×{r:.0}")
    } else {
        format!("×{r:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn agent_args_follow_the_profile() {
        let setup = AgentSetup {
            cluster: "ocm1",
            hub_kubeconfig: Path::new("/e/hub.kubeconfig"),
            spoke_kubeconfig: Path::new("/e/ocm1.kubeconfig"),
            listen: "127.0.0.1:9443".parse().unwrap(),
            namespace: "open-cluster-management-agent",
        };
        let sno = profiles().into_iter().find(|p| p.name == "sno").unwrap();
        let args = agent_args(&setup, &sno);
        assert_eq!(args[0], "agent");
        for want in [
            "--spoke-cluster-name=ocm1",
            "--workload-source-driver=kube",
            "--workload-source-config=/e/hub.kubeconfig",
            "--kubeconfig=/e/ocm1.kubeconfig",
            "--disable-leader-election",
            "--listen=127.0.0.1:9443",
            "--namespace=open-cluster-management-agent",
            "--status-sync-interval=60s",
            "--kube-api-qps=50",
            "--kube-api-burst=100",
            "--hub-kube-api-qps=50",
            "--hub-kube-api-burst=100",
        ] {
            assert!(args.iter().any(|a| a == want), "{want} in {args:?}");
        }
        let fast = profiles().into_iter().find(|p| p.name == "fast").unwrap();
        assert!(
            agent_args(&setup, &fast)
                .iter()
                .any(|a| a == "--kube-api-qps=10000")
        );
        assert_eq!(go_duration(ms(1500)), "1500ms");
    }

    #[test]
    fn quantiles_by_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).rev().map(ms).collect();
        let s = Summary::of(samples, 2).unwrap();
        assert_eq!((s.n, s.missing), (100, 2));
        assert_eq!(s.p50, ms(51));
        assert_eq!(s.p90, ms(90));
        assert_eq!(s.p99, ms(99));
        assert_eq!(s.max, ms(100));
        assert_eq!(Summary::of(Vec::new(), 3), None);
        let one = Summary::of(vec![ms(7)], 0).unwrap();
        assert_eq!((one.p50, one.p99, one.max), (ms(7), ms(7), ms(7)));
    }

    #[test]
    fn table_gives_ratios_against_drbridge() {
        let s = |p50, p99| Summary {
            n: 10,
            missing: 0,
            p50: ms(p50),
            p90: ms(p99),
            p99: ms(p99),
            max: ms(p99),
        };
        let rows = vec![
            Row {
                path: "B".into(),
                run: DRBRIDGE.into(),
                figures: Figures::Measured(s(50, 200)),
            },
            Row {
                path: "B".into(),
                run: "OCM defaults".into(),
                figures: Figures::Measured(s(7_000, 19_000)),
            },
            Row {
                path: "C".into(),
                run: DRBRIDGE.into(),
                figures: Figures::Measured(s(10, 40)),
            },
            Row {
                path: "C".into(),
                run: "ManagedClusterView".into(),
                figures: Figures::Documented("30 s refresh (documented, not measured)".into()),
            },
            Row {
                path: "C′".into(),
                run: "OCM fast".into(),
                figures: Figures::Measured(s(25, 60)),
            },
            Row {
                path: "A".into(),
                run: "OCM sno".into(),
                figures: Figures::Missing,
            },
        ];
        let t = table(&rows);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 2 + rows.len(), "{t}");
        assert_eq!(
            lines[2],
            "| B | drbridge | 10 | 50 ms | 200 ms | 200 ms | 200 ms |  |  |"
        );
        assert_eq!(
            lines[3],
            "| B | OCM defaults | 10 | 7.0 s | 19.0 s | 19.0 s | 19.0 s | ×140 | ×95 |"
        );
        assert!(lines[5].contains("| 30 s refresh (documented, not measured) |"));
        assert!(lines[6].ends_with("| ×2.5 | ×1.5 |"), "{}", lines[6]);
        assert!(lines[7].contains("| 0 | none arrived |"));
    }

    #[test]
    fn humane_durations() {
        assert_eq!(human(ms(41)), "41 ms");
        assert_eq!(human(ms(999)), "999 ms");
        assert_eq!(human(ms(14_560)), "14.6 s");
    }
}
