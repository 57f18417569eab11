-- At most one pending rotation per group, as a constraint: the store's
-- insert of a pending row names this index (`ON CONFLICT ... DO NOTHING`),
-- the same statement on SQLite and PostgreSQL. A history written before
-- this holds no two pending rows of one group (the insert checked it).
CREATE UNIQUE INDEX IF NOT EXISTS rotations_one_pending ON rotations (group_jid) WHERE status = 'pending';
