-- The hooks' outbox, named for what it holds: one row per rotation ended
-- (succeeded, failed or unknown), written by the trigger in the same
-- transaction, until the hooks' worker turns it into deliveries
-- (`hook_deliveries`). Formerly `rotation_events`, which said less. SQLite
-- rewrites the trigger that fills it.
ALTER TABLE rotation_events RENAME TO hook_outbox;
