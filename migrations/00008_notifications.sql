-- +goose Up
-- The notifications to send: one row per confirmed order, written by the
-- notifications handler in the transaction of its inbox row.
CREATE TABLE notifications (
    id          bigserial PRIMARY KEY,
    order_id    uuid NOT NULL,
    customer_id text NOT NULL,
    kind        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE notifications;
