//! The sending API: a company's API key submits, reads, lists and cancels
//! its own messages, and nobody else's.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use carteiro_core::FieldError;
use carteiro_core::message::MessageIn;
use carteiro_core::status::MessageStatus;
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::auth::CompanyKey;
use super::json::{self, ApiJson};
use super::query::ApiQuery;
use crate::error::{ApiError, ApiResult};
use crate::service::messages::{self as service, MessageOut};
use crate::service::submit::{self, Accepted};
use crate::state::AppState;
use crate::store::MessageFilter;

pub const MAX_BATCH: usize = 1000;

pub async fn submit(
    State(state): State<AppState>,
    CompanyKey(company): CompanyKey,
    ApiJson(input): ApiJson<MessageIn>,
) -> ApiResult<(StatusCode, Json<Accepted>)> {
    Ok((StatusCode::ACCEPTED, Json(submit::submit_one(&state, &company, &input).await?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchIn {
    /// Kept raw, so that one malformed item fails alone (and is parsed once).
    messages: Vec<Box<serde_json::value::RawValue>>,
}

pub async fn submit_batch(
    State(state): State<AppState>,
    CompanyKey(company): CompanyKey,
    ApiJson(batch): ApiJson<BatchIn>,
) -> ApiResult<(StatusCode, Json<Value>)> {
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
    let results: Vec<Value> = parsed
        .into_iter()
        .map(|item| match item.map(|_| judged.next().expect("one result per well-formed item")) {
            Ok(Ok(accepted)) => json!(accepted),
            Ok(Err(error)) => ApiError::from(error).body(),
            Err(error) => error.body(),
        })
        .collect();
    Ok((StatusCode::ACCEPTED, Json(json!({"results": results}))))
}

pub async fn get(
    State(state): State<AppState>,
    CompanyKey(company): CompanyKey,
    Path(id): Path<String>,
) -> ApiResult<Json<MessageOut>> {
    Ok(Json(service::message(&state, &company, &id).await?))
}

pub async fn raw(
    State(state): State<AppState>,
    CompanyKey(company): CompanyKey,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    Ok(rfc822(service::raw(&state, &company, &id).await?))
}

/// A message's bytes as a response.
pub fn rfc822(raw: Vec<u8>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "message/rfc822")], raw)
}

pub async fn cancel(
    State(state): State<AppState>,
    CompanyKey(company): CompanyKey,
    Path(id): Path<String>,
) -> ApiResult<Json<MessageOut>> {
    Ok(Json(service::cancel(&state, &company, &id).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    status: Option<String>,
    recipient: Option<String>,
    after: Option<String>,
    before: Option<String>,
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

pub async fn list(
    State(state): State<AppState>,
    CompanyKey(company): CompanyKey,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<Json<Vec<MessageOut>>> {
    Ok(Json(service::list(&state, &company, &filter(&query)?).await?))
}
