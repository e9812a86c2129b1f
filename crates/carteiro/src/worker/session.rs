//! One carrier (an SMTP session, or a local transport) carrying a bundle of one lane's messages (a bundle of
//! one when the lane does not bundle): each message is its own transaction,
//! recorded chunk by chunk. When the connection breaks, what was not tried
//! goes back to the queue untried; a message whose end of data went out
//! without an answer is in doubt, a temporary failure.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use carteiro_core::delivery::{Failure, RecipientState, Transaction};

use super::outcome::{Tried, attempt_result};
use super::route::Route;
use crate::delivery::smtp::breaks_session;
use crate::delivery::transcript::Transcript;
use crate::delivery::{Carrier, Outgoing, Stop};
use crate::state::{AppState, now_ms};
use crate::store::{AttemptResult, ClaimedMessage, Parcel, RecipientRow};

/// Bodies are read from the store a chunk at a time, so memory stays bounded
/// however large the bundle: at most this many messages, or bytes.
const CHUNK_MESSAGES: usize = 64;
const CHUNK_BYTES: i64 = 8 * 1024 * 1024;

/// A claimed message on its way: the claim that holds it, and its own
/// envelope sender (users sharing a lane may each have their own).
#[derive(Debug, Clone)]
pub struct Job {
    pub message: ClaimedMessage,
    pub claim: String,
    pub envelope_from: Option<String>,
}

impl Job {
    fn envelope_from(&self) -> &str {
        self.envelope_from.as_deref().unwrap_or(&self.message.envelope_from)
    }
}

/// How a session ended, for the lane that started it.
pub enum Ended {
    /// Its messages were tried (or given back untried).
    Done,
    /// The server could not be used at all: the lane's other messages would fail the same way.
    Unreachable(Failure),
}

/// Delivers `jobs` over one session of `route`.
pub async fn deliver(state: AppState, route: Arc<Route>, jobs: Vec<Job>, stop: Stop) -> Ended {
    let mut log = Transcript::default();
    let opened = Instant::now();
    let destination = route.connection.destination();
    crate::metrics::bundle(jobs.len());
    let mut carrier = match Carrier::open(&route.connection, &state.means(), &mut log).await {
        Ok(carrier) => carrier,
        Err(failure) => {
            record_failure(&state, &destination, &jobs, &failure, opened.elapsed()).await;
            return Ended::Unreachable(failure);
        }
    };
    let mut untried: Vec<Job> = Vec::new();
    let (mut last, mut delivered_any) = (None, false);
    for chunk in chunks(&jobs) {
        if !carrier.is_usable() || stop.soft.is_cancelled() {
            untried.extend_from_slice(chunk);
            continue;
        }
        let parcels = match start_and_load(&state, chunk).await {
            Ok(parcels) => parcels,
            Err(e) => {
                tracing::error!(error = %e, "cannot read messages to send; they go back to the queue");
                untried.extend_from_slice(chunk);
                continue;
            }
        };
        // Messages cancelled while they waited in the lane have no parcel: not ours to send any more.
        let sending: Vec<(&Job, &Parcel)> =
            chunk.iter().filter_map(|job| parcels.get(&job.message.id).map(|p| (job, p))).collect();
        let outgoing: Vec<Outgoing<'_>> = sending
            .iter()
            .map(|(job, parcel)| Outgoing {
                id: &job.message.id,
                envelope_from: job.envelope_from(),
                to: pending(&parcel.recipients).map(|r| r.address.as_str()).collect(),
                raw: &parcel.raw,
            })
            .collect();
        let at = now_ms();
        let started = Instant::now();
        let outcomes = carrier.send_all(&outgoing, &stop).await;
        // The chunk's messages share its time: they went out together.
        let ms = (started.elapsed().as_millis() / outcomes.len().max(1) as u128) as i64;
        let tried = outcomes.len();
        let mut results = Vec::with_capacity(tried);
        for ((job, parcel), outcome) in sending.iter().zip(outcomes) {
            delivered_any |= matches!(&outcome, Ok(Transaction { data: Some(Ok(_)), .. }));
            last = Some(outcome.clone());
            let tried =
                Tried { at, ms, server: destination.clone(), envelope_from: job.envelope_from().to_owned(), outcome };
            push_result(&state, &mut results, &mut untried, job, &parcel.recipients, tried);
        }
        untried.extend(sending.iter().skip(tried).map(|(job, _)| (*job).clone()));
        record(&state, results).await;
    }
    give_back(&state, &untried).await;
    match last {
        // The session broke before anything got through: the server is not usable now.
        Some(outcome @ Err(_)) if !delivered_any && breaks_session(&outcome) => {
            Ended::Unreachable(outcome.expect_err("matched an error"))
        }
        Some(_) => {
            carrier.close().await;
            Ended::Done
        }
        None => Ended::Done,
    }
}

/// The jobs in chunks of at most `CHUNK_MESSAGES` messages and `CHUNK_BYTES` bytes (at least one each).
fn chunks(jobs: &[Job]) -> Vec<&[Job]> {
    let mut chunks = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, job) in jobs.iter().enumerate() {
        let full = i > start && (i - start == CHUNK_MESSAGES || bytes + job.message.size_bytes > CHUNK_BYTES);
        if full {
            chunks.push(&jobs[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += job.message.size_bytes;
    }
    if start < jobs.len() {
        chunks.push(&jobs[start..]);
    }
    chunks
}

/// Records `failure` as every job's attempt (nothing was sent).
pub async fn record_failure(state: &AppState, server: &str, jobs: &[Job], failure: &Failure, waited: Duration) {
    for chunk in jobs.chunks(256) {
        let ids: Vec<String> = chunk.iter().map(|j| j.message.id.clone()).collect();
        let recipients = match state.store.load_recipients(&ids).await {
            Ok(recipients) => recipients,
            Err(e) => {
                tracing::error!(error = %e, "cannot read messages; they go back to the queue");
                give_back(state, chunk).await;
                continue;
            }
        };
        let mut results = Vec::with_capacity(chunk.len());
        let mut untried = Vec::new();
        for job in chunk {
            let Some(recipients) = recipients.get(&job.message.id) else { continue };
            let tried = Tried {
                at: now_ms(),
                ms: waited.as_millis() as i64,
                server: server.to_owned(),
                envelope_from: job.envelope_from().to_owned(),
                outcome: Err(failure.clone()),
            };
            push_result(state, &mut results, &mut untried, job, recipients, tried);
        }
        record(state, results).await;
        give_back(state, &untried).await;
    }
}

/// Adds a job's attempt record; one that cannot be described goes back to the queue instead.
fn push_result(
    state: &AppState,
    results: &mut Vec<AttemptResult>,
    untried: &mut Vec<Job>,
    job: &Job,
    recipients: &[RecipientRow],
    tried: Tried,
) {
    match attempt_result(&state.delivery, &job.message, &job.claim, recipients, tried) {
        Ok(result) => results.push(result),
        Err(e) => {
            tracing::error!(message_id = %job.message.id, error = format!("{e:#}"), "cannot describe the attempt");
            untried.push(job.clone());
        }
    }
}

fn pending(recipients: &[RecipientRow]) -> impl Iterator<Item = &RecipientRow> {
    recipients.iter().filter(|r| r.state == RecipientState::Pending.as_str())
}

/// Marks the chunk's messages as being sent (skipping any cancelled meanwhile) and reads them.
async fn start_and_load(state: &AppState, jobs: &[Job]) -> anyhow::Result<HashMap<String, Parcel>> {
    let items: Vec<(String, String)> = jobs.iter().map(|j| (j.message.id.clone(), j.claim.clone())).collect();
    let marked = state.starts.write(items).await?;
    let started: Vec<String> =
        jobs.iter().zip(marked).filter(|(_, ok)| *ok).map(|(j, _)| j.message.id.clone()).collect();
    Ok(state.store.load_parcels(&started).await?.into_iter().map(|p| (p.id.clone(), p)).collect())
}

/// Records attempts. The server may already hold the messages, so the record
/// must land: retry until it does (the worker keeps renewing the leases while
/// this runs) rather than let a message go out again.
async fn record(state: &AppState, results: Vec<AttemptResult>) {
    if results.is_empty() {
        return;
    }
    let mut wait = Duration::from_millis(100);
    loop {
        match state.attempts.write(results.clone()).await {
            Ok(recorded) => {
                for (result, ours) in results.iter().zip(recorded) {
                    let a = &result.attempt;
                    if ours {
                        crate::metrics::attempt(&result.company, &a.server, &result.status, a.code, a.ms);
                        tracing::info!(message_id = %result.message_id, status = %result.status, code = a.code, reply = %crate::telemetry::mask_addresses(&a.reply), ms = a.ms, "delivery attempt");
                    } else {
                        tracing::warn!(message_id = %result.message_id, "the lease was lost during the attempt; another claim owns the message now");
                    }
                }
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot record delivery attempts; trying again");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// Gives untried messages back to the queue, due now: no attempt is counted.
pub async fn give_back(state: &AppState, jobs: &[Job]) {
    if jobs.is_empty() {
        return;
    }
    let ids: Vec<String> = jobs.iter().map(|j| j.message.id.clone()).collect();
    let mut claims: Vec<String> = jobs.iter().map(|j| j.claim.clone()).collect();
    claims.sort_unstable();
    claims.dedup();
    if let Err(e) = state.store.release_messages(&ids, &claims, now_ms()).await {
        tracing::warn!(error = %e, "cannot give messages back; their leases will expire");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(size: i64) -> Job {
        Job {
            message: ClaimedMessage {
                id: "m".into(),
                company: "c".into(),
                kind: "system".into(),
                actor_id: None,
                envelope_from: "e@x.example".into(),
                due_since: 0,
                attempt_count: 0,
                size_bytes: size,
            },
            claim: "c".into(),
            envelope_from: None,
        }
    }

    #[test]
    fn chunks_hold_a_bounded_number_of_messages_and_bytes() {
        let small: Vec<Job> = (0..70).map(|_| job(1000)).collect();
        let sizes: Vec<usize> = chunks(&small).iter().map(|c| c.len()).collect();
        assert_eq!(sizes, [64, 6]);
        let large: Vec<Job> = (0..5).map(|_| job(5 * 1024 * 1024)).collect();
        let sizes: Vec<usize> = chunks(&large).iter().map(|c| c.len()).collect();
        assert_eq!(sizes, [1, 1, 1, 1, 1], "a large message travels alone");
        let huge = [job(100 * 1024 * 1024)];
        assert_eq!(chunks(&huge).len(), 1, "one message always makes a chunk");
    }
}
