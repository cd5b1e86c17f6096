//! Stress check of the local environment: starts and stops environments
//! again and again, several at once, and counts the starts that failed. It
//! takes minutes, so it runs only when asked:
//!
//! ```text
//! DRBRIDGE_STRESS=30 cargo test -p drbridge-localenv --test stress
//! ```
//!
//! `DRBRIDGE_STRESS_PARALLEL` (default 3) environments run at once, each with
//! the clusters of `DRBRIDGE_STRESS_CLUSTERS` (default `hub,dr1,dr2`); every
//! cluster after the first runs workloads (a scheduler), as the Ramen test
//! bed's managed clusters do. Prints one line per run and a summary; exits
//! non-zero if any start failed.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use drbridge_localenv::Env;

struct Run {
    start: Result<Duration, String>,
    stop: Duration,
    restarts: usize,
}

fn main() {
    let Some(runs) = std::env::var("DRBRIDGE_STRESS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    else {
        println!("stress: skipped; set DRBRIDGE_STRESS=<runs> to run it");
        return;
    };
    let parallel: usize = std::env::var("DRBRIDGE_STRESS_PARALLEL")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);
    let clusters: Vec<String> = std::env::var("DRBRIDGE_STRESS_CLUSTERS")
        .unwrap_or_else(|_| "hub,dr1,dr2".into())
        .split(',')
        .map(str::to_string)
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let results = rt.block_on(stress(runs, parallel, clusters.clone()));

    let failures: Vec<&Run> = results.iter().filter(|r| r.start.is_err()).collect();
    let mut starts: Vec<Duration> = results
        .iter()
        .filter_map(|r| r.start.as_ref().ok().copied())
        .collect();
    starts.sort();
    let restarts: usize = results.iter().map(|r| r.restarts).sum();
    let stop_max = results.iter().map(|r| r.stop).max().unwrap_or_default();
    let pct = |q: f64| {
        starts
            .get(((starts.len() as f64 - 1.0) * q).round() as usize)
            .map_or(0.0, Duration::as_secs_f64)
    };
    println!(
        "stress: {} runs of {} clusters ({} at once), {} start failures; start p50 {:.1} s, p90 {:.1} s, max {:.1} s; stop max {:.1} s; {} component restarts during start-up",
        results.len(),
        clusters.len(),
        parallel,
        failures.len(),
        pct(0.5),
        pct(0.9),
        pct(1.0),
        stop_max.as_secs_f64(),
        restarts,
    );
    if !failures.is_empty() {
        std::process::exit(1);
    }
}

async fn stress(runs: usize, parallel: usize, clusters: Vec<String>) -> Vec<Run> {
    // Build or find the binaries first, so the figures are starts only.
    let cache = drbridge_localenv::cache_dir();
    tokio::task::spawn_blocking(move || drbridge_localenv::ensure_toolchain(&cache, &|_| {}))
        .await
        .expect("toolchain task")
        .expect("toolchain");
    let next = Arc::new(Mutex::new(0usize));
    let results = Arc::new(Mutex::new(Vec::new()));
    let mut workers = Vec::new();
    for _ in 0..parallel {
        let (next, results, clusters) = (next.clone(), results.clone(), clusters.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let n = {
                    let mut next = next.lock().unwrap();
                    *next += 1;
                    *next
                };
                if n > runs {
                    return;
                }
                let run = one_run(&clusters).await;
                match &run.start {
                    Ok(t) => println!(
                        "stress: run {n}/{runs}: started in {:.1} s ({} restarts), stopped in {:.1} s",
                        t.as_secs_f64(),
                        run.restarts,
                        run.stop.as_secs_f64()
                    ),
                    Err(e) => println!("stress: run {n}/{runs}: FAILED: {e}"),
                }
                results.lock().unwrap().push(run);
            }
        }));
    }
    for w in workers {
        w.await.expect("worker");
    }
    Arc::try_unwrap(results)
        .ok()
        .expect("workers done")
        .into_inner()
        .unwrap()
}

async fn one_run(clusters: &[String]) -> Run {
    let names: Vec<&str> = clusters.iter().map(String::as_str).collect();
    let workloads: Vec<String> = clusters.iter().skip(1).cloned().collect();
    let started = Instant::now();
    let env = Env::start_for_test_with(&names, |o| o.workload_clusters = workloads).await;
    let start = started.elapsed();
    match env {
        Ok(env) => {
            let restarts = restarts_logged(env.dir());
            let stopping = Instant::now();
            tokio::task::block_in_place(|| drop(env));
            Run {
                start: Ok(start),
                stop: stopping.elapsed(),
                restarts,
            }
        }
        Err(e) => Run {
            start: Err(e.to_string()),
            stop: Duration::ZERO,
            restarts: 0,
        },
    }
}

/// Restarts the environment made during start-up: it marks each in the
/// component's log (`DIR/<cluster>/logs/*.log`).
fn restarts_logged(dir: &Path) -> usize {
    let mut n = 0;
    for cluster in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        for log in std::fs::read_dir(cluster.path().join("logs"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let text = std::fs::read_to_string(log.path()).unwrap_or_default();
            n += text.matches("exited during start-up").count();
        }
    }
    n
}
