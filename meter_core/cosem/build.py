"""The COSEM object model of a meter kind: its objects, their getters and setters, and the associations.

`model_for(kind)` builds, once per (kind, HLS mechanism, security suite), the COSEM objects and the
association views (object lists, access rights, dispatch tables) that every meter of that kind shares;
`model_of(meter)` is the model of one meter. Getters are functions of (meter, association, now) that
return an attribute's encoded value; nothing here stores a meter's values.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

from meter_core.codec.apdu.codes import ActionResult, AuthenticationMechanism, DataAccessResult
from meter_core.codec.axdr import (
    BitString,
    CosemDateTime,
    Data,
    DataType,
    encode_datetime_at,
    encode_octets,
    encode_value,
    int_encoder,
)
from meter_core.codec.errors import DecodeError
from meter_core.codec.obis import ln
from meter_core.cosem import control, profile_generic, push_setup
from meter_core.cosem import is15959 as cat
from meter_core.cosem.ic import (
    ASSOCIATION_LN,
    CLOCK,
    DATA,
    DEMAND_REGISTER,
    EXTENDED_REGISTER,
    IEC_HDLC_SETUP,
    REGISTER,
    SAP_ASSIGNMENT,
    SECURITY_SETUP,
    TCP_UDP_SETUP,
)
from meter_core.cosem.model import (
    AssociationSpec,
    AssociationView,
    Attribute,
    CosemObject,
    ln_attribute,
    rights_for,
    scaler_unit,
    static,
)
from meter_core.device import eventlog, logbook, profiles, tod
from meter_core.device import keys as keymod
from meter_core.device.clock import IST_OFFSET_MINUTES, local_to_utc
from meter_core.device.identity import MeterKind
from meter_core.device.logbook import EV_CLOCK_SET, TRANSACTION
from meter_core.device.meter import Meter

IST = IST_OFFSET_MINUTES
_OCTET12 = b"\x09\x0c"
_UNSPECIFIED_DATETIME = encode_octets(b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x80\x00\xff")
_enc_u16 = int_encoder(DataType.LONG_UNSIGNED)
_enc_u32 = int_encoder(DataType.DOUBLE_LONG_UNSIGNED)
_enc_u8 = int_encoder(DataType.UNSIGNED)
_enc_enum = int_encoder(DataType.ENUM)




def _instant_getter(source: str, dtype: DataType, scaler: int):
    factor = 10.0 ** -scaler
    encode = int_encoder(dtype)
    phase = {"l1": 0, "l2": 1, "l3": 2}
    if source.startswith(("current_l", "voltage_l", "pf_l")):
        name, _, idx = source.rpartition("_")
        field_name = {"current": "current", "voltage": "voltage", "pf": "pf"}[name]
        i = phase[idx]

        def get(meter, assoc, now):
            return encode(round(getattr(meter.instant(now), field_name)[i] * factor))
    else:
        attr = {
            "pf_total": "pf_total", "frequency": "frequency", "active_power": "active_power",
            "reactive_power": "reactive_power", "apparent_power": "apparent_power",
            "current_neutral": "current_neutral",
        }[source]

        def get(meter, assoc, now):
            return encode(round(getattr(meter.instant(now), attr) * factor))

    return get


_ENERGY_FIELDS = {
    "active_import": "active_import_wh",
    "active_export": "active_export_wh",
    "apparent_import": "apparent_import_vah",
    "apparent_export": "apparent_export_vah",
    "reactive_q1": "reactive_q1_varh",
    "reactive_q2": "reactive_q2_varh",
    "reactive_q3": "reactive_q3_varh",
    "reactive_q4": "reactive_q4_varh",
}


def _energy_getter(source: str, dtype: DataType, scaler: int):
    divisor = 10.0 ** scaler
    encode = int_encoder(dtype)
    attr = _ENERGY_FIELDS[source]

    def get(meter, assoc, now):
        # floor keeps a register monotonic: it never shows more than the meter has counted
        return encode(int(getattr(meter.energy(now), attr) // divisor))

    return get


def _datetime_at(meter: Meter, t: float) -> bytes:
    """Date-time of simulated time ``t`` as the meter's clock shows it (octet-string 12)."""
    if math.isnan(t):
        return _UNSPECIFIED_DATETIME
    return _OCTET12 + encode_datetime_at(meter.clock_at_sim(t), IST, None, 0)


def _identity_value(source: str, kind: MeterKind):
    if source == "meter_type":
        return Attribute(_enc_u8(cat.METER_TYPE_CODE[kind]))
    if source == "category":
        return Attribute(encode_octets(cat.METER_CATEGORY[kind].encode()))
    if source == "current_rating":
        return Attribute(encode_octets(cat.CURRENT_RATING[kind].encode()))
    if source in ("ct_ratio", "pt_ratio"):
        # Primary/secondary ratio of the instrument transformers the meter is programmed with; its
        # registers show primary values.
        return Attribute(lambda m, a, now: _enc_u16(getattr(m.load.params, source)))
    if source == "year_of_manufacture":
        return Attribute(lambda m, a, now: _enc_u16(m.identity.year_of_manufacture))
    if source == "demand_integration_period":
        return Attribute(lambda m, a, now: _enc_u16(m.state.demand_integration_period), control.set_demand_period)
    if source == "profile_capture_period":
        return Attribute(lambda m, a, now: _enc_u16(m.state.profile_capture_period),
                         control.set_capture_period_data)
    if source == "billing_count":
        return Attribute(lambda m, a, now: _enc_u32(m.billing_count(now)))
    if source == "power_failure_count":
        return Attribute(lambda m, a, now: _enc_u32(eventlog.outage_totals(m, m.sim(now))[0]))
    if source == "tamper_count":
        return Attribute(lambda m, a, now: _enc_u16(m.state.tamper_count))
    if source == "programming_count":
        return Attribute(lambda m, a, now: _enc_u16(m.state.programming_count))
    if source == "last_billing_time":
        return Attribute(lambda m, a, now: profiles.clock_stamp(profiles.last_billing_clock(m, now)))
    text = {
        "logical_device_name": "logical_device_name", "serial": "serial", "manufacturer": "manufacturer",
        "device_id": "device_id", "firmware_version": "firmware_version",
    }[source]
    return Attribute(lambda m, a, now: encode_octets(getattr(m.identity, text).encode("ascii")))


def _clock_time(meter: Meter, assoc, now: float) -> bytes:
    return meter.clock_value(now)


def _set_clock_time(meter: Meter, assoc, value: Data, now: float) -> DataAccessResult:
    if value.tag is DataType.OCTET_STRING and len(value.value) == 12:
        raw = value.value
    elif value.tag is DataType.DATE_TIME:
        raw = value.value.to_bytes()
    else:
        return DataAccessResult.TYPE_UNMATCHED
    try:
        target = local_to_utc(CosemDateTime.from_bytes(raw))
    except DecodeError:
        return DataAccessResult.OTHER_REASON
    meter.set_clock(target, now)
    meter.record_event(TRANSACTION, EV_CLOCK_SET, now)
    return DataAccessResult.SUCCESS


def _adjust_clock(step_of):
    """Clock methods adjust_to_quarter/measuring_period/minute: round the clock to a step."""

    def method(meter: Meter, assoc, params: Data | None, now: float):
        if params is not None and params.tag is not DataType.INTEGER:
            return ActionResult.TYPE_UNMATCHED, None
        step = step_of(meter)
        local = meter.clock(now) + IST * 60
        rounded = math.floor(local / step + 0.5) * step
        meter.set_clock(meter.clock(now) + rounded - local, now)
        meter.record_event(TRANSACTION, EV_CLOCK_SET, now)
        return ActionResult.SUCCESS, None

    return method


def _shift_time(meter: Meter, assoc, params: Data | None, now: float):
    # shift_time (data) data ::= long, -900..900 seconds (IEC 62056-6-2 4.5.1, Clock method 6)
    if params is None or params.tag is not DataType.LONG:
        return ActionResult.TYPE_UNMATCHED, None
    if not -900 <= params.value <= 900:
        return ActionResult.OTHER_REASON, None
    meter.set_clock(meter.clock(now) + params.value, now)
    meter.record_event(TRANSACTION, EV_CLOCK_SET, now)
    return ActionResult.SUCCESS, None


def _clock_object() -> CosemObject:
    no_dst = encode_octets(b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x80\x00\xff")
    return CosemObject(
        CLOCK, ln(cat.CLOCK), "Clock",
        (
            ln_attribute(ln(cat.CLOCK)),
            Attribute(_clock_time, _set_clock_time),
            static(IST, DataType.LONG),  # time_zone, minutes (Gurux India model: 330)
            Attribute(lambda m, a, now: _enc_u8(0)),  # status: valid, no DST
            Attribute(no_dst),
            Attribute(no_dst),
            static(0, DataType.INTEGER),
            static(False, DataType.BOOLEAN),
            static(1, DataType.ENUM),  # clock_base: internal crystal
        ),
        (
            _adjust_clock(lambda m: 900),
            _adjust_clock(lambda m: m.state.profile_capture_period),
            _adjust_clock(lambda m: 60),
            None,
            None,
            _shift_time,
        ),
    )


def _duration_getter(spec: cat.RegisterSpec):
    encode = int_encoder(spec.type)
    source = spec.source
    if source == "net_active":
        def get(m: Meter, a, now):
            r = m.readings(m.sim(now))
            return encode(r[0] - r[1])
    elif source == "power_on_minutes":
        def get(m: Meter, a, now):
            t = m.sim(now)
            return encode(int(max(0.0, t - m.install_time - eventlog.outage_totals(m, t)[1]) // 60))
    elif source == "power_off_minutes":
        def get(m: Meter, a, now):
            return encode(int(eventlog.outage_totals(m, m.sim(now))[1] // 60))
    elif source == "period_power_on_minutes":
        def get(m: Meter, a, now):
            return encode(int(max(0.0, m.sim(now) - profiles.period_start_sim(m, now)) // 60))
    else:  # period_average_pf
        def get(m: Meter, a, now):
            t = m.sim(now)
            r0, r1 = m.readings(profiles.period_start_sim(m, now)), m.readings(t)
            kwh, kvah = r1[0] - r0[0], r1[2] - r0[2]
            return encode(round(1000 * kwh / kvah) if kvah > 0 else 1000)
    return get


def _tod_getter(spec: cat.RegisterSpec):
    encode = int_encoder(spec.type)
    _, quantity, zone = spec.source.split("_")
    index = (int(zone) - 1) + (tod.ZONES if quantity == "apparent" else 0)
    divisor = 10.0 ** spec.scaler

    def get(m: Meter, a, now):
        return encode(int(tod.totals_at(m, m.sim(now))[index] // divisor))

    return get


def _register(spec: cat.RegisterSpec) -> CosemObject:
    name = spec.name
    if spec.source in _ENERGY_FIELDS:
        value = Attribute(_energy_getter(spec.source, spec.type, spec.scaler))
    elif spec.source.startswith("tod_"):
        value = Attribute(_tod_getter(spec))
    elif spec.source.startswith(("block_", "avg_")):
        value = Attribute(profile_generic.block_register_getter(spec))
    elif spec.source in ("net_active", "power_on_minutes", "power_off_minutes", "period_power_on_minutes",
                         "period_average_pf"):
        value = Attribute(_duration_getter(spec))
    else:
        value = Attribute(_instant_getter(spec.source, spec.type, spec.scaler))
    return CosemObject(
        REGISTER, ln(spec.obis), name,
        (ln_attribute(ln(spec.obis)), value, Attribute(scaler_unit(spec.scaler, spec.unit))),
        (None,),
    )


def _max_demand_register(spec: cat.RegisterSpec) -> CosemObject:
    encode = int_encoder(spec.type)
    apparent = spec.source == "md_apparent_import"
    export = spec.source in ("md_active_export", "md_apparent_export")
    factor = 10.0 ** -spec.scaler

    def value(m: Meter, a, now):
        if export:
            return encode(0)  # the load model exports nothing
        d = m.max_demand(now)
        return encode(round((d.max_apparent if apparent else d.max_active) * factor))

    def capture_time(m: Meter, a, now):
        if export:
            return _UNSPECIFIED_DATETIME
        d = m.max_demand(now)
        return profiles.clock_stamp(d.max_apparent_stamp if apparent else d.max_active_stamp)

    return CosemObject(
        EXTENDED_REGISTER, ln(spec.obis), spec.name,
        (
            ln_attribute(ln(spec.obis)),
            Attribute(value),
            Attribute(scaler_unit(spec.scaler, spec.unit)),
            Attribute(_enc_u8(0)),  # status
            Attribute(capture_time),
        ),
        (None,),
    )


def _demand_register(spec: cat.RegisterSpec) -> CosemObject:
    encode = int_encoder(spec.type)
    field_name = "apparent_import_vah" if spec.source == "demand_apparent_import" else "active_import_wh"

    def average(m: Meter, t0: float, t1: float) -> float:
        # t0, t1: simulated time
        if t1 <= t0:
            return 0.0
        e0, e1 = getattr(m.energy_at(t0), field_name), getattr(m.energy_at(t1), field_name)
        return (e1 - e0) * 3600.0 / (t1 - t0)

    def current(m: Meter, a, now):
        start, _, _ = m.demand_window(now)
        return encode(round(average(m, start, m.sim(now))))

    def last(m: Meter, a, now):
        start, before, _ = m.demand_window(now)
        return encode(round(average(m, before, start)))

    def start_time(m: Meter, a, now):
        return _datetime_at(m, m.demand_window(now)[0])

    return CosemObject(
        DEMAND_REGISTER, ln(spec.obis), spec.name,
        (
            ln_attribute(ln(spec.obis)),
            Attribute(current),
            Attribute(last),
            Attribute(scaler_unit(spec.scaler, spec.unit)),
            Attribute(_enc_u8(0)),  # status
            Attribute(start_time),  # capture_time: end of the last period = start of this one
            Attribute(start_time),  # start_time_current
            Attribute(lambda m, a, now: _enc_u32(m.state.demand_integration_period)),
            Attribute(_enc_u16(1)),  # number_of_periods
        ),
        (None, None),
    )


def _oid_structure(arcs: tuple[int, ...]) -> bytes:
    # context_name / mechanism_name as structure of 7 elements (Association LN v0/v1 attributes 4, 6)
    types = (DataType.UNSIGNED, DataType.UNSIGNED, DataType.LONG_UNSIGNED, DataType.UNSIGNED,
             DataType.UNSIGNED, DataType.UNSIGNED, DataType.UNSIGNED)
    return encode_value(Data(DataType.STRUCTURE, tuple(Data(t, v) for t, v in zip(types, arcs))))


def _association_object(obis: str, owner_sap: int | None) -> CosemObject:
    """Association LN ``obis``; ``owner_sap`` None means the current association (0.0.40.0.0.255)."""

    def view_of(m: Meter, a):
        if owner_sap is None or owner_sap == a.spec.client_sap:
            return a.view, True
        return model_of(m).associations[owner_sap], False

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


def _sap_assignment() -> CosemObject:
    def assignment_list(m: Meter, a, now):
        # SAP_assignment_list ::= array { structure { SAP long-unsigned, logical_device_name octet-string } }
        return encode_value(Data(DataType.ARRAY, (Data(DataType.STRUCTURE, (
            Data(DataType.LONG_UNSIGNED, 1),
            Data(DataType.OCTET_STRING, m.identity.logical_device_name.encode("ascii")),
        )),)))

    return CosemObject(
        SAP_ASSIGNMENT, ln(cat.SAP_ASSIGNMENT), "SAP assignment",
        (ln_attribute(ln(cat.SAP_ASSIGNMENT)), Attribute(assignment_list)),
        (None,),
    )


def _hdlc_setup() -> CosemObject:
    o = ln(cat.HDLC_SETUP)
    return CosemObject(
        IEC_HDLC_SETUP, o, "IEC HDLC setup",
        (
            ln_attribute(o),
            static(5, DataType.ENUM),  # comm_speed 9600 baud
            static(1, DataType.UNSIGNED),  # window_size_transmit
            static(1, DataType.UNSIGNED),  # window_size_receive
            static(128, DataType.LONG_UNSIGNED),  # max_info_field_length_transmit
            static(128, DataType.LONG_UNSIGNED),  # max_info_field_length_receive
            static(25, DataType.LONG_UNSIGNED),  # inter_octet_time_out, ms
            static(120, DataType.LONG_UNSIGNED),  # inactivity_time_out, s
            Attribute(lambda m, a, now: _enc_u16(m.identity.hdlc_physical_address)),
        ),
    )


def _tcp_udp_setup() -> CosemObject:
    o = ln(cat.TCP_UDP_SETUP)
    return CosemObject(
        TCP_UDP_SETUP, o, "TCP-UDP setup",
        (
            ln_attribute(o),
            Attribute(lambda m, a, now: _enc_u16(m.port if m.port is not None else 4059)),
            Attribute(encode_octets(ln(cat.IPV4_SETUP))),
            static(1460, DataType.LONG_UNSIGNED),  # maximum_segment_size
            Attribute(lambda m, a, now: _enc_u8(m.state.max_connections)),
            Attribute(lambda m, a, now: _enc_u16(m.state.inactivity_timeout)),
        ),
    )


def _security_setup(obis: str, e: int, policy: int, suite: int) -> CosemObject:
    """Security setup v1 0.0.43.0.e.255: policy, suite, system titles; key transfer under the master key."""
    o = ln(obis)

    def client_title(m, a, now):
        keys = m.state.security
        ks = keys.sets.get(e) if keys is not None else None
        return encode_octets(ks.client_system_title if ks is not None else b"")

    return CosemObject(
        SECURITY_SETUP, o, f"Security setup {obis}",
        (
            ln_attribute(o),
            static(policy, DataType.ENUM),  # security_policy (v1 bits)
            static(suite, DataType.ENUM),  # security_suite
            Attribute(client_title),
            Attribute(lambda m, a, now: encode_octets(m.identity.system_title)),
            Attribute(_certificates(suite) if e >= 3 and suite else encode_value(Data(DataType.ARRAY, ()))),
        ),
        (None,) * 8 if e < 3 else (
            _security_activate(e), _key_transfer(e), _key_agreement(e, suite), *(_pki_method(name, suite) for name in (
                "generate_key_pair", "generate_certificate_request", "import_certificate", "export_certificate",
                "remove_certificate")),
        ),
    )


def _key_agreement(e: int, suite: int):
    """key_agreement (method 3): suites 1 and 2 only."""
    if not suite:
        return None

    def agree(m, a, params, now):
        ctx = getattr(a, "_sec", None)
        if ctx is None:
            return ActionResult.READ_WRITE_DENIED, None
        return keymod.key_agreement(m, e, suite, params, now, ctx.client_title)
    return agree


def _certificates(suite: int):
    def get(m, a, now):
        return keymod.certificate_info(keymod.pki(m, suite, m.clock(now)))
    return get


def _pki_method(name: str, suite: int):
    """Security setup v1 methods 4-8 (suites 1 and 2 only: suite 0 has no public keys)."""
    if not suite:
        return None

    def method(m, a, params, now):
        return getattr(keymod, name)(m, suite, params, m.clock(now))
    return method


def _security_activate(e: int):
    def activate(m, a, params, now):
        # security_activate(enum policy): IS 15959 meters run with the policy fixed per association;
        # asking for the policy in force is accepted, any other is refused.
        if params is None or params.tag is not DataType.ENUM:
            return ActionResult.TYPE_UNMATCHED, None
        return (ActionResult.SUCCESS if params.value == a.spec.policy or e != a.spec.setup
                else ActionResult.OTHER_REASON), None
    return activate


def _key_transfer(e: int):
    def transfer(m, a, params, now):
        return keymod.key_transfer(m, e, params, now)
    return transfer


def _invocation_counter(obis: str, e: int) -> CosemObject:
    """0.0.43.1.e.255: the counter a client's next protected APDU under setup e must exceed."""

    def value(m, a, now):
        keys = m.state.security
        return _enc_u32(keys.sets[e].rx_ic if keys is not None else 0)

    return CosemObject(DATA, ln(obis), f"Invocation counter {e}", (ln_attribute(ln(obis)), Attribute(value)))


@dataclass(slots=True)
class MeterModel:
    """The objects and association views of one meter kind, shared by all its meters."""

    kind: MeterKind
    objects: tuple[CosemObject, ...]
    associations: dict[int, AssociationView] = field(default_factory=dict)
    by_key: dict = field(default_factory=dict)  # (class_id, logical name) -> object


@functools.cache
def model_for(kind: MeterKind, hls: int = 2, suite: int = 0) -> MeterModel:
    """The IS 15959 object model of ``kind`` (built once per process), clients 48/64/80 authenticating
    with HLS mechanism ``hls`` and ciphering with security suite ``suite``."""
    objects: list[CosemObject] = [_clock_object()]
    objects += [
        CosemObject(DATA, ln(s.obis), s.name, (ln_attribute(ln(s.obis)), _identity_value(s.source, kind)))
        for s in cat.DATA_OBJECTS
        if kind in s.kinds
    ]
    objects += [
        CosemObject(DATA, ln(s.obis), s.name, (ln_attribute(ln(s.obis)), _identity_value(s.source, kind)))
        for s in cat.COUNTER_OBJECTS
        if kind in s.kinds
    ]
    for spec in (cat.INSTANT_REGISTERS + cat.ENERGY_REGISTERS + cat.TOD_REGISTERS + cat.NET_ENERGY_REGISTERS
                 + cat.BLOCK_REGISTERS + cat.DURATION_REGISTERS):
        if kind in spec.kinds:
            objects.append(_register(spec))
    for spec in cat.DEMAND_REGISTERS:
        if kind in spec.kinds:
            objects.append(_max_demand_register(spec) if spec.class_id == 4 else _demand_register(spec))
    objects.append(_association_object(cat.CURRENT_ASSOCIATION, None))
    for a in cat.ASSOCIATIONS:
        objects.append(_association_object(a.obis, a.client_sap))
    objects += [_sap_assignment(), _hdlc_setup(), _tcp_udp_setup(), _security_setup(cat.MR_SECURITY_SETUP, 2, 0, 0)]
    objects += [_security_setup(obis, e, cat.POLICY_AUTH_ENC, suite) for e, obis in
                ((3, cat.US_SECURITY_SETUP), (4, cat.PUSH_SECURITY_SETUP), (5, cat.FW_SECURITY_SETUP))]
    objects += [_invocation_counter(obis, 3 + i) for i, obis in enumerate(cat.INVOCATION_COUNTERS)]
    objects += control.control_objects(kind)
    objects += _event_objects()
    objects += push_setup.push_setup_objects(kind)
    objects += push_setup.trigger_objects()
    by_key = {o.key: o for o in objects}
    objects += [profile_generic.profile_object(kind, spec, by_key) for spec in cat.PROFILES]
    objects += [profile_generic.event_log_object(kind, c, by_key) for c in range(7)]
    objects.append(profile_generic.event_scaler_profile(kind, by_key))

    model = MeterModel(kind, tuple(objects), by_key={o.key: o for o in objects})
    public = {ln(s.obis) for s in cat.DATA_OBJECTS if s.public}
    public |= {ln(cat.CLOCK), ln(cat.CURRENT_ASSOCIATION), ln(cat.SAP_ASSIGNMENT)}
    public |= {ln(o) for o in cat.INVOCATION_COUNTERS}  # read before a secured association (facts 5.6)
    for a in cat.ASSOCIATIONS:
        secured = a.client_sap in cat.SECURED_SAPS
        spec = AssociationSpec(
            client_sap=a.client_sap,
            ln=ln(a.obis),
            name=a.name,
            mechanism=AuthenticationMechanism(hls) if secured else a.mechanism,
            contexts=cat.CIPHERED_LN_CONTEXT if secured else cat.PLAIN_LN_CONTEXT,
            conformance=a.conformance,
            security_setup=ln(a.security_setup) if a.security_setup else bytes(6),
            setup=int(a.security_setup.split(".")[4]) if secured else 0,
            policy=cat.POLICY_AUTH_ENC if secured else 0,
        )
        writable, methods = _rights_of(a.client_sap)
        entries = []
        for obj in objects:
            if obj.ic.class_id == ASSOCIATION_LN.class_id and obj.ln not in (ln(cat.CURRENT_ASSOCIATION),
                                                                              ln(a.obis)):
                # an association sees itself; the meter reader also sees the public one, and utility
                # settings the meter reader's (to change its password)
                if not ((a.mechanism is AuthenticationMechanism.LOW and obj.ln == ln("0.0.40.0.1.255"))
                        or (a.client_sap == 48 and obj.ln == ln("0.0.40.0.2.255"))):
                    continue
            if a.mechanism is AuthenticationMechanism.NONE:
                if obj.ln not in public and obj.ln != ln(a.obis):
                    continue
                rights = rights_for(obj, True, hidden=_hidden(obj))
            else:
                obis = str_obis(obj.ln)
                extra = frozenset()
                if secured and obj.ic.class_id == ASSOCIATION_LN.class_id:
                    extra = frozenset({1, 2})  # reply_to_HLS_authentication, change_HLS_secret
                rights = rights_for(
                    obj, True,
                    writable=writable.get(obis, frozenset()),
                    methods=methods.get(obis, frozenset()) | extra,
                    hidden=_hidden(obj),
                )
            entries.append((obj, rights))
        model.associations[a.client_sap] = AssociationView(spec, tuple(entries))
    return model


def model_of(meter: Meter) -> MeterModel:
    """The object model of ``meter``: its kind's, with the fleet's HLS mechanism and security suite."""
    fleet = meter.fleet
    return model_for(meter.identity.kind, fleet.hls_mechanism, fleet.security_suite)


def _rights_of(client_sap: int) -> tuple[dict, dict]:
    """(writable attributes, methods) by OBIS for an authenticated association."""
    if client_sap in (48, 80):
        # utility settings and firmware: the programming rights, and the key management of their setup
        e = 3 if client_sap == 48 else 5
        methods = dict(cat.US_METHODS)
        methods[f"0.0.43.0.{e}.255"] = frozenset({1, 2, 3, 4, 5, 6, 7, 8})
        return cat.US_WRITABLE, methods
    return {}, {}  # meter reader and push: reads only


def _event_objects() -> list[CosemObject]:
    """Last event code per log (0.0.96.11.x.255), the Event Status Word and its filter."""
    out = [
        CosemObject(DATA, ln(obis), f"Event code, {logbook.CATEGORY_NAMES[c]} events",
                    (ln_attribute(ln(obis)), Attribute(eventlog.last_code(c))))
        for c, obis in enumerate(logbook.CODE_OBIS)
    ]
    out.append(CosemObject(DATA, ln(cat.ESW), "Event Status Word",
                           (ln_attribute(ln(cat.ESW)), Attribute(eventlog.esw_value))))
    out.append(CosemObject(DATA, ln(cat.ESWF), "Event Status Word filter",
                           (ln_attribute(ln(cat.ESWF)), Attribute(eventlog.eswf_value, eventlog.set_eswf))))
    return out


def _hidden(obj: CosemObject) -> frozenset[int]:
    # Association LN attribute 7 (secret) is never readable.
    return frozenset({7}) if obj.ic.class_id == ASSOCIATION_LN.class_id else frozenset()


def str_obis(raw: bytes) -> str:
    return ".".join(str(b) for b in raw)
