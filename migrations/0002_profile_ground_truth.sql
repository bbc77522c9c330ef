-- 0002: the meters' profiles as ground truth: block load, daily load, billing, instantaneous snapshots,
-- event logs and Event Status Word changes, written by the workers as they happen in simulated time
-- and by `fleet backfill` for history.
--
-- Fleet-wide versions of the seed schema's per-meter profile tables (DESIGN.md, "Storage"), in the
-- conventions of 0001: `meter_id` first in every key, hash partitions by meter_id, no foreign keys.
-- Keys are (meter_id, capture time): a row written again (a retried batch, a backfill overlapping a
-- run) is the same row, and writers insert with ON CONFLICT DO NOTHING.
--
-- Values are what the meter's registers hold, as exact integers of their resolution in SI units:
-- energies in Wh / VAh / varh (bigint; a CT/PT meter counts whole kWh, so its values are multiples
-- of 1000), currents and voltages as numeric with the register's decimals. Times are the meter's
-- clock (what a head-end reads in the profile), as timestamptz; a meter whose clock a head-end set
-- or that drifts shows that here too. The seed documents' exact column lists were not available
-- when this was written: the columns follow the IS 15959 capture objects (facts section 9) and the
-- seed table names; where a seed column has no IS 15959 counterpart (per-phase active power in
-- the instantaneous profile) it is kept nullable and left NULL, as IS 15959 meters report total power.

CREATE TABLE block_load_profile (
    meter_id bigint NOT NULL,
    capture_time timestamptz NOT NULL,
    interval_seconds integer NOT NULL,
    avg_current_l1 numeric(12, 3),
    avg_current_l2 numeric(12, 3),
    avg_current_l3 numeric(12, 3),
    avg_voltage_l1 numeric(10, 2),
    avg_voltage_l2 numeric(10, 2),
    avg_voltage_l3 numeric(10, 2),
    active_import_wh bigint NOT NULL,
    active_export_wh bigint NOT NULL,
    apparent_import_vah bigint NOT NULL,
    apparent_export_vah bigint NOT NULL,
    reactive_q1_varh bigint NOT NULL,
    reactive_q2_varh bigint NOT NULL,
    reactive_q3_varh bigint NOT NULL,
    reactive_q4_varh bigint NOT NULL,
    net_active_wh bigint GENERATED ALWAYS AS (active_import_wh - active_export_wh) STORED,
    written_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT block_load_profile_pkey PRIMARY KEY (meter_id, capture_time),
    CONSTRAINT block_load_profile_interval_check CHECK (interval_seconds > 0),
    CONSTRAINT block_load_profile_energy_check CHECK (
        active_import_wh >= 0 AND active_export_wh >= 0 AND apparent_import_vah >= 0 AND apparent_export_vah >= 0
        AND reactive_q1_varh >= 0 AND reactive_q2_varh >= 0 AND reactive_q3_varh >= 0 AND reactive_q4_varh >= 0
    )
) PARTITION BY HASH (meter_id);

COMMENT ON TABLE block_load_profile IS
    'Block load profile 1.0.99.1.0.255: one row per capture period (block) per meter, stamped with the meter clock at the end of the block. Energies are the block''s register deltas. Partitioned by hash of meter_id.';
COMMENT ON COLUMN block_load_profile.capture_time IS 'End of the block on the meter clock (the clock column of the profile entry)';
COMMENT ON COLUMN block_load_profile.interval_seconds IS 'Capture period of the profile when the block was captured (900 or 1800)';
COMMENT ON COLUMN block_load_profile.avg_current_l1 IS 'Average current of the block, phase L1 (A; the only phase of a single-phase meter): 1.0.31.27.0.255 or 1.0.11.27.0.255';
COMMENT ON COLUMN block_load_profile.avg_voltage_l1 IS 'Average voltage of the block, phase L1 (V): 1.0.32.27.0.255 or 1.0.12.27.0.255';
COMMENT ON COLUMN block_load_profile.active_import_wh IS 'Block energy kWh import 1.0.1.29.0.255, in Wh';
COMMENT ON COLUMN block_load_profile.reactive_q1_varh IS 'Block reactive energy quadrant I 1.0.5.29.0.255, in varh (Q2..Q4: 1.0.6/7/8.29.0.255)';
COMMENT ON COLUMN block_load_profile.net_active_wh IS 'Block net energy 1.0.16.29.0.255 (import - export), Wh';
COMMENT ON COLUMN block_load_profile.written_at IS 'When the row reached the database (wall clock)';


CREATE TABLE daily_load_profile (
    meter_id bigint NOT NULL,
    capture_time timestamptz NOT NULL,
    active_import_wh bigint NOT NULL,
    active_export_wh bigint NOT NULL,
    apparent_import_vah bigint NOT NULL,
    apparent_export_vah bigint NOT NULL,
    reactive_q1_varh bigint NOT NULL,
    reactive_q2_varh bigint NOT NULL,
    reactive_q3_varh bigint NOT NULL,
    reactive_q4_varh bigint NOT NULL,
    net_active_wh bigint GENERATED ALWAYS AS (active_import_wh - active_export_wh) STORED,
    written_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT daily_load_profile_pkey PRIMARY KEY (meter_id, capture_time)
) PARTITION BY HASH (meter_id);

COMMENT ON TABLE daily_load_profile IS
    'Daily load profile 1.0.99.2.0.255: the cumulative energy registers at each midnight (IST, meter clock). The seed''s daily energy is the difference of two consecutive rows. Partitioned by hash of meter_id.';
COMMENT ON COLUMN daily_load_profile.capture_time IS 'Midnight IST on the meter clock';
COMMENT ON COLUMN daily_load_profile.active_import_wh IS 'Cumulative energy kWh import 1.0.1.8.0.255, in Wh';


CREATE TABLE billing_profile (
    meter_id bigint NOT NULL,
    billing_time timestamptz NOT NULL,
    billing_count integer NOT NULL,
    active_import_wh bigint NOT NULL,
    active_export_wh bigint NOT NULL,
    apparent_import_vah bigint NOT NULL,
    apparent_export_vah bigint NOT NULL,
    reactive_q1_varh bigint NOT NULL,
    reactive_q2_varh bigint NOT NULL,
    reactive_q3_varh bigint NOT NULL,
    reactive_q4_varh bigint NOT NULL,
    md_active_import_w bigint NOT NULL,
    md_active_import_time timestamptz,
    md_apparent_import_va bigint NOT NULL,
    md_apparent_import_time timestamptz,
    average_power_factor numeric(4, 3) NOT NULL,
    power_on_minutes integer NOT NULL,
    written_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT billing_profile_pkey PRIMARY KEY (meter_id, billing_time),
    CONSTRAINT billing_profile_count_check CHECK (billing_count > 0)
) PARTITION BY HASH (meter_id);

COMMENT ON TABLE billing_profile IS
    'Billing profile 1.0.98.1.0.255: one row per closed billing period (a scheduled billing date or an MD reset), with the cumulative registers at the close and the period''s maximum demands. Partitioned by hash of meter_id.';
COMMENT ON COLUMN billing_profile.billing_time IS 'When the period closed, meter clock (1.0.0.1.2.255)';
COMMENT ON COLUMN billing_profile.billing_count IS 'Cumulative billing count 0.0.0.1.0.255 after this close';
COMMENT ON COLUMN billing_profile.md_active_import_w IS 'Maximum demand kW import 1.0.1.6.0.255 of the period, in W (the highest demand-integration-period average)';
COMMENT ON COLUMN billing_profile.md_active_import_time IS 'End of the demand period of that maximum (attribute 5); NULL if no period ended';
COMMENT ON COLUMN billing_profile.average_power_factor IS 'Average power factor of the period 1.0.13.0.0.255 (kWh / kVAh)';
COMMENT ON COLUMN billing_profile.power_on_minutes IS 'Power-on duration of the period 0.0.94.91.13.255, minutes';


CREATE TABLE instant_profile (
    meter_id bigint NOT NULL,
    capture_time timestamptz NOT NULL,
    voltage_l1 numeric(10, 2),
    voltage_l2 numeric(10, 2),
    voltage_l3 numeric(10, 2),
    current_l1 numeric(12, 3),
    current_l2 numeric(12, 3),
    current_l3 numeric(12, 3),
    current_neutral numeric(12, 3),
    power_factor_l1 numeric(4, 3),
    power_factor_l2 numeric(4, 3),
    power_factor_l3 numeric(4, 3),
    power_factor numeric(4, 3),
    frequency numeric(5, 2),
    active_power_w bigint,
    reactive_power_var bigint,
    apparent_power_va bigint,
    active_power_l1_w bigint,
    active_power_l2_w bigint,
    active_power_l3_w bigint,
    active_import_wh bigint,
    apparent_import_vah bigint,
    written_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT instant_profile_pkey PRIMARY KEY (meter_id, capture_time)
) PARTITION BY HASH (meter_id);

COMMENT ON TABLE instant_profile IS
    'Snapshots of the instantaneous profile 1.0.94.91.0.255, one per block boundary per meter (the profile itself holds one live entry). Partitioned by hash of meter_id.';
COMMENT ON COLUMN instant_profile.active_power_l1_w IS 'Seed column kept for compatibility: IS 15959 lists total power only (1.0.1.7.0.255), per-phase active power is not an IS 15959 object (facts 8.3), so it stays NULL';
COMMENT ON COLUMN instant_profile.active_power_w IS 'Signed active power 1.0.1.7.0.255, W';


CREATE TABLE event_logs (
    meter_id bigint NOT NULL,
    category text NOT NULL,
    occurred_at timestamptz NOT NULL,
    event_code integer NOT NULL,
    sequence_number bigint,
    current_l1 numeric(12, 3),
    current_l2 numeric(12, 3),
    current_l3 numeric(12, 3),
    voltage_l1 numeric(10, 2),
    voltage_l2 numeric(10, 2),
    voltage_l3 numeric(10, 2),
    power_factor_l1 numeric(4, 3),
    power_factor_l2 numeric(4, 3),
    power_factor_l3 numeric(4, 3),
    active_import_wh bigint,
    written_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT event_logs_pkey PRIMARY KEY (meter_id, category, occurred_at, event_code),
    CONSTRAINT event_logs_category_check CHECK (
        category IN ('voltage', 'current', 'power', 'transaction', 'other', 'non_rollover', 'control')
    )
) PARTITION BY HASH (meter_id);

COMMENT ON TABLE event_logs IS
    'Entries of the seven IS 15959 event logs 0.0.99.98.0-6.255, with the snapshot the voltage, current and other logs capture. The seed''s POWER_FAILURE, CLOCK, BILLING, ... types map to the IS 15959 categories (facts section 14): clock, configuration, key and billing events are transaction events. Partitioned by hash of meter_id.';
COMMENT ON COLUMN event_logs.category IS 'IS 15959 event log: voltage (0), current (1), power (2), transaction (3), other (4), non_rollover (5), control (6)';
COMMENT ON COLUMN event_logs.event_code IS 'IS 15959 event code (e.g. 101/102 power failure occurrence/restoration, 151 clock set)';
COMMENT ON COLUMN event_logs.sequence_number IS 'The meter''s event sequence number in this category, where it keeps one';


CREATE TABLE eswf_status (
    meter_id bigint NOT NULL,
    changed_at timestamptz NOT NULL,
    esw bytea NOT NULL,
    bits_set smallint[] NOT NULL,
    written_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT eswf_status_pkey PRIMARY KEY (meter_id, changed_at),
    CONSTRAINT eswf_status_esw_check CHECK (octet_length(esw) = 16)
) PARTITION BY HASH (meter_id);

COMMENT ON TABLE eswf_status IS
    'Each change of the Event Status Word 0.0.94.91.18.255: its 128 bits as 16 bytes, bit 0 the most significant bit of the first byte (facts 3.4 and 11). Partitioned by hash of meter_id.';
COMMENT ON COLUMN eswf_status.bits_set IS 'IS 15959 bit numbers set in esw, for querying';


DO $$
DECLARE
    t text;
    i integer;
BEGIN
    FOREACH t IN ARRAY ARRAY['block_load_profile', 'daily_load_profile', 'billing_profile', 'instant_profile',
                             'event_logs', 'eswf_status'] LOOP
        FOR i IN 0..15 LOOP
            EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES WITH (MODULUS 16, REMAINDER %s)',
                           t || '_p' || lpad(i::text, 2, '0'), t, i);
        END LOOP;
    END LOOP;
END
$$;


CREATE VIEW latest_measurements AS
SELECT DISTINCT ON (meter_id) *
FROM instant_profile
ORDER BY meter_id, capture_time DESC;

COMMENT ON VIEW latest_measurements IS 'The most recent instantaneous snapshot of each meter';
