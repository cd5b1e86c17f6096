//! Waiting on a cluster's state in tests.

use std::time::{Duration, Instant};

/// Polls `check` every 50 ms until it returns `Some`, or panics naming `what`
/// after `timeout`. Tests on real clusters wait on conditions, never on fixed
/// sleeps; the short pause between polls only spares the API server.
/// `check` may be an async closure borrowing the test's state, or a closure returning a
/// future.
pub async fn eventually<T>(
    what: &str,
    timeout: Duration,
    check: impl AsyncFnMut() -> Option<T>,
) -> T {
    match within(timeout, check).await {
        Some(v) => v,
        None => panic!("timed out after {timeout:?} waiting for {what}"),
    }
}

/// [`eventually`] for callers that report a timeout themselves: `None` once `timeout` has
/// passed without `check` answering `Some` (it is asked at least once).
pub async fn within<T>(timeout: Duration, mut check: impl AsyncFnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
