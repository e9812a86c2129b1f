-- The configuration file `carteiro serve --config` applied last, by its SHA-256:
-- the same file is not applied again, so that later changes made in the
-- console or the API are kept until the file itself changes. One row at most.
CREATE TABLE config_file (
    id          BIGINT PRIMARY KEY CHECK (id = 1),
    sha256      TEXT NOT NULL,
    applied_at  BIGINT NOT NULL
);
