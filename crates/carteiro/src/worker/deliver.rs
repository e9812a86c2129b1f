//! One delivery attempt of one message, from claim to recorded outcome.

use std::time::Instant;

use carteiro_core::delivery::{
    Failure, RecipientState, Settled, Stage, Transaction, recipient_results, settle,
};
use carteiro_core::id::{CompanySlug, UserRef};
use carteiro_core::sender::{self, SenderContext};
use serde_json::json;
use time::OffsetDateTime;

use crate::crypto::WrongMasterKey;
use crate::delivery::smtp::{Session, Transcript};
use crate::service::{ServiceError, settings, tenants};
use crate::state::{AppState, now_ms};
use crate::store::{AttemptResult, AttemptRow, ClaimedMessage};

pub async fn deliver(state: &AppState, owner: &str, claimed: ClaimedMessage) -> anyhow::Result<()> {
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
    let all = state.store.recipients(&claimed.id).await?;
    let pending: Vec<_> = all
        .iter()
        .filter(|r| r.state == RecipientState::Pending.as_str())
        .collect();

    let no_server = || Failure::Unsupported {
        stage: Stage::Connect,
        detail: "no SMTP server is configured for this company any more".to_owned(),
    };
    let plan = match settings::effective(state, Some(&company), user.as_ref()).await {
        Ok(effective) => effective
            .connection()
            .map(|connection| (effective, connection))
            .ok_or_else(no_server),
        // Not this message's fault: record why, and retry until the operator restores the key.
        Err(ServiceError::Internal(e)) if e.downcast_ref::<WrongMasterKey>().is_some() => {
            Err(Failure::Unsupported {
                stage: Stage::Auth,
                detail: WrongMasterKey.to_string(),
            })
        }
        Err(e) => return Err(e.into()),
    };
    let company_mailbox = tenants::company(state, &company).await?.mailbox();
    let mut envelope_from = claimed.envelope_from.clone();
    let mut server = String::from("-");

    let attempt: Result<Transaction, Failure> = match plan {
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
                let result = session.send(&envelope_from, &to, &raw, &mut log).await;
                session.quit().await;
                result
            }
            .await
        }
    };
    let ms = started.elapsed().as_millis() as i64;

    let mut results = recipient_results(&attempt, pending.len());
    let untouched = all
        .iter()
        .filter(|r| r.state != RecipientState::Pending.as_str())
        .filter_map(|r| RecipientState::parse(&r.state));
    let mut settled = settle(results.iter().map(|r| r.state).chain(untouched));
    let mut due_at = None;
    let mut gave_up = false;
    if settled == Settled::Deferred {
        let failures = u32::try_from(claimed.attempt_count + 1).unwrap_or(u32::MAX);
        let due_since =
            OffsetDateTime::from_unix_timestamp_nanos(i128::from(claimed.due_since) * 1_000_000)?;
        match state.delivery.retry.next_attempt(
            failures,
            due_since,
            OffsetDateTime::now_utc(),
            rand::random(),
        ) {
            Some(next) => due_at = Some((next.unix_timestamp_nanos() / 1_000_000) as i64),
            None => {
                // Out of time: what is still pending fails, keeping the last answer.
                gave_up = true;
                settled = if results.iter().any(|r| r.state == RecipientState::Sent)
                    || all.iter().any(|r| r.state == "sent")
                {
                    Settled::Sent
                } else {
                    Settled::Failed
                };
                for r in results
                    .iter_mut()
                    .filter(|r| r.state == RecipientState::Pending)
                {
                    r.state = RecipientState::Failed;
                    r.reply = format!(
                        "gave up after the maximum queue lifetime; last answer: {}",
                        r.reply
                    );
                }
            }
        }
    }
    let status = match settled {
        Settled::Sent => "sent",
        Settled::Deferred => "deferred",
        Settled::Failed => "failed",
    };

    let (code, mut reply) = summary(&attempt);
    if gave_up {
        reply = format!("gave up after the maximum queue lifetime; last answer: {reply}");
    }
    let refusals: Vec<_> = pending
        .iter()
        .zip(&results)
        .filter(|(_, r)| r.state != RecipientState::Sent)
        .map(|(rcpt, r)| json!({"address": rcpt.address, "code": r.code, "reply": r.reply}))
        .collect();
    let result = AttemptResult {
        message_id: claimed.id.clone(),
        lease_owner: owner.to_owned(),
        attempt: AttemptRow {
            at: started_at,
            server,
            code: code.map(i64::from),
            reply,
            ms,
            outcome: status.to_owned(),
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
        status: status.to_owned(),
        due_at,
        envelope_from,
    };
    let recorded = state.store.finish_attempt(&result).await?;
    if recorded {
        tracing::info!(message_id = %claimed.id, company = %claimed.company, status, code, reply = %result.attempt.reply, ms, "delivery attempt");
    } else {
        tracing::warn!(message_id = %claimed.id, "lease lost during the attempt; another worker owns the message now");
    }
    Ok(())
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
