-- The audit history. One row per rotation, written (status 'pending') before
-- the API is called, so a crash or a failed call never loses a rotation.
-- Timestamps are RFC 3339 UTC text ('2026-11-27T03:00:00.000Z'): they sort and
-- compare as text.
CREATE TABLE rotations (
    id               INTEGER PRIMARY KEY,
    group_name       TEXT    NOT NULL,
    group_jid        TEXT    NOT NULL,
    instance         TEXT    NOT NULL,
    trigger          TEXT    NOT NULL CHECK (trigger IN ('schedule', 'catch_up', 'manual')),
    scheduled_for    TEXT,
    started_at       TEXT    NOT NULL,
    finished_at      TEXT,
    status           TEXT    NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed', 'unknown')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    old_invite_code  TEXT,
    new_invite_code  TEXT,
    new_invite_link  TEXT,
    error            TEXT
);

CREATE INDEX rotations_by_group  ON rotations (group_name, id);
CREATE INDEX rotations_by_jid    ON rotations (group_jid, id);
CREATE INDEX rotations_by_start  ON rotations (started_at);
CREATE INDEX rotations_by_status ON rotations (status, started_at);

-- Every HTTP call made for a rotation, for audits of what was asked and answered.
CREATE TABLE api_calls (
    id           INTEGER PRIMARY KEY,
    rotation_id  INTEGER NOT NULL REFERENCES rotations (id),
    endpoint     TEXT    NOT NULL,            -- 'resetLink' or 'info'
    started_at   TEXT    NOT NULL,
    duration_ms  INTEGER NOT NULL,
    http_status  INTEGER,                     -- NULL when no reply arrived
    outcome      TEXT    NOT NULL,            -- success, permanent, transient, rate_limited, unknown
    error        TEXT
);

CREATE INDEX api_calls_by_rotation ON api_calls (rotation_id);
