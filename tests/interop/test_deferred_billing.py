"""A meter's first billing-profile read takes tens of milliseconds of computation (every demand period of seven
months); the worker does it a slice at a time (`WorkPending`), serving its other connections in between, and the
head-end gets the same answer as from a meter that computed it inline."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from meter_core.client import Associated, ClientSettings, GetResult
from meter_core.connection import Transport
from meter_core.device import profiles
from meter_core.device.identity import FleetConfig, meter_identity
from meter_core.device.meter import Meter
from tests.servers import EPOCH, PATIENCE, Head, running_meters
from tests.unit.test_meter import Pair

BILLING = "1.0.98.1.0.255"


def _reader(port: int, meter_id: int) -> Head:
    password = meter_identity(FleetConfig(seed=1), meter_id).lls_password.encode()
    h = Head(port, ClientSettings(client_sap=32, password=password, transport=Transport.WRAPPER))
    h.client.associate()
    assert isinstance(h.until(Associated), Associated)
    return h


def test_other_meters_are_served_while_a_first_billing_read_is_computed(monkeypatch):
    """The billing read's work is held back until another meter's clock read has been answered, and no byte
    of the billing answer may have come back by then: a worker that computed the rows inline would have
    answered the billing read first (it came first), and one that took no requests meanwhile would never
    answer the clock read (the test's time-out)."""
    answered = threading.Event()
    pending = profiles.Billing.pending

    def gated(self, meter, keys, now):
        work = pending(self, meter, keys, now)
        if work is None:
            return None

        def steps():
            while not answered.is_set():  # (the worker's loop turns: its other connections are served)
                time.sleep(0.0005)  # (the worker runs in a thread here: let this one have the interpreter)
                yield
            yield from work

        return steps()

    monkeypatch.setattr(profiles.Billing, "pending", gated)
    with running_meters(2) as m:
        with _reader(m.port(0), 0) as billing, _reader(m.port(1), 1) as other:
            billing.client.get(7, BILLING, 2)
            billing.sock.sendall(billing.client.data_to_send())
            other.client.get(8, "0.0.1.0.0.255", 2)
            assert isinstance(other.until(GetResult), GetResult)  # answered while the billing read waits:
            billing.sock.setblocking(False)
            with pytest.raises(BlockingIOError):  # nothing has come back to the billing read yet
                billing.sock.recv(1, socket.MSG_PEEK)
            answered.set()
            billing.sock.settimeout(PATIENCE)
            ev = billing.until(GetResult)
            served = ev.value
        # the same rows as a meter that computes them inline (closed billing periods: as of any moment since)
        meter = Meter(FleetConfig(seed=1), 0, epoch_start=EPOCH, clock=m.worker.clock)
        inline = Pair(Transport.WRAPPER, client_sap=32, meter=meter, now=time.monotonic(),
                      password=meter_identity(FleetConfig(seed=1), 0).lls_password.encode())
        inline.associate()
        expected = inline.get(7, BILLING, 2)
        assert isinstance(expected, GetResult)
        assert served == expected.value and len(served.value) > 1
