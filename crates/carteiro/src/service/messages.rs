//! Reading messages back, listing and cancelling them: always within one company.

use carteiro_core::id::CompanySlug;
use carteiro_core::status::MessageStatus;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::{ServiceError, ServiceResult};
use crate::state::{AppState, now_ms, rfc3339};
use crate::store::{AttemptRow, MessageFilter, MessageRow, RecipientRow, StatusChange};

#[derive(Debug, Serialize, ToSchema)]
pub struct RecipientOut {
    pub kind: String,
    pub address: String,
    pub state: String,
    pub code: Option<i64>,
    pub reply: Option<String>,
}

impl From<RecipientRow> for RecipientOut {
    fn from(r: RecipientRow) -> Self {
        Self { kind: r.kind, address: r.address, state: r.state, code: r.code, reply: r.reply }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptOut {
    pub at: String,
    pub server: String,
    pub code: Option<i64>,
    pub reply: String,
    pub ms: i64,
    pub outcome: String,
    /// Recipients refused in this attempt, with the server's reply to each.
    pub refusals: Value,
}

impl From<AttemptRow> for AttemptOut {
    fn from(a: AttemptRow) -> Self {
        Self {
            at: rfc3339(a.at),
            server: a.server,
            code: a.code,
            reply: a.reply,
            ms: a.ms,
            outcome: a.outcome,
            refusals: serde_json::from_str(&a.refusals).unwrap_or(Value::Array(Vec::new())),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MessageOut {
    pub id: String,
    pub company: String,
    pub kind: String,
    pub actor_id: Option<String>,
    pub status: String,
    pub subject: String,
    pub from: String,
    pub sender: Option<String>,
    pub reply_to: Option<String>,
    /// MAIL FROM of the latest attempt (or, before any, the one planned).
    pub envelope_from: String,
    pub created_at: String,
    pub send_at: Option<String>,
    /// When a waiting message will next be tried.
    pub next_attempt_at: Option<String>,
    pub attempt_count: i64,
    pub last_reply: Option<String>,
    pub idempotency_key: Option<String>,
    pub tags: Vec<String>,
    pub size_bytes: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipients: Option<Vec<RecipientOut>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<Vec<AttemptOut>>,
}

impl From<MessageRow> for MessageOut {
    fn from(m: MessageRow) -> Self {
        let waiting = MessageStatus::parse(&m.status).is_some_and(MessageStatus::is_waiting);
        Self {
            tags: serde_json::from_str(&m.tags).unwrap_or_default(),
            next_attempt_at: waiting.then(|| rfc3339(m.due_at)),
            id: m.id,
            company: m.company,
            kind: m.kind,
            actor_id: m.actor_id,
            status: m.status,
            subject: m.subject,
            from: m.from_header,
            sender: m.sender_header,
            reply_to: m.reply_to_header,
            envelope_from: m.envelope_from,
            created_at: rfc3339(m.created_at),
            send_at: m.send_at.map(rfc3339),
            attempt_count: m.attempt_count,
            last_reply: m.last_reply,
            idempotency_key: m.idempotency_key,
            size_bytes: m.size_bytes,
            recipients: None,
            attempts: None,
        }
    }
}

fn not_found(id: &str) -> ServiceError {
    ServiceError::NotFound(format!("there is no message {id}"))
}

/// A message with its recipients and every attempt.
pub async fn message(state: &AppState, company: &CompanySlug, id: &str) -> ServiceResult<MessageOut> {
    let row = state.store.message(company.as_str(), id).await?.ok_or_else(|| not_found(id))?;
    let mut out = MessageOut::from(row);
    out.recipients = Some(state.store.recipients(id).await?.into_iter().map(RecipientOut::from).collect());
    out.attempts = Some(state.store.attempts(id).await?.into_iter().map(AttemptOut::from).collect());
    Ok(out)
}

/// The message as built (RFC 5322 bytes): what a capture connection keeps for viewing.
pub async fn raw(state: &AppState, company: &CompanySlug, id: &str) -> ServiceResult<Vec<u8>> {
    state.store.message(company.as_str(), id).await?.ok_or_else(|| not_found(id))?;
    state
        .store
        .raw(id)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("the body of message {id} is no longer kept")))
}

pub async fn list(state: &AppState, company: &CompanySlug, filter: &MessageFilter) -> ServiceResult<Vec<MessageOut>> {
    Ok(state.store.list_messages(company.as_str(), filter).await?.into_iter().map(MessageOut::from).collect())
}

/// Queues a failed message again, due now: its failed recipients are tried again,
/// with a whole queue lifetime and the backoff from its start.
pub async fn retry(state: &AppState, company: &CompanySlug, id: &str) -> ServiceResult<MessageOut> {
    match state.store.retry(company.as_str(), id, now_ms()).await? {
        StatusChange::Done => {
            state.wake.notify_one();
            message(state, company, id).await
        }
        StatusChange::NotFound => Err(not_found(id)),
        StatusChange::Refused(status) => {
            Err(ServiceError::Conflict(format!("message {id} is {status}: only failed messages can be retried")))
        }
    }
}

/// Cancels a message that is scheduled, queued or deferred.
pub async fn cancel(state: &AppState, company: &CompanySlug, id: &str) -> ServiceResult<MessageOut> {
    match state.store.cancel(company.as_str(), id, now_ms()).await? {
        StatusChange::Done => message(state, company, id).await,
        StatusChange::NotFound => Err(not_found(id)),
        StatusChange::Refused(status) => Err(ServiceError::Conflict(format!(
            "message {id} is {status}: only scheduled, queued or deferred messages can be cancelled"
        ))),
    }
}
