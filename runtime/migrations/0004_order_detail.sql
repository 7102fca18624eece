-- Why the worker gave up on an order it could not settle: such an order is
-- stored REJECTED with reason INVALID (the contract's reasons stay as they are),
-- and the failure it kept hitting is kept here for support and audits. NULL for
-- every order settled the ordinary way.
ALTER TABLE orders ADD COLUMN detail text;
