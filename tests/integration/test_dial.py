"""Dial mode against fleet hes-sink: meters call the head-end when their scheduled pushes are due, each
push arrives once and deciphers, the head-end may read the meter on the connection the meter opened,
and with the head-end away the pushes are retried, then counted as failed."""

from __future__ import annotations

import asyncio
import socket
import time

import asyncpg
import pytest

from meter_core.codec.apdu import ciphered
from meter_core.cosem.build import model_of
from meter_core.device import config as device_config
from meter_core.device import pushes as push
from meter_core.device.config import DEFAULT_DEVICE
from tests.integration.test_sink import RunningSink
from tests.servers import PATIENCE, running_meters, wait_for

pytestmark = pytest.mark.integration

SPEED = 900.0  # 15 simulated minutes a second


async def _received(url: str) -> set:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT meter_id, push_logical_name, notified_at, peer FROM push_received")
    finally:
        await conn.close()
    _received.peers = {(r["meter_id"], r["peer"].rpartition(":")[0]) for r in rows}
    return {(r["meter_id"], r["push_logical_name"]) for r in rows}, len(rows)


def _arrived(url: str) -> set:
    """The pushes push_received holds: (meter, push setup, long invoke id)."""
    async def fetch():
        conn = await asyncpg.connect(url)
        try:
            return await conn.fetch("SELECT meter_id, push_logical_name, long_invoke_id FROM push_received")
        finally:
            await conn.close()

    return {tuple(r) for r in asyncio.run(fetch())}


async def _rates(url: str) -> list:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch("SELECT * FROM push_success ORDER BY meter_id, push_logical_name")
    finally:
        await conn.close()


def test_meters_dial_in_and_every_due_push_arrives_once(database_url):
    from fleet.settings import FleetOptions

    sink = RunningSink(database_url, FleetOptions(meters=6, seed=1))
    try:
        start = time.time()
        with running_meters(6, hes=("127.0.0.1", sink.port), speed=SPEED, sim_start=start,
                            dial_idle=0.5, database_url=database_url, source_base="127.1.0.0") as m:
            t0 = m.sim_now()
            time.sleep(6.0)  # 1.5 simulated hours
            t1 = m.sim_now()
            due = [(mid, p, t) for mid in range(6) for p in DEFAULT_DEVICE.scheduled() for t in push.due_between(DEFAULT_DEVICE, 1, mid, p, t0, t1)]
            # the meters stop once every push due by then has arrived (however far the worker lags)
            wait_for(f"the {len(due)} pushes due in 1.5 simulated hours",
                     lambda: {(mid, p, push.invoke_id_for(t)) for mid, p, t in due} <= _arrived(database_url),
                     lambda: sorted({(mid, p, push.invoke_id_for(t)) for mid, p, t in due} - _arrived(database_url)))
        counts = dict(m.worker.dialer.push_counts)  # the worker has stopped: these are final
        sent = sum(v for (_, outcome), v in counts.items() if outcome == "sent")
        # (the last calls' bytes may still be on their way to the sink)
        wait_for(f"the sink to take and write the {sent} pushes sent",
                 lambda: sink.sink.received >= sent and not sink.sink.pending, lambda: sink.sink.received)
        kinds, n = asyncio.run(_received(database_url))
        assert n >= len(due) > 30
        assert {(mid, p) for mid, p, _ in due} <= kinds
        assert sink.sink.refused["undecodable"] == 0
        # each meter dialled from its own address (--source-base 127.1.0.0: meter i from 127.1.0.i)
        assert _received.peers == {(mid, f"127.1.0.{mid}") for mid in range(6)}
        assert sink.sink.received == n  # nothing delivered twice
        assert sent >= n and not any(outcome == "failed" for _, outcome in counts)
        # the success rate is one query: every push the meters owed and sent, the head-end received
        rates = asyncio.run(_rates(database_url))
        assert rates and all(r["pushes_due"] == r["pushes_received"] and r["success_rate"] == 1 for r in rates)
        assert sum(r["pushes_due"] for r in rates) == sent
    finally:
        sink.stop()


def test_a_head_end_that_is_away_gets_retries_then_failures():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nobody listens there
    with running_meters(2, hes=("127.0.0.1", port), speed=SPEED) as m:
        def outcomes() -> dict:
            return m.call(lambda: {o: sum(n for (_, oo), n in m.worker.dialer.push_counts.items() if oo == o)
                                   for _, o in m.worker.dialer.push_counts})

        # 75 simulated minutes, and a push that has failed for good
        wait_for("a push failed after its retries",
                 lambda: m.sim_now() >= m.worker.clock.start + 4500 and outcomes().get("failed", 0) > 0, outcomes)
        pushes = outcomes()
    # every due push was attempted, retried 60 simulated seconds apart, and never sent
    assert pushes.get("sent", 0) == 0
    assert pushes.get("retried", 0) >= pushes.get("failed", 0) * 3 > 0
    from fleet import metrics  # (flushed as the worker stopped) the reason: the head-end refused the calls

    assert sum(metrics.PUSH_FAILURES.labels(p, "refused")._value.get() for p in DEFAULT_DEVICE.scheduled()) > 0


def test_the_head_end_reads_the_meter_on_the_connection_it_dialled():
    """The meter calls, pushes, then answers the head-end's AARQ and GETs on that same connection; its
    push setups name this head-end as their destination."""
    from meter_core import NEED_DATA
    from meter_core.client import Associated, ClientSettings, DlmsClient, GetResult

    hes = socket.socket()
    hes.bind(("127.0.0.1", 0))
    hes.listen(8)
    hes.settimeout(10)
    with running_meters(1, hes=("127.0.0.1", hes.getsockname()[1]), speed=SPEED, dial_idle=5.0):
        conn, _ = hes.accept()
        conn.settimeout(5)
        with conn:
            head = conn.recv(8, socket.MSG_WAITALL)
            assert head[2:6] == b"\x00\x01\x00\x40"  # from the meter's logical device to the push client
            conn.recv(int.from_bytes(head[6:8], "big"), socket.MSG_WAITALL)  # the push itself
            from fleet.settings import FleetOptions
            from meter_core.device.identity import meter_identity

            password = meter_identity(FleetOptions(meters=1, seed=1).fleet, 0).lls_password.encode()
            client = DlmsClient(ClientSettings(client_sap=32, password=password))  # the meter reader

            def talk():
                conn.sendall(client.data_to_send())
                while (ev := client.next_event()) is NEED_DATA:
                    client.receive_data(conn.recv(65536))
                return ev

            client.associate()
            assert isinstance(talk(), Associated)
            client.get(8, "0.0.1.0.0.255", 2)
            ev = talk()
            assert isinstance(ev, GetResult) and ev.value is not None and len(ev.value.value) == 12
            client.get(40, device_config.INSTANT_PUSH, 3)  # send_destination_and_method: TCP, this head-end, A-XDR
            ev = talk()
            transport, destination, message = ev.value.value
            assert (transport.value, message.value) == (0, 0)
            assert bytes(destination.value) == b"127.0.0.1:%d" % hes.getsockname()[1]
    hes.close()


def test_an_esw_change_sends_an_alert_push_and_its_bits_are_settled(database_url):
    """A supply event the meter's seeded day holds raises ESW bits: the meter dials in with the alert
    push at that moment, and eswf_push_alarms records each raised bit as SENT."""
    from fleet.settings import FleetOptions
    from meter_core.device.clock import SimClock
    from meter_core.device.meter import Meter
    from tests.servers import EPOCH

    options = FleetOptions(meters=1, seed=1)
    probe = Meter(options.fleet, 0, epoch_start=EPOCH, clock=SimClock.real_time())
    t = time.time()
    alerts = push.alerts_between(probe, t, t + 20 * 86400)
    assert alerts, "no supply event in 20 days for meter 0"
    when, bits = alerts[0]
    sink = RunningSink(database_url, options)
    try:
        async def fetch():
            conn = await asyncpg.connect(database_url)
            try:
                got = await conn.fetch("SELECT push_logical_name FROM push_received WHERE push_logical_name = $1",
                                       device_config.ALERT_PUSH)
                alarms = await conn.fetch("SELECT bit, status, retry_count FROM eswf_push_alarms WHERE meter_id = 0")
                return got, alarms
            finally:
                await conn.close()

        with running_meters(1, hes=("127.0.0.1", sink.port), speed=SPEED, sim_start=when - 300, dial_idle=0.5,
                            database_url=database_url) as m:
            def settled() -> bool:
                got, alarms = asyncio.run(fetch())
                return bool(got) and {a["bit"] for a in alarms} >= set(bits)

            # 45 simulated minutes (the alert comes 5 minutes in), and the alert arrived and settled
            wait_for("the alert push and its bits in eswf_push_alarms",
                     lambda: m.sim_now() >= when - 300 + 2700 and settled(), lambda: asyncio.run(fetch()))
        got, alarms = asyncio.run(fetch())
        assert got, "the alert push did not arrive"
        assert {a["bit"] for a in alarms} >= set(bits)
        assert all(a["status"] == "SENT" and a["retry_count"] == 0 for a in alarms)
    finally:
        sink.stop()


def test_with_the_sink_away_pushes_fail_after_retries_and_nothing_counts_twice(database_url):
    """The head-end goes away for a while and comes back on the same port: pushes due meanwhile are
    retried, then FAILED in push_due; those before and after arrive once; the rate drops accordingly."""
    from fleet.settings import FleetOptions

    options = FleetOptions(meters=4, seed=1)
    sink = RunningSink(database_url, options)
    port = sink.port
    try:
        with running_meters(4, hes=("127.0.0.1", port), speed=SPEED, dial_idle=0.3, database_url=database_url) as m:
            time.sleep(2.0)
            first = sink.sink
            sink.stop()  # half a simulated hour and more without a head-end
            time.sleep(3.0)
            sink = RunningSink(database_url, options, port=port)
            time.sleep(3.0)
        counts = dict(m.worker.dialer.push_counts)  # the worker has stopped: these are final
        outcomes = {}
        for (_push, outcome), n in counts.items():
            outcomes[outcome] = outcomes.get(outcome, 0) + n
        # the pushes sent reach the sinks (but those lost as the first went down, at most one per meter,
        # below); the last calls' bytes may still be on their way
        wait_for("the sinks to take and write the pushes sent",
                 lambda: first.received + sink.sink.received >= outcomes.get("sent", 0) - 4 and not sink.sink.pending,
                 lambda: (first.received, sink.sink.received, outcomes))
        assert outcomes.get("failed", 0) > 0 and outcomes.get("retried", 0) >= 3 * outcomes["failed"]
        assert outcomes.get("sent", 0) > 0

        async def fetch():
            conn = await asyncpg.connect(database_url)
            try:
                due = await conn.fetch("SELECT outcome, attempts FROM push_due")
                rates = await conn.fetch("SELECT * FROM push_success")
                dupes = await conn.fetchval("SELECT count(*) - count(DISTINCT (meter_id, push_logical_name, "
                                            "long_invoke_id)) FROM push_received")
                return due, rates, dupes
            finally:
                await conn.close()

        due, rates, dupes = asyncio.run(fetch())
        failed = [r for r in due if r["outcome"] == "FAILED"]
        assert len(failed) == outcomes["failed"] and all(r["attempts"] == 4 for r in failed)
        assert dupes == 0
        total_due = sum(r["pushes_due"] for r in rates)
        total_received = sum(r["pushes_received"] for r in rates)
        assert total_due == len(due)
        # a push written on an open call just as the head-end went down is lost (as on a real network):
        # at most one per meter
        assert total_due - len(failed) - 4 <= total_received <= total_due - len(failed)
    finally:
        sink.stop()


def test_over_hdlc_the_meter_pushes_a_ui_frame_then_takes_snrm_and_a_read_on_its_call(database_url):
    """--transport hdlc in dial mode: the push arrives as an HDLC UI frame (to the push client, from the
    meter's own address) that fleet hes-sink records; a head-end that answers the call brings the link
    up with SNRM and reads the clock on it."""
    from fleet.settings import FleetOptions
    from meter_core import NEED_DATA
    from meter_core.client import Associated, ClientSettings, DlmsClient, GetResult, LinkUp
    from meter_core.codec.hdlc import HdlcAddress
    from meter_core.codec.hdlc.frames import Deframer, FrameKind
    from meter_core.connection import Transport
    from meter_core.device.identity import meter_identity

    options = FleetOptions(meters=3, seed=1, transport=Transport.HDLC)
    sink = RunningSink(database_url, options)
    try:
        with running_meters(3, transport=Transport.HDLC, hes=("127.0.0.1", sink.port), speed=SPEED,
                            dial_idle=0.3, database_url=database_url) as m:
            # a simulated hour, and a push from every meter
            wait_for("a push from each meter", lambda: m.sim_now() >= m.worker.clock.start + 3600 and {
                mid for mid, _ in asyncio.run(_received(database_url))[0]} == {0, 1, 2})
        kinds, n = asyncio.run(_received(database_url))
        assert {m for m, _ in kinds} == {0, 1, 2} and sink.sink.refused["framing"] == 0
    finally:
        sink.stop()

    hes = socket.socket()
    hes.bind(("127.0.0.1", 0))
    hes.listen(8)
    hes.settimeout(10)
    with running_meters(1, transport=Transport.HDLC, hes=("127.0.0.1", hes.getsockname()[1]), speed=SPEED,
                        dial_idle=5.0):
        conn, _ = hes.accept()
        conn.settimeout(5)
        with conn:
            deframer = Deframer()
            while (frame := deframer.next_frame()) is NEED_DATA:
                deframer.feed(conn.recv(4096))
            phys = meter_identity(options.fleet, 0).hdlc_physical_address
            assert frame.kind is FrameKind.UI and frame.destination.upper == push.PUSH_CLIENT_SAP
            assert (frame.source.upper, frame.source.lower) == (1, phys)
            assert frame.info[:3] == b"\xe6\xe7\x00" and frame.info[3] == 0xDB  # a ciphered DataNotification
            client = DlmsClient(ClientSettings(client_sap=16, transport=Transport.HDLC,
                                               hdlc_server_address=HdlcAddress(upper=1, lower=phys, size=4)))

            def talk():
                conn.sendall(client.data_to_send())
                while (ev := client.next_event()) is NEED_DATA:
                    client.receive_data(conn.recv(65536))
                return ev

            client.connect()
            assert isinstance(talk(), LinkUp)
            client.associate()
            assert isinstance(talk(), Associated)
            client.get(8, "0.0.1.0.0.255", 2)
            ev = talk()
            assert isinstance(ev, GetResult) and ev.value is not None and len(ev.value.value) == 12
    hes.close()


def test_a_push_waiting_for_its_retries_survives_a_worker_restart(database_url):
    """The head-end is away: the push that failed its first attempt waits in message_queue (PENDING);
    the worker stops before its retries are over; the next run of the shard takes it up, sends it
    once the head-end is back, and settles it SENT in message_queue and push_due."""
    from fleet.settings import FleetOptions

    options = FleetOptions(meters=2, seed=1)
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nobody listens there yet
    start = time.time()
    first_due = min(push.next_due(DEFAULT_DEVICE, 1, mid, device_config.INSTANT_PUSH, start) for mid in range(2))

    async def queue():
        conn = await asyncpg.connect(database_url)
        try:
            return await conn.fetch("SELECT meter_id, message_id, push_logical_name, extract(epoch FROM due_at) "
                                    "AS due, attempts, status, length(payload) AS n FROM message_queue")
        finally:
            await conn.close()

    # (slowly: its retries come 10 s apart, so the worker stops while they are under way however busy the
    # machine is; and it has 2 s to boot before the push falls due)
    with running_meters(2, hes=("127.0.0.1", port), speed=6.0, sim_start=first_due - 12,
                        database_url=database_url):
        waiting = wait_for("a push waiting in message_queue", lambda: asyncio.run(queue()))
    assert waiting and all(r["status"] == "PENDING" and 1 <= r["attempts"] < 4 for r in waiting)
    assert all(r["n"] > 20 for r in waiting)  # the DataNotification it carries
    sink = RunningSink(database_url, options, port=port)
    try:
        with running_meters(2, hes=("127.0.0.1", port), speed=60.0, sim_start=first_due + 30, dial_idle=0.3,
                            database_url=database_url):
            def settled() -> dict:
                done = {r["message_id"]: r for r in asyncio.run(queue())}
                return all(done[r["message_id"]]["status"] != "PENDING" for r in waiting) and done

            done = wait_for("the queued pushes settled", settled, lambda: asyncio.run(queue()))
        assert all(done[r["message_id"]]["status"] == "SENT" for r in waiting)
        wait_for("the sink to write all it received", lambda: not sink.sink.pending)

        async def settled():
            conn = await asyncpg.connect(database_url)
            try:
                due = await conn.fetch("SELECT meter_id, push_logical_name, long_invoke_id, outcome, attempts "
                                       "FROM push_due")
                got = await conn.fetch("SELECT meter_id, push_logical_name, long_invoke_id FROM push_received")
                return due, {tuple(r) for r in got}
            finally:
                await conn.close()

        due, got = asyncio.run(settled())
        for r in waiting:
            key = (r["meter_id"], r["push_logical_name"], push.invoke_id_for(float(r["due"])))
            assert key in got
            row = [d for d in due if (d["meter_id"], d["push_logical_name"], d["long_invoke_id"]) == key]
            assert len(row) == 1 and row[0]["outcome"] == "SENT" and row[0]["attempts"] >= 2
    finally:
        sink.stop()


def test_a_head_end_that_answers_garbage_or_hangs_up_mid_call_leaves_the_meter_serving():
    """The head-end takes the call and the push, then answers with bytes that are not DLMS (the meter
    drops that call), or hangs up at once: each push counts once, as sent; the worker goes on placing
    calls and a later call is answered normally."""
    from meter_core import NEED_DATA
    from meter_core.client import Associated, ClientSettings, DlmsClient

    hes = socket.socket()
    hes.bind(("127.0.0.1", 0))
    hes.listen(16)
    hes.settimeout(10)
    with running_meters(1, hes=("127.0.0.1", hes.getsockname()[1]), speed=SPEED, dial_idle=5.0) as m:
        for behaviour in ("garbage", "hang-up", "garbage"):
            conn, _ = hes.accept()
            conn.settimeout(5)
            head = conn.recv(8, socket.MSG_WAITALL)
            conn.recv(int.from_bytes(head[6:8], "big"), socket.MSG_WAITALL)
            if behaviour == "garbage":
                conn.sendall(b"\x7f\x00GARBAGE" * 40)
                assert conn.recv(4096) == b""  # the meter closes a call that lost its framing
            conn.close()
        conn, _ = hes.accept()  # the next due push: a head-end that speaks DLMS is served
        conn.settimeout(5)
        with conn:
            head = conn.recv(8, socket.MSG_WAITALL)
            conn.recv(int.from_bytes(head[6:8], "big"), socket.MSG_WAITALL)
            client = DlmsClient(ClientSettings(client_sap=16))
            client.associate()
            conn.sendall(client.data_to_send())
            while (ev := client.next_event()) is NEED_DATA:
                client.receive_data(conn.recv(65536))
            assert isinstance(ev, Associated)

        def settled() -> dict | None:
            """The worker's pushes by outcome, at a moment it has no call under way (None if it has)."""
            def look():
                if m.worker.dialer._dials:
                    return None
                return {o: sum(n for (_, oo), n in m.worker.dialer.push_counts.items() if oo == o)
                        for _, o in m.worker.dialer.push_counts}

            got = m.call(look)
            return got if got and got.get("sent", 0) >= 4 else None

        outcomes = wait_for("the four pushes counted as sent, no call under way", settled)
    hes.close()
    assert outcomes.get("sent", 0) >= 4 and outcomes.get("failed", 0) == 0
    # one call per push: nothing retried, and every push attempted was sent
    assert outcomes.get("retried", 0) == 0 and outcomes["attempted"] == outcomes["sent"]
    assert m.worker.metrics.internal_errors == 0


def test_confirmed_pushes_are_confirmed_by_the_sink_and_retried_without_a_confirmation(database_url):
    """push_operation_method 2 in push_setups: the push setups become version 2, pushes ask for a
    confirmation (service class confirmed), fleet hes-sink answers each with a ciphered
    Data-Notification-Confirm, and the meter settles them (alert bits ACKNOWLEDGED, last confirmation
    time set). A head-end that takes the push and never confirms gets it again after the repetition
    delay, as the push setup's retries say, then FAILED."""
    from fleet.settings import FleetOptions
    from meter_core.device.clock import SimClock
    from meter_core.device.meter import Meter
    from tests.servers import EPOCH

    async def configure():
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute("UPDATE push_setups SET push_operation_method = 2")
        finally:
            await conn.close()

    asyncio.run(configure())
    options = FleetOptions(meters=1, seed=1)
    probe = Meter(options.fleet, 0, epoch_start=EPOCH, clock=SimClock.real_time())
    start = time.time()
    when = push.alerts_between(probe, start, start + 20 * 86400)[0][0]
    sink = RunningSink(database_url, options)
    try:
        async def alarms():
            conn = await asyncpg.connect(database_url)
            try:
                return await conn.fetch("SELECT status FROM eswf_push_alarms")
            finally:
                await conn.close()

        with running_meters(1, hes=("127.0.0.1", sink.port), speed=SPEED, sim_start=when - 900, dial_idle=0.3,
                            database_url=database_url) as m:
            def look():
                meter = m.worker.meters.for_rows(0)
                obj = model_of(meter).by_key[(40, bytes((0, 0, 25, 9, 0, 255)))]
                return (dict(m.worker.dialer.push_counts), (obj.ic.version, len(obj.attributes)),
                        dict(meter.state.push_confirmations).get(device_config.INSTANT_PUSH))

            def ready():
                got = m.call(look)
                return m.sim_now() >= when - 900 + 2250 and got[2] is not None and asyncio.run(alarms()) and got

            # 37.5 simulated minutes, an instant push confirmed, and the alert (15 minutes in) settled
            counts, version, last_confirmed = wait_for("an instant push confirmed and the alert's bits recorded",
                                                       ready, lambda: m.call(look))
            assert version == (2, 13) and last_confirmed is not None
        assert sink.sink.confirmed > 0
        confirmed = sum(n for (_, o), n in counts.items() if o == "confirmed")
        sent = sum(n for (_, o), n in counts.items() if o == "sent")
        assert confirmed == sent > 0 and not any(o in ("unconfirmed", "failed") for _, o in counts), counts
        rows = asyncio.run(alarms())
        assert rows and all(r["status"] == "ACKNOWLEDGED" for r in rows)
    finally:
        sink.stop()

    # a head-end that never confirms: the same push comes again, 3 retries, then FAILED
    hes = socket.socket()
    hes.bind(("127.0.0.1", 0))
    hes.listen(16)
    hes.settimeout(PATIENCE)  # (a push due while the worker boots is not owed: then the next, 15 s later)
    first_due = push.next_due(DEFAULT_DEVICE, 1, 0, device_config.INSTANT_PUSH, time.time())
    with running_meters(1, hes=("127.0.0.1", hes.getsockname()[1]), speed=60.0, dial_idle=30.0,
                        sim_start=first_due - 60, database_url=database_url) as m:
        conn, _ = hes.accept()
        conn.settimeout(PATIENCE)
        with conn:
            invoke_ids = []
            while len(invoke_ids) < 10 and (not invoke_ids or invoke_ids.count(invoke_ids[0]) < 4):
                head = conn.recv(8, socket.MSG_WAITALL)
                body = conn.recv(int.from_bytes(head[6:8], "big"), socket.MSG_WAITALL)
                keys = m.call(lambda: m.worker.meters.for_rows(0).keys().sets[4])
                from meter_core.codec import crypto as sec
                from meter_core.codec.apdu import decode_apdu

                env = ciphered.open_envelope(body)
                note = decode_apdu(sec.unprotect(env.payload, env.system_title, keys.ek, keys.ak)[2])
                assert note.long_invoke_id_and_priority & 0x40000000  # confirmed service class
                invoke_ids.append(note.long_invoke_id_and_priority & 0xFFFFFF)
            # the last retry's wait for a confirmation runs out
            wait_for("the unconfirmed push to fail", lambda: m.call(
                lambda: any(o == "failed" for _, o in m.worker.dialer.push_counts)))
            counts = m.call(lambda: dict(m.worker.dialer.push_counts))
    hes.close()
    first = invoke_ids[0]
    assert invoke_ids.count(first) == 4  # the first push, then its 3 retries on the same call (others between)
    assert any(o == "failed" for _, o in counts) and any(o == "unconfirmed" for _, o in counts)


def test_a_meter_pushes_where_a_head_end_pointed_it(database_url):
    """A head-end wrote another destination into meter 0's instant push setup (as the unit tests do over
    DLMS; here straight into its state): meter 0's instant pushes go to that head-end, its other pushes
    and meter 1's to the fleet's, even while its call to the other head-end is still open."""
    from fleet.settings import FleetOptions
    from fleet.tools.sink import receive

    options = FleetOptions(meters=2, seed=1)
    home, elsewhere = RunningSink(database_url, options), RunningSink(database_url, options)
    got = {home: set(), elsewhere: set()}
    for sink in got:
        def take(apdu, peer, sink=sink, take=sink.sink.take):
            got[sink].add(receive(sink.sink.directory, apdu)[:2])
            return take(apdu, peer)
        sink.sink.take = take
    try:
        # (the calls stay open the whole run: a push to one head-end must not ride a call to the other)
        with running_meters(2, hes=("127.0.0.1", home.port), speed=SPEED, dial_idle=30.0,
                            database_url=database_url) as m:
            def point():
                from meter_core.device.state import MeterState

                state = m.worker.meters.states.setdefault(0, MeterState())
                for mm in (m.worker.meters.active.get(0), m.worker.meters.cache.get(0)):
                    if mm is not None:
                        state = mm.state
                state.push_settings = ((device_config.INSTANT_PUSH, "destination", f"127.0.0.1:{elsewhere.port}"),)

            m.call(point)
            # a simulated hour, and the pushes looked for have come
            wait_for("meter 0's instant push elsewhere, its block load push and meter 1's instant push home",
                     lambda: m.sim_now() >= m.worker.clock.start + 3600 and (0, device_config.INSTANT_PUSH) in got[elsewhere]
                     and {(0, device_config.BLOCK_LOAD_PUSH), (1, device_config.INSTANT_PUSH)} <= got[home], lambda: got)
        wait_for("the sinks to write all they received", lambda: not (home.sink.pending or elsewhere.sink.pending))
        assert got[elsewhere] == {(0, device_config.INSTANT_PUSH)}
        assert {(0, device_config.BLOCK_LOAD_PUSH), (1, device_config.INSTANT_PUSH)} <= got[home]
    finally:
        home.stop()
        elsewhere.stop()

