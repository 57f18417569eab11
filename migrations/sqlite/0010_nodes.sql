-- More than one node (issue 12) runs on PostgreSQL only; on SQLite one
-- daemon holds the file's lock. The same tables exist here so that both
-- backends have one schema (and `db copy` one list of tables); they stay
-- empty on SQLite.
CREATE TABLE IF NOT EXISTS lease (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    holder      TEXT,
    term        INTEGER NOT NULL DEFAULT 0,
    since       TEXT,
    expires_at  TEXT
);
INSERT OR IGNORE INTO lease (id, term) VALUES (1, 0);

CREATE TABLE IF NOT EXISTS nodes (
    node         TEXT PRIMARY KEY,
    host         TEXT    NOT NULL,
    pid          INTEGER NOT NULL,
    started_at   TEXT    NOT NULL,
    seen_at      TEXT    NOT NULL,
    role         TEXT    NOT NULL CHECK (role IN ('active', 'standby', 'stopped')),
    active_since TEXT
);

-- The lease term under which a rotation began (always NULL on SQLite).
ALTER TABLE rotations ADD COLUMN term INTEGER;
