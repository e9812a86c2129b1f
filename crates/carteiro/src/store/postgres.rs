//! The scale-out store: one PostgreSQL database shared by several carteiro
//! instances. The semantics are those of the SQLite store; what differs is
//! that writers run concurrently, in other processes too:
//!
//! * claims lock the due rows they take with `FOR UPDATE SKIP LOCKED`, so
//!   instances claiming at once never take the same message nor wait on each other;
//! * idempotency keys are kept unique by the table's constraint, with
//!   `INSERT … ON CONFLICT DO NOTHING`: two instances racing on one key store one message;
//! * a write that makes messages due (a submission, a release, a retry due now)
//!   sends `NOTIFY carteiro_due` after its commit, and every instance listens
//!   (`relay_wakeups`), so that mail submitted on one is picked up at once by any;
//! * batches travel as arrays (`UNNEST`), one statement whatever their size.
//!
//! When the server cannot be reached, calls fail within `ACQUIRE_TIMEOUT` with
//! `StoreError::Unavailable`; every write is one statement or one transaction,
//! so nothing is half-written, and the pool opens new connections by itself
//! once the server is back.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use carteiro_core::id::CompanySlug;
use carteiro_core::rate;
use carteiro_core::settings::Scope;
use carteiro_core::status::MessageStatus;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, FromRow, PgConnection, Postgres, QueryBuilder, Row};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::*;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The channel of wake-ups between instances.
const DUE_CHANNEL: &str = "carteiro_due";

/// How long a call waits for a connection (opening one included) before the
/// database counts as unavailable: a submission gets its 503 quickly instead of hanging.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// How the pool talks to the server.
#[derive(Debug, Clone)]
pub struct PostgresSettings {
    pub max_connections: u32,
    /// Longest a statement may run before the server cancels it; zero for no limit.
    pub statement_timeout: Duration,
}

pub struct PostgresStore {
    pool: PgPool,
    /// When this instance last told the others that messages are due (ms): at most one
    /// NOTIFY per `NOTIFY_EVERY_MS`, sent after the commit. Inside a transaction, NOTIFY
    /// takes a server-wide lock until the commit is flushed, serialising every commit.
    notified_at: std::sync::atomic::AtomicI64,
    /// The pool's options without the statement timeout: for the migrations' and the
    /// wake-up listener's own connections.
    options: PgConnectOptions,
}

/// Wake-ups are hints (the poll finds anything missed): one per this many milliseconds is enough.
const NOTIFY_EVERY_MS: i64 = 20;

impl PostgresStore {
    /// Tells the other instances that messages are due, unless this instance just did.
    async fn wake_others(&self) {
        use std::sync::atomic::Ordering;
        let now = crate::state::now_ms();
        let last = self.notified_at.load(Ordering::Relaxed);
        if now - last < NOTIFY_EVERY_MS
            || self.notified_at.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_err()
        {
            return;
        }
        let sent = sqlx::query(AssertSqlSafe(format!("NOTIFY {DUE_CHANNEL}"))).execute(&self.pool).await;
        if let Err(e) = sent {
            tracing::debug!(error = %e, "cannot wake the other instances; their poll will find the messages");
        }
    }

    /// Connects to the database of a `postgres://` URL, failing if it cannot be reached.
    pub async fn open(url: &str, settings: &PostgresSettings) -> anyhow::Result<Self> {
        let options = PgConnectOptions::from_str(url).context("the database URL is not a valid postgres:// URL")?;
        // Named without the URL, which may hold a password.
        let place = format!(
            "{}:{} (database {})",
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or(options.get_username())
        );
        let store = Self::connect_lazy(options, settings);
        // The error's own sentence only: its source chain repeats it.
        store.ping().await.map_err(|e| anyhow::anyhow!("cannot connect to PostgreSQL at {place}: {e}"))?;
        Ok(store)
    }

    /// A store whose connections are opened when first needed.
    fn connect_lazy(options: PgConnectOptions, settings: &PostgresSettings) -> Self {
        let options = options.application_name("carteiro");
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            // A connection cut by a server restart is found dead here and replaced, instead of
            // failing the call that would have used it: carteiro recovers without a restart.
            .test_before_acquire(true)
            // Set when the connection starts: no round trip, and no statement runs without it.
            .connect_lazy_with(
                options.clone().options([("statement_timeout", settings.statement_timeout.as_millis())]),
            );
        Self { pool, notified_at: std::sync::atomic::AtomicI64::new(0), options }
    }
}

/// Unique keys become `Conflict`; a full disk (disk_full) `Full`; an unreachable, overloaded or stopping server `Unavailable`.
fn classify(error: sqlx::Error) -> StoreError {
    match &error {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict,
        sqlx::Error::Database(db) if db.code().as_deref() == Some("53100") => StoreError::Full(db.message().to_owned()),
        // SQLSTATE classes of the server, not the request: connection exceptions (08), transaction
        // rollbacks such as deadlocks (40: worth trying again), insufficient resources such as a
        // full disk (53), shutdowns and statement timeouts (57), system I/O errors (58).
        sqlx::Error::Database(db)
            if db.code().is_some_and(|code| matches!(code.get(..2), Some("08" | "40" | "53" | "57" | "58"))) =>
        {
            StoreError::Unavailable(db.message().to_owned())
        }
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(error.to_string()),
        _ => StoreError::Other(anyhow::Error::new(error)),
    }
}

trait OrStoreError<T> {
    fn store(self) -> StoreResult<T>;
}

impl<T> OrStoreError<T> for Result<T, sqlx::Error> {
    fn store(self) -> StoreResult<T> {
        self.map_err(classify)
    }
}

#[async_trait]
impl TenantStore for PostgresStore {
    async fn create_company(&self, row: &CompanyRow) -> StoreResult<()> {
        sqlx::query("INSERT INTO companies (slug, name, email, created_at) VALUES ($1, $2, $3, $4)")
            .bind(&row.slug)
            .bind(&row.name)
            .bind(&row.email)
            .bind(row.created_at)
            .execute(&self.pool)
            .await
            .store()?;
        Ok(())
    }

    async fn company(&self, slug: &str) -> StoreResult<Option<CompanyRow>> {
        sqlx::query_as("SELECT slug, name, email, created_at FROM companies WHERE slug = $1")
            .bind(slug)
            .fetch_optional(&self.pool)
            .await
            .store()
    }

    async fn companies(&self) -> StoreResult<Vec<CompanyRow>> {
        sqlx::query_as("SELECT slug, name, email, created_at FROM companies ORDER BY slug")
            .fetch_all(&self.pool)
            .await
            .store()
    }

    async fn create_admin(&self, row: &AdminRow, now: i64) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO admins (id, username, password_hash, company, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&row.id)
        .bind(&row.username)
        .bind(&row.password_hash)
        .bind(&row.company)
        .bind(now)
        .execute(&self.pool)
        .await
        .store()?;
        Ok(())
    }

    async fn admin_by_username(&self, username: &str) -> StoreResult<Option<AdminRow>> {
        sqlx::query_as("SELECT id, username, password_hash, company FROM admins WHERE username = $1")
            .bind(username)
            .fetch_optional(&self.pool)
            .await
            .store()
    }

    async fn set_admin_password(&self, username: &str, password_hash: &str) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await.store()?;
        let done = sqlx::query("UPDATE admins SET password_hash = $1 WHERE username = $2")
            .bind(password_hash)
            .bind(username)
            .execute(&mut *tx)
            .await
            .store()?;
        // A new password ends every session opened with the old one.
        sqlx::query("DELETE FROM admin_tokens WHERE admin_id IN (SELECT id FROM admins WHERE username = $1)")
            .bind(username)
            .execute(&mut *tx)
            .await
            .store()?;
        tx.commit().await.store()?;
        Ok(done.rows_affected() == 1)
    }

    async fn admin_count(&self) -> StoreResult<i64> {
        sqlx::query_scalar("SELECT COUNT(*) FROM admins").fetch_one(&self.pool).await.store()
    }

    async fn create_admin_token(&self, token_hash: &str, admin_id: &str, now: i64, expires_at: i64) -> StoreResult<()> {
        sqlx::query("INSERT INTO admin_tokens (token_hash, admin_id, created_at, expires_at) VALUES ($1, $2, $3, $4)")
            .bind(token_hash)
            .bind(admin_id)
            .bind(now)
            .bind(expires_at)
            .execute(&self.pool)
            .await
            .store()?;
        Ok(())
    }

    async fn admin_by_token(&self, token_hash: &str, now: i64) -> StoreResult<Option<AdminRow>> {
        sqlx::query_as(
            "SELECT a.id, a.username, a.password_hash, a.company FROM admin_tokens t JOIN admins a ON a.id = t.admin_id
             WHERE t.token_hash = $1 AND t.expires_at > $2",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .store()
    }

    async fn create_dkim_key(&self, row: &DkimKeyRow) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO dkim_keys (company, selector, domain, algorithm, public_key, sealed_private_key, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&row.company)
        .bind(&row.selector)
        .bind(&row.domain)
        .bind(&row.algorithm)
        .bind(&row.public_key)
        .bind(&row.sealed_private_key)
        .bind(row.created_at)
        .execute(&self.pool)
        .await
        .store()?;
        Ok(())
    }

    async fn dkim_keys(&self, company: &str) -> StoreResult<Vec<DkimKeyRow>> {
        sqlx::query_as(
            "SELECT company, selector, domain, algorithm, public_key, sealed_private_key, created_at
             FROM dkim_keys WHERE company = $1 ORDER BY created_at DESC, selector",
        )
        .bind(company)
        .fetch_all(&self.pool)
        .await
        .store()
    }

    async fn remove_dkim_key(&self, company: &str, selector: &str) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM dkim_keys WHERE company = $1 AND selector = $2")
            .bind(company)
            .bind(selector)
            .execute(&self.pool)
            .await
            .store()?;
        Ok(done.rows_affected() == 1)
    }

    async fn revoke_admin_token(&self, token_hash: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM admin_tokens WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&self.pool)
            .await
            .store()?;
        Ok(())
    }

    async fn company_admins(&self, company: &str) -> StoreResult<Vec<AdminRow>> {
        sqlx::query_as("SELECT id, username, password_hash, company FROM admins WHERE company = $1 ORDER BY username")
            .bind(company)
            .fetch_all(&self.pool)
            .await
            .store()
    }

    async fn create_api_key(&self, row: &ApiKeyRow, key_hash: &str) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO api_keys (id, company, key_hash, prefix, name, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&row.id)
        .bind(&row.company)
        .bind(key_hash)
        .bind(&row.prefix)
        .bind(&row.name)
        .bind(row.created_at)
        .execute(&self.pool)
        .await
        .store()?;
        Ok(())
    }

    async fn api_key_company(&self, key_hash: &str) -> StoreResult<Option<String>> {
        sqlx::query_scalar("SELECT company FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL")
            .bind(key_hash)
            .fetch_optional(&self.pool)
            .await
            .store()
    }

    async fn api_keys(&self, company: &str) -> StoreResult<Vec<ApiKeyRow>> {
        sqlx::query_as(
            "SELECT id, company, prefix, name, created_at, revoked_at FROM api_keys WHERE company = $1 ORDER BY created_at",
        )
        .bind(company)
        .fetch_all(&self.pool)
        .await
        .store()
    }

    async fn revoke_api_key(&self, company: &str, id: &str, now: i64) -> StoreResult<bool> {
        let done =
            sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE company = $2 AND id = $3 AND revoked_at IS NULL")
                .bind(now)
                .bind(company)
                .bind(id)
                .execute(&self.pool)
                .await
                .store()?;
        Ok(done.rows_affected() == 1)
    }
}

async fn insert_audit(conn: &mut PgConnection, audit: &AuditRow) -> StoreResult<()> {
    sqlx::query("INSERT INTO audit_log (at, actor, action, company, target, fields) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(audit.at)
        .bind(&audit.actor)
        .bind(&audit.action)
        .bind(&audit.company)
        .bind(&audit.target)
        .bind(serde_json::to_string(&audit.fields).context("audit fields")?)
        .execute(conn)
        .await
        .store()?;
    Ok(())
}

async fn upsert_level(conn: &mut PgConnection, scope: &Scope, row: &LevelRow, at: i64, by: &str) -> StoreResult<()> {
    let (company, user) = level_key(scope);
    sqlx::query(
        "INSERT INTO settings_levels (company, user_ref, document, sealed_secrets, updated_at, updated_by)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (company, user_ref) DO UPDATE SET document = excluded.document,
           sealed_secrets = excluded.sealed_secrets, updated_at = excluded.updated_at, updated_by = excluded.updated_by",
    )
    .bind(company)
    .bind(user)
    .bind(&row.document)
    .bind(serde_json::to_string(&row.sealed_secrets).map_err(anyhow::Error::from)?)
    .bind(at)
    .bind(by)
    .execute(conn)
    .await
    .store()?;
    Ok(())
}

#[async_trait]
impl SettingsStore for PostgresStore {
    async fn level(&self, scope: &Scope) -> StoreResult<Option<LevelRow>> {
        let (company, user) = level_key(scope);
        let row =
            sqlx::query("SELECT document, sealed_secrets FROM settings_levels WHERE company = $1 AND user_ref = $2")
                .bind(company)
                .bind(user)
                .fetch_optional(&self.pool)
                .await
                .store()?;
        let Some(row) = row else { return Ok(None) };
        let sealed: String = row.get("sealed_secrets");
        let sealed_secrets = serde_json::from_str(&sealed)
            .map_err(|e| anyhow::anyhow!("the sealed secrets of {} are not a JSON object: {e}", scope.key()))?;
        Ok(Some(LevelRow { document: row.get("document"), sealed_secrets }))
    }

    async fn save_level(&self, scope: &Scope, row: &LevelRow, audit: &AuditRow) -> StoreResult<()> {
        let mut tx = self.pool.begin().await.store()?;
        upsert_level(&mut tx, scope, row, audit.at, &audit.actor).await?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.store()
    }

    async fn level_keys(&self) -> StoreResult<Vec<(String, String)>> {
        sqlx::query_as("SELECT company, user_ref FROM settings_levels ORDER BY company, user_ref")
            .fetch_all(&self.pool)
            .await
            .store()
    }

    async fn apply_config(&self, write: &ConfigWrite) -> StoreResult<()> {
        let mut tx = self.pool.begin().await.store()?;
        for company in &write.companies {
            sqlx::query(
                "INSERT INTO companies (slug, name, email, created_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (slug) DO UPDATE SET name = excluded.name, email = excluded.email",
            )
            .bind(&company.slug)
            .bind(&company.name)
            .bind(&company.email)
            .bind(company.created_at)
            .execute(&mut *tx)
            .await
            .store()?;
        }
        for (scope, row) in &write.levels {
            upsert_level(&mut tx, scope, row, write.at, &write.actor).await?;
        }
        for audit in &write.audit {
            insert_audit(&mut tx, audit).await?;
        }
        if let Some(sha256) = &write.file_sha256 {
            sqlx::query(
                "INSERT INTO config_file (id, sha256, applied_at) VALUES (1, $1, $2)
                 ON CONFLICT (id) DO UPDATE SET sha256 = excluded.sha256, applied_at = excluded.applied_at",
            )
            .bind(sha256)
            .bind(write.at)
            .execute(&mut *tx)
            .await
            .store()?;
        }
        tx.commit().await.store()
    }

    async fn applied_config_sha256(&self) -> StoreResult<Option<String>> {
        sqlx::query_scalar("SELECT sha256 FROM config_file WHERE id = 1").fetch_optional(&self.pool).await.store()
    }

    async fn record_audit(&self, audit: &AuditRow) -> StoreResult<()> {
        let mut conn = self.pool.acquire().await.store()?;
        insert_audit(&mut conn, audit).await
    }

    async fn has_sealed_secrets(&self) -> StoreResult<bool> {
        sqlx::query_scalar(ANYTHING_SEALED).fetch_one(&self.pool).await.store()
    }

    async fn reseal_all(&self, reseal: &Reseal<'_>, audit: &AuditRow) -> StoreResult<usize> {
        let mut tx = self.pool.begin().await.store()?;
        // Instances still running must not write a secret between the reading and the writing back.
        sqlx::query("LOCK TABLE settings_levels, dkim_keys, webhooks IN EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await
            .store()?;
        let mut tables = Vec::new();
        for table in SealedTable::ALL {
            tables.push((table, sqlx::query_as(table.select()).fetch_all(&mut *tx).await.store()?));
        }
        let (writes, count) = reseal_rows(tables, reseal)?;
        for (table, (value, first, second)) in writes {
            sqlx::query(table.update()).bind(value).bind(first).bind(second).execute(&mut *tx).await.store()?;
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.store()?;
        Ok(count)
    }

    async fn audit_log(&self, company: Option<&CompanySlug>, limit: i64) -> StoreResult<Vec<AuditRow>> {
        let mut query =
            QueryBuilder::<Postgres>::new("SELECT at, actor, action, company, target, fields FROM audit_log");
        if let Some(company) = company {
            query.push(" WHERE company = ").push_bind(company.as_str());
        }
        query.push(" ORDER BY id DESC LIMIT ").push_bind(limit);
        let rows = query.build().fetch_all(&self.pool).await.store()?;
        rows.into_iter()
            .map(|r| {
                let fields: String = r.get("fields");
                Ok(AuditRow {
                    at: r.get("at"),
                    actor: r.get("actor"),
                    action: r.get("action"),
                    company: r.get("company"),
                    target: r.get("target"),
                    fields: serde_json::from_str(&fields).context("audit fields")?,
                })
            })
            .collect()
    }
}

/// The companies with claimable messages, found by a loose scan of the claimable index:
/// one seek per company, whatever the backlog (PostgreSQL has no skip scan of its own).
const CLAIMABLE_COMPANIES: &str = "WITH RECURSIVE companies(company) AS (
       SELECT MIN(company) FROM messages WHERE status IN ('scheduled', 'queued', 'deferred') AND lease_owner IS NULL
       UNION ALL
       SELECT (SELECT MIN(m.company) FROM messages m
               WHERE m.status IN ('scheduled', 'queued', 'deferred') AND m.lease_owner IS NULL AND m.company > c.company)
       FROM companies c WHERE c.company IS NOT NULL),
     first_due AS (
       SELECT c.company, (SELECT MIN(m.due_at) FROM messages m
                          WHERE m.company = c.company AND m.status IN ('scheduled', 'queued', 'deferred')
                            AND m.lease_owner IS NULL) AS due_at
       FROM companies c WHERE c.company IS NOT NULL)";

#[async_trait]
impl MessageStore for PostgresStore {
    async fn insert_messages(&self, records: &[NewMessageRecord]) -> StoreResult<Vec<Inserted>> {
        // Idempotency within these records: the first of each (company, key) is stored, the others repeat it.
        let mut firsts: HashSet<(&str, &str)> = HashSet::new();
        let mut candidates: Vec<&NewMessageRecord> = records
            .iter()
            .filter(|r| r.row.idempotency_key.as_deref().is_none_or(|key| firsts.insert((r.row.company.as_str(), key))))
            .collect();
        // Keys in one order in every transaction: two instances inserting the same keys wait
        // for each other (ON CONFLICT waits for the other to commit) without deadlocking.
        candidates
            .sort_by(|a, b| (&a.row.company, &a.row.idempotency_key).cmp(&(&b.row.company, &b.row.idempotency_key)));

        let column = |f: fn(&MessageRow) -> &str| candidates.iter().map(|r| f(&r.row)).collect::<Vec<&str>>();
        let optional =
            |f: fn(&MessageRow) -> Option<&str>| candidates.iter().map(|r| f(&r.row)).collect::<Vec<Option<&str>>>();
        let number = |f: fn(&MessageRow) -> i64| candidates.iter().map(|r| f(&r.row)).collect::<Vec<i64>>();
        let recipients: Vec<(&str, &RecipientRow)> =
            candidates.iter().flat_map(|r| r.recipients.iter().map(|rcpt| (r.row.id.as_str(), rcpt))).collect();

        let mut tx = self.pool.begin().await.store()?;
        // Messages, bodies and recipients in one statement. A message whose key another
        // transaction stored meanwhile is skipped, with its body and recipients.
        let stored: Vec<String> = sqlx::query_scalar(AssertSqlSafe(format!(
            "WITH input AS (
               SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                                    $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::bigint[],
                                    $14::bigint[], $15::bigint[], $16::bigint[], $17::bigint[], $18::text[], $19::bigint[])
                 WITH ORDINALITY AS t({MESSAGE_COLUMNS}, n)),
             stored AS (
               INSERT INTO messages ({MESSAGE_COLUMNS}) SELECT {MESSAGE_COLUMNS} FROM input ORDER BY n
               ON CONFLICT (company, idempotency_key) DO NOTHING
               RETURNING id),
             bodies AS (
               INSERT INTO message_bodies (message_id, raw)
               SELECT b.id, b.raw FROM UNNEST($20::text[], $21::bytea[]) AS b(id, raw) JOIN stored USING (id)),
             recipients_stored AS (
               INSERT INTO recipients (message_id, position, kind, address, display, state, code, reply)
               SELECT r.* FROM UNNEST($22::text[], $23::bigint[], $24::text[], $25::text[], $26::text[], $27::text[],
                                      $28::bigint[], $29::text[])
                                 AS r(message_id, position, kind, address, display, state, code, reply)
               JOIN stored ON stored.id = r.message_id)
             SELECT id FROM stored"
        )))
        .bind(column(|m| &m.id))
        .bind(column(|m| &m.company))
        .bind(column(|m| &m.kind))
        .bind(optional(|m| m.actor_id.as_deref()))
        .bind(column(|m| &m.status))
        .bind(column(|m| &m.from_header))
        .bind(optional(|m| m.sender_header.as_deref()))
        .bind(optional(|m| m.reply_to_header.as_deref()))
        .bind(column(|m| &m.envelope_from))
        .bind(column(|m| &m.subject))
        .bind(optional(|m| m.idempotency_key.as_deref()))
        .bind(column(|m| &m.tags))
        .bind(number(|m| m.size_bytes))
        .bind(number(|m| m.created_at))
        .bind(candidates.iter().map(|r| r.row.send_at).collect::<Vec<Option<i64>>>())
        .bind(number(|m| m.due_at))
        .bind(number(|m| m.attempt_count))
        .bind(optional(|m| m.last_reply.as_deref()))
        .bind(number(|m| m.updated_at))
        .bind(column(|m| &m.id))
        .bind(candidates.iter().map(|r| r.raw.as_slice()).collect::<Vec<&[u8]>>())
        .bind(recipients.iter().map(|(id, _)| *id).collect::<Vec<&str>>())
        .bind(recipients.iter().map(|(_, r)| r.position).collect::<Vec<i64>>())
        .bind(recipients.iter().map(|(_, r)| r.kind.as_str()).collect::<Vec<&str>>())
        .bind(recipients.iter().map(|(_, r)| r.address.as_str()).collect::<Vec<&str>>())
        .bind(recipients.iter().map(|(_, r)| r.display.as_str()).collect::<Vec<&str>>())
        .bind(recipients.iter().map(|(_, r)| r.state.as_str()).collect::<Vec<&str>>())
        .bind(recipients.iter().map(|(_, r)| r.code).collect::<Vec<Option<i64>>>())
        .bind(recipients.iter().map(|(_, r)| r.reply.as_deref()).collect::<Vec<Option<&str>>>())
        .fetch_all(&mut *tx)
        .await
        .store()?;
        let stored: HashSet<String> = stored.into_iter().collect();

        // The message each key stands for: a stored one's own id, or the one stored before.
        let mut first_ids: HashMap<(String, String), String> = HashMap::new();
        let mut taken: Vec<(&str, &str)> = Vec::new();
        for r in &candidates {
            let Some(key) = &r.row.idempotency_key else { continue };
            if stored.contains(&r.row.id) {
                first_ids.insert((r.row.company.clone(), key.clone()), r.row.id.clone());
            } else {
                taken.push((&r.row.company, key));
            }
        }
        if !taken.is_empty() {
            let found: Vec<(String, String, String)> = sqlx::query_as(
                "SELECT m.company, m.idempotency_key, m.id
                 FROM UNNEST($1::text[], $2::text[]) AS k(company, key)
                 JOIN messages m ON m.company = k.company AND m.idempotency_key = k.key",
            )
            .bind(taken.iter().map(|(company, _)| *company).collect::<Vec<&str>>())
            .bind(taken.iter().map(|(_, key)| *key).collect::<Vec<&str>>())
            .fetch_all(&mut *tx)
            .await
            .store()?;
            first_ids.extend(found.into_iter().map(|(company, key, id)| ((company, key), id)));
        }
        tx.commit().await.store()?;
        if !stored.is_empty() {
            self.wake_others().await;
        }

        records
            .iter()
            .map(|r| match &r.row.idempotency_key {
                _ if stored.contains(&r.row.id) => Ok(Inserted::New),
                Some(key) => first_ids
                    .get(&(r.row.company.clone(), key.clone()))
                    .map(|id| Inserted::Duplicate(id.clone()))
                    .ok_or_else(|| anyhow::anyhow!("the message holding idempotency key {key:?} vanished").into()),
                None => Err(anyhow::anyhow!("message {} was not stored", r.row.id).into()),
            })
            .collect()
    }

    async fn message(&self, company: &str, id: &str) -> StoreResult<Option<MessageRow>> {
        sqlx::query_as(AssertSqlSafe(format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE company = $1 AND id = $2")))
            .bind(company)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .store()
    }

    async fn recipients(&self, id: &str) -> StoreResult<Vec<RecipientRow>> {
        sqlx::query_as(
            "SELECT position, kind, address, display, state, code, reply FROM recipients WHERE message_id = $1 ORDER BY position",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .store()
    }

    async fn attempts(&self, id: &str) -> StoreResult<Vec<AttemptRow>> {
        sqlx::query_as(
            "SELECT at, server, code, reply, ms, outcome, refusals FROM attempts WHERE message_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .store()
    }

    async fn raw(&self, id: &str) -> StoreResult<Option<Vec<u8>>> {
        sqlx::query_scalar("SELECT raw FROM message_bodies WHERE message_id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .store()
    }

    async fn list_messages(&self, company: &str, filter: &MessageFilter) -> StoreResult<Vec<MessageRow>> {
        let mut query =
            QueryBuilder::<Postgres>::new(format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE company = "));
        query.push_bind(company);
        if let Some(status) = &filter.status {
            query.push(" AND status = ").push_bind(status);
        }
        if let Some(recipient) = &filter.recipient {
            query.push(" AND id IN (SELECT message_id FROM recipients WHERE address = ").push_bind(recipient).push(")");
        }
        if let Some(after) = filter.after {
            query.push(" AND created_at >= ").push_bind(after);
        }
        if let Some(before) = filter.before {
            query.push(" AND created_at < ").push_bind(before);
        }
        query.push(" ORDER BY created_at DESC, id DESC LIMIT ").push_bind(filter.limit);
        query.build_query_as().fetch_all(&self.pool).await.store()
    }

    async fn cancel(&self, company: &str, id: &str, now: i64) -> StoreResult<StatusChange> {
        let mut tx = self.pool.begin().await.store()?;
        // Locked, so that no session starts sending it between this read and the update.
        let status: Option<String> =
            sqlx::query_scalar("SELECT status FROM messages WHERE company = $1 AND id = $2 FOR UPDATE")
                .bind(company)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .store()?;
        let outcome = match status {
            None => StatusChange::NotFound,
            Some(s) if !MessageStatus::parse(&s).is_some_and(MessageStatus::can_cancel) => StatusChange::Refused(s),
            Some(_) => {
                sqlx::query("UPDATE messages SET status = 'cancelled', lease_owner = NULL, lease_expires_at = NULL, updated_at = $1 WHERE id = $2")
                    .bind(now)
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .store()?;
                // The event, with the change it tells of.
                sqlx::query(
                    "INSERT INTO webhook_deliveries (event_id, webhook_id, company, message_id, event_type, payload,
                                                     status, attempts, next_at, created_at)
                     SELECT $1, w.id, m.company, m.id, 'message.cancelled', json_build_object(
                              'id', $1, 'type', 'message.cancelled', 'created_at', $2, 'company', m.company,
                              'message', json_build_object('id', m.id, 'status', 'cancelled', 'subject', m.subject,
                                                           'attempt', NULL))::text,
                            'pending', 0, $3, $3
                     FROM messages AS m JOIN webhooks AS w ON w.company = m.company
                       AND w.events::jsonb @> to_jsonb('message.cancelled'::text)
                     WHERE m.id = $4",
                )
                .bind(uuid::Uuid::now_v7().to_string())
                .bind(crate::state::rfc3339(now))
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await
                .store()?;
                StatusChange::Done
            }
        };
        tx.commit().await.store()?;
        Ok(outcome)
    }

    async fn release_expired_leases(&self, now: i64, ours: &[String]) -> StoreResult<u64> {
        let mut tx = self.pool.begin().await.store()?;
        // Every instance runs this; rows another is releasing (or their owner is finishing) are skipped.
        let done = sqlx::query(
            "WITH expired AS (
               SELECT id FROM messages WHERE lease_owner IS NOT NULL AND lease_expires_at < $1
                 AND lease_owner <> ALL($2) FOR UPDATE SKIP LOCKED)
             UPDATE messages AS m SET status = CASE m.status WHEN 'sending' THEN 'queued' ELSE m.status END,
               lease_owner = NULL, lease_expires_at = NULL, updated_at = $1
             FROM expired WHERE m.id = expired.id",
        )
        .bind(now)
        .bind(ours)
        .execute(&mut *tx)
        .await
        .store()?;
        tx.commit().await.store()?;
        if done.rows_affected() > 0 {
            self.wake_others().await;
        }
        Ok(done.rows_affected())
    }

    async fn due_companies(&self, now: i64) -> StoreResult<Vec<String>> {
        sqlx::query_scalar(AssertSqlSafe(format!(
            "{CLAIMABLE_COMPANIES} SELECT company FROM first_due WHERE due_at <= $1 ORDER BY due_at"
        )))
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .store()
    }

    async fn next_due_at(&self) -> StoreResult<Option<i64>> {
        sqlx::query_scalar(AssertSqlSafe(format!("{CLAIMABLE_COMPANIES} SELECT MIN(due_at) FROM first_due")))
            .fetch_one(&self.pool)
            .await
            .store()
    }

    async fn claim(
        &self,
        company: &str,
        claim: &str,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> StoreResult<Vec<ClaimedMessage>> {
        // SKIP LOCKED: instances claiming at once each take other rows, without waiting for one another.
        sqlx::query_as(AssertSqlSafe(format!(
            "WITH due AS (
               SELECT id FROM messages
               WHERE company = $4 AND status IN {WAITING} AND due_at <= $3 AND lease_owner IS NULL
               ORDER BY due_at LIMIT $5
               FOR UPDATE SKIP LOCKED),
             claimed AS (
               UPDATE messages AS m SET lease_owner = $1, lease_expires_at = $2, updated_at = $3
               FROM due WHERE m.id = due.id
               RETURNING m.id, m.company, m.kind, m.actor_id, m.envelope_from,
                         COALESCE(m.retried_at, m.send_at, m.created_at) AS due_since, m.attempt_count, m.size_bytes, m.due_at)
             SELECT id, company, kind, actor_id, envelope_from, due_since, attempt_count, size_bytes
             FROM claimed ORDER BY due_at"
        )))
        .bind(claim)
        .bind(lease_until)
        .bind(now)
        .bind(company)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .store()
    }

    async fn retry(&self, company: &str, id: &str, now: i64) -> StoreResult<StatusChange> {
        let mut tx = self.pool.begin().await.store()?;
        let status: Option<String> =
            sqlx::query_scalar("SELECT status FROM messages WHERE company = $1 AND id = $2 FOR UPDATE")
                .bind(company)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .store()?;
        let outcome = match status {
            None => StatusChange::NotFound,
            Some(s) if s != MessageStatus::Failed.as_str() => StatusChange::Refused(s),
            Some(_) => {
                sqlx::query("UPDATE recipients SET state = 'pending', code = NULL, reply = NULL WHERE message_id = $1 AND state = 'failed'")
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .store()?;
                sqlx::query("UPDATE messages SET status = 'queued', due_at = $1, retried_at = $1, attempt_count = 0, updated_at = $1 WHERE id = $2")
                    .bind(now)
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .store()?;
                StatusChange::Done
            }
        };
        tx.commit().await.store()?;
        Ok(outcome)
    }

    async fn queue_stats(&self, now: i64) -> StoreResult<QueueStats> {
        let by_status = sqlx::query_as(
            "SELECT status, COUNT(*) FROM messages WHERE status IN ('scheduled', 'queued', 'deferred', 'sending') GROUP BY status",
        )
        .fetch_all(&self.pool)
        .await
        .store()?;
        // Owed since it was submitted, or since its send_at: retries do not reset the clock.
        let oldest_due_at = sqlx::query_scalar(
            "SELECT MIN(COALESCE(send_at, created_at)) FROM messages WHERE status IN ('queued', 'deferred', 'sending') AND created_at <= $1",
        )
        .bind(now)
            .fetch_one(&self.pool)
            .await
            .store()?;
        Ok(QueueStats { by_status, oldest_due_at })
    }

    async fn take_rate(&self, lane: &str, per_minute: u32, wanted: u32, now: i64) -> StoreResult<(u32, f64)> {
        let mut tx = self.pool.begin().await.store()?;
        // The row is made once, then locked: instances drawing at the same moment take turns.
        let full = rate::full(per_minute, now);
        sqlx::query("INSERT INTO lane_rates (lane, tokens, at) VALUES ($1, $2, $3) ON CONFLICT (lane) DO NOTHING")
            .bind(lane)
            .bind(full.tokens)
            .bind(full.at)
            .execute(&mut *tx)
            .await
            .store()?;
        let (tokens, at): (f64, i64) = sqlx::query_as("SELECT tokens, at FROM lane_rates WHERE lane = $1 FOR UPDATE")
            .bind(lane)
            .fetch_one(&mut *tx)
            .await
            .store()?;
        let (got, after) = rate::take(rate::Bucket { tokens, at }, per_minute, wanted, now);
        sqlx::query("UPDATE lane_rates SET tokens = $2, at = $3 WHERE lane = $1")
            .bind(lane)
            .bind(after.tokens)
            .bind(after.at)
            .execute(&mut *tx)
            .await
            .store()?;
        tx.commit().await.store()?;
        Ok((got, after.tokens))
    }

    async fn extend_leases(&self, claims: &[String], lease_until: i64) -> StoreResult<u64> {
        // A row locked right now is being moved on by its session (or taken over after expiry):
        // skipped rather than waited for, so that a renewal never deadlocks with those writes.
        let done = sqlx::query(
            "WITH held AS (SELECT id FROM messages WHERE lease_owner = ANY($2) FOR UPDATE SKIP LOCKED)
             UPDATE messages AS m SET lease_expires_at = $1 FROM held WHERE m.id = held.id",
        )
        .bind(lease_until)
        .bind(claims)
        .execute(&self.pool)
        .await
        .store()?;
        Ok(done.rows_affected())
    }

    async fn start_sending(&self, items: &[(String, String)], now: i64) -> StoreResult<Vec<(String, String)>> {
        sqlx::query_as(AssertSqlSafe(format!(
            "UPDATE messages AS m SET status = 'sending', updated_at = $1
             FROM UNNEST($2::text[], $3::text[]) AS i(id, lease)
             WHERE m.id = i.id AND m.lease_owner = i.lease AND m.status IN {WAITING}
             RETURNING m.id, m.lease_owner"
        )))
        .bind(now)
        .bind(items.iter().map(|(id, _)| id.as_str()).collect::<Vec<&str>>())
        .bind(items.iter().map(|(_, claim)| claim.as_str()).collect::<Vec<&str>>())
        .fetch_all(&self.pool)
        .await
        .store()
    }

    async fn load_parcels(&self, ids: &[String]) -> StoreResult<Vec<Parcel>> {
        let bodies: Vec<(String, Vec<u8>)> =
            sqlx::query_as("SELECT message_id, raw FROM message_bodies WHERE message_id = ANY($1)")
                .bind(ids)
                .fetch_all(&self.pool)
                .await
                .store()?;
        let mut recipients = self.load_recipients(ids).await?;
        Ok(bodies
            .into_iter()
            .map(|(id, raw)| Parcel { recipients: recipients.remove(&id).unwrap_or_default(), id, raw })
            .collect())
    }

    async fn load_recipients(&self, ids: &[String]) -> StoreResult<HashMap<String, Vec<RecipientRow>>> {
        let rows = sqlx::query(
            "SELECT message_id, position, kind, address, display, state, code, reply FROM recipients
             WHERE message_id = ANY($1) ORDER BY message_id, position",
        )
        .bind(ids)
        .fetch_all(&self.pool)
        .await
        .store()?;
        let mut recipients: HashMap<String, Vec<RecipientRow>> = HashMap::new();
        for row in rows {
            recipients.entry(row.get("message_id")).or_default().push(RecipientRow::from_row(&row).store()?);
        }
        Ok(recipients)
    }

    async fn finish_attempts(&self, results: &[AttemptResult]) -> StoreResult<Vec<bool>> {
        // One statement whatever the number of attempts. The messages move on first, each only
        // if its lease is still its claim's (checked again on the row's latest version if another
        // transaction changed it meanwhile); the attempt rows and recipient states are then
        // written for those alone, matched by their place `n` in `results`.
        let recipients: Vec<(i64, &str, &RecipientUpdate)> = results
            .iter()
            .enumerate()
            .flat_map(|(i, r)| r.recipients.iter().map(move |u| (i as i64 + 1, r.message_id.as_str(), u)))
            .collect();
        let text = |f: fn(&AttemptResult) -> &str| results.iter().map(f).collect::<Vec<&str>>();
        let number = |f: fn(&AttemptResult) -> i64| results.iter().map(f).collect::<Vec<i64>>();
        let events: Vec<AttemptEvent> = results.iter().map(AttemptEvent::of).collect();
        let event = |f: fn(&AttemptEvent) -> &str| events.iter().map(f).collect::<Vec<&str>>();
        let mut tx = self.pool.begin().await.store()?;
        let recorded: Vec<i64> = sqlx::query_scalar(
            "WITH r AS (
               SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[],
                                    $7::bigint[], $8::bigint[], $9::text[], $10::bigint[], $11::bigint[], $12::text[],
                                    $13::text[], $20::text[], $21::text[], $22::text[], $23::text[])
                 WITH ORDINALITY AS r(id, lease, status, due_at, reply, envelope_from, updated_at,
                                      at, server, code, ms, outcome, refusals, event, event_type, event_at,
                                      attempt_at, n)),
             moved AS (
               UPDATE messages AS m SET status = r.status, due_at = COALESCE(r.due_at, m.due_at),
                 attempt_count = m.attempt_count + 1, lease_owner = NULL, lease_expires_at = NULL,
                 last_reply = r.reply, envelope_from = r.envelope_from, updated_at = r.updated_at
               FROM r WHERE m.id = r.id AND m.lease_owner = r.lease
               RETURNING r.n),
             attempts_written AS (
               INSERT INTO attempts (message_id, at, server, code, reply, ms, outcome, refusals)
               SELECT r.id, r.at, r.server, r.code, r.reply, r.ms, r.outcome, r.refusals
               FROM r JOIN moved USING (n) ORDER BY n),
             recipients_written AS (
               UPDATE recipients AS t SET state = u.state, code = u.code, reply = u.reply
               FROM UNNEST($14::bigint[], $15::text[], $16::bigint[], $17::text[], $18::bigint[], $19::text[])
                      AS u(n, id, position, state, code, reply)
               JOIN moved USING (n)
               WHERE t.message_id = u.id AND t.position = u.position),
             events_written AS (
               INSERT INTO webhook_deliveries (event_id, webhook_id, company, message_id, event_type, payload, status,
                                               attempts, next_at, created_at)
               SELECT r.event, w.id, m.company, m.id, r.event_type, json_build_object(
                        'id', r.event, 'type', r.event_type, 'created_at', r.event_at, 'company', m.company,
                        'message', json_build_object('id', m.id, 'status', r.status, 'subject', m.subject,
                          'attempt', json_build_object('at', r.attempt_at, 'code', r.code, 'reply', r.reply,
                                                       'ms', r.ms)))::text,
                      'pending', 0, r.updated_at, r.updated_at
               FROM r JOIN moved USING (n) JOIN messages AS m ON m.id = r.id
               JOIN webhooks AS w ON w.company = m.company AND w.events::jsonb @> to_jsonb(r.event_type)
               ORDER BY n)
             SELECT n FROM moved",
        )
        .bind(text(|r| &r.message_id))
        .bind(text(|r| &r.lease))
        .bind(text(|r| &r.status))
        .bind(results.iter().map(|r| r.due_at).collect::<Vec<Option<i64>>>())
        .bind(text(|r| &r.attempt.reply))
        .bind(text(|r| &r.envelope_from))
        .bind(number(|r| r.attempt.at + r.attempt.ms))
        .bind(number(|r| r.attempt.at))
        .bind(text(|r| &r.attempt.server))
        .bind(results.iter().map(|r| r.attempt.code).collect::<Vec<Option<i64>>>())
        .bind(number(|r| r.attempt.ms))
        .bind(text(|r| &r.attempt.outcome))
        .bind(text(|r| &r.attempt.refusals))
        .bind(recipients.iter().map(|(n, _, _)| *n).collect::<Vec<i64>>())
        .bind(recipients.iter().map(|(_, id, _)| *id).collect::<Vec<&str>>())
        .bind(recipients.iter().map(|(_, _, u)| u.position).collect::<Vec<i64>>())
        .bind(recipients.iter().map(|(_, _, u)| u.state.as_str()).collect::<Vec<&str>>())
        .bind(recipients.iter().map(|(_, _, u)| u.code).collect::<Vec<Option<i64>>>())
        .bind(recipients.iter().map(|(_, _, u)| u.reply.as_deref()).collect::<Vec<Option<&str>>>())
        .bind(event(|e| &e.id))
        .bind(event(|e| &e.kind))
        .bind(event(|e| &e.at))
        .bind(event(|e| &e.attempt_at))
        .fetch_all(&mut *tx)
        .await
        .store()?;
        let recorded: HashSet<i64> = recorded.into_iter().collect();
        let counted: Vec<bool> = (1..=results.len() as i64).map(|n| recorded.contains(&n)).collect();
        // A retry due already (a deferral without delay) is for any instance to take now.
        let now = crate::state::now_ms();
        let due_now = results.iter().zip(&counted).any(|(r, &counted)| {
            counted
                && MessageStatus::parse(&r.status).is_some_and(MessageStatus::is_waiting)
                && r.due_at.is_some_and(|due| due <= now)
        });
        tx.commit().await.store()?;
        if due_now {
            self.wake_others().await;
        }
        Ok(counted)
    }

    async fn release_messages(&self, ids: &[String], claims: &[String], due_at: i64) -> StoreResult<u64> {
        let mut tx = self.pool.begin().await.store()?;
        let done = sqlx::query(
            "UPDATE messages SET status = CASE status WHEN 'sending' THEN 'queued' ELSE status END,
               lease_owner = NULL, lease_expires_at = NULL, due_at = $1, updated_at = $1
             WHERE id = ANY($2) AND lease_owner = ANY($3)",
        )
        .bind(due_at)
        .bind(ids)
        .bind(claims)
        .execute(&mut *tx)
        .await
        .store()?;
        tx.commit().await.store()?;
        if done.rows_affected() > 0 {
            self.wake_others().await;
        }
        Ok(done.rows_affected())
    }

    async fn release_claims(&self, claims: &[String], now: i64) -> StoreResult<u64> {
        let mut tx = self.pool.begin().await.store()?;
        let done = sqlx::query(
            "UPDATE messages SET status = CASE status WHEN 'sending' THEN 'queued' ELSE status END,
               lease_owner = NULL, lease_expires_at = NULL, updated_at = $1
             WHERE lease_owner = ANY($2)",
        )
        .bind(now)
        .bind(claims)
        .execute(&mut *tx)
        .await
        .store()?;
        tx.commit().await.store()?;
        if done.rows_affected() > 0 {
            self.wake_others().await;
        }
        Ok(done.rows_affected())
    }
}

#[async_trait]
impl WebhookStore for PostgresStore {
    async fn create_webhook(&self, row: &WebhookRow, audit: &AuditRow) -> StoreResult<()> {
        let mut tx = self.pool.begin().await.store()?;
        sqlx::query(
            "INSERT INTO webhooks (id, company, url, events, sealed_secret, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&row.id)
        .bind(&row.company)
        .bind(&row.url)
        .bind(&row.events)
        .bind(&row.sealed_secret)
        .bind(row.created_at)
        .execute(&mut *tx)
        .await
        .store()?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.store()
    }

    async fn webhooks(&self, company: &str) -> StoreResult<Vec<WebhookRow>> {
        sqlx::query_as(
            "SELECT id, company, url, events, sealed_secret, created_at FROM webhooks WHERE company = $1
             ORDER BY created_at, id",
        )
        .bind(company)
        .fetch_all(&self.pool)
        .await
        .store()
    }

    async fn delete_webhook(&self, company: &str, id: &str, audit: &AuditRow) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await.store()?;
        let done = sqlx::query("DELETE FROM webhooks WHERE company = $1 AND id = $2")
            .bind(company)
            .bind(id)
            .execute(&mut *tx)
            .await
            .store()?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.store()?;
        Ok(true)
    }

    async fn webhook_deliveries(
        &self,
        company: &str,
        webhook_id: &str,
        limit: i64,
    ) -> StoreResult<Vec<WebhookDeliveryRow>> {
        sqlx::query_as(
            "SELECT event_id, message_id, event_type, status, attempts, next_at, last_code, last_error,
                    last_attempt_at, created_at, delivered_at
             FROM webhook_deliveries WHERE webhook_id = $1 AND company = $2
             ORDER BY created_at DESC, event_id DESC LIMIT $3",
        )
        .bind(webhook_id)
        .bind(company)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .store()
    }

    async fn next_webhook_due(&self) -> StoreResult<Option<i64>> {
        sqlx::query_scalar("SELECT MIN(next_at) FROM webhook_deliveries WHERE status = 'pending'")
            .fetch_one(&self.pool)
            .await
            .store()
    }

    async fn claim_webhook_deliveries(
        &self,
        claim: &str,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> StoreResult<Vec<ClaimedDelivery>> {
        // SKIP LOCKED: dispatchers of several instances claiming at once each take other rows. The
        // lease is the due time pushed to its end: no other claim finds the row due before then.
        sqlx::query_as(
            "WITH due AS (
               SELECT webhook_id, event_id FROM webhook_deliveries WHERE status = 'pending' AND next_at <= $3
               ORDER BY next_at LIMIT $4
               FOR UPDATE SKIP LOCKED),
             claimed AS (
               UPDATE webhook_deliveries AS d SET lease_owner = $1, next_at = $2
               FROM due WHERE d.webhook_id = due.webhook_id AND d.event_id = due.event_id
               RETURNING d.event_id, d.webhook_id, d.company, d.event_type, d.payload, d.attempts, d.created_at)
             SELECT c.event_id, c.webhook_id, c.company, c.event_type, c.payload, c.attempts, c.created_at,
                    w.url, w.sealed_secret
             FROM claimed AS c JOIN webhooks AS w ON w.id = c.webhook_id",
        )
        .bind(claim)
        .bind(lease_until)
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .store()
    }

    async fn finish_webhook_deliveries(&self, results: &[DeliveryResult]) -> StoreResult<Vec<bool>> {
        let text = |f: fn(&DeliveryResult) -> &str| results.iter().map(f).collect::<Vec<&str>>();
        let finished: Vec<(String, String, String)> = sqlx::query_as(
            "WITH r AS (
               SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::text[],
                                    $7::text[], $8::bigint[])
                 AS r(webhook, event, lease, at, code, error, status, next_at)),
             finished AS (
               UPDATE webhook_deliveries AS d SET status = r.status, attempts = d.attempts + 1,
                 next_at = COALESCE(r.next_at, d.next_at), last_code = r.code, last_error = r.error,
                 last_attempt_at = r.at, delivered_at = CASE r.status WHEN 'delivered' THEN r.at END,
                 lease_owner = NULL
               FROM r WHERE d.webhook_id = r.webhook AND d.event_id = r.event AND d.lease_owner = r.lease
               RETURNING d.webhook_id, d.event_id, r.lease),
             held_back AS (
               SELECT r.webhook, MAX(r.next_at) FILTER (WHERE r.status = 'pending') AS next_at
               FROM r JOIN finished AS f ON f.webhook_id = r.webhook AND f.event_id = r.event AND f.lease = r.lease
               GROUP BY r.webhook HAVING NOT bool_or(r.status = 'delivered')),
             others AS (
               SELECT d.webhook_id, d.event_id, h.next_at FROM webhook_deliveries AS d JOIN held_back AS h
                 ON d.webhook_id = h.webhook
               WHERE d.status = 'pending' AND d.lease_owner IS NULL AND d.next_at < h.next_at
               FOR UPDATE OF d SKIP LOCKED),
             pushed AS (
               UPDATE webhook_deliveries AS d SET next_at = o.next_at FROM others AS o
               WHERE d.webhook_id = o.webhook_id AND d.event_id = o.event_id)
             SELECT webhook_id, event_id, lease FROM finished",
        )
        .bind(text(|r| &r.webhook_id))
        .bind(text(|r| &r.event_id))
        .bind(text(|r| &r.lease))
        .bind(results.iter().map(|r| r.at).collect::<Vec<i64>>())
        .bind(results.iter().map(|r| r.code).collect::<Vec<Option<i64>>>())
        .bind(results.iter().map(|r| r.error.as_deref()).collect::<Vec<Option<&str>>>())
        .bind(text(|r| &r.status))
        .bind(results.iter().map(|r| r.next_at).collect::<Vec<Option<i64>>>())
        .fetch_all(&self.pool)
        .await
        .store()?;
        let finished: HashSet<(String, String, String)> = finished.into_iter().collect();
        Ok(results
            .iter()
            .map(|r| finished.contains(&(r.webhook_id.clone(), r.event_id.clone(), r.lease.clone())))
            .collect())
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn migrate(&self) -> StoreResult<()> {
        // On a connection of its own, without the statement timeout: building an index on a
        // large table may take longer, and so may waiting for another instance's migration
        // (the migrator holds an advisory lock while it works).
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(self.options.clone());
        let migrated = MIGRATOR.run(&pool).await;
        pool.close().await;
        migrated.context("applying the database migrations")?;
        Ok(())
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await.store()?;
        Ok(())
    }

    async fn relay_wakeups(&self, wake: Arc<Notify>, stop: CancellationToken) {
        // The listener keeps a connection for as long as it lives: its own pool of one, so that
        // it never takes a connection the requests need.
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(self.options.clone());
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                Err(e) = listen(&pool, &wake) => {
                    tracing::warn!(error = %e, "cannot hear other instances' wake-ups; polling the queue meanwhile");
                }
            }
            // Then a fresh listener, after a pause: a broken one is never used again.
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }
}

/// Rings `wake` on every `NOTIFY carteiro_due`, until the connection fails.
async fn listen(pool: &PgPool, wake: &Notify) -> Result<std::convert::Infallible, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(DUE_CHANNEL).await?;
    // Whatever was made due while no listener was there went unheard: look now.
    wake.notify_one();
    loop {
        // `None`: the connection was lost and made again, and a wake-up may have been missed.
        listener.try_recv().await?;
        wake.notify_one();
    }
}

/// These run only when `CARTEIRO_TEST_DATABASE_URL` names a PostgreSQL server
/// (`postgres://postgres@127.0.0.1:5432/test`): each test makes a database of
/// its own there and drops it at the end, even when it fails.
#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use sqlx::Connection;

    use super::*;

    const SETTINGS: PostgresSettings =
        PostgresSettings { max_connections: 8, statement_timeout: Duration::from_secs(30) };

    /// A fresh database on the test server; dropped with this value.
    struct FreshDatabase {
        server: PgConnectOptions,
        name: String,
    }

    impl FreshDatabase {
        async fn create() -> Option<Self> {
            let Ok(url) = std::env::var("CARTEIRO_TEST_DATABASE_URL") else {
                eprintln!("CARTEIRO_TEST_DATABASE_URL is not set: skipping this PostgreSQL test");
                return None;
            };
            let server = PgConnectOptions::from_str(&url).expect("CARTEIRO_TEST_DATABASE_URL is a postgres:// URL");
            let name = format!("carteiro_unit_{}", uuid::Uuid::now_v7().simple());
            let mut conn = PgConnection::connect_with(&server).await.expect("the test server answers");
            sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut conn).await.unwrap();
            Some(Self { server, name })
        }

        /// Another store on this database, as another instance would open it.
        async fn store(&self) -> PostgresStore {
            let store = PostgresStore::connect_lazy(self.server.clone().database(&self.name), &SETTINGS);
            store.migrate().await.unwrap();
            store
        }
    }

    impl Drop for FreshDatabase {
        fn drop(&mut self) {
            let (server, name) = (self.server.clone(), self.name.clone());
            // On a thread and runtime of its own: the test's runtime may be the one unwinding.
            let dropped = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                runtime.block_on(async {
                    let mut conn = PgConnection::connect_with(&server).await?;
                    sqlx::query(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
                        .execute(&mut conn)
                        .await
                })
            });
            if let Ok(Err(e)) = dropped.join() {
                eprintln!("cannot drop the test database {}: {e}", self.name);
            }
        }
    }

    /// A fresh database and a store on it, with the company `acme`.
    async fn setup() -> Option<(FreshDatabase, PostgresStore)> {
        let db = FreshDatabase::create().await?;
        let store = db.store().await;
        store
            .create_company(&CompanyRow { slug: "acme".into(), name: "ACME".into(), email: None, created_at: 0 })
            .await
            .unwrap();
        Some((db, store))
    }

    fn record(id: &str, key: Option<&str>) -> NewMessageRecord {
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
                subject: "s".to_owned(),
                idempotency_key: key.map(str::to_owned),
                tags: "[]".to_owned(),
                size_bytes: 3,
                created_at: 1,
                send_at: None,
                due_at: 1,
                attempt_count: 0,
                last_reply: None,
                updated_at: 1,
            },
            recipients: (0..2)
                .map(|position| RecipientRow {
                    position,
                    kind: "to".to_owned(),
                    address: format!("r{position}@example.com"),
                    display: format!("r{position}@example.com"),
                    state: "pending".to_owned(),
                    code: None,
                    reply: None,
                })
                .collect(),
            raw: b"raw".to_vec(),
        }
    }

    fn attempt(id: &str, lease: &str, status: &str) -> AttemptResult {
        AttemptResult {
            message_id: id.to_owned(),
            company: "acme".to_owned(),
            lease: lease.to_owned(),
            attempt: AttemptRow {
                at: 10,
                server: "h:25".to_owned(),
                code: Some(250),
                reply: "ok".to_owned(),
                ms: 5,
                outcome: status.to_owned(),
                refusals: "[]".to_owned(),
            },
            recipients: vec![RecipientUpdate {
                position: 1,
                state: "sent".to_owned(),
                code: Some(250),
                reply: Some("ok".to_owned()),
            }],
            status: status.to_owned(),
            due_at: None,
            envelope_from: "a@acme.example".to_owned(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres_idempotency_keys_hold_within_a_group_across_groups_and_across_instances() {
        let Some((db, a)) = setup().await else { return };
        let first =
            a.insert_messages(&[record("m1", Some("k")), record("m2", Some("k")), record("m3", None)]).await.unwrap();
        assert_eq!(first, [Inserted::New, Inserted::Duplicate("m1".into()), Inserted::New]);
        let b = db.store().await;
        assert_eq!(b.insert_messages(&[record("m4", Some("k"))]).await.unwrap(), [Inserted::Duplicate("m1".into())]);
        assert_eq!(a.load_parcels(&["m3".into()]).await.unwrap()[0].recipients.len(), 2);
        assert!(a.message("acme", "m4").await.unwrap().is_none(), "a duplicate stores nothing");

        // Two instances racing with the same 200 keys, in opposite orders: one message per key.
        let batch = |prefix: &str, reversed: bool| {
            let mut records: Vec<_> =
                (0..200).map(|i| record(&format!("{prefix}{i}"), Some(&format!("race{i}")))).collect();
            if reversed {
                records.reverse();
            }
            records
        };
        let (left, right) = (batch("a", false), batch("b", true));
        let (from_a, from_b) = tokio::join!(a.insert_messages(&left), b.insert_messages(&right));
        let (from_a, from_b) = (from_a.unwrap(), from_b.unwrap());
        let mut winners = HashMap::new();
        for (r, outcome) in left.iter().zip(&from_a).chain(right.iter().zip(&from_b)) {
            let key = r.row.idempotency_key.clone().unwrap();
            if *outcome == Inserted::New {
                assert!(winners.insert(key, r.row.id.clone()).is_none(), "two messages stored for one key");
            }
        }
        assert_eq!(winners.len(), 200);
        for (r, outcome) in left.iter().zip(&from_a).chain(right.iter().zip(&from_b)) {
            let winner = &winners[r.row.idempotency_key.as_ref().unwrap()];
            if *outcome != Inserted::New {
                assert_eq!(*outcome, Inserted::Duplicate(winner.clone()));
            }
        }
        let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM messages").fetch_one(&a.pool).await.unwrap();
        assert_eq!(stored, 2 + 200);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres_instances_claiming_concurrently_never_take_the_same_message() {
        let Some((db, first)) = setup().await else { return };
        let second = db.store().await;
        for company in ["beta", "gama", "delta"] {
            first
                .create_company(&CompanyRow { slug: company.into(), name: company.into(), email: None, created_at: 0 })
                .await
                .unwrap();
        }
        let companies = ["acme", "beta", "gama", "delta"];
        let records: Vec<NewMessageRecord> = (0..2000)
            .map(|i| {
                let mut r = record(&format!("m{i:04}"), None);
                r.row.company = companies[i % companies.len()].to_owned();
                r.row.due_at = (i % 7) as i64;
                r
            })
            .collect();
        for chunk in records.chunks(500) {
            first.insert_messages(chunk).await.unwrap();
        }
        let stores = [Arc::new(first), Arc::new(second)];

        // Eight workers, four on each instance, each claiming small batches, starting and
        // finishing them, until nothing is due.
        let mut workers = tokio::task::JoinSet::new();
        for worker in 0..8 {
            let store = stores[worker % 2].clone();
            workers.spawn(async move {
                let mut taken = Vec::new();
                for round in 0.. {
                    let mut any = false;
                    for company in store.due_companies(100).await.unwrap() {
                        let claim = format!("w{worker}:{round}:{company}");
                        let claimed = store.claim(&company, &claim, 100, 60_000, 25).await.unwrap();
                        if claimed.is_empty() {
                            continue;
                        }
                        any = true;
                        let items: Vec<(String, String)> =
                            claimed.iter().map(|m| (m.id.clone(), claim.clone())).collect();
                        assert_eq!(store.start_sending(&items, 100).await.unwrap().len(), items.len());
                        let results: Vec<AttemptResult> =
                            claimed.iter().map(|m| attempt(&m.id, &claim, "sent")).collect();
                        assert!(store.finish_attempts(&results).await.unwrap().into_iter().all(|ours| ours));
                        taken.extend(claimed.into_iter().map(|m| m.id));
                    }
                    if !any {
                        break;
                    }
                }
                taken
            });
        }
        let mut claims: HashMap<String, usize> = HashMap::new();
        while let Some(taken) = workers.join_next().await {
            for id in taken.unwrap() {
                *claims.entry(id).or_default() += 1;
            }
        }
        assert_eq!(claims.len(), 2000, "every message was claimed");
        assert!(claims.values().all(|&n| n == 1), "no message was claimed twice");
        let counts: Vec<(String, i64, i64)> =
            sqlx::query_as("SELECT status, attempt_count, COUNT(*) FROM messages GROUP BY status, attempt_count")
                .fetch_all(&stores[0].pool)
                .await
                .unwrap();
        assert_eq!(counts, [("sent".to_owned(), 1, 2000)]);
        let attempts: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM attempts").fetch_one(&stores[0].pool).await.unwrap();
        assert_eq!(attempts, 2000);
    }

    #[tokio::test]
    async fn postgres_an_expired_lease_is_taken_over_by_another_instance() {
        let Some((db, dead)) = setup().await else { return };
        let alive = db.store().await;
        dead.insert_messages(&[record("m1", None), record("m2", None)]).await.unwrap();
        assert_eq!(dead.claim("acme", "dead:1", 2, 1000, 10).await.unwrap().len(), 2);
        dead.start_sending(&[("m1".into(), "dead:1".into())], 2).await.unwrap();
        assert!(alive.due_companies(500).await.unwrap().is_empty(), "leased messages are not due");
        assert_eq!(alive.release_expired_leases(500, &[]).await.unwrap(), 0, "the leases still hold");

        assert_eq!(alive.release_expired_leases(1001, &[]).await.unwrap(), 2);
        assert_eq!(alive.message("acme", "m1").await.unwrap().unwrap().status, "queued", "sending goes back to queued");
        let taken = alive.claim("acme", "alive:1", 1001, 60_000, 10).await.unwrap();
        assert_eq!(taken.len(), 2);
        // The dead instance wakes up: its lease renewal and its record no longer count.
        assert_eq!(dead.extend_leases(&["dead:1".into()], 90_000).await.unwrap(), 0);
        assert_eq!(dead.finish_attempts(&[attempt("m1", "dead:1", "sent")]).await.unwrap(), [false]);
        assert_eq!(alive.finish_attempts(&[attempt("m1", "alive:1", "sent")]).await.unwrap(), [true]);
        assert_eq!(alive.attempts("m1").await.unwrap().len(), 1);
        assert_eq!(alive.release_claims(&["alive:1".into()], 1002).await.unwrap(), 1, "m2 goes back");
        assert_eq!(alive.due_companies(1002).await.unwrap(), ["acme"]);
        assert_eq!(alive.next_due_at().await.unwrap(), Some(1));
    }

    #[tokio::test]
    async fn postgres_an_attempt_counts_only_under_the_claim_that_still_holds_the_message() {
        let Some((_db, store)) = setup().await else { return };
        store.insert_messages(&[record("m1", None), record("m2", None)]).await.unwrap();
        let claimed = store.claim("acme", "claim-1", 2, 1000, 10).await.unwrap();
        assert_eq!(claimed.len(), 2);
        // The second message's lease expired and another claim took it.
        store.release_messages(&["m2".into()], &["claim-1".into()], 2).await.unwrap();
        assert_eq!(store.claim("acme", "claim-2", 3, 1000, 10).await.unwrap().len(), 1);

        let recorded =
            store.finish_attempts(&[attempt("m1", "claim-1", "sent"), attempt("m2", "claim-1", "sent")]).await.unwrap();
        assert_eq!(recorded, [true, false]);
        assert_eq!(store.attempts("m1").await.unwrap().len(), 1);
        assert!(store.attempts("m2").await.unwrap().is_empty(), "the lost claim writes nothing");
        let m1 = store.message("acme", "m1").await.unwrap().unwrap();
        assert_eq!((m1.status.as_str(), m1.attempt_count), ("sent", 1));
        let states: Vec<String> = store.recipients("m1").await.unwrap().into_iter().map(|r| r.state).collect();
        assert_eq!(states, ["pending", "sent"]);
        assert_eq!(store.recipients("m2").await.unwrap()[1].state, "pending");

        // The same message twice in one group, under its old claim and its current one.
        let recorded = store
            .finish_attempts(&[attempt("m2", "claim-1", "sent"), attempt("m2", "claim-2", "deferred")])
            .await
            .unwrap();
        assert_eq!(recorded, [false, true]);
        assert_eq!(store.message("acme", "m2").await.unwrap().unwrap().status, "deferred");
    }

    #[tokio::test]
    async fn postgres_webhook_events_go_with_the_changes_they_tell_of() {
        let Some((_db, store)) = setup().await else { return };
        crate::store::webhook_checks::events_go_with_the_changes_they_tell_of(&store).await;
    }

    #[tokio::test]
    async fn postgres_cancel_listing_and_settings_behave_as_on_sqlite() {
        let Some((_db, store)) = setup().await else { return };
        let mut later = record("m2", None);
        later.row.created_at = 5;
        later.recipients[0].address = "ana@example.com".into();
        store.insert_messages(&[record("m1", None), later, record("m3", None)]).await.unwrap();

        let claimed = store.claim("acme", "c", 2, 1000, 10).await.unwrap();
        assert_eq!(store.cancel("acme", "m1", 3).await.unwrap(), StatusChange::Done);
        let items: Vec<(String, String)> = claimed.iter().map(|m| (m.id.clone(), "c".to_owned())).collect();
        let mut started = store.start_sending(&items, 4).await.unwrap();
        started.sort();
        assert_eq!(started, [("m2".to_owned(), "c".to_owned()), ("m3".to_owned(), "c".to_owned())]);
        assert_eq!(store.cancel("acme", "m2", 5).await.unwrap(), StatusChange::Refused("sending".into()));
        assert_eq!(store.cancel("beta", "m3", 5).await.unwrap(), StatusChange::NotFound);

        let list = |filter: MessageFilter| {
            let store = &store;
            async move {
                let rows = store.list_messages("acme", &MessageFilter { limit: 10, ..filter }).await.unwrap();
                rows.into_iter().map(|m| m.id).collect::<Vec<_>>()
            }
        };
        assert_eq!(list(MessageFilter::default()).await, ["m2", "m3", "m1"]);
        assert_eq!(list(MessageFilter { status: Some("cancelled".into()), ..Default::default() }).await, ["m1"]);
        assert_eq!(
            list(MessageFilter { recipient: Some("ana@example.com".into()), ..Default::default() }).await,
            ["m2"]
        );
        assert_eq!(list(MessageFilter { after: Some(2), ..Default::default() }).await, ["m2"]);
        assert_eq!(list(MessageFilter { before: Some(2), ..Default::default() }).await, ["m3", "m1"]);
        assert_eq!(store.raw("m2").await.unwrap().as_deref(), Some(&b"raw"[..]));

        // Settings, audit and the configuration file, all in one transaction.
        let acme = CompanySlug::parse("slug", "acme").unwrap();
        let sealed: BTreeMap<String, String> = [("connection.password".into(), "v1:x".into())].into();
        let level = LevelRow { document: "{}".into(), sealed_secrets: sealed };
        let audit = AuditRow {
            at: 7,
            actor: "config import".into(),
            action: "settings.update".into(),
            company: Some("acme".into()),
            target: "company:acme".into(),
            fields: vec!["policy.default_sender_name".into()],
        };
        assert!(!store.has_sealed_secrets().await.unwrap());
        let write = ConfigWrite {
            at: 7,
            actor: "config import".into(),
            companies: vec![CompanyRow { slug: "acme".into(), name: "ACME Ltda".into(), email: None, created_at: 99 }],
            levels: vec![(Scope::Company(acme.clone()), level.clone())],
            audit: vec![audit.clone()],
            file_sha256: Some("abc".into()),
        };
        store.apply_config(&write).await.unwrap();
        let company = store.company("acme").await.unwrap().unwrap();
        assert_eq!((company.name.as_str(), company.created_at), ("ACME Ltda", 0));
        assert_eq!(store.applied_config_sha256().await.unwrap().as_deref(), Some("abc"));
        assert!(store.has_sealed_secrets().await.unwrap());
        store.save_level(&Scope::Global, &level, &audit).await.unwrap();
        assert_eq!(store.level_keys().await.unwrap(), [("".to_owned(), "".to_owned()), ("acme".into(), "".into())]);
        assert_eq!(
            store.level(&Scope::Company(acme.clone())).await.unwrap().unwrap().sealed_secrets["connection.password"],
            "v1:x"
        );
        assert_eq!(store.audit_log(Some(&acme), 10).await.unwrap().len(), 2);

        // Administrators, their sessions and API keys.
        let admin = AdminRow { id: "a1".into(), username: "ana".into(), password_hash: "h".into(), company: None };
        store.create_admin(&admin, 1).await.unwrap();
        assert!(matches!(store.create_admin(&admin, 1).await, Err(StoreError::Conflict)));
        store.create_admin_token("t", "a1", 1, 100).await.unwrap();
        assert_eq!(store.admin_by_token("t", 50).await.unwrap().unwrap().username, "ana");
        assert!(store.set_admin_password("ana", "h2").await.unwrap());
        assert!(store.admin_by_token("t", 50).await.unwrap().is_none(), "a new password ends the sessions");
        assert_eq!(store.admin_count().await.unwrap(), 1);
        let key = ApiKeyRow {
            id: "k1".into(),
            company: "acme".into(),
            prefix: "p".into(),
            name: "n".into(),
            created_at: 1,
            revoked_at: None,
        };
        store.create_api_key(&key, "hash").await.unwrap();
        assert_eq!(store.api_key_company("hash").await.unwrap().as_deref(), Some("acme"));
        assert!(store.revoke_api_key("acme", "k1", 2).await.unwrap());
        assert_eq!(store.api_key_company("hash").await.unwrap(), None);
        assert_eq!(store.api_keys("acme").await.unwrap()[0].revoked_at, Some(2));
    }

    #[tokio::test]
    async fn postgres_submissions_wake_the_other_instances() {
        let Some((db, store)) = setup().await else { return };
        let other = Arc::new(db.store().await);
        let (wake, stop) = (Arc::new(Notify::new()), CancellationToken::new());
        let listener = tokio::spawn({
            let (other, wake, stop) = (other.clone(), wake.clone(), stop.clone());
            async move { other.relay_wakeups(wake, stop).await }
        });
        // The listener rings once when it starts listening.
        tokio::time::timeout(Duration::from_secs(10), wake.notified()).await.expect("the listener starts");
        store.insert_messages(&[record("m1", None)]).await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), wake.notified()).await.expect("a submission wakes the others");
        stop.cancel();
        listener.await.unwrap();
    }

    #[tokio::test]
    async fn postgres_statements_run_under_the_configured_timeout() {
        let Some(db) = FreshDatabase::create().await else { return };
        let settings = PostgresSettings { max_connections: 2, statement_timeout: Duration::from_millis(250) };
        let store = PostgresStore::connect_lazy(db.server.clone().database(&db.name), &settings);
        let timeout: String = sqlx::query_scalar("SHOW statement_timeout").fetch_one(&store.pool).await.unwrap();
        assert_eq!(timeout, "250ms");
        let slow = sqlx::query("SELECT pg_sleep(2)").execute(&store.pool).await.map_err(classify);
        assert!(matches!(slow, Err(StoreError::Unavailable(_))), "{slow:?}");
        store.migrate().await.expect("the migrations run without the timeout");
    }

    #[tokio::test]
    async fn postgres_out_of_reach_fails_fast_as_unavailable() {
        // Needs no server: a port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let options = PgConnectOptions::new().host("127.0.0.1").port(port).username("postgres");
        let store = PostgresStore::connect_lazy(options, &SETTINGS);
        let started = std::time::Instant::now();
        assert!(matches!(store.insert_messages(&[record("m1", None)]).await, Err(StoreError::Unavailable(_))));
        assert!(started.elapsed() < ACQUIRE_TIMEOUT + Duration::from_secs(2), "took {:?}", started.elapsed());
        let url = format!("postgres://postgres:secret@127.0.0.1:{port}/carteiro");
        let error = PostgresStore::open(&url, &SETTINGS).await.err().expect("nothing listens");
        let said = format!("{error:#}");
        assert!(
            said.contains(&format!("cannot connect to PostgreSQL at 127.0.0.1:{port} (database carteiro)")),
            "{said}"
        );
        assert!(!said.contains("secret"), "{said}");
    }
}
