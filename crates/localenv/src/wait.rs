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
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
