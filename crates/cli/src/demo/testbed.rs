//! What `drbridge demo` needs from the Ramen test bed, and the two ways to get one: start it
//! with the test bed crate ([`start_ramen_testbed`]: it can then lose a cluster and heal it),
//! or attach to one already running from its directory ([`StateDir`], read through
//! `drbridge_localenv::EnvState`: it can lose a cluster but not start it again).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use drbridge_localenv::EnvState;
use drbridge_localenv::process::stop_pid;
use futures::future::BoxFuture;

/// Names and files of a running test bed.
#[derive(Debug, Clone)]
pub struct TestbedInfo {
    /// The environment's directory (its state file, logs, kubeconfigs).
    pub dir: PathBuf,
    pub hub: String,
    /// The two managed clusters: the application starts on the first.
    pub clusters: [String; 2],
    pub kubeconfigs: BTreeMap<String, PathBuf>,
    /// A kubectl matching the clusters (it applies the sample with its built-in kustomize).
    pub kubectl: PathBuf,
    /// The DRPolicy the test bed created (`dr-policy-1m`).
    pub policy: String,
    /// The StorageClass of the storage simulator; `None`: the demo looks for the one with
    /// Ramen's `ramendr.openshift.io/storageid` label on the first cluster.
    pub storage_class: Option<String>,
    /// The ManagedClusterSet for the Placement (`default`).
    pub cluster_set: Option<String>,
    /// The ocm-ramen-samples tree (directory or .tar.gz), if the test bed knows it.
    pub samples: Option<PathBuf>,
}

impl TestbedInfo {
    /// What the demo needs of the environment in `dir`: a hub and two managed clusters.
    fn from_state(
        dir: &Path,
        state: &EnvState,
        policy: &str,
        storage_class: Option<String>,
        samples: Option<PathBuf>,
    ) -> anyhow::Result<TestbedInfo> {
        let names: Vec<String> = state.clusters.iter().map(|c| c.name.clone()).collect();
        let [hub, a, b] = names.as_slice() else {
            bail!(
                "the environment in {} has clusters {}; the demo needs a hub and two managed clusters",
                dir.display(),
                names.join(", ")
            );
        };
        Ok(TestbedInfo {
            dir: dir.to_path_buf(),
            hub: hub.clone(),
            clusters: [a.clone(), b.clone()],
            kubeconfigs: state
                .clusters
                .iter()
                .map(|c| (c.name.clone(), c.kubeconfig.clone()))
                .collect(),
            kubectl: state.kubectl.clone(),
            policy: policy.to_string(),
            storage_class,
            cluster_set: Some("default".into()),
            samples,
        })
    }

    pub fn kubeconfig(&self, cluster: &str) -> anyhow::Result<&Path> {
        self.kubeconfigs
            .get(cluster)
            .map(PathBuf::as_path)
            .with_context(|| format!("the test bed has no cluster {cluster}"))
    }
}

/// A running Ramen test bed the demo can act on.
pub trait Testbed: Send {
    fn info(&self) -> &TestbedInfo;
    /// Stops a managed cluster as a data centre going dark: its API server (with etcd and the
    /// controller-manager) and its drbridge agent, keeping its data.
    fn stop_cluster(&mut self, cluster: &str) -> anyhow::Result<()>;
    /// Starts what [`Testbed::stop_cluster`] stopped and waits until the API server answers.
    fn start_cluster<'a>(&'a mut self, cluster: &'a str) -> BoxFuture<'a, anyhow::Result<()>>;
    /// Leaves everything running after the demo.
    fn keep(self: Box<Self>);
}

/// Build progress, as the test bed reports it while it builds and starts.
pub type ProgressFn = dyn Fn(drbridge_localenv::Progress) + Send + Sync;

/// Builds (first time) or finds everything and starts the Ramen test bed in `dir`, as
/// `drbridge env up --ramen` does. It outlives this command (`drbridge demo --down` stops it);
/// if it does not come up, what it started is stopped and the logs stay.
pub async fn start_ramen_testbed(
    dir: &Path,
    tools: drbridge_testbed::Tools,
    policy: &str,
    samples: Option<PathBuf>,
    progress: &ProgressFn,
) -> anyhow::Result<Box<dyn Testbed>> {
    use drbridge_testbed::{TestbedOptions, source};
    let root = crate::stack::repo_root();
    let ramen_source = source::ramen(None, &root)?;
    let samples = match samples {
        Some(s) => s,
        None => {
            source::unpack(
                &source::samples(None, &root)?,
                &drbridge_localenv::cache_dir(),
            )?
            .0
        }
    };
    let opts = TestbedOptions {
        dir: dir.to_path_buf(),
        lifetime: drbridge_localenv::Lifetime::Detached,
        ramen_source,
        tools,
        timeout: Duration::from_secs(600),
        // The environment outlives the demo, and the replicas' front would not.
        hub_replicas: 1,
    };
    let bed = drbridge_testbed::Testbed::start(opts, progress)
        .await
        .context("starting the Ramen test bed")?;
    let info = TestbedInfo::from_state(dir, &bed.env.state(), policy, None, Some(samples))?;
    Ok(Box::new(Started { bed, info }))
}

/// A test bed this command started: it can lose a cluster and heal it again.
struct Started {
    bed: drbridge_testbed::Testbed,
    info: TestbedInfo,
}

impl Testbed for Started {
    fn info(&self) -> &TestbedInfo {
        &self.info
    }

    fn stop_cluster(&mut self, cluster: &str) -> anyhow::Result<()> {
        Ok(self.bed.lose_cluster(cluster)?)
    }

    fn start_cluster<'a>(&'a mut self, cluster: &'a str) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            Ok(self
                .bed
                .heal_cluster(cluster, Duration::from_secs(600))
                .await?)
        })
    }

    fn keep(self: Box<Self>) {
        let _ = self.bed.env.detach();
    }
}

/// A test bed started by another process, known from its state file. It can stop a cluster
/// (by the pids the file records) but not start one again: only the process that started the
/// environment knows how.
#[derive(Debug)]
pub struct StateDir {
    info: TestbedInfo,
    state: EnvState,
}

/// The name under which the local environment runs a cluster's agent (`stack.rs`).
fn agent_process(cluster: &str) -> String {
    format!("drbridge-agent-{cluster}")
}

impl StateDir {
    /// Attaches to the environment in `dir`. `None` when there is none.
    pub fn attach(
        dir: &Path,
        policy: &str,
        storage_class: Option<String>,
        samples: Option<PathBuf>,
    ) -> anyhow::Result<Option<StateDir>> {
        let state = match EnvState::load(dir) {
            Ok(s) => s,
            Err(drbridge_localenv::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let info = TestbedInfo::from_state(dir, &state, policy, storage_class, samples)?;
        Ok(Some(StateDir { info, state }))
    }

    fn save(&self) -> anyhow::Result<()> {
        let path = EnvState::path(&self.info.dir);
        std::fs::write(&path, serde_json::to_string_pretty(&self.state)?)
            .with_context(|| format!("writing {}", path.display()))
    }
}

impl Testbed for StateDir {
    fn info(&self) -> &TestbedInfo {
        &self.info
    }

    fn stop_cluster(&mut self, cluster: &str) -> anyhow::Result<()> {
        let agent = agent_process(cluster);
        if let Some(pos) = self.state.extra.iter().position(|p| p.name == agent) {
            let p = self.state.extra.remove(pos);
            stop_pid(p.pid, Duration::from_secs(10));
        }
        let c = self
            .state
            .clusters
            .iter_mut()
            .find(|c| c.name == cluster)
            .with_context(|| format!("the environment has no cluster {cluster}"))?;
        for comp in ["kube-controller-manager", "kube-apiserver", "etcd"] {
            if let Some(pid) = c.pids.remove(comp) {
                stop_pid(pid, Duration::from_secs(10));
            }
        }
        // The state file must not name pids that are gone (`env down` would signal them).
        self.save()
    }

    fn start_cluster<'a>(&'a mut self, cluster: &'a str) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            bail!(
                "{cluster} cannot be started again from here: the environment in {} was started \
                 by another process, which alone can restart a cluster; tear it down with \
                 `drbridge demo --down --env-dir {}`",
                self.info.dir.display(),
                self.info.dir.display()
            )
        })
    }

    fn keep(self: Box<Self>) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attaches_only_to_a_hub_with_two_managed_clusters() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            StateDir::attach(dir.path(), "p", None, None)
                .unwrap()
                .is_none()
        );
        let cluster = |n: &str| {
            serde_json::json!({"name": n, "server": "https://127.0.0.1:1",
                "ports": {"apiserver": 1, "etcd_client": 2, "etcd_peer": 3},
                "kubeconfig": format!("/k/{n}.kubeconfig"), "pids": {}})
        };
        let write = |clusters: Vec<serde_json::Value>| {
            std::fs::write(
                EnvState::path(dir.path()),
                serde_json::json!({"kubernetes_version": "v1", "etcd_version": "v3",
                    "kubectl": "/k/kubectl", "clusters": clusters, "extra": []})
                .to_string(),
            )
            .unwrap();
        };
        write(vec![cluster("hub"), cluster("dr1")]);
        let e = StateDir::attach(dir.path(), "p", None, None).unwrap_err();
        assert!(
            e.to_string()
                .contains("needs a hub and two managed clusters")
        );
        write(vec![cluster("hub"), cluster("dr1"), cluster("dr2")]);
        let tb = StateDir::attach(dir.path(), "dr-policy-1m", None, None)
            .unwrap()
            .unwrap();
        let info = tb.info();
        assert_eq!(info.hub, "hub");
        assert_eq!(info.clusters, ["dr1".to_string(), "dr2".to_string()]);
        assert_eq!(
            info.kubeconfig("dr2").unwrap(),
            Path::new("/k/dr2.kubeconfig")
        );
        assert!(info.kubeconfig("dr3").is_err());
    }
}
