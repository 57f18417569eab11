-- Join links (issue 13): stable URLs, each leading to its group's live
-- invite whatever rotations happen; one per channel, so that one that leaks
-- can be withdrawn alone. A limited link expires or works `max_uses` times.
CREATE TABLE join_links (
    id            INTEGER PRIMARY KEY,
    name          TEXT    NOT NULL UNIQUE,  -- the operator's name for it
    slug          TEXT    NOT NULL UNIQUE,  -- random, 128 bits, URL-safe: /j/{slug}
    group_name    TEXT    NOT NULL,
    group_jid     TEXT    NOT NULL,
    created_at    TEXT    NOT NULL,
    expires_at    TEXT,                     -- NULL: never
    max_uses      INTEGER CHECK (max_uses IS NULL OR max_uses > 0),
    uses          INTEGER NOT NULL DEFAULT 0,
    last_used_at  TEXT,
    revoked_at    TEXT,                     -- set by `join revoke`
    note          TEXT
);

-- When each link was used: one row per spent use of a limited link (written
-- with the spend), one row per batch of an unlimited link's uses (written
-- every second: `uses` of them, the last at `used_at`).
CREATE TABLE join_uses (
    id        INTEGER PRIMARY KEY,
    link_id   INTEGER NOT NULL REFERENCES join_links (id),
    used_at   TEXT    NOT NULL,
    uses      INTEGER NOT NULL CHECK (uses > 0)
);
CREATE INDEX join_uses_by_link ON join_uses (link_id, used_at);
