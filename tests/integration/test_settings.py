"""Settings in PostgreSQL: seeded by `fleet db migrate`, kept as edited, read by the meters."""

from __future__ import annotations

import asyncio

import asyncpg

from fleet.store.defaults import device_config, load_push_settings, load_settings, seed_defaults
from meter_core.device import powerquality as pq
from meter_core.device import templates
from meter_core.device.config import BILLING_PUSH, DEFAULT_DEVICE, EVENT_PUSHES, INSTANT_PUSH
from meter_core.device.identity import MeterKind


def run(url, fn):
    async def go():
        conn = await asyncpg.connect(url)
        try:
            return await fn(conn)
        finally:
            await conn.close()

    return asyncio.run(go())


def test_defaults_are_seeded_once_and_edits_survive_a_migrate(database_url):
    async def check(conn):
        counts = {t: await conn.fetchval(f"SELECT count(*) FROM {t}") for t in (
            "obis_codes", "load_profile_templates", "power_quality_events_config", "hdlc_settings",
            "communication_ports", "push_setups", "push_objects", "push_schedules", "access_rights",
            "security_settings")}
        assert all(counts.values()), counts
        assert counts["load_profile_templates"] == len(templates.DEFAULT_TEMPLATES)
        await conn.execute("UPDATE power_quality_events_config SET probability_per_day = 3 WHERE event_type = 'INTERRUPTION'")
        await seed_defaults(conn)
        again = {t: await conn.fetchval(f"SELECT count(*) FROM {t}") for t in counts}
        assert again == counts
        assert await conn.fetchval("SELECT probability_per_day FROM power_quality_events_config "
                                   "WHERE event_type = 'INTERRUPTION'") == 3
        # instant, alert, block load, daily load and billing pushes; the event-log pushes are off
        assert await conn.fetchval("SELECT count(*) FROM active_schedules") == 5
        # the push settings as edited are what workers use
        await conn.execute("UPDATE push_schedules SET schedule_type = 'ONE_HOUR' WHERE push_logical_name = $1",
                           INSTANT_PUSH)
        await conn.execute("UPDATE push_setups SET number_of_retries = 5 WHERE logical_name = $1", INSTANT_PUSH)
        config = device_config(([], []), await load_push_settings(conn))
        assert config.scheduled()[INSTANT_PUSH] == "ONE_HOUR" and config.push[INSTANT_PUSH].retries == 5
        assert EVENT_PUSHES[0] not in config.scheduled() and not config.push[EVENT_PUSHES[0]].enabled
        assert config.push[BILLING_PUSH].enabled
        assert DEFAULT_DEVICE.scheduled()[INSTANT_PUSH] == "FIFTEEN_MIN"  # a value: the defaults are untouched
        # the object_list's rights are the table's: utility settings may write the clock time, the
        # meter reader only read it
        rights = {r["client_sap"]: r["attribute_access"][1] for r in await conn.fetch(
            "SELECT client_sap, attribute_access FROM access_rights WHERE meter_kind = '3ph' "
            "AND logical_name = '0.0.1.0.0.255' AND client_sap IN (32, 48)")}
        assert rights == {32: 1, 48: 3}
        return await load_settings(conn)

    config = device_config(run(database_url, check))
    days = range(20_000, 20_100)
    outages = sum(e.kind == "INTERRUPTION" for d in days
                  for e in pq.day_events(1, 1, MeterKind.SINGLE_PHASE, d, config.power_quality))
    assert outages > 150  # three a day now, not one in four days
