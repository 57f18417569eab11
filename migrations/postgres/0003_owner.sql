-- The process that wrote each row, `<boot id>/<pid>/<start time in ticks>`,
-- so that a later process can tell a `pending` row whose writer died (a kill,
-- a crash, a power cut) from one still in progress, and settle it at once.
ALTER TABLE rotations ADD COLUMN owner TEXT;
