-- Issue 17's records. The audit log: every change made through the CLI (later the web
-- admin and API), who made it, on which node, what, and how it ended. `id` orders the
-- entries: the time in milliseconds (16 hex digits) and a random suffix.
CREATE TABLE audit_log (
    id      TEXT PRIMARY KEY,
    at      BIGINT NOT NULL,                   -- unix milliseconds
    actor   TEXT NOT NULL,                     -- the OS account (CLI) or web account
    node    TEXT NOT NULL,
    action  TEXT NOT NULL,                     -- the command, e.g. "set cert regen"
    detail  TEXT NOT NULL,                     -- its arguments, secrets masked
    result  TEXT NOT NULL                      -- "ok" or the refusal/failure
);
CREATE INDEX audit_log_at ON audit_log (at);

-- What each known phone last downloaded, per kind (itl, ctl, config): the vendor's ITL
-- file status report. Written in batches by the serving nodes.
CREATE TABLE download_log (
    device    TEXT NOT NULL REFERENCES device (name) ON DELETE CASCADE,
    kind      TEXT NOT NULL,                   -- itl, ctl, config
    file      TEXT NOT NULL,                   -- the name asked for
    sha256    TEXT NOT NULL,                   -- of the bytes served, lower-case hex
    node      TEXT NOT NULL,                   -- the node that served it
    protocol  TEXT NOT NULL,                   -- tftp, http, https
    at        BIGINT NOT NULL,                 -- unix seconds
    PRIMARY KEY (device, kind)
);

-- Certificate monitor: one notification per certificate per day for the whole cluster
-- (the node whose insert succeeds sends it).
CREATE TABLE cert_notice (
    cert  TEXT NOT NULL,                       -- SHA-256 of the certificate's DER
    day   BIGINT NOT NULL,                     -- unix day
    PRIMARY KEY (cert, day)
);

-- The certificate that signs each node's ITL (SHA-256 of its DER) and since when: phones
-- whose last ITL is older than that were not seen since the signer changed.
ALTER TABLE itlfile ADD COLUMN signer TEXT NOT NULL DEFAULT '';
ALTER TABLE itlfile ADD COLUMN signer_since BIGINT NOT NULL DEFAULT 0;
