"""bench/sched_idle.py and bench/gil_release.py, run on small inputs: what they read and print."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from hw import schedtrace

ROOT = Path(__file__).resolve().parents[1]


def _line(cpu: int, t: float, event: str, fields: str) -> str:
    return f"  x-1 [{cpu:03d}] d..2. {t:.6f}: {event}: {fields}\n"


def _switch(cpu: int, t: float, prev: int, state: str, nxt: int) -> str:
    fields = (
        f"prev_comm=x prev_pid={prev} prev_prio=120 prev_state={state} ==> next_comm=x next_pid={nxt} next_prio=120"
    )
    return _line(cpu, t, "sched_switch", fields)


def _wake(event: str, cpu: int, t: float, pid: int, target: int) -> str:
    return _line(cpu, t, event, f"comm=x pid={pid} prio=120 target_cpu={target:03d}")


def test_sched_idle_pools_a_cells_runs_and_prints_both_tables(tmp_path):
    """Two runs of one cell (<cell>-0, <cell>-1): each has a core going idle beside a waiting thread that its own
    core then runs, and a wake-up from another busy core that queues the thread on its waker's."""
    text = "".join([
        _switch(0, 1.0, 0, "R", 10), _switch(1, 1.0, 0, "R", 20), _switch(1, 1.1, 20, "S", 11),
        _wake("sched_waking", 0, 1.2, 20, 1), _wake("sched_wakeup", 0, 1.2, 20, 0),  # busy own core: to the waker's
        _wake("sched_waking", 0, 1.3, 30, 0), _wake("sched_wakeup", 0, 1.3, 30, 0),  # 30 never ran: not counted
        _switch(1, 1.4, 11, "S", 0),  # cpu 1 idles while 20 and 30 wait on cpu 0
        _switch(0, 1.5, 10, "S", 20),  # their own core runs 20 first
    ])  # fmt: skip
    for k in (0, 1):
        run = tmp_path / f"hw-cell-{k}"
        run.mkdir()
        schedtrace.keep(text, (1.0, 2.0), {"a": 10}, run / "sched_trace.txt.gz")
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "sched_idle.py"), str(tmp_path)],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    cell = next(line for line in out.splitlines() if line.startswith("hw-cell "))
    assert cell.split()[1:3] == ["2", "0"]  # two cases pooled, none pulled
    busy = next(line for line in out.splitlines() if "other cpu, busy" in line)
    assert "0 /      2 /      0" in busy and "waker's: 100.0%" in busy


def test_sched_idle_says_where_it_found_no_trace(tmp_path):
    got = subprocess.run([sys.executable, str(ROOT / "bench" / "sched_idle.py"), str(tmp_path)],
                         capture_output=True, text=True)  # fmt: skip
    assert got.returncode == 2 and "no sched_trace.txt.gz" in got.stderr and "Traceback" not in got.stderr


def test_gil_release_times_every_operation_on_one_and_two_threads():
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "gil_release.py"), "--bytes", "4000", "--trials", "1"],
                         capture_output=True, text=True, check=True, timeout=120).stdout  # fmt: skip
    rows = [line for line in out.splitlines() if line.endswith("x") and "µs" in line]
    assert any(r.startswith("serialize 4,000 B") for r in rows) and any("ML-DSA-65 sign" in r for r in rows)
    assert all(0 < float(r.split()[-1].rstrip("x")) < 4 for r in rows)
