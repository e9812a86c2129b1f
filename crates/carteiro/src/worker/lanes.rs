//! A lane per (company, server): its queue of claimed messages, its running
//! sessions, its bundling window, its rate and, after a server was
//! unreachable, a pause. The worker asks each lane which bundles to start.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use carteiro_core::delivery::Failure;

use super::route::Route;
use super::session::Job;

/// Most messages one session carries.
pub const BUNDLE_MAX: usize = 500;

pub struct Lane {
    /// The newest route of this lane: its connection and policy.
    pub route: Arc<Route>,
    pub queue: VecDeque<Job>,
    pub sessions: usize,
    /// Bundling: when the current collection window closes.
    flush_at: Option<Instant>,
    rate: Option<TokenBucket>,
    /// The server was unreachable: until when messages are deferred without trying, and why.
    pub paused: Option<(Instant, Failure)>,
    pub idle_since: Instant,
}

impl Lane {
    pub fn new(route: Arc<Route>) -> Self {
        let rate = route.connection.limits.rate_per_minute.map(TokenBucket::per_minute);
        Self {
            route,
            queue: VecDeque::new(),
            sessions: 0,
            flush_at: None,
            rate,
            paused: None,
            idle_since: Instant::now(),
        }
    }

    /// Queues a job. A lane's key covers its whole connection and bundling,
    /// so a newer route differs from the lane's only in when it was worked out.
    pub fn push(&mut self, job: Job, route: Arc<Route>, now: Instant) {
        if let (Some(window), true) = (route.bundle, self.queue.is_empty()) {
            self.flush_at.get_or_insert(now + window);
        }
        self.route = route;
        self.queue.push_back(job);
    }

    /// Takes every queued job, to be routed again (the configuration changed) or deferred.
    pub fn drain(&mut self) -> Vec<Job> {
        self.flush_at = None;
        self.queue.drain(..).collect()
    }

    /// The next bundle to send now, if the lane may start a session: a free
    /// session slot, a bundle ready (bundling: its window closed or a full
    /// bundle waiting) and the rate allowing at least one message.
    pub fn next_bundle(&mut self, now: Instant, max_sessions: usize) -> Option<Vec<Job>> {
        let max_sessions = usize::from(self.route.connection.limits.max_sessions).min(max_sessions);
        if self.queue.is_empty() || self.sessions >= max_sessions || self.is_paused(now) {
            return None;
        }
        let size = match self.route.bundle {
            None => 1,
            Some(_) if self.queue.len() >= BUNDLE_MAX || self.flush_at.is_none_or(|at| at <= now) => {
                self.queue.len().min(BUNDLE_MAX)
            }
            Some(_) => return None,
        };
        let size = match &mut self.rate {
            Some(bucket) => bucket.take(size, now),
            None => size,
        };
        if size == 0 {
            return None;
        }
        self.sessions += 1;
        let bundle: Vec<Job> = self.queue.drain(..size).collect();
        if self.queue.is_empty() {
            self.flush_at = None;
        }
        Some(bundle)
    }

    pub fn is_paused(&self, now: Instant) -> bool {
        self.paused.as_ref().is_some_and(|(until, _)| *until > now)
    }

    /// When this lane next has something to do on its own (a window closing,
    /// the rate allowing more, a pause ending).
    /// A lane waiting for a session to end is woken by that end, not by the clock.
    pub fn wakes_at(&self, now: Instant) -> Option<Instant> {
        if self.queue.is_empty() || self.sessions >= usize::from(self.route.connection.limits.max_sessions) {
            return None;
        }
        let paused = self.paused.as_ref().map(|(until, _)| *until);
        let rate = self.rate.as_ref().map(|b| b.next_token(now));
        [paused, self.flush_at, rate].into_iter().flatten().filter(|at| *at > now).max()
    }

    /// Nothing queued or running, for a while, and no pause to remember.
    pub fn is_idle(&self, now: Instant, after: Duration) -> bool {
        self.queue.is_empty()
            && self.sessions == 0
            && !self.is_paused(now)
            && now.duration_since(self.idle_since) >= after
    }
}

/// The lane's rate: `per_minute` messages a minute, in bursts of up to ten
/// seconds' worth (so a bundle can still carry several). A bucket of a few
/// lines: the rate-limit crates count one cell at a time, where a bundle takes many.
struct TokenBucket {
    per_second: f64,
    capacity: f64,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    fn per_minute(per_minute: u32) -> Self {
        let per_second = f64::from(per_minute) / 60.0;
        let capacity = (per_second * 10.0).max(1.0);
        Self { per_second, capacity, tokens: capacity, at: Instant::now() }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.capacity);
        self.at = now;
    }

    /// Takes up to `wanted` whole tokens; how many it got.
    fn take(&mut self, wanted: usize, now: Instant) -> usize {
        self.refill(now);
        let got = (self.tokens.floor() as usize).min(wanted);
        self.tokens -= got as f64;
        got
    }

    /// When the bucket next holds a whole token.
    fn next_token(&self, now: Instant) -> Instant {
        let missing = (1.0 - self.tokens).max(0.0);
        (self.at + Duration::from_secs_f64(missing / self.per_second)).max(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_allows_the_rate_and_no_more() {
        let start = Instant::now();
        let mut bucket = TokenBucket::per_minute(120);
        bucket.at = start;
        assert_eq!(bucket.take(100, start), 20, "ten seconds' worth at once");
        assert_eq!(bucket.take(10, start), 0);
        assert_eq!(bucket.take(10, start + Duration::from_millis(500)), 1);
        assert_eq!(bucket.next_token(start + Duration::from_millis(500)), start + Duration::from_millis(1000));
        let mut slow = TokenBucket::per_minute(6);
        slow.at = start;
        assert_eq!(slow.take(5, start), 1, "a burst of at least one");
        assert_eq!(slow.take(5, start + Duration::from_secs(9)), 0);
        assert_eq!(slow.take(5, start + Duration::from_secs(10)), 1);
    }
}
