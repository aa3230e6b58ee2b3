-- The nodes of a cluster sharing this database (phonetrust_rules::cluster holds the
-- rules): one publisher, any number of subscribers. A node is defined here first
-- (`cluster add-node`), then joins from its own machine; a running node records a
-- heartbeat every few seconds.
CREATE TABLE cluster_node (
    name          TEXT PRIMARY KEY,            -- host name, as the node's CallManager CN
    host          TEXT NOT NULL,               -- IP address or DNS name phones use
    role          TEXT NOT NULL CHECK (role IN ('publisher', 'subscriber')),
    services      TEXT NOT NULL,               -- comma-separated: tftp, tvs, capf
    created_at    BIGINT NOT NULL,
    joined_at     BIGINT NOT NULL DEFAULT 0,   -- 0 until the node has joined
    heartbeat_at  BIGINT NOT NULL DEFAULT 0    -- 0 until the node has run
);
CREATE UNIQUE INDEX cluster_one_publisher ON cluster_node (role) WHERE role = 'publisher';

-- The public part of each node's own certificates (keys stay in the node's data
-- directory), so that every node can list them in its ITL, the CTL and TVS.
CREATE TABLE node_cert (
    node        TEXT NOT NULL REFERENCES cluster_node (name) ON DELETE CASCADE,
    which       TEXT NOT NULL,                 -- CallManager, CAPF, TVS, ...
    serial      TEXT NOT NULL,                 -- lower-case hex
    pem         TEXT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (node, which)
);
