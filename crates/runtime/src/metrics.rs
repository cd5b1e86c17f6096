//! What the processes' metrics have in common.

use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

/// A histogram for the transport's latencies: 5 ms to about 11 minutes, doubling, so one
/// shape fits a loopback apply and a reconnect after an outage.
pub fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 18))
}
