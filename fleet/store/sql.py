"""Every SQL statement the fleet runs, as named queries (procrastinate ``procrastinate/sql/queries.sql``
habit): tables' COPY column lists, session-local staging tables, and the statements that move staged rows
into place. Nothing else in ``fleet`` writes SQL text.
"""

from __future__ import annotations

# -- tables and COPY column lists ----------------------------------------------------------------------

METER_COLUMNS = (
    "meter_id", "serial", "logical_device_name", "system_title", "kind", "transport", "host", "port",
    "hdlc_physical_address",
)

# Staging rows of the recorder. A row with opened_at (requested_at) is a new connection (association),
# possibly already closed within the same batch; a row without is only the close of an earlier one.
CONNECTION_COLUMNS = (
    "meter_id", "connection_id", "peer", "transport", "worker_slot", "opened_at", "sim_opened_at",
    "closed_at", "close_reason", "sim_closed_at",
)
ASSOCIATION_COLUMNS = (
    "meter_id", "association_id", "connection_id", "client_sap", "association_ln", "association_name",
    "authentication", "application_context", "result", "result_code", "diagnostic_source", "diagnostic",
    "reject_reason", "peer", "requested_at", "sim_requested_at", "released_at", "release_reason",
    "sim_released_at",
)

STAGE_METERS = "fleet_stage_meters"
STAGE_CONNECTIONS = "fleet_stage_connections"
STAGE_ASSOCIATIONS = "fleet_stage_associations"

# -- named queries -------------------------------------------------------------------------------------

# Session-local staging tables (emptied at each commit) that COPY fills before a set-based write.
STAGE_KEYS = "fleet_stage_meter_keys"
KEY_COLUMNS = ("meter_id", "security_setup", "client_sap", "security_suite", "block_key", "auth_key", "master_key",
               "hls_secret", "client_system_title", "rx_invocation_counter", "tx_invocation_counter", "changed",
               "signing_key", "agreement_key", "lls_password")
CERT_COLUMNS = ("meter_id", "certificate_entity", "certificate_type", "serial_number", "issuer", "subject", "der")
REPLACE_CERTIFICATES = "DELETE FROM certificates WHERE meter_id = ANY($1::bigint[])"
SELECT_CERTIFICATES = ("SELECT meter_id, certificate_entity, certificate_type, der FROM certificates"
                       " WHERE meter_id >= $1 AND meter_id < $2 ORDER BY meter_id, certificate_entity, certificate_type")

STAGE_PUSH_DUE = "fleet_stage_push_due"
PUSH_DUE_COLUMNS = ("meter_id", "push_logical_name", "due_at", "long_invoke_id", "outcome", "attempts")
INSERT_PUSH_DUE = (f"INSERT INTO push_due ({', '.join(PUSH_DUE_COLUMNS)}) SELECT {', '.join(PUSH_DUE_COLUMNS)} "
                   f"FROM {STAGE_PUSH_DUE} ON CONFLICT DO NOTHING")

STAGE_MESSAGES = "fleet_stage_message_queue"
MESSAGE_COLUMNS = ("meter_id", "message_id", "push_logical_name", "due_at", "payload", "attempts", "status",
                   "last_attempt_at")
# A settled message is never set back to PENDING (a late write of an older state changes nothing).
UPSERT_MESSAGES = (f"INSERT INTO message_queue AS q ({', '.join(MESSAGE_COLUMNS)}) SELECT {', '.join(MESSAGE_COLUMNS)} "
                   f"FROM {STAGE_MESSAGES} ON CONFLICT (meter_id, message_id) DO UPDATE SET attempts = EXCLUDED.attempts, "
                   "status = EXCLUDED.status, last_attempt_at = EXCLUDED.last_attempt_at WHERE q.status = 'PENDING'")
SELECT_PENDING_MESSAGES = ("SELECT meter_id, message_id, push_logical_name, extract(epoch FROM due_at) AS due, attempts "
                           "FROM message_queue WHERE status = 'PENDING' AND meter_id >= $1 AND meter_id < $2 "
                           "ORDER BY due_at")

STAGE_ALARMS = "fleet_stage_eswf_push_alarms"
ALARM_COLUMNS = ("meter_id", "raised_at", "bit", "status", "retry_count")
UPSERT_ALARMS = (f"INSERT INTO eswf_push_alarms AS a ({', '.join(ALARM_COLUMNS)}) SELECT {', '.join(ALARM_COLUMNS)} "
                 f"FROM {STAGE_ALARMS} ON CONFLICT (meter_id, raised_at, bit) DO UPDATE SET status = EXCLUDED.status, "
                 "retry_count = EXCLUDED.retry_count, updated_at = now()")

CREATE_STAGING = f"""
CREATE TEMP TABLE IF NOT EXISTS {STAGE_MESSAGES} (
    meter_id bigint, message_id bigint, push_logical_name text, due_at timestamptz, payload bytea, attempts integer,
    status text, last_attempt_at timestamptz
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS {STAGE_ALARMS} (
    meter_id bigint, raised_at timestamptz, bit smallint, status text, retry_count integer
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS {STAGE_PUSH_DUE} (
    meter_id bigint, push_logical_name text, due_at timestamptz, long_invoke_id bigint, outcome text,
    attempts integer
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS {STAGE_KEYS} (
    meter_id bigint, security_setup smallint, client_sap integer, security_suite smallint, block_key bytea,
    auth_key bytea, master_key bytea, hls_secret bytea, client_system_title bytea, rx_invocation_counter bigint,
    tx_invocation_counter bigint, changed boolean, signing_key bytea, agreement_key bytea, lls_password bytea
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS {STAGE_METERS} (
    meter_id bigint, serial text, logical_device_name text, system_title bytea, kind text, transport text,
    host text, port integer, hdlc_physical_address integer
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS {STAGE_CONNECTIONS} (
    meter_id bigint, connection_id uuid, peer text, transport text, worker_slot integer,
    opened_at timestamptz, sim_opened_at timestamptz,
    closed_at timestamptz, close_reason text, sim_closed_at timestamptz
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS {STAGE_ASSOCIATIONS} (
    meter_id bigint, association_id uuid, connection_id uuid, client_sap integer, association_ln text,
    association_name text, authentication text, application_context smallint, result text,
    result_code smallint, diagnostic_source smallint, diagnostic smallint, reject_reason text, peer text,
    requested_at timestamptz, sim_requested_at timestamptz,
    released_at timestamptz, release_reason text, sim_released_at timestamptz
) ON COMMIT DELETE ROWS;
"""

# Keys in force and counters. Counters only grow under the same key (a late write never lowers them);
# with a new block key they start again. keys_changed_at is stamped when a head-end changed a key.
UPSERT_KEYS = f"""
INSERT INTO meter_keys AS k (meter_id, security_setup, client_sap, security_suite, block_key, auth_key, master_key,
                             hls_secret, client_system_title, rx_invocation_counter, tx_invocation_counter,
                             keys_changed_at, updated_at, signing_key, agreement_key, lls_password)
SELECT meter_id, security_setup, client_sap, security_suite, block_key, auth_key, master_key, hls_secret,
       client_system_title, rx_invocation_counter, tx_invocation_counter, CASE WHEN changed THEN now() END, now(),
       signing_key, agreement_key, lls_password
FROM {STAGE_KEYS}
ON CONFLICT (meter_id, security_setup) DO UPDATE SET
    keys_changed_at = CASE
        WHEN (k.block_key, k.auth_key, k.master_key, k.hls_secret)
             IS DISTINCT FROM (EXCLUDED.block_key, EXCLUDED.auth_key, EXCLUDED.master_key, EXCLUDED.hls_secret)
        THEN now() ELSE k.keys_changed_at END,
    rx_invocation_counter = CASE WHEN k.block_key = EXCLUDED.block_key
        THEN GREATEST(k.rx_invocation_counter, EXCLUDED.rx_invocation_counter) ELSE EXCLUDED.rx_invocation_counter END,
    tx_invocation_counter = CASE WHEN k.block_key = EXCLUDED.block_key
        THEN GREATEST(k.tx_invocation_counter, EXCLUDED.tx_invocation_counter) ELSE EXCLUDED.tx_invocation_counter END,
    security_suite = EXCLUDED.security_suite,
    block_key = EXCLUDED.block_key,
    auth_key = EXCLUDED.auth_key,
    master_key = EXCLUDED.master_key,
    hls_secret = EXCLUDED.hls_secret,
    client_system_title = COALESCE(EXCLUDED.client_system_title, k.client_system_title),
    signing_key = COALESCE(EXCLUDED.signing_key, k.signing_key),
    agreement_key = COALESCE(EXCLUDED.agreement_key, k.agreement_key),
    lls_password = COALESCE(EXCLUDED.lls_password, k.lls_password),
    updated_at = now()
"""
SELECT_KEYS = "SELECT * FROM meter_keys WHERE meter_id >= $1 AND meter_id < $2 ORDER BY meter_id, security_setup"

# updated_at moves only when an identity really changed (a restart with the same options writes nothing).
UPSERT_METERS = f"""
INSERT INTO meters AS m ({", ".join(METER_COLUMNS)})
SELECT {", ".join(METER_COLUMNS)} FROM {STAGE_METERS}
ON CONFLICT (meter_id) DO UPDATE SET
    serial = EXCLUDED.serial,
    logical_device_name = EXCLUDED.logical_device_name,
    system_title = EXCLUDED.system_title,
    kind = EXCLUDED.kind,
    transport = EXCLUDED.transport,
    host = EXCLUDED.host,
    port = EXCLUDED.port,
    hdlc_physical_address = EXCLUDED.hdlc_physical_address,
    updated_at = now()
WHERE (m.serial, m.logical_device_name, m.system_title, m.kind, m.transport, m.host, m.port,
       m.hdlc_physical_address)
    IS DISTINCT FROM (EXCLUDED.serial, EXCLUDED.logical_device_name, EXCLUDED.system_title, EXCLUDED.kind,
                      EXCLUDED.transport, EXCLUDED.host, EXCLUDED.port, EXCLUDED.hdlc_physical_address)
"""

# A worker killed with SIGKILL recorded no closes: its successor closes what it left open. $1..$2 is
# the shard (start inclusive, stop exclusive), $3 the simulated time now.
CLOSE_LOST_CONNECTIONS = """
UPDATE active_connections
SET closed_at = now(), close_reason = 'worker-lost', sim_closed_at = $3
WHERE meter_id >= $1 AND meter_id < $2 AND closed_at IS NULL
"""
CLOSE_LOST_ASSOCIATIONS = """
UPDATE client_associations
SET released_at = now(), release_reason = 'worker-lost', sim_released_at = $3
WHERE meter_id >= $1 AND meter_id < $2 AND result = 'accepted' AND released_at IS NULL
"""

# Both writes of a batch are idempotent, so a batch retried after a lost commit acknowledgement
# changes nothing: inserts skip existing keys, closes only fill a NULL.
INSERT_CONNECTIONS = f"""
INSERT INTO active_connections ({", ".join(CONNECTION_COLUMNS)})
SELECT {", ".join(CONNECTION_COLUMNS)} FROM {STAGE_CONNECTIONS} WHERE opened_at IS NOT NULL
ON CONFLICT (meter_id, connection_id) DO NOTHING
"""
CLOSE_CONNECTIONS = f"""
UPDATE active_connections AS a
SET closed_at = s.closed_at, close_reason = s.close_reason, sim_closed_at = s.sim_closed_at
FROM {STAGE_CONNECTIONS} AS s
WHERE s.opened_at IS NULL AND a.meter_id = s.meter_id AND a.connection_id = s.connection_id
    AND a.closed_at IS NULL
"""
INSERT_ASSOCIATIONS = f"""
INSERT INTO client_associations ({", ".join(ASSOCIATION_COLUMNS)})
SELECT {", ".join(ASSOCIATION_COLUMNS)} FROM {STAGE_ASSOCIATIONS} WHERE requested_at IS NOT NULL
ON CONFLICT (meter_id, association_id) DO NOTHING
"""
RELEASE_ASSOCIATIONS = f"""
UPDATE client_associations AS a
SET released_at = s.released_at, release_reason = s.release_reason, sim_released_at = s.sim_released_at
FROM {STAGE_ASSOCIATIONS} AS s
WHERE s.requested_at IS NULL AND a.meter_id = s.meter_id AND a.association_id = s.association_id
    AND a.released_at IS NULL
"""


# -- fleet_commands: `fleet inject` orders, LISTEN/NOTIFY on COMMANDS_CHANNEL (0011_fleet_commands) ----------

COMMANDS_CHANNEL = "fleet_commands"
LAST_COMMAND = "SELECT coalesce(max(command_id), 0) FROM fleet_commands"
EARLIER_COMMANDS = """SELECT c.command_id, c.action, c.first_meter, c.last_meter, c.share, c.params,
                     extract(epoch FROM min(r.sim_at)) AS sim_at
              FROM fleet_commands c LEFT JOIN fleet_command_results r USING (command_id)
              WHERE c.command_id <= $1 GROUP BY c.command_id ORDER BY c.command_id"""
NEWER_COMMANDS = """SELECT command_id, action, first_meter, last_meter, share, params
            FROM fleet_commands WHERE command_id > $1 ORDER BY command_id"""
RECORD_COMMAND_RESULT = """INSERT INTO fleet_command_results (command_id, shard_start, shard_stop, meters, sim_at)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (command_id, shard_start) DO NOTHING"""
ISSUE_COMMAND = """INSERT INTO fleet_commands (action, first_meter, last_meter, share, params)
            VALUES ($1, $2, $3, $4, $5::jsonb) RETURNING command_id"""
COMMAND_RESULTS = "SELECT count(*), coalesce(sum(meters), 0) FROM fleet_command_results WHERE command_id = $1"


# -- meter_journal: what head-ends and operators did to each meter (0016_meter_journal) --------------------

JOURNAL_COLUMNS = ("meter_id", "sim_time", "meter_time", "source", "client_sap", "service", "class_id", "obis",
                   "index", "value", "result", "outcome", "replay", "command_id", "params")
SELECT_JOURNAL = """
SELECT meter_id, sim_time, source, service, class_id, obis, index, value, command_id, params
FROM meter_journal
WHERE meter_id >= $1 AND meter_id < $2 AND replay
ORDER BY meter_id, sim_time, seq"""


# -- backfill_progress: chunks of a backfill job written (0003_backfill_progress) ------------------------

SELECT_BACKFILL_DONE = "SELECT meter_from FROM backfill_progress WHERE job_key = $1"
MARK_BACKFILL_CHUNK = ("INSERT INTO backfill_progress (job_key, meter_from, meter_to, window_start, window_end, "
                       "rows_written) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING")


# -- ground truth: the profiles and logs the meters capture (0002_profile_ground_truth) ------------------

_ENERGY = ("active_import_wh", "active_export_wh", "apparent_import_vah", "apparent_export_vah",
           "reactive_q1_varh", "reactive_q2_varh", "reactive_q3_varh", "reactive_q4_varh")

PROFILE_COLUMNS: dict[str, tuple[str, ...]] = {
    "block_load_profile": ("meter_id", "capture_time", "interval_seconds", "avg_current_l1", "avg_current_l2",
                           "avg_current_l3", "avg_voltage_l1", "avg_voltage_l2", "avg_voltage_l3", *_ENERGY),
    "daily_load_profile": ("meter_id", "capture_time", *_ENERGY),
    "billing_profile": ("meter_id", "billing_time", "billing_count", *_ENERGY, "md_active_import_w",
                        "md_active_import_time", "md_apparent_import_va", "md_apparent_import_time",
                        "average_power_factor", "power_on_minutes"),
    "event_logs": ("meter_id", "category", "occurred_at", "event_code", "current_l1", "current_l2", "current_l3",
                   "voltage_l1", "voltage_l2", "voltage_l3", "power_factor_l1", "power_factor_l2", "power_factor_l3",
                   "active_import_wh"),
    "eswf_status": ("meter_id", "changed_at", "esw", "bits_set"),
    "instant_profile": ("meter_id", "capture_time", "voltage_l1", "voltage_l2", "voltage_l3", "current_l1",
                        "current_l2", "current_l3", "current_neutral", "power_factor_l1", "power_factor_l2",
                        "power_factor_l3", "power_factor", "frequency", "active_power_w", "reactive_power_var",
                        "apparent_power_va", "active_import_wh", "apparent_import_vah"),
}
PROFILE_TABLES = tuple(PROFILE_COLUMNS)


def stage_of(table: str) -> str:
    """The session-local staging table COPY fills before rows of ``table`` are inserted."""
    return f"fleet_stage_{table}"


CREATE_PROFILE_STAGING = "\n".join(
    f"CREATE TEMP TABLE IF NOT EXISTS {stage_of(t)} (LIKE {t} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS;"
    for t in PROFILE_TABLES
)


def insert_staged(table: str, columns: tuple[str, ...]) -> str:
    """Move the staged rows of ``table`` into it, skipping those there already."""
    cols = ", ".join(columns)
    return f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {stage_of(table)} ON CONFLICT DO NOTHING"


def insert_one(table: str, columns: tuple[str, ...]) -> str:
    """Insert one row of ``table`` (unless there already)."""
    marks = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks}) ON CONFLICT DO NOTHING"


# -- push_received: what hes-sink took (0008_push_received), written with `fleet.store.writer.write_batch` --

PUSH_RECEIVED_COLUMNS = {"push_received": ("meter_id", "push_logical_name", "notified_at", "long_invoke_id",
                                           "ciphered", "apdu_bytes", "peer", "body")}
CREATE_PUSH_RECEIVED_STAGE = (f"CREATE TEMP TABLE IF NOT EXISTS {stage_of('push_received')} (LIKE push_received "
                              "INCLUDING DEFAULTS) ON COMMIT DELETE ROWS")


# Where a writer's history ends, and its move, in the same transaction as the rows (0015_capture_progress).
SELECT_PROGRESS = ("SELECT meter_from, meter_to, captured_until FROM capture_progress "
                   "WHERE meter_from < $2 AND meter_to > $1")
RECORD_PROGRESS = """
INSERT INTO capture_progress AS p (meter_from, meter_to, captured_until) VALUES ($1, $2, $3)
ON CONFLICT (meter_from, meter_to) DO UPDATE SET captured_until = EXCLUDED.captured_until, updated_at = now()
WHERE p.captured_until < EXCLUDED.captured_until
"""


# -- default settings (`fleet db migrate`, fleet.store.defaults; 0004_settings and later) -----------------

INSERT_LOAD_TEMPLATE = ("INSERT INTO load_profile_templates (category, season, day_type, interval_minutes, base_load_kw,"
                        " peak_load_kw, variation_pattern) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING")
INSERT_PQ_CONFIG = ("INSERT INTO power_quality_events_config (event_type, probability_per_day, min_duration_s,"
                    " max_duration_s, magnitude_min, magnitude_max, phases, enabled) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                    " ON CONFLICT DO NOTHING")
INSERT_HDLC_SETTINGS = ("INSERT INTO hdlc_settings (meter_id, comm_speed, window_size_transmit, window_size_receive,"
                        " max_info_field_length_transmit, max_info_field_length_receive, inter_octet_time_out_ms,"
                        " inactivity_time_out_s) VALUES (NULL, 5, 1, 1, 128, 128, 25, 120) ON CONFLICT DO NOTHING")
INSERT_COMMUNICATION_PORT = ("INSERT INTO communication_ports (meter_id, logical_name, class_id, port_type, settings)"
                             " VALUES (NULL, $1, $2, $3, $4) ON CONFLICT DO NOTHING")
INSERT_SECURITY_SETTINGS = ("INSERT INTO security_settings (meter_id, client_sap, security_setup, security_policy, security_suite,"
                            " authentication) VALUES (NULL, $1, $2, $3, 0, $4) ON CONFLICT DO NOTHING")
INSERT_OBIS_CODE = ("INSERT INTO obis_codes (obis, class_id, version, description, meter_kinds) VALUES ($1, $2, $3, $4, $5)"
                    " ON CONFLICT DO NOTHING")
INSERT_PUSH_SETUP = ("INSERT INTO push_setups (meter_id, logical_name, name, randomisation_start_interval_s, number_of_retries,"
                     " repetition_delay_s) VALUES (NULL, $1, $2, $3, $4, $5) ON CONFLICT DO NOTHING")
INSERT_PUSH_OBJECT = ("INSERT INTO push_objects (meter_id, push_logical_name, position, class_id, logical_name,"
                      " attribute_index, data_index) VALUES (NULL, $1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING")
INSERT_PUSH_SCHEDULE = ("INSERT INTO push_schedules (meter_id, push_logical_name, schedule_type, enabled) VALUES (NULL, $1, $2, $3)"
                        " ON CONFLICT DO NOTHING")
INSERT_ACCESS_RIGHTS = ("INSERT INTO access_rights (client_sap, association, class_id, logical_name, attribute_access,"
                        " method_access, meter_kind) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING")
SELECT_LOAD_TEMPLATES = ("SELECT category, season, day_type, interval_minutes, base_load_kw, peak_load_kw, variation_pattern"
                         " FROM load_profile_templates")
SELECT_PQ_CONFIG = ("SELECT event_type, probability_per_day, min_duration_s, max_duration_s, magnitude_min, magnitude_max,"
                    " phases, enabled FROM power_quality_events_config")
SELECT_PUSH_SETTINGS = ("SELECT p.logical_name, p.randomisation_start_interval_s, p.number_of_retries, p.repetition_delay_s,"
                        " p.enabled AND s.schedule_type IS NOT NULL AS enabled, s.schedule_type, p.push_operation_method,"
                        " p.destination"
                        " FROM push_setups p LEFT JOIN push_schedules s ON s.push_logical_name = p.logical_name"
                        " AND s.meter_id IS NULL AND s.enabled WHERE p.meter_id IS NULL")
