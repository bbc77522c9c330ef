from __future__ import annotations

import pytest

from meter_core.connection import Transport
from tests.servers import running_meters


@pytest.fixture(scope="module", params=[Transport.WRAPPER, Transport.HDLC], ids=["wrapper", "hdlc"])
def meters(request):
    """Three meters of one worker on loopback, over the wrapper and over HDLC."""
    with running_meters(3, request.param) as running:
        yield running
