-- When an operator last retried a failed message: its queue lifetime starts again there.
ALTER TABLE messages ADD COLUMN retried_at INTEGER;
