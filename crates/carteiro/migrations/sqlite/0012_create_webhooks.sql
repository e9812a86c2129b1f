-- Delivery webhooks: a company's endpoints, and the durable outbox of the
-- events owed to each. An event is written in the transaction that records
-- the state change it tells of (an attempt's result, a cancel); the
-- dispatcher claims due rows, POSTs them and records what the endpoint said.
CREATE TABLE webhooks (
    id             TEXT PRIMARY KEY,
    company        TEXT NOT NULL REFERENCES companies (slug),
    url            TEXT NOT NULL,
    -- JSON array of the event types sent there (message.sent, …).
    events         TEXT NOT NULL,
    -- The signing secret, sealed with the master key.
    sealed_secret  TEXT NOT NULL,
    created_at     INTEGER NOT NULL
);
CREATE INDEX webhooks_by_company ON webhooks (company);

CREATE TABLE webhook_deliveries (
    -- The event's id: the same for every endpoint it goes to (Carteiro-Delivery).
    event_id         TEXT NOT NULL,
    webhook_id       TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    company          TEXT NOT NULL,
    message_id       TEXT NOT NULL,
    event_type       TEXT NOT NULL,
    -- The JSON body, exactly as it is sent and signed.
    payload          TEXT NOT NULL,
    -- pending, delivered or failed (given up after the maximum age).
    status           TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    -- When it is next due; while a dispatcher holds it, when its lease ends.
    next_at          INTEGER NOT NULL,
    last_code        INTEGER,
    last_error       TEXT,
    last_attempt_at  INTEGER,
    created_at       INTEGER NOT NULL,
    delivered_at     INTEGER,
    -- The dispatcher holding it, until next_at.
    lease_owner      TEXT,
    PRIMARY KEY (webhook_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_listing ON webhook_deliveries (webhook_id, created_at);
