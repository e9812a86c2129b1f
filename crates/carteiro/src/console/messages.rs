//! Messages: a filterable list, a message with its headers, envelope and
//! attempts; cancel and retry.

use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use carteiro_core::FieldError;
use carteiro_core::id::CompanySlug;
use carteiro_core::status::MessageStatus;
use serde::Deserialize;
use time::{Date, Duration, macros::format_description};

use super::ConsoleError;
use super::companies::CsrfOnly;
use super::page::{Done, Page};
use super::session::Session;
use crate::service::messages::{self, MessageOut};
use crate::service::{ServiceError, tenants};
use crate::state::AppState;
use crate::store::MessageFilter;

const PAGE_SIZE: i64 = 200;

#[derive(Template, WebTemplate)]
#[template(path = "messages.html")]
struct ListPage {
    page: Page,
    /// The companies to choose from (a platform administrator's); empty for a company administrator.
    companies: Vec<(String, String)>,
    query: ListQuery,
    statuses: Vec<&'static str>,
    messages: Vec<MessageOut>,
    error: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    company: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    recipient: String,
    #[serde(default)]
    after: String,
    #[serde(default)]
    before: String,
}

/// A day typed in a date input, as milliseconds at its start (UTC).
fn day(field: &str, input: &str) -> Result<Option<i64>, FieldError> {
    if input.trim().is_empty() {
        return Ok(None);
    }
    Date::parse(input.trim(), format_description!("[year]-[month]-[day]"))
        .map(|d| Some((d.midnight().assume_utc().unix_timestamp_nanos() / 1_000_000) as i64))
        .map_err(|_| FieldError::new(field, format!("{field} must be a date (YYYY-MM-DD), got {input:?}")))
}

fn filter(query: &ListQuery) -> Result<MessageFilter, FieldError> {
    let status = Some(query.status.trim()).filter(|s| !s.is_empty());
    if let Some(s) = status
        && MessageStatus::parse(s).is_none()
    {
        return Err(FieldError::new("status", format!("status must be one of the listed ones, got {s:?}")));
    }
    let one_day = Duration::days(1).whole_milliseconds() as i64;
    Ok(MessageFilter {
        status: status.map(str::to_owned),
        recipient: Some(query.recipient.trim().to_owned()).filter(|r| !r.is_empty()),
        after: day("after", &query.after)?,
        // "Until" a day includes that day.
        before: day("before", &query.before)?.map(|d| d + one_day),
        limit: PAGE_SIZE,
    })
}

pub async fn list(
    State(state): State<AppState>,
    session: Session,
    Query(query): Query<ListQuery>,
) -> Result<Response, ConsoleError> {
    let page = session.page(session.t().messages_title);
    let (companies, scope): (Vec<(String, String)>, Vec<CompanySlug>) = match &session.admin.scope {
        crate::service::auth::AdminScope::Company(own) => (Vec::new(), vec![own.clone()]),
        crate::service::auth::AdminScope::Platform => {
            let all: Vec<(String, String)> =
                tenants::companies(&state).await?.into_iter().map(|c| (c.slug, c.name)).collect();
            let chosen = query.company.trim();
            let scope = all
                .iter()
                .filter(|(slug, _)| chosen.is_empty() || slug == chosen)
                .filter_map(|(slug, _)| CompanySlug::parse("company", slug).ok())
                .collect();
            (all, scope)
        }
    };
    let statuses = MessageStatus::ALL.iter().map(|s| s.as_str()).collect();
    let (messages, error) = match filter(&query) {
        Ok(filter) => {
            let mut found = Vec::new();
            for company in &scope {
                found.extend(messages::list(&state, company, &filter).await?);
            }
            // Newest first across companies (ids are time-ordered UUIDv7).
            found.sort_by(|a, b| b.id.cmp(&a.id));
            found.truncate(PAGE_SIZE as usize);
            (found, None)
        }
        Err(e) => (Vec::new(), Some(page.rule(&e.message))),
    };
    Ok(ListPage { page, companies, query, statuses, messages, error }.into_response())
}

#[derive(Template, WebTemplate)]
#[template(path = "message.html")]
struct DetailPage {
    page: Page,
    message: MessageOut,
    headers: Option<String>,
    can_cancel: bool,
    can_retry: bool,
}

pub async fn detail(
    State(state): State<AppState>,
    session: Session,
    Path((slug, id)): Path<(String, String)>,
    Query(done): Query<Done>,
) -> Result<Response, ConsoleError> {
    let slug = session.require_company(&slug)?;
    let message = messages::message(&state, &slug, &id).await?;
    let headers = match messages::raw(&state, &slug, &id).await {
        Ok(raw) => Some(header_block(&raw)),
        Err(ServiceError::NotFound(_)) => None,
        Err(other) => return Err(other.into()),
    };
    let mut page = session.page(format!("{} · {}", session.t().message_title, message.subject));
    if done.is("cancelled") {
        page.set_flash(true, page.t.cancelled_ok);
    } else if done.is("retried") {
        page.set_flash(true, page.t.retried_ok);
    }
    let status = MessageStatus::parse(&message.status);
    let can_cancel = status.is_some_and(MessageStatus::can_cancel);
    let can_retry = status == Some(MessageStatus::Failed);
    Ok(DetailPage { page, message, headers, can_cancel, can_retry }.into_response())
}

/// The header section of a built message, as text.
fn header_block(raw: &[u8]) -> String {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(raw.len());
    String::from_utf8_lossy(&raw[..end]).replace("\r\n", "\n")
}

pub async fn cancel(
    State(state): State<AppState>,
    session: Session,
    Path((slug, id)): Path<(String, String)>,
    Form(form): Form<CsrfOnly>,
) -> Result<Response, ConsoleError> {
    let slug = session.require_company(&slug)?;
    session.check_csrf(form.csrf())?;
    change(messages::cancel(&state, &slug, &id).await, &session, &slug, &id, "cancelled")
}

pub async fn retry(
    State(state): State<AppState>,
    session: Session,
    Path((slug, id)): Path<(String, String)>,
    Form(form): Form<CsrfOnly>,
) -> Result<Response, ConsoleError> {
    let slug = session.require_company(&slug)?;
    session.check_csrf(form.csrf())?;
    change(messages::retry(&state, &slug, &id).await, &session, &slug, &id, "retried")
}

/// Back to the message, saying what was done; a message whose status moved on says it is too late.
fn change(
    result: Result<MessageOut, ServiceError>,
    session: &Session,
    slug: &CompanySlug,
    id: &str,
    done: &str,
) -> Result<Response, ConsoleError> {
    match result {
        Ok(_) => Ok(Redirect::to(&format!("/companies/{slug}/messages/{id}?done={done}")).into_response()),
        Err(ServiceError::Conflict(_)) => Err(ServiceError::Conflict(session.t().too_late.to_owned()).into()),
        Err(other) => Err(other.into()),
    }
}

/// The message as built, to download.
pub async fn raw(
    State(state): State<AppState>,
    session: Session,
    Path((slug, id)): Path<(String, String)>,
) -> Result<Response, ConsoleError> {
    let slug = session.require_company(&slug)?;
    let raw = messages::raw(&state, &slug, &id).await?;
    let disposition =
        format!("attachment; filename=\"{}.eml\"", id.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', ""));
    Ok(([(header::CONTENT_TYPE, "message/rfc822".to_owned()), (header::CONTENT_DISPOSITION, disposition)], raw)
        .into_response())
}
