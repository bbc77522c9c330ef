"""Long work handed to the connection's owner: a meter's first billing-profile read (every demand period of seven
months) comes out of `MeterConnection(defer_work=True)` as a `WorkPending` event whose work runs a slice at a
time; `resume` then answers exactly what a meter computing inline answers, plain or ciphered (the request's
invocation counters as the request found them), and the requests that came meanwhile after it, in order."""

from __future__ import annotations

from meter_core import NEED_DATA
from meter_core.client import GetResult
from meter_core.codec.wrapper import wrap
from meter_core.connection import MeterConnection, Transport
from meter_core.device.identity import FleetConfig, MeterKind, meter_identity
from meter_core.device.meter import Meter
from meter_core.events import WorkPending
from tests.unit.test_meter import EPOCH, FLEET, T0, Pair, mr_password, us_security

BILLING = "1.0.98.1.0.255"


class DeferringPair(Pair):
    """A `Pair` whose meter connection defers long work; the work is done at once, counting its steps."""

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self.conn = MeterConnection(self.meter, Transport.WRAPPER, now=self.now, defer_work=True)
        self.steps: list[int] = []

    def pump(self) -> None:
        for _ in range(5000):
            out = self.client.data_to_send()
            if not out:
                return
            back, events = self.conn.exchange(out, self.now)
            while any(type(ev) is WorkPending for ev in events):
                for ev in events:
                    if type(ev) is WorkPending:
                        self.steps.append(sum(1 for _ in ev.work))
                    else:
                        self.meter_events.append(ev)
                more, events = self.conn.resume(self.now)
                back += more
            self.meter_events += [ev for ev in events if type(ev) is not WorkPending]
            if back:
                self.client.receive_data(back, self.now)
        raise AssertionError("conversation did not settle")


def _billing(pair: Pair):
    assert pair.associate() is not None
    ev = pair.get(7, BILLING, 2)
    assert isinstance(ev, GetResult), ev
    return ev.value


def test_a_first_billing_read_is_deferred_in_steps_then_answered_as_inline():
    inline = Pair(Transport.WRAPPER, client_sap=32, password=mr_password(), meter=Meter(FLEET, 3, epoch_start=EPOCH))
    deferring = DeferringPair(Transport.WRAPPER, client_sap=32, password=mr_password(),
                              meter=Meter(FLEET, 3, epoch_start=EPOCH))
    assert _billing(deferring) == _billing(inline)
    assert len(deferring.steps) == 1 and deferring.steps[0] > 20  # about two days of demand periods a step
    deferring.steps.clear()
    deferring.client.get(7, BILLING, 2)  # again on the same association: the rows are kept, nothing deferred
    assert isinstance(deferring.exchange(), GetResult)
    assert deferring.steps == []


def test_a_ciphered_billing_read_is_answered_after_its_work_with_the_counters_it_found():
    """Client 48 (HLS, authenticated and encrypted): the deferred request is served again under the same
    counters, so its answer passes the client's checks and the next request is accepted too."""
    meter = Meter(FLEET, 3, epoch_start=EPOCH)
    p = DeferringPair(Transport.WRAPPER, client_sap=48, meter=meter, security=us_security(meter))
    twin = Meter(FLEET, 3, epoch_start=EPOCH)
    q = Pair(Transport.WRAPPER, client_sap=48, meter=twin, security=us_security(twin))
    assert _billing(p) == _billing(q)
    assert len(p.steps) == 1
    p.client.get(8, "0.0.1.0.0.255", 2)
    assert isinstance(p.exchange(), GetResult)


def test_requests_that_come_while_one_waits_are_answered_after_it_in_order():
    p = DeferringPair(Transport.WRAPPER, client_sap=32, password=mr_password(), meter=Meter(FLEET, 3, epoch_start=EPOCH))
    p.associate()
    p.client.get(7, BILLING, 2)
    billing_request = p.client.data_to_send()
    out, events = p.conn.exchange(billing_request, T0)
    assert out == b"" and [type(ev) for ev in events] == [WorkPending]
    # a GET of the clock (invoke-id 2) from the same client, in the meantime: held behind the first
    clock = bytes.fromhex("c001c200080000010000ff0200")
    out, more = p.conn.exchange(wrap(32, 1, clock), T0)
    assert out == b"" and more == ()
    for _ in events[0].work:
        pass
    out, after = p.conn.resume(T0)
    assert after == ()
    p.client.receive_data(out[:8 + int.from_bytes(out[6:8], "big")], T0)
    assert isinstance(p.client.next_event(), GetResult)  # the billing buffer first
    second = out[8 + int.from_bytes(out[6:8], "big"):]
    assert second[8:12] == bytes.fromhex("c401c200")  # then the clock: get-response-normal, invoke-id 2, data


def test_a_connection_closed_while_its_request_waits_answers_nothing():
    p = DeferringPair(Transport.WRAPPER, client_sap=32, password=mr_password(), meter=Meter(FLEET, 3, epoch_start=EPOCH))
    p.associate()
    p.client.get(7, BILLING, 2)
    out, events = p.conn.exchange(p.client.data_to_send(), T0)
    assert [type(ev) for ev in events] == [WorkPending]
    p.conn.receive_data(b"", T0)  # the head-end went away
    assert p.conn.closed
    assert p.conn.resume(T0)[0] == b""
    assert p.conn.next_event() is NEED_DATA


def test_the_maximum_demand_of_a_meter_built_late_in_its_billing_period_is_scanned_in_steps():
    """A meter object built 20 days into a billing period has 20 days of demand periods to scan before its
    maximum-demand register answers: deferred like a billing read, answered as inline; a second read has
    nothing left to scan."""
    late = T0 + 20 * 86400 - (T0 % 86400)  # (a December date, 20 days past T0's midnight)
    deferring = DeferringPair(Transport.WRAPPER, client_sap=32, password=mr_password(),
                              meter=Meter(FLEET, 3, epoch_start=EPOCH), now=late)
    inline = Pair(Transport.WRAPPER, client_sap=32, password=mr_password(), meter=Meter(FLEET, 3, epoch_start=EPOCH),
                  now=late)
    for p in (deferring, inline):
        p.associate()
    md = "1.0.1.6.0.255"
    got, expected = deferring.get(4, md, 2), inline.get(4, md, 2)
    assert isinstance(got, GetResult) and got.value == expected.value and got.value.value > 0
    assert len(deferring.steps) == 1 and deferring.steps[0] >= 5
    assert deferring.get(4, md, 5).value == inline.get(4, md, 5).value  # its time: nothing deferred again
    assert len(deferring.steps) == 1


def test_the_instant_profile_defers_its_maximum_demands_scan_before_its_row():
    """The single-phase instantaneous profile captures the maximum-demand registers: their scan is deferred
    before the row's stream starts (the GET counted once), and the row, in 48-byte blocks, is what an inline
    meter serves."""
    late = T0 + 20 * 86400 - (T0 % 86400)
    single = FleetConfig(seed=7, kind=MeterKind.SINGLE_PHASE)  # (the single-phase profile captures them)
    password = meter_identity(single, 3).lls_password.encode()
    deferring = DeferringPair(Transport.WRAPPER, client_sap=32, password=password,
                              meter=Meter(single, 3, epoch_start=EPOCH), now=late, max_pdu=48)
    inline = Pair(Transport.WRAPPER, client_sap=32, password=password, meter=Meter(single, 3, epoch_start=EPOCH),
                  now=late, max_pdu=48)
    for p in (deferring, inline):
        p.associate()
    got, expected = deferring.get(7, "1.0.94.91.0.255", 2), inline.get(7, "1.0.94.91.0.255", 2)
    assert isinstance(got, GetResult) and got.value == expected.value
    assert len(deferring.steps) == 1
    assert deferring.conn.stats.all_counts == inline.conn.stats.all_counts  # the GET counted once
