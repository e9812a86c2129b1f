//! The webhook dispatcher: a task of its own beside the delivery worker,
//! with its own HTTP client and its own small number of requests in flight,
//! so that no endpoint, however slow or dead, takes anything from mail
//! delivery. It claims due events from the outbox under a lease (on
//! PostgreSQL with `SKIP LOCKED`, so the instances share the work), POSTs
//! each one signed, and records the answer: 2xx is delivered; anything else
//! is retried with exponential backoff until the event is older than the
//! maximum age, and holds back the endpoint's other events until that retry.
//!
//! Delivery is at least once: a dispatcher that dies after the endpoint
//! accepted an event but before recording it leaves the lease to expire, and
//! the event is sent again with the same `Carteiro-Delivery` id.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use time::OffsetDateTime;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::WebhookConfig;
use crate::crypto::MasterKey;
use crate::service::webhooks::{DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, secret_aad, signature};
use crate::state::{AppState, now_ms};
use crate::store::{ClaimedDelivery, DeliveryResult, GroupWrite, Grouped, Store, StoreResult};

/// The shortest pause between two rounds, so that the loop never spins.
const MIN_PAUSE: Duration = Duration::from_millis(20);
/// How much of an endpoint's answer is kept with a refused delivery.
const MAX_ANSWER_CHARS: usize = 200;
/// How much of an answer's body is read (and thrown away, but for the start of a refusal).
const MAX_BODY_BYTES: usize = 64 * 1024;

/// Records what requests did, sharing transactions between requests that end together.
#[derive(Clone)]
struct FinishDeliveries(Arc<dyn Store>);

#[async_trait]
impl GroupWrite for FinishDeliveries {
    type Item = DeliveryResult;
    type Outcome = bool;
    async fn write(&self, items: &[DeliveryResult]) -> StoreResult<Vec<bool>> {
        self.0.finish_webhook_deliveries(items).await
    }
    fn weight(item: &DeliveryResult) -> usize {
        256 + item.error.as_ref().map_or(0, String::len)
    }
}

pub struct Dispatcher {
    state: AppState,
    config: WebhookConfig,
    client: reqwest::Client,
    /// This process's name; each claim's lease name starts with it.
    owner: String,
    claims: u64,
}

/// What every request task needs.
struct Shared {
    client: reqwest::Client,
    keys: Arc<MasterKey>,
    config: WebhookConfig,
    finishes: Grouped<FinishDeliveries>,
}

impl Dispatcher {
    /// Fails when the HTTP client cannot be built (checked at start, not at the first event).
    pub fn new(state: AppState, config: WebhookConfig) -> anyhow::Result<Self> {
        let client = client(config.timeout)?;
        Ok(Self { state, config, client, owner: format!("webhooks-{}", uuid::Uuid::now_v7()), claims: 0 })
    }

    /// How long a claim holds its deliveries: long enough for the request and its record.
    fn lease(&self) -> Duration {
        self.config.timeout * 2 + Duration::from_secs(30)
    }

    /// Sends due events until `cancel` fires, then lets requests in flight end for up to `grace`.
    pub async fn run(mut self, cancel: CancellationToken, grace: Duration) {
        let shared = Arc::new(Shared {
            client: self.client.clone(),
            keys: self.state.keys.clone(),
            config: self.config.clone(),
            finishes: Grouped::start(FinishDeliveries(self.state.store.clone())),
        });
        let max = self.config.concurrency;
        let mut tasks: JoinSet<()> = JoinSet::new();
        let mut claim_at = Instant::now();
        loop {
            let now = Instant::now();
            let room = max - tasks.len();
            // Claims come in batches: while requests run, wait until half the places are free.
            let may_claim = room > 0 && (tasks.is_empty() || room >= (max / 2).max(1));
            if may_claim && claim_at <= now {
                claim_at = now + self.config.poll;
                match self.claim_due(room).await {
                    Ok(Claimed::Some(claimed)) => {
                        if claimed.len() == room {
                            // There may be more: claim again as soon as there is room.
                            claim_at = now;
                        }
                        for (delivery, claim) in claimed {
                            tasks.spawn(deliver(shared.clone(), delivery, claim));
                        }
                    }
                    Ok(Claimed::NextAt(Some(due))) => {
                        let wait = Duration::from_millis((due - now_ms()).max(0) as u64);
                        claim_at = claim_at.min(now + wait);
                    }
                    Ok(Claimed::NextAt(None)) => {}
                    Err(e) => tracing::warn!(error = %e, "cannot read the webhook outbox; will try again"),
                }
            }
            let wake = if may_claim { claim_at } else { now + self.config.poll };
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep_until(wake.max(Instant::now() + MIN_PAUSE).into()) => {}
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        let in_flight = tasks.len();
        if tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await.is_err() {
            tracing::info!(
                requests = in_flight,
                "stopping with webhook requests unanswered: they are sent again when their lease ends"
            );
            tasks.abort_all();
        }
    }

    /// Claims up to `room` due deliveries, each with the name of its claim.
    async fn claim_due(&mut self, room: usize) -> StoreResult<Claimed> {
        let now = now_ms();
        // A read first: the claim is a write, and most rounds find nothing due.
        match self.state.store.next_webhook_due().await? {
            Some(due) if due <= now => {}
            next => return Ok(Claimed::NextAt(next)),
        }
        self.claims += 1;
        let claim = format!("{}:{}", self.owner, self.claims);
        let lease_until = now + self.lease().as_millis() as i64;
        let claimed = self.state.store.claim_webhook_deliveries(&claim, now, lease_until, room as i64).await?;
        Ok(Claimed::Some(claimed.into_iter().map(|d| (d, claim.clone())).collect()))
    }
}

enum Claimed {
    Some(Vec<(ClaimedDelivery, String)>),
    /// Nothing due now; the next due time, if any.
    NextAt(Option<i64>),
}

/// The HTTP client of webhooks: rustls with ring, no redirects (they would
/// carry the signed event elsewhere), no proxy, bounded in time.
fn client(timeout: Duration) -> anyhow::Result<reqwest::Client> {
    let tls = crate::delivery::tls::client_config(true, None)
        .map_err(|e| anyhow::anyhow!("no TLS settings for webhooks: {e}"))?;
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .user_agent(concat!("carteiro/", env!("CARGO_PKG_VERSION"), " (webhooks)"))
        .build()
        .map_err(|e| anyhow::anyhow!("no HTTP client for webhooks: {e}"))
}

/// POSTs one delivery and records what the endpoint said.
async fn deliver(shared: Arc<Shared>, delivery: ClaimedDelivery, claim: String) {
    let at = now_ms();
    let (code, error) = post(&shared, &delivery).await;
    let (status, next_at) = match &error {
        None => ("delivered", None),
        Some(_) => {
            let failures = u32::try_from(delivery.attempts + 1).unwrap_or(u32::MAX);
            let created = OffsetDateTime::from_unix_timestamp_nanos(i128::from(delivery.created_at) * 1_000_000)
                .unwrap_or_else(|_| OffsetDateTime::now_utc());
            match shared.config.retry.next_attempt(failures, created, OffsetDateTime::now_utc(), rand::random()) {
                Some(next) => ("pending", Some((next.unix_timestamp_nanos() / 1_000_000) as i64)),
                None => ("failed", None),
            }
        }
    };
    metrics::counter!("carteiro_webhook_attempts_total", "status" => status).increment(1);
    match &error {
        None => {
            tracing::info!(webhook_id = %delivery.webhook_id, event_id = %delivery.event_id, event = %delivery.event_type, code, "webhook delivered")
        }
        Some(why) => {
            tracing::warn!(webhook_id = %delivery.webhook_id, event_id = %delivery.event_id, event = %delivery.event_type, code, error = %why, status, "webhook not delivered")
        }
    }
    let result = DeliveryResult {
        webhook_id: delivery.webhook_id,
        event_id: delivery.event_id,
        lease: claim,
        at,
        code,
        error,
        status: status.to_owned(),
        next_at,
    };
    // While the store does not answer, try again: the lease keeps other dispatchers away meanwhile.
    let mut wait = Duration::from_millis(100);
    for _ in 0..8 {
        match shared.finishes.write(vec![result.clone()]).await {
            Ok(recorded) => {
                if recorded.first() == Some(&false) {
                    tracing::warn!(event_id = %result.event_id, "the webhook delivery's lease was lost; another claim owns it now");
                }
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot record a webhook delivery; trying again");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(10));
            }
        }
    }
    tracing::error!(event_id = %result.event_id, "cannot record a webhook delivery: it is sent again when its lease ends");
}

/// The endpoint's HTTP status (when it answered) and, unless it accepted (2xx), what went wrong.
async fn post(shared: &Shared, delivery: &ClaimedDelivery) -> (Option<i64>, Option<String>) {
    let secret = match shared.keys.open(&secret_aad(&delivery.company, &delivery.webhook_id), &delivery.sealed_secret) {
        Ok(secret) => secret,
        Err(e) => return (None, Some(format!("the webhook's signing secret cannot be opened: {e}"))),
    };
    let timestamp = now_ms().div_euclid(1000);
    let signed = signature(secret.expose().as_bytes(), timestamp, delivery.payload.as_bytes());
    let sent = shared
        .client
        .post(&delivery.url)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(EVENT_HEADER, &delivery.event_type)
        .header(DELIVERY_HEADER, &delivery.event_id)
        .header(SIGNATURE_HEADER, signed)
        .body(delivery.payload.clone())
        .send()
        .await;
    let mut response = match sent {
        Ok(response) => response,
        Err(e) => return (None, Some(describe(&e, shared.config.timeout))),
    };
    let status = response.status();
    // The body is read (a little of it) so that the connection can serve the next request.
    let mut body = Vec::new();
    while body.len() < MAX_BODY_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    let code = Some(i64::from(status.as_u16()));
    if status.is_success() {
        return (code, None);
    }
    let mut why = format!("the endpoint answered HTTP {}", status.as_u16());
    if status.is_redirection() {
        why.push_str(" (redirects are not followed: give the final URL)");
    }
    let answer: String = String::from_utf8_lossy(&body)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_ANSWER_CHARS)
        .collect();
    let answer = answer.trim();
    if !answer.is_empty() {
        why.push_str(": ");
        why.push_str(answer);
    }
    (code, Some(why))
}

/// A failed request in words: a timeout, a refused connection, a TLS failure, with its causes.
fn describe(error: &reqwest::Error, timeout: Duration) -> String {
    if error.is_timeout() {
        return format!("the endpoint did not answer within {} seconds", timeout.as_secs_f64());
    }
    let mut text =
        if error.is_connect() { "cannot connect to the endpoint".to_owned() } else { "the request failed".to_owned() };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
