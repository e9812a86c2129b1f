-- Each rate-limited lane's token bucket, shared by every instance that sends on the lane.
CREATE TABLE lane_rates (
    lane    TEXT PRIMARY KEY,
    tokens  REAL NOT NULL,
    at      INTEGER NOT NULL
);
