//! Randomized schedules of the simulation (see docs/simulation.md).
//!
//! `DRBRIDGE_SIM_SCHEDULES` sets how many (default 4,000), `DRBRIDGE_SIM_SEED` replays one
//! seed, `DRBRIDGE_SIM_FIRST_SEED` moves the window of seeds.

use drbridge_sim::{Config, run, run_traced};

/// Seeds that once failed (shrunk), run every time.
const REGRESSIONS: &[u64] = &[1380, 2623];

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, not {v:?}"))
    })
}

fn check(seed: u64) {
    if let Err(f) = run_traced(seed, Config::default()) {
        panic!("{f}");
    }
}

#[test]
fn regression_seeds() {
    for &seed in REGRESSIONS {
        check(seed);
    }
}

#[test]
fn a_seed_replays_exactly() {
    for seed in [1, 2, 3] {
        let a = run(seed, Config::default()).expect("passes");
        let b = run(seed, Config::default()).expect("passes");
        assert_eq!(a, b, "seed {seed} ran differently twice");
        assert!(a.messages > 0 && a.faults > 0, "{a:?}");
    }
}

/// Seeds of this run, split in halves so that two test threads share the work.
fn window(half: u64) -> Vec<u64> {
    if let Some(seed) = env_u64("DRBRIDGE_SIM_SEED") {
        return if half == 0 { vec![seed] } else { vec![] };
    }
    let n = env_u64("DRBRIDGE_SIM_SCHEDULES").unwrap_or(10_000);
    let first = env_u64("DRBRIDGE_SIM_FIRST_SEED").unwrap_or(0);
    (first..first + n).filter(|s| s % 2 == half).collect()
}

fn schedules(half: u64) {
    let started = std::time::Instant::now();
    let seeds = window(half);
    let mut messages = 0;
    let mut faults = 0;
    for &seed in &seeds {
        match run(seed, Config::default()) {
            Ok(s) => {
                messages += s.messages;
                faults += s.faults;
            }
            Err(_) => check(seed),
        }
    }
    eprintln!(
        "{} schedules, {messages} messages, {faults} faults in {:?}",
        seeds.len(),
        started.elapsed()
    );
}

#[test]
fn schedules_even_seeds() {
    schedules(0);
}

#[test]
fn schedules_odd_seeds() {
    schedules(1);
}
