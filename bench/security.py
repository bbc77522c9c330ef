"""What ciphering costs a worker: HLS-GMAC associations and ciphered GETs against their plain twins.

One real fleet worker serves M meters (wrapper, HLS mechanism 5). A client process keeps one
connection per meter busy for a fixed time, one request outstanding on each, in four runs:

- associations, plain: client 32 (LLS) AARQ/AARE then RLRQ/RLRE, again and again;
- associations, HLS-GMAC: client 48 AARQ with a glo-initiateRequest, AARE, the ciphered
  reply_to_HLS_authentication and its answer, then RLRQ/RLRE;
- GET of the clock, plain, on an open client-32 association;
- GET of the clock as glo-get-request (suite 0, authenticated and encrypted) on an open client-48
  association, every request with the next invocation counter.

The worker's CPU time per operation comes from /proc, so the client's own work (it ciphers too) does
not count; the ratio ciphered / plain CPU per operation is the figure (aim: ciphering costs < 30 %
more per GET). Printed: operations, seconds, ops/s, server CPU per op, the ratios.

    python -m bench.security [--seconds 6] [--meters 16]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import struct
import sys
import time

from bench._common import cpu_seconds, spawn_worker, stop
from fleet.settings import FleetOptions
from fleet.tools.export import meter_record
from meter_core.codec import crypto as sec
from meter_core.codec.apdu import (
    AARE,
    AARQ,
    ActionRequestNormal,
    CosemMethodDescriptor,
    ciphered,
    decode_apdu,
    encode_apdu,
)
from meter_core.codec.apdu.acse import context_oid, mechanism_oid
from meter_core.codec.apdu.codes import ApplicationContextName, AuthenticationMechanism, Conformance
from meter_core.codec.apdu.xdlms import CosemAttributeDescriptor, GetRequestNormal, InitiateRequest
from meter_core.codec.axdr import encode_length
from meter_core.codec.obis import Obis
from meter_core.codec.wrapper import wrap
from meter_core.device.identity import meter_identity

CONFORMANCE = Conformance.GET | Conformance.ACTION | Conformance.BLOCK_TRANSFER_WITH_GET_OR_READ
GET_CLOCK = encode_apdu(GetRequestNormal(
    invoke_id_and_priority=0xC1, attribute=CosemAttributeDescriptor(8, Obis.parse("0.0.1.0.0.255").to_bytes(), 2)))
RLRQ = bytes.fromhex("6203800100")
PRECOMPUTED = 30_000  # ciphered GETs made per connection before a timed run (16 x 6 s at < 80k/s)
INITIATE = encode_apdu(InitiateRequest(proposed_conformance=CONFORMANCE, client_max_receive_pdu_size=1024))


class Peer:
    """One connection's client side: the keys and counter of client 48 for its meter."""

    def __init__(self, options: FleetOptions, meter_id: int) -> None:
        rec = meter_record(options, meter_id)
        c = next(c for c in rec["clients"] if c["client_sap"] == 48)
        self.port = options.address(meter_id)[1]
        self.ek, self.ak = bytes.fromhex(c["block_key"]), bytes.fromhex(c["auth_key"])
        self.title = bytes.fromhex(c["client_system_title"])
        self.password = meter_identity(options.fleet, meter_id).lls_password.encode()
        self.ic = 0
        self.ctos = os.urandom(16)
        self.start: asyncio.Event | None = None  # set when the timed run starts
        self.ready = False  # connected, associated, requests made

    async def wait(self) -> None:
        self.ready = True
        if self.start is not None:
            await self.start.wait()

    def next_ic(self) -> int:
        self.ic += 1
        return self.ic

    def plain_aarq(self) -> bytes:
        return wrap(32, 1, encode_apdu(AARQ(
            application_context_name=context_oid(ApplicationContextName.LOGICAL_NAME),
            sender_acse_requirements=b"\x07\x80", mechanism_name=mechanism_oid(AuthenticationMechanism.LOW),
            calling_authentication_value=self.password, user_information=INITIATE)))

    def hls_aarq(self) -> bytes:
        return wrap(48, 1, encode_apdu(AARQ(
            application_context_name=context_oid(ApplicationContextName.LOGICAL_NAME_WITH_CIPHERING),
            calling_ap_title=self.title, sender_acse_requirements=b"\x07\x80",
            mechanism_name=mechanism_oid(AuthenticationMechanism.HIGH_GMAC), calling_authentication_value=self.ctos,
            user_information=ciphered.seal(0x21, sec.protect(0x30, self.next_ic(), self.title, self.ek, self.ak,
                                                        INITIATE)))))

    def ciphered(self, apdu: bytes) -> bytes:
        payload = sec.protect(0x30, self.next_ic(), self.title, self.ek, self.ak, apdu)
        return wrap(48, 1, ciphered.seal(ciphered.GLO_OF[apdu[0]], payload))

    def hls_reply(self, aare_frame: bytes) -> bytes:
        aare = decode_apdu(aare_frame[8:])
        assert isinstance(aare, AARE) and aare.result == 0, aare
        f = sec.gmac(0x10, self.next_ic(), self.title, self.ek, self.ak, aare.responding_authentication_value)
        action = encode_apdu(ActionRequestNormal(
            invoke_id_and_priority=0xC1, method=CosemMethodDescriptor(15, bytes((0, 0, 40, 0, 0, 255)), 1),
            parameters=b"\x09" + encode_length(len(f)) + f))
        return self.ciphered(action)


async def _frame(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readexactly(8)
    return head + await reader.readexactly(struct.unpack_from(">H", head, 6)[0])


async def _loop(peer: Peer, mode: str, counter: list, stop_at: list) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", peer.port)
    try:
        if mode.startswith("get"):
            if mode == "get-plain":
                writer.write(peer.plain_aarq())
                await _frame(reader)
                request = wrap(32, 1, GET_CLOCK)
            else:
                writer.write(peer.hls_aarq())
                writer.write(peer.hls_reply(await _frame(reader)))
                answer = await _frame(reader)
                assert answer[8] == 0xCF, answer.hex()  # glo-action-response
                request = None
            # Ciphered requests are made before the clock starts: the client's AES work must not set
            # the pace, or the two runs would differ in how busy the client keeps the server.
            ready = None if request else [peer.ciphered(GET_CLOCK) for _ in range(
                PRECOMPUTED if peer.start is not None else 2000)]
            await peer.wait()
            i = 0
            while time.monotonic() < stop_at[0]:
                if request:
                    writer.write(request)
                else:
                    if i == len(ready):
                        raise RuntimeError("ran out of precomputed requests; raise PRECOMPUTED")
                    writer.write(ready[i])
                    i += 1
                answer = await _frame(reader)
                assert answer[8] in (0xC4, 0xCC), answer.hex()
                counter[0] += 1
        else:
            await peer.wait()
            while time.monotonic() < stop_at[0]:
                if mode == "assoc-plain":
                    writer.write(peer.plain_aarq())
                    assert (await _frame(reader))[8] == 0x61
                    writer.write(wrap(32, 1, RLRQ))
                else:
                    writer.write(peer.hls_aarq())
                    writer.write(peer.hls_reply(await _frame(reader)))
                    answer = await _frame(reader)
                    assert answer[8] == 0xCF, answer.hex()
                    writer.write(wrap(48, 1, RLRQ))
                assert (await _frame(reader))[8] == 0x63
                counter[0] += 1
    finally:
        writer.close()


async def _run(options: FleetOptions, meters: int, mode: str, seconds: float, server_pid: int, start_ic: list):
    peers = [Peer(options, i) for i in range(meters)]
    for p, ic in zip(peers, start_ic):
        p.ic = ic
    counter, stop_at = [0], [time.monotonic() + 0.5]
    await asyncio.gather(*(_loop(p, mode, counter, stop_at) for p in peers))  # warm-up
    counter[0] = 0
    start = asyncio.Event()
    for p in peers:
        p.start, p.ready = start, False
    stop_at[0] = float("inf")
    loops = asyncio.gather(*(_loop(p, mode, counter, stop_at) for p in peers))
    while not all(p.ready for p in peers):  # every connection associated, its requests made
        await asyncio.sleep(0.05)
    cpu0, t0 = cpu_seconds(server_pid), time.monotonic()
    stop_at[0] = t0 + seconds
    start.set()
    await loops
    t1, cpu1 = time.monotonic(), cpu_seconds(server_pid)
    return counter[0], t1 - t0, cpu1 - cpu0, [p.ic for p in peers]


def client_process(options, meters, mode, seconds, server_pid, start_ic, out) -> None:
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as r:
        out.send(r.run(_run(options, meters, mode, seconds, server_pid, start_ic)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--meters", type=int, default=16)
    ap.add_argument("--port-base", type=int, default=22000)
    args = ap.parse_args(argv)
    options = FleetOptions(meters=args.meters, port_base=args.port_base, hls_mechanism=5)
    print(f"ciphering cost, one worker, {args.meters} connections, {args.seconds:.0f} s per run; "
          f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    proc, _pipe = spawn_worker(options, range(args.meters))
    ctx = multiprocessing.get_context("spawn")
    results = {}
    ics = [0] * args.meters
    try:
        for mode in ("assoc-plain", "assoc-hls-gmac", "get-plain", "get-ciphered"):
            parent, child = ctx.Pipe()
            p = ctx.Process(target=client_process,
                            args=(options, args.meters, mode, args.seconds, proc.pid, ics, child))
            p.start()
            n, elapsed, cpu, ics = parent.recv()
            p.join()
            results[mode] = (n, elapsed, cpu)
    finally:
        stop(proc)
    print(f"{'run':>16} {'ops':>8} {'seconds':>8} {'ops/s':>9} {'server CPU/op':>14}")
    for mode, (n, elapsed, cpu) in results.items():
        print(f"{mode:>16} {n:>8} {elapsed:>8.2f} {n / elapsed:>9.0f} {cpu / n * 1e6:>11.1f} us")

    def per_op(mode: str) -> float:
        n, _, cpu = results[mode]
        return cpu / n

    def rate(mode: str) -> float:
        n, elapsed, _ = results[mode]
        return n / elapsed

    a = per_op("assoc-hls-gmac") / per_op("assoc-plain")
    g = per_op("get-ciphered") / per_op("get-plain")
    print(f"HLS-GMAC association: {a:.2f}x the server CPU of an LLS one ({rate('assoc-hls-gmac') / rate('assoc-plain'):.2f}"
          " of its rate)")
    print(f"ciphered GET: {g:.2f}x the server CPU of a plain one ({rate('get-ciphered') / rate('get-plain'):.2f} of its "
          f"rate); aim: ciphering costs < 30 % ({'met' if g < 1.3 else 'not met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
