"""fleet hes-sink: pushes from several meters over TCP, plain and ciphered, each recorded once in
push_received; a push sent twice is one row; a push with a bad tag or from a stranger is refused and
counted, and the sink goes on."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import asyncpg
import pytest

from fleet.settings import FleetOptions
from fleet.tools.sink import Directory, PushSink
from meter_core import notification
from meter_core.device import config as device_config
from meter_core.device.clock import SimClock
from meter_core.device.meter import Meter

pytestmark = pytest.mark.integration
EPOCH = 1767205800.0


class RunningSink:
    def __init__(self, url: str, options: FleetOptions, port: int = 0) -> None:
        self.url, self.options = url, options
        self.loop = asyncio.new_event_loop()
        self.sink = PushSink(url, Directory(options), flush_interval=0.05)
        if not port:
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            s.close()
        self.port = port
        started = threading.Event()

        def run():
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(self.sink.start("127.0.0.1", self.port))
            started.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert started.wait(10)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.sink.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


async def _count(url: str) -> list:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch("SELECT meter_id, push_logical_name, ciphered FROM push_received ORDER BY 1, 2")
    finally:
        await conn.close()


def test_pushes_are_recorded_once_and_bad_ones_refused(database_url):
    options = FleetOptions(meters=5, seed=7)
    sink = RunningSink(database_url, options)
    try:
        now = time.time()
        sent = set()
        frames = []
        for meter_id in range(5):
            m = Meter(options.fleet, meter_id, epoch_start=EPOCH, clock=SimClock.real_time())
            for i, p in enumerate((device_config.INSTANT_PUSH, device_config.ALERT_PUSH)):
                apdu = notification.data_notification(m, p, now, i + 1)
                ciphered = meter_id % 2 == 1
                frames.append(notification.frame(m, notification.protect(m, apdu) if ciphered else apdu, False))
                sent.add((meter_id, p, ciphered))
        frames.append(frames[0])  # delivered twice
        bad = bytearray(frames[2 * 1])  # meter 1's ciphered instant push with its tag broken
        bad[-1] ^= 1
        frames.append(bytes(bad))
        stranger = Meter(FleetOptions(meters=5, seed=8).fleet, 0, epoch_start=EPOCH, clock=SimClock.real_time())
        frames.append(notification.frame(stranger, notification.protect(stranger, notification.data_notification(
            stranger, device_config.INSTANT_PUSH, now, 9)), False))
        # one connection per meter, as meters dial in; the duplicates and the bad ones on their own
        for chunk in (frames[0:2], frames[2:4], frames[4:6], frames[6:8], frames[8:10], frames[10:]):
            with socket.create_connection(("127.0.0.1", sink.port), timeout=5) as s:
                s.sendall(b"".join(chunk))
        deadline = time.monotonic() + 10
        while len(asyncio.run(_count(database_url))) < len(sent) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.3)  # the duplicate's batch, if any, lands too
        rows = asyncio.run(_count(database_url))
        assert {(r["meter_id"], r["push_logical_name"], r["ciphered"]) for r in rows} == sent
        assert len(rows) == len(sent)  # the push received twice is one row
        assert sink.sink.refused["undecodable"] == 2  # the broken tag and the stranger
        assert sink.sink.received == len(sent) + 1
    finally:
        sink.stop()
