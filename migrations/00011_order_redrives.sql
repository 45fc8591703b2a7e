-- +goose Up

-- The orders the process manager re-drove (package orders, redrive.go): an
-- order pending or cancelling for longer than ORDER_SETTLE_TIMEOUT has its
-- retained outbox events written again, and is tried again after a
-- growing wait. A row goes once its order has settled.
CREATE TABLE order_redrives (
    order_id      uuid        PRIMARY KEY REFERENCES orders (id) ON DELETE CASCADE,
    attempts      int         NOT NULL CHECK (attempts > 0),
    first_at      timestamptz NOT NULL DEFAULT now(),
    last_at       timestamptz NOT NULL DEFAULT now(),
    next_at       timestamptz NOT NULL,
    last_outcome  text        NOT NULL
);

-- Releases are forgotten after INBOX_RETENTION (inventory.ForgetReleases),
-- by this index.
CREATE INDEX stock_releases_released_at ON stock_releases (released_at);

-- +goose Down
DROP INDEX stock_releases_released_at;
DROP TABLE order_redrives;
