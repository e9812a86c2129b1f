//! The delivery worker: claims due messages under a lease, company by
//! company so that one slow or dead server holds only its own company's
//! slots, sends each over its own SMTP session, and records the outcome.
//!
//! Each claim has its own name on the lease. The worker renews only the
//! leases of claims it is still working on, and a recorded outcome counts
//! only if the lease is still that claim's: a message taken over after a
//! stall is never recorded twice. If the process dies, its messages return
//! to the queue when their leases expire.

mod deliver;

use std::collections::HashMap;
use std::time::Duration;

use tokio::task::{Id, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::state::{AppState, now_ms};
use crate::store::ClaimedMessage;

/// The shortest pause between two rounds, so that a busy queue cannot spin the loop.
const MIN_PAUSE: Duration = Duration::from_millis(10);

pub struct Worker {
    state: AppState,
    /// This process's name; each claim's lease name starts with it.
    owner: String,
    claims: u64,
    tasks: JoinSet<()>,
    /// The message each running task holds, and under which claim.
    running: HashMap<Id, Held>,
}

struct Held {
    message_id: String,
    company: String,
    claim: String,
}

impl Worker {
    pub fn new(state: AppState) -> Self {
        Self {
            state,
            owner: format!("worker-{}", uuid::Uuid::now_v7()),
            claims: 0,
            tasks: JoinSet::new(),
            running: HashMap::new(),
        }
    }

    /// Delivers until `cancel` fires, then lets sends in flight finish for up
    /// to `grace` and gives the rest back to the queue.
    pub async fn run(mut self, cancel: CancellationToken, grace: Duration) {
        let lease = self.state.delivery.lease;
        let mut renew = tokio::time::interval(lease / 3);
        let mut recover = tokio::time::interval(lease / 2);
        loop {
            let starved = match self.dispatch().await {
                Ok(starved) => starved,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot claim messages; will try again");
                    false
                }
            };
            // Due mail waiting for a free slot waits for a send to finish, not for the clock.
            let pause = if starved {
                self.state.delivery.poll
            } else {
                self.pause().await
            };
            tokio::select! {
                () = cancel.cancelled() => break,
                () = self.state.wake.notified() => {}
                () = tokio::time::sleep(pause) => {}
                Some(done) = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => self.finished(done).await,
                _ = renew.tick() => self.renew_leases().await,
                _ = recover.tick() => self.recover_expired().await,
            }
        }
        self.stop(grace, &mut renew).await;
    }

    /// Lets running sends finish for up to `grace` (renewing their leases
    /// meanwhile), then stops the rest and gives their messages back.
    async fn stop(&mut self, grace: Duration, renew: &mut tokio::time::Interval) {
        tracing::info!(in_flight = self.tasks.len(), "worker stopping");
        let deadline = tokio::time::sleep(grace);
        tokio::pin!(deadline);
        while !self.tasks.is_empty() {
            tokio::select! {
                () = &mut deadline => break,
                Some(done) = self.tasks.join_next_with_id() => self.finished(done).await,
                _ = renew.tick() => self.renew_leases().await,
            }
        }
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        let unfinished: Vec<String> = self.running.drain().map(|(_, held)| held.claim).collect();
        if unfinished.is_empty() {
            return;
        }
        match self.state.store.release_claims(&unfinished, now_ms()).await {
            Ok(n) => tracing::info!(released = n, "gave unfinished messages back to the queue"),
            Err(e) => {
                tracing::warn!(error = %e, "cannot give messages back; their leases will expire")
            }
        }
    }

    /// How long to sleep: until the next scheduled or deferred message is due, at most one poll interval.
    async fn pause(&self) -> Duration {
        let poll = self.state.delivery.poll;
        let until_due = match self.state.store.next_due_at().await {
            Ok(Some(due)) => Duration::from_millis((due - now_ms()).max(0) as u64),
            _ => poll,
        };
        until_due.clamp(MIN_PAUSE, poll)
    }

    /// Claims what is due, company by company, within each company's free
    /// slots. True when some due mail had to wait for a free slot.
    async fn dispatch(&mut self) -> anyhow::Result<bool> {
        let config = self.state.delivery.clone();
        let now = now_ms();
        let mut starved = false;
        for company in self.state.store.due_companies(now).await? {
            let free_total = config.max_in_flight.saturating_sub(self.tasks.len());
            let used = self
                .running
                .values()
                .filter(|h| h.company == company)
                .count();
            let free = config
                .company_concurrency
                .saturating_sub(used)
                .min(free_total);
            if free == 0 {
                starved = true;
                continue;
            }
            self.claims += 1;
            let claim = format!("{}:{}", self.owner, self.claims);
            let lease_until = now + config.lease.as_millis() as i64;
            let claimed = self
                .state
                .store
                .claim(&company, &claim, now, lease_until, free as i64)
                .await?;
            for message in claimed {
                self.spawn(message, claim.clone());
            }
        }
        Ok(starved)
    }

    fn spawn(&mut self, message: ClaimedMessage, claim: String) {
        let held = Held {
            message_id: message.id.clone(),
            company: message.company.clone(),
            claim: claim.clone(),
        };
        let state = self.state.clone();
        let task = self
            .tasks
            .spawn(async move { deliver::attempt(&state, &message, &claim).await });
        self.running.insert(task.id(), held);
    }

    /// A task ended: its slot is free. A panic gives its message back to the queue.
    async fn finished(&mut self, done: Result<(Id, ()), tokio::task::JoinError>) {
        let id = match &done {
            Ok((id, ())) => *id,
            Err(e) => e.id(),
        };
        let Some(held) = self.running.remove(&id) else {
            return;
        };
        if let Err(e) = done {
            tracing::error!(message_id = %held.message_id, error = %e, "the delivery task failed; the message goes back to the queue");
            let retry_at = now_ms() + self.state.delivery.retry.first_delay.as_millis() as i64;
            if let Err(e) = self
                .state
                .store
                .release_message(&held.message_id, &held.claim, retry_at)
                .await
            {
                tracing::warn!(message_id = %held.message_id, error = %e, "cannot give the message back; its lease will expire");
            }
        }
    }

    async fn renew_leases(&self) {
        let mut claims: Vec<String> = self.running.values().map(|h| h.claim.clone()).collect();
        claims.sort_unstable();
        claims.dedup();
        if claims.is_empty() {
            return;
        }
        let until = now_ms() + self.state.delivery.lease.as_millis() as i64;
        if let Err(e) = self.state.store.extend_leases(&claims, until).await {
            tracing::warn!(error = %e, "cannot renew leases");
        }
    }

    /// Puts back in the queue the messages of workers that stopped answering.
    async fn recover_expired(&self) {
        match self.state.store.release_expired_leases(now_ms()).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(
                messages = n,
                "took back messages whose worker stopped answering"
            ),
            Err(e) => tracing::warn!(error = %e, "cannot look for expired leases"),
        }
    }
}
