"""The exception hierarchy of meter_core.

Every error we raise descends from `DlmsError`. A protocol error is either our caller's fault
(`LocalProtocolError`) or the peer's (`RemoteProtocolError`); decoders raise `DecodeError`, a
`RemoteProtocolError`. An error carries what the peer must be told, so the layer that catches it can
answer the way the standard says (h2's per-class ``error_code``, wsproto's ``ParseFailed.code``).
"""

from __future__ import annotations

from enum import Enum, IntEnum


class ExceptionStateError(IntEnum):
    """state-error of an exception-response (IEC 62056-5-3, ExceptionResponse)."""

    SERVICE_NOT_ALLOWED = 1
    SERVICE_UNKNOWN = 2


class ExceptionServiceError(IntEnum):
    """service-error of an exception-response (IEC 62056-5-3, ExceptionResponse)."""

    OPERATION_NOT_POSSIBLE = 1
    SERVICE_NOT_SUPPORTED = 2
    OTHER_REASON = 3
    PDU_TOO_LONG = 4
    DECIPHERING_ERROR = 5
    INVOCATION_COUNTER_ERROR = 6


class DlmsError(Exception):
    """Root of every exception meter_core raises."""


class ProtocolError(DlmsError):
    """A rule of the protocol was broken.

    ``exception_response`` is the (state-error, service-error) pair the meter answers with when the
    broken rule concerns a whole xDLMS APDU; ``None`` when the layer above decides.
    """

    exception_response: tuple[ExceptionStateError, ExceptionServiceError] | None = None

    def __init__(
        self,
        msg: str,
        *,
        exception_response: tuple[ExceptionStateError, ExceptionServiceError] | None = None,
    ) -> None:
        super().__init__(msg)
        if exception_response is not None:
            self.exception_response = exception_response


class LocalProtocolError(ProtocolError):
    """Our caller asked for something the protocol does not allow."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol does not allow."""


class DecodeError(RemoteProtocolError):
    """Bytes from the peer do not decode: truncated, an unknown tag, a value out of range."""

    exception_response = (ExceptionStateError.SERVICE_UNKNOWN, ExceptionServiceError.SERVICE_NOT_SUPPORTED)


class Failure(Enum):
    """Why a protected exchange was refused: the `security_failures` metric's reason label."""

    DECIPHERING = "deciphering"  # bad tag or wrong key
    INVOCATION_COUNTER = "invocation-counter"  # replayed or stale counter
    SECURITY_CONTROL = "security-control"  # unknown SC bits, wrong suite, compression
    TRUNCATED = "truncated"
    POLICY = "policy"  # less protection than the association's policy demands
    AUTHENTICATION = "authentication"  # HLS pass 3 failed
    SYSTEM_TITLE = "system-title"


class SecurityError(RemoteProtocolError):
    """A protected APDU or an HLS value was refused (a bad tag, a stale invocation counter, less protection
    than the policy demands...); ``failure`` says why."""

    exception_response = (ExceptionStateError.SERVICE_NOT_ALLOWED, ExceptionServiceError.DECIPHERING_ERROR)

    def __init__(self, failure: Failure, message: str) -> None:
        super().__init__(message)
        self.failure = failure
