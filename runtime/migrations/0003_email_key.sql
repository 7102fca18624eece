-- Emails are unique under one normalisation for all of Unicode, not only ASCII.
--
-- 0002 indexed lower(email); under the C collation of our databases Postgres'
-- lower() folds ASCII only, while a batch compared Rust's to_lowercase(), so
-- `JOSÉ@example.com` and `josé@example.com` could both end CREATED when they
-- settled in different batches. Now the key is computed in one place, in Rust
-- (tps_contract::command::email_key: NFKC, Unicode lower case, NFKC), stored by
-- the worker in `email_key`, and the unique index is on that column alone.

ALTER TABLE users ADD COLUMN email_key text;
-- Rows keyed here by SQL, to be confirmed by the Rust function (see below).
ALTER TABLE users ADD COLUMN email_key_pending boolean NOT NULL DEFAULT false;

-- Existing rows get the same normalisation in SQL, so that the unique index can
-- be built now: normalize() is Postgres' Unicode normalisation (UTF8 databases),
-- and lower() under the ICU root collation ("und-x-icu") applies the full Unicode
-- lower-case mapping, final sigma included, as Rust's str::to_lowercase does.
-- Both sides follow the Unicode standard, but their Unicode versions may differ
-- for characters assigned recently, so every row keyed here is marked pending,
-- and each worker re-keys pending rows with the Rust function at start
-- (worker/src/users/rekey.rs) before it settles anything: after that, every key
-- in the table comes from the one function.
UPDATE users
SET email_key = normalize(lower(normalize(email, NFKC) COLLATE "und-x-icu"), NFKC),
    email_key_pending = true
WHERE email IS NOT NULL;

-- Unicode twins that the old index let through (both CREATED in different
-- batches) keep their answer: a CREATED user stays CREATED. The earliest keeps
-- the key; the later ones hold none (NULL is outside the index), so every new
-- sign-up of that email is still refused as a duplicate of the earliest.
WITH ranked AS (
    SELECT id, row_number() OVER (PARTITION BY email_key ORDER BY processed_at, stream_seq, id) AS n
    FROM users
    WHERE status = 'CREATED' AND email_key IS NOT NULL
)
UPDATE users u SET email_key = NULL, email_key_pending = false
FROM ranked r
WHERE u.id = r.id AND r.n > 1;

DROP INDEX users_email_unique;
-- The same rule as before, on the normalised key: one CREATED user per email, and
-- between two shards' transactions the second insert waits for the first.
CREATE UNIQUE INDEX users_email_key_unique ON users (email_key) WHERE status = 'CREATED' AND email_key IS NOT NULL;
CREATE INDEX users_email_key_pending ON users (id) WHERE email_key_pending;
