-- Times are milliseconds since the Unix epoch (INTEGER): portable to PostgreSQL's BIGINT.

CREATE TABLE companies (
    slug        TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    email       TEXT,
    created_at  INTEGER NOT NULL
);

-- One row per configured level: global ('', ''), company ('acme', ''), user ('acme', '42').
-- `document` holds the settings without secrets; the password is sealed apart.
CREATE TABLE settings_levels (
    company          TEXT NOT NULL,
    user_ref         TEXT NOT NULL,
    document         TEXT NOT NULL,
    sealed_password  TEXT,
    updated_at       INTEGER NOT NULL,
    updated_by       TEXT NOT NULL,
    PRIMARY KEY (company, user_ref)
);

CREATE TABLE admins (
    id             TEXT PRIMARY KEY,
    username       TEXT NOT NULL UNIQUE,
    password_hash  TEXT NOT NULL,
    company        TEXT REFERENCES companies (slug),
    created_at     INTEGER NOT NULL
);

CREATE TABLE admin_tokens (
    token_hash  TEXT PRIMARY KEY,
    admin_id    TEXT NOT NULL REFERENCES admins (id) ON DELETE CASCADE,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);

CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    company     TEXT NOT NULL REFERENCES companies (slug),
    key_hash    TEXT NOT NULL UNIQUE,
    prefix      TEXT NOT NULL,
    name        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);

CREATE TABLE audit_log (
    id       INTEGER PRIMARY KEY,
    at       INTEGER NOT NULL,
    actor    TEXT NOT NULL,
    action   TEXT NOT NULL,
    company  TEXT,
    target   TEXT NOT NULL,
    fields   TEXT NOT NULL
);
CREATE INDEX audit_log_by_company ON audit_log (company, at);

-- The messages are the queue. A row is due when its status waits and due_at has passed;
-- a worker claims it by setting status 'sending' and a lease that expires if the worker dies.
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
    size_bytes        INTEGER NOT NULL,
    created_at        INTEGER NOT NULL,
    send_at           INTEGER,
    due_at            INTEGER NOT NULL,
    attempt_count     INTEGER NOT NULL DEFAULT 0,
    lease_owner       TEXT,
    lease_expires_at  INTEGER,
    last_reply        TEXT,
    updated_at        INTEGER NOT NULL,
    UNIQUE (company, idempotency_key)
);
CREATE INDEX messages_due ON messages (due_at) WHERE status IN ('scheduled', 'queued', 'deferred');
CREATE INDEX messages_due_by_company ON messages (company, due_at) WHERE status IN ('scheduled', 'queued', 'deferred');
CREATE INDEX messages_leased ON messages (lease_expires_at) WHERE status = 'sending';
CREATE INDEX messages_by_company ON messages (company, created_at);

CREATE TABLE message_bodies (
    message_id  TEXT PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE,
    raw         BLOB NOT NULL
);

CREATE TABLE recipients (
    message_id  TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    position    INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    address     TEXT NOT NULL,
    display     TEXT NOT NULL,
    state       TEXT NOT NULL,
    code        INTEGER,
    reply       TEXT,
    PRIMARY KEY (message_id, position)
);

CREATE TABLE attempts (
    id          INTEGER PRIMARY KEY,
    message_id  TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    at          INTEGER NOT NULL,
    server      TEXT NOT NULL,
    code        INTEGER,
    reply       TEXT NOT NULL,
    ms          INTEGER NOT NULL,
    outcome     TEXT NOT NULL,
    refusals    TEXT NOT NULL
);
CREATE INDEX attempts_by_message ON attempts (message_id, at);
