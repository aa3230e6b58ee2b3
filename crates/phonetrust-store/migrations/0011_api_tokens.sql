-- Bearer tokens of the REST API (issue 18), each for one account and with its role; only
-- the SHA-256 of a token is kept (the token is shown once, when created).
CREATE TABLE api_token (
    id            TEXT PRIMARY KEY,              -- 8 hex digits, to name it (list, revoke)
    account       TEXT NOT NULL REFERENCES account (name) ON DELETE CASCADE,
    label         TEXT NOT NULL,
    sha256        TEXT NOT NULL UNIQUE,
    created_at    BIGINT NOT NULL,
    last_used_at  BIGINT NOT NULL
);
