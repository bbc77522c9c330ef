"""One list of fault types: the enum, the CLI's choices, the worker's dispatch and migration 0011's CHECK agree."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

from fleet.cli import cli
from fleet.runtime.faults import EFFECTS, Command, Fault

MIGRATION = Path(__file__).resolve().parents[2] / "migrations" / "0011_fleet_commands.sql"


def test_migration_0011_checks_exactly_the_fault_types():
    sql = MIGRATION.read_text()
    check = re.search(r"fleet_commands_action_check\s+CHECK \(action IN \(([^)]*)\)\)", sql)
    assert check is not None, "0011 has no CHECK on fleet_commands.action"
    listed = re.findall(r"'([^']*)'", check.group(1))
    assert sorted(listed) == sorted(f.value for f in Fault)
    assert len(listed) == len(set(listed))


def test_every_fault_has_an_effect():
    assert set(EFFECTS) == set(Fault)


def test_the_cli_offers_exactly_the_fault_types():
    result = CliRunner().invoke(cli, ["inject", "--help"])
    assert result.exit_code == 0
    offered = re.search(r"\{([a-z|-]+)\}", result.output).group(1).split("|")
    assert offered == [f.value for f in Fault]


def test_a_command_row_names_its_fault():
    row = {"command_id": 7, "action": "link-down", "first_meter": None, "last_meter": 9, "share": 1.0,
           "params": '{"duration_s": 60}'}
    cmd = Command.from_row(row)
    assert cmd.action is Fault.LINK_DOWN and cmd.params == {"duration_s": 60}
    assert cmd.meters(1, range(20)) == list(range(10))
