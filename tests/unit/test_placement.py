"""Where listen mode puts each meter: port-base + i on the first --host address, never in the host's
ephemeral port range (a meter there collides with some outgoing connection, and a local client could no
longer connect), then the next address (issue 14, point 3)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleet.errors import FleetError
from fleet.settings import LINUX_EPHEMERAL_PORTS, FleetOptions, ephemeral_ports

HOSTS = ("127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4")


def test_meters_fill_below_the_ephemeral_range_then_above_it_then_the_next_address():
    o = FleetOptions(meters=100_000, hosts=HOSTS, port_base=10_000, ephemeral=(32768, 60999))
    assert o.ports_per_host == (32768 - 10_000) + (65536 - 61000)
    assert o.address(0) == ("127.0.0.1", 10_000)
    assert o.address(22_767) == ("127.0.0.1", 32_767)
    assert o.address(22_768) == ("127.0.0.1", 61_000)
    assert o.address(o.ports_per_host - 1) == ("127.0.0.1", 65_535)
    assert o.address(o.ports_per_host) == ("127.0.0.2", 10_000)


@given(first=st.integers(1024, 60000), width=st.integers(0, 4000), base=st.integers(1, 65535),
       meters=st.integers(1, 120_000))
def test_no_meter_is_placed_in_the_ephemeral_range_and_no_two_share_an_address(first, width, base, meters):
    last = min(first + width, 65535)
    outside = (65536 - base) - max(0, min(last, 65535) - max(first, base) + 1)  # counted here, not by fleet
    try:
        o = FleetOptions(meters=meters, hosts=HOSTS, port_base=base, ephemeral=(first, last))
    except FleetError as e:
        assert first <= base <= last or meters > 4 * outside, e
        return
    assert not first <= base <= last and meters <= 4 * outside
    seen = set()
    step = max(1, meters // 2000)
    for i in [*range(0, meters, step), meters - 1]:
        host, port = o.address(i)
        assert not first <= port <= last and base <= port <= 65535
        seen.add((host, port))
    assert len(seen) == len({*range(0, meters, step), meters - 1})


def test_a_port_base_inside_the_range_and_too_few_addresses_are_one_line_errors():
    with pytest.raises(FleetError, match="inside this host's ephemeral port range 32768-60999"):
        FleetOptions(meters=10, port_base=40_000, ephemeral=(32768, 60999))
    with pytest.raises(FleetError, match="give 4 addresses with --host"):
        FleetOptions(meters=100_000, port_base=10_000, ephemeral=(32768, 60999))


def test_dial_mode_places_no_listener_and_needs_no_addresses():
    o = FleetOptions(meters=1_000_000, mode="dial", port_base=4059)
    assert o.address(999_999)[1] < 32768 or o.address(999_999)[1] > 60999


def test_the_range_is_read_from_proc_or_is_linux_default(tmp_path):
    f = tmp_path / "range"
    f.write_text("40000\t50000\n")
    assert ephemeral_ports(str(f)) == (40000, 50000)
    assert ephemeral_ports(str(tmp_path / "missing")) == LINUX_EPHEMERAL_PORTS
    f.write_text("junk")
    assert ephemeral_ports(str(f)) == LINUX_EPHEMERAL_PORTS
