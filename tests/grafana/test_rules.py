"""The Prometheus rules: valid (promtool check rules) and doing what their unit tests say (promtool test
rules)."""

from __future__ import annotations

import subprocess

from tests.grafana.support import RULES, RULES_TEST, require_tool


def test_the_rules_are_valid():
    promtool = require_tool("promtool")
    proc = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_rules_pass_their_unit_tests():
    promtool = require_tool("promtool")
    proc = subprocess.run([promtool, "test", "rules", RULES_TEST.name], capture_output=True, text=True, timeout=60,
                          cwd=RULES_TEST.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_broken_expectation_fails(tmp_path):
    """promtool's verdict reaches pytest: a unit test expecting another value fails."""
    promtool = require_tool("promtool")
    (tmp_path / RULES.name).write_text(RULES.read_text())
    broken = RULES_TEST.read_text().replace("value: 0.9\n", "value: 0.8\n", 1)
    assert broken != RULES_TEST.read_text()
    (tmp_path / RULES_TEST.name).write_text(broken)
    proc = subprocess.run([promtool, "test", "rules", RULES_TEST.name], capture_output=True, text=True, timeout=60,
                          cwd=tmp_path)
    assert proc.returncode != 0 and "FAILED" in proc.stdout + proc.stderr
