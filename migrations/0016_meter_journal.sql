-- 0016: the meters' journal (issue 12): everything done to a meter that changes what it serves, with
-- the true (simulated) time it was done, so that a worker that starts (a restart, a crash, another pod)
-- builds each meter again from it and serves exactly what was served before; and the record, for a HES
-- test team, of what head-ends did to the fleet.
--
-- Rows: every SET and ACTION a head-end made on an object of a meter (source 'dlms', whatever its
-- result), and every state change an operator injected (source 'inject': power-failure, load-change,
-- tamper, restore, link-down; one row per meter reached). A row that changed the meter (replay = true)
-- is written before the meter answers; the workers replay those, in (sim_time, seq) order. Key
-- management (key transfer, HLS and LLS secrets, key pairs, certificates) is logged but not replayed:
-- its outcome is kept in meter_keys and certificates.
--
-- sim_time is the exact simulated time (double precision: a replay must use the very value);
-- true_time shows it as a timestamp. meter_time is what the meter's clock showed then. value is the
-- A-XDR encoded value written or the method's parameters. Partitioned by hash of meter_id as the
-- other per-meter tables (0002).

CREATE SEQUENCE meter_journal_seq;

CREATE TABLE meter_journal (
    meter_id bigint NOT NULL,
    seq bigint NOT NULL DEFAULT nextval('meter_journal_seq'),
    sim_time double precision NOT NULL,
    true_time timestamptz GENERATED ALWAYS AS (to_timestamp(sim_time)) STORED,
    meter_time timestamptz,
    source text NOT NULL,
    client_sap integer,
    service text NOT NULL,
    class_id integer,
    obis text,
    index integer,
    value bytea,
    result integer,
    outcome text NOT NULL,
    replay boolean NOT NULL,
    command_id bigint,
    params jsonb,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT meter_journal_pkey PRIMARY KEY (meter_id, seq),
    CONSTRAINT meter_journal_source_check CHECK (source IN ('dlms', 'inject')),
    CONSTRAINT meter_journal_service_check CHECK (
        (source = 'dlms' AND service IN ('set', 'action'))
        OR (source = 'inject' AND service IN ('power-failure', 'restore', 'tamper', 'link-down', 'load-change'))),
    CONSTRAINT meter_journal_time_check CHECK (sim_time > '-Infinity' AND sim_time < 'Infinity')
) PARTITION BY HASH (meter_id);

ALTER SEQUENCE meter_journal_seq OWNED BY meter_journal.seq;

DO $$
BEGIN
    FOR i IN 0..15 LOOP
        EXECUTE format('CREATE TABLE %I PARTITION OF meter_journal FOR VALUES WITH (MODULUS 16, REMAINDER %s)',
                       'meter_journal_p' || lpad(i::text, 2, '0'), i);
    END LOOP;
END
$$;

CREATE INDEX meter_journal_replay_idx ON meter_journal (meter_id, sim_time, seq) WHERE replay;
CREATE INDEX meter_journal_command_idx ON meter_journal (command_id) WHERE command_id IS NOT NULL;

COMMENT ON TABLE meter_journal IS
    'What was done to each meter and when: head-ends'' SETs and ACTIONs, injected state changes; workers replay the rows with replay = true when they start. Partitioned by hash of meter_id.';
COMMENT ON COLUMN meter_journal.seq IS 'Order of writing (replay order within one sim_time)';
COMMENT ON COLUMN meter_journal.sim_time IS 'Simulated (true) time it happened, Unix seconds, exactly as the meter used it';
COMMENT ON COLUMN meter_journal.true_time IS 'sim_time as a timestamp';
COMMENT ON COLUMN meter_journal.meter_time IS 'What the meter''s clock showed when it happened';
COMMENT ON COLUMN meter_journal.source IS 'dlms: a head-end''s SET or ACTION; inject: fleet inject';
COMMENT ON COLUMN meter_journal.client_sap IS 'Client SAP of the association the request came on (dlms)';
COMMENT ON COLUMN meter_journal.service IS 'set or action (dlms); the injected action (inject)';
COMMENT ON COLUMN meter_journal.obis IS 'Logical name of the object (dlms), dotted';
COMMENT ON COLUMN meter_journal.index IS 'Attribute (set) or method (action) index';
COMMENT ON COLUMN meter_journal.value IS 'A-XDR encoded value written, or the method''s parameters';
COMMENT ON COLUMN meter_journal.result IS 'data-access-result (set) or action-result (action); 0 = success';
COMMENT ON COLUMN meter_journal.outcome IS 'The result''s name (success, read-write-denied, type-unmatched, ...) or applied (inject)';
COMMENT ON COLUMN meter_journal.replay IS 'It changed the meter: replayed when a worker builds the meter again';
COMMENT ON COLUMN meter_journal.command_id IS 'The fleet_commands row it came from (inject)';
COMMENT ON COLUMN meter_journal.params IS 'duration_s, factor, code of an injected change';

CREATE VIEW programming_actions AS
SELECT j.meter_id, j.true_time, j.meter_time, j.client_sap, j.service, j.class_id, j.obis,
       j.index AS attribute_or_method, encode(j.value, 'hex') AS value_hex, j.outcome, j.result, j.replay AS changed_meter,
       j.recorded_at
FROM meter_journal j
WHERE j.source = 'dlms';

COMMENT ON VIEW programming_actions IS
    'Every SET and ACTION head-ends made on the meters, with true and meter time and outcome: what a HES did to the fleet';
