-- 0004: the fleet's settings, as the seed schema keeps them: the OBIS catalogue, load templates and
-- power-quality configuration, HDLC and port settings, push setups, objects and schedules, access
-- rights, security settings and certificates, and the push bookkeeping tables (message queue, ESW
-- alarms). `fleet db migrate` fills the defaults from the code (fleet/seed.py) without touching rows
-- a user changed; workers read the templates and the power-quality configuration at start.
--
-- Settings are fleet-wide with per-meter overrides where a meter can differ: `meter_id` NULL is the
-- fleet default, a row with a meter_id overrides it for that meter. Such tables are not partitioned
-- (they are small: defaults plus the meters someone changed) and are unique on the natural key with
-- COALESCE(meter_id, -1), since a primary key cannot hold a NULL. Per-meter bookkeeping that grows
-- with the fleet (message_queue, eswf_push_alarms) is hash-partitioned by meter_id like 0001.

CREATE TABLE obis_codes (
    obis text NOT NULL,
    class_id integer NOT NULL,
    version integer NOT NULL,
    description text NOT NULL,
    meter_kinds text[] NOT NULL,
    CONSTRAINT obis_codes_pkey PRIMARY KEY (obis, class_id),
    CONSTRAINT obis_codes_obis_check CHECK (obis ~ '^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$')
);
COMMENT ON TABLE obis_codes IS 'The objects the simulated IS 15959 meters have: logical name, interface class and version, and the meter kinds that have it (written from the code''s object models)';


CREATE TABLE load_profile_templates (
    category text NOT NULL,
    season text NOT NULL,
    day_type text NOT NULL,
    interval_minutes integer NOT NULL,
    base_load_kw numeric(12, 3) NOT NULL,
    peak_load_kw numeric(12, 3) NOT NULL,
    variation_pattern jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT load_profile_templates_pkey PRIMARY KEY (category, season, day_type),
    CONSTRAINT load_profile_templates_season_check CHECK (season IN ('SUMMER', 'WINTER', 'MONSOON', 'SPRING', 'AUTUMN')),
    CONSTRAINT load_profile_templates_day_type_check CHECK (day_type IN ('WEEKDAY', 'WEEKEND', 'HOLIDAY')),
    CONSTRAINT load_profile_templates_load_check CHECK (base_load_kw >= 0 AND peak_load_kw >= base_load_kw),
    CONSTRAINT load_profile_templates_pattern_check CHECK (jsonb_typeof(variation_pattern) = 'array'
        AND jsonb_array_length(variation_pattern) = 24)
);
COMMENT ON TABLE load_profile_templates IS 'Hourly load of a consumer category by season and day type: base + (peak - base) * variation_pattern[hour]. Workers read it at start; a meter''s own size scales it.';
COMMENT ON COLUMN load_profile_templates.variation_pattern IS '24 hourly factors in [0, 1], constant through each hour (IST)';


CREATE TABLE power_quality_events_config (
    event_type text NOT NULL,
    probability_per_day double precision NOT NULL,
    min_duration_s double precision NOT NULL,
    max_duration_s double precision NOT NULL,
    magnitude_min double precision NOT NULL,
    magnitude_max double precision NOT NULL,
    phases text NOT NULL DEFAULT 'ANY',
    enabled boolean NOT NULL DEFAULT true,
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT power_quality_events_config_pkey PRIMARY KEY (event_type),
    CONSTRAINT power_quality_events_config_type_check CHECK (event_type IN ('VOLTAGE_SAG', 'VOLTAGE_SWELL',
        'INTERRUPTION', 'FREQUENCY_VARIATION', 'VOLTAGE_UNBALANCE', 'HARMONIC_DISTORTION')),
    CONSTRAINT power_quality_events_config_values_check CHECK (probability_per_day >= 0
        AND 0 < min_duration_s AND min_duration_s <= max_duration_s AND magnitude_min <= magnitude_max),
    CONSTRAINT power_quality_events_config_phases_check CHECK (phases IN ('ANY', 'ALL'))
);
COMMENT ON TABLE power_quality_events_config IS 'Supply events per meter and day (meter_core/powerquality.py): mean count per day (a single-phase meter''s; 3ph x0.7, CT/PT x0.3), duration and magnitude ranges. Workers read it at start.';
COMMENT ON COLUMN power_quality_events_config.magnitude_min IS 'Per-unit voltage for sags and swells, fraction for unbalance, Hz for frequency variation, THD for harmonics';


CREATE TABLE hdlc_settings (
    meter_id bigint,
    comm_speed smallint NOT NULL,
    window_size_transmit smallint NOT NULL,
    window_size_receive smallint NOT NULL,
    max_info_field_length_transmit integer NOT NULL,
    max_info_field_length_receive integer NOT NULL,
    inter_octet_time_out_ms integer NOT NULL,
    inactivity_time_out_s integer NOT NULL,
    CONSTRAINT hdlc_settings_window_check CHECK (window_size_transmit BETWEEN 1 AND 7 AND window_size_receive BETWEEN 1 AND 7),
    CONSTRAINT hdlc_settings_info_check CHECK (max_info_field_length_transmit BETWEEN 32 AND 2030
        AND max_info_field_length_receive BETWEEN 32 AND 2030)
);
CREATE UNIQUE INDEX hdlc_settings_meter_idx ON hdlc_settings (COALESCE(meter_id, -1));
COMMENT ON TABLE hdlc_settings IS 'IEC HDLC setup 0.0.22.0.0.255 (class 23): the fleet default (meter_id NULL) and per-meter overrides';
COMMENT ON COLUMN hdlc_settings.comm_speed IS 'Class 23 comm_speed enum: 5 = 9600 baud';


CREATE TABLE communication_ports (
    meter_id bigint,
    logical_name text NOT NULL,
    class_id integer NOT NULL,
    port_type text NOT NULL,
    settings jsonb NOT NULL DEFAULT '{}'::jsonb,
    CONSTRAINT communication_ports_type_check CHECK (port_type IN ('HDLC', 'TCP_UDP', 'IPV4', 'GPRS'))
);
CREATE UNIQUE INDEX communication_ports_meter_idx ON communication_ports (COALESCE(meter_id, -1), logical_name);
COMMENT ON TABLE communication_ports IS 'The communication setup objects a meter has: HDLC 0.0.22.0.0.255, TCP-UDP 0.0.25.0.0.255, IPv4 0.0.25.1.0.255, GPRS 0.0.25.4.0.255';


CREATE TABLE push_setups (
    meter_id bigint,
    logical_name text NOT NULL,
    name text NOT NULL,
    transport_service smallint NOT NULL DEFAULT 0,
    destination text NOT NULL DEFAULT '',
    message_type smallint NOT NULL DEFAULT 0,
    randomisation_start_interval_s integer NOT NULL,
    number_of_retries smallint NOT NULL,
    repetition_delay_s integer NOT NULL,
    enabled boolean NOT NULL DEFAULT true,
    CONSTRAINT push_setups_retries_check CHECK (number_of_retries >= 0)
);
CREATE UNIQUE INDEX push_setups_meter_idx ON push_setups (COALESCE(meter_id, -1), logical_name);
COMMENT ON TABLE push_setups IS 'Push setup objects (class 40): destination and method, randomisation, retries (fleet default with meter_id NULL)';

CREATE TABLE push_objects (
    meter_id bigint,
    push_logical_name text NOT NULL,
    position integer NOT NULL,
    class_id integer NOT NULL,
    logical_name text NOT NULL,
    attribute_index smallint NOT NULL,
    data_index integer NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX push_objects_meter_idx ON push_objects (COALESCE(meter_id, -1), push_logical_name, position);
COMMENT ON TABLE push_objects IS 'push_object_list of each push setup, in order (device ID, push setup name, clock, then the data)';

CREATE TABLE push_schedules (
    meter_id bigint,
    push_logical_name text NOT NULL,
    schedule_type text NOT NULL,
    enabled boolean NOT NULL DEFAULT true,
    CONSTRAINT push_schedules_type_check CHECK (schedule_type IN ('FIFTEEN_MIN', 'THIRTY_MIN', 'ONE_HOUR',
        'FOUR_HOUR', 'EIGHT_HOUR', 'TWELVE_HOUR', 'TWENTY_FOUR_HOUR', 'ON_ALARM'))
);
CREATE UNIQUE INDEX push_schedules_meter_idx ON push_schedules (COALESCE(meter_id, -1), push_logical_name, schedule_type);
COMMENT ON TABLE push_schedules IS 'When each push goes out: a period (single action schedule 0.0.15.0.4.255 and others) or ON_ALARM (ESW bits enabled in the ESWF)';

CREATE VIEW active_schedules AS
SELECT s.meter_id, s.push_logical_name, p.name, s.schedule_type, p.destination, p.randomisation_start_interval_s,
       p.number_of_retries, p.repetition_delay_s
FROM push_schedules AS s
JOIN push_setups AS p ON p.logical_name = s.push_logical_name AND p.meter_id IS NOT DISTINCT FROM s.meter_id
WHERE s.enabled AND p.enabled;
COMMENT ON VIEW active_schedules IS 'Enabled push schedules with their push setups';


CREATE TABLE access_rights (
    client_sap integer NOT NULL,
    association text NOT NULL,
    class_id integer NOT NULL,
    logical_name text NOT NULL,
    attribute_access smallint[] NOT NULL,
    method_access smallint[] NOT NULL,
    meter_kind text NOT NULL,
    CONSTRAINT access_rights_pkey PRIMARY KEY (meter_kind, client_sap, class_id, logical_name)
);
COMMENT ON TABLE access_rights IS 'What each association may do with each object, per meter kind: the access_mode of every attribute (0 none, 1 read, 2 write, 3 read-write) and method (0/1), the same masks the object_list advertises';


CREATE TABLE security_settings (
    meter_id bigint,
    client_sap integer NOT NULL,
    security_setup text NOT NULL,
    security_policy smallint NOT NULL DEFAULT 0,
    security_suite smallint NOT NULL DEFAULT 0,
    authentication text NOT NULL,
    CONSTRAINT security_settings_policy_check CHECK (security_policy BETWEEN 0 AND 3),
    CONSTRAINT security_settings_suite_check CHECK (security_suite BETWEEN 0 AND 2)
);
CREATE UNIQUE INDEX security_settings_meter_idx ON security_settings (COALESCE(meter_id, -1), client_sap);
COMMENT ON TABLE security_settings IS 'Security setup per association (class 64 0.0.43.0.x.255): policy and suite. Keys and invocation counters come with HLS and ciphering (issue 5).';

CREATE TABLE certificates (
    meter_id bigint NOT NULL,
    certificate_entity smallint NOT NULL,
    certificate_type smallint NOT NULL,
    serial_number text NOT NULL,
    issuer text NOT NULL,
    subject text NOT NULL,
    der bytea NOT NULL,
    CONSTRAINT certificates_pkey PRIMARY KEY (meter_id, certificate_entity, certificate_type, serial_number)
) PARTITION BY HASH (meter_id);
COMMENT ON TABLE certificates IS 'X.509 certificates of class 64 v1 (suites 1 and 2): empty until ECDSA suites exist (issue 5)';


CREATE TABLE message_queue (
    meter_id bigint NOT NULL,
    message_id bigint NOT NULL,
    push_logical_name text NOT NULL,
    due_at timestamptz NOT NULL,
    payload bytea NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    status text NOT NULL DEFAULT 'PENDING',
    last_attempt_at timestamptz,
    CONSTRAINT message_queue_pkey PRIMARY KEY (meter_id, message_id),
    CONSTRAINT message_queue_status_check CHECK (status IN ('PENDING', 'SENT', 'FAILED'))
) PARTITION BY HASH (meter_id);
COMMENT ON TABLE message_queue IS 'Pushes a meter has not delivered yet, bounded per meter, kept across reconnects (dial mode, issue 6)';

CREATE TABLE eswf_push_alarms (
    meter_id bigint NOT NULL,
    raised_at timestamptz NOT NULL,
    bit smallint NOT NULL,
    byte smallint GENERATED ALWAYS AS (bit / 8) STORED,
    mask smallint GENERATED ALWAYS AS (128 >> (bit % 8)) STORED,
    status text NOT NULL DEFAULT 'PENDING',
    retry_count integer NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT eswf_push_alarms_pkey PRIMARY KEY (meter_id, raised_at, bit),
    CONSTRAINT eswf_push_alarms_bit_check CHECK (bit BETWEEN 0 AND 127),
    CONSTRAINT eswf_push_alarms_status_check CHECK (status IN ('PENDING', 'SENT', 'FAILED', 'ACKNOWLEDGED'))
) PARTITION BY HASH (meter_id);
COMMENT ON TABLE eswf_push_alarms IS 'Each ESW bit raised for an alert push (0.4.25.9.0.255) and how its push fared; byte = bit / 8 and mask = 0x80 >> (bit mod 8), bit 0 the most significant bit of the first byte (facts 11)';
COMMENT ON COLUMN eswf_push_alarms.status IS 'ACKNOWLEDGED only where a confirmation exists (push setup v2 confirmed mode)';


DO $$
DECLARE
    t text;
    i integer;
BEGIN
    FOREACH t IN ARRAY ARRAY['certificates', 'message_queue', 'eswf_push_alarms'] LOOP
        FOR i IN 0..15 LOOP
            EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES WITH (MODULUS 16, REMAINDER %s)',
                           t || '_p' || lpad(i::text, 2, '0'), t, i);
        END LOOP;
    END LOOP;
END
$$;
