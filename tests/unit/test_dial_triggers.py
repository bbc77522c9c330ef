"""Dial mode's triggered pushes when a command changes meters while the trigger scanner is in its first
pass: each push the change triggers is queued once, whether the scanner had looked at the meter already
(the rescan finds it) or not yet (the scanner finds it, at the meter as changed)."""

from __future__ import annotations

import asyncio
import collections
import time

from fleet.runtime.faults import Command
from fleet.runtime.worker import Worker
from fleet.settings import FleetOptions, RunSettings
from meter_core.device import config as device_config
from meter_core.device import eventprofiles
from meter_core.device import pushes as push
from meter_core.device.clock import SimClock
from meter_core.device.config import DEFAULT_DEVICE

START = 1796590800.0  # 2026-12-07 02:30 IST
METERS = 120  # the scanner yields to the loop every 50 meters


def test_a_power_failure_during_the_scanners_first_pass_queues_each_last_gasp_once():
    options = FleetOptions(meters=METERS, seed=1, mode="dial")
    settings = RunSettings(options=options, sim_start=START, epoch_start=1767205800.0, hes=("127.0.0.1", 9))
    worker = Worker(0, range(METERS), settings, pipe=None)

    async def go() -> float:
        worker.loop = asyncio.get_running_loop()
        worker.clock = SimClock(start=START, t0=time.monotonic(), speed=1.0)
        dialer = worker.dialer
        dialer._heap, dialer._heap_changed = [], asyncio.Event()
        dialer._alerts_scanned = (START, -1)  # as `Dialer.run` leaves it
        scanner = asyncio.create_task(dialer.scan_alerts(START))
        await asyncio.sleep(0)  # the scanner looks at its first 50 meters, then yields
        assert dialer._alerts_scanned == (START, 49)
        _, t = worker.faults.apply(Command(1, "power-failure", None, None, 1.0))
        while dialer._alerts_scanned[0] == START:  # the rest of the first pass
            await asyncio.sleep(0)
        scanner.cancel()
        return t

    t = asyncio.run(go())
    queued = collections.Counter((mid, p, due) for due, mid, p, _ in worker.dialer._heap)
    assert max(queued.values()) == 1, [k for k, n in queued.items() if n > 1][:5]
    gasps = {mid for due, mid, p, bits in worker.dialer._heap if p == device_config.ALERT_PUSH and 85 in bits
             and abs(due - push.randomisation(DEFAULT_DEVICE, 1, mid, p) - t) < 1e-6}
    # every meter whose ESW the failure raised bit 85 on, before the scanner's position and after it
    raised = {mid for mid in range(METERS)
              if 85 not in eventprofiles.esw_bits(worker.meters.for_rows(mid), t - 1e-3)}
    assert gasps == raised and {m for m in raised if m <= 49} and {m for m in raised if m > 49}
