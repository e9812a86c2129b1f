-- A company's DKIM signing keys. The private key is sealed with the master
-- key; the public one is kept as published in DNS (the p= of the TXT record).
CREATE TABLE dkim_keys (
    company             TEXT NOT NULL REFERENCES companies (slug),
    selector            TEXT NOT NULL,
    domain              TEXT NOT NULL,
    algorithm           TEXT NOT NULL,
    public_key          TEXT NOT NULL,
    sealed_private_key  TEXT NOT NULL,
    created_at          BIGINT NOT NULL,
    PRIMARY KEY (company, selector)
);
