//! What one attempt of one message means, written down as the store records it.

use carteiro_core::delivery::{
    Conclusion, Failure, GAVE_UP, RecipientState, Settled, Transaction, conclude, recipient_results,
};
use carteiro_core::status::MessageStatus;
use serde_json::json;
use time::OffsetDateTime;

use crate::config::DeliveryConfig;
use crate::store::{AttemptResult, AttemptRow, ClaimedMessage, RecipientRow, RecipientUpdate};

/// One message's try: when, against which server, from which envelope, and what happened.
pub struct Tried {
    pub at: i64,
    pub ms: i64,
    pub server: String,
    pub envelope_from: String,
    pub outcome: Result<Transaction, Failure>,
}

/// The record of an attempt: the attempt row, each pending recipient's new
/// state, the message's new status and, when deferred, its next try.
pub fn attempt_result(
    config: &DeliveryConfig,
    message: &ClaimedMessage,
    claim: &str,
    recipients: &[RecipientRow],
    tried: Tried,
) -> anyhow::Result<AttemptResult> {
    let (pending, earlier): (Vec<&RecipientRow>, Vec<&RecipientRow>) =
        recipients.iter().partition(|r| r.state == RecipientState::Pending.as_str());
    let earlier: Vec<RecipientState> = earlier.iter().filter_map(|r| RecipientState::parse(&r.state)).collect();
    let mut results = recipient_results(&tried.outcome, pending.len());
    let due_since = OffsetDateTime::from_unix_timestamp_nanos(i128::from(message.due_since) * 1_000_000)?;
    let failures = u32::try_from(message.attempt_count + 1).unwrap_or(u32::MAX);
    let Conclusion { settled, next_attempt, gave_up } =
        conclude(&mut results, &earlier, &config.retry, failures, due_since, OffsetDateTime::now_utc(), rand::random());
    let status = match settled {
        Settled::Sent => MessageStatus::Sent,
        Settled::Deferred => MessageStatus::Deferred,
        Settled::Failed => MessageStatus::Failed,
    };
    let (code, reply) = summary(&tried.outcome);
    let reply = if gave_up { format!("{GAVE_UP}{reply}") } else { reply };
    let refusals: Vec<_> = pending
        .iter()
        .zip(&results)
        .filter(|(_, r)| r.state != RecipientState::Sent)
        .map(|(rcpt, r)| json!({"address": rcpt.address, "code": r.code, "reply": r.reply}))
        .collect();
    Ok(AttemptResult {
        message_id: message.id.clone(),
        company: message.company.clone(),
        lease: claim.to_owned(),
        attempt: AttemptRow {
            at: tried.at,
            server: tried.server,
            code: code.map(i64::from),
            reply,
            ms: tried.ms,
            outcome: status.as_str().to_owned(),
            refusals: serde_json::to_string(&refusals)?,
        },
        recipients: pending
            .iter()
            .zip(&results)
            .map(|(rcpt, r)| RecipientUpdate {
                position: rcpt.position,
                state: r.state.as_str().to_owned(),
                code: r.code.map(i64::from),
                reply: Some(r.reply.clone()),
            })
            .collect(),
        status: status.as_str().to_owned(),
        due_at: next_attempt.map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64),
        envelope_from: tried.envelope_from,
    })
}

/// The answer that best describes an attempt: the final DATA reply, else the
/// failure (the server's own words when it answered, else what went wrong).
fn summary(attempt: &Result<Transaction, Failure>) -> (Option<u16>, String) {
    match attempt {
        Ok(Transaction { data: Some(Ok(reply)), .. }) => (Some(reply.code), reply.text.clone()),
        Ok(Transaction { data: Some(Err(failure)), .. }) | Err(failure) => match failure.reply() {
            Some(reply) => (Some(reply.code), reply.text.clone()),
            None => (None, failure.to_string()),
        },
        Ok(Transaction { rcpt, data: None }) => {
            let first = rcpt.iter().find_map(|r| r.as_ref().err());
            (first.map(|r| r.code), "every recipient was refused".to_owned())
        }
    }
}
