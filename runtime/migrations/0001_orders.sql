-- Tickets, orders, and the fences that keep one worker per shard.

CREATE TABLE tickets (
    id             uuid PRIMARY KEY,
    name           text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    price_cents    bigint      NOT NULL CHECK (price_cents >= 0),
    total_quantity integer     NOT NULL CHECK (total_quantity >= 0),
    -- The invariant of the product: stock never goes negative, whatever a bug does.
    available      integer     NOT NULL CHECK (available >= 0 AND available <= total_quantity),
    max_per_order  integer     NOT NULL DEFAULT 5 CHECK (max_per_order >= 1),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    name_tsv       tsvector GENERATED ALWAYS AS (to_tsvector('simple', name)) STORED
);
CREATE INDEX tickets_name_tsv ON tickets USING gin (name_tsv);
CREATE INDEX tickets_updated_at ON tickets (updated_at);

-- One row per settled order. The primary key is the command id (= Nats-Msg-Id),
-- which is what makes a redelivered command a no-op.
CREATE TABLE orders (
    id              uuid PRIMARY KEY,
    user_id         text        NOT NULL,
    ticket_id       uuid        NOT NULL,
    quantity        integer     NOT NULL CHECK (quantity > 0),
    status          text        NOT NULL CHECK (status IN ('CONFIRMED', 'REJECTED')),
    reason          text        CHECK (reason IN ('SOLD_OUT', 'INSUFFICIENT_STOCK', 'INVALID')),
    idempotency_key text        NOT NULL,
    -- JetStream stream sequence: the order of arrival on the shard.
    stream_seq      bigint      NOT NULL,
    created_at      timestamptz NOT NULL,
    processed_at    timestamptz NOT NULL DEFAULT now(),
    CHECK ((status = 'CONFIRMED') = (reason IS NULL))
);
CREATE INDEX orders_by_user ON orders (user_id, created_at DESC, id DESC);
CREATE INDEX orders_by_ticket ON orders (ticket_id) WHERE status = 'CONFIRMED';

-- Fencing tokens. A worker that takes a shard lease bumps its row to the lease's
-- token; every settling transaction re-checks it, so a worker whose lease was
-- taken over can no longer commit anything for that shard.
CREATE TABLE shard_fences (
    stream text    NOT NULL,
    shard  integer NOT NULL,
    token  bigint  NOT NULL,
    owner  text    NOT NULL,
    PRIMARY KEY (stream, shard)
);
