-- +goose Up

-- Wake the forwarder when events are committed instead of having it poll
-- often: one notification per inserting statement, delivered at commit
-- (and not at all on rollback). The forwarder still polls slowly, in case a
-- notification is lost while it reconnects.
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

-- +goose Down
DROP TRIGGER watermill_outbox_notify ON watermill_outbox;
DROP FUNCTION watermill_outbox_notify();
