package handlertest

import (
	"fmt"
	"slices"
	"strings"

	"github.com/lib/pq"

	"github.com/orderstream/orderstream/postgres"
)

// snapshot is the database's content: per table, its row count and a hash
// of its rows.
type snapshot map[string]tableState

type tableState struct {
	rows int
	hash string
}

// snapshot reads every table of the public schema but goose's own, in one
// statement (one consistent view).
func (k *Kit) snapshot() snapshot {
	k.t.Helper()
	ctx := k.t.Context()
	rows, err := k.db.QueryContext(ctx, `
		SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'goose_db_version' ORDER BY tablename`)
	if err != nil {
		k.t.Fatalf("handlertest: list tables: %v", err)
	}
	var parts []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			k.t.Fatalf("handlertest: list tables: %v", err)
		}
		parts = append(parts, fmt.Sprintf(`SELECT %s, count(*), coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') FROM %s t`,
			pq.QuoteLiteral(name), pq.QuoteIdentifier(name)))
	}
	if err := rows.Err(); err != nil {
		k.t.Fatalf("handlertest: list tables: %v", err)
	}
	rows.Close()
	s := snapshot{}
	rows, err = k.db.QueryContext(ctx, strings.Join(parts, " UNION ALL "))
	if err != nil {
		k.t.Fatalf("handlertest: read tables: %v", err)
	}
	defer rows.Close()
	for rows.Next() {
		var name string
		var st tableState
		if err := rows.Scan(&name, &st.rows, &st.hash); err != nil {
			k.t.Fatalf("handlertest: read tables: %v", err)
		}
		s[name] = st
	}
	if err := rows.Err(); err != nil {
		k.t.Fatalf("handlertest: read tables: %v", err)
	}
	return s
}

// changed are the tables whose content differs in later.
func (s snapshot) changed(later snapshot) []string {
	var names []string
	for name, st := range later {
		if s[name] != st {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// outboxRows is how many rows the outbox shards hold: the tables of
// watermill-sql's topics, watermill_ and the topic's name.
func (s snapshot) outboxRows() int {
	n := 0
	for shard := range postgres.MaxOutboxShards {
		n += s["watermill_"+postgres.OutboxTopic(shard)].rows
	}
	return n
}
