-- Every invite code the history knows, found by its value: outside text
-- (hook replies, API errors, event data) is masked of the codes it quotes
-- before it is stored, logged or shown, one seek per code-shaped word.
CREATE INDEX rotations_by_new_code ON rotations (new_invite_code) WHERE new_invite_code IS NOT NULL;
CREATE INDEX rotations_by_old_code ON rotations (old_invite_code) WHERE old_invite_code IS NOT NULL;
