-- +goose NO TRANSACTION
-- +goose Up

-- Cancellation: an order moves to cancelling in the transaction that writes
-- its OrderCancelled event, and to cancelled once the inventory says that
-- it holds nothing (StockReleased). cancelled_at is the database clock's
-- time of that last step.
--
-- The new CHECKs are added NOT VALID, which needs the table's lock only for
-- a moment, and validated after, in statements of their own: validation
-- reads every row, under a lock that lets orders be placed and settled
-- meanwhile. The widened status CHECK replaces the old one in the same
-- statement, so no moment is without one. Each statement can run again
-- (NO TRANSACTION: a crash between two leaves the version unrecorded, and
-- the next start runs them all).
ALTER TABLE orders
    DROP CONSTRAINT IF EXISTS orders_status_check,
    DROP CONSTRAINT IF EXISTS orders_cancelled_at_check,
    ADD CONSTRAINT orders_status_check
        CHECK (status IN ('pending', 'confirmed', 'rejected', 'cancelling', 'cancelled')) NOT VALID,
    ADD COLUMN IF NOT EXISTS cancelled_at timestamptz,
    ADD CONSTRAINT orders_cancelled_at_check
        CHECK ((status = 'cancelled') = (cancelled_at IS NOT NULL)) NOT VALID;
ALTER TABLE orders VALIDATE CONSTRAINT orders_status_check;
ALTER TABLE orders VALIDATE CONSTRAINT orders_cancelled_at_check;

-- The orders whose cancellation the inventory has handled: their
-- reservation was released (or there was none), and an OrderPlaced handled
-- after it, its cancellation having overtaken it, reserves nothing.
CREATE TABLE IF NOT EXISTS stock_releases (
    order_id    uuid        PRIMARY KEY,
    released_at timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE stock_releases;
ALTER TABLE orders
    DROP CONSTRAINT orders_cancelled_at_check,
    DROP COLUMN cancelled_at,
    DROP CONSTRAINT orders_status_check,
    ADD CONSTRAINT orders_status_check CHECK (status IN ('pending', 'confirmed', 'rejected'));
