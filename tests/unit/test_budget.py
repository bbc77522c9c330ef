"""A worker's file-descriptor budget (fleet.runtime.budget): planned against the limit before anything
starts, with the way out named when it does not fit (issue 14, point 2)."""

from __future__ import annotations

import pytest

from fleet.errors import FleetError
from fleet.runtime.budget import MIN_CONNECTIONS, RESERVE, budget, plan
from fleet.settings import split_range


def test_the_issue_s_fleet_does_not_fit_two_workers_and_names_six():
    shards = split_range(range(100_000), 2)
    with pytest.raises(FleetError, match="use --workers 6 or more") as e:
        plan(shards, "listen", limit=20_000)
    assert "\n" not in str(e.value) and "50000 meters" in str(e.value)
    budgets = plan(split_range(range(100_000), 6), "listen", limit=20_000)
    assert all(b.listeners + RESERVE + b.connections == 20_000 for b in budgets)
    assert min(b.connections for b in budgets) >= MIN_CONNECTIONS


def test_dial_mode_needs_no_listeners():
    (b,) = plan([range(1_000_000)], "dial", limit=20_000)
    assert b.listeners == 0 and b.connections == 20_000 - RESERVE


def test_a_limit_below_what_any_worker_needs_says_to_raise_it():
    with pytest.raises(FleetError, match="raise the limit"):
        plan([range(10)], "listen", limit=RESERVE + MIN_CONNECTIONS)


def test_address_mode_holds_one_listener_per_worker():
    budgets = plan(split_range(range(1_000_000), 2), "address", limit=20_000)
    assert [b.listeners for b in budgets] == [1, 1]


def test_the_reserve_is_what_is_left():
    b = budget(1000, 300)
    assert (b.connections, b.reserve) == (1000 - 300 - RESERVE, RESERVE)
    assert budget(100, 300).connections == 0
