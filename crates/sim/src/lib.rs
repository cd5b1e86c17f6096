//! A deterministic simulation of the drbridge hub and its agents under faults.
//!
//! The hub's and the agent's real state machines run here: the hub's index, desired-state
//! diffing, report admission, status fencing, write queue and ack tracking
//! (`drbridge-hub`), and the whole agent work side (`drbridge-agent`'s `Agent`: fencing,
//! durable records, apply, deletion, outbox, the session's Welcome and Sync handling).
//! Only the Kubernetes API servers (hub and spokes) and the network are fakes. One `u64` seed
//! decides the whole schedule; see docs/simulation.md.

pub mod hub;
pub mod hubapi;
pub mod rng;
pub mod spoke;
pub mod world;

/// A broken invariant (numbered as in docs/simulation.md).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invariant {invariant} broken: {detail}")]
pub struct Violation {
    pub invariant: u8,
    pub detail: String,
}

impl Violation {
    pub fn new(invariant: u8, detail: impl Into<String>) -> Self {
        Self {
            invariant,
            detail: detail.into(),
        }
    }
}

/// Size of one schedule.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    pub clusters: usize,
    pub works: usize,
    /// Steps with faults, before the calm phase.
    pub fault_steps: usize,
    /// Longest calm phase (virtual milliseconds) before convergence counts as failed.
    pub calm_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            clusters: 2,
            works: 3,
            fault_steps: 120,
            calm_ms: 120_000,
        }
    }
}

/// What one schedule did, for the summary.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub steps: u64,
    pub virtual_ms: u64,
    pub messages: u64,
    pub faults: u64,
    pub crashes: u64,
    pub terms: u64,
    /// A digest of everything that happened: two runs of a seed must agree on it.
    pub digest: u64,
}

/// A failed schedule: the seed replays it.
#[derive(Clone, Debug, thiserror::Error)]
#[error(
    "seed {seed}: {violation}\nreplay: DRBRIDGE_SIM_SEED={seed} cargo test -p drbridge-sim --test schedules\nlast events:\n{trace}"
)]
pub struct Failure {
    pub seed: u64,
    pub violation: Violation,
    pub trace: String,
}

/// Runs one schedule.
pub fn run(seed: u64, cfg: Config) -> Result<Stats, Violation> {
    world::World::new(seed, cfg, false).run()
}

/// Runs one schedule; on failure, runs it again with a trace of its last events.
pub fn run_traced(seed: u64, cfg: Config) -> Result<Stats, Failure> {
    run(seed, cfg).map_err(|violation| {
        let mut w = world::World::new(seed, cfg, true);
        let _ = w.run_mut();
        Failure {
            seed,
            violation,
            trace: w.trace_tail(80),
        }
    })
}
