-- no-transaction
-- RyzeAPI's events (issue 11): the inbox, what each instance's events are
-- doing, the rotations events call for, and three new triggers.
--
-- The new triggers (`member_removed`, `member_left`, `outside`) do not fit the
-- CHECK constraint of `rotations`, and SQLite changes a constraint only by
-- rebuilding the table: so it is rebuilt, in one transaction, foreign keys off
-- meanwhile (as SQLite's ALTER TABLE documentation prescribes), ids kept. The
-- rebuild copies named columns, so running it twice does no harm.
PRAGMA foreign_keys = OFF;
BEGIN IMMEDIATE;

DROP VIEW IF EXISTS current_codes;
DROP VIEW IF EXISTS rotations_per_month;
DROP TRIGGER IF EXISTS rotation_ended;

CREATE TABLE rotations_new (
    id               INTEGER PRIMARY KEY,
    group_name       TEXT    NOT NULL,
    group_jid        TEXT    NOT NULL,
    instance         TEXT    NOT NULL,
    trigger          TEXT    NOT NULL CHECK (trigger IN ('schedule', 'catch_up', 'manual',
                                                         'member_removed', 'member_left', 'outside')),
    scheduled_for    TEXT,
    started_at       TEXT    NOT NULL,
    finished_at      TEXT,
    status           TEXT    NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed', 'unknown')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    old_invite_code  TEXT,
    new_invite_code  TEXT,
    new_invite_link  TEXT,
    error            TEXT,
    owner            TEXT,
    last_reset_at    TEXT,
    -- The event that called for this rotation (a removal), or that reported
    -- it (an outside change); NULL for the others.
    event_id         INTEGER REFERENCES events (id)
);

INSERT INTO rotations_new (id, group_name, group_jid, instance, trigger, scheduled_for,
    started_at, finished_at, status, attempts, old_invite_code, new_invite_code,
    new_invite_link, error, owner, last_reset_at)
SELECT id, group_name, group_jid, instance, trigger, scheduled_for,
    started_at, finished_at, status, attempts, old_invite_code, new_invite_code,
    new_invite_link, error, owner, last_reset_at
FROM rotations;

DROP TABLE rotations;
ALTER TABLE rotations_new RENAME TO rotations;

CREATE INDEX rotations_by_group  ON rotations (group_name, id);
CREATE INDEX rotations_by_jid    ON rotations (group_jid, id);
CREATE INDEX rotations_by_start  ON rotations (started_at);
CREATE INDEX rotations_by_status ON rotations (status, started_at);
CREATE INDEX rotations_by_schedule ON rotations (group_name, scheduled_for) WHERE scheduled_for IS NOT NULL;
CREATE INDEX rotations_by_group_status ON rotations (group_name, status, id);
CREATE INDEX rotations_by_event ON rotations (event_id) WHERE event_id IS NOT NULL;

-- Each group's latest succeeded rotation by the time its code was issued
-- (a link changed outside while a rotation of ours was in flight is recorded
-- after that rotation, but was issued before it).
CREATE VIEW current_codes AS
SELECT group_name, group_jid, instance, invite_code, invite_link, issued_at, rotation_id
FROM (SELECT r.group_name, r.group_jid, r.instance,
             r.new_invite_code AS invite_code, r.new_invite_link AS invite_link,
             r.finished_at AS issued_at, r.id AS rotation_id,
             ROW_NUMBER() OVER (PARTITION BY r.group_name ORDER BY r.finished_at DESC, r.id DESC) AS latest
      FROM rotations AS r WHERE r.status = 'succeeded')
WHERE latest = 1;

CREATE VIEW rotations_per_month AS
SELECT substr(started_at, 1, 7) AS month, group_name,
       COUNT(*) AS rotations,
       SUM(status = 'succeeded') AS succeeded,
       SUM(status = 'failed') AS failed,
       SUM(status = 'unknown') AS unknown,
       SUM(status = 'pending') AS pending
FROM rotations
GROUP BY month, group_name;

CREATE TRIGGER rotation_ended AFTER UPDATE OF status ON rotations
WHEN NEW.status IN ('succeeded', 'failed', 'unknown') AND OLD.status IS NOT NEW.status
BEGIN
    INSERT INTO rotation_events (rotation_id, status, created_at)
    VALUES (NEW.id, NEW.status, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));
END;

-- The inbox: every event accepted (a webhook delivery or a WebSocket frame)
-- for a group invite-rotator manages, or about an instance's connection,
-- committed before the delivery is answered. The same event delivered twice
-- (RyzeAPI retries; both channels) has one digest: a digest seen within the
-- event's window (a day for group.flow, 5 s for instance.state, whose
-- data repeat) is dropped.
CREATE TABLE IF NOT EXISTS events (
    id            INTEGER PRIMARY KEY,
    received_at   TEXT    NOT NULL,
    channel       TEXT    NOT NULL CHECK (channel IN ('webhook', 'websocket')),
    instance      TEXT    NOT NULL,
    event         TEXT    NOT NULL,   -- group.flow, instance.state
    kind          TEXT    NOT NULL,   -- member_removed, member_left, link_changed, state, unparsed, other
    group_jid     TEXT,
    digest        TEXT    NOT NULL,   -- SHA-256 of instance, event and data
    data          TEXT    NOT NULL,   -- as RyzeAPI sent it, token-free, at most 64 KiB
    processed_at  TEXT,
    outcome       TEXT                -- what was done
);

CREATE INDEX IF NOT EXISTS events_waiting ON events (id) WHERE processed_at IS NULL;
CREATE INDEX IF NOT EXISTS events_by_digest ON events (digest, received_at);
CREATE INDEX IF NOT EXISTS events_by_received ON events (received_at);

-- Rotations that events call for, waiting for their quiet period: one per
-- group, kept in the database so that a removal accepted before a kill -9 is
-- acted on after the restart. A call is answered by a rotation of ours that
-- succeeded with an id above `watermark` (the newest rotation's id when the
-- burst's latest removal came): row ids, not clocks, so a clock stepped back
-- cannot make one answer twice or never.
CREATE TABLE IF NOT EXISTS event_rotations (
    group_jid       TEXT    PRIMARY KEY,
    trigger         TEXT    NOT NULL CHECK (trigger IN ('member_removed', 'member_left')),
    first_event_id  INTEGER NOT NULL REFERENCES events (id),
    first_at        TEXT    NOT NULL,   -- the first removal: no rotation later than 5 min after
    due_at          TEXT    NOT NULL,   -- the quiet period's end, moved on by each removal
    watermark       INTEGER NOT NULL    -- rotations up to this id do not answer the call
);

-- Per instance: the webhook registration and the WebSocket, for `status`.
CREATE TABLE IF NOT EXISTS event_sources (
    instance         TEXT PRIMARY KEY,
    registered_at    TEXT,
    register_error   TEXT,
    websocket_at     TEXT,
    websocket_error  TEXT,
    last_event_at    TEXT
);

COMMIT;
PRAGMA foreign_keys = ON;
