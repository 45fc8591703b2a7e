-- +goose Up

-- Outbox shards 1 to 15, beside shard 0 (watermill_outbox, 00001): the
-- watermill-sql topics outbox_1 … outbox_15, each with its own offsets table,
-- forwarded each by its own loop (package outbox). A writer spreads its
-- events over the first OUTBOX_SHARDS of them by a hash of the order id; the
-- forwarders read every shard, so that changing that count leaves no row
-- unforwarded. The tables are those of 00001, as watermill-sql's
-- DefaultPostgreSQLSchema and DefaultPostgreSQLOffsetsAdapter make them.
-- +goose StatementBegin
DO $$
BEGIN
    FOR k IN 1..15 LOOP
        EXECUTE format($t$
            CREATE TABLE watermill_outbox_%s (
                "offset"       bigserial,
                uuid           varchar(36) NOT NULL,
                created_at     timestamp   NOT NULL DEFAULT CURRENT_TIMESTAMP,
                payload        json        DEFAULT NULL,
                metadata       json        DEFAULT NULL,
                transaction_id xid8        NOT NULL,
                PRIMARY KEY (transaction_id, "offset")
            )$t$, k);
        EXECUTE format($t$
            CREATE TABLE watermill_offsets_outbox_%s (
                consumer_group                varchar(255) NOT NULL,
                offset_acked                  bigint,
                last_processed_transaction_id xid8         NOT NULL,
                PRIMARY KEY (consumer_group)
            )$t$, k);
    END LOOP;
END
$$;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
DO $$
BEGIN
    FOR k IN 1..15 LOOP
        EXECUTE format('DROP TABLE watermill_offsets_outbox_%s', k);
        EXECUTE format('DROP TABLE watermill_outbox_%s', k);
    END LOOP;
END
$$;
-- +goose StatementEnd
