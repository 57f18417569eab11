-- When the daemon first saw each group. Fires before that are never caught up:
-- a group added to the config first rotates at its first due time after this.
CREATE TABLE groups_seen (
    group_name     TEXT PRIMARY KEY,
    first_seen_at  TIMESTAMPTZ NOT NULL
);

-- The token bucket of each token, shared by every process using this database
-- (every node, and a `rotate` beside them). A token is named by a SHA-256 of
-- it, never by itself. Times are Unix microseconds.
CREATE TABLE rate_budget (
    token_key        TEXT PRIMARY KEY,
    next_grant_us    BIGINT NOT NULL,
    paused_until_us  BIGINT NOT NULL DEFAULT 0
);

-- Daemon rotations by due time, for catch-up at start.
CREATE INDEX rotations_by_schedule ON rotations (group_name, scheduled_for) WHERE scheduled_for IS NOT NULL;
