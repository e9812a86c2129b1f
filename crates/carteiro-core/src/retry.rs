//! When to try again: exponential backoff with jitter, bounded by a maximum
//! queue lifetime (defaults close to Postfix's).

use std::time::Duration;

use time::OffsetDateTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Delay after the first failure.
    pub first_delay: Duration,
    /// The delay doubles after each failure up to this.
    pub max_delay: Duration,
    /// A message still undelivered this long after it became due fails.
    pub max_lifetime: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            first_delay: Duration::from_secs(60),
            max_delay: Duration::from_secs(3600),
            max_lifetime: Duration::from_secs(5 * 24 * 3600),
        }
    }
}

impl RetryPolicy {
    /// The delay after `failures` failed attempts (1 = the first failure),
    /// spread by ±10 % with `jitter` in `0.0..1.0` so that a burst of messages
    /// deferred together does not come back together.
    pub fn delay(&self, failures: u32, jitter: f64) -> Duration {
        let doublings = failures.saturating_sub(1).min(30);
        let base = self.first_delay.saturating_mul(1 << doublings).min(self.max_delay);
        base.mul_f64(0.9 + 0.2 * jitter.clamp(0.0, 1.0))
    }

    /// When to try again, or `None` when the message has been waiting longer
    /// than the maximum lifetime and must fail. The last retry is moved up to
    /// the end of the lifetime so that it still happens.
    pub fn next_attempt(
        &self,
        failures: u32,
        due_since: OffsetDateTime,
        now: OffsetDateTime,
        jitter: f64,
    ) -> Option<OffsetDateTime> {
        let expires = due_since + self.max_lifetime;
        if now >= expires {
            return None;
        }
        Some((now + self.delay(failures, jitter)).min(expires))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::datetime;

    #[test]
    fn backs_off_exponentially_up_to_the_cap() {
        let p = RetryPolicy::default();
        let mins: Vec<u64> = (1..=9).map(|n| p.delay(n, 0.5).as_secs() / 60).collect();
        assert_eq!(mins, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }

    #[test]
    fn gives_up_after_the_lifetime() {
        let p = RetryPolicy::default();
        let t0 = datetime!(2026-11-25 12:00 UTC);
        assert_eq!(p.next_attempt(1, t0, t0, 0.5), Some(t0 + Duration::from_secs(60)));
        let almost = t0 + p.max_lifetime - Duration::from_secs(10);
        assert_eq!(p.next_attempt(50, t0, almost, 0.5), Some(t0 + p.max_lifetime));
        assert_eq!(p.next_attempt(50, t0, t0 + p.max_lifetime, 0.5), None);
    }

    proptest! {
        #[test]
        fn delay_stays_within_jitter_of_the_schedule(failures in 1u32..200, jitter in 0.0f64..1.0) {
            let p = RetryPolicy::default();
            let d = p.delay(failures, jitter);
            prop_assert!(d >= p.first_delay.mul_f64(0.9));
            prop_assert!(d <= p.max_delay.mul_f64(1.1));
        }
    }
}
