-- `status` asks, for every configured group at once, for its latest rotation,
-- its latest success and its latest failed or unknown one: one index seek each.
CREATE INDEX rotations_by_group_status ON rotations (group_name, status, id);

-- Views for auditors (see the README's audit queries).

-- The latest code invite-rotator issued to each group.
CREATE VIEW current_codes AS
SELECT r.group_name, r.group_jid, r.instance,
       r.new_invite_code AS invite_code, r.new_invite_link AS invite_link,
       r.finished_at AS issued_at, r.id AS rotation_id
FROM (SELECT group_name, MAX(id) AS id FROM rotations
      WHERE status = 'succeeded' GROUP BY group_name) AS latest
JOIN rotations AS r ON r.id = latest.id;

-- Rotations per calendar month (UTC, from started_at) and group, by status.
CREATE VIEW rotations_per_month AS
SELECT to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM') AS month, group_name,
       COUNT(*) AS rotations,
       COUNT(*) FILTER (WHERE status = 'succeeded') AS succeeded,
       COUNT(*) FILTER (WHERE status = 'failed') AS failed,
       COUNT(*) FILTER (WHERE status = 'unknown') AS unknown,
       COUNT(*) FILTER (WHERE status = 'pending') AS pending
FROM rotations
GROUP BY 1, group_name;
