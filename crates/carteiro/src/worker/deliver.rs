//! One delivery attempt of one message, from claim to recorded outcome.

use std::time::{Duration, Instant};

use carteiro_core::delivery::{
    Conclusion, Failure, GAVE_UP, RecipientState, Settled, Transaction, conclude, recipient_results,
};
use carteiro_core::id::{CompanySlug, UserRef};
use carteiro_core::sender::{self, SenderContext};
use carteiro_core::status::MessageStatus;
use serde_json::json;
use time::OffsetDateTime;

use crate::delivery::smtp::{Session, Transcript};
use crate::service::{ServiceError, settings, tenants};
use crate::state::{AppState, now_ms};
use crate::store::{AttemptResult, AttemptRow, ClaimedMessage, RecipientRow};

/// Tries the message once and records the outcome under `claim`.
pub async fn attempt(state: &AppState, claimed: &ClaimedMessage, claim: &str) {
    let result = match send(state, claimed, claim).await {
        Ok(result) => result,
        Err(e) => {
            // Nothing went out (the store could not be read): back to the queue.
            tracing::error!(message_id = %claimed.id, error = format!("{e:#}"), "cannot start the delivery attempt; the message goes back to the queue");
            let retry_at = now_ms() + state.delivery.retry.first_delay.as_millis() as i64;
            if let Err(e) = state
                .store
                .release_message(&claimed.id, claim, retry_at)
                .await
            {
                tracing::warn!(message_id = %claimed.id, error = %e, "cannot give the message back; its lease will expire");
            }
            return;
        }
    };
    record(state, &result).await;
}

/// Records an attempt. The server may already hold the message, so the record
/// must land: retry until it does, keeping the lease (the worker renews it
/// while this task runs), rather than let the message go out again.
async fn record(state: &AppState, result: &AttemptResult) {
    let mut wait = Duration::from_millis(100);
    loop {
        match state.store.finish_attempt(result).await {
            Ok(true) => {
                let a = &result.attempt;
                tracing::info!(message_id = %result.message_id, status = %result.status, code = a.code, reply = %a.reply, ms = a.ms, "delivery attempt");
                return;
            }
            Ok(false) => {
                tracing::warn!(message_id = %result.message_id, "the lease was lost during the attempt; another claim owns the message now");
                return;
            }
            Err(e) => {
                tracing::error!(message_id = %result.message_id, error = %e, "cannot record the delivery attempt; trying again");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// Sends the message to its pending recipients and says what that means.
/// Fails only when nothing was sent because the store could not be read.
async fn send(
    state: &AppState,
    claimed: &ClaimedMessage,
    claim: &str,
) -> anyhow::Result<AttemptResult> {
    let started_at = now_ms();
    let started = Instant::now();
    let company = CompanySlug::parse("company", &claimed.company)?;
    let user = match (claimed.kind.as_str(), &claimed.actor_id) {
        ("user", Some(id)) => Some(UserRef::parse("actor_id", id)?),
        _ => None,
    };
    let raw = state
        .store
        .raw(&claimed.id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("message {} has no body", claimed.id))?;
    let recipients = state.store.recipients(&claimed.id).await?;
    let (pending, earlier): (Vec<&RecipientRow>, Vec<&RecipientRow>) = recipients
        .iter()
        .partition(|r| r.state == RecipientState::Pending.as_str());
    let company_mailbox = tenants::company(state, &company).await?.mailbox();

    let plan = match settings::effective(state, Some(&company), user.as_ref()).await {
        Ok(effective) => effective
            .connection()
            .map(|c| (effective, c))
            .ok_or_else(|| Failure::Settings {
                detail: "no SMTP server is configured for this company any more".to_owned(),
            }),
        Err(ServiceError::Unavailable(why)) => anyhow::bail!("the database is unavailable: {why}"),
        // Not this message's fault (a stored password the master key does not open,
        // settings that no longer validate): record why, and retry until it is fixed.
        Err(e) => Err(Failure::Settings {
            detail: format!("{:#}", anyhow::Error::from(e)),
        }),
    };

    let mut envelope_from = claimed.envelope_from.clone();
    let mut server = String::from("-");
    let attempt = match plan {
        Err(failure) => Err(failure),
        Ok((effective, connection)) => {
            let ctx = SenderContext {
                policy: &effective.policy,
                company: company_mailbox.as_ref(),
                login_username: connection
                    .server
                    .login
                    .as_ref()
                    .map(|l| l.username.as_str()),
            };
            if let Some(current) = sender::envelope_from(ctx) {
                envelope_from = current.as_str().to_owned();
            }
            server = format!(
                "{}:{}",
                connection.server.host,
                connection.server.port.get()
            );
            let to: Vec<&str> = pending.iter().map(|r| r.address.as_str()).collect();
            let mut log = Transcript::default();
            async {
                let mut session =
                    Session::open(&connection, &state.tls, &state.delivery.hostname, &mut log)
                        .await?;
                let outcome = session.send(&envelope_from, &to, &raw, &mut log).await;
                session.close(&outcome).await;
                outcome
            }
            .await
        }
    };
    let ms = started.elapsed().as_millis() as i64;

    let mut results = recipient_results(&attempt, pending.len());
    let earlier: Vec<RecipientState> = earlier
        .iter()
        .filter_map(|r| RecipientState::parse(&r.state))
        .collect();
    let due_since =
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(claimed.due_since) * 1_000_000)?;
    let failures = u32::try_from(claimed.attempt_count + 1).unwrap_or(u32::MAX);
    let Conclusion {
        settled,
        next_attempt,
        gave_up,
    } = conclude(
        &mut results,
        &earlier,
        &state.delivery.retry,
        failures,
        due_since,
        OffsetDateTime::now_utc(),
        rand::random(),
    );
    let status = match settled {
        Settled::Sent => MessageStatus::Sent,
        Settled::Deferred => MessageStatus::Deferred,
        Settled::Failed => MessageStatus::Failed,
    };
    let (code, reply) = summary(&attempt);
    let reply = if gave_up {
        format!("{GAVE_UP}{reply}")
    } else {
        reply
    };
    let refusals: Vec<_> = pending
        .iter()
        .zip(&results)
        .filter(|(_, r)| r.state != RecipientState::Sent)
        .map(|(rcpt, r)| json!({"address": rcpt.address, "code": r.code, "reply": r.reply}))
        .collect();
    Ok(AttemptResult {
        message_id: claimed.id.clone(),
        lease: claim.to_owned(),
        attempt: AttemptRow {
            at: started_at,
            server,
            code: code.map(i64::from),
            reply,
            ms,
            outcome: status.as_str().to_owned(),
            refusals: serde_json::to_string(&refusals)?,
        },
        recipients: pending
            .iter()
            .zip(&results)
            .map(|(rcpt, r)| {
                (
                    rcpt.position,
                    r.state.as_str().to_owned(),
                    r.code.map(i64::from),
                    Some(r.reply.clone()),
                )
            })
            .collect(),
        status: status.as_str().to_owned(),
        due_at: next_attempt.map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64),
        envelope_from,
    })
}

/// The answer that best describes an attempt: the final DATA reply, else the
/// failure (the server's own words when it answered, else what went wrong).
fn summary(attempt: &Result<Transaction, Failure>) -> (Option<u16>, String) {
    match attempt {
        Ok(Transaction {
            data: Some(Ok(reply)),
            ..
        }) => (Some(reply.code), reply.text.clone()),
        Ok(Transaction {
            data: Some(Err(failure)),
            ..
        })
        | Err(failure) => match failure.reply() {
            Some(reply) => (Some(reply.code), reply.text.clone()),
            None => (None, failure.to_string()),
        },
        Ok(Transaction { rcpt, data: None }) => {
            let first = rcpt.iter().find_map(|r| r.as_ref().err());
            (
                first.map(|r| r.code),
                "every recipient was refused".to_owned(),
            )
        }
    }
}
