//! Bringing one component up: wait until its probe says ready, and restart it
//! with backoff, a bounded number of times, if it exits first. A kubelet is
//! as forgiving with static pods; a component that keeps exiting is a real
//! error, reported with its log.

use std::future::Future;
use std::io::Write as _;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use crate::Error;
use crate::process::Process;

/// How a component that exits during start-up is started again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Restarts {
    /// Restarts after the first start; one more exit fails the start.
    pub max: u32,
    /// Pause before the first restart, doubled before each later one.
    pub backoff: Duration,
    /// The longest pause.
    pub max_backoff: Duration,
}

impl Default for Restarts {
    /// Three restarts after 0.5, 1 and 2 s: enough for a component that lost
    /// a race with its dependency on a loaded machine, short enough that a
    /// bad flag fails within seconds.
    fn default() -> Self {
        Restarts {
            max: 3,
            backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(8),
        }
    }
}

impl Restarts {
    /// The pause before restart number `n` (1-based).
    pub fn delay(&self, n: u32) -> Duration {
        let factor = 1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX);
        self.backoff.saturating_mul(factor).min(self.max_backoff)
    }
}

/// How often a component's probe and liveness are checked.
const POLL: Duration = Duration::from_millis(100);
/// A probe that takes longer counts as not ready, so a component that
/// accepts connections and never answers is still seen to exit or time out.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Waits until `ready` answers true for the running `process`, restarting it
/// (same program, arguments and log) when it exits first. `ready` gets the
/// uptime of the current run. `what` names the component in errors, e.g.
/// `dr1/kube-apiserver`. On success `process` is the run that became ready.
pub async fn until_ready<R, Fut>(
    what: &str,
    process: &mut Process,
    restarts: Restarts,
    deadline: Instant,
    mut ready: R,
) -> Result<(), Error>
where
    R: FnMut(Duration) -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    let mut exits = 0u32;
    loop {
        // Ready only counts while it still runs: a probe may pass just
        // before a crash.
        let probe = tokio::time::timeout(PROBE_TIMEOUT, ready(process.uptime()));
        if matches!(probe.await, Ok(true)) && process.is_running() {
            info!(
                component = what,
                restarts = exits,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "ready"
            );
            return Ok(());
        }
        if !process.is_running() {
            exits += 1;
            let tail = process.log_tail(15);
            if exits > restarts.max {
                return Err(Error::Start {
                    what: what.to_string(),
                    why: format!(
                        "it exited {exits} times during start-up ({} restarts); last log lines:\n{tail}",
                        restarts.max
                    ),
                    log: process.log.clone(),
                });
            }
            let delay = restarts.delay(exits);
            if Instant::now() + delay >= deadline {
                return Err(Error::Start {
                    what: what.to_string(),
                    why: format!(
                        "it exited {exits} times and the start-up deadline leaves no time to restart it; last log lines:\n{tail}"
                    ),
                    log: process.log.clone(),
                });
            }
            warn!(
                component = what,
                exits,
                ?delay,
                "exited during start-up; restarting"
            );
            tokio::time::sleep(delay).await;
            mark_restart(process, exits);
            let next = process.respawn()?;
            // The old run is gone; dropping its handle reaps its guard.
            drop(std::mem::replace(process, next));
            continue;
        }
        if Instant::now() >= deadline {
            return Err(Error::Start {
                what: what.to_string(),
                why: format!(
                    "not ready in time; last log lines:\n{}",
                    process.log_tail(15)
                ),
                log: process.log.clone(),
            });
        }
        debug!(component = what, "not ready yet");
        tokio::time::sleep(POLL).await;
    }
}

/// A line in the component's log between runs, so its log reads as a history.
fn mark_restart(process: &Process, exits: u32) {
    if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(&process.log) {
        let _ = writeln!(
            f,
            "--- drbridge-localenv: {} exited during start-up ({exits}); restarting ---",
            process.name
        );
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::process::Lifetime;

    fn quick() -> Restarts {
        Restarts {
            max: 3,
            backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(40),
        }
    }

    /// A program that fails its first `fails` runs (counted in a file),
    /// then marks itself ready and stays up.
    fn flaky(dir: &Path, fails: u32) -> Process {
        let script = format!(
            r#"n=$(($(cat runs 2>/dev/null || echo 0) + 1)); echo $n > runs
if [ $n -le {fails} ]; then echo "run $n: apiserver not healthy"; exit 1; fi
echo "run $n: up"; touch ready; exec sleep 600"#
        );
        let args = vec![
            "-c".to_string(),
            format!("cd {} && {script}", dir.display()),
        ];
        Process::spawn(
            "flaky",
            Path::new("sh"),
            &args,
            &dir.join("flaky.log"),
            Lifetime::Attached,
        )
        .unwrap()
    }

    fn runs(dir: &Path) -> u32 {
        std::fs::read_to_string(dir.join("runs"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let r = Restarts {
            max: 10,
            backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(3),
        };
        let d: Vec<u64> = (1..=5).map(|n| r.delay(n).as_millis() as u64).collect();
        assert_eq!(d, [500, 1000, 2000, 3000, 3000]);
        assert_eq!(r.delay(200), Duration::from_secs(3));
    }

    #[tokio::test]
    async fn component_that_exits_is_restarted_until_ready() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let mut p = flaky(&dir, 2);
        let deadline = Instant::now() + Duration::from_secs(60);
        until_ready("c1/flaky", &mut p, quick(), deadline, |_| {
            let ready = dir.join("ready");
            async move { ready.exists() }
        })
        .await
        .expect("ready after two restarts");
        assert_eq!(runs(&dir), 3);
        assert!(p.is_running());
        let log = std::fs::read_to_string(dir.join("flaky.log")).unwrap();
        assert!(
            log.contains("flaky exited during start-up (2); restarting"),
            "{log}"
        );
        assert!(log.ends_with("run 3: up\n"), "{log}");
    }

    #[tokio::test]
    async fn component_that_keeps_exiting_fails_with_its_log() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let mut p = flaky(&dir, 100);
        let deadline = Instant::now() + Duration::from_secs(60);
        let err = until_ready("c1/flaky", &mut p, quick(), deadline, |_| async { false })
            .await
            .expect_err("gives up");
        assert_eq!(runs(&dir), 4, "one start and three restarts");
        let msg = err.to_string();
        assert!(msg.starts_with("c1/flaky did not start"), "{msg}");
        assert!(msg.contains("exited 4 times"), "{msg}");
        assert!(msg.contains("run 4: apiserver not healthy"), "{msg}");
        assert!(msg.contains("flaky.log"), "{msg}");
    }

    #[tokio::test]
    async fn component_that_never_gets_ready_fails_at_the_deadline() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let mut p = flaky(&dir, 0);
        let deadline = Instant::now() + Duration::from_millis(500);
        let err = until_ready("c1/flaky", &mut p, quick(), deadline, |_| async { false })
            .await
            .expect_err("deadline");
        assert_eq!(runs(&dir), 1, "a running component is not restarted");
        let msg = err.to_string();
        assert!(msg.contains("not ready in time"), "{msg}");
        assert!(msg.contains("run 1: up"), "{msg}");
    }

    #[tokio::test]
    async fn probe_sees_the_uptime_of_the_current_run() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let mut p = flaky(&dir, 1);
        let deadline = Instant::now() + Duration::from_secs(60);
        let settle = Duration::from_millis(300);
        until_ready("c1/flaky", &mut p, quick(), deadline, |up| {
            let ready = dir.join("ready");
            async move { up >= settle && ready.exists() }
        })
        .await
        .unwrap();
        assert_eq!(runs(&dir), 2);
        assert!(p.uptime() >= settle);
    }
}
