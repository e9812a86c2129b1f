//! Persistence behind small traits, so that SQLite (embedded, the default)
//! and PostgreSQL (scale-out) share the services above them. Rows carry plain
//! values; the services turn them into core types. Times are Unix milliseconds.

mod commit;
mod postgres;
mod sqlite;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use async_trait::async_trait;
use carteiro_core::id::CompanySlug;
use carteiro_core::settings::Scope;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use commit::{FinishAttempts, GroupWrite, Grouped, InsertMessages, StartSending};
pub use postgres::{PostgresSettings, PostgresStore};
pub use sqlite::SqliteStore;

use crate::config::StoreArgs;

/// Opens the store the arguments name and applies its migrations: PostgreSQL for a
/// `postgres://` `--database-url`, SQLite for a `sqlite:` one, and without one the
/// embedded SQLite file `carteiro.db` in the data directory.
pub async fn open(args: &StoreArgs) -> anyhow::Result<Arc<dyn Store>> {
    let store: Arc<dyn Store> = match args.database_url.as_deref() {
        None => {
            std::fs::create_dir_all(&args.data_dir)
                .with_context(|| format!("cannot create the data directory {}", args.data_dir.display()))?;
            Arc::new(SqliteStore::open(&args.data_dir.join("carteiro.db")).await?)
        }
        Some(url) if url.starts_with("sqlite:") => Arc::new(SqliteStore::open_url(url).await?),
        Some(url) if url.starts_with("postgres:") || url.starts_with("postgresql:") => {
            ensure!(args.database_max_connections >= 1, "--database-max-connections must be at least 1, got 0");
            let settings = PostgresSettings {
                max_connections: args.database_max_connections,
                statement_timeout: Duration::from_millis(args.database_statement_timeout_ms),
            };
            Arc::new(PostgresStore::open(url, &settings).await?)
        }
        Some(_) => bail!(
            "--database-url must start with postgres:// (or sqlite:); leave it out for the embedded SQLite database"
        ),
    };
    store.migrate().await.context("cannot apply the database migrations")?;
    Ok(store)
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique key is taken (a company slug, a user name).
    #[error("already exists")]
    Conflict,
    /// The database cannot be reached, is busy or is stopping: try again later.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// The database's disk is full: nothing can be written until space is freed.
    #[error("the database's disk is full: {0}")]
    Full(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

pub type StoreResult<T> = Result<T, StoreError>;

// What both stores' SQL shares.

/// The statuses of messages waiting to be sent.
const WAITING: &str = "('scheduled', 'queued', 'deferred')";

const MESSAGE_COLUMNS: &str =
    "id, company, kind, actor_id, status, from_header, sender_header, reply_to_header, envelope_from,
    subject, idempotency_key, tags, size_bytes, created_at, send_at, due_at, attempt_count, last_reply, updated_at";

/// A level's (company, user) key columns: empty for what the scope does not name.
fn level_key(scope: &Scope) -> (&str, &str) {
    match scope {
        Scope::Global => ("", ""),
        Scope::Company(c) => (c.as_str(), ""),
        Scope::User(c, u) => (c.as_str(), u.as_str()),
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CompanyRow {
    pub slug: String,
    pub name: String,
    pub email: Option<String>,
    pub created_at: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AdminRow {
    pub id: String,
    pub username: String,
    pub password_hash: String,
    /// `None` for a platform administrator; the company a company administrator manages.
    pub company: Option<String>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ApiKeyRow {
    pub id: String,
    pub company: String,
    pub prefix: String,
    pub name: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

/// A company's DKIM key: the private half sealed, the public half as DNS publishes it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DkimKeyRow {
    pub company: String,
    pub selector: String,
    pub domain: String,
    pub algorithm: String,
    pub public_key: String,
    pub sealed_private_key: String,
    pub created_at: i64,
}

#[async_trait]
pub trait TenantStore: Send + Sync {
    async fn create_company(&self, row: &CompanyRow) -> StoreResult<()>;
    async fn company(&self, slug: &str) -> StoreResult<Option<CompanyRow>>;
    async fn companies(&self) -> StoreResult<Vec<CompanyRow>>;

    async fn create_admin(&self, row: &AdminRow, now: i64) -> StoreResult<()>;
    async fn admin_by_username(&self, username: &str) -> StoreResult<Option<AdminRow>>;
    async fn set_admin_password(&self, username: &str, password_hash: &str) -> StoreResult<bool>;
    async fn admin_count(&self) -> StoreResult<i64>;
    async fn create_admin_token(&self, token_hash: &str, admin_id: &str, now: i64, expires_at: i64) -> StoreResult<()>;
    async fn admin_by_token(&self, token_hash: &str, now: i64) -> StoreResult<Option<AdminRow>>;
    async fn revoke_admin_token(&self, token_hash: &str) -> StoreResult<()>;
    /// The administrators of one company.
    async fn company_admins(&self, company: &str) -> StoreResult<Vec<AdminRow>>;

    async fn create_api_key(&self, row: &ApiKeyRow, key_hash: &str) -> StoreResult<()>;
    /// The company of a key that is not revoked.
    async fn api_key_company(&self, key_hash: &str) -> StoreResult<Option<String>>;
    async fn api_keys(&self, company: &str) -> StoreResult<Vec<ApiKeyRow>>;
    async fn revoke_api_key(&self, company: &str, id: &str, now: i64) -> StoreResult<bool>;

    async fn create_dkim_key(&self, row: &DkimKeyRow) -> StoreResult<()>;
    /// A company's DKIM keys, newest first.
    async fn dkim_keys(&self, company: &str) -> StoreResult<Vec<DkimKeyRow>>;
    async fn remove_dkim_key(&self, company: &str, selector: &str) -> StoreResult<bool>;
}

/// A level as stored: the document without secrets, and each secret sealed,
/// by field path (`connection.password`, `connection.oauth.refresh_token`…).
#[derive(Debug, Clone)]
pub struct LevelRow {
    pub document: String,
    pub sealed_secrets: BTreeMap<String, String>,
}

/// Where a value sealed with the master key is stored (its additional data is made from this).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SealedPlace {
    /// A secret of a settings level, `(company, user)` as `level_keys` gives them, by field path.
    Level {
        company: String,
        user: String,
        path: String,
    },
    DkimKey {
        company: String,
        selector: String,
    },
    Webhook {
        company: String,
        id: String,
    },
}

impl std::fmt::Display for SealedPlace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Level { company, path, .. } if company.is_empty() => write!(f, "{path} of the global level"),
            Self::Level { company, user, path } if user.is_empty() => write!(f, "{path} of company {company}"),
            Self::Level { company, user, path } => write!(f, "{path} of user {user} of company {company}"),
            Self::DkimKey { company, selector } => write!(f, "the DKIM key {selector} of company {company}"),
            Self::Webhook { company, id } => write!(f, "the secret of webhook {id} of company {company}"),
        }
    }
}

/// Seals again a value sealed for its place: opens it with one key, seals it with another.
pub type Reseal<'a> = dyn Fn(&SealedPlace, &str) -> anyhow::Result<String> + Send + Sync + 'a;

/// A table holding sealed values; each row is read as (key, key, sealed value), a
/// level's sealed value being a JSON object of them by field path.
#[derive(Debug, Clone, Copy)]
pub enum SealedTable {
    Levels,
    DkimKeys,
    Webhooks,
}

impl SealedTable {
    pub const ALL: [Self; 3] = [Self::Levels, Self::DkimKeys, Self::Webhooks];

    pub fn select(self) -> &'static str {
        match self {
            Self::Levels => {
                "SELECT company, user_ref, sealed_secrets FROM settings_levels WHERE sealed_secrets <> '{}'"
            }
            Self::DkimKeys => "SELECT company, selector, sealed_private_key FROM dkim_keys",
            Self::Webhooks => "SELECT company, id, sealed_secret FROM webhooks",
        }
    }

    /// Writes a row's sealed value back: `$1` the value, `$2` and `$3` the keys.
    pub fn update(self) -> &'static str {
        match self {
            Self::Levels => "UPDATE settings_levels SET sealed_secrets = $1 WHERE company = $2 AND user_ref = $3",
            Self::DkimKeys => "UPDATE dkim_keys SET sealed_private_key = $1 WHERE company = $2 AND selector = $3",
            Self::Webhooks => "UPDATE webhooks SET sealed_secret = $1 WHERE company = $2 AND id = $3",
        }
    }
}

/// A row of a sealed table as read: two keys and what is sealed.
pub type SealedRow = (String, String, String);

/// Re-seals the rows read from each table: the rows to write back (new value first,
/// as `update` binds them), and how many values were re-sealed.
pub fn reseal_rows(
    tables: Vec<(SealedTable, Vec<SealedRow>)>,
    reseal: &Reseal<'_>,
) -> anyhow::Result<(Vec<(SealedTable, SealedRow)>, usize)> {
    let (mut writes, mut count) = (Vec::new(), 0);
    for (table, rows) in tables {
        for (first, second, sealed) in rows {
            let resealed = match table {
                SealedTable::Levels => {
                    let mut secrets: BTreeMap<String, String> = serde_json::from_str(&sealed)?;
                    for (path, value) in &mut secrets {
                        let place =
                            SealedPlace::Level { company: first.clone(), user: second.clone(), path: path.clone() };
                        *value = reseal(&place, value)?;
                        count += 1;
                    }
                    serde_json::to_string(&secrets)?
                }
                SealedTable::DkimKeys => {
                    count += 1;
                    reseal(&SealedPlace::DkimKey { company: first.clone(), selector: second.clone() }, &sealed)?
                }
                SealedTable::Webhooks => {
                    count += 1;
                    reseal(&SealedPlace::Webhook { company: first.clone(), id: second.clone() }, &sealed)?
                }
            };
            writes.push((table, (resealed, first, second)));
        }
    }
    Ok((writes, count))
}

/// The query telling whether anything is sealed, the same in both stores.
const ANYTHING_SEALED: &str = "SELECT EXISTS (SELECT 1 FROM settings_levels WHERE sealed_secrets <> '{}')
    OR EXISTS (SELECT 1 FROM dkim_keys) OR EXISTS (SELECT 1 FROM webhooks)";

#[derive(Debug, Clone)]
pub struct AuditRow {
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub company: Option<String>,
    pub target: String,
    /// The names of the changed fields; never their values.
    pub fields: Vec<String>,
}

/// What an import of a configuration file writes, all in one transaction.
#[derive(Debug, Clone, Default)]
pub struct ConfigWrite {
    /// When, and by whom (`config import`): the levels' `updated_at` and `updated_by`.
    pub at: i64,
    pub actor: String,
    /// Companies to create, or whose name and e-mail address to replace (`created_at` is kept).
    pub companies: Vec<CompanyRow>,
    /// Levels that replace the stored ones.
    pub levels: Vec<(Scope, LevelRow)>,
    pub audit: Vec<AuditRow>,
    /// The SHA-256 (hex) of the file `serve --config` applied, remembered so that the same file is not applied twice.
    pub file_sha256: Option<String>,
}

#[async_trait]
pub trait SettingsStore: Send + Sync {
    async fn level(&self, scope: &Scope) -> StoreResult<Option<LevelRow>>;
    /// The (company, user) of every stored level: `("", "")` is the global one, `(slug, "")` a company's.
    async fn level_keys(&self) -> StoreResult<Vec<(String, String)>>;
    /// Writes companies, levels, audit entries and the applied file's hash in one transaction.
    async fn apply_config(&self, write: &ConfigWrite) -> StoreResult<()>;
    /// The SHA-256 of the configuration file `serve --config` applied last, if any.
    async fn applied_config_sha256(&self) -> StoreResult<Option<String>>;
    /// Replaces a level and records the audit entry, in one transaction.
    async fn save_level(&self, scope: &Scope, row: &LevelRow, audit: &AuditRow) -> StoreResult<()>;
    async fn record_audit(&self, audit: &AuditRow) -> StoreResult<()>;
    /// Whether anything is sealed (a level's secret, a DKIM key, a webhook's secret):
    /// then a master key must already exist.
    async fn has_sealed_secrets(&self) -> StoreResult<bool>;
    /// Replaces every sealed value by what `reseal` makes of it, and records the
    /// audit entry, in one transaction: all change or none. How many were re-sealed.
    async fn reseal_all(&self, reseal: &Reseal<'_>, audit: &AuditRow) -> StoreResult<usize>;
    async fn audit_log(&self, company: Option<&CompanySlug>, limit: i64) -> StoreResult<Vec<AuditRow>>;
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RecipientRow {
    pub position: i64,
    pub kind: String,
    pub address: String,
    pub display: String,
    pub state: String,
    pub code: Option<i64>,
    pub reply: Option<String>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MessageRow {
    pub id: String,
    pub company: String,
    pub kind: String,
    pub actor_id: Option<String>,
    pub status: String,
    pub from_header: String,
    pub sender_header: Option<String>,
    pub reply_to_header: Option<String>,
    pub envelope_from: String,
    pub subject: String,
    pub idempotency_key: Option<String>,
    pub tags: String,
    pub size_bytes: i64,
    pub created_at: i64,
    pub send_at: Option<i64>,
    pub due_at: i64,
    pub attempt_count: i64,
    pub last_reply: Option<String>,
    pub updated_at: i64,
}

/// A message to store: its row, its recipients and its MIME bytes.
#[derive(Debug, Clone)]
pub struct NewMessageRecord {
    pub row: MessageRow,
    pub recipients: Vec<RecipientRow>,
    pub raw: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inserted {
    New,
    /// The company already has a message with this idempotency key: its id.
    Duplicate(String),
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AttemptRow {
    pub at: i64,
    pub server: String,
    pub code: Option<i64>,
    pub reply: String,
    pub ms: i64,
    pub outcome: String,
    /// JSON array of the recipients refused in this attempt.
    pub refusals: String,
}

#[derive(Debug, Clone, Default)]
pub struct MessageFilter {
    pub status: Option<String>,
    pub recipient: Option<String>,
    pub before: Option<i64>,
    pub after: Option<i64>,
    pub limit: i64,
}

/// A message claimed by a worker: what delivery needs.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClaimedMessage {
    pub id: String,
    pub company: String,
    pub kind: String,
    pub actor_id: Option<String>,
    pub envelope_from: String,
    /// When the message first became due: the retry lifetime counts from here.
    pub due_since: i64,
    pub attempt_count: i64,
    pub size_bytes: i64,
}

/// What a finished attempt changes.
#[derive(Debug, Clone)]
pub struct AttemptResult {
    pub message_id: String,
    /// The message's company (for the metrics).
    pub company: String,
    /// The claim that leased the message: a later claim of the same message has another.
    pub lease: String,
    pub attempt: AttemptRow,
    /// The recipients the attempt tried, each with its new state.
    pub recipients: Vec<RecipientUpdate>,
    pub status: String,
    pub due_at: Option<i64>,
    pub envelope_from: String,
}

#[derive(Debug, Clone)]
pub struct RecipientUpdate {
    pub position: i64,
    pub state: String,
    pub code: Option<i64>,
    pub reply: Option<String>,
}

/// What a session needs to send a claimed message: its bytes and its recipients.
#[derive(Debug, Clone)]
pub struct Parcel {
    pub id: String,
    pub raw: Vec<u8>,
    pub recipients: Vec<RecipientRow>,
}

/// What `/metrics` shows of the queue.
#[derive(Debug, Clone, Default)]
pub struct QueueStats {
    pub by_status: Vec<(String, i64)>,
    pub oldest_due_at: Option<i64>,
}

/// What asking to cancel or retry a message did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusChange {
    Done,
    NotFound,
    /// The message's status does not allow it: that status.
    Refused(String),
}

#[async_trait]
pub trait MessageStore: Send + Sync {
    /// Stores messages in one transaction; each keeps its own idempotency outcome.
    async fn insert_messages(&self, records: &[NewMessageRecord]) -> StoreResult<Vec<Inserted>>;
    async fn message(&self, company: &str, id: &str) -> StoreResult<Option<MessageRow>>;
    async fn recipients(&self, id: &str) -> StoreResult<Vec<RecipientRow>>;
    async fn attempts(&self, id: &str) -> StoreResult<Vec<AttemptRow>>;
    async fn raw(&self, id: &str) -> StoreResult<Option<Vec<u8>>>;
    async fn list_messages(&self, company: &str, filter: &MessageFilter) -> StoreResult<Vec<MessageRow>>;
    async fn cancel(&self, company: &str, id: &str, now: i64) -> StoreResult<StatusChange>;
    /// Queues a failed message again, due now, with its failed recipients pending;
    /// its queue lifetime and backoff start again.
    async fn retry(&self, company: &str, id: &str, now: i64) -> StoreResult<StatusChange>;

    /// Puts messages whose lease expired (their worker died) back in the queue.
    /// Never those of `ours`, the caller's own claims: it is alive, and a
    /// lease of its own that ran out (the store was unreachable) is renewed, not taken back.
    async fn release_expired_leases(&self, now: i64, ours: &[String]) -> StoreResult<u64>;
    /// Companies that have due messages, oldest first.
    async fn due_companies(&self, now: i64) -> StoreResult<Vec<String>>;
    /// The earliest due time of any waiting message, to sleep until then.
    async fn next_due_at(&self) -> StoreResult<Option<i64>>;
    /// Claims up to `limit` due messages of one company under a lease named `claim`.
    /// Their status stays as it is until a session starts sending them.
    async fn claim(
        &self,
        company: &str,
        claim: &str,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> StoreResult<Vec<ClaimedMessage>>;
    /// Renews the leases of the claims still being worked on.
    async fn extend_leases(&self, claims: &[String], lease_until: i64) -> StoreResult<u64>;
    /// Records an attempt and moves the message on, if the lease is still ours.
    /// Marks claimed messages as being sent, unless cancelled meanwhile: each
    /// item is a message and the claim that should hold it; the pairs marked.
    async fn start_sending(&self, items: &[(String, String)], now: i64) -> StoreResult<Vec<(String, String)>>;
    /// The bodies and recipients of claimed messages, in no particular order.
    async fn load_parcels(&self, ids: &[String]) -> StoreResult<Vec<Parcel>>;
    /// The recipients of messages, by message.
    async fn load_recipients(&self, ids: &[String]) -> StoreResult<HashMap<String, Vec<RecipientRow>>>;
    /// Records attempts and moves their messages on, in one transaction; for
    /// each, whether the lease was still its claim's (else nothing is written for it).
    async fn finish_attempts(&self, results: &[AttemptResult]) -> StoreResult<Vec<bool>>;
    /// Gives messages back to the queue, due at `due_at`, if one of `claims` still holds them.
    async fn release_messages(&self, ids: &[String], claims: &[String], due_at: i64) -> StoreResult<u64>;
    /// Gives back every message held by these claims (clean shutdown).
    async fn release_claims(&self, claims: &[String], now: i64) -> StoreResult<u64>;
    /// The queue now: unfinished messages by status, and since when the oldest
    /// message that is owed (due and not yet delivered, retries included) has been due.
    async fn queue_stats(&self, now: i64) -> StoreResult<QueueStats>;
    /// Takes up to `wanted` messages' worth from the rate of `lane`
    /// (`per_minute`, see `carteiro_core::rate`), whichever instance asks:
    /// how many it got, and the tokens left.
    async fn take_rate(&self, lane: &str, per_minute: u32, wanted: u32, now: i64) -> StoreResult<(u32, f64)>;
}

/// A company's webhook endpoint; its signing secret sealed.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct WebhookRow {
    pub id: String,
    pub company: String,
    pub url: String,
    /// JSON array of the event types sent there.
    pub events: String,
    pub sealed_secret: String,
    pub created_at: i64,
}

/// One event owed to one endpoint, as the listing shows it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct WebhookDeliveryRow {
    pub event_id: String,
    pub message_id: String,
    pub event_type: String,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    pub attempts: i64,
    pub next_at: i64,
    pub last_code: Option<i64>,
    pub last_error: Option<String>,
    pub last_attempt_at: Option<i64>,
    pub created_at: i64,
    pub delivered_at: Option<i64>,
}

/// A delivery claimed by a dispatcher: what its POST needs.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClaimedDelivery {
    pub event_id: String,
    pub webhook_id: String,
    pub company: String,
    pub event_type: String,
    pub payload: String,
    /// Attempts made before this one.
    pub attempts: i64,
    pub created_at: i64,
    pub url: String,
    pub sealed_secret: String,
}

/// What one POST of a claimed delivery did.
#[derive(Debug, Clone)]
pub struct DeliveryResult {
    pub webhook_id: String,
    pub event_id: String,
    /// The claim that held it: a later claim of the same delivery has another.
    pub lease: String,
    pub at: i64,
    /// The endpoint's HTTP status, when it answered.
    pub code: Option<i64>,
    pub error: Option<String>,
    /// `delivered`, `pending` (to retry at `next_at`) or `failed` (given up).
    pub status: String,
    pub next_at: Option<i64>,
}

#[async_trait]
pub trait WebhookStore: Send + Sync {
    /// Stores a webhook and its audit entry, in one transaction.
    async fn create_webhook(&self, row: &WebhookRow, audit: &AuditRow) -> StoreResult<()>;
    /// A company's webhooks, oldest first.
    async fn webhooks(&self, company: &str) -> StoreResult<Vec<WebhookRow>>;
    /// Removes a webhook with its deliveries, and records the audit entry, in one transaction;
    /// false (and nothing written) when the company has no such webhook.
    async fn delete_webhook(&self, company: &str, id: &str, audit: &AuditRow) -> StoreResult<bool>;
    /// A webhook's deliveries, newest first.
    async fn webhook_deliveries(
        &self,
        company: &str,
        webhook_id: &str,
        limit: i64,
    ) -> StoreResult<Vec<WebhookDeliveryRow>>;
    /// When the earliest pending delivery is due (or its dispatcher's lease ends).
    async fn next_webhook_due(&self) -> StoreResult<Option<i64>>;
    /// Claims up to `limit` due deliveries under the lease `claim`, until `lease_until`:
    /// no other dispatcher takes them before then.
    async fn claim_webhook_deliveries(
        &self,
        claim: &str,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> StoreResult<Vec<ClaimedDelivery>>;
    /// Records what POSTs did, in one transaction, each only if its claim still holds it.
    /// A failure that will be retried also holds back the endpoint's other pending
    /// deliveries until that retry: a dead endpoint is not asked again for each of its events.
    async fn finish_webhook_deliveries(&self, results: &[DeliveryResult]) -> StoreResult<Vec<bool>>;
}

/// The webhook event an attempt's result tells of: its id, its type and the
/// times its payload shows (the state change's, and the attempt's start).
struct AttemptEvent {
    id: String,
    kind: String,
    at: String,
    attempt_at: String,
}

impl AttemptEvent {
    fn of(result: &AttemptResult) -> Self {
        Self {
            id: uuid::Uuid::now_v7().to_string(),
            kind: format!("message.{}", result.status),
            at: crate::state::rfc3339(result.attempt.at + result.attempt.ms),
            attempt_at: crate::state::rfc3339(result.attempt.at),
        }
    }
}

/// Everything carteiro keeps.
#[async_trait]
pub trait Store: TenantStore + SettingsStore + MessageStore + WebhookStore {
    async fn migrate(&self) -> StoreResult<()>;
    /// Whether the database answers (for `/readyz`).
    async fn ping(&self) -> StoreResult<()>;
    /// Rings `wake` whenever another process sharing this store (another instance) makes
    /// messages due, until `stop` fires, so that this worker need not wait for its next poll;
    /// the poll stays, for whatever goes unheard. The default hears nothing: on the embedded
    /// store the poll finds what another process (`carteiro send`) submitted.
    async fn relay_wakeups(&self, _wake: Arc<Notify>, _stop: CancellationToken) {}
}

/// What both stores must do with webhook events, run by each store's tests
/// on a store holding the company `acme`.
#[cfg(test)]
pub(crate) mod webhook_checks {
    use super::*;

    fn record(id: &str) -> NewMessageRecord {
        NewMessageRecord {
            row: MessageRow {
                id: id.to_owned(),
                company: "acme".to_owned(),
                kind: "system".to_owned(),
                actor_id: None,
                status: "queued".to_owned(),
                from_header: "a@acme.example".to_owned(),
                sender_header: None,
                reply_to_header: None,
                envelope_from: "a@acme.example".to_owned(),
                subject: format!("Assunto {id}"),
                idempotency_key: None,
                tags: "[]".to_owned(),
                size_bytes: 3,
                created_at: 1,
                send_at: None,
                due_at: 1,
                attempt_count: 0,
                last_reply: None,
                updated_at: 1,
            },
            recipients: vec![RecipientRow {
                position: 0,
                kind: "to".to_owned(),
                address: "r@example.com".to_owned(),
                display: "r@example.com".to_owned(),
                state: "pending".to_owned(),
                code: None,
                reply: None,
            }],
            raw: b"raw".to_vec(),
        }
    }

    fn attempt(id: &str, lease: &str, status: &str, code: i64) -> AttemptResult {
        AttemptResult {
            message_id: id.to_owned(),
            company: "acme".to_owned(),
            lease: lease.to_owned(),
            attempt: AttemptRow {
                at: 10,
                server: "h:25".to_owned(),
                code: Some(code),
                reply: format!("{code} scripted"),
                ms: 5,
                outcome: status.to_owned(),
                refusals: "[]".to_owned(),
            },
            recipients: vec![RecipientUpdate {
                position: 0,
                state: status.to_owned(),
                code: Some(code),
                reply: Some(format!("{code} scripted")),
            }],
            status: status.to_owned(),
            due_at: (status == "deferred").then_some(100_000),
            envelope_from: "a@acme.example".to_owned(),
        }
    }

    fn result(d: &ClaimedDelivery, lease: &str, status: &str, code: i64, next_at: Option<i64>) -> DeliveryResult {
        DeliveryResult {
            webhook_id: d.webhook_id.clone(),
            event_id: d.event_id.clone(),
            lease: lease.to_owned(),
            at: 40,
            code: Some(code),
            error: (status != "delivered").then(|| format!("HTTP {code}")),
            status: status.to_owned(),
            next_at,
        }
    }

    fn audit(action: &str) -> AuditRow {
        AuditRow {
            at: 0,
            actor: "test".into(),
            action: action.into(),
            company: Some("acme".into()),
            target: "webhook:w1".into(),
            fields: vec![],
        }
    }

    pub async fn events_go_with_the_changes_they_tell_of(store: &dyn Store) {
        let hook = |id: &str, events: &str| WebhookRow {
            id: id.into(),
            company: "acme".into(),
            url: format!("https://hooks.example/{id}"),
            events: events.into(),
            sealed_secret: format!("v1:{id}"),
            created_at: 0,
        };
        store
            .create_webhook(&hook("w1", r#"["message.sent","message.cancelled"]"#), &audit("webhook.create"))
            .await
            .unwrap();
        store.create_webhook(&hook("w2", r#"["message.failed"]"#), &audit("webhook.create")).await.unwrap();
        store.insert_messages(&[record("m1"), record("m2"), record("m3"), record("m4")]).await.unwrap();
        assert_eq!(store.claim("acme", "claim-1", 2, 1000, 10).await.unwrap().len(), 4);
        // m2's lease was lost to another claim: its attempt under claim-1 tells nothing.
        store.release_messages(&["m2".into()], &["claim-1".into()], 2).await.unwrap();
        assert_eq!(store.claim("acme", "claim-2", 3, 1000, 10).await.unwrap().len(), 1);

        let recorded = store
            .finish_attempts(&[
                attempt("m1", "claim-1", "sent", 250),
                attempt("m2", "claim-1", "sent", 250),
                attempt("m3", "claim-1", "deferred", 451),
                attempt("m4", "claim-1", "failed", 550),
            ])
            .await
            .unwrap();
        assert_eq!(recorded, [true, false, true, true]);
        let listed = |rows: Vec<WebhookDeliveryRow>| -> Vec<(String, String)> {
            rows.into_iter().map(|d| (d.message_id, d.event_type)).collect()
        };
        // Each endpoint hears what it asked for; nobody hears of the deferral nor of the lost claim.
        assert_eq!(
            listed(store.webhook_deliveries("acme", "w1", 10).await.unwrap()),
            [("m1".into(), "message.sent".into())]
        );
        assert_eq!(
            listed(store.webhook_deliveries("acme", "w2", 10).await.unwrap()),
            [("m4".into(), "message.failed".into())]
        );
        assert!(store.webhook_deliveries("beta", "w1", 10).await.unwrap().is_empty(), "another company sees none");

        assert_eq!(store.cancel("acme", "m3", 20).await.unwrap(), StatusChange::Done);
        assert_eq!(store.cancel("acme", "m3", 21).await.unwrap(), StatusChange::Refused("cancelled".into()));
        assert_eq!(store.webhook_deliveries("acme", "w1", 10).await.unwrap().len(), 2, "one cancel, one event");
        assert_eq!(store.next_webhook_due().await.unwrap(), Some(15));

        // Claimed once, with what the request needs; a second claim finds nothing until the lease ends.
        let mut claimed = store.claim_webhook_deliveries("d-1", 30, 1000, 10).await.unwrap();
        assert_eq!(claimed.len(), 3);
        assert!(store.claim_webhook_deliveries("d-2", 31, 1000, 10).await.unwrap().is_empty());
        claimed.sort_by_key(|d| d.created_at);
        let payloads: Vec<serde_json::Value> =
            claimed.iter().map(|d| serde_json::from_str(&d.payload).unwrap()).collect();
        let sent = &payloads[0];
        assert_eq!(sent["type"], "message.sent");
        assert_eq!(sent["id"], claimed[0].event_id.as_str());
        assert_eq!(sent["company"], "acme");
        assert_eq!(sent["created_at"], crate::state::rfc3339(15));
        assert_eq!(
            sent["message"],
            serde_json::json!({"id": "m1", "status": "sent", "subject": "Assunto m1",
                               "attempt": {"at": crate::state::rfc3339(10), "code": 250, "reply": "250 scripted", "ms": 5}})
        );
        let cancelled = payloads.iter().find(|p| p["type"] == "message.cancelled").unwrap();
        assert_eq!(cancelled["message"]["attempt"], serde_json::Value::Null);
        assert_eq!(cancelled["created_at"], crate::state::rfc3339(20));
        let m1 = &claimed[0];
        assert_eq!((m1.url.as_str(), m1.sealed_secret.as_str(), m1.attempts), ("https://hooks.example/w1", "v1:w1", 0));

        // w1 is down: its event m1 is retried at 500, and w1's other event waits for that retry.
        let cancel_event = claimed.iter().find(|d| d.event_type == "message.cancelled").unwrap().clone();
        assert_eq!(store.cancel("acme", "m2", 35).await.unwrap(), StatusChange::Done);
        let recorded = store
            .finish_webhook_deliveries(&[
                result(m1, "d-1", "pending", 500, Some(500)),
                result(m1, "d-2", "delivered", 204, None),
            ])
            .await
            .unwrap();
        assert_eq!(recorded, [true, false], "only the claim holding it records");
        let w1 = store.webhook_deliveries("acme", "w1", 10).await.unwrap();
        let m2 = w1.iter().find(|d| d.message_id == "m2").unwrap();
        assert_eq!((m2.next_at, m2.attempts), (500, 0), "held back until the endpoint's retry");
        let tried = w1.iter().find(|d| d.message_id == "m1").unwrap();
        assert_eq!(
            (tried.status.as_str(), tried.attempts, tried.last_code, tried.next_at),
            ("pending", 1, Some(500), 500)
        );
        assert_eq!(tried.last_error.as_deref(), Some("HTTP 500"));
        // A delivered event in the same group means the endpoint is up: nothing is held back.
        let w2 = claimed.iter().find(|d| d.webhook_id == "w2").unwrap();
        store
            .finish_webhook_deliveries(&[
                result(&cancel_event, "d-1", "delivered", 204, None),
                result(w2, "d-1", "failed", 410, None),
            ])
            .await
            .unwrap();
        let w1 = store.webhook_deliveries("acme", "w1", 10).await.unwrap();
        let done = w1.iter().find(|d| d.message_id == "m3").unwrap();
        assert_eq!((done.status.as_str(), done.delivered_at), ("delivered", Some(40)));
        let w2 = store.webhook_deliveries("acme", "w2", 10).await.unwrap();
        assert_eq!((w2[0].status.as_str(), w2[0].last_code), ("failed", Some(410)));
        assert_eq!(store.next_webhook_due().await.unwrap(), Some(500));

        // Removing a webhook takes its deliveries with it.
        assert!(!store.delete_webhook("beta", "w1", &audit("webhook.delete")).await.unwrap());
        assert!(store.delete_webhook("acme", "w1", &audit("webhook.delete")).await.unwrap());
        assert!(store.webhook_deliveries("acme", "w1", 10).await.unwrap().is_empty());
        assert_eq!(store.next_webhook_due().await.unwrap(), None);
        assert_eq!(store.webhooks("acme").await.unwrap().len(), 1);
    }
}
