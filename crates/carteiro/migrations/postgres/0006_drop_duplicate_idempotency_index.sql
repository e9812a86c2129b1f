-- The table's UNIQUE (company, idempotency_key) constraint already keeps keys unique:
-- the partial index of 0005 was a second index to maintain, not a smaller one.
DROP INDEX messages_idempotency;
