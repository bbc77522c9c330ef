"""Association LN (class 15): the current association and each client's, their object lists and secrets."""

from __future__ import annotations

from meter_core.codec.apdu.codes import ActionResult, DataAccessResult
from meter_core.codec.axdr import BitString, Data, DataType, encode_octets, encode_value, int_encoder
from meter_core.codec.obis import ln
from meter_core.cosem import is15959 as cat
from meter_core.cosem.model import Attribute, CosemObject, InterfaceClass, ln_attribute
from meter_core.device import keys as keymod
from meter_core.device import logbook
from meter_core.device.meter import Meter

_enc_enum = int_encoder(DataType.ENUM)


ASSOCIATION_LN = InterfaceClass(
    15, 1, "Association LN",
    ("logical_name", "object_list", "associated_partners_id", "application_context_name",
     "xDLMS_context_info", "authentication_mechanism_name", "secret", "association_status",
     "security_setup_reference"),
    ("reply_to_HLS_authentication", "change_HLS_secret", "add_object", "remove_object"),
)


def _oid_structure(arcs: tuple[int, ...]) -> bytes:
    # context_name / mechanism_name as structure of 7 elements (Association LN v0/v1 attributes 4, 6)
    types = (DataType.UNSIGNED, DataType.UNSIGNED, DataType.LONG_UNSIGNED, DataType.UNSIGNED,
             DataType.UNSIGNED, DataType.UNSIGNED, DataType.UNSIGNED)
    return encode_value(Data(DataType.STRUCTURE, tuple(Data(t, v) for t, v in zip(types, arcs))))


def association_object(obis: str, owner_sap: int | None) -> CosemObject:
    """Association LN ``obis``; ``owner_sap`` None means the current association (0.0.40.0.0.255)."""

    def view_of(m: Meter, a):
        if owner_sap is None or owner_sap == a.spec.client_sap:
            return a.view, True
        return a.model.associations[owner_sap], False

    def object_list(m, a, now):
        return view_of(m, a)[0].object_list

    def partners(m, a, now):
        view, _ = view_of(m, a)
        return encode_value(Data(DataType.STRUCTURE, (
            Data(DataType.INTEGER, view.spec.client_sap), Data(DataType.LONG_UNSIGNED, 1))))

    def context(m, a, now):
        view, current = view_of(m, a)
        ctx = a.context if current and a.context is not None else min(view.spec.contexts)
        return _oid_structure((2, 16, 756, 5, 8, 1, ctx))

    def xdlms_info(m, a, now):
        view, current = view_of(m, a)
        spec = view.spec
        send = a.max_send_pdu_size if current else spec.server_max_receive_pdu_size
        return encode_value(Data(DataType.STRUCTURE, (
            Data(DataType.BIT_STRING, _bits24(spec.conformance)),
            Data(DataType.LONG_UNSIGNED, spec.server_max_receive_pdu_size),
            Data(DataType.LONG_UNSIGNED, send),
            Data(DataType.UNSIGNED, 6),
            Data(DataType.INTEGER, 0),
            Data(DataType.OCTET_STRING, b""),
        )))

    def mechanism(m, a, now):
        return _oid_structure((2, 16, 756, 5, 8, 2, view_of(m, a)[0].spec.mechanism))

    def status(m, a, now):
        _, current = view_of(m, a)
        return _enc_enum(a.status_code if current else 0)

    def security_setup(m, a, now):
        return encode_octets(view_of(m, a)[0].spec.security_setup)

    return CosemObject(
        ASSOCIATION_LN, ln(obis), "Current association" if owner_sap is None else f"Association {obis}",
        (
            ln_attribute(ln(obis)),
            Attribute(object_list),
            Attribute(partners),
            Attribute(context),
            Attribute(xdlms_info),
            Attribute(mechanism),
            # secret: never readable; the meter reader's LLS password is written through client 48
            Attribute(encode_octets(b""), _set_lls_secret if owner_sap == 32 else None),
            Attribute(status),
            Attribute(security_setup),
        ),
        (None, _change_hls_secret(owner_sap) if owner_sap is None or owner_sap in cat.SECURED_SAPS else None,
         None, None),
    )


def _set_lls_secret(m, a, value, now):
    """Association LN attribute 7 of the meter reader (LLS): a new password, 1 to 16 visible characters
    as IS 15959 meters take (transaction event 161)."""
    if value.tag is not DataType.OCTET_STRING:
        return DataAccessResult.TYPE_UNMATCHED
    secret = bytes(value.value)
    if not 1 <= len(secret) <= 16 or not all(0x21 <= b <= 0x7E for b in secret):
        return DataAccessResult.OTHER_REASON
    sec = m.keys()
    sec.lls_password = secret
    sec.changed.add(("lls", 32))
    m.record_event(logbook.TRANSACTION, 161, now)
    return DataAccessResult.SUCCESS


def _change_hls_secret(owner_sap: int | None):
    """change_HLS_secret of association ``owner_sap`` (None: the current one, when it is an HLS one)."""
    def change(m, a, params, now):
        sap = a.spec.client_sap if owner_sap is None else owner_sap
        if sap not in cat.SECURED_SAPS:
            return ActionResult.READ_WRITE_DENIED, None
        return keymod.change_hls_secret(m, sap, params, now)
    return change


def _bits24(value: int) -> BitString:
    return BitString(24, value.to_bytes(3, "big"))
