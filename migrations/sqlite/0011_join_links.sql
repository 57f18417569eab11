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
