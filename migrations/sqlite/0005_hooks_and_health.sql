-- Every end of a rotation (settled, cut by a stop, or an unknown outcome told
-- later) is queued here by a trigger, in the same transaction as the change
-- itself: a crash can lose neither the change nor its notification. The
-- daemon's hook worker turns each into deliveries and deletes it.
-- AUTOINCREMENT: the table is emptied as it is worked, and ids must still
-- never come back.
CREATE TABLE rotation_events (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    rotation_id  INTEGER NOT NULL REFERENCES rotations (id),
    status       TEXT    NOT NULL,
    created_at   TEXT    NOT NULL
);

CREATE TRIGGER rotation_ended AFTER UPDATE OF status ON rotations
WHEN NEW.status IN ('succeeded', 'failed', 'unknown') AND OLD.status IS NOT NEW.status
BEGIN
    INSERT INTO rotation_events (rotation_id, status, created_at)
    VALUES (NEW.id, NEW.status, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));
END;

-- The hooks' outbox: one row per notification a hook is to receive, kept
-- after delivery as its record. `idempotency_key` (rotation, status told,
-- hook) goes out with every attempt.
CREATE TABLE hook_deliveries (
    id               INTEGER PRIMARY KEY,
    idempotency_key  TEXT    NOT NULL UNIQUE,
    hook_key         TEXT    NOT NULL,   -- digest of the hook's target
    hook_name        TEXT    NOT NULL,
    rotation_id      INTEGER NOT NULL REFERENCES rotations (id),
    status           TEXT    NOT NULL,   -- the rotation's status it tells of
    state            TEXT    NOT NULL CHECK (state IN ('pending', 'delivered', 'abandoned')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    created_at       TEXT    NOT NULL,
    next_attempt_at  TEXT    NOT NULL,
    delivered_at     TEXT,
    last_result      TEXT,               -- HTTP status, or a command's exit status
    last_error       TEXT,
    output           TEXT                -- a command's output (first 4 KiB)
);

CREATE INDEX hook_deliveries_due ON hook_deliveries (next_attempt_at) WHERE state = 'pending';

-- `/healthz` writes here to prove the database takes writes.
CREATE TABLE health_probe (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    checked_at  TEXT NOT NULL
);
