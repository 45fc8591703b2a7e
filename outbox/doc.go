// Package outbox moves the events that the business transactions wrote to
// the outbox (postgres.Tx.Publish) onto their Redis streams, and looks
// after the outbox tables: the forwarder (Watermill's components/forwarder,
// a SQL subscriber per outbox shard publishing to Redis Streams, a row
// acked only once Redis accepted it), its wake-up on commit (LISTEN/NOTIFY
// and the in-process CommitNotifier), the outbox's status and history, the
// realignment after a restore, and the clean-up of forwarded rows, inbox
// rows and stream entries (Janitor).
package outbox
