-- Sign-ups: one row per settled sign-up, its team's projects and its log, all
-- written by the worker in the transaction that settles the batch.

CREATE TABLE users (
    -- The client-chosen id (= Nats-Msg-Id): a redelivered command is a no-op.
    id           uuid PRIMARY KEY,
    status       text             NOT NULL CHECK (status IN ('CREATED', 'REJECTED')),
    reason       text             CHECK (reason IN ('DUPLICATE_EMAIL')),
    name         text             NOT NULL,
    email        text,
    age          integer          NOT NULL CHECK (age BETWEEN 0 AND 150),
    score        double precision NOT NULL,
    active       boolean          NOT NULL,
    country      text             NOT NULL,
    team_name    text             NOT NULL,
    team_leader  boolean          NOT NULL,
    -- Digest of the body as accepted: the same id with another body is a conflict.
    fingerprint  text             NOT NULL,
    -- JetStream stream sequence: the order of arrival on the shard.
    stream_seq   bigint           NOT NULL,
    created_at   timestamptz      NOT NULL,
    processed_at timestamptz      NOT NULL DEFAULT now(),
    CHECK ((status = 'CREATED') = (reason IS NULL))
);

-- Email is unique, case-insensitively, among created users. Sign-ups of one
-- email may sit on different shards (they are sharded by id), so this index is
-- what decides between two workers: the second insert waits for the first
-- transaction and then finds the conflict. Rejected rows keep their email.
CREATE UNIQUE INDEX users_email_unique ON users (lower(email)) WHERE status = 'CREATED' AND email IS NOT NULL;

CREATE TABLE user_projects (
    user_id   uuid    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    position  integer NOT NULL,
    name      text    NOT NULL,
    completed boolean NOT NULL,
    PRIMARY KEY (user_id, position)
);

CREATE TABLE user_logs (
    user_id  uuid    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    position integer NOT NULL,
    -- As sent: an ISO 8601 date or an RFC 3339 date-time.
    date     text    NOT NULL,
    action   text    NOT NULL CHECK (action IN ('login', 'logout')),
    PRIMARY KEY (user_id, position)
);
