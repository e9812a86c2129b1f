//! The sending API: a company's API key submits, reads, lists and cancels
//! its own messages, and nobody else's.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use carteiro_core::FieldError;
use carteiro_core::message::MessageIn;
use carteiro_core::status::MessageStatus;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::{IntoParams, ToSchema};

use super::auth::CompanyKey;
use super::json::{self, ApiJson};
use super::openapi::{BadRequest, Invalid, NotFound, TooLarge, Unauthorized, Unavailable};
use super::path::ApiPath;
use super::query::ApiQuery;
use crate::error::{ApiError, ApiResult, ErrorDocument};
use crate::service::messages::{self as service, MessageOut};
use crate::service::submit::{self, Accepted};
use crate::state::AppState;
use crate::store::MessageFilter;

pub const MAX_BATCH: usize = 1000;

/// Submit one message
///
/// The same `idempotency_key` within the company answers the first message's id and queues nothing new.
#[utoipa::path(
    post, path = "/messages", tag = "sending", operation_id = "submit_message",
    security(("api_key" = [])),
    request_body = MessageIn,
    responses(
        (
            status = 202,
            description = "Accepted: queued (or scheduled)",
            body = Accepted,
            links(
                ("Message" = (operation_id = "get_message", parameters(("id" = "$response.body#/id")))),
                ("Raw" = (operation_id = "get_message_raw", parameters(("id" = "$response.body#/id")))),
                ("Cancel" = (operation_id = "cancel_message", parameters(("id" = "$response.body#/id")))),
            ),
        ),
        BadRequest, Unauthorized, TooLarge, Invalid, Unavailable,
    ),
)]
pub async fn submit(
    State(state): State<AppState>,
    CompanyKey(company): CompanyKey,
    ApiJson(input): ApiJson<MessageIn>,
) -> ApiResult<(StatusCode, Json<Accepted>)> {
    Ok((StatusCode::ACCEPTED, Json(submit::submit_one(&state, &company, &input).await?)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchIn {
    // Kept raw, so that one malformed item fails alone (and is parsed once).
    /// 1 to 1000 messages, each judged alone.
    #[schema(value_type = Vec<MessageIn>, min_items = 1, max_items = 1000)]
    messages: Vec<Box<serde_json::value::RawValue>>,
}

#[derive(Serialize, ToSchema)]
pub struct BatchOut {
    /// One per message, in the order given.
    results: Vec<BatchResult>,
}

/// An item's outcome: accepted, or refused alone with the error a single submission would get.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum BatchResult {
    Accepted(Accepted),
    Refused(ErrorDocument),
}

/// Submit up to 1000 messages at once
///
/// Each item is judged alone: a refused one does not hold the others back.
#[utoipa::path(
    post, path = "/messages/batch", tag = "sending",
    security(("api_key" = [])),
    request_body = BatchIn,
    responses(
        (status = 202, description = "Each item's outcome", body = BatchOut),
        BadRequest, Unauthorized, TooLarge, Invalid, Unavailable,
    ),
)]
pub async fn submit_batch(
    State(state): State<AppState>,
    CompanyKey(company): CompanyKey,
    ApiJson(batch): ApiJson<BatchIn>,
) -> ApiResult<(StatusCode, Json<BatchOut>)> {
    if batch.messages.is_empty() || batch.messages.len() > MAX_BATCH {
        let message = format!("messages must hold 1 to {MAX_BATCH} messages, got {}", batch.messages.len());
        return Err(ApiError::invalid(FieldError::new("messages", message).into()));
    }
    // Items of the wrong shape are answered in place; the others go through the one submit path together.
    let mut parsed: Vec<Result<(), ApiError>> = Vec::with_capacity(batch.messages.len());
    let mut inputs: Vec<MessageIn> = Vec::with_capacity(batch.messages.len());
    for raw in &batch.messages {
        match json::parse::<MessageIn>(raw.get().as_bytes()) {
            Ok(input) => {
                inputs.push(input);
                parsed.push(Ok(()));
            }
            Err(e) => parsed.push(Err(e)),
        }
    }
    let mut judged = submit::submit_batch(&state, &company, &inputs).await?.into_iter();
    let results = parsed
        .into_iter()
        .map(|item| match item.map(|_| judged.next().expect("one result per well-formed item")) {
            Ok(Ok(accepted)) => BatchResult::Accepted(accepted),
            Ok(Err(error)) => BatchResult::Refused(ApiError::from(error).body()),
            Err(error) => BatchResult::Refused(error.body()),
        })
        .collect();
    Ok((StatusCode::ACCEPTED, Json(BatchOut { results })))
}

/// A message, with its recipients and attempts
#[utoipa::path(
    get, path = "/messages/{id}", tag = "sending", operation_id = "get_message",
    security(("api_key" = [])),
    params(("id" = String, Path, description = "The message's id")),
    responses(
        (status = 200, description = "The message", body = MessageOut),
        Unauthorized, NotFound, Unavailable,
    ),
)]
pub async fn get(
    State(state): State<AppState>,
    CompanyKey(company): CompanyKey,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<MessageOut>> {
    Ok(Json(service::message(&state, &company, &id).await?))
}

/// A message as it was built (RFC 5322)
#[utoipa::path(
    get, path = "/messages/{id}/raw", tag = "sending", operation_id = "get_message_raw",
    security(("api_key" = [])),
    params(("id" = String, Path, description = "The message's id")),
    responses(
        (status = 200, description = "The message's bytes", body = String, content_type = "message/rfc822"),
        Unauthorized, NotFound, Unavailable,
    ),
)]
pub async fn raw(
    State(state): State<AppState>,
    CompanyKey(company): CompanyKey,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<impl IntoResponse> {
    Ok(rfc822(service::raw(&state, &company, &id).await?))
}

/// A message's bytes as a response.
pub fn rfc822(raw: Vec<u8>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "message/rfc822")], raw)
}

/// Cancel a message that is scheduled, queued or deferred
#[utoipa::path(
    post, path = "/messages/{id}/cancel", tag = "sending", operation_id = "cancel_message",
    security(("api_key" = [])),
    params(("id" = String, Path, description = "The message's id")),
    responses(
        (status = 200, description = "The message, cancelled", body = MessageOut),
        Unauthorized, NotFound,
        (
            status = 409,
            description = "The message is past cancelling (being sent, sent, failed or cancelled)",
            body = ErrorDocument,
        ),
        Unavailable,
    ),
)]
pub async fn cancel(
    State(state): State<AppState>,
    CompanyKey(company): CompanyKey,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<MessageOut>> {
    Ok(Json(service::cancel(&state, &company, &id).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only messages in this status.
    status: Option<String>,
    /// Only messages to this address.
    recipient: Option<String>,
    /// Only messages created at or after this time (RFC 3339).
    #[param(format = DateTime)]
    after: Option<String>,
    /// Only messages created before this time (RFC 3339).
    #[param(format = DateTime)]
    before: Option<String>,
    /// How many, newest first (1 to 1000, default 100).
    limit: Option<i64>,
}

pub fn filter(query: &ListQuery) -> ApiResult<MessageFilter> {
    let time = |field: &str, value: &Option<String>| -> ApiResult<Option<i64>> {
        value
            .as_deref()
            .map(|v| {
                OffsetDateTime::parse(v, &Rfc3339).map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64).map_err(
                    |_| {
                        ApiError::invalid(
                            FieldError::new(field, format!("{field} must be an RFC 3339 date-time, got {v:?}")).into(),
                        )
                    },
                )
            })
            .transpose()
    };
    if let Some(status) = &query.status
        && MessageStatus::parse(status).is_none()
    {
        let names: Vec<&str> = MessageStatus::ALL.iter().map(|s| s.as_str()).collect();
        return Err(ApiError::invalid(
            FieldError::new("status", format!("status must be one of {}, got {status:?}", names.join(", "))).into(),
        ));
    }
    Ok(MessageFilter {
        status: query.status.clone(),
        recipient: query.recipient.as_ref().map(|r| r.trim().to_owned()),
        after: time("after", &query.after)?,
        before: time("before", &query.before)?,
        limit: query.limit.unwrap_or(100).clamp(1, 1000),
    })
}

/// The company's messages, newest first
#[utoipa::path(
    get, path = "/messages", tag = "sending", operation_id = "list_messages",
    security(("api_key" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "The messages", body = Vec<MessageOut>),
        Unauthorized, Invalid, Unavailable,
    ),
)]
pub async fn list(
    State(state): State<AppState>,
    CompanyKey(company): CompanyKey,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<Json<Vec<MessageOut>>> {
    Ok(Json(service::list(&state, &company, &filter(&query)?).await?))
}
