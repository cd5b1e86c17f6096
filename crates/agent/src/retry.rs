//! Waiting between attempts, shared by the hub connection and joining.

use std::time::Duration;

use tokio::sync::watch;

/// Resolves once `shutdown` is true (or its sender is gone).
pub async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    // The guard wait_for returns is not Send; drop it here.
    let _ = shutdown.wait_for(|s| *s).await;
}

/// Jittered, capped exponential backoff between connection attempts.
#[derive(Clone, Debug)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Self {
        Backoff {
            base,
            cap,
            attempt: 0,
        }
    }

    /// The next delay: uniformly in [d/2, d] for d = min(cap, base * 2^attempt).
    pub fn next_delay(&mut self) -> Duration {
        let d = self
            .base
            .saturating_mul(1u32 << self.attempt.min(20))
            .min(self.cap);
        self.attempt = self.attempt.saturating_add(1);
        d.mul_f64(rand::random_range(0.5..=1.0))
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_caps_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let d0 = b.next_delay();
        assert!(d0 >= Duration::from_millis(50) && d0 <= Duration::from_millis(100));
        for _ in 0..10 {
            b.next_delay();
        }
        let d = b.next_delay();
        assert!(
            d >= Duration::from_secs(1) && d <= Duration::from_secs(2),
            "{d:?}"
        );
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
