"""The `fleet` image (deploy/container/Containerfile) built on a local Debian base and run with podman: meters
and /health through ports published on loopback, PostgreSQL and the fleet secret from the environment, and
a SIGTERM (`podman stop`) that stops the fleet cleanly without losing a ground-truth row.

Run alone with ``pytest -m image -s`` to see the timings. The base and the image are kept for the next
run (layers cached: an unchanged tree builds in seconds); the container is always removed.
"""

from __future__ import annotations

import datetime as dt
import http.client
import math
import os
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

import pytest
from gurux_dlms.objects import GXDLMSClock, GXDLMSData

from meter_core.connection import Transport
from meter_core.device.identity import FleetConfig, meter_identity
from tests.database import fetch
from tests.image import support
from tests.interop.clients import GuruxSession
from tests.servers import free_port_base

pytestmark = [pytest.mark.image, pytest.mark.integration]

METERS, WORKERS, SPEED = 4, 2, 900.0
START = "2026-06-01T00:00:00+05:30"  # a fresh database: each meter's history starts here
SECRET = "image-test-fleet-secret"
IST = dt.timezone(dt.timedelta(hours=5, minutes=30))
SIZE_LIMIT = 350e6  # bytes; measured 228 MB on the Debian base (README.md beside the Containerfile)
START_LIMIT = 30.0  # seconds from `podman run` to /health answering 200
STOP_GRACE = 20  # podman stop --time: SIGTERM, then SIGKILL after this many seconds


def health(port: int) -> tuple[int, str] | None:
    """(status, text) of GET /health through the published port; None while nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=3) as r:
            return r.status, r.read().decode().strip()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode().strip()
    except (OSError, http.client.HTTPException):
        return None  # the port forwarder accepts before the fleet listens, then resets


def read_meter(port: int, meter_id: int, *, client_sap: int = 16, password: str | None = None) -> float:
    """Read meter ``meter_id``'s serial number (checked) and clock with gurux-dlms; the clock in Unix time."""
    s = GuruxSession(port, Transport.WRAPPER, client_sap=client_sap, password=password)
    try:
        s.open()
        serial = bytes(s.read(GXDLMSData("0.0.96.1.0.255"), 2)).decode()
        clock = s.read(GXDLMSClock("0.0.1.0.0.255"), 2)
        s.close()
    finally:
        s.sock.close()
    assert serial == meter_identity(FleetConfig(seed=1), meter_id).serial
    return clock.value.replace(tzinfo=IST).timestamp()  # the meter shows IST wall time, to the second


def block_times(url: str) -> dict[int, list[float]]:
    """Capture times (Unix time) of every meter's block-load rows, in order; all of one capture period."""
    times: dict[int, list[float]] = {}
    periods = set()
    for r in fetch(url, "SELECT meter_id, capture_time, interval_seconds FROM block_load_profile "
                        "ORDER BY meter_id, capture_time"):
        times.setdefault(r["meter_id"], []).append(r["capture_time"].timestamp())
        periods.add(r["interval_seconds"])
    assert len(periods) <= 1, periods
    return times


@pytest.mark.timeout(900)
def test_image_serves_meters_and_a_sigterm_loses_no_row(fleet_image, database_url):
    began = time.monotonic()
    size_mb = fleet_image.size / 1e6
    base = "reused" if fleet_image.base_seconds is None else f"built in {fleet_image.base_seconds:.0f} s"
    print(f"\nimage {fleet_image.name}: {size_mb:.0f} MB; base {base}; image built in "
          f"{fleet_image.build_seconds:.0f} s")
    assert fleet_image.size < SIZE_LIMIT, f"{size_mb:.0f} MB"

    port_base = free_port_base(METERS + 2, low=24000, high=25000)
    metrics_port, db_port = port_base + METERS, port_base + METERS + 1
    proxy = support.LoopbackProxy(database_url, db_port)
    name = f"cosem-fleet-test-{uuid.uuid4().hex[:8]}"
    parts = urllib.parse.urlsplit(proxy.url)
    inside = parts._replace(netloc=parts.netloc.replace("127.0.0.1", support.HOST_LOOPBACK))  # host loopback
    # The URL and secret by environment (`-e NAME`: their values stay off podman's command line).
    env = {**os.environ, "FLEET_DATABASE_URL": urllib.parse.urlunsplit(inside), "FLEET_SECRET": SECRET}
    start = dt.datetime.fromisoformat(START).timestamp()
    try:
        run_at = time.monotonic()
        with support.container(
            name, *support.RUNTIME, *support.LIMITS, *support.NETWORK, "--no-healthcheck",
            "--publish", f"127.0.0.1:{port_base}-{port_base + METERS - 1}:4059-{4059 + METERS - 1}",
            "--publish", f"127.0.0.1:{metrics_port}:9464",
            "--env", "FLEET_DATABASE_URL", "--env", "FLEET_SECRET",
            fleet_image.name, "run", "--host", "0.0.0.0", "--meters", str(METERS), "--workers", str(WORKERS),
            "--speed", str(SPEED), "--start", START, env=env,
        ):
            # Healthy: every worker ready, seen through the published port.
            deadline = run_at + 120
            while (answer := health(metrics_port)) is None or answer[0] != 200:
                assert time.monotonic() < deadline, f"/health: {answer}\n{logs(name)}"
                time.sleep(0.1)
            start_seconds = time.monotonic() - run_at
            print(f"podman run to /health 200: {start_seconds:.1f} s")
            assert answer == (200, f"{WORKERS} of {WORKERS} workers ready")
            assert start_seconds < START_LIMIT

            # Meters of both workers through their published ports; client 32's password derives from
            # FLEET_SECRET, so its association says the secret came through.
            read_meter(port_base + 0, 0)
            read_meter(port_base + METERS - 1, METERS - 1)
            ident = meter_identity(FleetConfig(seed=1, secret=SECRET.encode()), 1)
            read_meter(port_base + 1, 1, client_sap=32, password=ident.lls_password)

            # tini is PID 1, the fleet runs as the image's user, and the image's HEALTHCHECK passes.
            pid1 = ("import os; print(os.stat('/proc/1').st_uid, "
                    "open('/proc/1/cmdline').read().split('\\0')[0])")
            probe = support.podman("exec", name, "python3", "-c", pid1).stdout.split()
            assert probe == ["10001", "tini"], probe
            support.podman("exec", name, *support.healthcheck(fleet_image.name))

            # The ground truth goes to the database while the fleet runs.
            deadline = time.monotonic() + 60
            while not ((t := block_times(database_url)).keys() == set(range(METERS))
                       and all(len(v) >= 3 for v in t.values())):
                assert time.monotonic() < deadline, f"block rows: {t}\n{logs(name)}"
                time.sleep(0.3)

            # Where the meters' clock is just before the stop: from it, the simulated time at the stop.
            read_from = time.monotonic()
            clock = read_meter(port_base + 2, 2)
            read_to = stop_from = time.monotonic()
            stopped = support.podman("stop", "--time", str(STOP_GRACE), name, timeout=STOP_GRACE + 30)
            stop_to = time.monotonic()
            print(f"podman stop: {stop_to - stop_from:.1f} s")
            assert stopped.returncode == 0
            state = support.podman("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip()
            text = logs(name)
    finally:
        proxy.close()

    assert state == "0", text  # 143 or 137 would be a fleet that did not handle SIGTERM, or was killed
    assert any(line.endswith("fleet: stopped") for line in text.splitlines()), text
    for bad in ("Traceback", "unwritten", "not written or spooled", "killing it", "died"):
        assert bad not in text, text

    # No row lost: the simulated time at the stop is at least `due` (clock read, to the second, plus the
    # wall time since at SPEED), at most `bound`. Every block captured up to `due` is in the database, as
    # the first ones were, a capture period apart from the run's start; the progress each worker
    # recorded with its last rows reaches `due`. Rows flushed as the workers stop account for the last
    # block(s): a lost final flush leaves the progress at the last pass before the stop, short of `due`.
    due = clock - 1 + (stop_from - read_to) * SPEED
    bound = clock + 1 + (stop_to - read_from) * SPEED
    progress = fetch(database_url, "SELECT meter_from, meter_to, captured_until FROM capture_progress "
                                   "ORDER BY meter_from")
    assert [(r["meter_from"], r["meter_to"]) for r in progress] == [(0, 2), (2, 4)], progress
    for r in progress:
        assert due <= r["captured_until"] <= bound, (r, due, bound)
    times = block_times(database_url)
    period = fetch(database_url, "SELECT DISTINCT interval_seconds FROM block_load_profile")[0][0]
    assert sorted(times) == list(range(METERS))
    for meter_id, stamps in times.items():
        assert stamps == [start + period * k for k in range(1, len(stamps) + 1)], (meter_id, stamps)
        assert math.floor((due - start) / period) <= len(stamps) <= math.floor((bound - start) / period), \
            (meter_id, len(stamps), due, bound)
    at = [f"{dt.datetime.fromtimestamp(t, IST):%H:%M:%S}" for t in (due, bound)]
    counts = sorted({len(v) for v in times.values()})
    print(f"blocks per meter: {counts} ({period} s each); stop at simulated {at[0]}-{at[1]}; "
          f"test {time.monotonic() - began:.0f} s")


def logs(name: str) -> str:
    """The container's output (the fleet logs to stderr)."""
    proc = support.podman("logs", name, check=False)
    return (proc.stdout + proc.stderr).strip()
