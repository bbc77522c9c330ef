"""Default settings written into PostgreSQL by `fleet db migrate`, and read back by workers.

Defaults come from the code (the object models, templates, power-quality configuration, push
setups) and are inserted with ON CONFLICT DO NOTHING, so a row a user edited stays as edited and
migrating again changes nothing. Workers and backfill jobs read the load templates and the
power-quality configuration at start (`load_settings`), so an edit takes effect at the next start
(the values of past days change with it: they are recomputed, not stored).
"""

from __future__ import annotations

import json

import asyncpg

from fleet.store import sql
from meter_core.cosem.build import model_for, str_obis
from meter_core.cosem.ic import push_setup
from meter_core.cosem.is15959 import ASSOCIATIONS, HDLC_SETUP, IPV4_SETUP, SECURED_SAPS, TCP_UDP_SETUP
from meter_core.device import powerquality, templates
from meter_core.device.config import DEFAULT_PUSHES, TRIGGER_OF, DeviceConfig
from meter_core.device.identity import MeterKind

_AUTH = {0: "none", 1: "low", 2: "high", 5: "high-gmac", 7: "high-ecdsa"}


async def seed_defaults(conn: asyncpg.Connection) -> None:
    """Insert the default settings that are missing (idempotent)."""
    async with conn.transaction():
        await _obis_codes(conn)
        await conn.executemany(sql.INSERT_LOAD_TEMPLATE,
            [(r["category"], r["season"], r["day_type"], r["interval_minutes"], r["base_load_kw"],
              r["peak_load_kw"], json.dumps(r["variation_pattern"])) for r in templates.rows()])
        await conn.executemany(sql.INSERT_PQ_CONFIG,
            [(c.event_type, c.probability_per_day, c.min_duration_s, c.max_duration_s, c.magnitude_min,
              c.magnitude_max, c.phases, c.enabled) for c in powerquality.DEFAULT_CONFIG])
        await conn.execute(sql.INSERT_HDLC_SETTINGS)
        await conn.executemany(sql.INSERT_COMMUNICATION_PORT,
            [(HDLC_SETUP, 23, "HDLC", json.dumps({"comm_speed": 9600})),
             (TCP_UDP_SETUP, 41, "TCP_UDP", json.dumps({"port": 4059, "maximum_simultaneous_connections": 2})),
             (IPV4_SETUP, 42, "IPV4", json.dumps({})),
             ("0.0.25.4.0.255", 45, "GPRS", json.dumps({}))])
        await _push(conn)
        await _access_rights(conn)
        await conn.executemany(sql.INSERT_SECURITY_SETTINGS,
            # security_policy in the seed's terms (class 64 v0 enum): 3 = all messages authenticated and
            # encrypted, what the v1 policy of clients 48, 64 and 80 (bits 2, 3, 5, 6) amounts to
            [(a.client_sap, a.security_setup or "", 3 if a.client_sap in SECURED_SAPS else 0,
              _AUTH.get(int(a.mechanism), str(a.mechanism))) for a in ASSOCIATIONS])


async def _obis_codes(conn) -> None:
    seen: dict[tuple[str, int], tuple[int, str, set]] = {}
    for kind in MeterKind:
        for obj in model_for(kind).objects:
            key = (str_obis(obj.ln), obj.ic.class_id)
            entry = seen.setdefault(key, (obj.ic.version, obj.name, set()))
            entry[2].add(kind.value)
    await conn.executemany(sql.INSERT_OBIS_CODE,
        [(o, c, v, name, sorted(kinds)) for (o, c), (v, name, kinds) in sorted(seen.items())])


async def _push(conn) -> None:
    for obj in push_setup.push_setup_objects(MeterKind.THREE_PHASE, DEFAULT_PUSHES):
        obis = str_obis(obj.ln)
        c = DEFAULT_PUSHES[[d.logical_name for d in DEFAULT_PUSHES].index(obis)]
        await conn.execute(sql.INSERT_PUSH_SETUP,
            obis, obj.name, c.randomisation_s, c.retries, c.repetition_delay_s)
        entries = push_setup.push_object_list(obis, MeterKind.THREE_PHASE).value
        await conn.executemany(sql.INSERT_PUSH_OBJECT,
            [(obis, i, e.value[0].value, str_obis(e.value[1].value), e.value[2].value, e.value[3].value)
             for i, e in enumerate(entries, start=1)])
        await conn.execute(sql.INSERT_PUSH_SCHEDULE, obis, c.schedule or TRIGGER_OF[obis], c.enabled)


async def _access_rights(conn) -> None:
    rows = []
    for kind in MeterKind:
        for sap, view in model_for(kind).associations.items():
            for obj, rights in view.entries:
                rows.append((sap, str_obis(view.spec.ln), obj.ic.class_id, str_obis(obj.ln),
                             [int(m) for m in rights.attributes], [int(m) for m in rights.methods], kind.value))
    await conn.executemany(sql.INSERT_ACCESS_RIGHTS, rows)


async def load_settings(conn: asyncpg.Connection) -> tuple[list[dict], list[dict]]:
    """The load templates and power-quality configuration as the database holds them."""
    tpl_rows = [dict(r) for r in await conn.fetch(sql.SELECT_LOAD_TEMPLATES)]
    for r in tpl_rows:
        if isinstance(r["variation_pattern"], str):
            r["variation_pattern"] = json.loads(r["variation_pattern"])
    pq_rows = [dict(r) for r in await conn.fetch(sql.SELECT_PQ_CONFIG)]
    return tpl_rows, pq_rows


async def load_push_settings(conn: asyncpg.Connection) -> list[dict]:
    """The fleet's push setups as the database holds them (the rows without a meter_id), with their
    schedule type (the enabled push_schedules row; none: the push setup is off)."""
    rows = await conn.fetch(sql.SELECT_PUSH_SETTINGS)
    return [dict(r) for r in rows]


def device_config(settings: tuple[list[dict], list[dict]], pushes: list[dict] | None = None) -> DeviceConfig:
    """The meters' `DeviceConfig` of ``settings`` (from `load_settings`) and the push setups' rows (from
    `load_push_settings`); what the database does not hold stays at the code's defaults."""
    tpl_rows, pq_rows = settings
    return DeviceConfig.from_rows(pushes=pushes or None, templates=tpl_rows or None, power_quality=pq_rows or None)
