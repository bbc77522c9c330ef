"""Push setup objects (class 40) as IS 15959 meters list them, and the pushes they send.

Objects and push object lists follow facts section 12: every push starts with the device ID
(0.0.96.1.2.255), the push setup's own logical name and the clock, then the pushed data: the
instantaneous values (instant push), the Event Status Word (alert push), or a profile buffer (block
load and daily load pushes). Normative IS 15959 push object lists are not public (UNCONFIRMED); the
intervals are in seconds (facts 2.1, UNCONFIRMED).
"""

from __future__ import annotations

from meter_core.axdr import Data, DataType
from meter_core.cosem.ic import PUSH_SETUP
from meter_core.cosem.model import CosemObject, ln_attribute, static
from meter_core.identity import MeterKind
from meter_core.obis import ln

INSTANT_PUSH = "0.0.25.9.0.255"
ALERT_PUSH = "0.4.25.9.0.255"
BLOCK_LOAD_PUSH = "0.5.25.9.0.255"
DAILY_LOAD_PUSH = "0.6.25.9.0.255"

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
    return ((7, "1.0.99.2.0.255", 2),)


# Randomisation start interval (s) per push: every meter waits its own seeded share of it after the
# instant a push falls due (a power failure across a feeder spreads its last gasps over a minute).
_RANDOMISATION = {INSTANT_PUSH: 60, ALERT_PUSH: 60, BLOCK_LOAD_PUSH: 300, DAILY_LOAD_PUSH: 900}


def push_object_list(push: str, kind: MeterKind) -> Data:
    entries = (*_HEAD, (40, push, 1), (8, "0.0.1.0.0.255", 2), *_data_for(push, kind))
    return Data(DataType.ARRAY, tuple(
        Data(DataType.STRUCTURE, (Data(DataType.LONG_UNSIGNED, c), Data(DataType.OCTET_STRING, ln(o)),
                                  Data(DataType.INTEGER, a), Data(DataType.LONG_UNSIGNED, 0)))
        for c, o, a in entries))


def push_setup_objects(kind: MeterKind) -> list[CosemObject]:
    out = []
    for push, name in ((INSTANT_PUSH, "Instant push setup"), (ALERT_PUSH, "Alert push setup"),
                       (BLOCK_LOAD_PUSH, "Block load push setup"), (DAILY_LOAD_PUSH, "Daily load push setup")):
        o = ln(push)
        out.append(CosemObject(
            PUSH_SETUP, o, name,
            (
                ln_attribute(o),
                static(push_object_list(push, kind)),
                # send_destination_and_method: TCP, no destination until a head-end is configured, A-XDR
                static(Data(DataType.STRUCTURE, (Data(DataType.ENUM, 0), Data(DataType.OCTET_STRING, b""),
                                                 Data(DataType.ENUM, 0)))),
                static(Data(DataType.ARRAY, ())),  # communication_window: always
                static(_RANDOMISATION[push], DataType.LONG_UNSIGNED),
                static(3, DataType.UNSIGNED),  # number_of_retries
                static(60, DataType.LONG_UNSIGNED),  # repetition_delay, s
            ),
            (_push_method(push),),
        ))
    return out


def _push_method(push: str):
    """push (method 1, data integer 0): the meter sends this push now (the connection's owner sends it
    on the same connection, after the answer)."""
    def invoke(meter, assoc, params, now):
        from meter_core.apdu.codes import ActionResult
        from meter_core.events import PushRequested

        if params is not None and params.tag is not DataType.INTEGER:
            return ActionResult.TYPE_UNMATCHED, None
        if assoc is not None:
            assoc.events.append(PushRequested(push))
        return ActionResult.SUCCESS, None
    return invoke


# -- when a push is due ------------------------------------------------------------------------------------

# Schedules of the periodic pushes (the seed's push_schedules types): period in seconds, aligned to IST
# midnight. The alert push goes on an ESW change, not on a schedule.
SCHEDULE_SECONDS = {"FIFTEEN_MIN": 900, "THIRTY_MIN": 1800, "ONE_HOUR": 3600, "FOUR_HOUR": 14400,
                    "EIGHT_HOUR": 28800, "TWELVE_HOUR": 43200, "TWENTY_FOUR_HOUR": 86400}
DEFAULT_SCHEDULES = {INSTANT_PUSH: "FIFTEEN_MIN", BLOCK_LOAD_PUSH: "THIRTY_MIN", DAILY_LOAD_PUSH: "TWENTY_FOUR_HOUR"}
_IST_S = 19800


def randomisation(seed: int, meter_id: int, push: str) -> float:
    """The meter's own delay (s) after each scheduled instant, within the push setup's randomisation
    start interval: seeded, so a fleet's pushes spread the same way every run."""
    from meter_core.identity import stable_hash

    interval = _RANDOMISATION.get(push, 0)
    if not interval:
        return 0.0
    return (stable_hash("push-randomisation", seed, meter_id, push) % (interval * 1000)) / 1000.0


def next_due(seed: int, meter_id: int, push: str, after: float, schedule: str | None = None) -> float:
    """The first time (simulated, UTC seconds) strictly after ``after`` at which meter ``meter_id`` pushes
    ``push`` on its schedule: the schedule's instant plus the meter's randomisation delay."""
    period = SCHEDULE_SECONDS[schedule or DEFAULT_SCHEDULES[push]]
    delay = randomisation(seed, meter_id, push)
    k = (after - delay + _IST_S) // period + 1
    return k * period - _IST_S + delay


def alerts_between(meter, t0: float, t1: float) -> list[tuple[float, frozenset[int]]]:
    """The alert pushes the meter owes in (t0, t1]: each time ESW bits that the ESW filter enables are
    raised (a bit that clears raises nothing), with those bits."""
    from meter_core import eventlog

    mask = meter.state.eswf or b"\xff" * 16
    out = []
    for t, before, after in eventlog.esw_changes(meter, t0, t1):
        raised = frozenset(b for b in after - before if mask[b // 8] & (0x80 >> (b % 8)))
        if raised:
            out.append((t, raised))
    return out


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


def data_notification(meter, push: str, now: float, invoke_id: int) -> bytes:
    """The plain DataNotification APDU of push setup ``push`` (long-invoke-id-and-priority ``invoke_id``;
    date-time = the meter clock)."""
    from meter_core.apdu import DataNotification, encode_apdu

    return encode_apdu(DataNotification(long_invoke_id_and_priority=invoke_id & 0x00FFFFFF,
                                        date_time=meter.clock_bytes(now), body=notification_body(meter, push, now)))


def protect(meter, apdu: bytes) -> bytes:
    """A push as IS 15959 meters cipher it: general-glo-ciphering under the push setup's keys (suite as
    set, authenticated and encrypted), with the meter's next invocation counter."""
    from meter_core import security as sec

    ks = meter.keys().sets[PUSH_SETUP_E]
    title = meter.identity.system_title
    return sec.seal(0xDB, sec.protect(0x30 | ks.suite, ks.next_tx(), title, ks.ek, ks.ak, apdu), title)


def frame(meter, apdu: bytes, hdlc: bool, hdlc_server_address=None) -> bytes:
    """The push on the wire: a wrapper frame from the management logical device to the push client, or
    an HDLC UI frame (facts 12.2)."""
    if not hdlc:
        from meter_core.wrapper import wrap

        return wrap(1, PUSH_CLIENT_SAP, apdu)
    from meter_core.hdlc import HdlcAddress
    from meter_core.hdlc.frames import Frame

    source = hdlc_server_address or HdlcAddress(upper=1, lower=meter.identity.hdlc_physical_address, size=4)
    return Frame(destination=HdlcAddress(upper=PUSH_CLIENT_SAP, lower=None, size=1), source=source,
                 control=_UI_FINAL, info=_LLC_RESPONSE + apdu).to_bytes()


__all__ = ["ALERT_PUSH", "alerts_between", "BLOCK_LOAD_PUSH", "DAILY_LOAD_PUSH", "DEFAULT_SCHEDULES", "INSTANT_PUSH", "PUSH_CLIENT_SAP",
           "data_notification", "due_between", "frame", "invoke_id_for", "next_due", "notification_body", "protect",
           "push_setup_objects", "randomisation"]
