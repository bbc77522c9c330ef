"""Pushes our meters build, decoded by independent libraries listening on loopback TCP: gurux-dlms
(its client's notification handling, wrapper and HDLC UI frames) and dlms-cosem (its DataNotification
and general-glo-ciphering parsing), plain and ciphered with the push setup's keys.

The bytes are the meter's (meter_core.device.pushes); the fleet's sending of them (schedules, dial mode) is the
rest of issue 6. Each listener checks the decoded values against what the meter serves.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest
from gurux_dlms import GXByteBuffer, GXDLMSClient, GXReplyData
from gurux_dlms.enums import InterfaceType, Security
from gurux_dlms.secure import GXDLMSSecureClient

from meter_core import notification
from meter_core.cosem.ic import script_table, single_action_schedule
from meter_core.device import config as device_config
from meter_core.device import pushes as push
from meter_core.device.clock import SimClock
from meter_core.device.identity import FleetConfig, MeterKind
from meter_core.device.keys import derived_keys
from meter_core.device.meter import Meter

pytestmark = pytest.mark.interop

EPOCH = 1767205800.0
PUSHES = (device_config.INSTANT_PUSH, device_config.ALERT_PUSH, device_config.BLOCK_LOAD_PUSH, device_config.DAILY_LOAD_PUSH)


def listen_once(payload: bytes) -> bytes:
    """A listener on 127.0.0.1 that takes one connection and returns what arrived; ``payload`` is sent
    to it as a meter in dial mode would."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    got: list[bytes] = []

    def accept():
        conn, _ = server.accept()
        with conn:
            buf = b""
            while chunk := conn.recv(65536):
                buf += chunk
            got.append(buf)

    t = threading.Thread(target=accept)
    t.start()
    with socket.create_connection(server.getsockname(), timeout=5) as s:
        s.sendall(payload)
    t.join(5)
    server.close()
    return got[0]


def meter(kind: MeterKind) -> Meter:
    return Meter(FleetConfig(seed=7, kind=kind), 3, epoch_start=EPOCH, clock=SimClock.real_time())


def gurux_listener(hdlc: bool, keys=None, server_title: bytes | None = None):
    interface = InterfaceType.HDLC if hdlc else InterfaceType.WRAPPER
    if keys is None:
        return GXDLMSClient(True, push.PUSH_CLIENT_SAP, 1, interfaceType=interface)
    c = GXDLMSSecureClient(True, push.PUSH_CLIENT_SAP, 1, interfaceType=interface)
    c.ciphering.security = Security.AUTHENTICATION_ENCRYPTION
    c.ciphering.blockCipherKey = keys.ek
    c.ciphering.authenticationKey = keys.ak
    c.ciphering.systemTitle = b"HESSINK1"
    return c


def gurux_decode(client, data: bytes):
    reply, notify = GXReplyData(), GXReplyData()
    client.getData(GXByteBuffer(data), reply, notify)
    assert notify.complete or notify.value is not None, "gurux saw no notification"
    return notify.value


@pytest.mark.parametrize("kind", list(MeterKind), ids=[k.value for k in MeterKind])
@pytest.mark.parametrize("hdlc", [False, True], ids=["wrapper", "hdlc"])
@pytest.mark.parametrize("ciphered", [False, True], ids=["plain", "ciphered"])
def test_gurux_decodes_every_push(kind, hdlc, ciphered):
    m = meter(kind)
    now = time.time()
    keys = m.keys().sets[4] if ciphered else None
    for i, p in enumerate(PUSHES):
        apdu = notification.data_notification(m, p, now, i + 1)
        wire = notification.frame(m, notification.protect(m, apdu) if ciphered else apdu, hdlc)
        value = gurux_decode(gurux_listener(hdlc, keys), listen_once(wire))
        device_id, push_ln, clock, *data = value
        assert bytes(device_id) == m.identity.device_id.encode()
        assert bytes(push_ln) == bytes(int(x) for x in p.split("."))
        assert len(bytes(clock)) == 12
        if p == device_config.ALERT_PUSH:
            assert len(str(data[0])) == 128  # the ESW as 128 bits
        elif p == device_config.INSTANT_PUSH:
            kwh = m.readings(m.sim(now))[0]
            assert data[-4] in range(kwh - 2, kwh + 1)  # active import register, as served


@pytest.mark.parametrize("ciphered", [False, True], ids=["plain", "ciphered"])
def test_dlms_cosem_parses_every_push(ciphered):
    from dlms_cosem import security
    from dlms_cosem.connection import XDlmsApduFactory
    from dlms_cosem.protocol import xdlms
    from dlms_cosem.utils import parse_as_dlms_data

    m = meter(MeterKind.THREE_PHASE)
    now = time.time()
    keys = derived_keys(m.fleet, 3).sets[4]
    for i, p in enumerate(PUSHES):
        apdu = notification.data_notification(m, p, now, i + 1)
        wire = listen_once(notification.frame(m, notification.protect(m, apdu) if ciphered else apdu, False))
        assert wire[2:4] == b"\x00\x01" and wire[4:6] == b"\x00\x40"  # from the meter to the push client
        parsed = XDlmsApduFactory.apdu_from_bytes(wire[8:])
        if ciphered:
            assert isinstance(parsed, xdlms.GeneralGlobalCipher)
            assert bytes(parsed.system_title) == m.identity.system_title
            plain = security.decrypt(security_control=parsed.security_control, system_title=parsed.system_title,
                                     invocation_counter=parsed.invocation_counter, key=keys.ek,
                                     cipher_text=parsed.ciphered_text, auth_key=keys.ak)
            parsed = XDlmsApduFactory.apdu_from_bytes(plain)
        assert isinstance(parsed, xdlms.DataNotification)
        assert parsed.long_invoke_id_and_priority.long_invoke_id == i + 1
        ln = bytes(int(x) for x in p.split("."))
        if p == device_config.ALERT_PUSH:  # dlms-cosem cannot parse a bit-string (BitStringData): check the layout
            assert parsed.body[:2] == b"\x02\x04" and b"\x09\x06" + ln in parsed.body
            assert parsed.body.endswith(b"\x04\x81\x80" + parsed.body[-16:])  # ESW: bit-string of 128
            continue
        body = parse_as_dlms_data(parsed.body)
        assert bytes(body[0]) == m.identity.device_id.encode() and bytes(body[1]) == ln


def test_push_method_sends_the_push_on_the_head_ends_connection():
    """push() (class 40 method 1) over a ciphered client-48 association: the answer, then the push on
    the same connection, which gurux-dlms decodes with the push keys."""
    from meter_core import NEED_DATA
    from meter_core.client import ActionDone, Associated, ClientSecurity, ClientSettings, DlmsClient
    from meter_core.codec.axdr import Data, DataType
    from meter_core.connection import Transport
    from tests.interop.clients import next_invocation_counter, onboarding_client
    from tests.servers import running_meters

    with running_meters(1, Transport.WRAPPER) as m:
        security = ClientSecurity.from_onboarding(onboarding_client(m), next_invocation_counter(m))
        client = DlmsClient(ClientSettings(client_sap=48, security=security))
        with socket.create_connection(("127.0.0.1", m.port(0)), timeout=5) as s:
            def talk():
                while (ev := client.next_event()) is NEED_DATA:
                    out = client.data_to_send()  # (HLS pass 3 goes out by itself after the AARE)
                    if out:
                        s.sendall(out)
                    head = s.recv(8, socket.MSG_WAITALL)  # whole frames only: the push must stay in the socket
                    client.receive_data(head + s.recv(int.from_bytes(head[6:8], "big"), socket.MSG_WAITALL), 0.0)
                return ev

            client.associate()
            assert isinstance(talk(), Associated)
            client.action(40, device_config.INSTANT_PUSH, 1, Data(DataType.INTEGER, 0))
            done = talk()
            assert isinstance(done, ActionDone) and done.result == 0
            head = s.recv(8, socket.MSG_WAITALL)
            body = s.recv(int.from_bytes(head[6:8], "big"), socket.MSG_WAITALL)
        keys = derived_keys(m.fleet, 0).sets[4]
        value = gurux_decode(gurux_listener(False, keys), head + body)
        assert bytes(value[1]) == bytes(int(x) for x in device_config.INSTANT_PUSH.split("."))


def test_gurux_reads_the_push_setups_and_the_push_schedule():
    """A head-end's view of the push configuration: gurux-dlms reads the push setups (class 40 version 1:
    object list, destination, window, randomisation, retries, delay, port, push client SAP) and the
    push single action schedule over the meter reader's association."""
    from gurux_dlms.objects import GXDLMSActionSchedule, GXDLMSPushSetup

    from meter_core.connection import Transport
    from meter_core.device.identity import meter_identity
    from tests.interop.clients import GuruxSession
    from tests.servers import running_meters

    with running_meters(1, Transport.WRAPPER) as m:
        password = meter_identity(m.fleet, 0).lls_password
        with GuruxSession(m.port(0), Transport.WRAPPER, client_sap=32, password=password) as s:
            s.open()
            listed = {str(o.logicalName): o for o in s.object_list() if o.objectType == 40}
            assert set(listed) >= {device_config.INSTANT_PUSH, device_config.ALERT_PUSH, device_config.BLOCK_LOAD_PUSH, device_config.DAILY_LOAD_PUSH}
            assert all(o.version == 1 for o in listed.values())
            setup = GXDLMSPushSetup(device_config.BLOCK_LOAD_PUSH)
            setup.version = 1
            for attr in range(2, 11):
                s.read(setup, attr)
            assert [str(o[0].logicalName) for o in setup.pushObjectList] == [
                "0.0.96.1.2.255", device_config.BLOCK_LOAD_PUSH, "0.0.1.0.0.255", "1.0.99.1.0.255"]
            assert setup.randomisationStartInterval == 300 and setup.numberOfRetries == 3
            assert setup.repetitionDelay == 60 and setup.pushClientSAP == 64
            assert str(getattr(setup.portReference, "logicalName", setup.portReference)) == "0.0.25.0.0.255"
            schedule = GXDLMSActionSchedule(single_action_schedule.PUSH_SCHEDULE)
            s.read(schedule, 2)
            s.read(schedule, 4)
            assert str(getattr(schedule.target, "logicalName", schedule.target)) == script_table.PUSH_SCRIPT_TABLE
            assert len(schedule.executionTime) == 4
