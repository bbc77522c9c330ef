-- 0008: what a head-end received from the meters' pushes, as `fleet hes-sink` records it (issue 6).
--
-- One row per push and meter, keyed by meter, push setup and the notification's own date-time (the
-- meter clock when it pushed), so a push delivered twice (a retry after a lost answer) counts once.
-- The push success rate is then received / due per push type and meter; the pushes due come with the
-- push schedules.

CREATE TABLE push_received (
    meter_id bigint NOT NULL,
    push_logical_name text NOT NULL,
    notified_at timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    long_invoke_id bigint NOT NULL,
    ciphered boolean NOT NULL,
    apdu_bytes integer NOT NULL,
    peer text,
    CONSTRAINT push_received_pkey PRIMARY KEY (meter_id, push_logical_name, notified_at)
) PARTITION BY HASH (meter_id);

COMMENT ON TABLE push_received IS 'Pushes (DataNotification) received by fleet hes-sink, deciphered and attributed to their meter; a push received twice is one row';
COMMENT ON COLUMN push_received.notified_at IS 'The date-time the notification carries (meter clock, IST), as UTC';

DO $$
DECLARE
    i integer;
BEGIN
    FOR i IN 0..15 LOOP
        EXECUTE format('CREATE TABLE %I PARTITION OF push_received FOR VALUES WITH (MODULUS 16, REMAINDER %s)',
                       'push_received_p' || lpad(i::text, 2, '0'), i);
    END LOOP;
END
$$;
