//! Delivery webhooks: a company's endpoints that hear of its messages' state
//! changes (`message.sent`, `message.deferred`, `message.failed`,
//! `message.cancelled`). Each event is written to an outbox in the very
//! transaction that records the change, so a crash neither loses nor invents
//! one; the dispatcher (`worker::webhooks`) POSTs it, signed with the
//! endpoint's secret, and retries until the endpoint accepts it.

use carteiro_core::Secret;
use carteiro_core::error::{FieldError, FieldErrors};
use carteiro_core::id::CompanySlug;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::random_token;
use super::{Actor, ServiceError, ServiceResult, tenants};
use crate::state::{AppState, now_ms, rfc3339};
use crate::store::{AuditRow, WebhookDeliveryRow, WebhookRow};

/// Every event type, in the order the documentation lists them.
pub const EVENT_TYPES: [&str; 4] = ["message.sent", "message.deferred", "message.failed", "message.cancelled"];
/// How a signing secret starts.
pub const SECRET_PREFIX: &str = "whsec_";
/// Most webhooks of one company: each event is written once per endpoint.
pub const MAX_WEBHOOKS: usize = 10;
const MAX_URL_LENGTH: usize = 2048;

/// The headers of a webhook request.
pub const SIGNATURE_HEADER: &str = "Carteiro-Signature";
pub const EVENT_HEADER: &str = "Carteiro-Event";
pub const DELIVERY_HEADER: &str = "Carteiro-Delivery";

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookIn {
    #[schema(example = "https://hooks.acme.example/carteiro")]
    pub url: String,
    /// The event types to send; every one when left out.
    pub events: Option<Vec<String>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookOut {
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    pub created_at: String,
}

impl From<WebhookRow> for WebhookOut {
    fn from(row: WebhookRow) -> Self {
        Self {
            events: serde_json::from_str(&row.events).unwrap_or_default(),
            id: row.id,
            url: row.url,
            created_at: rfc3339(row.created_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NewWebhook {
    #[serde(flatten)]
    pub info: WebhookOut,
    /// The signing secret: shown this once, stored sealed.
    pub secret: String,
}

/// One event owed to one endpoint, and what became of it.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryOut {
    /// The event's id (the `Carteiro-Delivery` header).
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub message_id: String,
    /// `pending`, `delivered` or `failed` (given up after the maximum age).
    pub status: String,
    pub attempts: i64,
    /// The endpoint's HTTP status at the last attempt, when it answered.
    pub last_code: Option<i64>,
    /// What went wrong at the last attempt.
    pub last_error: Option<String>,
    pub created_at: String,
    pub last_attempt_at: Option<String>,
    /// When a pending delivery is tried next.
    pub next_attempt_at: Option<String>,
    pub delivered_at: Option<String>,
}

impl From<WebhookDeliveryRow> for DeliveryOut {
    fn from(row: WebhookDeliveryRow) -> Self {
        Self {
            next_attempt_at: (row.status == "pending").then(|| rfc3339(row.next_at)),
            id: row.event_id,
            kind: row.event_type,
            message_id: row.message_id,
            status: row.status,
            attempts: row.attempts,
            last_code: row.last_code,
            last_error: row.last_error,
            created_at: rfc3339(row.created_at),
            last_attempt_at: row.last_attempt_at.map(rfc3339),
            delivered_at: row.delivered_at.map(rfc3339),
        }
    }
}

/// What a webhook's sealed secret belongs to.
pub fn secret_aad(company: &str, id: &str) -> String {
    format!("webhook:{company}:{id}")
}

/// The `Carteiro-Signature` value of a body sent at `timestamp` (Unix seconds):
/// `t=<timestamp>,v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<sha2_011::Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={timestamp},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// An endpoint's address: http(s), with a host, no credentials in it. Plain
/// http is the operator's and platform administrators' to choose (as for a
/// token endpoint): a company administrator, a tenant, needs https.
fn parse_url(actor: &Actor, input: &str) -> ServiceResult<String> {
    let input = input.trim();
    let invalid = |why: &str| ServiceError::from(FieldError::new("url", format!("url {why}, got {input:?}")));
    if input.len() > MAX_URL_LENGTH {
        return Err(FieldError::new("url", format!("url must be at most {MAX_URL_LENGTH} characters long")).into());
    }
    let url = reqwest::Url::parse(input).map_err(|_| invalid("must be an http:// or https:// URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("must be an http:// or https:// URL"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("must name a host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("must not hold a user name or password (the signature proves who is calling)"));
    }
    if url.scheme() == "http" && !actor.may_act_on_the_host() {
        return Err(ServiceError::Forbidden(
            FieldError::new(
                "url",
                "url: only a platform administrator may choose a plain http:// endpoint; use https://",
            )
            .into(),
        ));
    }
    Ok(url.to_string())
}

/// The event types asked for, each once, in the documented order; all of them when none are named.
fn parse_events(events: Option<&[String]>) -> Result<Vec<String>, FieldErrors> {
    let Some(events) = events else {
        return Ok(EVENT_TYPES.iter().map(|e| (*e).to_owned()).collect());
    };
    let mut errors = FieldErrors::default();
    if events.is_empty() {
        errors.push(FieldError::new(
            "events",
            format!("events must name at least one of {} (or be left out for all)", EVENT_TYPES.join(", ")),
        ));
    }
    for (i, event) in events.iter().enumerate() {
        if !EVENT_TYPES.contains(&event.as_str()) {
            let field = format!("events[{i}]");
            errors.push(FieldError::new(
                field.clone(),
                format!("{field} must be one of {}, got {event:?}", EVENT_TYPES.join(", ")),
            ));
        }
    }
    errors.into_result(|| {
        EVENT_TYPES.iter().filter(|e| events.iter().any(|x| x == *e)).map(|e| (*e).to_owned()).collect()
    })
}

pub async fn create(
    state: &AppState,
    actor: &Actor,
    company: &CompanySlug,
    input: &WebhookIn,
) -> ServiceResult<NewWebhook> {
    tenants::company(state, company).await?;
    let url = parse_url(actor, &input.url);
    let events = parse_events(input.events.as_deref());
    let (url, events) = match (url, events) {
        (Ok(url), Ok(events)) => (url, events),
        (Err(ServiceError::Invalid(mut errors)), Err(more)) => {
            errors.0.extend(more.0);
            return Err(errors.into());
        }
        (Err(e), _) => return Err(e),
        (_, Err(errors)) => return Err(errors.into()),
    };
    if state.store.webhooks(company.as_str()).await?.len() >= MAX_WEBHOOKS {
        return Err(ServiceError::Unprocessable {
            code: "limit",
            field: None,
            message: format!(
                "company {company} already has {MAX_WEBHOOKS} webhooks, the most it may have: remove one first"
            ),
        });
    }
    let id = uuid::Uuid::now_v7().to_string();
    let secret = random_token(SECRET_PREFIX);
    let row = WebhookRow {
        sealed_secret: state.keys.seal(&secret_aad(company.as_str(), &id), &Secret::new(secret.clone())),
        id,
        company: company.as_str().to_owned(),
        url,
        events: serde_json::to_string(&events).map_err(anyhow::Error::from)?,
        created_at: now_ms(),
    };
    let audit = audit_row(actor, company, "webhook.create", &row.id, row.created_at);
    state.store.create_webhook(&row, &audit).await?;
    Ok(NewWebhook { info: row.into(), secret })
}

pub async fn list(state: &AppState, company: &CompanySlug) -> ServiceResult<Vec<WebhookOut>> {
    tenants::company(state, company).await?;
    Ok(state.store.webhooks(company.as_str()).await?.into_iter().map(WebhookOut::from).collect())
}

/// Removes a webhook; the events still owed to it are dropped with it.
pub async fn delete(state: &AppState, actor: &Actor, company: &CompanySlug, id: &str) -> ServiceResult<()> {
    tenants::company(state, company).await?;
    let audit = audit_row(actor, company, "webhook.delete", id, now_ms());
    if !state.store.delete_webhook(company.as_str(), id, &audit).await? {
        return Err(not_found(company, id));
    }
    Ok(())
}

/// A webhook's deliveries, newest first.
pub async fn deliveries(
    state: &AppState,
    company: &CompanySlug,
    id: &str,
    limit: Option<i64>,
) -> ServiceResult<Vec<DeliveryOut>> {
    tenants::company(state, company).await?;
    if !state.store.webhooks(company.as_str()).await?.iter().any(|w| w.id == id) {
        return Err(not_found(company, id));
    }
    let limit = limit.unwrap_or(100).clamp(1, 1000);
    Ok(state.store.webhook_deliveries(company.as_str(), id, limit).await?.into_iter().map(DeliveryOut::from).collect())
}

fn not_found(company: &CompanySlug, id: &str) -> ServiceError {
    ServiceError::NotFound(format!("company {company} has no webhook {id}"))
}

fn audit_row(actor: &Actor, company: &CompanySlug, action: &str, id: &str, at: i64) -> AuditRow {
    AuditRow {
        at,
        actor: actor.label(),
        action: action.to_owned(),
        company: Some(company.as_str().to_owned()),
        target: format!("webhook:{id}"),
        fields: vec!["url".into(), "events".into()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_the_timestamp_a_dot_and_the_body() {
        // As `printf '1700000000.what do ya want for nothing?' | openssl dgst -sha256 -hmac Jefe` computes it.
        assert_eq!(
            signature(b"Jefe", 1_700_000_000, b"what do ya want for nothing?"),
            "t=1700000000,v1=1cdd0650c8be1cb0974b1788d458b1e781206cfef59b85faafc582d2e182c57e"
        );
    }

    #[test]
    fn urls_must_be_http_or_https_with_a_host_and_no_credentials() {
        let platform = Actor::Cli;
        assert_eq!(
            parse_url(&platform, " https://hooks.example.com/carteiro ").unwrap(),
            "https://hooks.example.com/carteiro"
        );
        assert_eq!(parse_url(&platform, "http://127.0.0.1:9000/in").unwrap(), "http://127.0.0.1:9000/in");
        for bad in ["ftp://example.com/", "hooks.example.com", "https://", "https://u:p@example.com/", "mailto:a@b.c"] {
            let Err(ServiceError::Invalid(errors)) = parse_url(&platform, bad) else { panic!("{bad} was taken") };
            assert_eq!(errors.first().unwrap().field, "url", "{bad}");
        }
    }

    #[test]
    fn events_are_the_four_names_each_once_all_when_left_out() {
        assert_eq!(parse_events(None).unwrap(), EVENT_TYPES);
        let asked = ["message.failed".to_owned(), "message.sent".to_owned(), "message.sent".to_owned()];
        assert_eq!(parse_events(Some(&asked)).unwrap(), ["message.sent", "message.failed"]);
        let errors = parse_events(Some(&["message.sent".to_owned(), "message.bounced".to_owned()])).unwrap_err();
        assert_eq!(errors.first().unwrap().field, "events[1]");
        assert_eq!(parse_events(Some(&[])).unwrap_err().first().unwrap().field, "events");
    }
}
