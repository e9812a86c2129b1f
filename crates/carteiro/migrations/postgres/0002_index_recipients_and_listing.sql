-- Filtering messages by recipient, and listing a company's messages newest first without sorting.
CREATE INDEX recipients_by_address ON recipients (address, message_id);
DROP INDEX messages_by_company;
CREATE INDEX messages_by_company ON messages (company, created_at, id);
