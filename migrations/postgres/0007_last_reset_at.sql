-- When the latest reset call of a rotation was sent (NULL before any). A
-- rotation left unsettled is read back no sooner than one api.timeout after
-- it: a reset answered with a 5xx, or cut off, may still be landing.
ALTER TABLE rotations ADD COLUMN last_reset_at TIMESTAMPTZ;
