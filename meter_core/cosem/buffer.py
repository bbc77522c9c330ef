"""Profile generic (class 7): capture objects, a buffer produced row by row, and selective access.

IEC 62056-6-2 clause 4.3.6. A profile's buffer is never materialised: a `RowSource` says which
entries the buffer holds (a contiguous range of integer keys, oldest first) and computes the rows
of a range of keys one after the other; `buffer_stream` turns that into the encoded ``array`` of
``structure`` rows as an iterator of byte chunks, which the association sends in GET blocks as the
client asks for them. Memory for a 30-day block-load read is one block and one row, not the buffer.

Selective access (IEC 62056-6-2, profile generic attribute 2):

- selector 1, range_descriptor: structure { restricting_object (capture object definition),
  from_value, to_value, selected_values (array of capture object definitions, empty = all) }.
  Entries whose time is in [from, to] (both inclusive) are selected; an inverted range is empty.
- selector 2, entry_descriptor: structure { from_entry, to_entry (0 = last), from_selected_value,
  to_selected_value (0 = last) }, entries and columns numbered from 1, entry 1 the oldest.
"""

from __future__ import annotations

import bisect
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from meter_core.codec.apdu.codes import DataAccessResult
from meter_core.codec.axdr import (
    NOT_SPECIFIED,
    YEAR_NOT_SPECIFIED,
    CosemDateTime,
    Data,
    DataType,
    encode_length,
    encode_value,
)
from meter_core.codec.errors import DecodeError, LocalProtocolError
from meter_core.device.clock import local_to_utc
from meter_core.device.meter import Meter

RANGE_SELECTOR = 1
ENTRY_SELECTOR = 2
SELECTORS = (RANGE_SELECTOR, ENTRY_SELECTOR)

# sort_method (attribute 5): FIFO, sorted by capture order.
SORT_FIFO = 1


@dataclass(frozen=True, slots=True)
class Column:
    """One capture object: which attribute of which object, and how a row's value is encoded.

    ``value(meter, row)`` returns the encoded value of this column for a row produced by the
    profile's `RowSource`.
    """

    class_id: int
    ln: bytes
    attribute: int
    value: Callable[[Meter, Any], bytes]
    data_index: int = 0

    @property
    def definition(self) -> Data:
        """capture_object_definition ::= structure { class_id, logical_name, attribute_index, data_index }."""
        return Data(DataType.STRUCTURE, (
            Data(DataType.LONG_UNSIGNED, self.class_id),
            Data(DataType.OCTET_STRING, self.ln),
            Data(DataType.INTEGER, self.attribute),
            Data(DataType.LONG_UNSIGNED, self.data_index),
        ))

    @property
    def key(self) -> tuple[int, bytes, int, int]:
        return self.class_id, self.ln, self.attribute, self.data_index


class RowSource(Protocol):
    """What a profile's buffer holds for one meter, computed on demand.

    Keys are integers; the buffer holds ``keys(meter, now)``, a contiguous range, oldest first.
    """

    def keys(self, meter: Meter, now: float) -> range: ...

    def time_of(self, meter: Meter, key: int, now: float) -> float:
        """Capture time of entry ``key`` (UTC seconds of the meter's clock), non-decreasing in key."""
        ...

    def rows(self, meter: Meter, keys: range, now: float, assoc: Any) -> Iterator[Any]:
        """The rows of ``keys``, in order (a row is whatever the columns' ``value`` functions take)."""
        ...


def capture_objects_value(columns: tuple[Column, ...]) -> bytes:
    """Encoded capture_objects attribute: array of capture object definitions."""
    return encode_value(Data(DataType.ARRAY, tuple(c.definition for c in columns)))


def buffer_stream(meter: Meter, source: RowSource, keys: range, columns: tuple[Column, ...],
                  now: float, assoc: Any) -> Iterator[bytes]:
    """The encoded buffer (array of structures) of ``keys`` with ``columns``, one row per chunk."""
    yield bytes((DataType.ARRAY,)) + encode_length(len(keys))
    if not keys:
        return
    head = bytes((DataType.STRUCTURE,)) + encode_length(len(columns))
    values = tuple(c.value for c in columns)
    join = b"".join
    for row in source.rows(meter, keys, now, assoc):
        yield head + join([v(meter, row) for v in values])


class Selection:
    """A parsed selective access: the entry keys and the columns to send."""

    __slots__ = ("keys", "columns")

    def __init__(self, keys: range, columns: tuple[Column, ...]) -> None:
        self.keys = keys
        self.columns = columns


def select(meter: Meter, source: RowSource, columns: tuple[Column, ...], time_columns: frozenset,
           now: float, selector: int, params: Data) -> Selection | DataAccessResult:
    """Apply a range or entry descriptor to a profile; a DataAccessResult when the request is wrong.

    ``time_columns`` are the capture-object keys a range may restrict on (the clock, or the time
    stamp column of a profile that has no clock column).
    """
    if selector == RANGE_SELECTOR:
        return _select_range(meter, source, columns, time_columns, now, params)
    if selector == ENTRY_SELECTOR:
        return _select_entries(meter, source, columns, now, params)
    return DataAccessResult.SCOPE_OF_ACCESS_VIOLATED


def _fields(params: Data, count: int) -> tuple[Data, ...] | None:
    if params.tag is not DataType.STRUCTURE or len(params.value) != count:
        return None
    return params.value


def _column_key(d: Data) -> tuple[int, bytes, int, int] | None:
    f = _fields(d, 4)
    if f is None:
        return None
    class_id, ln, attr, index = f
    if (class_id.tag is not DataType.LONG_UNSIGNED or ln.tag is not DataType.OCTET_STRING or len(ln.value) != 6
            or attr.tag is not DataType.INTEGER or index.tag is not DataType.LONG_UNSIGNED):
        return None
    return class_id.value, bytes(ln.value), attr.value, index.value


_UNBOUNDED = object()


def _time_value(d: Data, local_to_utc: Callable[[CosemDateTime], float]):
    """UTC seconds of a from/to value; `_UNBOUNDED` for a fully wildcarded date-time; None if invalid."""
    if d.tag is DataType.OCTET_STRING and len(d.value) == 12:
        raw = bytes(d.value)
    elif d.tag is DataType.DATE_TIME:
        raw = d.value.to_bytes()
    elif d.tag is DataType.DOUBLE_LONG_UNSIGNED:
        return float(d.value)  # Unix time, as some head-ends send for non-clock restricting objects
    else:
        return None
    try:
        dt = CosemDateTime.from_bytes(raw)
    except (DecodeError, LocalProtocolError):
        return None
    if dt.year == YEAR_NOT_SPECIFIED and dt.month == NOT_SPECIFIED and dt.day == NOT_SPECIFIED:
        return _UNBOUNDED
    try:
        return local_to_utc(dt)
    except (DecodeError, OverflowError, ValueError):
        return None


def _select_range(meter, source, columns, time_columns, now, params) -> Selection | DataAccessResult:
    f = _fields(params, 4)
    if f is None:
        return DataAccessResult.TYPE_UNMATCHED
    restricting = _column_key(f[0])
    if restricting is None:
        return DataAccessResult.TYPE_UNMATCHED
    if restricting not in time_columns:
        return DataAccessResult.OBJECT_UNAVAILABLE
    lo, hi = _time_value(f[1], local_to_utc), _time_value(f[2], local_to_utc)
    if lo is None or hi is None:
        return DataAccessResult.TYPE_UNMATCHED
    chosen = _columns_by_definition(columns, f[3])
    if isinstance(chosen, DataAccessResult):
        return chosen
    keys = source.keys(meter, now)
    if not keys:
        return Selection(keys, chosen)
    times = _KeyTimes(meter, source, keys, now)
    first = 0 if lo is _UNBOUNDED else bisect.bisect_left(times, lo)
    end = len(keys) if hi is _UNBOUNDED else bisect.bisect_right(times, hi)
    return Selection(keys[first:max(first, end)], chosen)


class _KeyTimes:
    """A lazy sequence of the entries' capture times, for bisect (O(log n) rows' times computed)."""

    __slots__ = ("meter", "source", "keys", "now")

    def __init__(self, meter, source, keys: range, now: float) -> None:
        self.meter, self.source, self.keys, self.now = meter, source, keys, now

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i: int) -> float:
        return self.source.time_of(self.meter, self.keys[i], self.now)


def _columns_by_definition(columns: tuple[Column, ...], selected: Data) -> tuple[Column, ...] | DataAccessResult:
    if selected.tag is DataType.NULL_DATA:
        return columns
    if selected.tag is not DataType.ARRAY:
        return DataAccessResult.TYPE_UNMATCHED
    if not selected.value:
        return columns
    by_key = {c.key: c for c in columns}
    chosen = []
    for d in selected.value:
        k = _column_key(d)
        if k is None:
            return DataAccessResult.TYPE_UNMATCHED
        c = by_key.get(k)
        if c is None:
            return DataAccessResult.OBJECT_UNAVAILABLE
        chosen.append(c)
    return tuple(chosen)


def _select_entries(meter, source, columns, now, params) -> Selection | DataAccessResult:
    f = _fields(params, 4)
    if f is None:
        return DataAccessResult.TYPE_UNMATCHED
    types = (DataType.DOUBLE_LONG_UNSIGNED, DataType.DOUBLE_LONG_UNSIGNED, DataType.LONG_UNSIGNED,
             DataType.LONG_UNSIGNED)
    if any(d.tag is not t for d, t in zip(f, types)):
        return DataAccessResult.TYPE_UNMATCHED
    from_entry, to_entry, from_col, to_col = (d.value for d in f)
    keys = source.keys(meter, now)
    n = len(keys)
    first = max(from_entry, 1) - 1
    last = n if to_entry == 0 else min(to_entry, n)
    ncol = len(columns)
    c0 = max(from_col, 1) - 1
    c1 = ncol if to_col == 0 else min(to_col, ncol)
    if c0 >= ncol or c1 <= c0:
        return DataAccessResult.OBJECT_UNAVAILABLE
    return Selection(keys[first:max(first, last)], columns[c0:c1])


# -- the attributes of a profile ------------------------------------------------------------------

_U32 = struct.Struct(">BI")


def encode_u32(v: int) -> bytes:
    return _U32.pack(DataType.DOUBLE_LONG_UNSIGNED, max(0, min(v, 0xFFFFFFFF)))


class Stream:
    """An encoded value produced in chunks (the association sends it in GET blocks)."""

    __slots__ = ("chunks",)

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = chunks

    def materialise(self) -> bytes:
        return b"".join(self.chunks)


__all__ = [
    "Column", "ENTRY_SELECTOR", "RANGE_SELECTOR", "RowSource", "SELECTORS", "SORT_FIFO", "Selection", "Stream",
    "buffer_stream", "capture_objects_value", "encode_u32", "select",
]
