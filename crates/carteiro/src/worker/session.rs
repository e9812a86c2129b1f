//! One SMTP session carrying a bundle of one lane's messages (a bundle of
//! one when the lane does not bundle): each message is its own transaction,
//! its attempt recorded before the session moves on to the next chunk. When
//! the connection breaks, what was not tried goes back to the queue untried.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use carteiro_core::delivery::{Failure, RecipientState, Transaction};

use super::outcome::{Tried, attempt_result};
use super::route::Route;
use crate::delivery::smtp::{Outgoing, Session, Transcript, breaks_session};
use crate::state::{AppState, now_ms};
use crate::store::{AttemptResult, ClaimedMessage, Parcel};

/// Messages whose bodies are read from the store at a time: memory stays
/// bounded however large the bundle.
const CHUNK: usize = 64;

/// A claimed message on its way: the claim that holds it, and its own
/// envelope sender (users sharing a lane may each have their own).
#[derive(Debug, Clone)]
pub struct Job {
    pub message: ClaimedMessage,
    pub claim: String,
    pub envelope_from: Option<String>,
}

/// How a session ended, for the lane that started it.
pub enum Ended {
    /// Every message was tried (or given back untried).
    Done,
    /// No session could be opened: the lane's other messages would fail the same way.
    Unreachable(Failure),
}

/// Delivers `jobs` over one session of `route`.
pub async fn deliver(state: AppState, route: Arc<Route>, jobs: Vec<Job>) -> Ended {
    let mut log = Transcript::default();
    let opened = Instant::now();
    let mut session = match Session::open(&route.connection, &state.tls, &state.delivery.hostname, &mut log).await {
        Ok(session) => session,
        Err(failure) => {
            let waited = opened.elapsed();
            record_failure(&state, &route.server(), &jobs, &failure, waited).await;
            return Ended::Unreachable(failure);
        }
    };
    let mut untried = Vec::new();
    let mut last: Option<Result<Transaction, Failure>> = None;
    for chunk in jobs.chunks(CHUNK) {
        if last.as_ref().is_some_and(breaks_session) {
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
        let envelopes: Vec<String> = sending
            .iter()
            .map(|(job, _)| job.envelope_from.clone().unwrap_or_else(|| job.message.envelope_from.clone()))
            .collect();
        let outgoing: Vec<Outgoing<'_>> = sending
            .iter()
            .zip(&envelopes)
            .map(|((_, parcel), envelope_from)| Outgoing {
                envelope_from,
                to: pending(parcel).map(|r| r.address.as_str()).collect(),
                raw: &parcel.raw,
            })
            .collect();
        let at = now_ms();
        let started = Instant::now();
        let outcomes = session.send_all(&outgoing).await;
        let tried = outcomes.len();
        // The chunk's messages share its time: they went out together.
        let ms = (started.elapsed().as_millis() / outgoing.len().max(1) as u128) as i64;
        let mut results = Vec::with_capacity(outcomes.len());
        for (((job, parcel), envelope_from), outcome) in sending.iter().zip(&envelopes).zip(outcomes) {
            last = Some(outcome.clone());
            let tried = Tried { at, ms, server: session.server.clone(), envelope_from: envelope_from.clone(), outcome };
            push_result(&state, &mut results, job, parcel, tried);
        }
        untried.extend(sending.iter().skip(tried).map(|(job, _)| (*job).clone()));
        record(&state, results).await;
    }
    if let Some(last) = &last {
        session.close(last).await;
    }
    give_back(&state, &untried).await;
    Ended::Done
}

/// Records `failure` as every job's attempt (nothing was sent).
pub async fn record_failure(state: &AppState, server: &str, jobs: &[Job], failure: &Failure, waited: Duration) {
    for chunk in jobs.chunks(CHUNK) {
        let parcels = match load(state, chunk).await {
            Ok(parcels) => parcels,
            Err(e) => {
                tracing::error!(error = %e, "cannot read messages; they go back to the queue");
                give_back(state, chunk).await;
                continue;
            }
        };
        let mut results = Vec::with_capacity(chunk.len());
        for job in chunk {
            let Some(parcel) = parcels.get(&job.message.id) else {
                continue;
            };
            let tried = Tried {
                at: now_ms(),
                ms: waited.as_millis() as i64,
                server: server.to_owned(),
                envelope_from: job.message.envelope_from.clone(),
                outcome: Err(failure.clone()),
            };
            push_result(state, &mut results, job, parcel, tried);
        }
        record(state, results).await;
    }
}

fn push_result(state: &AppState, results: &mut Vec<AttemptResult>, job: &Job, parcel: &Parcel, tried: Tried) {
    match attempt_result(&state.delivery, &job.message, &job.claim, &parcel.recipients, tried) {
        Ok(result) => results.push(result),
        Err(e) => {
            tracing::error!(message_id = %job.message.id, error = format!("{e:#}"), "cannot describe the attempt")
        }
    }
}

fn pending(parcel: &Parcel) -> impl Iterator<Item = &crate::store::RecipientRow> {
    parcel.recipients.iter().filter(|r| r.state == RecipientState::Pending.as_str())
}

/// Marks the chunk's messages as being sent (skipping any cancelled meanwhile) and reads them.
async fn start_and_load(state: &AppState, jobs: &[Job]) -> anyhow::Result<HashMap<String, Parcel>> {
    let items: Vec<(String, String)> = jobs.iter().map(|j| (j.message.id.clone(), j.claim.clone())).collect();
    let marked = state.starts.write(items).await?;
    let started: Vec<String> =
        jobs.iter().zip(marked).filter(|(_, ok)| *ok).map(|(j, _)| j.message.id.clone()).collect();
    Ok(state.store.load_parcels(&started).await?.into_iter().map(|p| (p.id.clone(), p)).collect())
}

async fn load(state: &AppState, jobs: &[Job]) -> anyhow::Result<HashMap<String, Parcel>> {
    let ids: Vec<String> = jobs.iter().map(|j| j.message.id.clone()).collect();
    Ok(state.store.load_parcels(&ids).await?.into_iter().map(|p| (p.id.clone(), p)).collect())
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
                        tracing::info!(message_id = %result.message_id, status = %result.status, code = a.code, reply = %a.reply, ms = a.ms, "delivery attempt");
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
    if let Err(e) = state.store.release_messages(&ids, &claims_of(jobs), now_ms()).await {
        tracing::warn!(error = %e, "cannot give messages back; their leases will expire");
    }
}

fn claims_of(jobs: &[Job]) -> Vec<String> {
    let mut claims: Vec<String> = jobs.iter().map(|j| j.claim.clone()).collect();
    claims.sort_unstable();
    claims.dedup();
    claims
}
