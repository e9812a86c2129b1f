//! The embedded store: one SQLite file in WAL mode with `synchronous = FULL`,
//! so that a message is on disk before its 202 is sent, even across a power
//! loss. Writes go through a single connection (SQLite has one writer
//! anyway; queueing them in-process avoids busy retries), reads through a
//! small pool.

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use carteiro_core::id::CompanySlug;
use carteiro_core::settings::Scope;
use carteiro_core::status::MessageStatus;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{AssertSqlSafe, FromRow, QueryBuilder, Row, Sqlite, SqlitePool};

use super::*;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

const WAITING: &str = "('scheduled', 'queued', 'deferred')";

pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file.
    pub async fn open(path: &Path) -> anyhow::Result<Self> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        Self::with_options(options).await.with_context(|| format!("cannot open the database {}", path.display()))
    }

    /// Opens a `sqlite:` URL given with `--database-url`.
    pub async fn open_url(url: &str) -> anyhow::Result<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .with_context(|| "the database URL is not a valid sqlite: URL".to_owned())?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        Ok(Self::with_options(options).await?)
    }

    async fn with_options(options: SqliteConnectOptions) -> Result<Self, sqlx::Error> {
        let writer = SqlitePoolOptions::new().max_connections(1).connect_with(options.clone()).await?;
        let reader = SqlitePoolOptions::new().max_connections(4).connect_with(options.read_only(true)).await?;
        Ok(Self { writer, reader })
    }
}

/// Unique keys become `Conflict`; a full disk or a lost database `Unavailable`.
fn classify(error: sqlx::Error) -> StoreError {
    match &error {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict,
        // SQLITE_FULL (13), SQLITE_IOERR (10), SQLITE_CANTOPEN (14), SQLITE_BUSY (5): the disk or the file, not the request.
        sqlx::Error::Database(db)
            if matches!(
                db.code().as_deref().and_then(|c| c.parse::<i32>().ok()).map(|c| c & 0xff),
                Some(5 | 10 | 13 | 14)
            ) =>
        {
            StoreError::Unavailable(db.message().to_owned())
        }
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => {
            StoreError::Unavailable(error.to_string())
        }
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

fn level_key(scope: &Scope) -> (&str, &str) {
    match scope {
        Scope::Global => ("", ""),
        Scope::Company(c) => (c.as_str(), ""),
        Scope::User(c, u) => (c.as_str(), u.as_str()),
    }
}

#[async_trait]
impl TenantStore for SqliteStore {
    async fn create_company(&self, row: &CompanyRow) -> StoreResult<()> {
        sqlx::query("INSERT INTO companies (slug, name, email, created_at) VALUES ($1, $2, $3, $4)")
            .bind(&row.slug)
            .bind(&row.name)
            .bind(&row.email)
            .bind(row.created_at)
            .execute(&self.writer)
            .await
            .store()?;
        Ok(())
    }

    async fn company(&self, slug: &str) -> StoreResult<Option<CompanyRow>> {
        sqlx::query_as("SELECT slug, name, email, created_at FROM companies WHERE slug = $1")
            .bind(slug)
            .fetch_optional(&self.reader)
            .await
            .store()
    }

    async fn companies(&self) -> StoreResult<Vec<CompanyRow>> {
        sqlx::query_as("SELECT slug, name, email, created_at FROM companies ORDER BY slug")
            .fetch_all(&self.reader)
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
        .execute(&self.writer)
        .await
        .store()?;
        Ok(())
    }

    async fn admin_by_username(&self, username: &str) -> StoreResult<Option<AdminRow>> {
        sqlx::query_as("SELECT id, username, password_hash, company FROM admins WHERE username = $1")
            .bind(username)
            .fetch_optional(&self.reader)
            .await
            .store()
    }

    async fn set_admin_password(&self, username: &str, password_hash: &str) -> StoreResult<bool> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.store()?;
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
        sqlx::query_scalar("SELECT COUNT(*) FROM admins").fetch_one(&self.reader).await.store()
    }

    async fn create_admin_token(&self, token_hash: &str, admin_id: &str, now: i64, expires_at: i64) -> StoreResult<()> {
        sqlx::query("INSERT INTO admin_tokens (token_hash, admin_id, created_at, expires_at) VALUES ($1, $2, $3, $4)")
            .bind(token_hash)
            .bind(admin_id)
            .bind(now)
            .bind(expires_at)
            .execute(&self.writer)
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
        .fetch_optional(&self.reader)
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
        .execute(&self.writer)
        .await
        .store()?;
        Ok(())
    }

    async fn api_key_company(&self, key_hash: &str) -> StoreResult<Option<String>> {
        sqlx::query_scalar("SELECT company FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL")
            .bind(key_hash)
            .fetch_optional(&self.reader)
            .await
            .store()
    }

    async fn api_keys(&self, company: &str) -> StoreResult<Vec<ApiKeyRow>> {
        sqlx::query_as(
            "SELECT id, company, prefix, name, created_at, revoked_at FROM api_keys WHERE company = $1 ORDER BY created_at",
        )
        .bind(company)
        .fetch_all(&self.reader)
        .await
        .store()
    }

    async fn revoke_api_key(&self, company: &str, id: &str, now: i64) -> StoreResult<bool> {
        let done =
            sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE company = $2 AND id = $3 AND revoked_at IS NULL")
                .bind(now)
                .bind(company)
                .bind(id)
                .execute(&self.writer)
                .await
                .store()?;
        Ok(done.rows_affected() == 1)
    }
}

async fn insert_audit(conn: &mut sqlx::SqliteConnection, audit: &AuditRow) -> StoreResult<()> {
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

#[async_trait]
impl SettingsStore for SqliteStore {
    async fn level(&self, scope: &Scope) -> StoreResult<Option<LevelRow>> {
        let (company, user) = level_key(scope);
        let row =
            sqlx::query("SELECT document, sealed_password FROM settings_levels WHERE company = $1 AND user_ref = $2")
                .bind(company)
                .bind(user)
                .fetch_optional(&self.reader)
                .await
                .store()?;
        Ok(row.map(|r| LevelRow { document: r.get("document"), sealed_password: r.get("sealed_password") }))
    }

    async fn save_level(&self, scope: &Scope, row: &LevelRow, audit: &AuditRow) -> StoreResult<()> {
        let (company, user) = level_key(scope);
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.store()?;
        sqlx::query(
            "INSERT INTO settings_levels (company, user_ref, document, sealed_password, updated_at, updated_by)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (company, user_ref) DO UPDATE SET document = excluded.document,
               sealed_password = excluded.sealed_password, updated_at = excluded.updated_at, updated_by = excluded.updated_by",
        )
        .bind(company)
        .bind(user)
        .bind(&row.document)
        .bind(&row.sealed_password)
        .bind(audit.at)
        .bind(&audit.actor)
        .execute(&mut *tx)
        .await
        .store()?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.store()
    }

    async fn record_audit(&self, audit: &AuditRow) -> StoreResult<()> {
        let mut conn = self.writer.acquire().await.store()?;
        insert_audit(&mut conn, audit).await
    }

    async fn has_sealed_secrets(&self) -> StoreResult<bool> {
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM settings_levels WHERE sealed_password IS NOT NULL)")
            .fetch_one(&self.reader)
            .await
            .store()
    }

    async fn audit_log(&self, company: Option<&CompanySlug>, limit: i64) -> StoreResult<Vec<AuditRow>> {
        let mut query = QueryBuilder::<Sqlite>::new("SELECT at, actor, action, company, target, fields FROM audit_log");
        if let Some(company) = company {
            query.push(" WHERE company = ").push_bind(company.as_str());
        }
        query.push(" ORDER BY id DESC LIMIT ").push_bind(limit);
        let rows = query.build().fetch_all(&self.reader).await.store()?;
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

const MESSAGE_COLUMNS: &str =
    "id, company, kind, actor_id, status, from_header, sender_header, reply_to_header, envelope_from,
    subject, idempotency_key, tags, size_bytes, created_at, send_at, due_at, attempt_count, last_reply, updated_at";

#[async_trait]
impl MessageStore for SqliteStore {
    async fn insert_messages(&self, records: &[NewMessageRecord]) -> StoreResult<Vec<Inserted>> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.store()?;
        let mut outcomes = Vec::with_capacity(records.len());
        for record in records {
            let m = &record.row;
            if let Some(key) = &m.idempotency_key {
                let existing: Option<String> =
                    sqlx::query_scalar("SELECT id FROM messages WHERE company = $1 AND idempotency_key = $2")
                        .bind(&m.company)
                        .bind(key)
                        .fetch_optional(&mut *tx)
                        .await
                        .store()?;
                if let Some(id) = existing {
                    outcomes.push(Inserted::Duplicate(id));
                    continue;
                }
            }
            sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO messages ({MESSAGE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)"
            )))
            .bind(&m.id)
            .bind(&m.company)
            .bind(&m.kind)
            .bind(&m.actor_id)
            .bind(&m.status)
            .bind(&m.from_header)
            .bind(&m.sender_header)
            .bind(&m.reply_to_header)
            .bind(&m.envelope_from)
            .bind(&m.subject)
            .bind(&m.idempotency_key)
            .bind(&m.tags)
            .bind(m.size_bytes)
            .bind(m.created_at)
            .bind(m.send_at)
            .bind(m.due_at)
            .bind(m.attempt_count)
            .bind(&m.last_reply)
            .bind(m.updated_at)
            .execute(&mut *tx)
            .await
            .store()?;
            sqlx::query("INSERT INTO message_bodies (message_id, raw) VALUES ($1, $2)")
                .bind(&m.id)
                .bind(&record.raw)
                .execute(&mut *tx)
                .await
                .store()?;
            for r in &record.recipients {
                sqlx::query(
                    "INSERT INTO recipients (message_id, position, kind, address, display, state, code, reply)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(&m.id)
                .bind(r.position)
                .bind(&r.kind)
                .bind(&r.address)
                .bind(&r.display)
                .bind(&r.state)
                .bind(r.code)
                .bind(&r.reply)
                .execute(&mut *tx)
                .await
                .store()?;
            }
            outcomes.push(Inserted::New);
        }
        tx.commit().await.store()?;
        Ok(outcomes)
    }

    async fn message(&self, company: &str, id: &str) -> StoreResult<Option<MessageRow>> {
        sqlx::query_as(AssertSqlSafe(format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE company = $1 AND id = $2")))
            .bind(company)
            .bind(id)
            .fetch_optional(&self.reader)
            .await
            .store()
    }

    async fn recipients(&self, id: &str) -> StoreResult<Vec<RecipientRow>> {
        sqlx::query_as(
            "SELECT position, kind, address, display, state, code, reply FROM recipients WHERE message_id = $1 ORDER BY position",
        )
        .bind(id)
        .fetch_all(&self.reader)
        .await
        .store()
    }

    async fn attempts(&self, id: &str) -> StoreResult<Vec<AttemptRow>> {
        sqlx::query_as(
            "SELECT at, server, code, reply, ms, outcome, refusals FROM attempts WHERE message_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(&self.reader)
        .await
        .store()
    }

    async fn raw(&self, id: &str) -> StoreResult<Option<Vec<u8>>> {
        sqlx::query_scalar("SELECT raw FROM message_bodies WHERE message_id = $1")
            .bind(id)
            .fetch_optional(&self.reader)
            .await
            .store()
    }

    async fn list_messages(&self, company: &str, filter: &MessageFilter) -> StoreResult<Vec<MessageRow>> {
        let mut query = QueryBuilder::<Sqlite>::new(format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE company = "));
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
        query.build_query_as().fetch_all(&self.reader).await.store()
    }

    async fn cancel(&self, company: &str, id: &str, now: i64) -> StoreResult<CancelOutcome> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.store()?;
        let status: Option<String> = sqlx::query_scalar("SELECT status FROM messages WHERE company = $1 AND id = $2")
            .bind(company)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .store()?;
        let outcome = match status {
            None => CancelOutcome::NotFound,
            Some(s) if !MessageStatus::parse(&s).is_some_and(MessageStatus::can_cancel) => CancelOutcome::TooLate(s),
            Some(_) => {
                sqlx::query("UPDATE messages SET status = 'cancelled', lease_owner = NULL, lease_expires_at = NULL, updated_at = $1 WHERE id = $2")
                    .bind(now)
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .store()?;
                CancelOutcome::Cancelled
            }
        };
        tx.commit().await.store()?;
        Ok(outcome)
    }

    async fn release_expired_leases(&self, now: i64) -> StoreResult<u64> {
        let done = sqlx::query(
            "UPDATE messages SET status = CASE status WHEN 'sending' THEN 'queued' ELSE status END,
               lease_owner = NULL, lease_expires_at = NULL, updated_at = $1
             WHERE lease_owner IS NOT NULL AND lease_expires_at < $1",
        )
        .bind(now)
        .execute(&self.writer)
        .await
        .store()?;
        Ok(done.rows_affected())
    }

    async fn due_companies(&self, now: i64) -> StoreResult<Vec<String>> {
        sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT company FROM messages WHERE status IN {WAITING} AND due_at <= $1 AND lease_owner IS NULL
             GROUP BY +company ORDER BY MIN(due_at)"
        )))
        .bind(now)
        .fetch_all(&self.reader)
        .await
        .store()
    }

    async fn next_due_at(&self) -> StoreResult<Option<i64>> {
        sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT MIN(due_at) FROM messages WHERE status IN {WAITING} AND lease_owner IS NULL"
        )))
        .fetch_one(&self.reader)
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
        sqlx::query_as(AssertSqlSafe(format!(
            "UPDATE messages SET lease_owner = $1, lease_expires_at = $2, updated_at = $3
             WHERE id IN (SELECT id FROM messages WHERE company = $4 AND status IN {WAITING} AND due_at <= $3
                            AND lease_owner IS NULL
                          ORDER BY due_at LIMIT $5)
             RETURNING id, company, kind, actor_id, envelope_from, COALESCE(send_at, created_at) AS due_since, attempt_count"
        )))
        .bind(claim)
        .bind(lease_until)
        .bind(now)
        .bind(company)
        .bind(limit)
        .fetch_all(&self.writer)
        .await
        .store()
    }

    async fn extend_leases(&self, claims: &[String], lease_until: i64) -> StoreResult<u64> {
        let done = sqlx::query(
            "UPDATE messages SET lease_expires_at = $1
             WHERE lease_owner IN (SELECT value FROM json_each($2))",
        )
        .bind(lease_until)
        .bind(serde_json::to_string(claims).context("claims")?)
        .execute(&self.writer)
        .await
        .store()?;
        Ok(done.rows_affected())
    }

    async fn start_sending(&self, ids: &[String], claims: &[String], now: i64) -> StoreResult<Vec<String>> {
        sqlx::query_scalar(AssertSqlSafe(format!(
            "UPDATE messages SET status = 'sending', updated_at = $1
             WHERE id IN (SELECT value FROM json_each($2)) AND lease_owner IN (SELECT value FROM json_each($3))
               AND status IN {WAITING}
             RETURNING id"
        )))
        .bind(now)
        .bind(serde_json::to_string(ids).context("ids")?)
        .bind(serde_json::to_string(claims).context("claims")?)
        .fetch_all(&self.writer)
        .await
        .store()
    }

    async fn load_parcels(&self, ids: &[String]) -> StoreResult<Vec<Parcel>> {
        let ids_json = serde_json::to_string(ids).context("ids")?;
        let bodies: Vec<(String, Vec<u8>)> = sqlx::query_as(
            "SELECT message_id, raw FROM message_bodies WHERE message_id IN (SELECT value FROM json_each($1))",
        )
        .bind(&ids_json)
        .fetch_all(&self.reader)
        .await
        .store()?;
        let rows = sqlx::query(
            "SELECT message_id, position, kind, address, display, state, code, reply FROM recipients
             WHERE message_id IN (SELECT value FROM json_each($1)) ORDER BY message_id, position",
        )
        .bind(&ids_json)
        .fetch_all(&self.reader)
        .await
        .store()?;
        let mut recipients: HashMap<String, Vec<RecipientRow>> = HashMap::new();
        for row in rows {
            recipients.entry(row.get("message_id")).or_default().push(RecipientRow::from_row(&row).store()?);
        }
        Ok(bodies
            .into_iter()
            .map(|(id, raw)| Parcel { recipients: recipients.remove(&id).unwrap_or_default(), id, raw })
            .collect())
    }

    async fn finish_attempts(&self, results: &[AttemptResult]) -> StoreResult<Vec<bool>> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.store()?;
        let mut recorded = Vec::with_capacity(results.len());
        for result in results {
            let a = &result.attempt;
            let moved = sqlx::query(
                "UPDATE messages SET status = $1, due_at = COALESCE($2, due_at), attempt_count = attempt_count + 1,
                   lease_owner = NULL, lease_expires_at = NULL, last_reply = $3, envelope_from = $4, updated_at = $5
                 WHERE id = $6 AND lease_owner = $7",
            )
            .bind(&result.status)
            .bind(result.due_at)
            .bind(&a.reply)
            .bind(&result.envelope_from)
            .bind(a.at + a.ms)
            .bind(&result.message_id)
            .bind(&result.lease)
            .execute(&mut *tx)
            .await
            .store()?;
            // Another claim took the message over after this one's lease expired: its record wins.
            let ours = moved.rows_affected() == 1;
            recorded.push(ours);
            if !ours {
                continue;
            }
            sqlx::query(
                "INSERT INTO attempts (message_id, at, server, code, reply, ms, outcome, refusals) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&result.message_id)
            .bind(a.at)
            .bind(&a.server)
            .bind(a.code)
            .bind(&a.reply)
            .bind(a.ms)
            .bind(&a.outcome)
            .bind(&a.refusals)
            .execute(&mut *tx)
            .await
            .store()?;
            for r in &result.recipients {
                sqlx::query(
                    "UPDATE recipients SET state = $1, code = $2, reply = $3 WHERE message_id = $4 AND position = $5",
                )
                .bind(&r.state)
                .bind(r.code)
                .bind(&r.reply)
                .bind(&result.message_id)
                .bind(r.position)
                .execute(&mut *tx)
                .await
                .store()?;
            }
        }
        tx.commit().await.store()?;
        Ok(recorded)
    }

    async fn release_messages(&self, ids: &[String], claims: &[String], due_at: i64) -> StoreResult<u64> {
        let done = sqlx::query(
            "UPDATE messages SET status = CASE status WHEN 'sending' THEN 'queued' ELSE status END,
               lease_owner = NULL, lease_expires_at = NULL, due_at = $1, updated_at = $1
             WHERE id IN (SELECT value FROM json_each($2)) AND lease_owner IN (SELECT value FROM json_each($3))",
        )
        .bind(due_at)
        .bind(serde_json::to_string(ids).context("ids")?)
        .bind(serde_json::to_string(claims).context("claims")?)
        .execute(&self.writer)
        .await
        .store()?;
        Ok(done.rows_affected())
    }

    async fn release_claims(&self, claims: &[String], now: i64) -> StoreResult<u64> {
        let done = sqlx::query(
            "UPDATE messages SET status = CASE status WHEN 'sending' THEN 'queued' ELSE status END,
               lease_owner = NULL, lease_expires_at = NULL, updated_at = $1
             WHERE lease_owner IN (SELECT value FROM json_each($2))",
        )
        .bind(now)
        .bind(serde_json::to_string(claims).context("claims")?)
        .execute(&self.writer)
        .await
        .store()?;
        Ok(done.rows_affected())
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn migrate(&self) -> StoreResult<()> {
        MIGRATOR.run(&self.writer).await.context("applying the database migrations")?;
        Ok(())
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.reader).await.store()?;
        Ok(())
    }
}
