-- The same schema as SQLite's, step for step (each migration here mirrors the one of the same
-- name there). Times are milliseconds since the Unix epoch (BIGINT); every integer is BIGINT so
-- that rows read back as the same i64 fields on both stores.

CREATE TABLE companies (
    slug        TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    email       TEXT,
    created_at  BIGINT NOT NULL
);

-- One row per configured level: global ('', ''), company ('acme', ''), user ('acme', '42').
-- `document` holds the settings without secrets; the password is sealed apart.
CREATE TABLE settings_levels (
    company          TEXT NOT NULL,
    user_ref         TEXT NOT NULL,
    document         TEXT NOT NULL,
    sealed_password  TEXT,
    updated_at       BIGINT NOT NULL,
    updated_by       TEXT NOT NULL,
    PRIMARY KEY (company, user_ref)
);

CREATE TABLE admins (
    id             TEXT PRIMARY KEY,
    username       TEXT NOT NULL UNIQUE,
    password_hash  TEXT NOT NULL,
    company        TEXT REFERENCES companies (slug),
    created_at     BIGINT NOT NULL
);

CREATE TABLE admin_tokens (
    token_hash  TEXT PRIMARY KEY,
    admin_id    TEXT NOT NULL REFERENCES admins (id) ON DELETE CASCADE,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    company     TEXT NOT NULL REFERENCES companies (slug),
    key_hash    TEXT NOT NULL UNIQUE,
    prefix      TEXT NOT NULL,
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);

CREATE TABLE audit_log (
    id       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at       BIGINT NOT NULL,
    actor    TEXT NOT NULL,
    action   TEXT NOT NULL,
    company  TEXT,
    target   TEXT NOT NULL,
    fields   TEXT NOT NULL
);
CREATE INDEX audit_log_by_company ON audit_log (company, at);

-- The messages are the queue. A row is due when its status waits and due_at has passed;
-- a worker claims it with a lease that expires if the worker dies.
CREATE TABLE messages (
    id                TEXT PRIMARY KEY,
    company           TEXT NOT NULL REFERENCES companies (slug),
    kind              TEXT NOT NULL,
    actor_id          TEXT,
    status            TEXT NOT NULL,
    from_header       TEXT NOT NULL,
    sender_header     TEXT,
    reply_to_header   TEXT,
    envelope_from     TEXT NOT NULL,
    subject           TEXT NOT NULL,
    idempotency_key   TEXT,
    tags              TEXT NOT NULL,
    size_bytes        BIGINT NOT NULL,
    created_at        BIGINT NOT NULL,
    send_at           BIGINT,
    due_at            BIGINT NOT NULL,
    attempt_count     BIGINT NOT NULL DEFAULT 0,
    lease_owner       TEXT,
    lease_expires_at  BIGINT,
    last_reply        TEXT,
    updated_at        BIGINT NOT NULL,
    -- Also the arbiter of `INSERT … ON CONFLICT`: instances racing on one key get one message.
    UNIQUE (company, idempotency_key)
);
CREATE INDEX messages_due ON messages (due_at) WHERE status IN ('scheduled', 'queued', 'deferred');
CREATE INDEX messages_due_by_company ON messages (company, due_at) WHERE status IN ('scheduled', 'queued', 'deferred');
CREATE INDEX messages_leased ON messages (lease_expires_at) WHERE status = 'sending';
CREATE INDEX messages_by_company ON messages (company, created_at);

CREATE TABLE message_bodies (
    message_id  TEXT PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE,
    raw         BYTEA NOT NULL
);

CREATE TABLE recipients (
    message_id  TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    position    BIGINT NOT NULL,
    kind        TEXT NOT NULL,
    address     TEXT NOT NULL,
    display     TEXT NOT NULL,
    state       TEXT NOT NULL,
    code        BIGINT,
    reply       TEXT,
    PRIMARY KEY (message_id, position)
);

CREATE TABLE attempts (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id  TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    at          BIGINT NOT NULL,
    server      TEXT NOT NULL,
    code        BIGINT,
    reply       TEXT NOT NULL,
    ms          BIGINT NOT NULL,
    outcome     TEXT NOT NULL,
    refusals    TEXT NOT NULL
);
CREATE INDEX attempts_by_message ON attempts (message_id, at);
