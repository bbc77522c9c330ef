-- 0007: the meter reader's LLS password when a head-end changed it (client 48 writes attribute 7 of
-- 0.0.40.0.2.255, event 161). Kept on the meter's security-setup-3 row; NULL = derived from the fleet secret.

ALTER TABLE meter_keys ADD COLUMN lls_password bytea;
COMMENT ON COLUMN meter_keys.lls_password IS 'Meter reader (client 32) LLS password set by a head-end; NULL = derived from the fleet secret';
