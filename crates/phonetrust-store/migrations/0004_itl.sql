-- The ITL each TFTP node serves, kept once built: `show itl` prints, and TFTP/HTTP serve,
-- the same bytes (same MD5, same timestamp) until what the ITL lists or its signer
-- changes. `source` is the SHA-256 of what it was built from (the listed certificates
-- and the signer); a node rebuilds only when that changes.
CREATE TABLE itlfile (
    node        TEXT PRIMARY KEY,              -- the node's host name (its CallManager CN)
    content     TEXT NOT NULL CHECK (content <> ''),
    sha256      TEXT NOT NULL,                 -- of the bytes, lower-case hex
    source      TEXT NOT NULL,
    updated_at  BIGINT NOT NULL
);
