"""Independent DLMS clients driven over a real TCP socket: gurux-dlms and dlms-cosem.

gurux-dlms only builds and parses frames, so the socket loop here is ours (the loop Gurux's own
example client runs); dlms-cosem brings its own blocking TCP I/O.
"""

from __future__ import annotations

import socket

from gurux_dlms import GXByteBuffer, GXDLMSClient, GXReplyData
from gurux_dlms.enums import Authentication, InterfaceType

from meter_core.connection import Transport


class GuruxSession:
    """One TCP connection to a meter, spoken to by a gurux-dlms GXDLMSClient."""

    def __init__(self, port: int, transport: Transport, *, client_sap: int = 16, password: str | None = None,
                 physical_address: int | None = None, max_pdu: int | None = None, host: str = "127.0.0.1",
                 secure: dict | None = None, invocation_counter: int = 1):
        """``secure``: the onboarding file's entry for a ciphered client (48, 64, 80): HLS, suite 0
        authenticated and encrypted, with its keys, starting at ``invocation_counter``."""
        hdlc = transport is Transport.HDLC
        if hdlc:
            server = GXDLMSClient.getServerAddress(1, physical_address, 4) if physical_address else 1
        else:
            server = 1
        interface = InterfaceType.HDLC if hdlc else InterfaceType.WRAPPER
        if secure is not None:
            from gurux_dlms.enums import Security
            from gurux_dlms.secure import GXDLMSSecureClient

            auth = {"high": Authentication.HIGH, "high-gmac": Authentication.HIGH_GMAC,
                    "high-ecdsa": Authentication.HIGH_ECDSA}[secure["authentication"]]
            secret = bytes.fromhex(secure["hls_secret"]) if auth is Authentication.HIGH else None
            self.client = GXDLMSSecureClient(True, secure["client_sap"], server, auth, secret, interface)
            ciphering = self.client.ciphering
            ciphering.security = Security.AUTHENTICATION_ENCRYPTION
            ciphering.systemTitle = bytes.fromhex(secure["client_system_title"])
            ciphering.blockCipherKey = bytes.fromhex(secure["block_key"])
            ciphering.authenticationKey = bytes.fromhex(secure["auth_key"])
            ciphering.invocationCounter = invocation_counter
            if secure.get("security_suite"):
                from gurux_dlms.objects.enums import SecuritySuite

                ciphering.securitySuite = SecuritySuite(secure["security_suite"])
            if auth is Authentication.HIGH_ECDSA:
                from gurux_dlms.ecdsa import GXPrivateKey, GXPublicKey

                ciphering.signingKeyPair = (
                    GXPublicKey.fromRawBytes(bytes.fromhex(secure["server_signing_public_key"])),
                    GXPrivateKey.fromRawBytes(bytes.fromhex(secure["client_signing_key"])))
        else:
            auth = Authentication.LOW if password is not None else Authentication.NONE
            self.client = GXDLMSClient(True, client_sap, server, auth, password, interface)
        self.secure = secure is not None
        if max_pdu is not None:
            self.client.setMaxReceivePDUSize(max_pdu)
        self.hdlc = hdlc
        self.sock = socket.create_connection((host, port), timeout=10)
        self.frames_received = 0

    # -- the exchange loop (as in Gurux's example reader) ------------------------------------------

    def _packet(self, data, reply: GXReplyData) -> None:
        if data is None:
            return
        notify = GXReplyData()
        self.sock.sendall(bytes(data))
        rd = GXByteBuffer()
        while not self.client.getData(rd, reply, notify):
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("meter closed the connection")
            rd.set(chunk)
        self.frames_received += 1

    def exchange(self, data, reply: GXReplyData | None = None) -> GXReplyData:
        reply = reply if reply is not None else GXReplyData()
        if isinstance(data, list):
            for item in data:
                reply.clear()
                self.exchange(item, reply)
            return reply
        self._packet(data, reply)
        while reply.isMoreData():
            self._packet(None if reply.isStreaming() else self.client.receiverReady(reply), reply)
        return reply

    # -- what a head-end does -----------------------------------------------------------------------

    def open(self) -> None:
        if self.hdlc:
            reply = self.exchange(self.client.snrmRequest())
            self.client.parseUAResponse(reply.data)
        reply = self.exchange(self.client.aarqRequest())
        self.client.parseAareResponse(reply.data)
        if self.secure:  # HLS passes 3 and 4
            reply = self.exchange(self.client.getApplicationAssociationRequest())
            self.client.parseApplicationAssociationResponse(reply.data)

    def read(self, obj, attribute: int):
        reply = self.exchange(self.client.read(obj, attribute)[0])
        if reply.error:
            raise GuruxError(reply.error)
        return self.client.updateValue(obj, attribute, reply.value)

    def object_list(self):
        reply = self.exchange(self.client.getObjectsRequest())
        return self.client.parseObjects(reply.data, True)

    def close(self) -> None:
        try:
            self.exchange(self.client.releaseRequest())
            if self.hdlc:
                self.exchange(self.client.disconnectRequest())
        finally:
            self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.sock.close()


class GuruxError(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(f"gurux reply error {code}")
        self.code = code


def dlms_cosem_client(port: int, transport: Transport, *, client_sap: int = 16, password: str | None = None,
                      physical_address: int | None = None, max_pdu: int = 65535, secure: dict | None = None,
                      invocation_counter: int = 1, host: str = "127.0.0.1"):
    """A dlms-cosem DlmsClient for one meter (connects when its session starts); ``secure`` as for
    `GuruxSession`."""
    from dlms_cosem.client import DlmsClient
    from dlms_cosem.io import BlockingTcpIO, HdlcTransport, TcpTransport
    from dlms_cosem.security import LowLevelSecurityAuthentication, NoSecurityAuthentication

    io = BlockingTcpIO(host=host, port=port, timeout=10)
    if transport is Transport.HDLC:
        tr = HdlcTransport(client_logical_address=client_sap, server_logical_address=1, io=io,
                           server_physical_address=physical_address, extended_addressing=physical_address is not None,
                           timeout=10)
    else:
        tr = TcpTransport(client_logical_address=client_sap, server_logical_address=1, io=io, timeout=10)
    if secure is not None:
        from dlms_cosem.security import (
            HighLevelSecurityCommonAuthentication,
            HighLevelSecurityGmacAuthentication,
        )

        if secure["authentication"] == "high-gmac":
            auth = HighLevelSecurityGmacAuthentication(challenge_length=16)
        else:
            auth = HighLevelSecurityCommonAuthentication(secret=bytes.fromhex(secure["hls_secret"]))
        return DlmsClient(transport=tr, authentication=auth, max_pdu_size=max_pdu, timeout=10,
                          encryption_key=bytes.fromhex(secure["block_key"]),
                          authentication_key=bytes.fromhex(secure["auth_key"]),
                          client_system_title=bytes.fromhex(secure["client_system_title"]),
                          client_initial_invocation_counter=invocation_counter,
                          security_suite=secure.get("security_suite", 0))
    auth = (LowLevelSecurityAuthentication(secret=password.encode()) if password is not None
            else NoSecurityAuthentication())
    return DlmsClient(transport=tr, authentication=auth, max_pdu_size=max_pdu, timeout=10)


def onboarding_client(running, meter_id: int = 0, client_sap: int = 48) -> dict:
    """The onboarding file's entry for ``client_sap`` of meter ``meter_id`` of a running fleet."""
    from fleet.tools.export import meter_record

    return next(c for c in meter_record(running.options, meter_id)["clients"] if c["client_sap"] == client_sap)


def next_invocation_counter(running, meter_id: int = 0, setup: int = 3) -> int:
    """What IS 15959 head-ends do before a ciphered association: read 0.0.43.1.e.255 over the public
    client, and use it + 1."""
    from gurux_dlms.objects import GXDLMSData

    s = GuruxSession(running.port(meter_id), running.options.transport,
                     physical_address=running.identity(meter_id).hdlc_physical_address)
    s.open()
    try:
        return int(s.read(GXDLMSData(f"0.0.43.1.{setup}.255"), 2)) + 1
    finally:
        s.close()


def utility_settings(running, meter_id: int = 0, max_pdu: int | None = None) -> GuruxSession:
    """gurux-dlms as a head-end's programming session: client 48, HLS and ciphered, opened."""
    s = GuruxSession(running.port(meter_id), running.options.transport,
                     physical_address=running.identity(meter_id).hdlc_physical_address, max_pdu=max_pdu,
                     secure=onboarding_client(running, meter_id), invocation_counter=next_invocation_counter(
                         running, meter_id))
    s.open()
    return s
