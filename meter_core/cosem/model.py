"""COSEM objects bound to values, and what each association sees of them.

A `CosemObject` is shared by every meter of a kind: its attributes are either encoded bytes (the
same for all meters, encoded once) or a getter ``get(meter, assoc, now) -> bytes`` that encodes the
value of one meter at ``now``. An `AssociationView` is, per association, the object_list with its
access rights and the dispatch tables the server uses; it too is built once and shared, so an idle
meter costs nothing and a busy one only its own values.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Protocol

from meter_core.codec.apdu.codes import (
    ActionResult,
    ApplicationContextName,
    AuthenticationMechanism,
    Conformance,
    DataAccessResult,
)
from meter_core.codec.axdr import (
    DATETIME_NOT_SPECIFIED,
    Data,
    DataType,
    Writer,
    encode_data,
    encode_octets,
    encode_value,
)
from meter_core.device.identity import MeterKind
from meter_core.device.meter import Meter


class AccessMode(IntEnum):
    """Attribute access_mode in an object_list entry, Association LN v0-v2 (IEC 62056-6-2 4.4.3)."""

    NO_ACCESS = 0
    READ_ONLY = 1
    WRITE_ONLY = 2
    READ_AND_WRITE = 3
    AUTHENTICATED_READ_ONLY = 4
    AUTHENTICATED_WRITE_ONLY = 5
    AUTHENTICATED_READ_AND_WRITE = 6

    @property
    def readable(self) -> bool:
        return self in _READABLE

    @property
    def writable(self) -> bool:
        return self in _WRITABLE



_READABLE = frozenset(
    {AccessMode.READ_ONLY, AccessMode.READ_AND_WRITE, AccessMode.AUTHENTICATED_READ_ONLY,
     AccessMode.AUTHENTICATED_READ_AND_WRITE}
)

_WRITABLE = frozenset(
    {AccessMode.WRITE_ONLY, AccessMode.READ_AND_WRITE, AccessMode.AUTHENTICATED_WRITE_ONLY,
     AccessMode.AUTHENTICATED_READ_AND_WRITE}
)



class MethodAccessMode(IntEnum):
    """Method access_mode in an object_list entry, Association LN v1-v2 (IEC 62056-6-2 4.4.3)."""

    NO_ACCESS = 0
    ACCESS = 1
    AUTHENTICATED_ACCESS = 2


@dataclass(frozen=True, slots=True)
class InterfaceClass:
    """One COSEM interface class: its id, version and the names of its attributes and methods."""

    class_id: int
    version: int
    name: str
    attributes: tuple[str, ...]
    methods: tuple[str, ...] = ()

    @property
    def attribute_count(self) -> int:
        return len(self.attributes)

    @property
    def method_count(self) -> int:
        return len(self.methods)



class Unit(IntEnum):
    """Physical units of scaler_unit (IEC 62056-6-2 clause 4.3.2, Table 4), the ones a meter uses."""

    YEAR = 1
    MONTH = 2
    WEEK = 3
    DAY = 4
    HOUR = 5
    MINUTE = 6
    SECOND = 7
    PHASE_ANGLE_DEGREE = 8
    CELSIUS = 9
    CURRENCY = 10
    WATT = 27
    VOLT_AMPERE = 28
    VAR = 29
    WATT_HOUR = 30
    VOLT_AMPERE_HOUR = 31
    VAR_HOUR = 32
    AMPERE = 33
    VOLT = 35
    HERTZ = 44
    PERCENTAGE = 56
    OTHER = 254
    COUNT = 255


class Session(Protocol):
    """What the objects see of the association serving a request (the session floor's `Association`,
    or None outside one): its view of the model, what it negotiated, and the events it reports."""

    spec: AssociationSpec
    view: AssociationView
    context: int | None
    max_send_pdu_size: int
    events: list

    @property
    def status_code(self) -> int: ...

    @property
    def model(self) -> MeterModel: ...


Getter = Callable[[Meter, Session, float], bytes]
SelectiveGetter = Callable[[Meter, Session, float, int, Data], "bytes | DataAccessResult"]
Setter = Callable[[Meter, Session, Data, float], DataAccessResult]
Method = Callable[[Meter, Session, "Data | None", float], "tuple[ActionResult, bytes | None]"]


@dataclass(frozen=True, slots=True)
class Attribute:
    """How one attribute is read and written: static bytes or a getter; an optional setter."""

    get: bytes | Getter
    set: Setter | None = None
    # Getter used when the request carries selective access (selector, parameters).
    select: SelectiveGetter | None = None
    # Access selectors offered in the object_list (None = no selective access).
    selectors: tuple[int, ...] | None = None
    # The getter may return a `meter_core.cosem.buffer.Stream` (a buffer sent in chunks): such an
    # attribute stays off the GET fast path.
    streamed: bool = False


@dataclass(frozen=True, slots=True)
class CosemObject:
    """One object of the meter's object model: class, logical name and its bound attributes."""

    ic: InterfaceClass
    ln: bytes
    name: str
    attributes: tuple[Attribute, ...]
    methods: tuple[Method | None, ...] = ()

    def __post_init__(self) -> None:
        if len(self.ln) != 6:
            raise ValueError(f"{self.name}: logical name must be 6 bytes")
        if len(self.attributes) != self.ic.attribute_count:
            raise ValueError(
                f"{self.name}: class {self.ic.class_id} has {self.ic.attribute_count} attributes, "
                f"{len(self.attributes)} bound"
            )
        if self.methods and len(self.methods) != self.ic.method_count:
            raise ValueError(f"{self.name}: class {self.ic.class_id} has {self.ic.method_count} methods")

    @property
    def key(self) -> tuple[int, bytes]:
        return self.ic.class_id, self.ln


@dataclass(frozen=True, slots=True)
class Rights:
    """Access rights of one association to one object (an object_list access_rights entry)."""

    attributes: tuple[AccessMode, ...]
    methods: tuple[MethodAccessMode, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class AssociationSpec:
    """An association the meter offers: who may open it, how, and what it may do."""

    client_sap: int
    ln: bytes
    name: str
    mechanism: AuthenticationMechanism
    contexts: frozenset[ApplicationContextName]
    conformance: Conformance
    server_max_receive_pdu_size: int = 1024
    security_setup: bytes = bytes(6)
    # e of the security setup 0.0.43.0.e.255 whose keys cipher this association (0: none), and its
    # security_policy (v1 bits: 2 authenticated, 3 encrypted requests; 5, 6 the same for responses).
    setup: int = 0
    policy: int = 0


@dataclass(slots=True)
class AssociationView:
    """What one association sees: object_list, access rights, and the server's dispatch tables."""

    spec: AssociationSpec
    entries: tuple[tuple[CosemObject, Rights], ...]
    by_key: dict[tuple[int, bytes], tuple[CosemObject, Rights]] = field(default_factory=dict)
    # GET fast path: class_id (2) + logical name (6) + attribute id (1) -> attribute, when readable.
    readable: dict[bytes, Attribute] = field(default_factory=dict)
    object_list: bytes = b""
    # the association's accepted AARQs without authentication or ciphering, by their bytes (kept by
    # `meter_core.session.association`; bounded there)
    accepted: dict[bytes, tuple] = field(default_factory=dict)

    def __post_init__(self) -> None:
        w = Writer()
        w.push_u8(DataType.ARRAY)
        w.push_length(len(self.entries))
        for obj, rights in self.entries:
            self.by_key[obj.key] = (obj, rights)
            prefix = struct.pack(">H", obj.ic.class_id) + obj.ln
            for index, (attr, mode) in enumerate(zip(obj.attributes, rights.attributes), start=1):
                if mode.readable and not attr.streamed:
                    self.readable[prefix + bytes((index,))] = attr
            _encode_object_list_entry(w, obj, rights)
        self.object_list = w.getvalue()

    def lookup(self, class_id: int, ln: bytes) -> tuple[CosemObject, Rights] | DataAccessResult:
        """The object and rights, or the result a request for an unknown object gets."""
        found = self.by_key.get((class_id, ln))
        if found is not None:
            return found
        for obj, _ in self.entries:
            if obj.ln == ln:
                return DataAccessResult.OBJECT_CLASS_INCONSISTENT
        return DataAccessResult.OBJECT_UNDEFINED


def _encode_object_list_entry(w: Writer, obj: CosemObject, rights: Rights) -> None:
    # object_list_element ::= structure { class_id long-unsigned, version unsigned,
    #   logical_name octet-string, access_rights } (IEC 62056-6-2 4.4.3, Association LN attribute 2)
    attr_items = []
    for index, (attr, mode) in enumerate(zip(obj.attributes, rights.attributes), start=1):
        selectors = (
            Data(DataType.NULL_DATA, None)
            if attr.selectors is None or not mode.readable
            else Data(DataType.ARRAY, tuple(Data(DataType.INTEGER, s) for s in attr.selectors))
        )
        attr_items.append(
            Data(DataType.STRUCTURE, (Data(DataType.INTEGER, index), Data(DataType.ENUM, mode), selectors))
        )
    method_items = [
        Data(DataType.STRUCTURE, (Data(DataType.INTEGER, index), Data(DataType.ENUM, mode)))
        for index, mode in enumerate(rights.methods, start=1)
    ]
    encode_data(
        w,
        Data(
            DataType.STRUCTURE,
            (
                Data(DataType.LONG_UNSIGNED, obj.ic.class_id),
                Data(DataType.UNSIGNED, obj.ic.version),
                Data(DataType.OCTET_STRING, obj.ln),
                Data(
                    DataType.STRUCTURE,
                    (Data(DataType.ARRAY, tuple(attr_items)), Data(DataType.ARRAY, tuple(method_items))),
                ),
            ),
        ),
    )


# -- encoders for attribute values -----------------------------------------------------------------

# A date-time with every field not specified, encoded as an attribute value (octet-string of 12).
NOT_SPECIFIED_DATETIME = encode_octets(DATETIME_NOT_SPECIFIED)


def datetime_value(meter: Meter, t: float) -> bytes:
    """Simulated time ``t`` as the meter's clock showed it, an encoded date-time (octet-string of 12);
    not specified for NaN (no such time yet)."""
    if math.isnan(t):
        return NOT_SPECIFIED_DATETIME
    return encode_octets(meter.clock_bytes_at(t))


def scaler_unit(scaler: int, unit: int) -> bytes:
    """scaler_unit ::= structure { scaler integer, unit enum } (IEC 62056-6-2 4.3.2)."""
    return encode_value(Data(DataType.STRUCTURE, (Data(DataType.INTEGER, scaler), Data(DataType.ENUM, unit))))


def static(value: Any, dtype: DataType | None = None) -> Attribute:
    """An attribute whose value is the same in every meter of the model."""
    if isinstance(value, Data):
        return Attribute(encode_value(value))
    return Attribute(encode_value(Data(dtype, value)))


def ln_attribute(ln: bytes) -> Attribute:
    return Attribute(encode_octets(ln))


def rights_for(obj: CosemObject, readable: bool, writable: frozenset[int] = frozenset(),
               methods: frozenset[int] = frozenset(), hidden: frozenset[int] = frozenset()) -> Rights:
    """Rights with every attribute readable (or none), some writable, some methods allowed."""
    modes = []
    for index in range(1, obj.ic.attribute_count + 1):
        can_read = readable and index not in hidden
        can_write = index in writable
        if can_read and can_write:
            modes.append(AccessMode.READ_AND_WRITE)
        elif can_read:
            modes.append(AccessMode.READ_ONLY)
        elif can_write:
            modes.append(AccessMode.WRITE_ONLY)
        else:
            modes.append(AccessMode.NO_ACCESS)
    method_modes = tuple(
        MethodAccessMode.ACCESS if index in methods else MethodAccessMode.NO_ACCESS
        for index in range(1, obj.ic.method_count + 1)
    )
    return Rights(tuple(modes), method_modes)


@dataclass(slots=True)
class MeterModel:
    """The objects and association views of one meter kind, shared by all its meters."""

    kind: MeterKind
    objects: tuple[CosemObject, ...]
    associations: dict[int, AssociationView] = field(default_factory=dict)
    by_key: dict = field(default_factory=dict)  # (class_id, logical name) -> object
