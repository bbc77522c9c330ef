"""A connection idle for the TCP-UDP setup's inactivity_time_out is closed by the meter, whether its timer
was armed at once (due within two rounds) or by the worker's once-a-second round (`Worker.arm_timers`)."""

from __future__ import annotations

import socket
import time

import pytest

from tests.servers import running_meters

pytestmark = pytest.mark.interop


@pytest.mark.parametrize("timeout", [1, 3], ids=["armed-at-once", "armed-by-the-round"])
def test_an_idle_connection_is_closed_after_the_inactivity_time_out(timeout):
    with running_meters(1) as m:
        m.call(lambda: setattr(m.worker.meters.meter(0).state, "inactivity_timeout", timeout))
        t0 = time.monotonic()
        with socket.create_connection(m.address(0), timeout=30) as s:
            assert s.recv(10) == b""  # closed by the meter (a timer never armed: recv times out), nothing sent
        assert time.monotonic() - t0 >= timeout - 0.1  # not before its time
        assert m.call(lambda: len(m.worker.protocols)) == 0
