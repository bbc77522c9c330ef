"""Every profile of every meter kind, read by gurux-dlms and dlms-cosem over TCP, wrapper and HDLC.

Both clients read the same closed entries (past blocks, days and billing periods do not change), so
their values must agree; each is also checked for what a head-end relies on: capture objects, entry
counts, 30-minute steps, range bounds, entry and column selection, and a whole 46-day block-load
buffer pulled in hundreds of GET blocks of a 256-byte PDU.
"""

from __future__ import annotations

import datetime as dt

import pytest
from dlms_cosem import cosem, enumerations
from dlms_cosem.cosem.obis import Obis
from dlms_cosem.cosem.selective_access import CaptureObject, EntryDescriptor, RangeDescriptor
from dlms_cosem.utils import parse_as_dlms_data
from gurux_dlms.objects import GXDLMSProfileGeneric

from meter_core.connection import Transport
from meter_core.cosem import is15959 as cat
from meter_core.device.identity import MeterKind
from tests.interop.clients import GuruxSession, dlms_cosem_client
from tests.servers import running_meters

pytestmark = pytest.mark.interop

IST = dt.timezone(dt.timedelta(hours=5, minutes=30))
BLOCK, DAILY, BILLING = "1.0.99.1.0.255", "1.0.99.2.0.255", "1.0.98.1.0.255"
COMBOS = [(k, t) for k in MeterKind for t in (Transport.WRAPPER, Transport.HDLC)]


@pytest.fixture(scope="module", params=COMBOS, ids=[f"{k.value}-{t.value}" for k, t in COMBOS])
def meter(request):
    kind, transport = request.param
    with running_meters(1, transport, kind=kind) as running:
        yield running


def gurux(meter, max_pdu=256) -> GuruxSession:
    ident = meter.identity(0)
    s = GuruxSession(meter.port(0), meter.options.transport, client_sap=32, password=ident.lls_password,
                     physical_address=ident.hdlc_physical_address, max_pdu=max_pdu)
    s.open()
    return s


def cosem_client(meter, max_pdu=512):
    ident = meter.identity(0)
    return dlms_cosem_client(meter.port(0), meter.options.transport, client_sap=32, password=ident.lls_password,
                             physical_address=ident.hdlc_physical_address, max_pdu=max_pdu)


def plain(v):
    """A gurux cell as a comparable value (dates to naive IST wall time, bytes to bytes)."""
    if hasattr(v, "value") and hasattr(v.value, "year"):  # GXDateTime
        from gurux_dlms.enums import DateTimeSkips

        if v.skip & DateTimeSkips.YEAR:
            return None  # "not specified" (gurux fills the wildcards with 2000-01-01)
        return v.value.replace(tzinfo=None)
    if isinstance(v, bytearray):
        return bytes(v)
    if isinstance(v, list):
        return tuple(plain(x) for x in v)
    return v


def cosem_plain(v):
    if isinstance(v, bytearray):
        v = bytes(v)
    if isinstance(v, bytes) and len(v) == 12 and v[:4] == b"\xff\xff\xff\xff":
        return None
    if isinstance(v, bytes) and len(v) == 12 and v[:2] in (b"\x07\xe9", b"\x07\xea", b"\x07\xeb", b"\x07\xe8"):
        return dt.datetime(int.from_bytes(v[:2], "big"), v[2], v[3], v[5], v[6], v[7])
    if isinstance(v, list):
        return tuple(cosem_plain(x) for x in v)
    return v


def gurux_rows(pg) -> list[tuple]:
    return [tuple(plain(c) for c in row) for row in pg.buffer]


def local_today() -> dt.datetime:
    return dt.datetime.now(IST).replace(tzinfo=None, hour=0, minute=0, second=0, microsecond=0)


def clock_restriction():
    return CaptureObject(cosem.CosemAttribute(interface=enumerations.CosemInterface.CLOCK,
                                              instance=Obis.from_string("0.0.1.0.0.255"), attribute=2), 0)


class Entries(EntryDescriptor):
    """dlms-cosem's EntryDescriptor has no encoder (it raises NotImplementedError): the descriptor's
    bytes are written here from IEC 62056-6-2 4.3.6 (selector 2, structure of four unsigned counts)."""

    def to_bytes(self) -> bytes:
        return (b"\x02\x02\x04" + b"\x06" + self.from_entry.to_bytes(4, "big") + b"\x06" + self.to_entry.to_bytes(4, "big")
                + b"\x12" + self.from_selected_value.to_bytes(2, "big")
                + b"\x12" + self.to_selected_value.to_bytes(2, "big"))


def cosem_can_read(meter) -> bool:
    """dlms-cosem reads an HDLC frame up to the next 0x7E byte (HdlcTransport.recv_frame), but DLMS HDLC
    has no byte stuffing: the frame length field delimits the frame and 0x7E may occur inside it (as in
    u9n/dlms-cosem#97). Profile rows hit that, so dlms-cosem compares over the wrapper; gurux-dlms reads
    every profile over both transports."""
    return meter.options.transport is Transport.WRAPPER


def pg_attr(obis: str, index: int) -> cosem.CosemAttribute:
    return cosem.CosemAttribute(interface=enumerations.CosemInterface.PROFILE_GENERIC,
                                instance=Obis.from_string(obis), attribute=index)


def test_every_profile_reads_with_capture_objects_and_entries(meter):
    kind = meter.options.kind
    s = gurux(meter)
    try:
        for spec in cat.PROFILES:
            pg = GXDLMSProfileGeneric(spec.obis)
            s.read(pg, 3)
            columns = [(o.objectType, o.logicalName, a.attributeIndex) for o, a in pg.captureObjects]
            assert columns == [(c, o, a) for c, o, a in spec.columns[kind]], spec.name
            s.read(pg, 7)
            s.read(pg, 8)
            pg.buffer = []
            s.read(pg, 2)
            assert len(pg.buffer) == pg.entriesInUse <= pg.profileEntries, spec.name
            assert all(len(r) == len(columns) for r in pg.buffer)
            if pg.entriesInUse:
                pg.buffer = []
                reply = s.exchange(s.client.readRowsByEntry(pg, 1, 1))
                s.client.updateValue(pg, 2, reply.value)
                assert len(pg.buffer) == 1
        s.close()
    finally:
        s.sock.close()


def test_block_load_by_range_and_entry_agree_between_gurux_and_dlms_cosem(meter):
    day = local_today() - dt.timedelta(days=1)
    s = gurux(meter)
    try:
        pg = GXDLMSProfileGeneric(BLOCK)
        s.read(pg, 3)
        pg.buffer = []
        reply = s.exchange(s.client.readRowsByRange(pg, day.replace(tzinfo=IST), (day + dt.timedelta(days=1)).replace(tzinfo=IST)))
        s.client.updateValue(pg, 2, reply.value)
        by_gurux = gurux_rows(pg)
        pg.buffer = []
        reply = s.exchange(s.client.readRowsByEntry(pg, 1, 3))
        s.client.updateValue(pg, 2, reply.value)
        first3_gurux = gurux_rows(pg)
        s.close()
    finally:
        s.sock.close()
    assert [r[0] for r in by_gurux] == [day + dt.timedelta(minutes=30 * i) for i in range(49)]
    assert all(r[0] + dt.timedelta(minutes=30) == n[0] for r, n in zip(first3_gurux, first3_gurux[1:]))
    if not cosem_can_read(meter):
        return
    with cosem_client(meter).session() as c:
        rng = RangeDescriptor(restricting_object=clock_restriction(), from_value=day.replace(tzinfo=IST),
                              to_value=(day + dt.timedelta(days=1)).replace(tzinfo=IST))
        by_cosem = [tuple(cosem_plain(x) for x in r) for r in parse_as_dlms_data(c.get(pg_attr(BLOCK, 2), rng))]
        entries = Entries(from_entry=1, to_entry=3)
        first3_cosem = [tuple(cosem_plain(x) for x in r)
                        for r in parse_as_dlms_data(c.get(pg_attr(BLOCK, 2), entries))]
    assert by_cosem == by_gurux
    assert first3_cosem == first3_gurux


def test_daily_and_billing_agree_between_clients(meter):
    s = gurux(meter)
    try:
        got = {}
        for obis in (DAILY, BILLING):
            pg = GXDLMSProfileGeneric(obis)
            s.read(pg, 3)
            pg.buffer = []
            s.read(pg, 2)
            got[obis] = gurux_rows(pg)
        s.close()
    finally:
        s.sock.close()
    daily = got[DAILY]
    assert [r[0].time() for r in daily] == [dt.time(0, 0)] * len(daily)
    assert all(b[0] - a[0] == dt.timedelta(days=1) for a, b in zip(daily, daily[1:]))
    if not cosem_can_read(meter):
        return
    with cosem_client(meter).session() as c:
        for obis in (DAILY, BILLING):
            rows = [tuple(cosem_plain(x) for x in r) for r in parse_as_dlms_data(c.get(pg_attr(obis, 2)))]
            if obis == BILLING:  # gurux leaves the octet-string time stamp (class 1) as bytes
                rows = [(got[obis][i][0], *r[1:]) for i, r in enumerate(rows)]
                got[obis] = [(r[0], *(cosem_plain(x) if isinstance(x, (bytes, bytearray)) else x for x in r[1:]))
                             for r in got[obis]]
            assert rows == got[obis], obis


def test_whole_block_load_buffer_in_many_blocks(meter):
    if meter.options.transport is Transport.HDLC and meter.options.kind is not MeterKind.THREE_PHASE:
        pytest.skip("the whole buffer over HDLC once is enough (3ph)")
    before = meter.worker.stats.all_counts[("get-next", "ok")]
    s = gurux(meter)
    try:
        pg = GXDLMSProfileGeneric(BLOCK)
        s.read(pg, 3)
        pg.buffer = []
        s.read(pg, 2)
        s.close()
    finally:
        s.sock.close()
    assert len(pg.buffer) == 2208
    assert meter.worker.stats.all_counts[("get-next", "ok")] - before > 300
    times = [plain(r[0]) for r in pg.buffer]
    assert all(b - a == dt.timedelta(minutes=30) for a, b in zip(times, times[1:]))


def test_a_head_end_read_all_works_for_every_kind(meter):
    """gurux reads every attribute the meter reader's object_list offers, for each kind and transport."""
    from gurux_dlms.enums import AccessMode, ObjectType

    from tests.interop.clients import GuruxError

    s = gurux(meter, max_pdu=1024)
    problems, reads = [], 0
    try:
        for obj in s.object_list():
            order = list(range(1, obj.getAttributeCount() + 1))
            if obj.objectType == ObjectType.PROFILE_GENERIC:
                order.remove(3)
                order.insert(1, 3)
            for index in order:
                try:
                    s.read(obj, index)
                    reads += 1
                except GuruxError as e:
                    if obj.getAccess(index) != AccessMode.NO_ACCESS:
                        problems.append((obj.logicalName, index, e.code))
        s.close()
    finally:
        s.sock.close()
    assert problems == []
    assert reads > 300
