-- When the latest reset call of a rotation was sent (NULL before any). A
-- rotation left unsettled (a kill, a crash, a stop) is read back no sooner
-- than one api.timeout after it: a reset answered with a 5xx, or cut off,
-- may still be landing, and a read too soon would take it for one that never
-- happened.
ALTER TABLE rotations ADD COLUMN last_reset_at TEXT;
