-- A level now holds several secrets (SMTP and proxy passwords, OAuth tokens):
-- each sealed on its own, keyed by its field path, in one JSON object (kept as TEXT, as in SQLite).
ALTER TABLE settings_levels ADD COLUMN sealed_secrets TEXT NOT NULL DEFAULT '{}';
UPDATE settings_levels
   SET sealed_secrets = json_build_object('connection.password', sealed_password)::text
 WHERE sealed_password IS NOT NULL;
ALTER TABLE settings_levels DROP COLUMN sealed_password;
