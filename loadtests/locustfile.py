"""Locust users that read and program the fleet's meters as a head-end does, over DLMS/COSEM.

Each user speaks DLMS through meter_core's sans-I/O client (`meter_core.client.DlmsClient`) on a
blocking socket of its own (locust's gevent makes it cooperative), to meters taken from the onboarding
file (`fleet meters export --format json`; `--export FILE` or env LOCUST_EXPORT): each meter at its own
host and port, with the framing, passwords, HLS secrets and keys the file gives. Every DLMS exchange is
one locust request, its type the service (TCP, HDLC, AARQ, GET, SET, ACTION, RLRQ) and its name what it
is for; a refusal, an error answer, a closed connection or a timeout is that request's failure and ends
the task (the connection is closed, the next task starts afresh).

    DailyReadUser        client 32 (LLS): clock, billing profile, yesterday's block load by range, the
                         seven event logs
    OnDemandUser         client 32 (LLS): the instantaneous profile
    UtilitySettingsUser  client 48 (HLS, ciphered): clock synchronisation; relay disconnect and
                         reconnect (meters with a relay: CT/PT meters have none)

A user holds the meter it talks to for the whole task, so no two users of this process meet on a meter:
a meter takes two connections at a time, and a ciphered client must send invocation counters that only
grow. Before each client-48 association the user reads the counter the meter expects (0.0.43.1.3.255,
as the public client 16) and starts one above it, as head-ends do.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import random
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

from gevent.lock import Semaphore
from locust import User, between, events, task
from locust.exception import RescheduleTask

from meter_core import NEED_DATA
from meter_core.client import (
    ActionDone,
    Associated,
    AssociationFailed,
    ClientSecurity,
    ClientSettings,
    DlmsClient,
    ExceptionReceived,
    GetResult,
    LinkDown,
    LinkUp,
    Released,
    SetResult,
)
from meter_core.codec.apdu import SelectiveAccess
from meter_core.codec.apdu.codes import AcseServiceUser, ActionResult, AssociationResult, DataAccessResult
from meter_core.codec.axdr import CosemDateTime, Data, DataType, encode_value
from meter_core.codec.hdlc import HdlcAddress
from meter_core.codec.obis import ln
from meter_core.connection import Transport

# IS 15959 meters keep Indian Standard Time; a head-end sends the clock with the Blue Book deviation
# (local time = UTC - deviation): -330 minutes.
IST = dt.timezone(dt.timedelta(minutes=330), "IST")
IST_DEVIATION = -330

PUBLIC, METER_READER, UTILITY_SETTINGS = 16, 32, 48
CLOCK = "0.0.1.0.0.255"
BILLING_PROFILE = "1.0.98.1.0.255"
BLOCK_LOAD_PROFILE = "1.0.99.1.0.255"
INSTANT_PROFILE = "1.0.94.91.0.255"
DISCONNECT_CONTROL = "0.0.96.3.10.255"
# The IS 15959 event logs (profile generic, 0.0.99.98.<category>.255), by category.
EVENT_LOGS = tuple((f"0.0.99.98.{c}.255", name) for c, name in enumerate(
    ("voltage", "current", "power failure", "transaction", "other", "non-rollover", "control")))
# The invocation counter (class 1) a client of security setup e must exceed: 0.0.43.1.e.255.
INVOCATION_COUNTER = {UTILITY_SETTINGS: "0.0.43.1.3.255", 64: "0.0.43.1.4.255", 80: "0.0.43.1.5.255"}
CLASS_DATA, CLASS_PROFILE, CLASS_CLOCK, CLASS_DISCONNECT_CONTROL = 1, 7, 8, 70
REMOTE_DISCONNECT, REMOTE_RECONNECT = 1, 2
KINDS_WITHOUT_RELAY = frozenset({"ctpt"})


@events.init_command_line_parser.add_listener
def _arguments(parser) -> None:
    parser.add_argument("--export", env_var="LOCUST_EXPORT", default="",
                        help="The fleet's onboarding file: fleet meters export --format json -o FILE")
    parser.add_argument("--dlms-timeout", env_var="LOCUST_DLMS_TIMEOUT", type=float, default=20.0,
                        help="Seconds a DLMS exchange (or a wait for a free meter) may take")


@events.init.add_listener
def _load(environment, **_kw) -> None:
    """Read the export at start, so a missing or wrong file stops locust before any user runs."""
    options = environment.parsed_options
    if options is None:  # locust used as a library, without command-line options: nothing to check yet
        return
    if not options.export:
        raise SystemExit("loadtests: name the onboarding file with --export FILE (or env LOCUST_EXPORT); "
                         "write it with: fleet meters export --format json -o FILE")
    try:
        fleet_of(options.export)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SystemExit(f"loadtests: {options.export} is not an onboarding file (fleet meters export "
                         f"--format json): {e!r}") from None


# -- the meters --------------------------------------------------------------------------------------


@dataclass(slots=True)
class Meter:
    """One meter of the onboarding file: where it is, its framing, its clients; ``lock`` held while a user
    talks to it."""

    meter_id: int
    kind: str
    host: str
    port: int
    transport: Transport
    server_sap: int
    physical_address: int
    clients: dict[int, dict]
    lock: Semaphore = field(default_factory=Semaphore)

    @property
    def has_relay(self) -> bool:
        return self.kind not in KINDS_WITHOUT_RELAY

    def settings(self, client_sap: int, security: ClientSecurity | None = None) -> ClientSettings:
        """What our client says it is, as ``client_sap`` of this meter."""
        client = self.clients[client_sap]
        password = client.get("password")
        hdlc = None
        if self.transport is Transport.HDLC:
            hdlc = HdlcAddress(upper=self.server_sap, lower=self.physical_address, size=4)
        return ClientSettings(client_sap=client_sap, server_sap=self.server_sap, transport=self.transport,
                              password=None if password is None else password.encode("ascii"),
                              hdlc_server_address=hdlc, security=security)


class Fleet:
    """The meters of one onboarding file, and a way to hold one at a time."""

    def __init__(self, records: list[dict]) -> None:
        if not records:
            raise ValueError("the onboarding file lists no meter")
        self.meters = [Meter(meter_id=r["meter_id"], kind=r["kind"], host=r["host"], port=r["port"],
                             transport=Transport(r["transport"]), server_sap=r["server_logical_address"],
                             physical_address=r["server_physical_address"],
                             clients={c["client_sap"]: c for c in r["clients"]}) for r in records]
        self.with_relay = [m for m in self.meters if m.has_relay]

    @contextmanager
    def hold(self, meters: list[Meter], timeout: float):
        """A meter of ``meters`` that no other user of this process holds, for the ``with`` block; the task
        is rescheduled if none is free within ``timeout`` seconds (more users than meters)."""
        if not meters:
            raise RescheduleTask("no meter for this task in the onboarding file")
        for _ in range(8):
            meter = random.choice(meters)
            if meter.lock.acquire(blocking=False):
                break
        else:
            meter = random.choice(meters)
            if not meter.lock.acquire(timeout=timeout):
                raise RescheduleTask(f"meter {meter.meter_id} stayed busy for {timeout:g} s")
        try:
            yield meter
        finally:
            meter.lock.release()


@functools.cache
def fleet_of(path: str) -> Fleet:
    with open(path, encoding="utf-8") as f:
        return Fleet(json.load(f))


# -- one connection, one association -------------------------------------------------------------------


class RequestFailed(Exception):
    """What a failed request reports to locust (the task then ends)."""


class Session:
    """One TCP connection to a meter and our client on it; each exchange reported as a locust request."""

    def __init__(self, user: User, meter: Meter, settings: ClientSettings, timeout: float) -> None:
        self.user = user
        self.meter = meter
        self.client = DlmsClient(settings)
        self.timeout = timeout
        self.sock: socket.socket | None = None

    def request(self, request_type: str, name: str, send, answer=None):
        """Queue a request with ``send()``, exchange until the client reports an event, and return what
        ``answer(event)`` makes of it (it raises RequestFailed for a bad answer); without ``answer``,
        ``send()`` is the whole of it. Reported to locust; on a failure the task ends (RescheduleTask): the
        rest of its exchanges make no sense without this one."""
        start_time = time.time()
        start = time.perf_counter()
        received = 0
        exception = None
        event = result = None
        try:
            send()
            if answer is not None:
                event, received = self._exchange()
                result = answer(event)
        except Exception as e:  # noqa: BLE001 - whatever the answer makes the client raise fails this request
            exception = e
        self.user.environment.events.request.fire(
            request_type=request_type, name=name, response_time=(time.perf_counter() - start) * 1000.0,
            response_length=received, response=event, context=self.user.context(), exception=exception,
            start_time=start_time, url=f"{self.meter.host}:{self.meter.port}",
        )
        if exception is not None:
            raise RescheduleTask(f"{request_type} {name} on meter {self.meter.meter_id}: {exception}")
        return result

    def _exchange(self):
        """Send what the client has, read until it reports an event; (event, bytes received)."""
        received = 0
        deadline = time.monotonic() + self.timeout
        while True:
            out = self.client.data_to_send()
            if out:
                self.sock.sendall(out)
            event = self.client.next_event()
            if event is not NEED_DATA:
                return event, received
            self.sock.settimeout(max(0.001, deadline - time.monotonic()))
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the meter closed the connection")
            received += len(chunk)
            self.client.receive_data(chunk, time.monotonic())

    def connect(self) -> None:
        def send() -> None:
            self.sock = socket.create_connection((self.meter.host, self.meter.port), timeout=self.timeout)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        self.request("TCP", "connect", send)
        if self.meter.transport is Transport.HDLC:
            self.request("HDLC", "SNRM", self.client.connect, expect(LinkUp))

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    # -- the services --------------------------------------------------------------------------------

    def associate(self, name: str) -> Associated:
        return self.request("AARQ", name, self.client.associate, expect(Associated))

    def get(self, name: str, class_id: int, obis: str, attribute: int, selection: SelectiveAccess | None = None,
            parse=lambda data: data):
        """The value of a GET, as ``parse(data)`` makes it (a value it cannot parse fails the GET)."""
        def answer(ev):
            expect(GetResult)(ev)
            if ev.error is not None:
                raise RequestFailed(f"data-access-result {ev.error.name.lower()}")
            return parse(ev.value)

        return self.request("GET", name, lambda: self.client.get(class_id, obis, attribute, selection), answer)

    def set(self, name: str, class_id: int, obis: str, attribute: int, value: Data) -> None:
        def answer(ev) -> None:
            expect(SetResult)(ev)
            if ev.result is not DataAccessResult.SUCCESS:
                raise RequestFailed(f"data-access-result {ev.result.name.lower()}")

        self.request("SET", name, lambda: self.client.set(class_id, obis, attribute, value), answer)

    def action(self, name: str, class_id: int, obis: str, method: int, parameters: Data | None = None) -> None:
        def answer(ev) -> None:
            expect(ActionDone)(ev)
            if ev.result != ActionResult.SUCCESS:
                raise RequestFailed(f"action-result {ActionResult(ev.result).name.lower()}")

        self.request("ACTION", name, lambda: self.client.action(class_id, obis, method, parameters), answer)

    def release(self, name: str) -> None:
        self.request("RLRQ", name, self.client.release, expect(Released))
        if self.meter.transport is Transport.HDLC:
            self.request("HDLC", "DISC", self.client.disconnect, expect(LinkDown))


def expect(kind):
    """An answer check: the client's event is a ``kind``, returned as it is."""
    def answer(ev):
        if not isinstance(ev, kind):
            raise RequestFailed(refusal(ev))
        return ev

    return answer


def refusal(ev) -> str:
    """What the meter answered instead of what we asked, in a line (a locust failure's message)."""
    if isinstance(ev, AssociationFailed):
        aare = ev.response
        if aare.result == AssociationResult.ACCEPTED:  # the client reports a failed HLS pass 3 or 4 this way
            return "HLS failed: the meter refused our f(StoC), or its f(CtoS) was wrong"
        source, value = aare.result_source_diagnostic or (1, 0)
        diagnostic = AcseServiceUser(value).name.lower() if source == 1 and value in set(AcseServiceUser) \
            else f"diagnostic {source}/{value}"
        return f"association {AssociationResult(aare.result).name.lower()}: {diagnostic}"
    if isinstance(ev, ExceptionReceived):
        r = ev.response
        return f"exception-response {r.state_error.name.lower()}, {r.service_error.name.lower()}"
    return f"unexpected answer {ev!r}"


def midnight(data: Data) -> dt.datetime:
    """The start of the day a clock value (attribute 2, octet-string date-time) shows."""
    return CosemDateTime.from_bytes(data.value).to_datetime().replace(hour=0, minute=0, second=0, microsecond=0)


def counter(data: Data) -> int:
    """An invocation counter's value (double-long-unsigned)."""
    if data.tag is not DataType.DOUBLE_LONG_UNSIGNED:
        raise RequestFailed(f"invocation counter is a {data.tag.name.lower()}")
    return data.value


def association_name(meter: Meter, client_sap: int) -> str:
    """The AARQ's request name: the client SAP first (`tests/loadtests` counts associations by it)."""
    mechanism = meter.clients[client_sap]["authentication"]
    return f"client {client_sap} ({mechanism})"


def clock_value(now: dt.datetime) -> Data:
    return Data(DataType.OCTET_STRING, CosemDateTime.from_datetime(now, deviation=IST_DEVIATION).to_bytes())


def range_selection(start: dt.datetime, end: dt.datetime) -> SelectiveAccess:
    """Selective access by range (selector 1) on the clock column, every column: entries of [start, end]."""
    clock = Data(DataType.STRUCTURE, (Data(DataType.LONG_UNSIGNED, CLASS_CLOCK), Data(DataType.OCTET_STRING, ln(CLOCK)),
                                      Data(DataType.INTEGER, 2), Data(DataType.LONG_UNSIGNED, 0)))

    def stamp(t: dt.datetime) -> Data:
        return Data(DataType.OCTET_STRING, CosemDateTime.from_datetime(t).to_bytes())

    return SelectiveAccess(1, encode_value(Data(DataType.STRUCTURE, (clock, stamp(start), stamp(end),
                                                                     Data(DataType.ARRAY, ())))))


# -- the users -------------------------------------------------------------------------------------------


class HeadEndUser(User):
    """A head-end job on the meters of the onboarding file, one meter per task."""

    abstract = True
    wait_time = between(1, 3)

    def on_start(self) -> None:
        options = self.environment.parsed_options
        self.fleet = fleet_of(options.export)
        self.timeout = options.dlms_timeout

    @contextmanager
    def session(self, meter: Meter, client_sap: int, security: ClientSecurity | None = None):
        """A connection to ``meter`` as ``client_sap``, associated; released and closed after the block (a
        failed request ends the task, and the connection is closed without a release)."""
        s = Session(self, meter, meter.settings(client_sap, security), self.timeout)
        try:
            s.connect()
            s.associate(association_name(meter, client_sap))
            yield s
            s.release(f"client {client_sap}")
        finally:
            s.close()


class DailyReadUser(HeadEndUser):
    """The meter reader's daily read cycle (client 32, LLS)."""

    weight = 2

    @task
    def daily_read(self) -> None:
        with self.fleet.hold(self.fleet.meters, self.timeout) as meter, self.session(meter, METER_READER) as s:
            # Yesterday by the meter's own clock, which may run ahead (--speed) or drift.
            today = s.get("clock", CLASS_CLOCK, CLOCK, 2, parse=midnight)
            yesterday = today - dt.timedelta(days=1)
            s.get("billing profile", CLASS_PROFILE, BILLING_PROFILE, 2)
            s.get("block load, yesterday by range", CLASS_PROFILE, BLOCK_LOAD_PROFILE, 2,
                  range_selection(yesterday, today - dt.timedelta(seconds=1)))
            for obis, name in EVENT_LOGS:
                s.get(f"event log {obis} ({name})", CLASS_PROFILE, obis, 2)


class OnDemandUser(HeadEndUser):
    """On-demand reads of the instantaneous profile, as the meter reader (client 32: the public client
    sees only the clock, identity and invocation counters)."""

    weight = 2

    @task
    def instantaneous(self) -> None:
        with self.fleet.hold(self.fleet.meters, self.timeout) as meter, self.session(meter, METER_READER) as s:
            s.get("instantaneous profile", CLASS_PROFILE, INSTANT_PROFILE, 2)


class UtilitySettingsUser(HeadEndUser):
    """The utility-settings client (48, HLS, ciphered): clock synchronisation and relay operations."""

    weight = 1

    def secured(self, meter: Meter, client_sap: int = UTILITY_SETTINGS):
        """The invocation counter to start from (read as the public client, plus one), then the session."""
        with self.session(meter, PUBLIC) as s:
            last = s.get("invocation counter", CLASS_DATA, INVOCATION_COUNTER[client_sap], 2, parse=counter)
        security = ClientSecurity.from_onboarding(meter.clients[client_sap], invocation_counter=last + 1)
        return self.session(meter, client_sap, security)

    @task(2)
    def clock_sync(self) -> None:
        with self.fleet.hold(self.fleet.meters, self.timeout) as meter, self.secured(meter) as s:
            now = dt.datetime.now(IST).replace(tzinfo=None)
            s.set("clock sync", CLASS_CLOCK, CLOCK, 2, clock_value(now))

    @task(1)
    def relay(self) -> None:
        with self.fleet.hold(self.fleet.with_relay, self.timeout) as meter, self.secured(meter) as s:
            off = Data(DataType.INTEGER, 0)
            s.action("relay disconnect", CLASS_DISCONNECT_CONTROL, DISCONNECT_CONTROL, REMOTE_DISCONNECT, off)
            s.action("relay reconnect", CLASS_DISCONNECT_CONTROL, DISCONNECT_CONTROL, REMOTE_RECONNECT, off)
