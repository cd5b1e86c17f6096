//! Child processes of the local environment.
//!
//! Attached processes (tests) must die with their owner, even when the owner is
//! killed and never runs its destructors. Without `unsafe` there is no
//! PR_SET_PDEATHSIG, so each program runs under a tiny shell guard that holds a
//! pipe from us: when the pipe closes (we dropped it, or we died), the guard
//! stops the program. Detached processes (`drbridge env up`) outlive the
//! command and are stopped by pid from the state file.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::Error;

/// How a process is tied to its owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lifetime {
    /// Stops when the owner drops it or exits.
    Attached,
    /// Outlives the owner; stopped by pid.
    Detached,
}

/// A running program of the environment.
#[derive(Debug)]
pub struct Process {
    pub name: String,
    pub pid: u32,
    pub log: PathBuf,
    guard: Option<Child>,
    started: Instant,
    /// What it was started with, to start it again the same way.
    spec: Spec,
}

#[derive(Clone, Debug)]
struct Spec {
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    lifetime: Lifetime,
}

// The log path is the first argument, not an environment variable: the child inherits
// the guard's environment, and drbridge's own binaries read `DRBRIDGE_LOG` as their log filter.
const GUARD: &str = r#"
log=$1
shift
"$@" </dev/null >>"$log" 2>&1 &
child=$!
echo "$child"
cat >/dev/null
kill -TERM "$child" 2>/dev/null
wait "$child"
"#;

impl Process {
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[String],
        log: &Path,
        lifetime: Lifetime,
    ) -> Result<Process, Error> {
        Self::spawn_with_env(name, program, args, &[], log, lifetime)
    }

    pub fn spawn_with_env(
        name: &str,
        program: &Path,
        args: &[String],
        env: &[(&str, String)],
        log: &Path,
        lifetime: Lifetime,
    ) -> Result<Process, Error> {
        let spec = Spec {
            program: program.to_path_buf(),
            args: args.to_vec(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            lifetime,
        };
        Self::start(name, spec, log)
    }

    /// Starts the same program again with the same arguments, environment and
    /// log (appended to), after this run exited.
    pub fn respawn(&self) -> Result<Process, Error> {
        Self::start(&self.name, self.spec.clone(), &self.log)
    }

    /// How long this run has been going.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    fn start(name: &str, spec: Spec, log: &Path) -> Result<Process, Error> {
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let (program, args, lifetime) = (&spec.program, &spec.args, spec.lifetime);
        let env = &spec.env;
        let started = Instant::now();
        match lifetime {
            Lifetime::Attached => {
                let mut child = Command::new("sh")
                    .arg("-c")
                    .arg(GUARD)
                    .arg("drbridge-guard")
                    .arg(log)
                    .arg(program)
                    .args(args)
                    .envs(env.iter().map(|(k, v)| (k, v)))
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .spawn()
                    .map_err(|e| Error::io(program, e))?;
                let mut first = String::new();
                let stdout = child.stdout.take().expect("piped stdout");
                BufReader::new(stdout)
                    .read_line(&mut first)
                    .map_err(|e| Error::io(program, e))?;
                let pid = first.trim().parse().map_err(|_| Error::Start {
                    what: name.to_string(),
                    why: "the process guard did not report a pid".into(),
                    log: log.to_path_buf(),
                })?;
                Ok(Process {
                    name: name.to_string(),
                    pid,
                    log: log.to_path_buf(),
                    guard: Some(child),
                    started,
                    spec,
                })
            }
            Lifetime::Detached => {
                use std::os::unix::process::CommandExt;
                let out = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(log)
                    .map_err(|e| Error::io(log, e))?;
                let err = out.try_clone().map_err(|e| Error::io(log, e))?;
                let child = Command::new(program)
                    .args(args)
                    .envs(env.iter().map(|(k, v)| (k, v)))
                    .stdin(Stdio::null())
                    .stdout(out)
                    .stderr(err)
                    // Its own process group: a Ctrl-C in the terminal that ran
                    // `env up` must not take the environment down.
                    .process_group(0)
                    .spawn()
                    .map_err(|e| Error::io(program, e))?;
                Ok(Process {
                    name: name.to_string(),
                    pid: child.id(),
                    log: log.to_path_buf(),
                    guard: None,
                    started,
                    spec,
                })
            }
        }
    }

    /// Whether the program still runs.
    pub fn is_running(&mut self) -> bool {
        if let Some(g) = self.guard.as_mut()
            && let Ok(Some(_)) = g.try_wait()
        {
            return false;
        }
        pid_alive(self.pid)
    }

    /// The last lines of its log, for error messages.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log, lines)
    }

    /// Stops the program: SIGTERM, then SIGKILL after `grace`.
    pub fn stop(&mut self, grace: Duration) {
        match self.guard.take() {
            Some(mut guard) => {
                // Closing the pipe makes the guard send SIGTERM and wait.
                drop(guard.stdin.take());
                if !wait_child(&mut guard, grace) {
                    let _ = kill(Pid::from_raw(self.pid as i32), Signal::SIGKILL);
                    let _ = guard.kill();
                    let _ = guard.wait();
                }
            }
            None => stop_pid(self.pid, grace),
        }
    }

    /// Kills the program at once (SIGKILL: no shutdown, as a crash or an OOM kill) and waits
    /// until it is gone.
    pub fn kill(&mut self) {
        let _ = kill(Pid::from_raw(self.pid as i32), Signal::SIGKILL);
        match self.guard.take() {
            // The guard reaps its child and exits once it is gone.
            Some(mut guard) => {
                drop(guard.stdin.take());
                let _ = guard.wait();
            }
            None => {
                let until = Instant::now() + Duration::from_secs(10);
                while pid_alive(self.pid) && Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }

    /// Asks an attached program to stop without waiting for it.
    pub fn close(&mut self) {
        if let Some(g) = self.guard.as_mut() {
            drop(g.stdin.take());
        }
    }

    /// Lets the program run on after this handle is gone (used by `env up`).
    pub fn release(mut self) -> u32 {
        self.guard = None;
        self.pid
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.guard.is_some() {
            self.stop(Duration::from_secs(10));
        }
    }
}

fn wait_child(child: &mut Child, deadline: Duration) -> bool {
    let until = Instant::now() + deadline;
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether a process with this pid exists (and is not a zombie of ours).
pub fn pid_alive(pid: u32) -> bool {
    if kill(Pid::from_raw(pid as i32), None).is_err() {
        return false;
    }
    // A zombie still answers signal 0; /proc tells them apart.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// SIGTERM, wait up to `grace`, then SIGKILL.
pub fn stop_pid(pid: u32, grace: Duration) {
    let p = Pid::from_raw(pid as i32);
    if kill(p, Signal::SIGTERM).is_err() {
        return;
    }
    let until = Instant::now() + grace;
    while pid_alive(pid) {
        if Instant::now() >= until {
            let _ = kill(p, Signal::SIGKILL);
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The last `lines` lines of a log file.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// drbridge's binaries read `DRBRIDGE_LOG` as their log filter: the guard must not hand
    /// its log path to the child in that variable (the hub exited with "invalid log filter").
    #[test]
    fn an_attached_child_sees_only_the_environment_it_was_given() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("child.log");
        let script =
            r#"echo "filter=${DRBRIDGE_LOG-unset} given=$GIVEN"; touch done; exec sleep 600"#;
        let args = vec![
            "-c".to_string(),
            format!("cd {} && {script}", dir.path().display()),
        ];
        let mut p = Process::spawn_with_env(
            "child",
            Path::new("sh"),
            &args,
            &[("GIVEN", "yes".to_string())],
            &log,
            Lifetime::Attached,
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !dir.path().join("done").exists() {
            assert!(
                Instant::now() < deadline,
                "the child never ran: {}",
                p.log_tail(20)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        p.stop(Duration::from_secs(5));
        let out = std::fs::read_to_string(&log).unwrap();
        assert!(out.contains("filter=unset given=yes"), "{out}");
    }
}
