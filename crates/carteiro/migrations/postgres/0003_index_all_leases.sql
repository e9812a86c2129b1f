-- A claimed message keeps its waiting status until a session sends it: leases are found by their expiry alone.
DROP INDEX messages_leased;
CREATE INDEX messages_leased ON messages (lease_expires_at) WHERE lease_owner IS NOT NULL;
