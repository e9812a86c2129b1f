-- Fewer indexes to maintain on every submission: idempotency keys are unique
-- only where there is a key, and the next due time is found per company.
CREATE UNIQUE INDEX messages_idempotency ON messages (company, idempotency_key) WHERE idempotency_key IS NOT NULL;
DROP INDEX messages_due;
