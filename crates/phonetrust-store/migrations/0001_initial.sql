-- phonetrust schema, version 1.
-- One SQL text for SQLite and PostgreSQL: TEXT, INTEGER and BIGINT only (no BLOB/BYTEA:
-- certificates are stored as PEM text), timestamps as Unix seconds in BIGINT columns,
-- booleans as INTEGER 0/1. Table and column names follow the vendor's database where
-- administrators query them (`device.md5hash`, `processconfig.paramname/paramvalue`).

-- Enterprise parameters.
CREATE TABLE processconfig (
    paramname   TEXT PRIMARY KEY,
    paramvalue  TEXT NOT NULL,
    updated_at  BIGINT NOT NULL
);

-- Phone security profiles.
CREATE TABLE securityprofile (
    name                   TEXT PRIMARY KEY,
    description            TEXT NOT NULL,
    device_security_mode   TEXT NOT NULL,      -- non-secure | authenticated | encrypted
    tftp_encrypted_config  INTEGER NOT NULL,   -- 0 | 1
    auth_mode              TEXT NOT NULL,      -- null-string | auth-string | lsc | mic
    key_order              TEXT NOT NULL,      -- rsa | ec | ec-rsa | rsa-ec
    rsa_bits               INTEGER NOT NULL,
    ec_curve               TEXT NOT NULL,      -- p256 | p384 | p521
    created_at             BIGINT NOT NULL,
    updated_at             BIGINT NOT NULL
);

-- Phones and their CAPF information.
CREATE TABLE device (
    name               TEXT PRIMARY KEY,       -- SEP + 12 upper-case hex digits
    model              TEXT NOT NULL,
    protocol           TEXT NOT NULL,          -- SIP | SCCP
    securityprofile    TEXT NOT NULL REFERENCES securityprofile(name),
    description        TEXT NOT NULL,
    capf_operation     TEXT NOT NULL,          -- none | install | delete | troubleshoot
    capf_auth_mode     TEXT NOT NULL,
    capf_auth_string   TEXT,
    capf_key_order     TEXT NOT NULL,
    capf_rsa_bits      INTEGER NOT NULL,
    capf_ec_curve      TEXT NOT NULL,
    capf_completes_by  BIGINT,
    capf_state         TEXT NOT NULL,          -- none | pending | success | failed
    capf_status        TEXT NOT NULL,          -- as the phone page shows it
    capf_status_at     BIGINT NOT NULL,
    md5hash            TEXT,                   -- MD5 of the certificate CAPF recorded (certHash)
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL
);
CREATE INDEX device_auth_string ON device (capf_auth_string);

-- What CAPF learnt of each phone: its LSC and, when seen, its MIC.
CREATE TABLE devicecert (
    device       TEXT NOT NULL REFERENCES device(name) ON DELETE CASCADE,
    kind         TEXT NOT NULL,                -- LSC | MIC
    pem          TEXT NOT NULL,
    md5          TEXT NOT NULL,
    public_key   TEXT NOT NULL,                -- hex, as trust-list records carry it
    subject      TEXT NOT NULL,
    issuer       TEXT NOT NULL,
    serial       TEXT NOT NULL,                -- upper-case hex
    not_before   BIGINT NOT NULL,
    not_after    BIGINT NOT NULL,
    recorded_at  BIGINT NOT NULL,
    PRIMARY KEY (device, kind)
);
CREATE INDEX devicecert_not_after ON devicecert (not_after);

-- Trust stores: CallManager-trust, CAPF-trust, Phone-SAST-trust, tomcat-trust.
CREATE TABLE trustcert (
    store        TEXT NOT NULL,
    name         TEXT NOT NULL,                -- file-like name, unique per store
    fingerprint  TEXT NOT NULL,                -- SHA-256 of the DER, lower-case hex
    subject      TEXT NOT NULL,
    issuer       TEXT NOT NULL,
    serial       TEXT NOT NULL,
    not_before   BIGINT NOT NULL,
    not_after    BIGINT NOT NULL,
    pem          TEXT NOT NULL,
    imported_at  BIGINT NOT NULL,
    PRIMARY KEY (store, name),
    UNIQUE (store, fingerprint)
);
