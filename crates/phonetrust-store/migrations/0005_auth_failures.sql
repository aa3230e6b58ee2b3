-- CAPF authentication failures per phone (`dev:SEP…`) and per client address (`ip:…`),
-- kept across restarts so that a restart does not reset the guessing limits
-- (phonetrust_rules::authguard).
CREATE TABLE auth_failure (
    key           TEXT PRIMARY KEY,
    failures      BIGINT NOT NULL,
    last_failure  BIGINT NOT NULL,
    locked_until  BIGINT NOT NULL
);
