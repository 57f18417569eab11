-- The tamper-evident ledger (issue 14): every settled fact about a rotation
-- (its final status, a later settlement of an `unknown`, an outside change)
-- appended, in the same transaction as the change, as one canonical JSON
-- entry carrying the SHA-256 of the entry before it (docs/audit.md tells
-- the encoding). Nothing here is updated or deleted: a correction is a new
-- entry. `rotation_id` repeats the entry's `rotation`.
CREATE TABLE ledger (
    seq          INTEGER PRIMARY KEY,
    rotation_id  INTEGER NOT NULL,
    at           TEXT    NOT NULL,   -- the entry's `at`, for `audit export --since`
    entry        TEXT    NOT NULL,
    hash         TEXT    NOT NULL
);
CREATE INDEX ledger_by_time ON ledger (at);

CREATE TRIGGER ledger_no_update BEFORE UPDATE ON ledger
BEGIN
    SELECT RAISE(ABORT, 'the ledger is append-only');
END;
CREATE TRIGGER ledger_no_delete BEFORE DELETE ON ledger
BEGIN
    SELECT RAISE(ABORT, 'the ledger is append-only');
END;

-- The ledger's head (`seq`, `hash`) signed with `[audit] signing_key_file`:
-- every hour, at each stop and at each `audit export`. `line` is the
-- checkpoint as published (canonical JSON with its signature).
CREATE TABLE checkpoints (
    id          INTEGER PRIMARY KEY,
    seq         INTEGER NOT NULL,
    hash        TEXT    NOT NULL,
    signed_at   TEXT    NOT NULL,
    line        TEXT    NOT NULL
);

CREATE TRIGGER checkpoints_no_update BEFORE UPDATE ON checkpoints
BEGIN
    SELECT RAISE(ABORT, 'checkpoints are append-only');
END;
CREATE TRIGGER checkpoints_no_delete BEFORE DELETE ON checkpoints
BEGIN
    SELECT RAISE(ABORT, 'checkpoints are append-only');
END;

-- Rotations settled before the ledger existed are entered once, at the
-- first open after this migration (they need SHA-256, which SQLite lacks).
CREATE TABLE ledger_start (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    backfilled  INTEGER NOT NULL
);
INSERT INTO ledger_start (id, backfilled) VALUES (1, 0);

-- The console's live code of a group (the newest code issued to it, by
-- `finished_at`), found by a seek.
CREATE INDEX rotations_issued_by_group ON rotations (group_name, finished_at, id)
    WHERE new_invite_code IS NOT NULL;
