//! Login throttling: after a few wrong passwords for one user name, further
//! tries wait, longer after each new failure, so that guessing a password
//! from the console or the API takes years. Kept in memory per instance:
//! a restart forgets it, which an attacker cannot trigger.

use std::collections::HashMap;
use std::sync::Mutex;

/// Wrong passwords allowed before the first wait.
const FREE_FAILURES: u32 = 5;
const FIRST_WAIT_MS: i64 = 30_000;
const LONGEST_WAIT_MS: i64 = 15 * 60_000;
/// A user name left alone this long starts afresh.
const FORGET_AFTER_MS: i64 = 60 * 60_000;
/// Past this many user names, the stale ones are forgotten (a flood of made-up names stays bounded).
const MAX_TRACKED: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last_at: i64,
}

impl Failures {
    /// Until when a new try must wait, if it must.
    fn locked_until(&self) -> Option<i64> {
        let over = self.count.checked_sub(FREE_FAILURES)?;
        let wait = FIRST_WAIT_MS.saturating_mul(1 << over.min(10)).min(LONGEST_WAIT_MS);
        Some(self.last_at + wait)
    }
}

#[derive(Debug, Default)]
pub struct LoginThrottle {
    failures: Mutex<HashMap<String, Failures>>,
}

impl LoginThrottle {
    /// `Err(seconds to wait)` while `username` is locked out at `now` (ms).
    pub fn check(&self, username: &str, now: i64) -> Result<(), u64> {
        let failures = self.failures.lock().expect("login throttle");
        match failures.get(&key(username)).and_then(Failures::locked_until) {
            Some(until) if until > now => Err(((until - now + 999) / 1000) as u64),
            _ => Ok(()),
        }
    }

    pub fn failed(&self, username: &str, now: i64) {
        let mut failures = self.failures.lock().expect("login throttle");
        if failures.len() >= MAX_TRACKED {
            failures.retain(|_, f| now - f.last_at < FORGET_AFTER_MS);
        }
        let entry = failures.entry(key(username)).or_insert(Failures { count: 0, last_at: now });
        if now - entry.last_at >= FORGET_AFTER_MS {
            entry.count = 0;
        }
        entry.count += 1;
        entry.last_at = now;
    }

    pub fn succeeded(&self, username: &str) {
        self.failures.lock().expect("login throttle").remove(&key(username));
    }
}

fn key(username: &str) -> String {
    username.trim().to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_failures_are_free_then_each_waits_longer() {
        let throttle = LoginThrottle::default();
        for i in 0..FREE_FAILURES {
            assert_eq!(throttle.check("admin", i64::from(i)), Ok(()));
            throttle.failed("admin", i64::from(i));
        }
        // The fifth failure was at t=4 ms: the next try waits 30 s from it.
        assert_eq!(throttle.check("Admin", 5), Err(30));
        assert_eq!(throttle.check("admin", 4 + FIRST_WAIT_MS), Ok(()));
        throttle.failed("admin", 40_000);
        assert_eq!(throttle.check("admin", 40_000), Err(60), "the wait doubles");
        assert_eq!(throttle.check("someone-else", 40_000), Ok(()), "other user names are not affected");
    }

    #[test]
    fn the_wait_is_bounded_and_success_or_time_forgives() {
        let throttle = LoginThrottle::default();
        for i in 0..40 {
            throttle.failed("admin", i);
        }
        assert_eq!(throttle.check("admin", 40), Err(15 * 60));
        throttle.succeeded("admin");
        assert_eq!(throttle.check("admin", 41), Ok(()));
        for i in 0..6 {
            throttle.failed("ana", i);
        }
        throttle.failed("ana", 6 + FORGET_AFTER_MS);
        assert_eq!(throttle.check("ana", 7 + FORGET_AFTER_MS), Ok(()), "an old streak is forgotten");
    }
}
