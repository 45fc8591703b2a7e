-- +goose Up

-- The forwarders are now woken after the commit, by the processes that
-- publish (events.CommitNotifier): a NOTIFY inside the publishing
-- transaction made every such commit wait for a cluster-wide lock.
DROP TRIGGER watermill_outbox_notify ON watermill_outbox;
DROP FUNCTION watermill_outbox_notify();

-- +goose Down
-- +goose StatementBegin
CREATE FUNCTION watermill_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('watermill_outbox', '');
    RETURN NULL;
END;
$$;
-- +goose StatementEnd

CREATE TRIGGER watermill_outbox_notify
    AFTER INSERT ON watermill_outbox
    FOR EACH STATEMENT EXECUTE FUNCTION watermill_outbox_notify();
