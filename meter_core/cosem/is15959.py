"""The IS 15959 object catalogue, as data.

OBIS codes, classes and meanings are from IS 15959 Parts 1-3 as published in the Gurux India object
list and cross-checked with the Gurux India meter model (GuruxDLMS.c) and a public IS 15959 NIC
firmware; data types, scalers and
units are this simulator's choice where the public sources give none (they are what a typical IS 15959
meter sends, and every one is announced by the scaler_unit attribute a head-end reads anyway).

``source`` names the value a meter computes for the object (see `meter_core.device.meter`); ``kinds``
limits an object to some meter kinds; ``public`` objects are visible to the public client (16).
"""

from __future__ import annotations

from dataclasses import dataclass

from meter_core.codec.apdu.codes import ApplicationContextName, AuthenticationMechanism, Conformance
from meter_core.codec.axdr import DataType
from meter_core.cosem.model import Unit
from meter_core.device.identity import MeterKind
from meter_core.device.profiles import BILLING_PROFILE_DEPTH, BLOCK_PROFILE_DAYS, DAILY_PROFILE_DEPTH

ALL_KINDS = frozenset(MeterKind)
WHOLE_CURRENT = frozenset({MeterKind.SINGLE_PHASE, MeterKind.THREE_PHASE})
POLYPHASE = frozenset({MeterKind.THREE_PHASE, MeterKind.CT_PT})
THREE_PHASE = frozenset({MeterKind.THREE_PHASE})
SINGLE = frozenset({MeterKind.SINGLE_PHASE})
CT_PT = frozenset({MeterKind.CT_PT})


@dataclass(frozen=True, slots=True)
class DataSpec:
    """A Data (class 1) object: ``source`` gives its value, encoded as ``type``."""

    obis: str
    name: str
    source: str
    type: DataType
    kinds: frozenset[MeterKind] = ALL_KINDS
    public: bool = False


@dataclass(frozen=True, slots=True)
class RegisterSpec:
    """A Register (3), Extended (4) or Demand (5) register: value type, scaler and unit."""

    class_id: int
    obis: str
    name: str
    source: str
    type: DataType
    scaler: int
    unit: Unit
    kinds: frozenset[MeterKind] = ALL_KINDS


# -- identification and configuration (class 1), Gurux's India.txt ---------------------------

DATA_OBJECTS: tuple[DataSpec, ...] = (
    DataSpec("0.0.42.0.0.255", "COSEM logical device name", "logical_device_name", DataType.OCTET_STRING,
             public=True),
    DataSpec("0.0.96.1.0.255", "Meter serial number", "serial", DataType.OCTET_STRING, public=True),
    DataSpec("0.0.96.1.1.255", "Manufacturer name", "manufacturer", DataType.OCTET_STRING, public=True),
    DataSpec("0.0.96.1.2.255", "Device ID", "device_id", DataType.OCTET_STRING),
    DataSpec("0.0.96.1.4.255", "Year of manufacture", "year_of_manufacture", DataType.LONG_UNSIGNED),
    DataSpec("1.0.0.2.0.255", "Firmware version for meter", "firmware_version", DataType.OCTET_STRING,
             public=True),
    DataSpec("0.0.94.91.9.255", "Meter type", "meter_type", DataType.UNSIGNED),
    DataSpec("0.0.94.91.11.255", "Meter category", "category", DataType.OCTET_STRING),
    DataSpec("0.0.94.91.12.255", "Current rating", "current_rating", DataType.OCTET_STRING),
    DataSpec("1.0.0.4.2.255", "Internal CT ratio", "ct_ratio", DataType.LONG_UNSIGNED, CT_PT),
    DataSpec("1.0.0.4.3.255", "Internal PT ratio", "pt_ratio", DataType.LONG_UNSIGNED, CT_PT),
    DataSpec("1.0.0.8.0.255", "Demand integration period", "demand_integration_period",
             DataType.LONG_UNSIGNED),
    DataSpec("1.0.0.8.4.255", "Profile capture period", "profile_capture_period", DataType.LONG_UNSIGNED),
    DataSpec("0.0.0.1.0.255", "Cumulative billing count", "billing_count", DataType.DOUBLE_LONG_UNSIGNED),
)

# Meter type codes of 0.0.94.91.9.255. The public sources give the object but not its code list;
# these follow the common head-end reading (0 = 3P-3W HT, 1 = 3P-4W, 2 = 1P-2W): UNCONFIRMED.
METER_TYPE_CODE = {MeterKind.CT_PT: 0, MeterKind.THREE_PHASE: 1, MeterKind.SINGLE_PHASE: 2}
METER_CATEGORY = {MeterKind.SINGLE_PHASE: "C1", MeterKind.THREE_PHASE: "C1", MeterKind.CT_PT: "C3"}
CURRENT_RATING = {MeterKind.SINGLE_PHASE: "5-30A", MeterKind.THREE_PHASE: "10-60A", MeterKind.CT_PT: "-/5A"}

_V, _A, _W, _VA, _VAR = Unit.VOLT, Unit.AMPERE, Unit.WATT, Unit.VOLT_AMPERE, Unit.VAR
_WH, _VAH, _VARH = Unit.WATT_HOUR, Unit.VOLT_AMPERE_HOUR, Unit.VAR_HOUR
_U16, _U32, _I16, _I32 = (DataType.LONG_UNSIGNED, DataType.DOUBLE_LONG_UNSIGNED, DataType.LONG,
                          DataType.DOUBLE_LONG)

# -- instantaneous quantities (class 3), Gurux's India.txt -----------------------------------------

INSTANT_REGISTERS: tuple[RegisterSpec, ...] = (
    RegisterSpec(3, "1.0.31.7.0.255", "Current L1", "current_l1", _U32, -3, _A, POLYPHASE),
    RegisterSpec(3, "1.0.51.7.0.255", "Current L2", "current_l2", _U32, -3, _A, POLYPHASE),
    RegisterSpec(3, "1.0.71.7.0.255", "Current L3", "current_l3", _U32, -3, _A, POLYPHASE),
    RegisterSpec(3, "1.0.32.7.0.255", "Voltage L1", "voltage_l1", _U16, -2, _V, THREE_PHASE),
    RegisterSpec(3, "1.0.52.7.0.255", "Voltage L2", "voltage_l2", _U16, -2, _V, THREE_PHASE),
    RegisterSpec(3, "1.0.72.7.0.255", "Voltage L3", "voltage_l3", _U16, -2, _V, THREE_PHASE),
    # CT/PT meters report primary values: 11 kV / sqrt(3) = 6351 V does not fit a long-unsigned at
    # scaler -2, so they use double-long-unsigned.
    RegisterSpec(3, "1.0.32.7.0.255", "Voltage L1", "voltage_l1", _U32, -2, _V, CT_PT),
    RegisterSpec(3, "1.0.52.7.0.255", "Voltage L2", "voltage_l2", _U32, -2, _V, CT_PT),
    RegisterSpec(3, "1.0.72.7.0.255", "Voltage L3", "voltage_l3", _U32, -2, _V, CT_PT),
    RegisterSpec(3, "1.0.33.7.0.255", "Power factor L1", "pf_l1", _I16, -3, Unit.COUNT, POLYPHASE),
    RegisterSpec(3, "1.0.53.7.0.255", "Power factor L2", "pf_l2", _I16, -3, Unit.COUNT, POLYPHASE),
    RegisterSpec(3, "1.0.73.7.0.255", "Power factor L3", "pf_l3", _I16, -3, Unit.COUNT, POLYPHASE),
    RegisterSpec(3, "1.0.11.7.0.255", "Phase current", "current_l1", _U32, -3, _A, SINGLE),
    RegisterSpec(3, "1.0.12.7.0.255", "Voltage", "voltage_l1", _U16, -2, _V, SINGLE),
    RegisterSpec(3, "1.0.91.7.0.255", "Neutral current", "current_neutral", _U32, -3, _A, SINGLE),
    RegisterSpec(3, "1.0.13.7.0.255", "Signed power factor", "pf_total", _I16, -3, Unit.COUNT),
    RegisterSpec(3, "1.0.14.7.0.255", "Frequency", "frequency", _U16, -2, Unit.HERTZ),
    RegisterSpec(3, "1.0.1.7.0.255", "Signed active power", "active_power", _I32, 0, _W),
    RegisterSpec(3, "1.0.3.7.0.255", "Signed reactive power", "reactive_power", _I32, 0, _VAR),
    RegisterSpec(3, "1.0.9.7.0.255", "Apparent power", "apparent_power", _U32, 0, _VA),
)

# -- cumulative energies (class 3), Gurux's India.txt ----------------------------------------------
# Whole-current meters count in Wh; CT/PT meters (tens of MWh a day) in kWh (scaler 3) so a
# double-long-unsigned lasts decades.


def _energy(obis: str, name: str, source: str, unit: Unit) -> tuple[RegisterSpec, RegisterSpec]:
    return (
        RegisterSpec(3, obis, name, source, _U32, 0, unit, WHOLE_CURRENT),
        RegisterSpec(3, obis, name, source, _U32, 3, unit, CT_PT),
    )


ENERGY_REGISTERS: tuple[RegisterSpec, ...] = (
    *_energy("1.0.1.8.0.255", "Cumulative energy kWh import", "active_import", _WH),
    *_energy("1.0.2.8.0.255", "Cumulative energy kWh export", "active_export", _WH),
    *_energy("1.0.9.8.0.255", "Cumulative energy kVAh import", "apparent_import", _VAH),
    *_energy("1.0.10.8.0.255", "Cumulative energy kVAh export", "apparent_export", _VAH),
    *_energy("1.0.5.8.0.255", "Cumulative energy kvarh Q1 (lag, import)", "reactive_q1", _VARH),
    *_energy("1.0.6.8.0.255", "Cumulative energy kvarh Q2 (lead, export)", "reactive_q2", _VARH),
    *_energy("1.0.7.8.0.255", "Cumulative energy kvarh Q3 (lag, export)", "reactive_q3", _VARH),
    *_energy("1.0.8.8.0.255", "Cumulative energy kvarh Q4 (lead, import)", "reactive_q4", _VARH),
)

# Time-of-day registers: import per tariff zone 1-4 of the activity calendar (Gurux's India.txt: E = zone).
TOD_REGISTERS: tuple[RegisterSpec, ...] = tuple(
    spec
    for z in range(1, 5)
    for spec in (
        *_energy(f"1.0.1.8.{z}.255", f"Cumulative energy kWh import, TOD zone {z}", f"tod_active_{z}", _WH),
        *_energy(f"1.0.9.8.{z}.255", f"Cumulative energy kVAh import, TOD zone {z}", f"tod_apparent_{z}", _VAH),
    )
)

# Net active energy (import - export), signed.
NET_ENERGY_REGISTERS: tuple[RegisterSpec, ...] = (
    RegisterSpec(3, "1.0.16.8.0.255", "Cumulative net energy kWh", "net_active", _I32, 0, _WH, WHOLE_CURRENT),
    RegisterSpec(3, "1.0.16.8.0.255", "Cumulative net energy kWh", "net_active", _I32, 3, _WH, CT_PT),
)

# -- block (load survey) quantities, Gurux's India.txt: the last completed capture period ------------
# Block energies use the scaler of the cumulative registers, so a block is exactly the difference of
# two register readings and the blocks of a day add up to the day's register delta.


def _block(obis: str, name: str, source: str, unit: Unit, kinds=ALL_KINDS) -> tuple[RegisterSpec, ...]:
    out = []
    if kinds & WHOLE_CURRENT:
        out.append(RegisterSpec(3, obis, name, source, _U32, 0, unit, kinds & WHOLE_CURRENT))
    if kinds & CT_PT:
        out.append(RegisterSpec(3, obis, name, source, _U32, 3, unit, CT_PT))
    return tuple(out)


BLOCK_REGISTERS: tuple[RegisterSpec, ...] = (
    *_block("1.0.1.29.0.255", "Block energy kWh import", "block_active_import", _WH),
    *_block("1.0.2.29.0.255", "Block energy kWh export", "block_active_export", _WH),
    *_block("1.0.9.29.0.255", "Block energy kVAh import", "block_apparent_import", _VAH),
    *_block("1.0.10.29.0.255", "Block energy kVAh export", "block_apparent_export", _VAH),
    *_block("1.0.5.29.0.255", "Block energy kvarh Q1", "block_reactive_q1", _VARH, POLYPHASE),
    *_block("1.0.6.29.0.255", "Block energy kvarh Q2", "block_reactive_q2", _VARH, POLYPHASE),
    *_block("1.0.7.29.0.255", "Block energy kvarh Q3", "block_reactive_q3", _VARH, POLYPHASE),
    *_block("1.0.8.29.0.255", "Block energy kvarh Q4", "block_reactive_q4", _VARH, POLYPHASE),
    RegisterSpec(3, "1.0.16.29.0.255", "Block net energy kWh", "block_net_active", _I32, 0, _WH, THREE_PHASE),
    RegisterSpec(3, "1.0.16.29.0.255", "Block net energy kWh", "block_net_active", _I32, 3, _WH, CT_PT),
    RegisterSpec(3, "1.0.31.27.0.255", "Average current L1", "avg_current_l1", _U32, -3, _A, POLYPHASE),
    RegisterSpec(3, "1.0.51.27.0.255", "Average current L2", "avg_current_l2", _U32, -3, _A, POLYPHASE),
    RegisterSpec(3, "1.0.71.27.0.255", "Average current L3", "avg_current_l3", _U32, -3, _A, POLYPHASE),
    RegisterSpec(3, "1.0.32.27.0.255", "Average voltage L1", "avg_voltage_l1", _U16, -2, _V, THREE_PHASE),
    RegisterSpec(3, "1.0.52.27.0.255", "Average voltage L2", "avg_voltage_l2", _U16, -2, _V, THREE_PHASE),
    RegisterSpec(3, "1.0.72.27.0.255", "Average voltage L3", "avg_voltage_l3", _U16, -2, _V, THREE_PHASE),
    RegisterSpec(3, "1.0.32.27.0.255", "Average voltage L1", "avg_voltage_l1", _U32, -2, _V, CT_PT),
    RegisterSpec(3, "1.0.52.27.0.255", "Average voltage L2", "avg_voltage_l2", _U32, -2, _V, CT_PT),
    RegisterSpec(3, "1.0.72.27.0.255", "Average voltage L3", "avg_voltage_l3", _U32, -2, _V, CT_PT),
    RegisterSpec(3, "1.0.11.27.0.255", "Average current", "avg_current_l1", _U32, -3, _A, SINGLE),
    RegisterSpec(3, "1.0.12.27.0.255", "Average voltage", "avg_voltage_l1", _U16, -2, _V, SINGLE),
)

# -- counters and durations, Gurux's India.txt -------------------------------------------------------

COUNTER_OBJECTS: tuple[DataSpec, ...] = (
    DataSpec("0.0.96.7.0.255", "Number of power failures", "power_failure_count", DataType.DOUBLE_LONG_UNSIGNED),
    DataSpec("0.0.94.91.0.255", "Cumulative tamper count", "tamper_count", DataType.LONG_UNSIGNED),
    DataSpec("0.0.96.2.0.255", "Cumulative programming count", "programming_count", DataType.LONG_UNSIGNED),
    # S2 captures "billing date" in the instantaneous profile: the date-time of the last billing.
    DataSpec("0.0.0.1.2.255", "Billing date", "last_billing_time", DataType.OCTET_STRING),
    DataSpec("1.0.0.1.2.255", "Time stamp of the most recent billing", "last_billing_time", DataType.OCTET_STRING),
)

DURATION_REGISTERS: tuple[RegisterSpec, ...] = (
    RegisterSpec(3, "0.0.94.91.8.255", "Cumulative power-off duration", "power_off_minutes", _U32, 0,
                 Unit.MINUTE),
    RegisterSpec(3, "0.0.94.91.14.255", "Cumulative power-on duration", "power_on_minutes", _U32, 0,
                 Unit.MINUTE),
    RegisterSpec(3, "0.0.94.91.13.255", "Billing period power-on duration", "period_power_on_minutes", _U32, 0,
                 Unit.MINUTE),
    RegisterSpec(3, "1.0.13.0.0.255", "Average power factor for billing period", "period_average_pf", _U16, -3,
                 Unit.COUNT),
)

# -- demand (class 4 maximum demand with its time, class 5 current average) ------------------------

DEMAND_REGISTERS: tuple[RegisterSpec, ...] = (
    RegisterSpec(4, "1.0.1.6.0.255", "Maximum demand kW import", "md_active_import", _U32, 0, _W),
    RegisterSpec(4, "1.0.9.6.0.255", "Maximum demand kVA import", "md_apparent_import", _U32, 0, _VA),
    RegisterSpec(4, "1.0.2.6.0.255", "Maximum demand kW export", "md_active_export", _U32, 0, _W),
    RegisterSpec(4, "1.0.10.6.0.255", "Maximum demand kVA export", "md_apparent_export", _U32, 0, _VA),
    RegisterSpec(5, "1.0.1.4.0.255", "Active power import, current average demand", "demand_active_import",
                 _U32, 0, _W),
    RegisterSpec(5, "1.0.9.4.0.255", "Apparent power import, current average demand",
                 "demand_apparent_import", _U32, 0, _VA),
)

# -- communication and management objects ----------------------------------------------------------

CLOCK = "0.0.1.0.0.255"
CURRENT_ASSOCIATION = "0.0.40.0.0.255"
SAP_ASSIGNMENT = "0.0.41.0.0.255"
HDLC_SETUP = "0.0.22.0.0.255"
TCP_UDP_SETUP = "0.0.25.0.0.255"
IPV4_SETUP = "0.0.25.1.0.255"
MR_SECURITY_SETUP = "0.0.43.0.2.255"
US_SECURITY_SETUP = "0.0.43.0.3.255"
PUSH_SECURITY_SETUP = "0.0.43.0.4.255"
FW_SECURITY_SETUP = "0.0.43.0.5.255"
# Invocation counter of security setup e (class 1, double-long-unsigned): 0.0.43.1.e.255 (Gurux's India.txt).
INVOCATION_COUNTERS = ("0.0.43.1.3.255", "0.0.43.1.4.255", "0.0.43.1.5.255")
ESW = "0.0.94.91.18.255"
ESWF = "0.0.94.91.26.255"

# -- associations (Gurux's India.txt and a Wirepas DLMS NIC firmware for IS 15959 meters) --------------------

_PC_CONFORMANCE = (
    Conformance.GET | Conformance.BLOCK_TRANSFER_WITH_GET_OR_READ | Conformance.SELECTIVE_ACCESS
    | Conformance.MULTIPLE_REFERENCES
)
_MR_CONFORMANCE = (
    _PC_CONFORMANCE | Conformance.SET | Conformance.ACTION | Conformance.BLOCK_TRANSFER_WITH_SET_OR_WRITE
    | Conformance.BLOCK_TRANSFER_WITH_ACTION
)


@dataclass(frozen=True, slots=True)
class AssociationData:
    """An IS 15959 association: client SAP, its Association LN, mechanism and services."""

    client_sap: int
    obis: str
    name: str
    mechanism: AuthenticationMechanism
    conformance: Conformance
    security_setup: str | None


_US_CONFORMANCE = _MR_CONFORMANCE | Conformance.GENERAL_PROTECTION

# Clients 48, 64 and 80 authenticate with HLS: ``HIGH`` here stands for the fleet's HLS mechanism
# (FleetConfig.hls_mechanism: 2 as IS 15959 meters run it, or 5 = GMAC), and cipher with suite-0 keys
# of their own security setup; their security policy demands authenticated and encrypted requests.
ASSOCIATIONS: tuple[AssociationData, ...] = (
    AssociationData(16, "0.0.40.0.1.255", "Public client", AuthenticationMechanism.NONE, _PC_CONFORMANCE, None),
    AssociationData(32, "0.0.40.0.2.255", "Meter reader", AuthenticationMechanism.LOW, _MR_CONFORMANCE,
                    MR_SECURITY_SETUP),
    AssociationData(48, "0.0.40.0.3.255", "Utility settings", AuthenticationMechanism.HIGH, _US_CONFORMANCE,
                    US_SECURITY_SETUP),
    AssociationData(64, "0.0.40.0.4.255", "Push", AuthenticationMechanism.HIGH, _PC_CONFORMANCE
                    | Conformance.GENERAL_PROTECTION, PUSH_SECURITY_SETUP),
    AssociationData(80, "0.0.40.0.5.255", "Firmware upgrade", AuthenticationMechanism.HIGH, _US_CONFORMANCE,
                    FW_SECURITY_SETUP),
)
SECURED_SAPS = frozenset({48, 64, 80})
CIPHERED_LN_CONTEXT = frozenset({ApplicationContextName.LOGICAL_NAME_WITH_CIPHERING})
# security_policy (Security setup v1, attribute 2): bit 2 authenticated requests, 3 encrypted requests,
# 5 authenticated responses, 6 encrypted responses.
POLICY_AUTH_ENC = 0b0110_1100

PLAIN_LN_CONTEXT = frozenset({ApplicationContextName.LOGICAL_NAME})

# What the utility-settings association (client 48, HLS, ciphered) may change or invoke, beyond reading
# everything: IS 15959 meters keep programming there and leave the meter reader (client 32, LLS) read
# only. The standard's per-association access tables are not public (UNCONFIRMED);
# these are the writes and methods head-ends' settings jobs use.
US_WRITABLE: dict[str, frozenset[int]] = {
    "0.0.40.0.2.255": frozenset({7}),  # the meter reader's LLS password (event 161)
    CLOCK: frozenset({2}),
    "1.0.99.1.0.255": frozenset({4}),  # block load capture period (15 or 30 min)
    "1.0.0.8.0.255": frozenset({2}),  # demand integration period
    "1.0.0.8.4.255": frozenset({2}),  # profile capture period
    "0.0.15.0.0.255": frozenset({4}),  # billing date
    "0.0.13.0.0.255": frozenset({6, 7, 8, 9, 10}),  # passive TOD calendar and its activation time
    "0.0.17.0.0.255": frozenset({4}),  # load limit (threshold_normal)
    "0.0.94.91.26.255": frozenset({2}),  # ESW filter
    # push setups: destination, number of retries, repetition delay (a head-end points the pushes at itself)
    **{f"0.{a}.25.9.0.255": frozenset({3, 6, 7}) for a in (0, 4, 5, 6, 103, *range(120, 127))},
}
US_METHODS: dict[str, frozenset[int]] = {
    "0.0.25.9.0.255": frozenset({1}),  # push() of the instant, alert, block and daily load push setups
    "0.4.25.9.0.255": frozenset({1}),
    "0.5.25.9.0.255": frozenset({1}),
    "0.6.25.9.0.255": frozenset({1}),
    "0.103.25.9.0.255": frozenset({1}),  # billing push
    **{f"0.{120 + c}.25.9.0.255": frozenset({1}) for c in range(7)},  # event-log pushes
    "0.0.10.0.108.255": frozenset({1}),  # execute() of the push script table
    CLOCK: frozenset({1, 2, 3, 6}),
    "0.0.10.0.1.255": frozenset({1}),  # MD reset
    "0.0.13.0.0.255": frozenset({1}),  # activate passive calendar
    "0.0.96.3.10.255": frozenset({1, 2}),  # remote disconnect / reconnect
    "1.0.99.1.0.255": frozenset({1, 2}),  # block load reset() and capture()
    "1.0.99.2.0.255": frozenset({1, 2}),  # daily load reset() and capture()
    "1.0.94.91.0.255": frozenset({2}),  # instantaneous profile capture()
}

# -- profiles (class 7), Gurux's India.txt and the Gurux India model -----------------------------------------
# Capture objects follow the one published IS 15959 meter model (the Gurux India model, GuruxDLMS.c data
# collector objects.c) for
# polyphase meters and the single-phase field lists of a public HES client's decoder; the normative tables are
# not public
# (UNCONFIRMED). Depths are the same model's (2208 half-hour blocks = 46 days, 46 days,
# 7 billing periods), also UNCONFIRMED as normative minima.

CLOCK_COLUMN = (8, CLOCK, 2)


def _reg(*obis: str) -> tuple[tuple[int, str, int], ...]:
    return tuple((3, o, 2) for o in obis)


def _data(*obis: str) -> tuple[tuple[int, str, int], ...]:
    return tuple((1, o, 2) for o in obis)


@dataclass(frozen=True, slots=True)
class ProfileSpec:
    """A profile generic object: what it captures, per meter kind, and how deep its buffer is.

    ``rows`` names the row source (see `meter_core.device.profiles`): ``live`` (one entry, captured when
    read), ``block``, ``daily``, ``billing``, ``scaler`` (attribute 3 of the columns' registers).
    """

    obis: str
    name: str
    rows: str
    columns: dict[MeterKind, tuple[tuple[int, str, int], ...]]
    depth: int = 1


_INSTANT_POLY = (
    CLOCK_COLUMN,
    *_reg("1.0.31.7.0.255", "1.0.51.7.0.255", "1.0.71.7.0.255", "1.0.32.7.0.255", "1.0.52.7.0.255",
          "1.0.72.7.0.255", "1.0.33.7.0.255", "1.0.53.7.0.255", "1.0.73.7.0.255", "1.0.13.7.0.255",
          "1.0.14.7.0.255", "1.0.9.7.0.255", "1.0.1.7.0.255", "1.0.3.7.0.255", "1.0.1.8.0.255",
          "1.0.2.8.0.255", "1.0.9.8.0.255", "1.0.10.8.0.255"),
    *_data("0.0.96.7.0.255"),
    *_reg("0.0.94.91.8.255"),
    *_data("0.0.94.91.0.255", "0.0.0.1.0.255", "0.0.96.2.0.255", "0.0.0.1.2.255"),
    *_reg("1.0.16.8.0.255"),
)
_INSTANT_SINGLE = (
    CLOCK_COLUMN,
    *_reg("1.0.12.7.0.255", "1.0.11.7.0.255", "1.0.91.7.0.255", "1.0.13.7.0.255", "1.0.14.7.0.255",
          "1.0.9.7.0.255", "1.0.1.7.0.255", "1.0.1.8.0.255", "1.0.9.8.0.255"),
    (4, "1.0.1.6.0.255", 2), (4, "1.0.1.6.0.255", 5), (4, "1.0.9.6.0.255", 2), (4, "1.0.9.6.0.255", 5),
    *_reg("0.0.94.91.14.255"),
    *_data("0.0.94.91.0.255", "0.0.0.1.0.255", "0.0.96.2.0.255"),
    *_reg("1.0.2.8.0.255", "1.0.10.8.0.255"),
)
_BLOCK_POLY = (
    CLOCK_COLUMN,
    *_reg("1.0.31.27.0.255", "1.0.51.27.0.255", "1.0.71.27.0.255", "1.0.32.27.0.255", "1.0.52.27.0.255",
          "1.0.72.27.0.255", "1.0.1.29.0.255", "1.0.2.29.0.255", "1.0.16.29.0.255", "1.0.9.29.0.255",
          "1.0.10.29.0.255", "1.0.5.29.0.255", "1.0.6.29.0.255", "1.0.7.29.0.255", "1.0.8.29.0.255"),
)
_BLOCK_SINGLE = (
    CLOCK_COLUMN,
    *_reg("1.0.12.27.0.255", "1.0.1.29.0.255", "1.0.9.29.0.255", "1.0.2.29.0.255", "1.0.10.29.0.255",
          "1.0.11.27.0.255"),
)
_DAILY_POLY = (
    CLOCK_COLUMN,
    *_reg("1.0.1.8.0.255", "1.0.2.8.0.255", "1.0.9.8.0.255", "1.0.10.8.0.255", "1.0.5.8.0.255", "1.0.6.8.0.255",
          "1.0.7.8.0.255", "1.0.8.8.0.255", "1.0.16.8.0.255"),
)
_DAILY_SINGLE = (CLOCK_COLUMN, *_reg("1.0.2.8.0.255", "1.0.10.8.0.255", "1.0.1.8.0.255", "1.0.9.8.0.255"))


def _md(obis: str) -> tuple[tuple[int, str, int], ...]:
    return (4, obis, 2), (4, obis, 5)


_BILLING_POLY = (
    *_data("1.0.0.1.2.255"),
    *_reg("1.0.13.0.0.255", "1.0.1.8.0.255", "1.0.2.8.0.255", "1.0.9.8.0.255", "1.0.10.8.0.255", "1.0.5.8.0.255",
          "1.0.6.8.0.255", "1.0.7.8.0.255", "1.0.8.8.0.255"),
    *_md("1.0.1.6.0.255"), *_md("1.0.2.6.0.255"), *_md("1.0.9.6.0.255"), *_md("1.0.10.6.0.255"),
    *_reg("1.0.16.8.0.255", "0.0.94.91.13.255"),
)
_BILLING_SINGLE = (
    *_data("1.0.0.1.2.255"),
    *_reg("1.0.13.0.0.255", "1.0.1.8.0.255", "1.0.1.8.1.255", "1.0.1.8.2.255", "1.0.1.8.3.255", "1.0.1.8.4.255",
          "1.0.9.8.0.255", "1.0.9.8.1.255", "1.0.9.8.2.255", "1.0.9.8.3.255", "1.0.9.8.4.255"),
    *_md("1.0.1.6.0.255"), *_md("1.0.9.6.0.255"),
    *_reg("0.0.94.91.13.255", "1.0.2.8.0.255", "1.0.10.8.0.255"),
)
_NAMEPLATE = _data("0.0.96.1.0.255", "0.0.96.1.2.255", "0.0.96.1.1.255", "1.0.0.2.0.255", "0.0.94.91.9.255",
                   "0.0.94.91.11.255", "0.0.94.91.12.255", "0.0.96.1.4.255")
_NAMEPLATE_CTPT = (*_NAMEPLATE, *_data("1.0.0.4.2.255", "1.0.0.4.3.255"))


def _per_kind(single, poly) -> dict[MeterKind, tuple[tuple[int, str, int], ...]]:
    return {MeterKind.SINGLE_PHASE: single, MeterKind.THREE_PHASE: poly, MeterKind.CT_PT: poly}


def _scaler_columns(columns):
    """Columns of a scaler profile: attribute 3 of the registers (the Gurux India model), no clock."""
    out = {}
    for kind, cols in columns.items():
        out[kind] = tuple((c, o, 3) for c, o, a in cols if c in (3, 4) and a == 2)
    return out


INSTANT_PROFILE = ProfileSpec("1.0.94.91.0.255", "Instantaneous profile", "live",
                              _per_kind(_INSTANT_SINGLE, _INSTANT_POLY))
BLOCK_LOAD_PROFILE = ProfileSpec("1.0.99.1.0.255", "Block load profile", "block",
                                 _per_kind(_BLOCK_SINGLE, _BLOCK_POLY), depth=BLOCK_PROFILE_DAYS)  # depth in days
DAILY_LOAD_PROFILE = ProfileSpec("1.0.99.2.0.255", "Daily load profile", "daily",
                                 _per_kind(_DAILY_SINGLE, _DAILY_POLY), depth=DAILY_PROFILE_DEPTH)
BILLING_PROFILE = ProfileSpec("1.0.98.1.0.255", "Billing profile", "billing",
                              _per_kind(_BILLING_SINGLE, _BILLING_POLY), depth=BILLING_PROFILE_DEPTH)
NAMEPLATE_PROFILE = ProfileSpec("0.0.94.91.10.255", "Name plate profile", "live",
                                {MeterKind.SINGLE_PHASE: _NAMEPLATE, MeterKind.THREE_PHASE: _NAMEPLATE,
                                 MeterKind.CT_PT: _NAMEPLATE_CTPT})
SCALER_PROFILES = (
    ProfileSpec("1.0.94.91.3.255", "Scaler profile - instantaneous", "scaler", _scaler_columns(INSTANT_PROFILE.columns)),
    ProfileSpec("1.0.94.91.4.255", "Scaler profile - block load", "scaler", _scaler_columns(BLOCK_LOAD_PROFILE.columns)),
    ProfileSpec("1.0.94.91.5.255", "Scaler profile - daily load", "scaler", _scaler_columns(DAILY_LOAD_PROFILE.columns)),
    ProfileSpec("1.0.94.91.6.255", "Scaler profile - billing", "scaler", _scaler_columns(BILLING_PROFILE.columns)),
)
PROFILES = (INSTANT_PROFILE, BLOCK_LOAD_PROFILE, DAILY_LOAD_PROFILE, BILLING_PROFILE, NAMEPLATE_PROFILE,
            *SCALER_PROFILES)
