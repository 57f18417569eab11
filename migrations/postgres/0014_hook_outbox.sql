-- The hooks' outbox, named for what it holds: one row per rotation ended
-- (succeeded, failed or unknown), written by the trigger in the same
-- transaction, until the hooks' worker turns it into deliveries
-- (`hook_deliveries`). Formerly `rotation_events`, which said less. The
-- trigger's function names the table in its body: replaced.
ALTER TABLE rotation_events RENAME TO hook_outbox;

CREATE OR REPLACE FUNCTION rotation_ended() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO hook_outbox (rotation_id, status, created_at)
    VALUES (NEW.id, NEW.status, clock_timestamp());
    RETURN NEW;
END;
$$;
