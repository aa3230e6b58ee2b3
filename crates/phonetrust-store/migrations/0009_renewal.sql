-- LSC renewal by policy (phonetrust_rules::lifecycle): each phone scheduled for renewal,
-- the LSC it is renewing (by serial), its batch and how it ended; each batch with when it
-- was scheduled and what the reset hook answered.
CREATE TABLE renewal (
    device        TEXT PRIMARY KEY REFERENCES device (name) ON DELETE CASCADE,
    reason        TEXT NOT NULL,
    lsc_serial    TEXT NOT NULL,
    batch         BIGINT NOT NULL,
    scheduled_at  BIGINT NOT NULL,
    state         TEXT NOT NULL,                 -- scheduled, done, failed
    finished_at   BIGINT,
    detail        TEXT NOT NULL
);
CREATE INDEX renewal_state ON renewal (state);
CREATE INDEX renewal_scheduled_at ON renewal (scheduled_at);
CREATE TABLE renewal_batch (
    id      BIGINT PRIMARY KEY,
    at      BIGINT NOT NULL,
    phones  BIGINT NOT NULL,
    hook    TEXT NOT NULL                        -- what the reset hook did
);
