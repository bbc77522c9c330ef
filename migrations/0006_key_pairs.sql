-- 0006: key pairs and certificates of suites 1 and 2 (issue 5).
--
-- A meter's signing and key-agreement keys are derived from the fleet secret until a head-end asks it to
-- generate a new pair (Security setup v1 method 4); such a key is random and lives only here (PKCS #8 DER,
-- on the meter's security-setup-3 row; NULL = the derived key). The certificates a meter holds (its own,
-- issued by the fleet CA, the CA's, and the head-end certificates imported) go to `certificates` (0004),
-- rewritten whole for a meter whenever they change.

ALTER TABLE meter_keys ADD COLUMN signing_key bytea, ADD COLUMN agreement_key bytea;
COMMENT ON COLUMN meter_keys.signing_key IS 'ECDSA private key (PKCS #8 DER) generated on a head-end''s request; NULL = derived from the fleet secret';
COMMENT ON COLUMN meter_keys.agreement_key IS 'ECDH private key (PKCS #8 DER) generated on a head-end''s request; NULL = derived from the fleet secret';
COMMENT ON TABLE certificates IS 'X.509 certificates a meter holds (class 64 v1, suites 1 and 2): entity 0 server, 1 client, 2 CA; type 0 digital signature, 1 key agreement; serial_number in decimal, issuer and subject as RFC 4514 text';
