//! The one submit path: API, CLI (and later the console and the SMTP
//! listener) all come here. A message is parsed, its sender decided, its MIME
//! built and stored with its recipients in one transaction; the caller's 202
//! follows the commit. No SMTP happens here.

use std::collections::HashMap;
use std::sync::Arc;

use carteiro_core::FieldError;
use carteiro_core::id::{CompanySlug, UserRef};
use carteiro_core::message::{MessageIn, NewMessage};
use carteiro_core::sender::{self, SenderContext};
use carteiro_core::status::MessageStatus;
use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::settings::Resolved;
use super::{ServiceError, ServiceResult, settings};
use crate::delivery::mime;
use crate::state::AppState;
use crate::store::{Inserted, MessageRow, NewMessageRecord, RecipientRow};

/// A submission's answer: the message's id (the first one's, for a repeated idempotency key).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Accepted {
    pub id: String,
    pub status: &'static str,
    /// True when an earlier message had the same idempotency key; nothing new was queued.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
}

pub async fn submit_one(state: &AppState, company: &CompanySlug, input: &MessageIn) -> ServiceResult<Accepted> {
    let mut results = submit_batch(state, company, std::slice::from_ref(input)).await?;
    results.pop().expect("one result per message")
}

/// Submits messages of one company; each is judged alone, and all accepted
/// ones are stored in one transaction.
pub async fn submit_batch(
    state: &AppState,
    company: &CompanySlug,
    inputs: &[MessageIn],
) -> ServiceResult<Vec<ServiceResult<Accepted>>> {
    // The company's own settings first: an unknown company is refused before anything else.
    let mut resolved_by_user: HashMap<Option<UserRef>, Arc<Resolved>> = HashMap::new();
    resolved_by_user.insert(None, settings::resolved(state, company, None).await?);
    let now = OffsetDateTime::now_utc();
    let mut results: Vec<Option<ServiceResult<Accepted>>> = Vec::with_capacity(inputs.len());
    let (mut slots, mut records) = (Vec::new(), Vec::new());
    for input in inputs {
        match prepare(state, company, input, now, &mut resolved_by_user).await {
            Ok((record, transport)) => {
                let to: Vec<&str> = record.recipients.iter().map(|r| r.address.as_str()).collect();
                let to = crate::telemetry::mask_addresses(&to.join(", "));
                slots.push((results.len(), record.row.id.clone(), status_name(&record.row.status), transport, to));
                records.push(record);
                results.push(None);
            }
            Err(e) => results.push(Some(Err(e))),
        }
    }
    if !records.is_empty() {
        let outcomes = state.submissions.write(records).await?;
        state.wake.notify_one();
        for ((slot, id, status, transport, to), outcome) in slots.into_iter().zip(outcomes) {
            results[slot] = Some(match outcome {
                Inserted::New => {
                    crate::metrics::accepted(company.as_str(), transport, 1);
                    tracing::debug!(message_id = %id, company = %company, recipients = %to, "message accepted");
                    Ok(Accepted { id, status, duplicate: false })
                }
                Inserted::Duplicate(id) => {
                    let first = state.store.message(company.as_str(), &id).await?;
                    let status = first.map(|m| status_name(&m.status)).unwrap_or("queued");
                    Ok(Accepted { id, status, duplicate: true })
                }
            });
        }
    }
    Ok(results.into_iter().map(|r| r.expect("every message judged")).collect())
}

fn status_name(status: &str) -> &'static str {
    MessageStatus::parse(status).map(MessageStatus::as_str).unwrap_or("queued")
}

async fn prepare(
    state: &AppState,
    company: &CompanySlug,
    input: &MessageIn,
    now: OffsetDateTime,
    resolved_by_user: &mut HashMap<Option<UserRef>, Arc<Resolved>>,
) -> ServiceResult<(NewMessageRecord, &'static str)> {
    let message = NewMessage::parse(input, state.delivery.limits)?;
    let user = message.kind.actor().map(|a| a.id.clone());
    if !resolved_by_user.contains_key(&user) {
        let resolved = settings::resolved(state, company, user.as_ref()).await?;
        resolved_by_user.insert(user.clone(), resolved);
    }
    let settings = resolved_by_user[&user].clone();
    let Resolved { effective, company, .. } = settings.as_ref();
    let connection = effective.connection().ok_or_else(|| ServiceError::Unprocessable {
        code: "no_connection",
        field: None,
        message: format!(
            "no SMTP server is configured for company {}: configure the global level, or enable the company's own e-mail sending",
            company.slug
        ),
    })?;
    let company_mailbox = company.mailbox();
    let ctx = SenderContext {
        policy: &effective.policy,
        company: company_mailbox.as_ref(),
        login_username: connection.login_username(),
    };
    let resolved = sender::resolve(&message.kind, message.from.as_ref(), message.reply_to.as_ref(), ctx)?;

    let id = uuid::Uuid::now_v7().to_string();
    let raw = mime::build(
        &message,
        &resolved,
        &mime::message_id(&id, &state.delivery.hostname),
        message.send_at.filter(|t| *t > now).unwrap_or(now).unix_timestamp(),
    );
    // Signed for the From header's domain, when the company has a key for it.
    let raw = match settings.dkim_for(resolved.from.address.domain()) {
        Some(key) => key.signer.sign(&raw).map_err(|why| anyhow::anyhow!("DKIM for {}: {why}", key.domain))?,
        None => raw,
    };
    if raw.len() > state.delivery.max_message_bytes {
        let field = if message.attachments.is_empty() { "text" } else { "attachments" };
        return Err(FieldError::new(
            field,
            format!(
                "the message is {} bytes once built, over the limit of {} bytes",
                raw.len(),
                state.delivery.max_message_bytes
            ),
        )
        .into());
    }

    let now_ms = (now.unix_timestamp_nanos() / 1_000_000) as i64;
    let scheduled = message.send_at.filter(|t| *t > now).map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64);
    // The envelope names each address once, even when the headers repeat it.
    let mut seen = std::collections::HashSet::new();
    let recipients = message
        .recipients()
        .filter(|(_, mailbox)| seen.insert(mailbox.address.clone()))
        .enumerate()
        .map(|(position, (kind, mailbox))| RecipientRow {
            position: position as i64,
            kind: kind.as_str().to_owned(),
            address: mailbox.address.as_str().to_owned(),
            display: mailbox.to_string(),
            state: "pending".to_owned(),
            code: None,
            reply: None,
        })
        .collect();
    let row = MessageRow {
        id,
        company: company.slug.as_str().to_owned(),
        kind: message.kind.as_str().to_owned(),
        actor_id: user.map(|u| u.as_str().to_owned()),
        status: if scheduled.is_some() { MessageStatus::Scheduled } else { MessageStatus::Queued }.as_str().to_owned(),
        from_header: resolved.from.to_string(),
        sender_header: resolved.sender.as_ref().map(ToString::to_string),
        reply_to_header: resolved.reply_to.as_ref().map(ToString::to_string),
        envelope_from: resolved.envelope_from.as_str().to_owned(),
        subject: message.subject.clone(),
        idempotency_key: message.idempotency_key.as_ref().map(|k| k.as_str().to_owned()),
        tags: serde_json::to_string(&message.tags).map_err(anyhow::Error::from)?,
        size_bytes: raw.len() as i64,
        created_at: now_ms,
        send_at: scheduled,
        due_at: scheduled.unwrap_or(now_ms),
        attempt_count: 0,
        last_reply: None,
        updated_at: now_ms,
    };
    let transport = crate::metrics::transport_of(&connection.destination());
    Ok((NewMessageRecord { row, recipients, raw }, transport))
}
