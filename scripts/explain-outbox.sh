#!/usr/bin/env bash
# Compares the plan of watermill-sql's default outbox select with orderstream's
# row-comparison select (outbox/outbox_schema.go) on an outbox of 1,000,000
# rows with the forwarder about half way: EXPLAIN ANALYZE of one poll each.
# Needs psql and the orderstream binary (make build). Uses database
# explain_outbox on the server of DATABASE_URL's host, and drops it after.
set -euo pipefail
cd "$(dirname "$0")/.."
server=${PGURL:-postgres://postgres@127.0.0.1:5432}
db=explain_outbox
psql() { command psql "$server/$1" -qAt "${@:2}"; }

psql postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
trap 'psql postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)"' EXIT
DATABASE_URL="$server/$db?sslmode=disable" bin/orderstream migrate 2>/dev/null
for _ in $(seq 1 10); do # ten transactions of 100,000 rows, as many publishers would
	psql $db -c "INSERT INTO watermill_outbox (uuid, payload, transaction_id)
		SELECT gen_random_uuid()::text,
		       '{\"destination_topic\":\"orders.placed\",\"uuid\":\"x\",\"payload\":\"e30=\",\"metadata\":{}}',
		       pg_current_xact_id()
		FROM generate_series(1, 100000)"
done
# The forwarder has passed four transactions and half of the fifth.
psql $db -c "INSERT INTO watermill_offsets_outbox (consumer_group, offset_acked, last_processed_transaction_id)
	SELECT 'forwarder', \"offset\", transaction_id FROM watermill_outbox
	WHERE transaction_id = (SELECT DISTINCT transaction_id FROM watermill_outbox ORDER BY 1 OFFSET 4 LIMIT 1)
	ORDER BY \"offset\" LIMIT 1 OFFSET 50000" -c "VACUUM ANALYZE watermill_outbox"

lock="SELECT offset_acked, last_processed_transaction_id FROM watermill_offsets_outbox WHERE consumer_group = 'forwarder' FOR UPDATE"
explain() {
	echo "== $1"
	psql $db -c "BEGIN ISOLATION LEVEL REPEATABLE READ" -c "EXPLAIN (ANALYZE, COSTS OFF) $2" -c "ROLLBACK" |
		grep -E "Scan on watermill_outbox|Index Cond|rows=[0-9]+ loops|Execution Time" | grep -v offsets
}
explain "watermill-sql default select" "
	SELECT * FROM (WITH last_processed AS ($lock)
		SELECT \"offset\", transaction_id, uuid, payload, metadata FROM watermill_outbox
		WHERE ((transaction_id = (SELECT last_processed_transaction_id FROM last_processed)
		        AND \"offset\" > (SELECT offset_acked FROM last_processed))
		       OR transaction_id > (SELECT last_processed_transaction_id FROM last_processed))
		  AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())) AS messages
	ORDER BY transaction_id, \"offset\" LIMIT 1000"
explain "orderstream row-comparison select" "
	WITH last_processed AS ($lock)
	SELECT \"offset\", transaction_id, uuid, payload, metadata FROM watermill_outbox
	WHERE (transaction_id, \"offset\") > ((SELECT last_processed_transaction_id FROM last_processed),
	                                    (SELECT offset_acked FROM last_processed))
	  AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
	ORDER BY transaction_id, \"offset\" LIMIT 1000"
