-- 0009: the pushes the meters owed, and the success rate a head-end achieved (issue 6).
--
-- Workers in dial mode write one row per scheduled push when it is settled: sent (the head-end took the
-- connection and the push) or failed (after the push setup's retries). long_invoke_id is the minute of
-- the due time (mod 2^24), which the push carries, so a due push and its receipt in push_received
-- (written by fleet hes-sink) meet on (meter, push setup, long_invoke_id).

CREATE TABLE push_due (
    meter_id bigint NOT NULL,
    push_logical_name text NOT NULL,
    due_at timestamptz NOT NULL,
    long_invoke_id bigint NOT NULL,
    outcome text NOT NULL,
    attempts integer NOT NULL,
    settled_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT push_due_pkey PRIMARY KEY (meter_id, push_logical_name, due_at),
    CONSTRAINT push_due_outcome_check CHECK (outcome IN ('SENT', 'FAILED'))
) PARTITION BY HASH (meter_id);
COMMENT ON TABLE push_due IS 'Scheduled pushes the meters owed (dial mode), as settled: SENT or FAILED after the retries';

DO $$
DECLARE
    i integer;
BEGIN
    FOR i IN 0..15 LOOP
        EXECUTE format('CREATE TABLE %I PARTITION OF push_due FOR VALUES WITH (MODULUS 16, REMAINDER %s)',
                       'push_due_p' || lpad(i::text, 2, '0'), i);
    END LOOP;
END
$$;

CREATE VIEW push_success AS
SELECT d.meter_id, d.push_logical_name,
       count(*) AS pushes_due,
       count(r.meter_id) AS pushes_received,
       count(r.meter_id)::numeric / count(*) AS success_rate
FROM push_due d
LEFT JOIN push_received r
       ON r.meter_id = d.meter_id AND r.push_logical_name = d.push_logical_name
      AND r.long_invoke_id = d.long_invoke_id
GROUP BY d.meter_id, d.push_logical_name;
COMMENT ON VIEW push_success IS 'Push success rate per meter and push setup: pushes received by the head-end (push_received) / pushes due (push_due)';
