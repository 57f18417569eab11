-- More than one node (issue 12): every daemon on this database is a node;
-- one holds the lease and is active (schedules, settles, rotates, delivers
-- hooks), the others stand by. The term grows with each takeover: every
-- write that begins work checks, in the same statement, that its node still
-- holds the lease of its term (fencing), so a node paused or cut off past
-- its lease starts nothing when it wakes.
CREATE TABLE lease (
    id          BIGINT PRIMARY KEY CHECK (id = 1),
    holder      TEXT,
    term        BIGINT      NOT NULL DEFAULT 0,
    since       TIMESTAMPTZ,
    expires_at  TIMESTAMPTZ
);
INSERT INTO lease (id, term) VALUES (1, 0);

-- Every node, as it last reported itself, for `status`.
CREATE TABLE nodes (
    node        TEXT PRIMARY KEY,      -- host/pid/start: unique per process
    host        TEXT        NOT NULL,
    pid         BIGINT      NOT NULL,
    started_at  TIMESTAMPTZ NOT NULL,
    seen_at     TIMESTAMPTZ NOT NULL,
    role        TEXT        NOT NULL CHECK (role IN ('active', 'standby', 'stopped')),
    active_since TIMESTAMPTZ
);

-- The lease term under which a rotation began (NULL: no lease, such as a
-- `rotate` run, or SQLite).
ALTER TABLE rotations ADD COLUMN term BIGINT;

-- No group's due time is served twice, whatever nodes race: a second row
-- for one group and one due time cannot be written, unless the first
-- failed before any reset call (then catch-up makes the due time up).
CREATE UNIQUE INDEX rotations_one_per_due ON rotations (group_name, scheduled_for)
    WHERE scheduled_for IS NOT NULL AND NOT (status = 'failed' AND attempts = 0);
