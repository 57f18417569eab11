-- `status` asks, for every configured group at once, for its latest rotation,
-- its latest success and its latest failed or unknown one. With this index
-- each of those is one seek (SQLite's MAX optimisation), so 100,000 groups
-- cost 100,000 seeks, not a scan of the history per group.
CREATE INDEX rotations_by_group_status ON rotations (group_name, status, id);

-- Views for auditors in sqlite3 (see the README's audit queries).

-- The latest code invite-rotator issued to each group: the live one unless the
-- link was changed outside invite-rotator since.
CREATE VIEW current_codes AS
SELECT r.group_name, r.group_jid, r.instance,
       r.new_invite_code AS invite_code, r.new_invite_link AS invite_link,
       r.finished_at AS issued_at, r.id AS rotation_id
FROM (SELECT group_name, MAX(id) AS id FROM rotations
      WHERE status = 'succeeded' GROUP BY group_name) AS latest
JOIN rotations AS r ON r.id = latest.id;

-- Rotations per calendar month (UTC, from started_at) and group, by status.
CREATE VIEW rotations_per_month AS
SELECT substr(started_at, 1, 7) AS month, group_name,
       COUNT(*) AS rotations,
       SUM(status = 'succeeded') AS succeeded,
       SUM(status = 'failed') AS failed,
       SUM(status = 'unknown') AS unknown,
       SUM(status = 'pending') AS pending
FROM rotations
GROUP BY month, group_name;
