//! The delivery worker. It claims due messages under leases, company by
//! company, and hands them to lanes: one per (company, server), each with its
//! own parallel sessions, rate, bundling and pause after an unreachable
//! server, so that one slow or dead server holds only its own lane. Sessions
//! run as tasks; the worker alone decides what starts, so the bookkeeping
//! needs no locks.
//!
//! Each claim has its own name on the lease. The worker renews only the
//! leases of claims it still holds, and a recorded outcome counts only if
//! the lease is still that claim's: a message taken over after a stall is
//! never recorded twice. If the process dies, its messages return to the
//! queue when their leases expire.

mod lanes;
mod outcome;
mod route;
mod session;
pub mod webhooks;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use carteiro_core::delivery::Failure;
use tokio::task::{Id, JoinSet};
use tokio_util::sync::CancellationToken;

use self::lanes::Lane;
use self::route::{LaneKey, Route, Routes};
use self::session::{Ended, Job};
use crate::delivery::Stop;
use crate::state::{AppState, now_ms};

/// The shortest pause between two rounds, so that a busy queue cannot spin the loop.
const MIN_PAUSE: Duration = Duration::from_millis(2);
/// The shortest time between two claim rounds: a round reads and writes the
/// store, and a burst of submissions should share one.
const CLAIM_EVERY: Duration = Duration::from_millis(20);
/// After the grace period, how long sessions get to record what they abandoned.
const STOP_RECORDING: Duration = Duration::from_secs(10);
/// A lane with nothing to do is forgotten after this long.
const LANE_IDLE: Duration = Duration::from_secs(60);

pub struct Worker {
    state: AppState,
    /// This process's name; each claim's lease name starts with it.
    owner: String,
    claims: u64,
    routes: Routes,
    lanes: HashMap<LaneKey, Lane>,
    tasks: JoinSet<Ended>,
    /// What each running task carries: its lane and its messages.
    running: HashMap<Id, (Option<LaneKey>, Vec<Job>)>,
    held: Held,
    /// Asks sessions to stop, at shutdown.
    stop: Stop,
    /// Which lane goes first in the next round.
    turn: usize,
    /// Until when expired leases are left alone: the store was unreachable lately.
    trouble_until: Option<Instant>,
}

/// The messages this worker holds (queued in lanes or being sent), by claim and by company.
#[derive(Default)]
struct Held {
    by_claim: HashMap<String, usize>,
    by_company: HashMap<String, usize>,
    total: usize,
}

impl Held {
    fn add(&mut self, job: &Job) {
        *self.by_claim.entry(job.claim.clone()).or_default() += 1;
        *self.by_company.entry(job.message.company.clone()).or_default() += 1;
        self.total += 1;
    }

    fn remove(&mut self, job: &Job) {
        let drop_one = |map: &mut HashMap<String, usize>, key: &str| {
            if let Some(n) = map.get_mut(key) {
                *n -= 1;
                if *n == 0 {
                    map.remove(key);
                }
            }
        };
        drop_one(&mut self.by_claim, &job.claim);
        drop_one(&mut self.by_company, &job.message.company);
        self.total -= 1;
    }

    fn of_company(&self, company: &str) -> usize {
        self.by_company.get(company).copied().unwrap_or(0)
    }

    fn claims(&self) -> Vec<String> {
        self.by_claim.keys().cloned().collect()
    }
}

impl Worker {
    pub fn new(state: AppState) -> Self {
        Self {
            state,
            owner: format!("worker-{}", uuid::Uuid::now_v7()),
            claims: 0,
            routes: Routes::default(),
            lanes: HashMap::new(),
            tasks: JoinSet::new(),
            running: HashMap::new(),
            held: Held::default(),
            stop: Stop::default(),
            turn: 0,
            trouble_until: None,
        }
    }

    /// Delivers until `cancel` fires, then lets sessions in flight finish for
    /// up to `grace` and gives everything else back to the queue.
    pub async fn run(mut self, cancel: CancellationToken, grace: Duration) {
        let lease = self.state.delivery.lease;
        let mut renew = tokio::time::interval(lease / 3);
        let mut recover = tokio::time::interval(lease / 2);
        // When the next claim round runs, and when the last one did: rounds are
        // at least `CLAIM_EVERY` apart, however many submissions ring the bell.
        let mut claim_at = Instant::now();
        let mut last_claim = Instant::now() - CLAIM_EVERY;
        loop {
            let now = Instant::now();
            if claim_at <= now {
                last_claim = now;
                claim_at = now + self.state.delivery.poll;
                match self.claim_due().await {
                    // Room is what is missing: a session's end will call for the next round.
                    Ok(true) => {}
                    Ok(false) => {
                        if let Some(due) = self.next_due().await {
                            claim_at = claim_at.min(due);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = format!("{e:#}"), "cannot claim messages; will try again");
                        self.store_trouble();
                    }
                }
            }
            self.reroute_stale().await;
            self.grant_rates().await;
            self.start_sessions();
            let soon = (last_claim + CLAIM_EVERY).max(Instant::now());
            let lanes = self.lanes.values().filter_map(|l| l.wakes_at(Instant::now())).min();
            let until = lanes.map_or(claim_at, |at| at.min(claim_at)).max(Instant::now() + MIN_PAUSE);
            tokio::select! {
                () = cancel.cancelled() => break,
                () = self.state.wake.notified() => claim_at = claim_at.min(soon),
                () = tokio::time::sleep_until(until.into()) => {}
                Some(done) = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => {
                    self.finished(done).await;
                    claim_at = claim_at.min(soon);
                }
                _ = renew.tick() => self.renew_leases().await,
                _ = recover.tick() => self.recover_expired().await,
            }
        }
        self.stop(grace, &mut renew).await;
    }

    /// Claims what is due, company by company, while each company and the
    /// worker have room. True when due mail had to stay in the queue for lack of room.
    async fn claim_due(&mut self) -> anyhow::Result<bool> {
        let config = self.state.delivery.clone();
        let now = now_ms();
        let mut full = false;
        for company in self.state.store.due_companies(now).await? {
            let held = self.held.of_company(&company);
            let room =
                config.company_backlog.saturating_sub(held).min(config.max_backlog.saturating_sub(self.held.total));
            // Claim in large steps: a claim is a write, and a message finishing frees only one place.
            if room == 0 || (held > 0 && room < config.company_backlog / 4) {
                full = true;
                continue;
            }
            self.claims += 1;
            let claim = format!("{}:{}", self.owner, self.claims);
            let lease_until = now + config.lease.as_millis() as i64;
            let claimed = self.state.store.claim(&company, &claim, now, lease_until, room as i64).await?;
            let jobs = claimed.into_iter().map(|message| Job { message, claim: claim.clone(), envelope_from: None });
            let jobs: Vec<Job> = jobs.collect();
            for job in &jobs {
                self.held.add(job);
            }
            self.route(jobs).await;
        }
        Ok(full)
    }

    /// Hands jobs to their lanes. A job whose settings cannot be used is recorded
    /// as a deferred attempt; when the store cannot be read, the jobs go back to
    /// the queue.
    async fn route(&mut self, jobs: Vec<Job>) {
        let mut unroutable: Vec<(Job, Failure)> = Vec::new();
        let mut jobs = jobs.into_iter();
        while let Some(mut job) = jobs.next() {
            let user = (job.message.kind == "user").then_some(job.message.actor_id.as_deref()).flatten();
            match self.routes.route(&self.state, &job.message.company, user).await {
                Ok(Ok(route)) => {
                    job.envelope_from = route.envelope_from.clone();
                    self.enqueue(job, route);
                }
                Ok(Err(failure)) => unroutable.push((job, failure)),
                Err(e) => {
                    tracing::warn!(error = format!("{e:#}"), "cannot read the settings; messages go back to the queue");
                    let back: Vec<Job> = std::iter::once(job).chain(jobs).collect();
                    for job in &back {
                        self.held.remove(job);
                    }
                    session::give_back(&self.state, &back).await;
                    break;
                }
            }
        }
        for (job, failure) in unroutable {
            self.spawn_failure(None, vec![job], failure, "-".to_owned());
        }
    }

    /// Routes again the jobs of lanes worked out before the configuration changed.
    async fn reroute_stale(&mut self) {
        let version = self.state.config_version();
        let stale: Vec<Job> = self
            .lanes
            .values_mut()
            .filter(|lane| lane.route.version != version && !lane.queue.is_empty())
            .flat_map(Lane::drain)
            .collect();
        if !stale.is_empty() {
            self.route(stale).await;
        }
    }

    fn enqueue(&mut self, job: Job, route: Arc<Route>) {
        let now = Instant::now();
        let lane = self.lanes.entry(route.lane.clone()).or_insert_with(|| Lane::new(route.clone()));
        lane.push(job, route, now);
    }

    /// Asks the store's shared rate for the lanes that are ready but have spent their allowance.
    async fn grant_rates(&mut self) {
        let now = Instant::now();
        let share = self.lane_share();
        if self.running.len() >= self.state.delivery.max_in_flight {
            // Nothing could start: tokens taken now would be withheld from the other instances.
            return;
        }
        let asks: Vec<(LaneKey, String, u32, usize)> = self
            .lanes
            .iter()
            .filter_map(|(key, lane)| {
                let (per_minute, n) = lane.rate_request(now, share)?;
                Some((key.clone(), lane.route.rate_bucket.clone(), per_minute, n))
            })
            .collect();
        for (key, bucket, per_minute, wanted) in asks {
            let asked = u32::try_from(wanted).unwrap_or(u32::MAX);
            let granted = self.state.store.take_rate(&bucket, per_minute, asked, now_ms()).await;
            let Some(lane) = self.lanes.get_mut(&key) else { continue };
            match granted {
                Ok((got, tokens)) => lane.granted(got as usize, wanted, tokens, Instant::now()),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read a lane's rate; will ask again");
                    lane.ask_rate_again(Instant::now() + Duration::from_secs(1));
                }
            }
        }
    }

    /// No lane may hold more than half the sessions: a tarpitting server cannot take them all.
    fn lane_share(&self) -> usize {
        (self.state.delivery.max_in_flight / 2).max(1)
    }

    /// Starts every bundle the lanes have ready, within the global session limit;
    /// a paused lane's queue is deferred at once with the failure that paused it.
    fn start_sessions(&mut self) {
        let now = Instant::now();
        let max = self.state.delivery.max_in_flight;
        let lane_share = self.lane_share();
        let mut deferrals = Vec::new();
        for (key, lane) in &mut self.lanes {
            if lane.is_paused(now) && !lane.queue.is_empty() {
                let (_, failure) = lane.paused.clone().expect("paused");
                deferrals.push((key.clone(), lane.drain(), failure, lane.route.connection.destination()));
            }
        }
        // Round robin, one bundle per lane per pass, starting from a different lane each time.
        let mut keys: Vec<LaneKey> = self.lanes.keys().cloned().collect();
        keys.sort_unstable();
        self.turn = self.turn.wrapping_add(1);
        if !keys.is_empty() {
            let turn = self.turn % keys.len();
            keys.rotate_left(turn);
        }
        let mut starts = Vec::new();
        loop {
            let before = starts.len();
            for key in &keys {
                if self.running.len() + starts.len() >= max {
                    break;
                }
                let lane = self.lanes.get_mut(key).expect("a listed lane");
                if let Some(bundle) = lane.next_bundle(now, lane_share) {
                    starts.push((key.clone(), lane.route.clone(), bundle));
                }
            }
            if starts.len() == before || self.running.len() + starts.len() >= max {
                break;
            }
        }
        for (key, route, bundle) in starts {
            let (state, stop) = (self.state.clone(), self.stop.clone());
            let task = self.tasks.spawn(session::deliver(state, route, bundle.clone(), stop));
            self.running.insert(task.id(), (Some(key), bundle));
        }
        for (key, jobs, failure, server) in deferrals {
            // Counted as a session of the lane, so nothing new starts before they are recorded.
            if let Some(lane) = self.lanes.get_mut(&key) {
                lane.sessions += 1;
            }
            self.spawn_failure(Some(key), jobs, failure, server);
        }
        self.lanes.retain(|_, lane| !lane.is_idle(now, LANE_IDLE));
    }

    fn spawn_failure(&mut self, lane: Option<LaneKey>, jobs: Vec<Job>, failure: Failure, server: String) {
        let state = self.state.clone();
        let carried = jobs.clone();
        let task = self.tasks.spawn(async move {
            session::record_failure(&state, &server, &carried, &failure, Duration::ZERO).await;
            Ended::Done
        });
        self.running.insert(task.id(), (lane, jobs));
    }

    /// When the next scheduled or deferred message in the queue is due.
    async fn next_due(&self) -> Option<Instant> {
        let due = self.state.store.next_due_at().await.ok()??;
        Some(Instant::now() + Duration::from_millis((due - now_ms()).max(0) as u64))
    }

    /// A task ended: its lane has a free session and its messages are no longer
    /// held. An unreachable server pauses the lane; a panic gives the messages back.
    async fn finished(&mut self, done: Result<(Id, Ended), tokio::task::JoinError>) {
        let id = match &done {
            Ok((id, _)) => *id,
            Err(e) => e.id(),
        };
        let Some((key, jobs)) = self.running.remove(&id) else {
            return;
        };
        for job in &jobs {
            self.held.remove(job);
        }
        let lane = key.and_then(|k| self.lanes.get_mut(&k));
        if let Some(lane) = lane {
            lane.sessions -= 1;
            lane.idle_since = Instant::now();
            if let Ok((_, Ended::Unreachable(failure))) = &done {
                let pause = self.state.delivery.retry.first_delay;
                lane.paused = Some((Instant::now() + pause, failure.clone()));
            }
        }
        if let Err(e) = done {
            tracing::error!(error = %e, messages = jobs.len(), "a delivery task failed; its messages go back to the queue");
            session::give_back(&self.state, &jobs).await;
        }
    }

    /// Lets running sessions finish for up to `grace` (renewing their leases
    /// meanwhile), then stops the rest and gives every held message back.
    async fn stop(&mut self, grace: Duration, renew: &mut tokio::time::Interval) {
        tracing::info!(sessions = self.tasks.len(), held = self.held.total, "worker stopping");
        // Sessions finish the transaction in progress, record it and give back the rest.
        self.stop.soft.cancel();
        let queued: Vec<Job> = self.lanes.values_mut().flat_map(Lane::drain).collect();
        for job in &queued {
            self.held.remove(job);
        }
        session::give_back(&self.state, &queued).await;
        let in_sessions = self.tasks.len();
        self.drain_tasks(grace, renew).await;
        if !self.tasks.is_empty() {
            // Past the grace period: sessions abandon what they wait for (those messages are in
            // doubt, recorded as deferred), record, and end; only a task stuck beyond that is aborted.
            self.stop.hard.cancel();
            self.drain_tasks(STOP_RECORDING, renew).await;
            self.tasks.abort_all();
            while self.tasks.join_next().await.is_some() {}
        }
        self.running.clear();
        let unfinished = self.held.claims();
        if unfinished.is_empty() {
            return;
        }
        match self.state.store.release_claims(&unfinished, now_ms()).await {
            Ok(n) => tracing::info!(released = n, sessions = in_sessions, "gave unfinished messages back to the queue"),
            Err(e) => tracing::warn!(error = %e, "cannot give messages back; their leases will expire"),
        }
    }

    /// Waits up to `limit` for the running tasks to end, renewing their leases meanwhile.
    async fn drain_tasks(&mut self, limit: Duration, renew: &mut tokio::time::Interval) {
        let deadline = tokio::time::sleep(limit);
        tokio::pin!(deadline);
        while !self.tasks.is_empty() {
            tokio::select! {
                () = &mut deadline => return,
                Some(done) = self.tasks.join_next_with_id() => self.finished(done).await,
                _ = renew.tick() => self.renew_leases().await,
            }
        }
    }

    async fn renew_leases(&mut self) {
        let claims = self.held.claims();
        if claims.is_empty() {
            return;
        }
        let until = now_ms() + self.state.delivery.lease.as_millis() as i64;
        if let Err(e) = self.state.store.extend_leases(&claims, until).await {
            tracing::warn!(error = %e, "cannot renew leases");
            self.store_trouble();
        }
    }

    /// Puts back in the queue the messages of workers that stopped answering.
    /// Not for a lease period after the store was unreachable: other workers
    /// could not renew their leases either, and must have the time to.
    async fn recover_expired(&mut self) {
        if self.trouble_until.is_some_and(|until| Instant::now() < until) {
            return;
        }
        match self.state.store.release_expired_leases(now_ms(), &self.held.claims()).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(messages = n, "took back messages whose worker stopped answering"),
            Err(e) => {
                tracing::warn!(error = %e, "cannot look for expired leases");
                self.store_trouble();
            }
        }
    }

    fn store_trouble(&mut self) {
        self.trouble_until = Some(Instant::now() + self.state.delivery.lease);
    }
}
