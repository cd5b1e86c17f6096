//! drbridge on a local environment: the hub, as one replica or as several electing a leader
//! behind a [`Front`] that plays their Service, and an agent per managed cluster, all as
//! processes with their own certificates.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use drbridge_localenv::Env;
use drbridge_localenv::bridge::{BridgePki, prepare_hub, prepare_managed};
use drbridge_localenv::ports::free_port;
use drbridge_localenv::process::log_tail;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::Error;
use crate::front::Front;

/// The hub's process name; with replicas, the first replica's.
pub const HUB_PROCESS: &str = "drbridge-hub";
/// Where replicas elect their leader: the hub's default namespace, and a Lease named here.
pub const LEASE_NAMESPACE: &str = "drbridge-system";
pub const LEASE_NAME: &str = "drbridge-hub";

/// Process name, and hub id, of replica `i`.
pub fn hub_process(i: usize) -> String {
    if i == 0 {
        HUB_PROCESS.to_string()
    } else {
        format!("{HUB_PROCESS}-{i}")
    }
}

/// How to run drbridge.
pub struct Options<'a> {
    /// Hub replicas; more than one elect a leader and sit behind a [`Front`], which lives in
    /// this process (so the environment must be attached to it).
    pub replicas: usize,
    /// Each agent dials `route(the address of the hub or its front)`: a proxy in between, for
    /// fault tests. The hub's certificate names `localhost`, so a proxy on loopback is
    /// transparent to mutual TLS.
    pub route: &'a (dyn Fn(SocketAddr) -> SocketAddr + Sync),
    /// Added to every agent's command line.
    pub agent_args: &'a [&'a str],
}

impl std::fmt::Debug for Options<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("replicas", &self.replicas)
            .field("agent_args", &self.agent_args)
            .finish_non_exhaustive()
    }
}

impl Default for Options<'_> {
    fn default() -> Self {
        Options {
            replicas: 1,
            route: &|hub| hub,
            agent_args: &[],
        }
    }
}

/// One hub replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubReplica {
    /// Its process name, which is also its hub id and its identity on the Lease.
    pub name: String,
    /// Its admin server (`/metrics`, `/ready`).
    pub admin: SocketAddr,
}

/// drbridge as started.
#[derive(Debug)]
pub struct Drbridge {
    /// The hub's gRPC endpoint (its front's, with replicas).
    pub endpoint: String,
    pub replicas: Vec<HubReplica>,
    _front: Option<Front>,
}

impl Drbridge {
    /// The replica holding the leader election's Lease (`None`: none, or no election).
    pub async fn leader(&self, hub: &kube::Client) -> Result<Option<HubReplica>, Error> {
        let leases: Api<Lease> = Api::namespaced(hub.clone(), LEASE_NAMESPACE);
        let holder = leases
            .get_opt(LEASE_NAME)
            .await?
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity);
        Ok(holder.and_then(|h| self.replicas.iter().find(|r| r.name == h).cloned()))
    }
}

/// A leader killed as SIGKILL would (it releases nothing), and what followed.
#[derive(Clone, Debug)]
pub struct LeaderKill {
    pub killed: String,
    pub new_leader: String,
    /// Until another replica held the Lease.
    pub to_new_leader: Duration,
    /// Until every agent had acknowledged its resync on the new leader
    /// (`drbridge_hub_agents_in_sync`, published each second).
    pub to_in_sync: Duration,
}

impl Drbridge {
    /// Kills the leader, waits for another replica to lead and for `agents` agents to be in
    /// sync on it, then starts the killed replica again, a follower now.
    pub async fn kill_leader(
        &self,
        env: &mut Env,
        hub: &kube::Client,
        agents: usize,
        timeout: Duration,
    ) -> Result<LeaderKill, Error> {
        let Some(leader) = self.leader(hub).await? else {
            return Err(Error::Start {
                what: "a leader kill".into(),
                why: "no hub replica holds the Lease".into(),
                log: None,
            });
        };
        let t0 = Instant::now();
        let deadline = t0 + timeout;
        env.kill_process(&leader.name)?;
        let timed_out = |what: &str| Error::Timeout {
            what: what.to_string(),
            secs: timeout.as_secs(),
            detail: format!("after killing {}", leader.name),
        };
        let new_leader = loop {
            if let Some(l) = self.leader(hub).await?
                && l != leader
            {
                break l;
            }
            if Instant::now() >= deadline {
                return Err(timed_out("another hub replica to take the Lease"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let to_new_leader = t0.elapsed();
        while metric(new_leader.admin, "drbridge_hub_agents_in_sync").await != Some(agents as f64) {
            if Instant::now() >= deadline {
                return Err(timed_out("every agent in sync on the new leader"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let to_in_sync = t0.elapsed();
        env.resume_process(&leader.name)?;
        Ok(LeaderKill {
            killed: leader.name,
            new_leader: new_leader.name,
            to_new_leader,
            to_in_sync,
        })
    }
}

/// Starts drbridge-hub on the hub and an agent per managed cluster, and waits until every
/// ManagedCluster is Available. Returns the hub's gRPC endpoint.
pub async fn start_drbridge(
    env: &mut Env,
    hub_bin: &Path,
    agent_bin: &Path,
    timeout: Duration,
) -> Result<String, Error> {
    let started = start(env, hub_bin, agent_bin, timeout, &Options::default()).await?;
    Ok(started.endpoint)
}

/// [`start_drbridge`] as `opts` say.
pub async fn start(
    env: &mut Env,
    hub_bin: &Path,
    agent_bin: &Path,
    timeout: Duration,
    opts: &Options<'_>,
) -> Result<Drbridge, Error> {
    let names = env.cluster_names();
    let Some((hub_name, managed)) = names.split_first() else {
        return Err(Error::Start {
            what: "drbridge".into(),
            why: "no clusters".into(),
            log: None,
        });
    };
    let managed: Vec<String> = managed.to_vec();
    let hub = env.client(hub_name).await?;
    prepare_hub(&hub, &managed).await?;
    for m in &managed {
        prepare_managed(&env.client(m).await?).await?;
    }
    let replicated = opts.replicas > 1;
    if replicated {
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": LEASE_NAMESPACE}}))
            .expect("a namespace");
        Api::<Namespace>::all(hub.clone())
            .patch(
                LEASE_NAMESPACE,
                &PatchParams::apply("drbridge-testbed").force(),
                &Patch::Apply(&ns),
            )
            .await?;
    }
    let pki = BridgePki::ensure(&env.dir().join("drbridge-pki"))?;
    let hub_tls = pki.hub();
    let s = |p: &Path| p.display().to_string();
    let mut replicas = Vec::new();
    let mut grpc = Vec::new();
    for i in 0..opts.replicas.max(1) {
        let name = hub_process(i);
        let port = free_port()?;
        let admin = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let mut args = vec![
            format!("--listen-addr=127.0.0.1:{port}"),
            format!("--admin-addr={admin}"),
            // Its own loopback port: the default 0.0.0.0:8444 is taken as soon
            // as a second environment runs on the machine.
            format!("--join-addr=127.0.0.1:{}", free_port()?),
            format!("--tls-cert={}", s(&hub_tls.cert)),
            format!("--tls-key={}", s(&hub_tls.key)),
            format!("--tls-ca={}", s(&hub_tls.ca)),
            format!("--kubeconfig={}", s(&env.kubeconfig(hub_name)?)),
            // Explicit: localenv's process guard (attached lifetime) exports
            // DRBRIDGE_LOG as the log file's path, which the hub and agent would
            // read as their log filter.
            "--log=info".into(),
        ];
        if replicated {
            args.extend([
                format!("--hub-id={name}"),
                "--leader-election".into(),
                format!("--namespace={LEASE_NAMESPACE}"),
                format!("--lease-name={LEASE_NAME}"),
            ]);
        } else {
            args.push("--hub-id=local".into());
        }
        env.spawn(&name, hub_bin, &args, &[])?;
        grpc.push(SocketAddr::from(([127, 0, 0, 1], port)));
        replicas.push(HubReplica { name, admin });
    }
    let (hub_addr, front) = if replicated {
        let front = Front::start(SocketAddr::from(([127, 0, 0, 1], 0)), grpc)
            .await
            .map_err(|e| Error::Start {
                what: "the hub replicas' front".into(),
                why: e.to_string(),
                log: None,
            })?;
        (front.addr(), Some(front))
    } else {
        (grpc[0], None)
    };
    let dialled = (opts.route)(hub_addr);
    for m in &managed {
        let tls = pki.agent(m)?;
        let args = vec![
            format!("--hub-endpoint=https://{dialled}"),
            "--hub-server-name=localhost".into(),
            format!("--tls-cert={}", s(&tls.cert)),
            format!("--tls-key={}", s(&tls.key)),
            format!("--tls-ca={}", s(&tls.ca)),
            format!("--cluster={m}"),
            format!("--kubeconfig={}", s(&env.kubeconfig(m)?)),
            format!("--admin-addr=127.0.0.1:{}", free_port()?),
            "--log-filter=info".into(),
        ];
        let args: Vec<String> = args
            .into_iter()
            .chain(opts.agent_args.iter().map(|a| a.to_string()))
            .collect();
        env.spawn(&format!("drbridge-agent-{m}"), agent_bin, &args, &[])?;
    }
    let hubs: Vec<&str> = replicas.iter().map(|r| r.name.as_str()).collect();
    for m in &managed {
        wait_available(env, hub_name, &hubs, m, timeout).await?;
    }
    Ok(Drbridge {
        endpoint: format!("https://{hub_addr}"),
        replicas,
        _front: front,
    })
}

/// Waits until the ManagedCluster `cluster` is Available, failing early with its log when
/// a hub replica or the cluster's agent exits.
pub(crate) async fn wait_available(
    env: &mut Env,
    hub: &str,
    hubs: &[&str],
    cluster: &str,
    timeout: Duration,
) -> Result<(), Error> {
    let deadline = Instant::now() + timeout;
    let hub = env.client(hub).await?;
    let mcs: Api<drbridge_api::cluster::ManagedCluster> = Api::all(hub);
    let agent = format!("drbridge-agent-{cluster}");
    loop {
        let available = mcs
            .get_opt(cluster)
            .await
            .ok()
            .flatten()
            .and_then(|mc| mc.status)
            .is_some_and(|st| {
                st.conditions
                    .iter()
                    .any(|c| c.type_ == "ManagedClusterConditionAvailable" && c.status == "True")
            });
        if available {
            return Ok(());
        }
        for p in hubs.iter().copied().chain([agent.as_str()]) {
            if !env.process_running(p) {
                let log = env.log_path(p);
                return Err(Error::Start {
                    what: p.to_string(),
                    why: format!("it exited; last log lines:\n{}", log_tail(&log, 15)),
                    log: Some(log),
                });
            }
        }
        if Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: format!("ManagedCluster {cluster} to become Available"),
                secs: timeout.as_secs(),
                detail: format!(
                    "see {} and {}",
                    env.log_path(hubs[0]).display(),
                    env.log_path(&agent).display()
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The value of the unlabelled metric `name` as the admin server at `admin` serves it
/// (`None`: not served, or the server does not answer).
pub async fn metric(admin: SocketAddr, name: &str) -> Option<f64> {
    let mut s = tokio::net::TcpStream::connect(admin).await.ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await
        .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).await.ok()?;
    metric_value(&body, name)
}

/// `name`'s value in OpenMetrics text.
fn metric_value(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let (n, v) = l.split_once(' ')?;
        (n == name).then(|| v.trim().parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_keep_the_single_hubs_name_first() {
        assert_eq!(hub_process(0), "drbridge-hub");
        assert_eq!(hub_process(1), "drbridge-hub-1");
        // Not taken for one of a managed cluster's programs (`…-dr1`) when a cluster is lost.
        assert!(!hub_process(1).ends_with("-dr1"));
    }

    #[test]
    fn reads_an_unlabelled_metric() {
        let text = "# HELP drbridge_hub_agents_in_sync x\n# TYPE drbridge_hub_agents_in_sync gauge\n\
                    drbridge_hub_agents_in_sync 2\ndrbridge_hub_agents_in_sync_other 7\n\
                    drbridge_hub_x{cluster=\"a\"} 1\n# EOF\n";
        assert_eq!(metric_value(text, "drbridge_hub_agents_in_sync"), Some(2.0));
        assert_eq!(metric_value(text, "drbridge_hub_missing"), None);
    }
}
