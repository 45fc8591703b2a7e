-- +goose Up

-- Messages whose handler kept failing for a passing reason (a row lock held
-- elsewhere, a timeout, the database away), parked until their next attempt
-- instead of being redelivered in a loop by the consumer that holds them.
-- A worker puts each one back on its stream once next_attempt_at has come,
-- with the same UUID, then deletes the row (package parked).
CREATE TABLE parked_messages (
    handler         text        NOT NULL,
    message_uuid    text        NOT NULL,
    stream          text        NOT NULL, -- the Redis key, prefix included
    payload         bytea       NOT NULL,
    metadata        jsonb       NOT NULL,
    attempts        int         NOT NULL CHECK (attempts > 0), -- times parked
    first_failed_at timestamptz NOT NULL,
    next_attempt_at timestamptz NOT NULL,
    last_error      text        NOT NULL,
    PRIMARY KEY (handler, message_uuid)
);

CREATE INDEX parked_messages_next_attempt_at ON parked_messages (next_attempt_at);

-- +goose Down
DROP TABLE parked_messages;
