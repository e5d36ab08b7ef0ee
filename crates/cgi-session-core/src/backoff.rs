//! Jittered backoff for retries (save conflicts, lock polls).

use std::time::Duration;

/// A random pause before retry number `attempt` (1-based): "full jitter" over an exponential
/// range from 1 ms up to 64 ms, so that racing processes spread out instead of colliding again.
pub(crate) fn jitter(attempt: u32) -> Duration {
    let cap_us: u64 = 1_000u64 << attempt.saturating_sub(1).min(6);
    let r = getrandom::u64().unwrap_or(cap_us / 2);
    Duration::from_micros(r % (cap_us + 1))
}
