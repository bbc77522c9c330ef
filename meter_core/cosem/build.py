"""The COSEM object model of a meter kind: its objects, their getters and setters, and the associations.

`model_for(kind)` builds, once per (kind, HLS mechanism, security suite), the COSEM objects and the
association views (object lists, access rights, dispatch tables) that every meter of that kind shares;
`model_of(meter)` is the model of one meter. Getters are functions of (meter, association, now) that
return an attribute's encoded value; nothing here stores a meter's values.
"""

from __future__ import annotations

import functools

from meter_core.codec.apdu.codes import AuthenticationMechanism
from meter_core.codec.obis import ln
from meter_core.cosem import is15959 as cat
from meter_core.cosem.ic import (
    activity_calendar,
    association_ln,
    clock,
    data,
    demand_register,
    disconnect_control,
    extended_register,
    iec_hdlc_setup,
    limiter,
    profile_generic,
    push_setup,
    register,
    sap_assignment,
    script_table,
    security_setup,
    single_action_schedule,
    tcp_udp_setup,
)
from meter_core.cosem.ic.association_ln import ASSOCIATION_LN
from meter_core.cosem.ic.data import DATA
from meter_core.cosem.model import (
    AssociationSpec,
    AssociationView,
    CosemObject,
    MeterModel,
    ln_attribute,
    rights_for,
)
from meter_core.device.config import DEFAULT_DEVICE, DeviceConfig
from meter_core.device.identity import MeterKind
from meter_core.device.meter import Meter


@functools.cache
def model_for(kind: MeterKind, hls: int = 2, suite: int = 0, config: DeviceConfig = DEFAULT_DEVICE) -> MeterModel:
    """The IS 15959 object model of ``kind``, clients 48/64/80 authenticating with HLS mechanism ``hls``
    and ciphering with security suite ``suite``, its push setups as ``config`` has them. Built once per
    process and arguments (all immutable values: nothing to clear)."""
    objects: list[CosemObject] = [clock.clock_object()]
    objects += [
        CosemObject(DATA, ln(s.obis), s.name, (ln_attribute(ln(s.obis)), data.identity_value(s.source, kind)))
        for s in cat.DATA_OBJECTS
        if kind in s.kinds
    ]
    objects += [
        CosemObject(DATA, ln(s.obis), s.name, (ln_attribute(ln(s.obis)), data.identity_value(s.source, kind)))
        for s in cat.COUNTER_OBJECTS
        if kind in s.kinds
    ]
    for spec in (cat.INSTANT_REGISTERS + cat.ENERGY_REGISTERS + cat.TOD_REGISTERS + cat.NET_ENERGY_REGISTERS
                 + cat.BLOCK_REGISTERS + cat.DURATION_REGISTERS):
        if kind in spec.kinds:
            objects.append(register.register_object(spec))
    for spec in cat.DEMAND_REGISTERS:
        if kind in spec.kinds:
            objects.append(extended_register.max_demand_register(spec) if spec.class_id == 4
                           else demand_register.demand_register(spec))
    objects.append(association_ln.association_object(cat.CURRENT_ASSOCIATION, None))
    for a in cat.ASSOCIATIONS:
        objects.append(association_ln.association_object(a.obis, a.client_sap))
    objects += [sap_assignment.sap_assignment(), iec_hdlc_setup.hdlc_setup(), tcp_udp_setup.tcp_udp_setup(),
                security_setup.security_setup(cat.MR_SECURITY_SETUP, 2, 0, 0)]
    objects += [security_setup.security_setup(obis, e, cat.POLICY_AUTH_ENC, suite) for e, obis in
                ((3, cat.US_SECURITY_SETUP), (4, cat.PUSH_SECURITY_SETUP), (5, cat.FW_SECURITY_SETUP))]
    objects += [data.invocation_counter(obis, 3 + i) for i, obis in enumerate(cat.INVOCATION_COUNTERS)]
    objects += [script_table.md_reset_script_table(), single_action_schedule.billing_schedule(),
                activity_calendar.activity_calendar()]
    if kind is not MeterKind.CT_PT:  # no relay on CT/PT meters
        objects += [disconnect_control.disconnect_control(), limiter.limiter()]
    objects += data.event_objects()
    objects += push_setup.push_setup_objects(kind, config.pushes)
    objects += [single_action_schedule.push_schedule(), script_table.push_script_table()]
    by_key = {o.key: o for o in objects}
    objects += [profile_generic.profile_object(kind, spec, by_key) for spec in cat.PROFILES]
    objects += [profile_generic.event_log_object(kind, c, by_key) for c in range(7)]
    objects.append(profile_generic.event_scaler_profile(kind, by_key))

    model = MeterModel(kind, tuple(objects), by_key={o.key: o for o in objects})
    public = {ln(s.obis) for s in cat.DATA_OBJECTS if s.public}
    public |= {ln(cat.CLOCK), ln(cat.CURRENT_ASSOCIATION), ln(cat.SAP_ASSIGNMENT)}
    public |= {ln(o) for o in cat.INVOCATION_COUNTERS}  # read before a secured association (Gurux's India.txt)
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
    """The object model of ``meter``: its kind's, with the fleet's HLS mechanism, security suite and push
    setups."""
    fleet = meter.fleet
    return model_for(meter.identity.kind, fleet.hls_mechanism, fleet.security_suite, meter.config)


def _rights_of(client_sap: int) -> tuple[dict, dict]:
    """(writable attributes, methods) by OBIS for an authenticated association."""
    if client_sap in (48, 80):
        # utility settings and firmware: the programming rights, and the key management of their setup
        e = 3 if client_sap == 48 else 5
        methods = dict(cat.US_METHODS)
        methods[f"0.0.43.0.{e}.255"] = frozenset({1, 2, 3, 4, 5, 6, 7, 8})
        return cat.US_WRITABLE, methods
    return {}, {}  # meter reader and push: reads only


def _hidden(obj: CosemObject) -> frozenset[int]:
    # Association LN attribute 7 (secret) is never readable.
    return frozenset({7}) if obj.ic.class_id == ASSOCIATION_LN.class_id else frozenset()


def str_obis(raw: bytes) -> str:
    return ".".join(str(b) for b in raw)
