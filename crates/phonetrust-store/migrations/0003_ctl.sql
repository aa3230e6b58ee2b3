-- The cluster's CTL (CTLFile.tlv) lives in the database beside Cluster Security Mode, so
-- that both change in one transaction and every command and service finds the same file
-- whatever its static directory or config file. Content as base64 text (no BLOB/BYTEA:
-- one SQL text for both engines).
CREATE TABLE trustlistfile (
    name        TEXT PRIMARY KEY,              -- CTLFile.tlv
    content     TEXT NOT NULL CHECK (content <> ''),
    sha256      TEXT NOT NULL,                 -- of the bytes, lower-case hex
    updated_at  BIGINT NOT NULL
);
