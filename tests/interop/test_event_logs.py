"""Every event log, the ESW and the ESWF, read (and written) by gurux-dlms and dlms-cosem over TCP."""

from __future__ import annotations

import datetime as dt

import pytest
from dlms_cosem.utils import parse_as_dlms_data
from gurux_dlms.enums import DataType as GXType
from gurux_dlms.objects import GXDLMSData, GXDLMSProfileGeneric

from meter_core.connection import Transport
from meter_core.device import eventprofiles, logbook
from meter_core.device.identity import MeterKind
from tests.interop.test_profiles import (
    IST,
    cosem_can_read,
    cosem_client,
    cosem_plain,
    gurux,
    gurux_rows,
    pg_attr,
)
from tests.servers import running_meters

pytestmark = pytest.mark.interop
COMBOS = [(k, t) for k in MeterKind for t in (Transport.WRAPPER, Transport.HDLC)]


@pytest.fixture(scope="module", params=COMBOS, ids=[f"{k.value}-{t.value}" for k, t in COMBOS])
def meter(request):
    kind, transport = request.param
    with running_meters(1, transport, kind=kind) as running:
        yield running


def test_every_event_log_reads_by_entry_and_range_and_agrees_between_clients(meter):
    kind = meter.options.kind
    got = {}
    s = gurux(meter)
    try:
        for category, obis in enumerate(logbook.LOG_OBIS):
            pg = GXDLMSProfileGeneric(obis)
            s.read(pg, 3)
            cols = [(o.objectType, o.logicalName, a.attributeIndex) for o, a in pg.captureObjects]
            assert cols == list(eventprofiles.log_columns(category, kind))
            s.read(pg, 7)
            s.read(pg, 8)
            assert pg.profileEntries == logbook.DEPTH[category]
            pg.buffer = []
            s.read(pg, 2)
            got[obis] = gurux_rows(pg)
            assert len(got[obis]) == pg.entriesInUse <= pg.profileEntries
            if got[obis]:
                pg.buffer = []
                reply = s.exchange(s.client.readRowsByEntry(pg, 1, 1))
                s.client.updateValue(pg, 2, reply.value)
                assert gurux_rows(pg) == got[obis][:1]
                first = got[obis][0][0]
                pg.buffer = []
                reply = s.exchange(s.client.readRowsByRange(pg, first.replace(tzinfo=IST),
                                                            (first + dt.timedelta(seconds=1)).replace(tzinfo=IST)))
                s.client.updateValue(pg, 2, reply.value)
                assert gurux_rows(pg)[0] == got[obis][0]
        # on the default supply config every kind sees power failures and voltage events within the buffers
        assert got["0.0.99.98.2.255"] and {r[1] for r in got["0.0.99.98.2.255"]} <= {101, 102}
        assert got["0.0.99.98.0.255"]
        s.close()
    finally:
        s.sock.close()
    if not cosem_can_read(meter):
        return
    with cosem_client(meter).session() as c:
        for obis in ("0.0.99.98.0.255", "0.0.99.98.2.255"):
            rows = [tuple(cosem_plain(x) for x in r) for r in parse_as_dlms_data(c.get(pg_attr(obis, 2)))]
            assert rows == got[obis]


def test_esw_is_a_128_bit_string_and_eswf_is_written(meter):
    from tests.interop.clients import utility_settings

    s = gurux(meter)
    try:
        esw = GXDLMSData("0.0.94.91.18.255")
        s.read(esw, 2)
        assert len(str(esw.value)) == 128  # gurux shows a bit-string as its bits
        s.close()
    finally:
        s.sock.close()
    s = utility_settings(meter)  # the ESWF is programmed through client 48
    try:
        eswf = GXDLMSData("0.0.94.91.26.255")
        s.read(eswf, 2)
        eswf.value = "0" * 4 + "1" * 124
        eswf.setDataType(2, GXType.BITSTRING)
        reply = s.exchange(s.client.write(eswf, 2))
        assert reply.error == 0
        eswf.value = None
        s.read(eswf, 2)
        assert str(eswf.value) == "0" * 4 + "1" * 124
        s.close()
    finally:
        s.sock.close()
