"""Lint runs as a test (asyncpg tests/test__sourcecode.py habit): ruff over the whole tree."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_ruff_is_clean():
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (it comes with the test extra)")
    proc = subprocess.run([ruff, "check", str(ROOT)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_meter_core_modules_compile_without_warnings():
    proc = subprocess.run([sys.executable, "-W", "error", "-m", "compileall", "-q", str(ROOT / "meter_core")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
