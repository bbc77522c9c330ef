"""Push setup objects (class 40) as IS 15959 meters list them, and the pushes they send.

Objects and push object lists follow facts section 12: every push starts with the device ID
(0.0.96.1.2.255), the push setup's own logical name and the clock, then the pushed data: the
instantaneous values (instant push), the Event Status Word (alert push), or a profile buffer (block
load and daily load pushes). Normative IS 15959 push object lists are not public (UNCONFIRMED); the
intervals are in seconds (facts 2.1, UNCONFIRMED).
"""

from __future__ import annotations

from dataclasses import dataclass

from meter_core.codec.apdu import ciphered
from meter_core.codec.axdr import Data, DataType
from meter_core.codec.obis import ln
from meter_core.cosem.ic import PUSH_SETUP
from meter_core.cosem.model import CosemObject, ln_attribute, static
from meter_core.device.identity import MeterKind

# Schedules of the periodic pushes (the seed's push_schedules types): period in seconds, aligned to IST
# midnight. The alert push goes on an ESW change, not on a schedule.
SCHEDULE_SECONDS = {"FIFTEEN_MIN": 900, "THIRTY_MIN": 1800, "ONE_HOUR": 3600, "FOUR_HOUR": 14400,
                    "EIGHT_HOUR": 28800, "TWELVE_HOUR": 43200, "TWENTY_FOUR_HOUR": 86400}

INSTANT_PUSH = "0.0.25.9.0.255"
ALERT_PUSH = "0.4.25.9.0.255"
BLOCK_LOAD_PUSH = "0.5.25.9.0.255"
DAILY_LOAD_PUSH = "0.6.25.9.0.255"
# Billing push (the closed period's billing profile entry) and one push per event log (its new entry):
# OBIS codes as one IS 15959 communication module uses them (facts 12.1: 0.103 vs 0.132 for billing,
# event-log pushes vendor-specific; UNCONFIRMED). Event-log pushes are off by default.
BILLING_PUSH = "0.103.25.9.0.255"
EVENT_PUSHES = tuple(f"0.{120 + c}.25.9.0.255" for c in range(7))
_NAMES = {INSTANT_PUSH: "Instant push setup", ALERT_PUSH: "Alert push setup", BLOCK_LOAD_PUSH: "Block load push setup",
          DAILY_LOAD_PUSH: "Daily load push setup", BILLING_PUSH: "Billing push setup",
          **{p: f"Event log {c} push setup" for c, p in enumerate(EVENT_PUSHES)}}
# push_schedules types of the pushes that go on their trigger rather than a period
TRIGGERS = ("ON_ALARM", "ON_BILLING", "ON_EVENT")

_HEAD = ((1, "0.0.96.1.2.255", 2),)
_INSTANT_POLY = tuple((3, o, 2) for o in (
    "1.0.31.7.0.255", "1.0.51.7.0.255", "1.0.71.7.0.255", "1.0.32.7.0.255", "1.0.52.7.0.255", "1.0.72.7.0.255",
    "1.0.1.8.0.255", "1.0.2.8.0.255", "1.0.9.8.0.255", "1.0.10.8.0.255"))
_INSTANT_SINGLE = tuple((3, o, 2) for o in (
    "1.0.11.7.0.255", "1.0.12.7.0.255", "1.0.1.8.0.255", "1.0.2.8.0.255", "1.0.9.8.0.255", "1.0.10.8.0.255"))


def _data_for(push: str, kind: MeterKind) -> tuple[tuple[int, str, int], ...]:
    if push == INSTANT_PUSH:
        return _INSTANT_SINGLE if kind is MeterKind.SINGLE_PHASE else _INSTANT_POLY
    if push == ALERT_PUSH:
        return ((1, "0.0.94.91.18.255", 2),)
    if push == BLOCK_LOAD_PUSH:
        return ((7, "1.0.99.1.0.255", 2),)
    if push == DAILY_LOAD_PUSH:
        return ((7, "1.0.99.2.0.255", 2),)
    if push == BILLING_PUSH:
        return ((7, "1.0.98.1.0.255", 2),)
    return ((7, f"0.0.99.98.{EVENT_PUSHES.index(push)}.255", 2),)


@dataclass(frozen=True, slots=True)
class PushSetupConfig:
    """How one push setup pushes (a row of the seed's push_setups joined with push_schedules)."""

    logical_name: str
    schedule: str | None  # a `SCHEDULE_SECONDS` type, or None: on its trigger only (alarm, billing, event)
    randomisation_s: int  # randomisation_start_interval: each meter waits its own seeded share of it
    retries: int = 3  # number_of_retries
    repetition_delay_s: int = 60
    enabled: bool = True
    # push_operation_method (push setup v2): 0 unconfirmed (retry when the call fails), 1 unconfirmed
    # (retry on a missing lower-layer confirmation: over TCP the same), 2 confirmed (retry until the
    # head-end sends Data-Notification-Confirm). A push setup with 2 is shown as version 2.
    operation_method: int = 0
    # send_destination_and_method's destination: where the pushes go ("host:port", as Gurux writes it)
    destination: str = ""


# The fleet's defaults: every meter waits its own seeded share of the randomisation start interval after
# the instant a push falls due (a power failure across a feeder spreads its last gasps over a minute).
DEFAULT_CONFIG: tuple[PushSetupConfig, ...] = (
    PushSetupConfig(INSTANT_PUSH, "FIFTEEN_MIN", 60),
    PushSetupConfig(ALERT_PUSH, None, 60),
    PushSetupConfig(BLOCK_LOAD_PUSH, "THIRTY_MIN", 300),
    PushSetupConfig(DAILY_LOAD_PUSH, "TWENTY_FOUR_HOUR", 900),
    PushSetupConfig(BILLING_PUSH, None, 900),
    *(PushSetupConfig(p, None, 60, enabled=False) for p in EVENT_PUSHES),
)
TRIGGER_OF = {ALERT_PUSH: "ON_ALARM", BILLING_PUSH: "ON_BILLING", **{p: "ON_EVENT" for p in EVENT_PUSHES}}
# The configuration in force in this process (`install` replaces it with the database's rows).
CONFIG: dict[str, PushSetupConfig] = {c.logical_name: c for c in DEFAULT_CONFIG}


def install(rows: list[dict]) -> None:
    """Use these push setups from now on: rows of push_setups (fleet defaults) with their schedule type
    from push_schedules (``schedule_type``: a period, ON_ALARM, or None)."""
    config = dict(CONFIG)
    for r in rows:
        ln_ = r["logical_name"]
        if ln_ not in config:
            continue  # a push setup these meters do not have
        schedule = r.get("schedule_type")
        if schedule is not None and schedule not in TRIGGERS and schedule not in SCHEDULE_SECONDS:
            raise ValueError(f"push setup {ln_}: unknown schedule type {schedule!r}")
        method = int(r.get("push_operation_method") or 0)
        if method not in (0, 1, 2):
            raise ValueError(f"push setup {ln_}: push_operation_method {method} is not 0, 1 or 2")
        config[ln_] = PushSetupConfig(ln_, None if schedule in (None, *TRIGGERS) else schedule,
                                      int(r["randomisation_start_interval_s"]), int(r["number_of_retries"]),
                                      int(r["repetition_delay_s"]), bool(r.get("enabled", True)), method,
                                      r.get("destination") or "")
    CONFIG.clear()
    CONFIG.update(config)


def setting(meter, push: str, name: str):
    """Push setup ``push``'s ``name`` (destination, retries, repetition_delay_s, ...) for this meter: what
    a head-end wrote into it, else the fleet's configuration."""
    for p, n, value in meter.state.push_settings:
        if p == push and n == name:
            return value
    return getattr(CONFIG[push], name)


def _write_setting(meter, push: str, name: str, value) -> None:
    state = meter.state
    state.push_settings = (*(e for e in state.push_settings if (e[0], e[1]) != (push, name)), (push, name, value))
    state.programming_count += 1


def parse_destination(text: str) -> tuple[str, int] | None:
    """("host", port) of a "host:port" destination, or None if it is not one."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return host, int(port)


def set_destination(destination: str) -> None:
    """Push to ``destination`` ("host:port") wherever the configuration names none (dial mode's --hes)."""
    import dataclasses

    for k, c in list(CONFIG.items()):
        if not c.destination:
            CONFIG[k] = dataclasses.replace(c, destination=destination)


def scheduled() -> dict[str, str]:
    """The enabled push setups that push on a schedule, with their schedule types."""
    return {c.logical_name: c.schedule for c in CONFIG.values() if c.enabled and c.schedule is not None}


def push_object_list(push: str, kind: MeterKind) -> Data:
    entries = (*_HEAD, (40, push, 1), (8, "0.0.1.0.0.255", 2), *_data_for(push, kind))
    return Data(DataType.ARRAY, tuple(
        Data(DataType.STRUCTURE, (Data(DataType.LONG_UNSIGNED, c), Data(DataType.OCTET_STRING, ln(o)),
                                  Data(DataType.INTEGER, a), Data(DataType.LONG_UNSIGNED, 0)))
        for c, o, a in entries))


# Push setup version 1 (facts 8.4: IS 15959 meters list class 40 v1): attributes 8-10 after v0's seven.
PORT_REFERENCE = "0.0.25.0.0.255"  # the TCP-UDP setup the pushes go out on


def push_setup_objects(kind: MeterKind) -> list[CosemObject]:
    """The push setups, as `CONFIG` has them when the model is built: version 1, or version 2 for a push
    setup whose pushes are confirmed (push_operation_method 2)."""
    from meter_core.cosem.ic import PUSH_SETUP_V2
    from meter_core.cosem.model import Attribute

    out = []
    for push, name in _NAMES.items():
        o = ln(push)
        v2 = CONFIG[push].operation_method == 2
        attributes = [
            ln_attribute(o),
            static(push_object_list(push, kind)),
            # send_destination_and_method: TCP, the head-end's "host:port" (none unless the fleet pushes
            # somewhere), A-XDR encoded APDUs
            Attribute(_destination(push), _destination_setter(push)),
            static(Data(DataType.ARRAY, ())),  # communication_window: always
            Attribute(_config_value(push, "randomisation_s", DataType.LONG_UNSIGNED)),
            Attribute(_config_value(push, "retries", DataType.UNSIGNED), _number_setter(push, "retries", DataType.UNSIGNED)),
            Attribute(_repetition_delay_v2(push), _delay_v2_setter(push)) if v2 else
            Attribute(_config_value(push, "repetition_delay_s", DataType.LONG_UNSIGNED),
                      _number_setter(push, "repetition_delay_s", DataType.LONG_UNSIGNED)),
            static(Data(DataType.OCTET_STRING, ln(PORT_REFERENCE))),
            static(PUSH_CLIENT_SAP, DataType.INTEGER),
            static(Data(DataType.ARRAY, ())),  # push_protection_parameters: the push setup's keys
        ]
        methods = [_push_method(push)]
        if v2:
            attributes += [
                Attribute(_config_value(push, "operation_method", DataType.ENUM)),
                # confirmation_parameters: { confirmation_start_date (not specified), confirmation_interval
                # 0: every push asks for its confirmation }
                static(Data(DataType.STRUCTURE, (Data(DataType.OCTET_STRING, _NOT_SPECIFIED),
                                                 Data(DataType.DOUBLE_LONG_UNSIGNED, 0)))),
                Attribute(_last_confirmation(push)),
            ]
            methods.append(_reset_method(push))
        out.append(CosemObject(PUSH_SETUP_V2 if v2 else PUSH_SETUP, o, name, tuple(attributes), tuple(methods)))
    return out


_NOT_SPECIFIED = b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x80\x00\xff"  # a date-time not specified


def _destination(push: str):
    from meter_core.codec.axdr import encode_value

    def get(meter, assoc, now) -> bytes:
        return encode_value(Data(DataType.STRUCTURE, (
            Data(DataType.ENUM, 0), Data(DataType.OCTET_STRING, setting(meter, push, "destination").encode()),
            Data(DataType.ENUM, 0))))
    return get


def _destination_setter(push: str):
    """A head-end points the pushes elsewhere: { transport_service TCP (0), "host:port", message A-XDR (0) }."""
    def set_(meter, assoc, value, now):
        from meter_core.codec.apdu.codes import DataAccessResult

        parts = value.value if value.tag is DataType.STRUCTURE else ()
        if (len(parts) != 3 or parts[0].tag is not DataType.ENUM or parts[1].tag is not DataType.OCTET_STRING
                or parts[2].tag is not DataType.ENUM):
            return DataAccessResult.TYPE_UNMATCHED
        try:
            text = bytes(parts[1].value).decode("ascii")
        except UnicodeDecodeError:
            return DataAccessResult.OTHER_REASON
        if parts[0].value != 0 or parts[2].value != 0 or (text and parse_destination(text) is None):
            return DataAccessResult.OTHER_REASON  # TCP and A-XDR APDUs only; a host:port (or none)
        _write_setting(meter, push, "destination", text)
        return DataAccessResult.SUCCESS
    return set_


def _number_setter(push: str, name: str, dtype: DataType):
    limit = 255 if dtype is DataType.UNSIGNED else 65535

    def set_(meter, assoc, value, now):
        from meter_core.codec.apdu.codes import DataAccessResult

        if value.tag is not dtype:
            return DataAccessResult.TYPE_UNMATCHED
        if not 0 <= value.value <= limit or (name == "repetition_delay_s" and value.value == 0):
            return DataAccessResult.OTHER_REASON
        _write_setting(meter, push, name, int(value.value))
        return DataAccessResult.SUCCESS
    return set_


def _delay_v2_setter(push: str):
    """repetition_delay of v2: a constant delay only (min = max, exponent 100)."""
    def set_(meter, assoc, value, now):
        from meter_core.codec.apdu.codes import DataAccessResult

        parts = value.value if value.tag is DataType.STRUCTURE else ()
        if len(parts) != 3 or any(p.tag is not t for p, t in zip(parts, (
                DataType.LONG_UNSIGNED, DataType.UNSIGNED, DataType.LONG_UNSIGNED))):
            return DataAccessResult.TYPE_UNMATCHED
        if parts[0].value == 0 or parts[0].value != parts[2].value or parts[1].value != 100:
            return DataAccessResult.OTHER_REASON
        _write_setting(meter, push, "repetition_delay_s", int(parts[0].value))
        return DataAccessResult.SUCCESS
    return set_


def _repetition_delay_v2(push: str):
    """repetition_delay in v2: { repetition_delay_min, repetition_delay_exponent (percent), max }: a
    constant delay (exponent 100)."""
    from meter_core.codec.axdr import encode_value

    def get(meter, assoc, now) -> bytes:
        d = setting(meter, push, "repetition_delay_s")
        return encode_value(Data(DataType.STRUCTURE, (Data(DataType.LONG_UNSIGNED, d), Data(DataType.UNSIGNED, 100),
                                                      Data(DataType.LONG_UNSIGNED, d))))
    return get


def _last_confirmation(push: str):
    from meter_core.codec.axdr import encode_octets

    def get(meter, assoc, now) -> bytes:
        when = dict(meter.state.push_confirmations).get(push)
        return encode_octets(_NOT_SPECIFIED if when is None else meter.clock_bytes_at(when))
    return get


def _reset_method(push: str):
    """reset (method 2, data integer 0): forget the last confirmation."""
    def invoke(meter, assoc, params, now):
        from meter_core.codec.apdu.codes import ActionResult

        if params is not None and params.tag is not DataType.INTEGER:
            return ActionResult.TYPE_UNMATCHED, None
        meter.state.push_confirmations = tuple(e for e in meter.state.push_confirmations if e[0] != push)
        return ActionResult.SUCCESS, None
    return invoke


def confirmed(meter, push: str, t: float) -> None:
    """Push setup ``push``'s push was confirmed at simulated ``t`` (last_confirmation_date_time)."""
    state = meter.state
    state.push_confirmations = (*(e for e in state.push_confirmations if e[0] != push), (push, t))


PUSH_SCHEDULE = "0.0.15.0.4.255"  # single action schedule of the periodic pushes (facts 8.6, 12.1)
PUSH_SCRIPT_TABLE = "0.0.10.0.108.255"  # push script table: script n runs push() of push setup n
_SCRIPTED = (INSTANT_PUSH, ALERT_PUSH, BLOCK_LOAD_PUSH, DAILY_LOAD_PUSH, BILLING_PUSH, *EVENT_PUSHES)


def trigger_objects() -> list[CosemObject]:
    """What starts the periodic pushes, as a head-end reads it: the push single action schedule (its
    execution times follow the instant push's schedule type) and the push script table it runs (script
    n calls push() of push setup n; a head-end may execute a script to have that push sent)."""
    from meter_core.cosem.ic import SCRIPT_TABLE, SINGLE_ACTION_SCHEDULE
    from meter_core.cosem.model import Attribute

    o = ln(PUSH_SCHEDULE)
    executed = Data(DataType.STRUCTURE, (Data(DataType.OCTET_STRING, ln(PUSH_SCRIPT_TABLE)),
                                         Data(DataType.LONG_UNSIGNED, 1)))
    schedule = CosemObject(
        SINGLE_ACTION_SCHEDULE, o, "Push schedule",
        # type 5: n execution times, which may differ, wildcards in the date allowed
        (ln_attribute(o), static(executed), static(5, DataType.ENUM), Attribute(_execution_times)),
    )
    s = ln(PUSH_SCRIPT_TABLE)
    scripts = Data(DataType.ARRAY, tuple(Data(DataType.STRUCTURE, (
        Data(DataType.LONG_UNSIGNED, i),
        Data(DataType.ARRAY, (Data(DataType.STRUCTURE, (
            Data(DataType.ENUM, 2), Data(DataType.LONG_UNSIGNED, 40), Data(DataType.OCTET_STRING, ln(p)),
            Data(DataType.INTEGER, 1), Data(DataType.INTEGER, 0))),)),
    )) for i, p in enumerate(_SCRIPTED, start=1)))
    table = CosemObject(SCRIPT_TABLE, s, "Push script table", (ln_attribute(s), static(scripts)), (_run_script,))
    return [schedule, table]


def _execution_times(meter, assoc, now) -> bytes:
    """execution_time ::= array { structure { time octet-string(4), date octet-string(5) } }: the instant
    push's period as times of day, every day (date all wildcards); an hour wildcard below an hour."""
    from meter_core.codec.axdr import encode_value

    c = CONFIG[INSTANT_PUSH]
    period = SCHEDULE_SECONDS.get(c.schedule or "", 0) if c.enabled else 0
    if not period:
        times: list[bytes] = []
    elif period < 3600:
        times = [bytes((0xFF, m, 0, 0)) for m in range(0, 60, period // 60)]
    else:
        times = [bytes((h, 0, 0, 0)) for h in range(0, 24, period // 3600)]
    date = b"\xff\xff\xff\xff\xff"
    return encode_value(Data(DataType.ARRAY, tuple(Data(DataType.STRUCTURE, (
        Data(DataType.OCTET_STRING, t), Data(DataType.OCTET_STRING, date))) for t in times)))


def _run_script(meter, assoc, params, now):
    """execute (method 1, data long-unsigned script id): script n sends push setup n's push now."""
    from meter_core.codec.apdu.codes import ActionResult
    from meter_core.events import PushRequested

    if params is None or params.tag is not DataType.LONG_UNSIGNED:
        return ActionResult.TYPE_UNMATCHED, None
    if not 1 <= params.value <= len(_SCRIPTED):
        return ActionResult.OBJECT_UNAVAILABLE, None
    if assoc is not None:
        assoc.events.append(PushRequested(_SCRIPTED[params.value - 1]))
    return ActionResult.SUCCESS, None


def _config_value(push: str, field: str, dtype: DataType):
    from meter_core.codec.axdr import encode_value

    def get(meter, assoc, now) -> bytes:
        return encode_value(Data(dtype, setting(meter, push, field)))
    return get


def _push_method(push: str):
    """push (method 1, data integer 0): the meter sends this push now (the connection's owner sends it
    on the same connection, after the answer)."""
    def invoke(meter, assoc, params, now):
        from meter_core.codec.apdu.codes import ActionResult
        from meter_core.events import PushRequested

        if params is not None and params.tag is not DataType.INTEGER:
            return ActionResult.TYPE_UNMATCHED, None
        if assoc is not None:
            assoc.events.append(PushRequested(push))
        return ActionResult.SUCCESS, None
    return invoke


# -- when a push is due ------------------------------------------------------------------------------------

_IST_S = 19800


def randomisation(seed: int, meter_id: int, push: str) -> float:
    """The meter's own delay (s) after each scheduled instant, within the push setup's randomisation
    start interval: seeded, so a fleet's pushes spread the same way every run."""
    from meter_core.device.identity import stable_hash

    c = CONFIG.get(push)
    interval = c.randomisation_s if c is not None else 0
    if not interval:
        return 0.0
    return (stable_hash("push-randomisation", seed, meter_id, push) % (interval * 1000)) / 1000.0


def next_due(seed: int, meter_id: int, push: str, after: float, schedule: str | None = None) -> float:
    """The first time (simulated, UTC seconds) strictly after ``after`` at which meter ``meter_id`` pushes
    ``push`` on its schedule: the schedule's instant plus the meter's randomisation delay."""
    period = SCHEDULE_SECONDS[schedule or CONFIG[push].schedule]
    delay = randomisation(seed, meter_id, push)
    k = (after - delay + _IST_S) // period + 1
    return k * period - _IST_S + delay


def alerts_between(meter, t0: float, t1: float) -> list[tuple[float, frozenset[int]]]:
    """The alert pushes the meter owes in (t0, t1]: each time ESW bits that the ESW filter enables are
    raised (a bit that clears raises nothing), with those bits."""
    from meter_core import eventlog
    from meter_core.device.history import value_at

    filters = meter.state.eswf
    out = []
    for t, before, after in eventlog.esw_changes(meter, t0, t1):
        mask = value_at(filters, t) or b"\xff" * 16  # the filter in force when the bits rose
        raised = frozenset(b for b in after - before if mask[b // 8] & (0x80 >> (b % 8)))
        if raised:
            out.append((t, raised))
    return out


def triggered_between(meter, t0: float, t1: float) -> list[tuple[float, str, tuple[int, ...]]]:
    """The pushes the meter owes in (t0, t1] on their triggers, for the push setups enabled: (time of the
    trigger, push setup, ESW bits raised for an alert push). Alert pushes when ESW bits the ESW filter
    enables rise; the billing push when a billing period closes (scheduled date or MD reset); an
    event-log push for each event its log takes."""
    out = []
    if _enabled(ALERT_PUSH):
        out += [(t, ALERT_PUSH, tuple(sorted(bits))) for t, bits in alerts_between(meter, t0, t1)]
    if _enabled(BILLING_PUSH):
        _, recent = meter.billing_closures().upto(t1, 16)
        out += [(t, BILLING_PUSH, ()) for _stamp, t in recent if t0 < t <= t1]
    wanted = {c: p for c, p in enumerate(EVENT_PUSHES) if _enabled(p)}
    if wanted:
        from meter_core.eventlog import events_between

        out += [(e.time, wanted[e.category], ()) for e in events_between(meter, t0, t1) if e.category in wanted]
    out.sort()
    return out


def _enabled(push: str) -> bool:
    c = CONFIG.get(push)
    return c is not None and c.enabled


def invoke_id_for(due: float) -> int:
    """The long-invoke-id a push carries: the minute of its due time (mod 2^24), so a head-end's record of
    it meets the meter's record of what it owed."""
    return int(due // 60) & 0xFFFFFF


def due_between(seed: int, meter_id: int, push: str, t0: float, t1: float, schedule: str | None = None) -> list:
    """Every scheduled push of the meter in (t0, t1]."""
    out = []
    t = next_due(seed, meter_id, push, t0, schedule)
    while t <= t1:
        out.append(t)
        t = next_due(seed, meter_id, push, t, schedule)
    return out


# -- what a push sends (facts 12.2) ---------------------------------------------------------------------

PUSH_CLIENT_SAP = 64  # wPort / HDLC client of the push association 0.0.40.0.4.255 (facts 7)
PUSH_SETUP_E = 4  # its security setup 0.0.43.0.4.255
_LLC_RESPONSE = b"\xe6\xe7\x00"
_UI_FINAL = 0x13


_LN: dict[str, bytes] = {}


def _ln(obis: str) -> bytes:
    got = _LN.get(obis)
    if got is None:
        got = _LN[obis] = ln(obis)
    return got


def _value(meter, class_id: int, obis: str, attribute: int, push: str, now: float) -> bytes:
    """The encoded value one push object list entry names. A profile buffer pushes its last entry (the
    block or day just captured), not the whole buffer."""
    from meter_core.cosem.profile import Stream

    if class_id == 40 and attribute == 1:
        return b"\x09\x06" + _ln(push)
    obj = meter.model.by_key[(class_id, _ln(obis))]
    attr = obj.attributes[attribute - 1]
    if class_id == 7 and attribute == 2:
        count_get = obj.attributes[6].get  # entries_in_use
        count = int.from_bytes((count_get if type(count_get) is bytes else count_get(meter, None, now))[1:], "big")
        if count == 0:
            return b"\x01\x00"
        entry = Data(DataType.STRUCTURE, (Data(DataType.DOUBLE_LONG_UNSIGNED, count),
                                          Data(DataType.DOUBLE_LONG_UNSIGNED, count),
                                          Data(DataType.LONG_UNSIGNED, 1), Data(DataType.LONG_UNSIGNED, 0)))
        got = attr.select(meter, None, now, 2, entry)
        return got.materialise() if type(got) is Stream else got
    get = attr.get
    return get if type(get) is bytes else get(meter, None, now)


def notification_body(meter, push: str, now: float) -> bytes:
    """The pushed structure: one element per entry of the push object list (device ID, the push
    setup's name, the clock, then the data)."""
    kind = meter.identity.kind
    entries = (*_HEAD, (40, push, 1), (8, "0.0.1.0.0.255", 2), *_data_for(push, kind))
    return b"\x02" + bytes((len(entries),)) + b"".join(_value(meter, c, o, a, push, now) for c, o, a in entries)


CONFIRMED_SERVICE = 0x40000000  # long-invoke-id-and-priority bit 30: service-class confirmed


def data_notification(meter, push: str, now: float, invoke_id: int) -> bytes:
    """The plain DataNotification APDU of push setup ``push`` (long-invoke-id-and-priority ``invoke_id``,
    service class confirmed when the push setup's pushes are; date-time = the meter clock)."""
    from meter_core.codec.apdu import DataNotification, encode_apdu

    service = CONFIRMED_SERVICE if CONFIG[push].operation_method == 2 else 0
    return encode_apdu(DataNotification(long_invoke_id_and_priority=(invoke_id & 0x00FFFFFF) | service,
                                        date_time=meter.clock_bytes(now), body=notification_body(meter, push, now)))


def protect(meter, apdu: bytes) -> bytes:
    """A push as IS 15959 meters cipher it: general-glo-ciphering under the push setup's keys (suite as
    set, authenticated and encrypted), with the meter's next invocation counter."""
    from meter_core.codec import crypto as sec

    ks = meter.keys().sets[PUSH_SETUP_E]
    title = meter.identity.system_title
    return ciphered.seal(0xDB, sec.protect(0x30 | ks.suite, ks.next_tx(), title, ks.ek, ks.ak, apdu), title)


def take_confirm(meter, apdu: bytes) -> int | None:
    """A Data-Notification-Confirm from the head-end, general-glo-ciphered with the push setup's keys (as
    the pushes are): the long-invoke-id it confirms, or None if it is not one, does not decipher, or
    replays an invocation counter (the push keys' counter from the head-end only grows)."""
    from meter_core.codec import crypto as sec
    from meter_core.codec.apdu import DataNotificationConfirm, decode_apdu

    ks = meter.keys().sets[PUSH_SETUP_E]
    try:
        env = ciphered.open_envelope(apdu)
        sc, ic, plain = sec.unprotect(env.payload, env.system_title or b"", ks.ek, ks.ak)
        note = decode_apdu(plain)
    except Exception:  # noqa: BLE001 - anything that is not a good confirm is not one
        return None
    if not isinstance(note, DataNotificationConfirm) or ic <= ks.rx_ic or sc & 0x30 != 0x30:
        return None
    ks.rx_ic = ic
    return note.long_invoke_id_and_priority & 0xFFFFFF


def frame(meter, apdu: bytes, hdlc: bool, hdlc_server_address=None) -> bytes:
    """The push on the wire: a wrapper frame from the management logical device to the push client, or
    an HDLC UI frame (facts 12.2)."""
    if not hdlc:
        from meter_core.codec.wrapper import wrap

        return wrap(1, PUSH_CLIENT_SAP, apdu)
    from meter_core.codec.hdlc import HdlcAddress
    from meter_core.codec.hdlc.frames import Frame

    source = hdlc_server_address or HdlcAddress(upper=1, lower=meter.identity.hdlc_physical_address, size=4)
    return Frame(destination=HdlcAddress(upper=PUSH_CLIENT_SAP, lower=None, size=1), source=source,
                 control=_UI_FINAL, info=_LLC_RESPONSE + apdu).to_bytes()


__all__ = ["ALERT_PUSH", "alerts_between", "BLOCK_LOAD_PUSH", "CONFIG", "DAILY_LOAD_PUSH", "INSTANT_PUSH", "PUSH_CLIENT_SAP",
           "BILLING_PUSH", "EVENT_PUSHES", "confirmed", "take_confirm", "PushSetupConfig", "install", "scheduled", "triggered_between",
           "data_notification", "due_between", "frame", "invoke_id_for", "next_due", "notification_body", "protect",
           "push_setup_objects", "randomisation"]
