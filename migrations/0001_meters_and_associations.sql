-- 0001: the fleet's meters, and the connections and application associations head-ends open to them.
--
-- Fleet-wide versions of the seed schema's per-meter `client_associations` and `active_connections`
-- (DESIGN.md, "Storage"): every per-meter table carries `meter_id`, has it first in its primary key,
-- and is partitioned by hash of it. 16 partitions keep each one small for a million meters, and
-- `meter_id` is what a distributed PostgreSQL (Citus) would use as distribution column.
--
-- Conventions for this and later migrations:
-- - wall-clock times are `timestamptz` (when the fleet saw it); `sim_*` columns hold the meter's
--   simulated time of the same instant (the clock a head-end reads over DLMS), equal to wall-clock
--   time at --speed 1;
-- - names and codes use the onboarding file's vocabulary (DESIGN.md, "Onboarding file");
-- - no CHECK on values that `meter_core` enums may grow (release reasons, ...), nor on the order of
--   two wall-clock times (clocks step): a writer's batch must not fail on ground truth. CHECKs only
--   guard invariants that cannot change.
-- - no foreign key from per-meter tables to `meters`: each would cost an index probe per written row
--   and an ordering constraint on writers, and every row's meter_id comes from the worker that also
--   upserted that meter's row at start.

CREATE TABLE meters (
    meter_id bigint NOT NULL,
    serial text NOT NULL,
    logical_device_name text NOT NULL,
    system_title bytea NOT NULL,
    kind text NOT NULL,
    transport text NOT NULL,
    host text NOT NULL,
    port integer NOT NULL,
    hdlc_physical_address integer NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT meters_pkey PRIMARY KEY (meter_id),
    CONSTRAINT meters_meter_id_check CHECK (meter_id >= 0),
    CONSTRAINT meters_logical_device_name_check CHECK (octet_length(logical_device_name) <= 16),
    CONSTRAINT meters_system_title_check CHECK (octet_length(system_title) = 8),
    CONSTRAINT meters_kind_check CHECK (kind IN ('1ph', '3ph', 'ctpt')),
    CONSTRAINT meters_transport_check CHECK (transport IN ('wrapper', 'hdlc')),
    CONSTRAINT meters_port_check CHECK (port BETWEEN 1 AND 65535),
    CONSTRAINT meters_hdlc_physical_address_check CHECK (hdlc_physical_address BETWEEN 16 AND 16383)
);

-- Not partitioned: one narrow row per meter, read by id. Identities are pure functions of (fleet seed,
-- meter_id), so a restart with another --seed rewrites them in place; serial and system title are
-- therefore indexed for look-ups but not UNIQUE (an upsert that moves serials between rows would
-- trip a non-deferred unique check half-way).
CREATE INDEX meters_serial_idx ON meters (serial);
CREATE INDEX meters_system_title_idx ON meters (system_title);

COMMENT ON TABLE meters IS
    'One row per simulated meter of the fleet: the names a head-end uses to reach it (same values as `fleet meters export`). Upserted by each worker for its shard at start.';
COMMENT ON COLUMN meters.meter_id IS '0..N-1 within the fleet; every per-meter table is keyed and hash-partitioned by it';
COMMENT ON COLUMN meters.serial IS 'Meter serial number, value of 0.0.96.1.0.255';
COMMENT ON COLUMN meters.logical_device_name IS 'Value of 0.0.42.0.0.255: FLAG id then 13 characters';
COMMENT ON COLUMN meters.system_title IS 'Server system title, 8 bytes (FLAG id + 5 bytes of the serial number)';
COMMENT ON COLUMN meters.kind IS 'IS 15959 meter family: 1ph, 3ph (whole current) or ctpt (CT/PT operated)';
COMMENT ON COLUMN meters.transport IS 'Framing on the meter''s TCP port: wrapper (IEC 62056-47) or hdlc';
COMMENT ON COLUMN meters.host IS 'Address a head-end connects to';
COMMENT ON COLUMN meters.port IS 'TCP port a head-end connects to';
COMMENT ON COLUMN meters.hdlc_physical_address IS 'HDLC lower (physical) server address; the upper (logical) address is 1';
COMMENT ON COLUMN meters.created_at IS 'When the row was first written';
COMMENT ON COLUMN meters.updated_at IS 'When an identity column last changed (e.g. a restart with another --seed or --port-base)';


-- One row per TCP connection a head-end opened to a meter, kept after it closes: the table is the
-- connection log, and the open ones are those with closed_at IS NULL (a partial index serves them).
-- Keeping history rather than deleting on close lets a head-end team check "did we reach meter 42 at
-- 10:02?" against ground truth, and makes every write an insert or a one-way update, so a retried
-- batch can neither resurrect nor double a row.
CREATE TABLE active_connections (
    meter_id bigint NOT NULL,
    connection_id uuid NOT NULL,
    peer text NOT NULL,
    transport text NOT NULL,
    worker_slot integer,
    opened_at timestamptz NOT NULL,
    closed_at timestamptz,
    close_reason text,
    sim_opened_at timestamptz,
    sim_closed_at timestamptz,
    CONSTRAINT active_connections_pkey PRIMARY KEY (meter_id, connection_id)
) PARTITION BY HASH (meter_id);

CREATE INDEX active_connections_meter_opened_idx ON active_connections (meter_id, opened_at);
CREATE INDEX active_connections_open_idx ON active_connections (meter_id) WHERE closed_at IS NULL;

COMMENT ON TABLE active_connections IS
    'One row per TCP connection to a meter, from accept to close; open connections have closed_at IS NULL. Partitioned by hash of meter_id.';
COMMENT ON COLUMN active_connections.connection_id IS 'Random id the fleet gave the connection when it accepted it';
COMMENT ON COLUMN active_connections.peer IS 'Head-end side of the connection, "address:port"';
COMMENT ON COLUMN active_connections.transport IS 'wrapper or hdlc';
COMMENT ON COLUMN active_connections.worker_slot IS 'Worker process slot that served the connection';
COMMENT ON COLUMN active_connections.opened_at IS 'Wall-clock time the meter accepted the connection';
COMMENT ON COLUMN active_connections.closed_at IS 'Wall-clock time the connection closed; NULL while open';
COMMENT ON COLUMN active_connections.close_reason IS
    'closed (either side closed it), the meter''s reason when it dropped the link (e.g. "inactivity time-out", "wrapper framing lost"), or worker-lost (its worker died; closed_at is when a new worker took over)';
COMMENT ON COLUMN active_connections.sim_opened_at IS 'Simulated meter time at opened_at';
COMMENT ON COLUMN active_connections.sim_closed_at IS 'Simulated meter time at closed_at';


-- One row per AARQ a meter answered: an accepted association from establishment to release, or a
-- refused request. association_id is the fleet's id for that lifetime; a released association keeps
-- its row with released_at set (never deleted), as in the seed meter's association log.
CREATE TABLE client_associations (
    meter_id bigint NOT NULL,
    association_id uuid NOT NULL,
    connection_id uuid NOT NULL,
    client_sap integer NOT NULL,
    association_ln text,
    association_name text,
    authentication text,
    application_context smallint,
    result text NOT NULL,
    result_code smallint NOT NULL,
    diagnostic_source smallint,
    diagnostic smallint,
    reject_reason text,
    peer text NOT NULL,
    requested_at timestamptz NOT NULL,
    released_at timestamptz,
    release_reason text,
    sim_requested_at timestamptz,
    sim_released_at timestamptz,
    CONSTRAINT client_associations_pkey PRIMARY KEY (meter_id, association_id),
    CONSTRAINT client_associations_result_check CHECK (
        (result = 'accepted' AND result_code = 0)
        OR (result = 'rejected' AND result_code <> 0 AND released_at IS NULL)
    ),
    CONSTRAINT client_associations_client_sap_check CHECK (client_sap BETWEEN 0 AND 65535)
) PARTITION BY HASH (meter_id);

CREATE INDEX client_associations_meter_requested_idx ON client_associations (meter_id, requested_at);
CREATE INDEX client_associations_connection_idx ON client_associations (meter_id, connection_id);
CREATE INDEX client_associations_open_idx ON client_associations (meter_id)
    WHERE result = 'accepted' AND released_at IS NULL;

COMMENT ON TABLE client_associations IS
    'One row per AARQ a meter answered: an accepted application association (requested_at to released_at) or a rejected request. Partitioned by hash of meter_id.';
COMMENT ON COLUMN client_associations.association_id IS 'Random id the fleet gave this association lifetime';
COMMENT ON COLUMN client_associations.connection_id IS 'The TCP connection it came over (active_connections.connection_id)';
COMMENT ON COLUMN client_associations.client_sap IS 'Client SAP: 16 public client, 32 meter reader, 48 utility settings, 64 push, 80 firmware upgrade';
COMMENT ON COLUMN client_associations.association_ln IS 'Logical name of the Association LN object of that client (e.g. 0.0.40.0.2.255); NULL for an unknown client SAP';
COMMENT ON COLUMN client_associations.association_name IS 'Name of the association in IS 15959 (e.g. Meter reader)';
COMMENT ON COLUMN client_associations.authentication IS 'Authentication mechanism used: none, low, high, high-gmac, high-ecdsa (onboarding-file names); NULL when rejected';
COMMENT ON COLUMN client_associations.application_context IS 'Last arc of the application context name 2.16.756.5.8.1.x: 1 LN, 2 SN, 3 LN with ciphering, 4 SN with ciphering; NULL when rejected';
COMMENT ON COLUMN client_associations.result IS 'accepted or rejected';
COMMENT ON COLUMN client_associations.result_code IS 'AARE association-result: 0 accepted, 1 rejected-permanent, 2 rejected-transient';
COMMENT ON COLUMN client_associations.diagnostic_source IS 'AARE result-source-diagnostic: 1 acse-service-user, 2 acse-service-provider; NULL when accepted';
COMMENT ON COLUMN client_associations.diagnostic IS 'AARE diagnostic value within its source (e.g. 13 authentication-failure); NULL when accepted';
COMMENT ON COLUMN client_associations.reject_reason IS 'Why the meter refused, in words; NULL when accepted';
COMMENT ON COLUMN client_associations.peer IS 'Head-end side of the connection, "address:port"';
COMMENT ON COLUMN client_associations.requested_at IS 'Wall-clock time the meter answered the AARQ (accepted: association established)';
COMMENT ON COLUMN client_associations.released_at IS 'Wall-clock time the association ended; NULL while open and for rejected requests';
COMMENT ON COLUMN client_associations.release_reason IS
    'released (RLRQ/RLRE), link-disconnected, connection-closed, timeout, or worker-lost (its worker died; released_at is when a new worker took over)';
COMMENT ON COLUMN client_associations.sim_requested_at IS 'Simulated meter time at requested_at';
COMMENT ON COLUMN client_associations.sim_released_at IS 'Simulated meter time at released_at';


-- The hash partitions, named <table>_pNN. Modulus 16 is fixed once rows exist; growing it later means
-- a new table and a copy, so it is chosen generously for one PostgreSQL and left to Citus beyond that.
DO $$
DECLARE
    t text;
    i integer;
BEGIN
    FOREACH t IN ARRAY ARRAY['active_connections', 'client_associations'] LOOP
        FOR i IN 0..15 LOOP
            EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES WITH (MODULUS 16, REMAINDER %s)',
                           t || '_p' || lpad(i::text, 2, '0'), t, i);
        END LOOP;
    END LOOP;
END
$$;
