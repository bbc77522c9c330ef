"""Events a meter connection reports to its owner (the fleet actor, a test, a benchmark).

Each event is complete when emitted and none subclasses another (h11 ``_events`` rule).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class ReleaseReason(Enum):
    """Why an association ended."""

    RELEASED = "released"  # RLRQ/RLRE
    LINK_DISCONNECTED = "link-disconnected"  # HDLC DISC, SNRM reset or link time-out
    CONNECTION_CLOSED = "connection-closed"  # the TCP connection went away
    TIMEOUT = "timeout"  # inactivity time-out of the meter


@dataclass(frozen=True, slots=True)
class AssociationEstablished:
    """An AARQ was accepted: ``client_sap`` is now associated through association ``name``."""

    client_sap: int
    name: str
    mechanism: int
    context: int


@dataclass(frozen=True, slots=True)
class AssociationRejected:
    """An AARQ was refused with ``result`` and diagnostic (``source`` 1 user / 2 provider)."""

    client_sap: int
    result: int
    source: int
    diagnostic: int
    reason: str


@dataclass(frozen=True, slots=True)
class AssociationReleased:
    """An association ended."""

    client_sap: int
    reason: ReleaseReason


@dataclass(frozen=True, slots=True)
class ProtocolViolation:
    """The peer sent something the meter refused (answered or dropped as the standard says)."""

    layer: str  # "wrapper", "hdlc", "apdu"
    detail: str


@dataclass(frozen=True, slots=True)
class ConnectionTerminated:
    """The meter wants the transport closed (lost framing, inactivity time-out)."""

    reason: str


@dataclass(frozen=True, slots=True)
class InternalError:
    """A fault inside the meter while serving a request; the request got a failure answer."""

    detail: str


@dataclass(frozen=True, slots=True)
class SecurityFailure:
    """A protected request or an HLS reply was refused (``reason``: a `meter_core.codec.crypto.Failure` value)."""

    client_sap: int
    reason: str


@dataclass(frozen=True, slots=True)
class PushConfirmed:
    """A head-end confirmed a confirmed push (Data-Notification-Confirm, ciphered with the push setup's
    keys) whose long-invoke-id is ``invoke_id``."""

    invoke_id: int


@dataclass(frozen=True, slots=True)
class PushRequested:
    """A head-end invoked push() (class 40 method 1) of push setup ``push`` (its logical name, dotted)."""

    push: str


@dataclass(frozen=True, slots=True)
class Programmed:
    """A head-end's SET or ACTION reached an object of the meter (whatever its result).

    ``value`` is the A-XDR encoded value written or the method's parameters (b"": none); ``result`` the
    data-access-result or action-result (0: success); ``sim_time`` the true (simulated) time it was served
    and ``meter_time`` what the meter's clock showed then. ``replay``: it succeeded and changed the meter,
    so the meter's owner keeps it (before the answer goes out) and replays it when the meter is built again
    (`meter_core.session.journal`)."""

    client_sap: int
    service: str  # "set" or "action"
    class_id: int
    obis: bytes
    index: int
    value: bytes
    result: int
    sim_time: float
    meter_time: float
    replay: bool


@dataclass(frozen=True, slots=True)
class WorkPending:
    """A request needs long computation before it can be answered (a meter's first read of its billing
    profile: every demand period of seven months). Offered only to an owner that asked for it
    (``MeterConnection(defer_work=True)``). ``work`` is an iterator: each ``next()`` does a slice of it (a few
    milliseconds); once it is exhausted, `MeterConnection.resume` answers the request, and the requests
    after it. Until then the connection takes no more requests (the owner stops reading)."""

    work: object  # Iterator[None]


class WorkNeeded(Exception):
    """Raised by a getter whose answer needs long computation, when its association defers such work
    (``Association.defer_work``); ``work`` does it a slice at a time. The connection turns it into a
    `WorkPending` event and serves the request again once the work is done."""

    def __init__(self, work) -> None:
        super().__init__("work needed")
        self.work = work
