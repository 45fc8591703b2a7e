-- +goose Up

-- What a message parked for a lock wait that ran out was waiting for: the
-- keys its handler named (postgres.Held), such as the SKUs of the stock
-- rows it locks, sorted; NULL for any other passing failure. Of the
-- messages of one handler waiting for the same keys, one is tried again
-- every ParkBackoff.Initial and the others wait until it succeeds, so that
-- a row held elsewhere costs one attempt a second, not one per waiting
-- message, and its messages go back the moment it frees (package parked).
ALTER TABLE parked_messages ADD COLUMN waits_on text[];

-- Until when a message taken to be put back on its stream is out of the
-- other republishers' reach (and of a wake-up's): set by the lease,
-- cleared when the message is parked again.
ALTER TABLE parked_messages ADD COLUMN leased_until timestamptz;

-- +goose Down
ALTER TABLE parked_messages DROP COLUMN leased_until;
ALTER TABLE parked_messages DROP COLUMN waits_on;
