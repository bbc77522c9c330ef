-- 0005: the keys, HLS secrets and invocation counters in force on each meter (issue 5).
--
-- A meter's keys are derived from the fleet secret and meter_id until a head-end changes them, so a
-- meter no head-end ever associated with has no row. From its first ciphered association (client 48,
-- 64 or 80) on, the worker keeps one row per security setup (0.0.43.0.e.255, e = 3 utility settings,
-- 4 push, 5 firmware) up to date: the keys in force after any key_transfer or change_HLS_secret, and
-- the invocation counters, written about once a second while the meter is in use.
--
-- security_settings (0004) keeps the per-association policy and suite with fleet defaults (meter_id
-- NULL); keys are per meter and grow with the fleet, so they live here, hash-partitioned by meter_id
-- like every per-meter table. A worker that starts reads its shard's rows back: received counters so
-- that a replay stays refused, and sent counters plus a margin so that a restart never reuses one.

CREATE TABLE meter_keys (
    meter_id bigint NOT NULL,
    security_setup smallint NOT NULL,
    client_sap integer NOT NULL,
    security_suite smallint NOT NULL,
    block_key bytea NOT NULL,
    auth_key bytea NOT NULL,
    master_key bytea NOT NULL,
    hls_secret bytea,
    client_system_title bytea,
    rx_invocation_counter bigint NOT NULL,
    tx_invocation_counter bigint NOT NULL,
    keys_changed_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT meter_keys_pkey PRIMARY KEY (meter_id, security_setup),
    CONSTRAINT meter_keys_setup_check CHECK (security_setup BETWEEN 3 AND 5),
    CONSTRAINT meter_keys_suite_check CHECK (security_suite BETWEEN 0 AND 2),
    CONSTRAINT meter_keys_counters_check CHECK (rx_invocation_counter BETWEEN 0 AND 4294967295
                                                AND tx_invocation_counter BETWEEN 0 AND 4294967295)
) PARTITION BY HASH (meter_id);

COMMENT ON TABLE meter_keys IS 'Keys and invocation counters in force per meter and security setup 0.0.43.0.e.255 (e 3 US, 4 push, 5 FW), from the meter''s first ciphered association on; no row = keys derived from the fleet secret, counters never used';
COMMENT ON COLUMN meter_keys.block_key IS 'Global unicast encryption key (EK, key id 0)';
COMMENT ON COLUMN meter_keys.auth_key IS 'Authentication key (AK, key id 2)';
COMMENT ON COLUMN meter_keys.master_key IS 'Master key (KEK, key id 3): wraps keys in key_transfer (RFC 3394)';
COMMENT ON COLUMN meter_keys.hls_secret IS 'HLS secret of the association (mechanism 2); NULL for the push setup';
COMMENT ON COLUMN meter_keys.rx_invocation_counter IS 'Highest invocation counter accepted from a client under block_key (value of 0.0.43.1.e.255)';
COMMENT ON COLUMN meter_keys.tx_invocation_counter IS 'Last invocation counter the meter used under block_key';
COMMENT ON COLUMN meter_keys.keys_changed_at IS 'When a head-end last changed a key or the HLS secret (NULL: keys as derived)';

DO $$
DECLARE
    i integer;
BEGIN
    FOR i IN 0..15 LOOP
        EXECUTE format('CREATE TABLE %I PARTITION OF meter_keys FOR VALUES WITH (MODULUS 16, REMAINDER %s)',
                       'meter_keys_p' || lpad(i::text, 2, '0'), i);
    END LOOP;
END
$$;
