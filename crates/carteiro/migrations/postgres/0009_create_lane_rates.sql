-- Each rate-limited lane's token bucket, shared by every instance that sends on the lane.
CREATE TABLE lane_rates (
    lane    TEXT PRIMARY KEY,
    tokens  DOUBLE PRECISION NOT NULL,
    at      BIGINT NOT NULL
);
