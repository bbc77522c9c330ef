"""Shared pieces of the benchmarks: process CPU and memory from /proc, spawning a fleet worker."""

from __future__ import annotations

import multiprocessing
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time

from fleet.settings import FleetOptions, RunSettings
from meter_core import NEED_DATA

EPOCH = 1767205800.0
_TICK = os.sysconf("SC_CLK_TCK")


def recv_frame(s: socket.socket, buf: bytearray) -> bytes:
    """The next wrapper frame from blocking socket ``s`` (``buf`` keeps what came after it)."""
    while len(buf) < 8 or len(buf) < 8 + struct.unpack_from(">H", buf, 6)[0]:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    n = 8 + struct.unpack_from(">H", buf, 6)[0]
    frame = bytes(buf[:n])
    del buf[:n]
    return frame


def until(client, s: socket.socket, buf: bytearray, kind, record: list | None = None):
    """Drive sans-I/O ``client`` over ``s`` (wrapper) until its next event, which must be a ``kind``;
    ``record`` keeps each (request, answer) pair."""
    while True:
        out = client.data_to_send()
        if out:
            s.sendall(out)
            reply = recv_frame(s, buf)
            if record is not None:
                record.append((out, reply))
            client.receive_data(reply)
        ev = client.next_event()
        if ev is not NEED_DATA:
            assert isinstance(ev, kind), ev
            return ev


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (from /proc/<pid>/stat)."""
    return sum(cpu_split(pid))


def cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) CPU time of process ``pid`` (from /proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / _TICK, int(fields[12]) / _TICK


def conntrack() -> tuple[int, int] | None:
    """(entries, maximum) of the kernel's connection-tracking table, or None where it is not loaded."""
    try:
        with open("/proc/sys/net/netfilter/nf_conntrack_count") as f:
            count = int(f.read())
        with open("/proc/sys/net/netfilter/nf_conntrack_max") as f:
            return count, int(f.read())
    except OSError:
        return None


def conntrack_warning(before: tuple[int, int] | None) -> str | None:
    """What to say of connection tracking since ``before`` (a `conntrack()`), or None if it did not track.

    Rules that need tracking (podman's port publishing: netavark's nat table) make the kernel track every
    loopback connection: each costs kernel time, and at thousands of connections a second the table fills
    within seconds, after which SYNs are dropped and clients wait out their retransmissions; the figures
    of such a run are void."""
    after = conntrack()
    if before is None or after is None or after[0] < before[0] + 1000 and after[0] < after[1] * 0.9:
        return None  # a few entries come and go with the machine's own traffic
    full = "FULL, SYNs dropped: the figures are void" if after[0] >= after[1] * 0.9 else "growing"
    return (f"WARNING: the kernel tracked these connections (nf_conntrack {after[0]} of {after[1]}, {full}); "
            f"`nft list tables` shows the rules that turned tracking on (podman's port publishing leaves them)")


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def spawn_worker(options: FleetOptions, shard: range, slot: int = 0, listener=None):
    """Start one real fleet worker process (as the supervisor does); returns (process, pipe) once ready.
    ``listener``: address mode, the slot's socket of a reuseport group (`fleet.runtime.address`)."""
    settings = RunSettings(options=options, workers=1, sim_start=time.time(), sim_t0=time.monotonic(),
                           epoch_start=EPOCH, heartbeat_interval=1.0)
    return _spawn(settings, shard, slot, listener)


def spawn_worker_settings(settings: RunSettings, shard: range, slot: int = 0):
    """A worker with the given run settings (dial mode, speed, ...); returns (process, pipe) once ready.
    Keep the pipe: a worker whose supervisor's end is gone stops."""
    return _spawn(settings, shard, slot)


def _spawn(settings: RunSettings, shard: range, slot: int, listener=None):
    from fleet.runtime.worker import worker_main

    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=worker_main, args=(slot, shard, settings, child, listener), daemon=True)
    proc.start()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if parent.poll(1.0):
            msg = parent.recv()
            if msg[0] == "ready":
                return proc, parent
            if msg[0] == "boot-error":
                raise RuntimeError(msg[2])
        if not proc.is_alive():
            raise RuntimeError(f"worker exited with {proc.exitcode}")
    raise RuntimeError("worker did not become ready")


def stop(proc) -> None:
    proc.terminate()
    proc.join(20)
    if proc.is_alive():
        proc.kill()
        proc.join()


def callgrind(module: str, *args: str) -> int:
    """Instructions valgrind's callgrind counts for the whole process ``python -m module args``."""
    with tempfile.TemporaryDirectory() as tmp:
        run = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/out", sys.executable,
                              "-m", module, *args], capture_output=True, text=True, check=False)
    found = re.search(r"Collected : (\d+)", run.stderr)
    if run.returncode != 0 or found is None:
        raise SystemExit(f"valgrind failed ({module} {' '.join(args)}): {run.stderr.strip().splitlines()[-1:]}")
    return int(found.group(1))


def valgrind_missing(bench: str) -> bool:
    """Say so (on stderr) when valgrind is not installed: the callgrind benches need it."""
    if shutil.which("valgrind") is not None:
        return False
    print(f"{bench} needs valgrind (Debian: apt-get install valgrind)", file=sys.stderr)
    return True


def instructions_per(module: str, which: str, flag: str, count: int) -> float:
    """Instructions of one unit of ``which`` (``python -m module --inner which flag count``): callgrind's count
    with ``count`` units less its count with none, over ``count``."""
    return (callgrind(module, "--inner", which, flag, str(count)) - callgrind(module, "--inner", which, flag, "0")) / count
