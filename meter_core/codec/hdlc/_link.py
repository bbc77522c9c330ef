"""Pieces both HDLC stations share: the LLC header and the send side of a sliding window.

LLC sublayer (IEC 62056-46 clause 5): every APDU in an I-frame starts with destination LSAP 0xE6,
source LSAP 0xE6 (command, client to server) or 0xE7 (response, server to client) and LLC
quality 0x00. A segmented APDU carries it in its first segment only.
"""

from __future__ import annotations

from collections import deque

from meter_core.codec.hdlc.frames import Frame, FrameKind, HdlcAddress, control_field

LLC_COMMAND = b"\xe6\xe6\x00"
LLC_RESPONSE = b"\xe6\xe7\x00"
LLC_SIZE = 3


class SendWindow:
    """Outgoing I-frames: the APDU segments not yet sent and those sent but not acknowledged.

    Sequence numbers are modulo 8 (ISO/IEC 13239 clause 5.3.1). V(S) is the next N(S) to send;
    the oldest unacknowledged frame has N(S) = V(S) - len(unacked).
    """

    __slots__ = ("queue", "unacked", "vs")

    def __init__(self) -> None:
        self.queue: deque[tuple[bytes, bool]] = deque()  # (information field, more segments follow)
        self.unacked: list[tuple[bytes, bool]] = []
        self.vs = 0

    def reset(self) -> None:
        self.queue.clear()
        self.unacked.clear()
        self.vs = 0

    def push_apdu(self, data: bytes, max_info: int) -> None:
        """Queue ``data`` (LLC header included) cut into information fields of ``max_info`` octets."""
        n = len(data)
        if n <= max_info:
            self.queue.append((data, False))
            return
        view = memoryview(data)
        for off in range(0, n, max_info):
            end = off + max_info
            self.queue.append((bytes(view[off:end]), end < n))

    def acknowledge(self, nr: int) -> bool:
        """Take N(R) from the peer; False when it acknowledges a frame never sent (invalid N(R))."""
        unacked = self.unacked
        k = (nr - self.vs + len(unacked)) & 7
        if k > len(unacked):
            return False
        if k:
            del unacked[:k]
        return True

    def frames(
        self, destination: HdlcAddress, source: HdlcAddress, vr: int, window: int, retransmit: bool
    ) -> list[bytes]:
        """The I-frames to send now, the last one with P/F set; empty when there is nothing.

        With ``retransmit`` the unacknowledged frames are sent again first (go-back-N, ISO/IEC
        13239 clause 6.11.4.2.2); then new segments fill the window.
        """
        out: list[tuple[int, bytes, bool]] = []
        unacked = self.unacked
        if retransmit and unacked:
            base = self.vs - len(unacked)
            out.extend(((base + i) & 7, info, more) for i, (info, more) in enumerate(unacked))
        queue = self.queue
        while queue and len(unacked) < window:
            info, more = queue.popleft()
            unacked.append((info, more))
            out.append((self.vs, info, more))
            self.vs = (self.vs + 1) & 7
        last = len(out) - 1
        return [
            Frame(
                destination=destination, source=source, info=info, segmented=more,
                control=control_field(FrameKind.I, pf=i == last, ns=ns, nr=vr),
            ).to_bytes()
            for i, (ns, info, more) in enumerate(out)
        ]
