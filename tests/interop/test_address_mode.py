"""Address mode (issue 14, point 1): every meter on one port at an IP address of its own, served by one
listening socket per worker; the address a head-end reaches names the meter. Independent clients read
meters by address; the kernel steers each connection to the worker that owns the meter."""

from __future__ import annotations

import socket

import pytest
from dlms_cosem import cosem, enumerations
from dlms_cosem.cosem.obis import Obis
from dlms_cosem.utils import parse_as_dlms_data
from gurux_dlms.objects import GXDLMSClock, GXDLMSData

from fleet.runtime import address
from fleet.settings import FleetOptions, split_range
from meter_core.connection import Transport
from tests.interop.clients import GuruxSession, dlms_cosem_client
from tests.servers import free_port_base, running_meters

pytestmark = pytest.mark.interop

METERS = 50


@pytest.fixture(scope="module", params=[Transport.WRAPPER, Transport.HDLC], ids=["wrapper", "hdlc"])
def fleet(request):
    with running_meters(METERS, request.param, address_base="127.7.0.1") as running:
        yield running


@pytest.mark.parametrize("meter_id", [0, 17, METERS - 1])
def test_gurux_reads_each_meter_at_its_own_address_on_one_port(fleet, meter_id):
    host, port = fleet.address(meter_id)
    assert host == f"127.7.0.{1 + meter_id}" and port == fleet.address(0)[1]
    assert len(fleet.worker.servers) == 1  # one listening socket for all the meters
    ident = fleet.identity(meter_id)
    with GuruxSession(port, fleet.options.transport, host=host, physical_address=ident.hdlc_physical_address) as s:
        s.open()
        serial = GXDLMSData("0.0.96.1.0.255")
        s.read(serial, 2)
        assert bytes(serial.value).decode() == ident.serial  # the address named this meter, no other
        clock = GXDLMSClock()
        s.read(clock, 2)
        assert clock.time is not None


def test_dlms_cosem_reads_a_meter_by_address(fleet):
    if fleet.options.transport is Transport.HDLC:
        pytest.skip("dlms-cosem's HDLC reader splits frames at 0x7E bytes (see tests/interop/test_profiles.py)")
    host, port = fleet.address(33)
    client = dlms_cosem_client(port, fleet.options.transport, host=host)
    with client.session() as c:
        raw = c.get(cosem.CosemAttribute(interface=enumerations.CosemInterface.DATA,
                                         instance=Obis.from_string("0.0.42.0.0.255"), attribute=2))
    assert bytes(parse_as_dlms_data(raw)).decode() == fleet.identity(33).logical_device_name


def test_an_address_that_is_no_meter_is_closed_without_a_byte(fleet):
    before = fleet.worker.metrics.refused.get("not-a-meter", 0)
    for host in ("127.7.0.200", "127.0.0.1"):  # past the last meter; below the first
        with socket.create_connection((host, fleet.address(0)[1]), timeout=5) as s:
            s.settimeout(5)
            assert s.recv(100) == b""
    assert fleet.worker.metrics.refused.get("not-a-meter", 0) - before == 2


IPV6_PREFIX = "fd00:cf::/64"  # unique local addresses, routed to this host for the tests below


@pytest.fixture(scope="module")
def ipv6_range():
    """An IPv6 prefix local to this host (AnyIP: ``ip -6 route add local PREFIX dev lo``, the one command the
    README gives), removed afterwards. Needs root (CAP_NET_ADMIN) and IPv6 on lo: skipped without."""
    import shutil
    import subprocess

    if shutil.which("ip") is None:
        pytest.skip("no ip command (iproute2): cannot route an IPv6 prefix locally")
    add = subprocess.run(["ip", "-6", "route", "replace", "local", IPV6_PREFIX, "dev", "lo"], capture_output=True,
                         text=True)
    if add.returncode != 0:
        pytest.skip(f"cannot route {IPV6_PREFIX} to lo here (needs root and IPv6): {add.stderr.strip()}")
    try:
        yield "fd00:cf::1"
    finally:
        subprocess.run(["ip", "-6", "route", "del", "local", IPV6_PREFIX, "dev", "lo"], capture_output=True)


@pytest.mark.parametrize("base", ["127.9.0.1", "fd00:cf::10"], ids=["ipv4", "ipv6"])
def test_the_kernel_steers_each_connection_to_the_socket_of_the_meter_s_worker(base, request):
    """Three workers' sockets in one reuseport group with the destination-address program: a connection
    to any meter lands on its worker's socket, at the shard boundaries too (IPv4, and IPv6 in a prefix
    routed locally)."""
    if ":" in base:
        request.getfixturevalue("ipv6_range")
    options = FleetOptions(meters=1000, mode="address", port_base=free_port_base(1), address_base=base)
    shards = split_range(range(1000), 3)
    socks = address.open_listeners(options, shards)
    try:
        for meter_id in (0, 1, 333, 334, 500, 666, 667, 999):
            owner = next(i for i, s in enumerate(shards) if meter_id in s)
            with socket.create_connection(options.address(meter_id), timeout=5):
                got = None
                for i, sock in enumerate(socks):
                    sock.settimeout(0.5 if i == owner else 0.05)
                    try:
                        conn, _ = sock.accept()
                    except (BlockingIOError, TimeoutError):
                        continue
                    with conn:
                        got = (i, address.meter_of(options, conn.getsockname()))
                    break
            assert got == (owner, meter_id)
    finally:
        for sock in socks:
            sock.close()


def test_gurux_reads_meters_at_their_ipv6_addresses(ipv6_range):
    with running_meters(20, Transport.WRAPPER, address_base=ipv6_range) as running:
        for meter_id in (0, 19):
            host, port = running.address(meter_id)
            assert host == f"fd00:cf::{1 + meter_id:x}"
            ident = running.identity(meter_id)
            with GuruxSession(port, Transport.WRAPPER, host=host) as s:
                s.open()
                serial = GXDLMSData("0.0.96.1.0.255")
                s.read(serial, 2)
                assert bytes(serial.value).decode() == ident.serial
        # an IPv4 connection to the port is not a meter of an IPv6 fleet: nobody listens for it
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", running.address(0)[1]), timeout=2).close()


def test_ipv6_address_base_is_checked():
    from fleet.errors import FleetError

    with pytest.raises(FleetError, match="one loopback address"):
        FleetOptions(meters=2, mode="address", address_base="::1")
    with pytest.raises(FleetError, match="/96"):
        FleetOptions(meters=10, mode="address", address_base="fd00:cf::ffff:fffe")
    assert FleetOptions(meters=3, mode="address", address_base="fd00::1").address(2) == ("fd00::3", 4059)
