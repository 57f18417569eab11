-- At most one pending rotation per group, as a constraint: the store's
-- insert of a pending row names this index (`ON CONFLICT ... DO NOTHING`).
CREATE UNIQUE INDEX rotations_one_pending ON rotations (group_jid) WHERE status = 'pending';
