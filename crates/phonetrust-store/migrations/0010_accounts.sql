-- Accounts of the web administration and the REST API (issue 18). No account exists
-- until an administrator creates one (`phonetrust user add`): there is no default.
-- Passwords are stored as Argon2id PHC strings, never in clear.
CREATE TABLE account (
    name                 TEXT PRIMARY KEY,
    role                 TEXT NOT NULL,          -- admin, operator, read-only
    password_hash        TEXT NOT NULL,
    disabled             BIGINT NOT NULL,        -- 1: may not log in
    failures             BIGINT NOT NULL,        -- consecutive failed logins
    locked_until         BIGINT NOT NULL,        -- unix seconds; 0: not locked
    created_at           BIGINT NOT NULL,
    password_changed_at  BIGINT NOT NULL,
    last_login_at        BIGINT NOT NULL
);
