-- +goose Up

-- Orders and their items. created_at and updated_at come from the database
-- clock so that updated_at - created_at is the commit-to-settled latency.
CREATE TABLE orders (
    id          uuid        PRIMARY KEY,
    customer_id text        NOT NULL,
    status      text        NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'confirmed', 'rejected')),
    reason      text        CHECK (reason IN ('insufficient_stock', 'unknown_sku')),
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    CHECK ((status = 'rejected') = (reason IS NOT NULL))
);

CREATE TABLE order_items (
    order_id uuid    NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    position int     NOT NULL,
    sku      text    NOT NULL,
    quantity int     NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (order_id, position),
    UNIQUE (order_id, sku)
);

-- An Idempotency-Key remembers the request it first came with. The key is
-- inserted before its order in the same transaction, so the foreign key is
-- checked at commit.
CREATE TABLE idempotency_keys (
    key          text        PRIMARY KEY,
    request_hash bytea       NOT NULL,
    order_id     uuid        NOT NULL REFERENCES orders (id) ON DELETE CASCADE
                             DEFERRABLE INITIALLY DEFERRED,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- available is what can still be reserved; reserved is what orders hold.
-- PUT /inventory sets available; a reservation moves units from one to the
-- other, so available + reserved changes only through PUT /inventory.
CREATE TABLE stock (
    sku        text        PRIMARY KEY,
    available  int         NOT NULL CHECK (available >= 0),
    reserved   int         NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE reservations (
    order_id   uuid        NOT NULL,
    sku        text        NOT NULL REFERENCES stock (sku),
    quantity   int         NOT NULL CHECK (quantity > 0),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (order_id, sku)
);

-- The inbox: one row per (handler, message UUID), written in the same
-- transaction as the handler's effect, so an effect happens once per event.
CREATE TABLE inbox (
    handler      text        NOT NULL,
    message_uuid text        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (handler, message_uuid)
);

CREATE INDEX inbox_processed_at ON inbox (processed_at);

-- The Watermill outbox (watermill-sql v3, DefaultPostgreSQLSchema and
-- DefaultPostgreSQLOffsetsAdapter for the SQL topic "outbox"). A publisher
-- bound to a transaction cannot create its table, so it exists before any
-- process serves.
CREATE TABLE watermill_outbox (
    "offset"       bigserial,
    uuid           varchar(36) NOT NULL,
    created_at     timestamp   NOT NULL DEFAULT CURRENT_TIMESTAMP,
    payload        json        DEFAULT NULL,
    metadata       json        DEFAULT NULL,
    transaction_id xid8        NOT NULL,
    PRIMARY KEY (transaction_id, "offset")
);

CREATE TABLE watermill_offsets_outbox (
    consumer_group                varchar(255) NOT NULL,
    offset_acked                  bigint,
    last_processed_transaction_id xid8         NOT NULL,
    PRIMARY KEY (consumer_group)
);

-- +goose Down
DROP TABLE watermill_offsets_outbox;
DROP TABLE watermill_outbox;
DROP TABLE inbox;
DROP TABLE reservations;
DROP TABLE stock;
DROP TABLE idempotency_keys;
DROP TABLE order_items;
DROP TABLE orders;
