"""What a push sends (as a public IS 15959 NIC firmware builds it): the Data-Notification APDU of a
push setup, ciphered as IS 15959 meters cipher it, framed for the wire (wrapper or HDLC UI), and the
head-end's confirmation taken back.
"""

from __future__ import annotations

from meter_core.codec import crypto as sec
from meter_core.codec.apdu import (
    DataNotification,
    DataNotificationConfirm,
    ciphered,
    decode_apdu,
    encode_apdu,
)
from meter_core.codec.apdu.codes import LONG_INVOKE_ID_MASK, LONG_SERVICE_CLASS_CONFIRMED, ApduTag
from meter_core.codec.axdr import Data, DataType
from meter_core.codec.hdlc import LLC_RESPONSE, HdlcAddress
from meter_core.codec.hdlc.frames import Frame, FrameKind, control_field
from meter_core.codec.obis import ln
from meter_core.codec.wrapper import wrap
from meter_core.cosem.buffer import Stream
from meter_core.cosem.build import model_of
from meter_core.device import pushes
from meter_core.device.pushes import PUSH_CLIENT_SAP, PUSH_SETUP_E

_UI_FINAL = control_field(FrameKind.UI, pf=True)
_LN_HEAD = bytes((DataType.OCTET_STRING, 6))  # a logical name: octet-string of 6
_EMPTY_ARRAY = bytes((DataType.ARRAY, 0))
_LN: dict[str, bytes] = {}


def _ln(obis: str) -> bytes:
    got = _LN.get(obis)
    if got is None:
        got = _LN[obis] = ln(obis)
    return got


def _value(meter, by_key: dict, class_id: int, obis: str, attribute: int, push: str, now: float) -> bytes:
    """The encoded value one push object list entry names. A profile buffer pushes its last entry (the
    block or day just captured), not the whole buffer."""
    if class_id == 40 and attribute == 1:
        return _LN_HEAD + _ln(push)
    obj = by_key[(class_id, _ln(obis))]
    attr = obj.attributes[attribute - 1]
    if class_id == 7 and attribute == 2:
        count_get = obj.attributes[6].get  # entries_in_use
        count = int.from_bytes((count_get if type(count_get) is bytes else count_get(meter, None, now))[1:], "big")
        if count == 0:
            return _EMPTY_ARRAY
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
    entries = pushes.object_list(push, meter.identity.kind)
    by_key = model_of(meter).by_key
    return bytes((DataType.STRUCTURE, len(entries))) + b"".join(
        _value(meter, by_key, c, o, a, push, now) for c, o, a in entries)




def data_notification(meter, push: str, now: float, invoke_id: int) -> bytes:
    """The plain DataNotification APDU of push setup ``push`` (long-invoke-id-and-priority ``invoke_id``,
    service class confirmed when the push setup's pushes are; date-time = the meter clock)."""
    service = LONG_SERVICE_CLASS_CONFIRMED if meter.config.push[push].operation_method == 2 else 0
    return encode_apdu(DataNotification(long_invoke_id_and_priority=(invoke_id & 0x00FFFFFF) | service,
                                        date_time=meter.clock_bytes(now), body=notification_body(meter, push, now)))


def protect(meter, apdu: bytes) -> bytes:
    """A push as IS 15959 meters cipher it: general-glo-ciphering under the push setup's keys (suite as
    set, authenticated and encrypted), with the meter's next invocation counter."""
    ks = meter.keys().sets[PUSH_SETUP_E]
    title = meter.identity.system_title
    return ciphered.seal(ApduTag.GENERAL_GLO_CIPHERING, sec.protect(sec.AUTHENTICATED_AND_ENCRYPTED | ks.suite, ks.next_tx(), title, ks.ek, ks.ak, apdu), title)


def take_confirm(meter, apdu: bytes) -> int | None:
    """A Data-Notification-Confirm from the head-end, general-glo-ciphered with the push setup's keys (as
    the pushes are): the long-invoke-id it confirms, or None if it is not one, does not decipher, or
    replays an invocation counter (the push keys' counter from the head-end only grows)."""
    ks = meter.keys().sets[PUSH_SETUP_E]
    try:
        env = ciphered.open_envelope(apdu)
        sc, ic, plain = sec.unprotect(env.payload, env.system_title or b"", ks.ek, ks.ak)
        note = decode_apdu(plain)
    except Exception:  # noqa: BLE001 - anything that is not a good confirm is not one
        return None
    if not isinstance(note, DataNotificationConfirm) or ic <= ks.rx_ic or sc & sec.AUTHENTICATED_AND_ENCRYPTED != sec.AUTHENTICATED_AND_ENCRYPTED:
        return None
    ks.rx_ic = ic
    return note.long_invoke_id_and_priority & LONG_INVOKE_ID_MASK


def frame(meter, apdu: bytes, hdlc: bool, hdlc_server_address=None) -> bytes:
    """The push on the wire: a wrapper frame from the management logical device to the push client, or
    an HDLC UI frame (a Wirepas DLMS NIC firmware for IS 15959 meters)."""
    if not hdlc:
        return wrap(1, PUSH_CLIENT_SAP, apdu)
    source = hdlc_server_address or HdlcAddress(upper=1, lower=meter.identity.hdlc_physical_address, size=4)
    return Frame(destination=HdlcAddress(upper=PUSH_CLIENT_SAP, lower=None, size=1), source=source,
                 control=_UI_FINAL, info=LLC_RESPONSE + apdu).to_bytes()
