-- A sign-up's team projects and log live in its user row, as JSON arrays in the order
-- sent, instead of one row each in user_projects and user_logs (with a foreign-key check
-- per row). A settled sign-up is then one row and one index entry per index: the settle of
-- a sign-up storm writes about a fifth of the rows it did. Only created users hold them
-- (a rejected sign-up's are '[]'), as before. Existing rows are moved over, then the two
-- tables are dropped.
ALTER TABLE users
    ADD COLUMN projects jsonb NOT NULL DEFAULT '[]',
    ADD COLUMN logs     jsonb NOT NULL DEFAULT '[]';

UPDATE users u
SET projects = COALESCE((SELECT jsonb_agg(jsonb_build_object('name', p.name, 'completed', p.completed) ORDER BY p.position)
                         FROM user_projects p WHERE p.user_id = u.id), '[]'),
    logs     = COALESCE((SELECT jsonb_agg(jsonb_build_object('date', l.date, 'action', l.action) ORDER BY l.position)
                         FROM user_logs l WHERE l.user_id = u.id), '[]')
WHERE EXISTS (SELECT 1 FROM user_projects p WHERE p.user_id = u.id)
   OR EXISTS (SELECT 1 FROM user_logs l WHERE l.user_id = u.id);

ALTER TABLE users
    ADD CONSTRAINT users_projects_array CHECK (jsonb_typeof(projects) = 'array'),
    ADD CONSTRAINT users_logs_array CHECK (jsonb_typeof(logs) = 'array');

DROP TABLE user_projects;
DROP TABLE user_logs;
