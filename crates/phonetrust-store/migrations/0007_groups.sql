-- Call manager groups and device pools (phonetrust_rules::groups holds the rules): a
-- group is an ordered list of at most three nodes; a device pool names a group; a phone
-- is placed in a pool, or given a group directly, or takes the Default group.
CREATE TABLE cm_group (
    name        TEXT PRIMARY KEY,
    members     TEXT NOT NULL,                 -- node names, comma-separated, in priority order
    created_at  BIGINT NOT NULL
);
CREATE TABLE device_pool (
    name        TEXT PRIMARY KEY,
    cm_group    TEXT NOT NULL REFERENCES cm_group (name),
    created_at  BIGINT NOT NULL
);
CREATE TABLE device_placement (
    device       TEXT PRIMARY KEY REFERENCES device (name) ON DELETE CASCADE,
    device_pool  TEXT REFERENCES device_pool (name),
    cm_group     TEXT REFERENCES cm_group (name)
);
CREATE INDEX device_placement_pool ON device_placement (device_pool);
CREATE INDEX device_placement_group ON device_placement (cm_group);
