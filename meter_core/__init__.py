"""meter_core: a sans-I/O DLMS/COSEM (IEC 62056, IS 15959) meter and client.

Bytes and values in, bytes and events out; time is passed in as ``now``. Nothing here does I/O,
sleeps, logs per frame or imports an event loop or a database driver.
"""

from meter_core.codec._util import NEED_DATA
from meter_core.codec.errors import (
    DecodeError,
    DlmsError,
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
    SecurityError,
)
from meter_core.codec.obis import Obis

__all__ = [
    "NEED_DATA",
    "DecodeError",
    "DlmsError",
    "LocalProtocolError",
    "Obis",
    "ProtocolError",
    "RemoteProtocolError",
    "SecurityError",
]
