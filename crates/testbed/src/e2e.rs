//! Ramen's own e2e suite, unmodified, against the test bed: the config it
//! reads, the sample workloads served from a local bare git repository, and a
//! runner that streams its output and reports each step's outcome and time.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::manifests::names::*;
use crate::source::{self, Source};
use crate::{Error, Testbed};

/// The test Ramen's e2e names `{deployer}-{workload}-{pvcspec}`.
pub const TEST: &str = "disapp-deploy-rbd";
/// The steps of one test flow (e2e/dr_test.go), in order.
pub const STEPS: [&str; 6] = [
    "Deploy", "Enable", "Failover", "Relocate", "Disable", "Undeploy",
];

/// The e2e configuration (fields of e2e/config/config.go): the discovered
/// application deployer on the simulated storage, and only that, since the
/// bed runs no OCM application lifecycle, ArgoCD or CephFS.
pub fn config(repo_url: &str, hub: &Path, c1: &Path, c2: &Path) -> String {
    format!(
        "# Written by drbridge-testbed for Ramen's e2e.\n\
         distro: k8s\n\
         repo:\n  url: \"{repo_url}\"\n  branch: main\n\
         drPolicy: {DR_POLICY}\n\
         clusterSet: {CLUSTER_SET}\n\
         pvcSpecs:\n  - name: rbd\n    storageClassName: {STORAGE_CLASS}\n    accessModes: ReadWriteOnce\n\
         deployers:\n  - name: disapp\n    type: disapp\n    description: Discovered application without recipe\n\
         tests:\n  - deployer: disapp\n    workload: deploy\n    pvcSpec: rbd\n\
         clusters:\n  hub:\n    kubeconfig: {}\n  c1:\n    kubeconfig: {}\n  c2:\n    kubeconfig: {}\n",
        hub.display(),
        c1.display(),
        c2.display()
    )
}

/// Serves the samples as e2e expects: a bare clone whose directory ends in
/// `.git` (kustomize splits the repository from the path there), branch
/// `main`. Returns its `file://` URL.
pub fn samples_repo(samples: &Source, cache: &Path, dir: &Path) -> Result<String, Error> {
    let (tree, _) = source::unpack(samples, cache)?;
    let bare = dir.join("git").join("ocm-ramen-samples.git");
    let url = format!("file://{}", bare.display());
    // e2e derives a Channel name from the URL; Kubernetes names have no '_'.
    if url.contains('_') {
        return Err(Error::Start {
            what: "the samples repository".into(),
            why: format!("its URL {url} contains '_', which Ramen's e2e cannot use"),
            log: None,
        });
    }
    if bare.join("HEAD").exists() {
        return Ok(url);
    }
    let work = dir.join("git").join("samples-work");
    let _ = std::fs::remove_dir_all(&work);
    copy_tree(&tree, &work)?;
    let _ = std::fs::remove_dir_all(work.join(".git"));
    git(&work, &["init", "--quiet", "--initial-branch=main"])?;
    git(&work, &["add", "--all"])?;
    git(
        &work,
        &[
            "-c",
            "user.name=drbridge-testbed",
            "-c",
            "user.email=testbed@drbridge.invalid",
            "commit",
            "--quiet",
            "-m",
            "ocm-ramen-samples snapshot",
        ],
    )?;
    let parent = dir.join("git");
    git(
        &parent,
        &[
            "clone",
            "--quiet",
            "--bare",
            &work.display().to_string(),
            &bare.display().to_string(),
        ],
    )?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(url)
}

fn git(dir: &Path, args: &[&str]) -> Result<(), Error> {
    let out = std::process::Command::new("git")
        .current_dir(dir)
        .args(args)
        .output()
        .map_err(|e| Error::io(Path::new("git"), e))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Command {
            command: format!("git {}", args.join(" ")),
            output: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

fn copy_tree(from: &Path, to: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(to).map_err(|e| Error::io(to, e))?;
    for e in std::fs::read_dir(from).map_err(|e| Error::io(from, e))? {
        let e = e.map_err(|e| Error::io(from, e))?;
        let (src, dst) = (e.path(), to.join(e.file_name()));
        let ty = e.file_type().map_err(|e| Error::io(&src, e))?;
        if ty.is_dir() {
            copy_tree(&src, &dst)?;
        } else if ty.is_file() {
            std::fs::copy(&src, &dst).map_err(|e| Error::io(&src, e))?;
        }
    }
    Ok(())
}

/// Writes the samples repository and the e2e config for a running bed;
/// returns the config's path.
pub fn prepare(bed: &Testbed, samples: &Source) -> Result<PathBuf, Error> {
    let dir = bed.env.dir().join("e2e");
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let url = samples_repo(samples, &drbridge_localenv::cache_dir(), &dir)?;
    let [c1, c2] = crate::bed::MANAGED;
    let text = config(
        &url,
        &bed.kubeconfig(crate::bed::HUB)?,
        &bed.kubeconfig(c1)?,
        &bed.kubeconfig(c2)?,
    );
    let path = dir.join("config.yaml");
    std::fs::write(&path, text).map_err(|e| Error::io(&path, e))?;
    Ok(path)
}

/// How one step ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Fail,
    Skip,
}

/// One step of the flow as the test binary reported it.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub name: String,
    pub outcome: Outcome,
    /// The time `go test` printed for it.
    pub secs: f64,
}

/// What a run of the e2e binary showed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    pub steps: Vec<Step>,
    /// Whether the whole test (`TestDR/<test>`) was skipped; Go counts a
    /// skipped test as passed, we do not.
    pub skipped: Option<String>,
    /// Lines that explain a failure (`--- FAIL`, error lines of failed steps).
    pub failure_lines: Vec<String>,
    pub exit_ok: bool,
    pub wall: Duration,
}

impl Report {
    /// Passed only if every step ran and passed and the binary exited 0.
    pub fn passed(&self) -> bool {
        self.exit_ok
            && self.skipped.is_none()
            && STEPS
                .iter()
                .all(|s| self.step(s).is_some_and(|st| st.outcome == Outcome::Pass))
    }

    pub fn step(&self, name: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.name == name)
    }

    /// The first step that did not pass: failed, or never reached.
    pub fn failed_step(&self) -> Option<String> {
        if let Some(why) = &self.skipped {
            return Some(format!("the test was skipped: {why}"));
        }
        for s in STEPS {
            match self.step(s) {
                Some(st) if st.outcome == Outcome::Pass => continue,
                Some(st) => return Some(format!("{s} ({:?} after {:.1}s)", st.outcome, st.secs)),
                None => return Some(format!("{s} (never finished)")),
            }
        }
        (!self.exit_ok).then(|| "the e2e binary failed after every step passed".into())
    }

    /// One line per step: name, outcome, seconds.
    pub fn table(&self) -> String {
        let mut s = String::new();
        for name in STEPS {
            match self.step(name) {
                Some(st) => s.push_str(&format!(
                    "{name:<9} {:<5} {:>7.1}s\n",
                    format!("{:?}", st.outcome),
                    st.secs
                )),
                None => s.push_str(&format!("{name:<9} -\n")),
            }
        }
        s.push_str(&format!(
            "{:<9} {:<5} {:>7.1}s\n",
            "total",
            "",
            self.wall.as_secs_f64()
        ));
        s
    }

    /// Feeds one line of `go test -test.v` output.
    pub fn observe(&mut self, line: &str) {
        let t = line.trim_start();
        let (outcome, rest) = if let Some(r) = t.strip_prefix("--- PASS: ") {
            (Outcome::Pass, r)
        } else if let Some(r) = t.strip_prefix("--- FAIL: ") {
            (Outcome::Fail, r)
        } else if let Some(r) = t.strip_prefix("--- SKIP: ") {
            (Outcome::Skip, r)
        } else {
            if !self.failure_lines.is_empty() && self.failure_lines.len() < 40 && !t.is_empty() {
                // Lines after a FAIL header are the reasons go test prints.
                self.failure_lines.push(line.to_string());
            }
            return;
        };
        let (name, secs) = match rest.rsplit_once(" (") {
            Some((n, d)) => (
                n.trim(),
                d.trim_end_matches(')')
                    .trim_end_matches('s')
                    .parse()
                    .unwrap_or(0.0),
            ),
            None => (rest.trim(), 0.0),
        };
        let parts: Vec<&str> = name.split('/').collect();
        match parts.as_slice() {
            ["TestDR", test] if *test == TEST && outcome == Outcome::Skip => {
                self.skipped = Some("see the lines before --- SKIP".into());
            }
            ["TestDR", test, step] if *test == TEST => {
                self.steps.retain(|s| s.name != *step);
                self.steps.push(Step {
                    name: step.to_string(),
                    outcome: outcome.clone(),
                    secs,
                });
            }
            _ => {}
        }
        if outcome == Outcome::Fail {
            self.failure_lines.push(line.to_string());
        }
    }
}

/// Runs `ramen-e2e -test.v -test.run TestDR -config CONFIG -logfile LOG` in
/// the config's directory, passing every output line to `on_line` as it
/// comes; returns what it showed. `timeout` bounds the whole run.
pub async fn run(
    binary: &Path,
    config: &Path,
    timeout: Duration,
    mut on_line: impl FnMut(&str),
) -> Result<Report, Error> {
    let dir = config.parent().unwrap_or(Path::new("."));
    let log = dir.join("ramen-e2e.log");
    let started = Instant::now();
    let mut child = tokio::process::Command::new(binary)
        .current_dir(dir)
        .args(["-test.v", "-test.run", "TestDR", "-test.timeout", "0"])
        .arg("-config")
        .arg(config)
        .arg("-logfile")
        .arg(&log)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Error::io(binary, e))?;
    // Both streams into one channel, so lines keep their order of arrival.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    for reader in [
        Box::new(stdout) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
        Box::new(stderr),
    ] {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(reader).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
    }
    drop(tx);
    let mut report = Report::default();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(l)) => {
                report.observe(&l);
                on_line(&l);
            }
            Ok(None) => break,
            Err(_) => {
                let _ = child.kill().await;
                report.wall = started.elapsed();
                return Err(Error::Timeout {
                    what: "Ramen's e2e".into(),
                    secs: timeout.as_secs(),
                    detail: format!("steps so far:\n{}", report.table()),
                });
            }
        }
    }
    let status = child.wait().await.map_err(|e| Error::io(binary, e))?;
    report.exit_ok = status.success();
    report.wall = started.elapsed();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(lines: &str) -> Report {
        let mut r = Report::default();
        for l in lines.lines() {
            r.observe(l);
        }
        r
    }

    #[test]
    fn a_full_pass() {
        let mut r = feed(
            "=== RUN   TestDR\n\
             --- PASS: TestDR (500.00s)\n    --- PASS: TestDR/disapp-deploy-rbd (499.00s)\n\
             \x20       --- PASS: TestDR/disapp-deploy-rbd/Deploy (10.50s)\n\
             \x20       --- PASS: TestDR/disapp-deploy-rbd/Enable (60.00s)\n\
             \x20       --- PASS: TestDR/disapp-deploy-rbd/Failover (120.00s)\n\
             \x20       --- PASS: TestDR/disapp-deploy-rbd/Relocate (200.00s)\n\
             \x20       --- PASS: TestDR/disapp-deploy-rbd/Disable (30.00s)\n\
             \x20       --- PASS: TestDR/disapp-deploy-rbd/Undeploy (5.00s)\nPASS\n",
        );
        r.exit_ok = true;
        assert!(r.passed(), "{r:?}");
        assert_eq!(r.step("Enable").unwrap().secs, 60.0);
        assert_eq!(r.failed_step(), None);
    }

    #[test]
    fn names_the_failed_step() {
        let r = feed(
            "        --- PASS: TestDR/disapp-deploy-rbd/Deploy (10.50s)\n\
             \x20       --- FAIL: TestDR/disapp-deploy-rbd/Enable (300.00s)\n\
             \x20           dr_test.go:12: timed out waiting for drpc\n",
        );
        assert!(!r.passed());
        assert_eq!(
            r.failed_step().unwrap(),
            "Enable (Fail after 300.0s)".to_string()
        );
        assert!(r.failure_lines.iter().any(|l| l.contains("timed out")));
    }

    #[test]
    fn a_skipped_test_is_not_a_pass() {
        let mut r =
            feed("    --- SKIP: TestDR/disapp-deploy-rbd (0.01s)\n--- PASS: TestDR (0.02s)\n");
        r.exit_ok = true;
        assert!(!r.passed());
        assert!(r.failed_step().unwrap().contains("skipped"));
    }

    #[test]
    fn steps_not_reached_are_named() {
        let mut r = feed("        --- PASS: TestDR/disapp-deploy-rbd/Deploy (1.00s)\n");
        r.exit_ok = false;
        assert_eq!(r.failed_step().unwrap(), "Enable (never finished)");
    }

    #[test]
    fn config_names_the_bed() {
        let c = config(
            "file:///x/ocm-ramen-samples.git",
            Path::new("/h"),
            Path::new("/1"),
            Path::new("/2"),
        );
        let v: serde_json::Value = serde_saphyr::from_str(&c).unwrap();
        assert_eq!(v["distro"], "k8s");
        assert_eq!(v["drPolicy"], DR_POLICY);
        assert_eq!(v["pvcSpecs"][0]["storageClassName"], STORAGE_CLASS);
        assert_eq!(v["tests"][0]["deployer"], "disapp");
        assert_eq!(v["clusters"]["c2"]["kubeconfig"], "/2");
    }
}
