//! Login throttling: after a few wrong passwords for one user name, further
//! tries wait, longer after each new failure (30 s doubling up to 15 min),
//! so that guessing a password from the console or the API takes years.
//! Only failures count, so a person who types the right password is never
//! slowed (a rate limiter such as governor would slow every try). Kept in
//! memory per instance. The price: someone who knows a user name can keep it
//! locked out, 15 minutes at a time; the operator still gets in through
//! another administrator or `carteiro admin` on the host.

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
    /// Counts a try for `username` at `now` (ms) as a failure until it
    /// [`succeeded`](Self::succeeded): tries sent together cannot all slip in
    /// before the first is judged. `Err(seconds to wait)` while locked out.
    pub fn attempt(&self, username: &str, now: i64) -> Result<(), u64> {
        let mut failures = self.failures.lock().expect("login throttle");
        if failures.len() >= MAX_TRACKED {
            failures.retain(|_, f| now - f.last_at < FORGET_AFTER_MS);
            if failures.len() >= MAX_TRACKED {
                // A flood of made-up names: keep only the lockouts.
                failures.retain(|_, f| f.locked_until().is_some_and(|until| until > now));
            }
        }
        let entry = failures.entry(key(username)).or_insert(Failures { count: 0, last_at: now });
        if let Some(until) = entry.locked_until().filter(|until| *until > now) {
            return Err(((until - now + 999) / 1000) as u64);
        }
        if now - entry.last_at >= FORGET_AFTER_MS {
            entry.count = 0;
        }
        entry.count += 1;
        entry.last_at = now;
        Ok(())
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
    fn five_tries_are_free_then_each_waits_longer() {
        let throttle = LoginThrottle::default();
        for i in 0..FREE_FAILURES {
            assert_eq!(throttle.attempt("admin", i64::from(i)), Ok(()));
        }
        // The fifth failure was at t=4 ms: the next try waits 30 s from it.
        assert_eq!(throttle.attempt("Admin", 5), Err(30));
        assert_eq!(throttle.attempt("admin", 4 + FIRST_WAIT_MS), Ok(()));
        assert_eq!(throttle.attempt("admin", 4 + FIRST_WAIT_MS), Err(60), "the wait doubles");
        assert_eq!(throttle.attempt("someone-else", 40_000), Ok(()), "other user names are not affected");
    }

    #[test]
    fn the_wait_is_bounded_and_success_or_time_forgives() {
        let throttle = LoginThrottle::default();
        let mut now = 0;
        for _ in 0..40 {
            while let Err(wait) = throttle.attempt("admin", now) {
                now += wait as i64 * 1000;
            }
        }
        assert_eq!(throttle.attempt("admin", now), Err(15 * 60));
        throttle.succeeded("admin");
        assert_eq!(throttle.attempt("admin", now), Ok(()));
        for i in 0..5 {
            throttle.attempt("ana", i).unwrap();
        }
        assert_eq!(throttle.attempt("ana", 5 + FORGET_AFTER_MS), Ok(()), "an old streak is forgotten");
    }
}
