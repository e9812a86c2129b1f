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
use carteiro_core::rate;
use carteiro_core::settings::Scope;
use carteiro_core::status::MessageStatus;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{AssertSqlSafe, Connection, FromRow, QueryBuilder, Row, Sqlite, SqlitePool};

use super::*;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file.
    pub async fn open(path: &Path) -> anyhow::Result<Self> {
        let options = tuned(SqliteConnectOptions::new().filename(path));
        Self::with_options(options).await.with_context(|| format!("cannot open the database {}", path.display()))
    }

    /// Opens a `sqlite:` URL given with `--database-url`.
    pub async fn open_url(url: &str) -> anyhow::Result<Self> {
        let options = SqliteConnectOptions::from_str(url).context("the database URL is not a valid sqlite: URL")?;
        Ok(Self::with_options(tuned(options)).await?)
    }

    async fn with_options(options: SqliteConnectOptions) -> Result<Self, sqlx::Error> {
        // The writer keeps a larger page cache (16 MiB): it touches the same index pages on every write.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            // When a full disk makes SQLite roll a transaction back by itself, the ROLLBACK that
            // follows fails and sqlx still counts the connection as in a transaction, refusing
            // every later BEGIN: such a connection is closed, and the next write opens a fresh one.
            .after_release(|conn, _| {
                Box::pin(async move {
                    if conn.is_in_transaction() {
                        // A dropped transaction's ROLLBACK is only queued: the ping waits for it.
                        conn.ping().await?;
                    }
                    Ok(!conn.is_in_transaction())
                })
            })
            .connect_with(options.clone().pragma("cache_size", "-16384"))
            .await?;
        let reader = SqlitePoolOptions::new().max_connections(4).connect_with(options.read_only(true)).await?;
        Ok(Self { writer, reader })
    }
}

/// WAL with `synchronous = FULL`: a commit is on disk before it returns.
/// Fewer, larger checkpoints keep a write-heavy queue from re-writing the same pages.
fn tuned(options: SqliteConnectOptions) -> SqliteConnectOptions {
    options
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(10))
        .pragma("wal_autocheckpoint", "4096")
        .pragma("temp_store", "memory")
}

/// Unique keys become `Conflict`; a full disk `Full`; a lost or busy database `Unavailable`.
fn classify(error: sqlx::Error) -> StoreError {
    let primary_code = |db: &dyn sqlx::error::DatabaseError| {
        db.code().as_deref().and_then(|c| c.parse::<i32>().ok()).map(|c| c & 0xff)
    };
    match &error {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict,
        // SQLITE_FULL
        sqlx::Error::Database(db) if primary_code(db.as_ref()) == Some(13) => StoreError::Full(db.message().to_owned()),
        // SQLITE_IOERR (10), SQLITE_CANTOPEN (14), SQLITE_BUSY (5): the disk or the file, not the request.
        sqlx::Error::Database(db) if matches!(primary_code(db.as_ref()), Some(5 | 10 | 14)) => {
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
        .execute(&self.writer)
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
        .fetch_all(&self.reader)
        .await
        .store()
    }

    async fn remove_dkim_key(&self, company: &str, selector: &str) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM dkim_keys WHERE company = $1 AND selector = $2")
            .bind(company)
            .bind(selector)
            .execute(&self.writer)
            .await
            .store()?;
        Ok(done.rows_affected() == 1)
    }

    async fn revoke_admin_token(&self, token_hash: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM admin_tokens WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&self.writer)
            .await
            .store()?;
        Ok(())
    }

    async fn company_admins(&self, company: &str) -> StoreResult<Vec<AdminRow>> {
        sqlx::query_as("SELECT id, username, password_hash, company FROM admins WHERE company = $1 ORDER BY username")
            .bind(company)
            .fetch_all(&self.reader)
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

async fn upsert_level(
    conn: &mut sqlx::SqliteConnection,
    scope: &Scope,
    row: &LevelRow,
    at: i64,
    by: &str,
) -> StoreResult<()> {
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
impl SettingsStore for SqliteStore {
    async fn level(&self, scope: &Scope) -> StoreResult<Option<LevelRow>> {
        let (company, user) = level_key(scope);
        let row =
            sqlx::query("SELECT document, sealed_secrets FROM settings_levels WHERE company = $1 AND user_ref = $2")
                .bind(company)
                .bind(user)
                .fetch_optional(&self.reader)
                .await
                .store()?;
        let Some(row) = row else { return Ok(None) };
        let sealed: String = row.get("sealed_secrets");
        let sealed_secrets = serde_json::from_str(&sealed)
            .map_err(|e| anyhow::anyhow!("the sealed secrets of {} are not a JSON object: {e}", scope.key()))?;
        Ok(Some(LevelRow { document: row.get("document"), sealed_secrets }))
    }

    async fn save_level(&self, scope: &Scope, row: &LevelRow, audit: &AuditRow) -> StoreResult<()> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.store()?;
        upsert_level(&mut tx, scope, row, audit.at, &audit.actor).await?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.store()
    }

    async fn level_keys(&self) -> StoreResult<Vec<(String, String)>> {
        sqlx::query_as("SELECT company, user_ref FROM settings_levels ORDER BY company, user_ref")
            .fetch_all(&self.reader)
            .await
            .store()
    }

    async fn apply_config(&self, write: &ConfigWrite) -> StoreResult<()> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.store()?;
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
        sqlx::query_scalar("SELECT sha256 FROM config_file WHERE id = 1").fetch_optional(&self.reader).await.store()
    }

    async fn record_audit(&self, audit: &AuditRow) -> StoreResult<()> {
        let mut conn = self.writer.acquire().await.store()?;
        insert_audit(&mut conn, audit).await
    }

    async fn has_sealed_secrets(&self) -> StoreResult<bool> {
        sqlx::query_scalar(ANYTHING_SEALED).fetch_one(&self.reader).await.store()
    }

    async fn reseal_all(&self, reseal: &Reseal<'_>, audit: &AuditRow) -> StoreResult<usize> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.store()?;
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

#[async_trait]
impl MessageStore for SqliteStore {
    async fn insert_messages(&self, records: &[NewMessageRecord]) -> StoreResult<Vec<Inserted>> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.store()?;
        // Idempotency: keys already stored, then keys repeated within these records.
        let mut known: HashMap<(String, String), String> = HashMap::new();
        let mut keys_by_company: HashMap<&str, Vec<&str>> = HashMap::new();
        for r in records {
            if let Some(key) = &r.row.idempotency_key {
                keys_by_company.entry(r.row.company.as_str()).or_default().push(key);
            }
        }
        for (company, keys) in keys_by_company {
            let found: Vec<(String, String)> = sqlx::query_as(
                "SELECT idempotency_key, id FROM messages WHERE company = $1 AND idempotency_key IN (SELECT value FROM json_each($2))",
            )
            .bind(company)
            .bind(serde_json::to_string(&keys).context("keys")?)
            .fetch_all(&mut *tx)
            .await
            .store()?;
            known.extend(found.into_iter().map(|(key, id)| ((company.to_owned(), key), id)));
        }
        let mut outcomes = Vec::with_capacity(records.len());
        let mut new = Vec::with_capacity(records.len());
        for r in records {
            let key = r.row.idempotency_key.as_ref().map(|k| (r.row.company.clone(), k.clone()));
            match key.as_ref().and_then(|k| known.get(k)) {
                Some(first) => outcomes.push(Inserted::Duplicate(first.clone())),
                None => {
                    if let Some(key) = key {
                        known.insert(key, r.row.id.clone());
                    }
                    outcomes.push(Inserted::New);
                    new.push(r);
                }
            }
        }
        // Many rows per statement, and the three statements of a chunk in one query: each query
        // is a round trip to SQLite's thread, and a submission waits for them all.
        for chunk in new.chunks(500) {
            let mut q = QueryBuilder::<Sqlite>::new(format!("INSERT INTO messages ({MESSAGE_COLUMNS}) "));
            q.push_values(chunk, |mut b, r| {
                let m = &r.row;
                b.push_bind(&m.id)
                    .push_bind(&m.company)
                    .push_bind(&m.kind)
                    .push_bind(&m.actor_id)
                    .push_bind(&m.status)
                    .push_bind(&m.from_header)
                    .push_bind(&m.sender_header)
                    .push_bind(&m.reply_to_header)
                    .push_bind(&m.envelope_from)
                    .push_bind(&m.subject)
                    .push_bind(&m.idempotency_key)
                    .push_bind(&m.tags)
                    .push_bind(m.size_bytes)
                    .push_bind(m.created_at)
                    .push_bind(m.send_at)
                    .push_bind(m.due_at)
                    .push_bind(m.attempt_count)
                    .push_bind(&m.last_reply)
                    .push_bind(m.updated_at);
            });
            q.push("; INSERT INTO message_bodies (message_id, raw) ");
            q.push_values(chunk, |mut b, r| {
                b.push_bind(&r.row.id).push_bind(&r.raw);
            });
            let recipients: Vec<(&str, &RecipientRow)> =
                chunk.iter().flat_map(|r| r.recipients.iter().map(|rcpt| (r.row.id.as_str(), rcpt))).collect();
            // SQLite takes at most 32 766 parameters a statement: 4 000 recipients of 8.
            for rows in recipients.chunks(4000) {
                q.push("; INSERT INTO recipients (message_id, position, kind, address, display, state, code, reply) ");
                q.push_values(rows, |mut b, (id, r)| {
                    b.push_bind(*id)
                        .push_bind(r.position)
                        .push_bind(&r.kind)
                        .push_bind(&r.address)
                        .push_bind(&r.display)
                        .push_bind(&r.state)
                        .push_bind(r.code)
                        .push_bind(&r.reply);
                });
            }
            q.build().execute(&mut *tx).await.store()?;
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

    async fn cancel(&self, company: &str, id: &str, now: i64) -> StoreResult<StatusChange> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.store()?;
        let status: Option<String> = sqlx::query_scalar("SELECT status FROM messages WHERE company = $1 AND id = $2")
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
                     SELECT $1, w.id, m.company, m.id, 'message.cancelled', json_object(
                              'id', $1, 'type', 'message.cancelled', 'created_at', $2, 'company', m.company,
                              'message', json_object('id', m.id, 'status', 'cancelled', 'subject', m.subject,
                                                     'attempt', NULL)),
                            'pending', 0, $3, $3
                     FROM messages AS m JOIN webhooks AS w ON w.company = m.company
                       AND EXISTS (SELECT 1 FROM json_each(w.events) AS e WHERE e.value = 'message.cancelled')
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

    async fn retry(&self, company: &str, id: &str, now: i64) -> StoreResult<StatusChange> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.store()?;
        let status: Option<String> = sqlx::query_scalar("SELECT status FROM messages WHERE company = $1 AND id = $2")
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
        .fetch_all(&self.reader)
        .await
        .store()?;
        // Owed since it was submitted, or since its send_at: retries do not reset the clock.
        let oldest_due_at = sqlx::query_scalar(
            "SELECT MIN(COALESCE(send_at, created_at)) FROM messages WHERE status IN ('queued', 'deferred', 'sending') AND created_at <= $1",
        )
        .bind(now)
            .fetch_one(&self.reader)
            .await
            .store()?;
        Ok(QueueStats { by_status, oldest_due_at })
    }

    async fn take_rate(&self, lane: &str, per_minute: u32, wanted: u32, now: i64) -> StoreResult<(u32, f64)> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.store()?;
        let stored: Option<(f64, i64)> = sqlx::query_as("SELECT tokens, at FROM lane_rates WHERE lane = $1")
            .bind(lane)
            .fetch_optional(&mut *tx)
            .await
            .store()?;
        let bucket = stored.map_or(rate::full(per_minute, now), |(tokens, at)| rate::Bucket { tokens, at });
        let (got, after) = rate::take(bucket, per_minute, wanted, now);
        sqlx::query("INSERT INTO lane_rates (lane, tokens, at) VALUES ($1, $2, $3) ON CONFLICT (lane) DO UPDATE SET tokens = $2, at = $3")
            .bind(lane)
            .bind(after.tokens)
            .bind(after.at)
            .execute(&mut *tx)
            .await
            .store()?;
        tx.commit().await.store()?;
        Ok((got, after.tokens))
    }

    async fn release_expired_leases(&self, now: i64, ours: &[String]) -> StoreResult<u64> {
        let done = sqlx::query(
            "UPDATE messages SET status = CASE status WHEN 'sending' THEN 'queued' ELSE status END,
               lease_owner = NULL, lease_expires_at = NULL, updated_at = $1
             WHERE lease_owner IS NOT NULL AND lease_expires_at < $1
               AND lease_owner NOT IN (SELECT value FROM json_each($2))",
        )
        .bind(now)
        .bind(serde_json::to_string(ours).context("claims")?)
        .execute(&self.writer)
        .await
        .store()?;
        Ok(done.rows_affected())
    }

    async fn due_companies(&self, now: i64) -> StoreResult<Vec<String>> {
        // A loose scan of the claimable index: one seek per company, whatever the backlog.
        sqlx::query_scalar(AssertSqlSafe(format!(
            "WITH RECURSIVE companies(company) AS (
               SELECT MIN(company) FROM messages WHERE status IN {WAITING} AND lease_owner IS NULL
               UNION ALL
               SELECT (SELECT MIN(m.company) FROM messages m
                       WHERE m.status IN {WAITING} AND m.lease_owner IS NULL AND m.company > companies.company)
               FROM companies WHERE companies.company IS NOT NULL)
             SELECT company FROM (
               SELECT company, (SELECT MIN(m.due_at) FROM messages m
                                WHERE m.company = companies.company AND m.status IN {WAITING} AND m.lease_owner IS NULL)
                               AS first_due
               FROM companies WHERE company IS NOT NULL)
             WHERE first_due <= $1 ORDER BY first_due"
        )))
        .bind(now)
        .fetch_all(&self.reader)
        .await
        .store()
    }

    async fn next_due_at(&self) -> StoreResult<Option<i64>> {
        // The earliest of each company's earliest, read with the same loose scan as `due_companies`.
        sqlx::query_scalar(AssertSqlSafe(format!(
            "WITH RECURSIVE companies(company) AS (
               SELECT MIN(company) FROM messages WHERE status IN {WAITING} AND lease_owner IS NULL
               UNION ALL
               SELECT (SELECT MIN(m.company) FROM messages m
                       WHERE m.status IN {WAITING} AND m.lease_owner IS NULL AND m.company > companies.company)
               FROM companies WHERE companies.company IS NOT NULL)
             SELECT MIN((SELECT MIN(m.due_at) FROM messages m
                         WHERE m.company = companies.company AND m.status IN {WAITING} AND m.lease_owner IS NULL))
             FROM companies WHERE company IS NOT NULL"
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
             RETURNING id, company, kind, actor_id, envelope_from, COALESCE(retried_at, send_at, created_at) AS due_since, attempt_count,
                       size_bytes"
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

    async fn start_sending(&self, items: &[(String, String)], now: i64) -> StoreResult<Vec<(String, String)>> {
        sqlx::query_as(AssertSqlSafe(format!(
            "UPDATE messages SET status = 'sending', updated_at = $1
             WHERE (id, lease_owner) IN (SELECT value ->> 0, value ->> 1 FROM json_each($2)) AND status IN {WAITING}
             RETURNING id, lease_owner"
        )))
        .bind(now)
        .bind(serde_json::to_string(items).context("items")?)
        .fetch_all(&self.writer)
        .await
        .store()
    }

    async fn load_parcels(&self, ids: &[String]) -> StoreResult<Vec<Parcel>> {
        let bodies: Vec<(String, Vec<u8>)> = sqlx::query_as(
            "SELECT message_id, raw FROM message_bodies WHERE message_id IN (SELECT value FROM json_each($1))",
        )
        .bind(serde_json::to_string(ids).context("ids")?)
        .fetch_all(&self.reader)
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
             WHERE message_id IN (SELECT value FROM json_each($1)) ORDER BY message_id, position",
        )
        .bind(serde_json::to_string(ids).context("ids")?)
        .fetch_all(&self.reader)
        .await
        .store()?;
        let mut recipients: HashMap<String, Vec<RecipientRow>> = HashMap::new();
        for row in rows {
            recipients.entry(row.get("message_id")).or_default().push(RecipientRow::from_row(&row).store()?);
        }
        Ok(recipients)
    }

    async fn finish_attempts(&self, results: &[AttemptResult]) -> StoreResult<Vec<bool>> {
        // Set-based, in one query whatever the number of attempts. An attempt counts only if
        // its message's lease is still its claim's (else another claim took it over, and that
        // claim's record wins): the attempt rows and recipient states are written for those
        // first, then the messages move on and say which they were.
        let attempts: Vec<serde_json::Value> = results
            .iter()
            .map(|r| {
                let a = &r.attempt;
                let event = AttemptEvent::of(r);
                serde_json::json!({
                    "id": r.message_id, "lease": r.lease, "at": a.at, "server": a.server, "code": a.code,
                    "reply": a.reply, "ms": a.ms, "outcome": a.outcome, "refusals": a.refusals,
                    "event": event.id, "type": event.kind, "event_at": event.at, "at_text": event.attempt_at,
                    "event_ms": a.at + a.ms,
                })
            })
            .collect();
        let recipients: Vec<serde_json::Value> = results
            .iter()
            .flat_map(|r| {
                r.recipients.iter().map(|u| {
                    serde_json::json!({"id": r.message_id, "lease": r.lease, "position": u.position,
                                       "state": u.state, "code": u.code, "reply": u.reply})
                })
            })
            .collect();
        let moves: Vec<serde_json::Value> = results
            .iter()
            .map(|r| {
                serde_json::json!({
                    "id": r.message_id, "lease": r.lease, "status": r.status, "due_at": r.due_at,
                    "reply": r.attempt.reply, "envelope_from": r.envelope_from, "updated_at": r.attempt.at + r.attempt.ms,
                })
            })
            .collect();
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.store()?;
        // Which claim holds each message now, read before anything moves: the same message may
        // be in the group twice, under an old claim and a new one, and only the new one counts.
        let holders: Vec<(String, Option<String>)> = sqlx::query_as(
            "SELECT id, lease_owner FROM messages WHERE id IN (SELECT value ->> 'id' FROM json_each(?));
             INSERT INTO attempts (message_id, at, server, code, reply, ms, outcome, refusals)
             SELECT a.value ->> 'id', a.value ->> 'at', a.value ->> 'server', a.value ->> 'code', a.value ->> 'reply',
                    a.value ->> 'ms', a.value ->> 'outcome', a.value ->> 'refusals'
             FROM json_each(?) AS a JOIN messages AS m ON m.id = a.value ->> 'id' AND m.lease_owner = a.value ->> 'lease'
             ORDER BY a.key;
             INSERT INTO webhook_deliveries (event_id, webhook_id, company, message_id, event_type, payload, status,
                                             attempts, next_at, created_at)
             SELECT a.value ->> 'event', w.id, m.company, m.id, a.value ->> 'type', json_object(
                      'id', a.value ->> 'event', 'type', a.value ->> 'type', 'created_at', a.value ->> 'event_at',
                      'company', m.company,
                      'message', json_object('id', m.id, 'status', a.value ->> 'outcome', 'subject', m.subject,
                        'attempt', json_object('at', a.value ->> 'at_text', 'code', a.value ->> 'code',
                                               'reply', a.value ->> 'reply', 'ms', a.value ->> 'ms'))),
                    'pending', 0, a.value ->> 'event_ms', a.value ->> 'event_ms'
             FROM json_each(?) AS a JOIN messages AS m ON m.id = a.value ->> 'id' AND m.lease_owner = a.value ->> 'lease'
             JOIN webhooks AS w ON w.company = m.company
               AND EXISTS (SELECT 1 FROM json_each(w.events) AS e WHERE e.value = a.value ->> 'type')
             ORDER BY a.key;
             UPDATE recipients SET state = r.state, code = r.code, reply = r.reply
             FROM (SELECT value ->> 'id' AS id, value ->> 'lease' AS lease, value ->> 'position' AS position,
                          value ->> 'state' AS state, value ->> 'code' AS code, value ->> 'reply' AS reply
                   FROM json_each(?)) AS r
             JOIN messages AS m ON m.id = r.id AND m.lease_owner = r.lease
             WHERE recipients.message_id = r.id AND recipients.position = r.position;
             UPDATE messages SET status = r.status, due_at = COALESCE(r.due_at, messages.due_at),
               attempt_count = attempt_count + 1, lease_owner = NULL, lease_expires_at = NULL,
               last_reply = r.reply, envelope_from = r.envelope_from, updated_at = r.updated_at
             FROM (SELECT value ->> 'id' AS id, value ->> 'lease' AS lease, value ->> 'status' AS status,
                          value ->> 'due_at' AS due_at, value ->> 'reply' AS reply,
                          value ->> 'envelope_from' AS envelope_from, value ->> 'updated_at' AS updated_at
                   FROM json_each(?)) AS r
                          WHERE messages.id = r.id AND messages.lease_owner = r.lease",
        )
        .bind(serde_json::Value::Array(moves.clone()).to_string())
        .bind(serde_json::Value::Array(attempts.clone()).to_string())
        .bind(serde_json::Value::Array(attempts).to_string())
        .bind(serde_json::Value::Array(recipients).to_string())
        .bind(serde_json::Value::Array(moves).to_string())
        .fetch_all(&mut *tx)
        .await
        .store()?;
        tx.commit().await.store()?;
        let holders: HashMap<String, Option<String>> = holders.into_iter().collect();
        Ok(results.iter().map(|r| holders.get(&r.message_id).is_some_and(|h| h.as_deref() == Some(&r.lease))).collect())
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
impl WebhookStore for SqliteStore {
    async fn create_webhook(&self, row: &WebhookRow, audit: &AuditRow) -> StoreResult<()> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.store()?;
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
        .fetch_all(&self.reader)
        .await
        .store()
    }

    async fn delete_webhook(&self, company: &str, id: &str, audit: &AuditRow) -> StoreResult<bool> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.store()?;
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
        .fetch_all(&self.reader)
        .await
        .store()
    }

    async fn next_webhook_due(&self) -> StoreResult<Option<i64>> {
        sqlx::query_scalar("SELECT MIN(next_at) FROM webhook_deliveries WHERE status = 'pending'")
            .fetch_one(&self.reader)
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
        // The lease is the due time pushed to its end: no other claim finds the row due before then.
        let claimed: Vec<(String, String, String, String, String, i64, i64)> = sqlx::query_as(
            "UPDATE webhook_deliveries SET lease_owner = $1, next_at = $2
             WHERE rowid IN (SELECT rowid FROM webhook_deliveries WHERE status = 'pending' AND next_at <= $3
                             ORDER BY next_at LIMIT $4)
             RETURNING event_id, webhook_id, company, event_type, payload, attempts, created_at",
        )
        .bind(claim)
        .bind(lease_until)
        .bind(now)
        .bind(limit)
        .fetch_all(&self.writer)
        .await
        .store()?;
        if claimed.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<&str> = claimed.iter().map(|c| c.1.as_str()).collect();
        let endpoints: HashMap<String, (String, String)> = sqlx::query_as::<_, (String, String, String)>(
            "SELECT id, url, sealed_secret FROM webhooks WHERE id IN (SELECT value FROM json_each($1))",
        )
        .bind(serde_json::to_string(&ids).context("ids")?)
        .fetch_all(&self.writer)
        .await
        .store()?
        .into_iter()
        .map(|(id, url, secret)| (id, (url, secret)))
        .collect();
        // A webhook removed meanwhile took its deliveries with it.
        Ok(claimed
            .into_iter()
            .filter_map(|(event_id, webhook_id, company, event_type, payload, attempts, created_at)| {
                let (url, sealed_secret) = endpoints.get(&webhook_id)?.clone();
                Some(ClaimedDelivery {
                    event_id,
                    webhook_id,
                    company,
                    event_type,
                    payload,
                    attempts,
                    created_at,
                    url,
                    sealed_secret,
                })
            })
            .collect())
    }

    async fn finish_webhook_deliveries(&self, results: &[DeliveryResult]) -> StoreResult<Vec<bool>> {
        let items: Vec<serde_json::Value> = results
            .iter()
            .map(|r| {
                serde_json::json!({
                    "webhook": r.webhook_id, "event": r.event_id, "lease": r.lease, "at": r.at, "code": r.code,
                    "error": r.error, "status": r.status, "next_at": r.next_at,
                })
            })
            .collect();
        let items = serde_json::Value::Array(items).to_string();
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.store()?;
        // Which claim holds each delivery, read before anything moves: the same delivery may be in
        // the group twice, under an old claim and a new one, and only the new one counts.
        let holders: Vec<(String, String, Option<String>)> = sqlx::query_as(
            "SELECT webhook_id, event_id, lease_owner FROM webhook_deliveries
             WHERE (webhook_id, event_id) IN (SELECT value ->> 'webhook', value ->> 'event' FROM json_each($1))",
        )
        .bind(&items)
        .fetch_all(&mut *tx)
        .await
        .store()?;
        let holders: HashMap<(String, String), Option<String>> =
            holders.into_iter().map(|(webhook, event, lease)| ((webhook, event), lease)).collect();
        let counted: Vec<bool> = results
            .iter()
            .map(|r| {
                let key = (r.webhook_id.clone(), r.event_id.clone());
                holders.get(&key).is_some_and(|holder| holder.as_deref() == Some(r.lease.as_str()))
            })
            .collect();
        sqlx::query(
            "UPDATE webhook_deliveries SET status = r.status, attempts = attempts + 1,
               next_at = COALESCE(r.next_at, webhook_deliveries.next_at), last_code = r.code, last_error = r.error,
               last_attempt_at = r.at, delivered_at = CASE r.status WHEN 'delivered' THEN r.at END, lease_owner = NULL
             FROM (SELECT value ->> 'webhook' AS webhook, value ->> 'event' AS event, value ->> 'lease' AS lease,
                          value ->> 'at' AS at, value ->> 'code' AS code, value ->> 'error' AS error,
                          value ->> 'status' AS status, value ->> 'next_at' AS next_at
                   FROM json_each($1)) AS r
             WHERE webhook_deliveries.webhook_id = r.webhook AND webhook_deliveries.event_id = r.event
               AND webhook_deliveries.lease_owner = r.lease",
        )
        .bind(&items)
        .execute(&mut *tx)
        .await
        .store()?;
        // An endpoint that failed (and accepted nothing in this group) is left alone until its retry.
        let mut endpoints: HashMap<&str, (bool, Option<i64>)> = HashMap::new();
        for (r, _) in results.iter().zip(&counted).filter(|(_, counted)| **counted) {
            let (accepted, retry_at) = endpoints.entry(r.webhook_id.as_str()).or_default();
            *accepted |= r.status == "delivered";
            if r.status == "pending" {
                *retry_at = (*retry_at).max(r.next_at);
            }
        }
        let held_back: Vec<serde_json::Value> = endpoints
            .into_iter()
            .filter_map(|(webhook, (accepted, retry_at))| {
                Some(serde_json::json!({"webhook": webhook, "next_at": retry_at.filter(|_| !accepted)?}))
            })
            .collect();
        if !held_back.is_empty() {
            sqlx::query(
                "UPDATE webhook_deliveries SET next_at = r.next_at
                 FROM (SELECT value ->> 'webhook' AS webhook, value ->> 'next_at' AS next_at FROM json_each($1)) AS r
                 WHERE webhook_deliveries.webhook_id = r.webhook AND webhook_deliveries.status = 'pending'
                   AND webhook_deliveries.lease_owner IS NULL AND webhook_deliveries.next_at < r.next_at",
            )
            .bind(serde_json::Value::Array(held_back).to_string())
            .execute(&mut *tx)
            .await
            .store()?;
        }
        tx.commit().await.store()?;
        Ok(counted)
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

#[cfg(test)]
mod tests {
    use super::*;

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

    async fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.db")).await.unwrap();
        store.migrate().await.unwrap();
        store
            .create_company(&CompanyRow { slug: "acme".into(), name: "ACME".into(), email: None, created_at: 0 })
            .await
            .unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn config_file_import_writes_companies_levels_audit_and_the_file_hash_together() {
        let (_dir, store) = store().await;
        let audit = |target: &str| AuditRow {
            at: 7,
            actor: "config import".into(),
            action: "settings.update".into(),
            company: None,
            target: target.into(),
            fields: vec!["policy.default_sender_name".into()],
        };
        let level =
            LevelRow { document: "{}".into(), sealed_secrets: [("connection.password".into(), "v1:x".into())].into() };
        let acme = CompanySlug::parse("slug", "acme").unwrap();
        let write = ConfigWrite {
            at: 7,
            actor: "config import".into(),
            companies: vec![
                CompanyRow { slug: "acme".into(), name: "ACME Ltda".into(), email: None, created_at: 99 },
                CompanyRow {
                    slug: "beta".into(),
                    name: "Beta".into(),
                    email: Some("b@beta.example".into()),
                    created_at: 7,
                },
            ],
            levels: vec![(Scope::Global, level.clone()), (Scope::Company(acme), level)],
            audit: vec![audit("global"), audit("company:acme")],
            file_sha256: Some("abc".into()),
        };
        assert_eq!(store.applied_config_sha256().await.unwrap(), None);

        store.apply_config(&write).await.unwrap();

        let acme = store.company("acme").await.unwrap().unwrap();
        assert_eq!(
            (acme.name.as_str(), acme.created_at),
            ("ACME Ltda", 0),
            "an existing company keeps its creation time"
        );
        assert_eq!(store.company("beta").await.unwrap().unwrap().email.as_deref(), Some("b@beta.example"));
        assert_eq!(store.level_keys().await.unwrap(), [("".to_owned(), "".to_owned()), ("acme".into(), "".into())]);
        assert_eq!(store.level(&Scope::Global).await.unwrap().unwrap().sealed_secrets["connection.password"], "v1:x");
        assert_eq!(store.audit_log(None, 10).await.unwrap().len(), 2);
        assert_eq!(store.applied_config_sha256().await.unwrap().as_deref(), Some("abc"));
        store.apply_config(&ConfigWrite { file_sha256: Some("def".into()), ..ConfigWrite::default() }).await.unwrap();
        assert_eq!(store.applied_config_sha256().await.unwrap().as_deref(), Some("def"));
    }

    #[tokio::test]
    async fn webhook_events_go_with_the_changes_they_tell_of() {
        let (_dir, store) = store().await;
        crate::store::webhook_checks::events_go_with_the_changes_they_tell_of(&store).await;
    }

    #[tokio::test]
    async fn idempotency_keys_hold_within_a_group_and_across_groups() {
        let (_dir, store) = store().await;
        let first = store
            .insert_messages(&[record("m1", Some("k")), record("m2", Some("k")), record("m3", None)])
            .await
            .unwrap();
        assert_eq!(first, [Inserted::New, Inserted::Duplicate("m1".into()), Inserted::New]);
        let again = store.insert_messages(&[record("m4", Some("k"))]).await.unwrap();
        assert_eq!(again, [Inserted::Duplicate("m1".into())]);
        assert_eq!(store.load_parcels(&["m3".into()]).await.unwrap()[0].recipients.len(), 2);
    }

    #[tokio::test]
    async fn an_attempt_counts_only_under_the_claim_that_still_holds_the_message() {
        let (_dir, store) = store().await;
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
    }
}
