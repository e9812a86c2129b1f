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
    rate: Option<Rate>,
    /// The server was unreachable: until when messages are deferred without trying, and why.
    pub paused: Option<(Instant, Failure)>,
    pub idle_since: Instant,
}

impl Lane {
    pub fn new(route: Arc<Route>) -> Self {
        let rate = route.connection.limits.rate_per_minute.map(Rate::new);
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

    /// How many messages the lane would send now, the rate aside: a free
    /// session slot and a bundle ready (bundling: its window closed or a full
    /// bundle waiting).
    fn ready(&self, now: Instant, max_sessions: usize) -> Option<usize> {
        let max_sessions = usize::from(self.route.connection.limits.max_sessions).min(max_sessions);
        if self.queue.is_empty() || self.sessions >= max_sessions || self.is_paused(now) {
            return None;
        }
        match self.route.bundle {
            None => Some(1),
            Some(_) if self.queue.len() >= BUNDLE_MAX || self.flush_at.is_none_or(|at| at <= now) => {
                Some(self.queue.len().min(BUNDLE_MAX))
            }
            Some(_) => None,
        }
    }

    /// What to ask the store's rate for, when the lane is ready but its
    /// allowance is spent: (per minute, how many messages).
    pub fn rate_request(&self, now: Instant, max_sessions: usize) -> Option<(u32, usize)> {
        let rate = self.rate.as_ref().filter(|r| r.allowance == 0 && r.ask_at <= now)?;
        let ready = self.ready(now, max_sessions)?;
        // Without bundling, one message a session: ask for as many as can start now.
        let free =
            usize::from(self.route.connection.limits.max_sessions).min(max_sessions).saturating_sub(self.sessions);
        let wanted = if self.route.bundle.is_none() { free.min(self.queue.len()).max(1) } else { ready };
        Some((rate.per_minute, wanted))
    }

    /// The store granted `got` of the `wanted` messages, leaving `tokens` in the bucket.
    pub fn granted(&mut self, got: usize, wanted: usize, tokens: f64, now: Instant) {
        if let Some(rate) = &mut self.rate {
            rate.allowance += got;
            if got < wanted {
                let wait = carteiro_core::rate::until_next(tokens, rate.per_minute).max(1);
                rate.ask_at = now + Duration::from_millis(wait as u64);
            }
        }
    }

    /// The rate could not be asked: ask again a little later.
    pub fn ask_rate_again(&mut self, at: Instant) {
        if let Some(rate) = &mut self.rate {
            rate.ask_at = at;
        }
    }

    /// The next bundle to send now, if the lane may start a session: ready,
    /// and within what the rate allowed.
    pub fn next_bundle(&mut self, now: Instant, max_sessions: usize) -> Option<Vec<Job>> {
        let size = self.ready(now, max_sessions)?;
        let size = match &mut self.rate {
            Some(rate) => {
                let size = size.min(rate.allowance);
                rate.allowance -= size;
                size
            }
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
        let rate = self.rate.as_ref().filter(|r| r.allowance == 0).map(|r| r.ask_at);
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

/// The lane's rate. Its bucket is in the store, shared by every instance
/// (see `carteiro_core::rate`); the lane holds what it was granted and not
/// yet sent, and when to ask again once that is spent.
struct Rate {
    per_minute: u32,
    allowance: usize,
    ask_at: Instant,
}

impl Rate {
    fn new(per_minute: u32) -> Self {
        Self { per_minute, allowance: 0, ask_at: Instant::now() }
    }
}
