"""Profile generic (class 7): block load, daily load, billing, instantaneous, name plate and scaler profiles,
the seven event logs, and the registers fed by the same rows. Rows come from `meter_core.device.profiles`
and `meter_core.device.eventprofiles`; buffers stream through `meter_core.cosem.buffer`.
"""

from __future__ import annotations

from meter_core.codec.apdu.codes import ActionResult, DataAccessResult
from meter_core.codec.axdr import Data, DataType, int_encoder
from meter_core.codec.obis import ln
from meter_core.cosem import is15959 as cat
from meter_core.cosem.buffer import (
    SELECTORS,
    SORT_FIFO,
    Column,
    Selection,
    Stream,
    buffer_stream,
    capture_objects_value,
    encode_u32,
    select,
)
from meter_core.cosem.model import (
    NOT_SPECIFIED_DATETIME,
    Attribute,
    CosemObject,
    InterfaceClass,
    ln_attribute,
    static,
)
from meter_core.device import tod
from meter_core.device.clock import DAY
from meter_core.device.eventprofiles import log_columns, snapshot_columns
from meter_core.device.identity import MeterKind
from meter_core.device.logbook import CATEGORY_NAMES, DEPTH, LOG_OBIS
from meter_core.device.meter import Meter
from meter_core.device.profiles import (
    ENERGY_INDEX,
    PENDING_STEP,
    SOURCES,
    BlockLoad,
    clock_stamp,
    set_block_period,
)
from meter_core.events import WorkNeeded

PROFILE_GENERIC = InterfaceClass(
    7, 1, "Profile generic",
    ("logical_name", "buffer", "capture_objects", "capture_period", "sort_method", "sort_object",
     "entries_in_use", "profile_entries"),
    ("reset", "capture"),
)


_PHASE = {"l1": 0, "l2": 1, "l3": 2}


def _register_spec(kind: MeterKind, class_id: int, obis: str) -> cat.RegisterSpec | None:
    for spec in (*cat.INSTANT_REGISTERS, *cat.ENERGY_REGISTERS, *cat.TOD_REGISTERS, *cat.NET_ENERGY_REGISTERS,
                 *cat.BLOCK_REGISTERS, *cat.DURATION_REGISTERS, *cat.DEMAND_REGISTERS):
        if spec.obis == obis and spec.class_id == class_id and kind in spec.kinds:
            return spec
    return None


def _block_value(spec: cat.RegisterSpec):
    encode = int_encoder(spec.type)
    source = spec.source
    if source == "block_net_active":
        return lambda m, row: encode((row.r1[0] - row.r0[0]) - (row.r1[1] - row.r0[1]))
    if source.startswith("block_"):
        i = ENERGY_INDEX[source[len("block_"):]]
        return lambda m, row: encode(row.r1[i] - row.r0[i])
    factor = 10.0 ** -spec.scaler
    what, _, phase = source.rpartition("_")
    i = _PHASE[phase]
    if what == "avg_voltage":
        return lambda m, row: encode(round(row.volts[i] * factor))
    return lambda m, row: encode(round(row.currents[i] * factor))


def _cumulative_value(spec: cat.RegisterSpec, readings_of):
    encode = int_encoder(spec.type)
    if spec.source == "net_active":
        return lambda m, row: encode(readings_of(row)[0] - readings_of(row)[1])
    i = ENERGY_INDEX[spec.source]
    return lambda m, row: encode(readings_of(row)[i])


def _billing_value(kind: MeterKind, class_id: int, obis: str, attribute: int):
    if obis == "1.0.0.1.2.255":
        return lambda m, row: clock_stamp(row.clock)
    spec = _register_spec(kind, class_id, obis)
    if spec is None:
        raise ValueError(f"billing column {obis} has no register for {kind}")
    encode = int_encoder(spec.type)
    if spec.class_id == 4:
        active = spec.source == "md_active_import"
        apparent = spec.source == "md_apparent_import"
        if attribute == 5:
            if not (active or apparent):
                return lambda m, row: NOT_SPECIFIED_DATETIME
            return lambda m, row: clock_stamp(
                row.demand.max_active_stamp if active else row.demand.max_apparent_stamp)
        if not (active or apparent):
            return lambda m, row: encode(0)  # the load model exports nothing
        return lambda m, row: encode(round(row.demand.max_active if active else row.demand.max_apparent))
    if spec.source == "period_average_pf":
        return lambda m, row: encode(round(row.pf * 1000))
    if spec.source.startswith("tod_"):
        _, quantity, zone = spec.source.split("_")
        index = (int(zone) - 1) + (tod.ZONES if quantity == "apparent" else 0)
        divisor = 10.0 ** spec.scaler
        return lambda m, row: encode(int(tod.totals_at(m, row.end)[index] // divisor))
    if spec.source == "period_power_on_minutes":
        return lambda m, row: encode(row.power_on_minutes)
    return _cumulative_value(spec, lambda row: row.readings)


def _columns(kind: MeterKind, spec: cat.ProfileSpec, objects: dict[tuple[int, bytes], CosemObject]) -> tuple[Column, ...]:
    out = []
    for class_id, obis, attribute in spec.columns[kind]:
        raw = ln(obis)
        if spec.rows in ("live", "scaler"):
            obj = objects[(class_id, raw)]
            attr = obj.attributes[attribute - 1]
            get = attr.get
            if type(get) is bytes:
                value = (lambda b: lambda m, row: b)(get)
            else:
                value = (lambda g: lambda m, row: g(m, row[0], row[1]))(get)
        elif spec.rows.startswith("event"):
            value = _event_value(kind, class_id, obis)
        elif class_id == 8:
            value = (lambda m, row: clock_stamp(row.clock)) if spec.rows == "block" else (
                lambda m, row: clock_stamp(row[0]))
        elif spec.rows == "block":
            value = _block_value(_register_spec(kind, class_id, obis))
        elif spec.rows == "daily":
            value = _cumulative_value(_register_spec(kind, class_id, obis), lambda row: row[1])
        else:
            value = _billing_value(kind, class_id, obis, attribute)
        out.append(Column(class_id, raw, attribute, value))
    return tuple(out)


def _event_value(kind: MeterKind, class_id: int, obis: str):
    """Columns of an event log: clock, event code, and the snapshot at the event (as served live)."""
    if class_id == 8:
        return lambda m, row: clock_stamp(row.clock)
    if class_id == 1:
        enc = int_encoder(DataType.LONG_UNSIGNED)
        return lambda m, row: enc(row.code)
    spec = _register_spec(kind, class_id, obis)
    encode = int_encoder(spec.type)
    if spec.source in ENERGY_INDEX:
        i = ENERGY_INDEX[spec.source]
        return lambda m, row: encode(m.readings(row.t)[i])
    factor = 10.0 ** -spec.scaler
    name, _, phase = spec.source.rpartition("_")
    if phase in _PHASE:
        field, i = {"current": "current", "voltage": "voltage", "pf": "pf"}[name], _PHASE[phase]
        return lambda m, row: encode(round(getattr(m.instant_at(row.t), field)[i] * factor))
    return lambda m, row: encode(round(getattr(m.instant_at(row.t), spec.source) * factor))


def event_log_object(kind: MeterKind, category: int, objects) -> CosemObject:
    """The event log 0.0.99.98.<category>.255 of meters of ``kind``."""
    spec = cat.ProfileSpec(LOG_OBIS[category], f"Event log, {CATEGORY_NAMES[category]} events", f"event{category}",
                           {kind: log_columns(category, kind)}, depth=DEPTH[category])
    return profile_object(kind, spec, objects)


def event_scaler_profile(kind: MeterKind, objects) -> CosemObject:
    spec = cat.ProfileSpec("1.0.94.91.7.255", "Scaler profile - events", "scaler",
                           {kind: tuple((c, o, 3) for c, o, _a in snapshot_columns(kind))})
    return profile_object(kind, spec, objects)


def profile_object(kind: MeterKind, spec: cat.ProfileSpec, objects: dict[tuple[int, bytes], CosemObject]) -> CosemObject:
    """The class 7 object of ``spec`` for meters of ``kind``."""
    source = SOURCES[spec.rows]
    columns = _columns(kind, spec, objects)
    raw_ln = ln(spec.obis)
    clock_def = (8, ln(cat.CLOCK), 2, 0)
    time_columns = frozenset({clock_def, columns[0].key}) if spec.rows != "scaler" else frozenset()

    # what takes long to compute the first time, handed over before the rows' stream starts (from inside it,
    # the GET would be counted already, and a later block could not be served again): the source's rows
    # (billing), or the maximum demands a one-entry profile captures
    waits = _DemandScan if spec.rows == "live" and any(c.class_id == 4 for c in columns) else source
    deferrable = hasattr(waits, "pending")

    def buffer(m: Meter, assoc, now: float):
        keys = source.keys(m, now)
        if deferrable and assoc is not None and assoc.defer_work:
            _defer(waits.pending(m, keys, now))
        return Stream(buffer_stream(m, source, keys, columns, now, assoc))

    def buffer_selected(m: Meter, assoc, now: float, selector: int, params):
        chosen = select(m, source, columns, time_columns, now, selector, params)
        if isinstance(chosen, DataAccessResult):
            return chosen
        assert isinstance(chosen, Selection)
        if deferrable and assoc is not None and assoc.defer_work:
            _defer(waits.pending(m, chosen.keys, now))
        return Stream(buffer_stream(m, source, chosen.keys, chosen.columns, now, assoc))

    if spec.rows == "block":
        capture_period = Attribute(lambda m, a, now: encode_u32(m.state.profile_capture_period),
                                   _set_capture_period)
        entries = Attribute(lambda m, a, now: encode_u32(source.depth(m)))
    else:
        period = {"daily": DAY}.get(spec.rows, 0)
        capture_period = Attribute(encode_u32(period))
        entries = Attribute(encode_u32(spec.depth if spec.rows.startswith(("daily", "billing", "event")) else 1))
    timed = spec.rows in ("block", "daily") or spec.rows.startswith("event")
    sort_object = static(_definition(clock_def if timed else (0, bytes(6), 0, 0)))
    return CosemObject(
        PROFILE_GENERIC, raw_ln, spec.name,
        (
            ln_attribute(raw_ln),
            Attribute(buffer, select=buffer_selected, selectors=SELECTORS, streamed=True),
            Attribute(capture_objects_value(columns)),
            capture_period,
            static(SORT_FIFO, DataType.ENUM),
            sort_object,
            Attribute(lambda m, a, now: encode_u32(len(source.keys(m, now)))),
            entries,
        ),
        (_reset_method(spec.rows), _capture_method(spec.rows)),
    )


class _DemandScan:
    """The pending work of a one-entry profile that captures maximum-demand registers: their scan."""

    @staticmethod
    def pending(m: Meter, keys, now: float):
        return m.max_demand_pending(now, PENDING_STEP)


def _defer(work) -> None:
    """Hand long work to the association's owner before the rows are served (`WorkNeeded`)."""
    if work is not None:
        raise WorkNeeded(work)


def _reset_method(rows: str):
    """reset(): empty the buffer (block and daily load; the others have nothing kept to clear)."""
    if rows not in ("block", "daily"):
        return None
    field = "block_profile_start" if rows == "block" else "daily_profile_start"

    def reset(m: Meter, assoc, params, now: float):
        if params is not None and params.tag is not DataType.INTEGER:
            return ActionResult.TYPE_UNMATCHED, None
        setattr(m.state, field, m.sim(now))
        return ActionResult.SUCCESS, None

    return reset


def _capture_method(rows: str):
    """capture(): the one-entry profiles capture on every read, so capture() succeeds and changes
    nothing. Block and daily entries are computed on their period's boundaries, so an off-period
    capture can't be kept: refused with other-reason."""

    def capture(m: Meter, assoc, params, now: float):
        if params is not None and params.tag is not DataType.INTEGER:
            return ActionResult.TYPE_UNMATCHED, None
        if rows in ("live", "scaler"):
            return ActionResult.SUCCESS, None
        return ActionResult.OTHER_REASON, None

    return capture


def _definition(key):
    class_id, raw, attr, index = key
    return Data(DataType.STRUCTURE, (
        Data(DataType.LONG_UNSIGNED, class_id), Data(DataType.OCTET_STRING, raw),
        Data(DataType.INTEGER, attr), Data(DataType.LONG_UNSIGNED, index),
    ))


def _set_capture_period(m: Meter, assoc, value, now: float) -> DataAccessResult:
    """capture_period of the block load profile: 15 or 30 minutes; a change restarts the buffer."""
    if value.tag is not DataType.DOUBLE_LONG_UNSIGNED:
        return DataAccessResult.TYPE_UNMATCHED
    return set_block_period(m, value.value, now)


def block_register_getter(spec: cat.RegisterSpec):
    """Value of a block register (1.0.x.29.0.255, 1.0.x.27.0.255): the last completed block."""
    value = _block_value(spec)
    encode = int_encoder(spec.type)
    source: BlockLoad = SOURCES["block"]  # type: ignore[assignment]

    def get(m: Meter, assoc, now: float) -> bytes:
        row = source.last_row(m, now)
        return encode(0) if row is None else value(m, row)

    return get
