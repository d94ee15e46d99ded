"""Shared fixtures: paths of the shipped scenarios and a runner for the installed CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "scenarios"


@pytest.fixture
def pqtwin():
    """Run the real console entry point in a subprocess; returns CompletedProcess (text)."""

    def run(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-c", "from pqtwin.cli import main; main()", *args]
        environ = {**os.environ, **(env or {})}
        return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd or ROOT, timeout=300, env=environ)

    return run
