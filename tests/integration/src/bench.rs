//! Pieces the benchmarks share: work statuses on the hub and the check that none was lost,
//! the processes' own histograms, percentiles, and what a process costs (`/proc`).

use std::collections::BTreeMap;
use std::time::Duration;

use kube::api::{Api, DynamicObject, ListParams};

use crate::bridge::Bridge;
use crate::works::condition;

/// Every work's (Applied observedGeneration, Available), by namespace/name.
pub async fn statuses(hub: &kube::Client) -> BTreeMap<String, (i64, bool)> {
    let api: Api<DynamicObject> =
        Api::all_with(hub.clone(), &drbridge_hub::objects::work_resource());
    api.list(&ListParams::default())
        .await
        .expect("listing ManifestWorks")
        .into_iter()
        .map(|mw| {
            let (applied, available) = applied_available(&mw);
            let key = format!(
                "{}/{}",
                mw.metadata.namespace.clone().unwrap_or_default(),
                mw.metadata.name.clone().unwrap_or_default()
            );
            (key, (applied, available))
        })
        .collect()
}

/// A work's Applied observedGeneration (-1 when not Applied) and whether it is Available.
pub fn applied_available(mw: &DynamicObject) -> (i64, bool) {
    let applied = condition(mw, "Applied")
        .filter(|c| c["status"] == "True")
        .and_then(|c| c["observedGeneration"].as_i64())
        .unwrap_or(-1);
    let available = condition(mw, "Available").is_some_and(|c| c["status"] == "True");
    (applied, available)
}

/// Polls until every work in `names` is Applied and Available at generation 1 or later.
pub async fn wait_all_applied(hub: &kube::Client, names: &[String], within: Duration) {
    let mut pending = names.len();
    let done = drbridge_localenv::within(within, async || {
        let s = statuses(hub).await;
        pending = names
            .iter()
            .filter(|n| !s.get(*n).is_some_and(|(g, a)| *g >= 1 && *a))
            .count();
        (pending == 0).then_some(())
    })
    .await;
    assert!(
        done.is_some(),
        "{pending} of {} works not applied within {within:?}",
        names.len()
    );
}

/// What the simulated clusters hold, to tell afterwards whether anything was lost.
#[derive(Debug)]
pub struct Snapshot {
    statuses: BTreeMap<String, (i64, bool)>,
    objects: BTreeMap<String, usize>,
}

/// What [`Snapshot::check`] found: works whose status went back or is gone, delete calls
/// on the clusters, clusters holding fewer objects.
#[derive(Debug)]
pub struct Losses {
    pub regressed: Vec<String>,
    pub deletes: usize,
    pub shrunk: Vec<String>,
}

impl Losses {
    pub fn none(&self) -> bool {
        self.regressed.is_empty() && self.deletes == 0 && self.shrunk.is_empty()
    }
}

impl std::fmt::Display for Losses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "status regressions: {}, deletes on the clusters: {}, clusters with fewer objects: {}",
            self.regressed.len(),
            self.deletes,
            self.shrunk.len()
        )
    }
}

impl Snapshot {
    pub async fn take(b: &Bridge, clusters: &[String]) -> Snapshot {
        let statuses = statuses(&b.hub_client().await).await;
        let objects = clusters
            .iter()
            .map(|c| (c.clone(), b.simulated_cluster(c).unwrap().names().len()))
            .collect();
        Snapshot { statuses, objects }
    }

    /// Compares now with the snapshot: a status may only move forward, and nothing on a
    /// managed cluster is deleted (the benchmarks never ask for a deletion).
    pub async fn check(&self, b: &Bridge) -> Losses {
        let after = statuses(&b.hub_client().await).await;
        let regressed = self
            .statuses
            .iter()
            .filter(|(k, (g, a))| after.get(*k).is_none_or(|(g2, a2)| g2 < g || (*a && !a2)))
            .map(|(k, _)| k.clone())
            .collect();
        let deletes = self
            .objects
            .keys()
            .map(|c| b.simulated_cluster(c).unwrap().delete_calls())
            .sum();
        let shrunk = self
            .objects
            .iter()
            .filter(|(c, n)| b.simulated_cluster(c).unwrap().names().len() < **n)
            .map(|(c, _)| c.clone())
            .collect();
        Losses {
            regressed,
            deletes,
            shrunk,
        }
    }
}

/// One histogram series of an OpenMetrics text: cumulative buckets, count and sum.
#[derive(Clone, Debug, Default)]
pub struct Series {
    pub buckets: Vec<(f64, f64)>,
    pub count: f64,
    pub sum: f64,
}

impl Series {
    /// What was observed since `before` (the same series read earlier).
    pub fn since(&self, before: &Series) -> Series {
        Series {
            buckets: self
                .buckets
                .iter()
                .map(|&(le, c)| {
                    let was = before
                        .buckets
                        .iter()
                        .find(|(l, _)| *l == le)
                        .map_or(0.0, |(_, c)| *c);
                    (le, c - was)
                })
                .collect(),
            count: self.count - before.count,
            sum: self.sum - before.sum,
        }
    }

    /// Adds another series with the same bucket bounds (a sum over labels).
    pub fn add(&mut self, other: &Series) {
        if self.buckets.is_empty() {
            self.buckets = other.buckets.iter().map(|&(le, _)| (le, 0.0)).collect();
        }
        for (mine, theirs) in self.buckets.iter_mut().zip(&other.buckets) {
            mine.1 += theirs.1;
        }
        self.count += other.count;
        self.sum += other.sum;
    }
}

/// The series of histogram `name` in `text`, by their labels (without `le`).
pub fn histograms(text: &str, name: &str) -> BTreeMap<String, Series> {
    let mut out: BTreeMap<String, Series> = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with(name)) {
        let Some((head, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (metric, labels) = head
            .split_once('{')
            .map_or((head, ""), |(m, l)| (m, l.trim_end_matches('}')));
        let mut le = None;
        let rest: Vec<&str> = labels
            .split(',')
            .filter(|l| !l.is_empty())
            .filter(|l| match l.strip_prefix("le=") {
                Some(v) => {
                    le = v.trim_matches('"').parse::<f64>().ok();
                    false
                }
                None => true,
            })
            .collect();
        let series = out.entry(rest.join(",")).or_default();
        match metric.strip_prefix(name) {
            Some("_bucket") => series.buckets.push((le.unwrap_or(f64::INFINITY), value)),
            Some("_count") => series.count = value,
            Some("_sum") => series.sum = value,
            _ => {}
        }
    }
    out
}

/// The `q` quantile as Prometheus' histogram_quantile estimates it: linear within the bucket.
pub fn quantile(s: &Series, q: f64) -> f64 {
    let rank = q * s.count;
    let mut lower = (0.0, 0.0);
    for &(le, cum) in &s.buckets {
        if cum >= rank {
            if le.is_infinite() {
                return lower.0;
            }
            let share = if cum > lower.1 {
                (rank - lower.1) / (cum - lower.1)
            } else {
                1.0
            };
            return lower.0 + (le - lower.0) * share;
        }
        lower = (le, cum);
    }
    lower.0
}

/// The `p` percentile (0..=1) of sorted durations, nearest rank.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// What a process has cost so far, from `/proc/PID`.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcUsage {
    /// Resident memory now and its peak (VmRSS, VmHWM), bytes.
    pub rss: u64,
    pub peak_rss: u64,
    /// User plus system CPU time so far.
    pub cpu: Duration,
}

/// Clock ticks of `/proc/PID/stat`: USER_HZ, 100 on every Linux ABI this runs on.
const USER_HZ: f64 = 100.0;

impl ProcUsage {
    /// `None` once the process is gone.
    pub fn read(pid: u32) -> Option<ProcUsage> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let kib = |field: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
                .unwrap_or(0)
                * 1024
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the command name, which is in parentheses and may hold spaces.
        let rest: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let ticks: f64 = rest.get(11)?.parse::<f64>().ok()? + rest.get(12)?.parse::<f64>().ok()?;
        Some(ProcUsage {
            rss: kib("VmRSS:"),
            peak_rss: kib("VmHWM:"),
            cpu: Duration::from_secs_f64(ticks / USER_HZ),
        })
    }

    /// CPU cores used on average between `before` and now, over `wall`.
    pub fn cores_since(&self, before: &ProcUsage, wall: Duration) -> f64 {
        self.cpu.saturating_sub(before.cpu).as_secs_f64() / wall.as_secs_f64().max(1e-9)
    }
}

/// The whole machine's busy CPU time so far (every core), from `/proc/stat`.
pub fn machine_busy() -> Duration {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(cpu) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return Duration::ZERO;
    };
    let v: Vec<f64> = cpu
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal: busy is all but idle and iowait.
    let busy: f64 = v
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .take(8)
        .map(|(_, x)| x)
        .sum();
    Duration::from_secs_f64(busy / USER_HZ)
}

/// A plain HTTP/1.0 GET on loopback (the hub's admin port): the body.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    Ok(text
        .split_once("\r\n\r\n")
        .map_or(text.clone(), |(_, body)| body.to_string()))
}

/// The API server's `apiserver_request_total`, summed by (verb, resource/subresource).
pub fn apiserver_requests(text: &str) -> BTreeMap<(String, String), f64> {
    let mut out = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
    {
        let Some((head, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let label = |name: &str| -> String {
            head.split(['{', ','])
                .find_map(|l| l.strip_prefix(&format!("{name}=\"")))
                .map(|v| v.trim_end_matches(['"', '}']).to_string())
                .unwrap_or_default()
        };
        let mut resource = label("resource");
        let sub = label("subresource");
        if !sub.is_empty() {
            resource = format!("{resource}/{sub}");
        }
        *out.entry((label("verb"), resource)).or_insert(0.0) += value;
    }
    out
}

/// MiB, for printing.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}
