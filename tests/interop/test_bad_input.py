"""Bad input over real sockets: the meter answers as the standard says and no other meter notices."""

from __future__ import annotations

import random
import socket
import threading
import time

import pytest
from gurux_dlms.objects import GXDLMSClock
from prometheus_client import REGISTRY

from fleet import metrics
from fleet.runtime.budget import RESERVE
from meter_core import NEED_DATA
from meter_core.client import Associated, ClientSettings, DlmsClient, GetResult
from meter_core.codec.apdu import decode_apdu, encode_apdu
from meter_core.codec.apdu.xdlms import ExceptionResponse, GetResponseNormal
from meter_core.codec.errors import ExceptionServiceError, ExceptionStateError
from meter_core.codec.wrapper import wrap
from meter_core.connection import Transport
from tests.interop.clients import GuruxSession
from tests.servers import running_meters

pytestmark = pytest.mark.interop


def _garbage(port: int, stop: threading.Event, sent: list) -> None:
    """Throw random bytes, truncated frames and half-valid headers at one meter until told to stop."""
    rnd = random.Random(1234)
    samples = [
        lambda: rnd.randbytes(rnd.randrange(1, 300)),
        lambda: b"\x00\x01\x00\x10\x00\x01" + rnd.randbytes(rnd.randrange(0, 40)),  # wrapper, torn length
        lambda: b"\x7e\xa0" + rnd.randbytes(rnd.randrange(0, 60)) + b"\x7e",  # HDLC-looking junk
        lambda: b"\x7e" * rnd.randrange(1, 20),
        lambda: b"\x00\x01\x00\x10\x00\x01\x00\x05\xc0\x01\xc1\x00\x08",  # truncated GET in a whole frame
    ]
    while not stop.is_set():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                for _ in range(rnd.randrange(1, 8)):
                    s.sendall(rnd.choice(samples)())
                    sent[0] += 1
                if rnd.random() < 0.5:
                    s.shutdown(socket.SHUT_WR)  # drop mid-frame
                    s.settimeout(0.5)
                    try:
                        while s.recv(4096):
                            pass
                    except OSError:
                        pass
        except OSError:
            time.sleep(0.01)


def test_garbage_to_one_meter_does_not_disturb_another(meters):
    stop = threading.Event()
    sent = [0]
    t = threading.Thread(target=_garbage, args=(meters.port(0), stop, sent), daemon=True)
    t.start()
    try:
        ident = meters.identity(1)
        deadline = time.monotonic() + 30
        sessions = 0
        while sessions < 3 or (sent[0] < 100 and time.monotonic() < deadline):
            sessions += 1
            s = GuruxSession(meters.port(1), meters.options.transport,
                             physical_address=ident.hdlc_physical_address)
            s.open()
            for _ in range(30):
                clock = GXDLMSClock("0.0.1.0.0.255")
                s.read(clock, 2)
                assert clock.time is not None
            s.close()
    finally:
        stop.set()
        t.join(10)
    assert sent[0] >= 100
    # The meter that got the garbage still serves a proper client.
    ident0 = meters.identity(0)
    s = GuruxSession(meters.port(0), meters.options.transport, physical_address=ident0.hdlc_physical_address)
    s.open()
    clock = GXDLMSClock("0.0.1.0.0.255")
    s.read(clock, 2)
    s.close()
    assert meters.worker.metrics.internal_errors == 0


class RawWrapper:
    """Our sans-I/O client on a socket, for sending APDUs no proper client would send."""

    def __init__(self, port: int, **kw) -> None:
        self.client = DlmsClient(ClientSettings(transport=Transport.WRAPPER, **kw))
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)

    def next(self):
        while (ev := self.client.next_event()) is NEED_DATA:
            out = self.client.data_to_send()
            if out:
                self.sock.sendall(out)
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed")
            self.client.receive_data(data)
        return ev

    def raw(self, apdu: bytes):
        """Send one APDU as it is; return the decoded answer."""
        self.sock.sendall(wrap(16, 1, apdu))
        data = self.sock.recv(65536)
        return decode_apdu(data[8:])


@pytest.fixture(scope="module")
def wrapper_meters():
    from tests.servers import running_meters

    with running_meters(2, Transport.WRAPPER) as running:
        yield running


def test_bad_apdus_get_the_standard_answers_and_the_association_stays(wrapper_meters):
    c = RawWrapper(wrapper_meters.port(0), max_receive_pdu_size=512)
    c.client.associate()
    assert isinstance(c.next(), Associated)
    # A GET-Request that stops in the middle of its attribute descriptor.
    ans = c.raw(bytes.fromhex("c001c1000800000100"))
    assert isinstance(ans, ExceptionResponse)
    # An APDU tag no xDLMS service has.
    ans = c.raw(bytes.fromhex("ff0102"))
    assert isinstance(ans, ExceptionResponse)
    assert ans.state_error in (ExceptionStateError.SERVICE_UNKNOWN, ExceptionStateError.SERVICE_NOT_ALLOWED)
    # A request longer than the meter's negotiated max receive PDU size.
    big = bytes.fromhex("c001c1000800000100ff0200") + b"\x00" * 3000
    ans = c.raw(big)
    assert isinstance(ans, ExceptionResponse) and ans.service_error == ExceptionServiceError.PDU_TOO_LONG
    # An attribute the object does not have.
    ans = c.raw(bytes.fromhex("c001c100080000010000ff6300"))
    assert isinstance(ans, GetResponseNormal) and ans.error is not None and int(ans.error) in (3, 4, 9)
    # Still associated and serving.
    c.client.get(8, "0.0.1.0.0.255", 2)
    ev = c.next()
    assert isinstance(ev, GetResult) and ev.value is not None
    c.sock.close()


def test_a_meter_refuses_one_connection_more_than_its_tcp_udp_setup_allows(wrapper_meters):
    port = wrapper_meters.port(1)
    first = RawWrapper(port)
    second = RawWrapper(port)
    first.client.associate()
    assert isinstance(first.next(), Associated)
    second.client.associate()
    assert isinstance(second.next(), Associated)
    third = socket.create_connection(("127.0.0.1", port), timeout=5)
    assert third.recv(100) == b""  # accepted by the kernel, then closed by the meter without a word
    third.close()
    first.sock.close()
    time.sleep(0.2)
    again = RawWrapper(port)
    again.client.associate()
    assert isinstance(again.next(), Associated)
    again.sock.close()
    second.sock.close()


def test_a_flooding_head_end_is_answered_at_the_meters_pace_and_starves_nobody(wrapper_meters):
    """A head-end that pipelines thousands of GET requests on its connection and does not read the
    answers: the meter stops reading it once its answers back up (the worker's write buffer stays
    bounded), another meter answers as quickly as ever meanwhile, and when the flooding head-end reads,
    every request has its answer, in order."""
    from meter_core.codec.apdu import GetRequestNormal, encode_apdu
    from meter_core.codec.apdu.xdlms import CosemAttributeDescriptor

    c = RawWrapper.__new__(RawWrapper)
    c.client = DlmsClient(ClientSettings(transport=Transport.WRAPPER))
    c.sock = socket.socket()
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)  # a head-end that hardly reads
    c.sock.settimeout(5)
    c.sock.connect(("127.0.0.1", wrapper_meters.port(0)))
    c.client.associate()
    assert isinstance(c.next(), Associated)
    # more answers than the kernel's socket buffers hold (a few MB on loopback), so the meter must stop
    requests = 256_000
    one = [wrap(16, 1, encode_apdu(GetRequestNormal(
        invoke_id_and_priority=0xC0 | i, attribute=CosemAttributeDescriptor(8, bytes((0, 0, 1, 0, 0, 255)), 2))))
        for i in range(16)]
    frame = b"".join(one) * (requests // 16)
    sender = threading.Thread(target=c.sock.sendall, args=(frame,), daemon=True)
    sender.start()  # blocks once the meter stops reading
    protos = [p for p in wrapper_meters.worker.protocols if p.meter_id == 0]
    peak = 0
    for _ in range(60):  # the meter's own buffer of answers stays bounded while the flood waits
        time.sleep(0.05)
        peak = max(peak, *(p.transport.get_write_buffer_size() for p in protos if p.transport is not None))
    assert peak < 1024 * 1024
    # meanwhile another meter answers promptly
    other = GuruxSession(wrapper_meters.port(1), Transport.WRAPPER)
    other.open()
    started = time.monotonic()
    for _ in range(20):
        other.read(GXDLMSClock("0.0.1.0.0.255"), 2)
    assert time.monotonic() - started < 2.0
    other.close()
    # the flooding head-end reads: every request has its answer, in order
    answers, buf = 0, b""
    while answers < requests:
        chunk = c.sock.recv(1 << 20)
        assert chunk
        buf += chunk
        while len(buf) >= 8 and len(buf) >= 8 + int.from_bytes(buf[6:8], "big"):
            n = 8 + int.from_bytes(buf[6:8], "big")
            got = decode_apdu(buf[8:n])
            assert isinstance(got, GetResponseNormal) and got.invoke_id_and_priority & 0x0F == answers % 16
            answers += 1
            buf = buf[n:]
    sender.join(5)
    assert answers == requests
    c.sock.close()


def test_client_numbers_a_stranger_sends_do_not_grow_the_metric_series(wrapper_meters):
    """Any number fits the wrapper's source wPort before authentication; the metrics label them "other",
    so 300 strangers add one series, not 300 (issue 14: 3 000 numbers had made 3 064 series)."""
    def series() -> dict[tuple[str, str], float]:
        out = {}
        for family in metrics.registry(REGISTRY).collect():
            if family.name == "fleet_associations":
                for s in family.samples:
                    if s.name.endswith("_total"):
                        out[(s.labels["client"], s.labels["result"])] = s.value
        return out

    aarq = encode_apdu(DlmsClient(ClientSettings(client_sap=16)).aarq())
    before = series()
    port = wrapper_meters.port(0)
    for wport in range(1000, 1300):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(wrap(wport, 1, aarq))
            assert s.recv(65536)  # an AARE (rejected) or the connection closed: either way an answer came
    deadline = time.monotonic() + 10
    while series().get(("other", "rejected"), 0) - before.get(("other", "rejected"), 0) < 300:
        assert time.monotonic() < deadline, series()
        time.sleep(0.1)
    after = series()
    assert {client for client, _ in after} <= {"16", "32", "48", "64", "80", "other"}
    assert len(after) - len(before) <= 1


def test_past_its_descriptor_budget_a_worker_refuses_cleanly_and_keeps_serving():
    """A worker admits connections up to its budget (limit - listeners - reserve); the next ones are
    accepted and closed at once, counted, and the admitted ones are served throughout; once some close,
    new ones are admitted again."""
    with running_meters(2, Transport.WRAPPER, fd_limit=2 + RESERVE + 4) as m:  # room for 4 connections
        before = m.worker.metrics.refused.get("fd-budget", 0)
        sessions = [GuruxSession(m.port(i % 2), Transport.WRAPPER) for i in range(4)]
        try:
            for s in sessions:
                s.open()  # associated: admitted before the next ones knock
            refused = []
            for _ in range(3):
                with socket.create_connection(("127.0.0.1", m.port(0)), timeout=5) as s:
                    s.settimeout(5)
                    refused.append(s.recv(100))  # closed by the worker without a byte
            assert refused == [b"", b"", b""]
            assert m.worker.metrics.refused.get("fd-budget", 0) - before == 3
            for s in sessions:  # the admitted ones are served
                clock = GXDLMSClock()
                s.read(clock, 2)
                assert clock.time is not None
        finally:
            for s in sessions:
                s.close()
        deadline = time.monotonic() + 5
        while len(m.worker.protocols) > 0:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        again = GuruxSession(m.port(1), Transport.WRAPPER)
        again.open()
        clock = GXDLMSClock()
        again.read(clock, 2)
        again.close()
