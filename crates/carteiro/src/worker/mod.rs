//! The delivery worker: claims due messages under a lease, company by
//! company so that one slow or dead server holds only its own company's
//! slots, sends each over its own SMTP session, and records the outcome.
//! A lease is renewed while the worker lives; if the process dies, its
//! messages return to the queue when the lease expires.

mod deliver;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::state::{AppState, now_ms};
use crate::store::ClaimedMessage;

pub struct Worker {
    state: AppState,
    /// This process's name on the leases it takes.
    owner: String,
    slots: Slots,
}

/// Messages in flight per company.
#[derive(Clone, Default)]
struct Slots(Arc<Mutex<HashMap<String, usize>>>);

impl Slots {
    fn used(&self, company: &str) -> usize {
        self.0
            .lock()
            .expect("slots lock")
            .get(company)
            .copied()
            .unwrap_or(0)
    }

    fn take(&self, company: &str) -> SlotGuard {
        *self
            .0
            .lock()
            .expect("slots lock")
            .entry(company.to_owned())
            .or_default() += 1;
        SlotGuard {
            slots: self.clone(),
            company: company.to_owned(),
        }
    }
}

/// Frees its slot when the delivery ends, however it ends.
struct SlotGuard {
    slots: Slots,
    company: String,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        let mut map = self.slots.0.lock().expect("slots lock");
        if let Some(n) = map.get_mut(&self.company) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.company);
            }
        }
    }
}

impl Worker {
    pub fn new(state: AppState) -> Self {
        Self {
            state,
            owner: format!("worker-{}", uuid::Uuid::now_v7()),
            slots: Slots::default(),
        }
    }

    /// Delivers until `cancel` fires, then lets sends in flight finish for up
    /// to `grace` and gives the rest back to the queue.
    pub async fn run(self, cancel: CancellationToken, grace: Duration) {
        let mut tasks = JoinSet::new();
        let heartbeat = tokio::spawn(renew_leases(
            self.state.clone(),
            self.owner.clone(),
            cancel.clone(),
        ));
        loop {
            if let Err(e) = self.dispatch(&mut tasks).await {
                tracing::warn!(error = %e, "cannot claim messages; will try again");
            }
            let pause = self.pause().await;
            tokio::select! {
                () = cancel.cancelled() => break,
                () = self.state.wake.notified() => {}
                () = tokio::time::sleep(pause) => {}
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        tracing::info!(in_flight = tasks.len(), "worker stopping");
        let finished =
            tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
        if finished.is_err() {
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
        }
        heartbeat.abort();
        match self.state.store.release_leases(&self.owner, now_ms()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(released = n, "gave unfinished messages back to the queue"),
            Err(e) => tracing::warn!(error = %e, "cannot release leases; they will expire"),
        }
    }

    /// How long to sleep: until the next scheduled or deferred message is due, at most one poll interval.
    async fn pause(&self) -> Duration {
        let poll = self.state.delivery.poll;
        match self.state.store.next_due_at().await {
            Ok(Some(due)) => {
                Duration::from_millis((due - now_ms()).clamp(0, poll.as_millis() as i64) as u64)
            }
            _ => poll,
        }
    }

    /// Claims what is due, company by company, within each company's free slots.
    async fn dispatch(&self, tasks: &mut JoinSet<()>) -> anyhow::Result<()> {
        let config = &self.state.delivery;
        let now = now_ms();
        let recovered = self.state.store.release_expired_leases(now).await?;
        if recovered > 0 {
            tracing::warn!(
                messages = recovered,
                "took back messages whose worker stopped answering"
            );
        }
        for company in self.state.store.due_companies(now).await? {
            let free_total = config.max_in_flight.saturating_sub(tasks.len());
            if free_total == 0 {
                break;
            }
            let free = config
                .company_concurrency
                .saturating_sub(self.slots.used(&company))
                .min(free_total);
            if free == 0 {
                continue;
            }
            let lease_until = now + config.lease.as_millis() as i64;
            let claimed = self
                .state
                .store
                .claim(&company, &self.owner, now, lease_until, free as i64)
                .await?;
            for message in claimed {
                self.spawn(tasks, message);
            }
        }
        Ok(())
    }

    fn spawn(&self, tasks: &mut JoinSet<()>, message: ClaimedMessage) {
        let slot = self.slots.take(&message.company);
        let (state, owner) = (self.state.clone(), self.owner.clone());
        tasks.spawn(async move {
            let id = message.id.clone();
            // A task of its own, so that even a panic ends in the message going back to the queue:
            // the heartbeat renews every lease this worker holds, so a lost message would stay leased.
            let attempt = tokio::spawn({
                let (state, owner) = (state.clone(), owner.clone());
                async move { deliver::deliver(&state, &owner, message).await }
            });
            let failure = match attempt.await {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(format!("{e:#}")),
                Err(e) => Some(e.to_string()),
            };
            if let Some(error) = failure {
                let retry_at = now_ms() + state.delivery.retry.first_delay.as_millis() as i64;
                tracing::error!(message_id = %id, error, "the delivery attempt could not run or be recorded; the message goes back to the queue");
                if let Err(e) = state.store.release_message(&id, &owner, retry_at).await {
                    tracing::error!(message_id = %id, error = %e, "cannot give the message back; it returns when this process stops");
                }
            }
            drop(slot);
        });
    }
}

async fn renew_leases(state: AppState, owner: String, cancel: CancellationToken) {
    let every = state.delivery.lease / 3;
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        let until = now_ms() + state.delivery.lease.as_millis() as i64;
        if let Err(e) = state.store.extend_leases(&owner, until).await {
            tracing::warn!(error = %e, "cannot renew leases");
        }
    }
}
