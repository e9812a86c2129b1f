-- The due indexes hold only what can be claimed (waiting and not leased), so that finding the
-- companies with due mail, the next due time and a company's due messages (the claim, with
-- FOR UPDATE SKIP LOCKED) stays cheap however many messages are held.
DROP INDEX messages_due;
DROP INDEX messages_due_by_company;
CREATE INDEX messages_due ON messages (due_at)
    WHERE status IN ('scheduled', 'queued', 'deferred') AND lease_owner IS NULL;
CREATE INDEX messages_due_by_company ON messages (company, due_at)
    WHERE status IN ('scheduled', 'queued', 'deferred') AND lease_owner IS NULL;
