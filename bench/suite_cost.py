"""Where ``make test``'s time goes: each test's CPU, its own process's and its children's, beside its wall time.

The suite runs on two xdist workers; a test that starts processes (twin nodes, Dask workers, Chromium, CLI runs) spends
most of its CPU in them, which pytest's ``--durations`` does not show. This runs the suite as ``make test`` runs it,
with this file as a plugin in every worker: around each test, ``getrusage`` of the worker (``RUSAGE_SELF``) and of
the children it has reaped (``RUSAGE_CHILDREN``: a child's CPU counts once it is waited for, so a module-scoped
server's lands on the test that ends it). It prints the totals, the share in children, how busy the cores were, and
the files and tests that cost the most; ``--json FILE`` keeps every row.

Run: python bench/suite_cost.py [--workers 2] [--top 25] [--json FILE] [-- PYTEST_ARGS ...]
(``make test``'s selection by default: ``-m "not suites"``; after ``--``, pytest arguments instead, e.g. a file)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
ROWS_ENV = "PQTWIN_SUITE_COST_DIR"  # where each worker appends its rows (one file a process)


def _cpu_s() -> tuple[float, float]:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """(plugin) One row per test: node id, own CPU s, children's CPU s, wall s."""
    where = os.environ.get(ROWS_ENV)
    (own0, kids0), wall0 = _cpu_s(), time.monotonic()
    yield
    (own1, kids1), wall1 = _cpu_s(), time.monotonic()
    if where:
        with open(Path(where) / f"{os.getpid()}.tsv", "a", encoding="utf-8") as f:
            f.write(f"{item.nodeid}\t{own1 - own0:.3f}\t{kids1 - kids0:.3f}\t{wall1 - wall0:.3f}\n")


def read_rows(where: Path) -> list[dict[str, Any]]:
    rows = []
    for path in sorted(where.glob("*.tsv")):
        for line in path.read_text(encoding="utf-8").splitlines():
            test, own, kids, wall = line.rsplit("\t", 3)
            rows.append({"test": test, "own_cpu_s": float(own), "children_cpu_s": float(kids), "wall_s": float(wall)})
    return rows


def report(rows: list[dict[str, Any]], wall_s: float, workers: int, top: int) -> dict[str, Any]:
    """Totals and the costliest files and tests (printed; returned for ``--json``)."""
    own = sum(r["own_cpu_s"] for r in rows)
    kids = sum(r["children_cpu_s"] for r in rows)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    busy = (own + kids) / (wall_s * cpus) if wall_s > 0 else float("nan")
    share = kids / max(own + kids, 1e-9)
    print(f"{len(rows)} tests on {workers} workers in {wall_s:.0f} s: {own + kids:.0f} CPU-s ({share:.0%} in the "
          f"processes they started), the {cpus} cores {busy:.0%} busy")  # fmt: skip
    files: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0.0])  # own, children, wall, tests
    for r in rows:
        name, this = r["test"].split("::")[0], (r["own_cpu_s"], r["children_cpu_s"], r["wall_s"], 1.0)
        files[name] = [a + b for a, b in zip(files[name], this, strict=True)]
    print(f"\n{'CPU s':>8} {'children':>9} {'wall s':>8} {'tests':>6}  file")
    for name, (o, k, w, n) in sorted(files.items(), key=lambda kv: -(kv[1][0] + kv[1][1]))[:top]:
        print(f"{o + k:8.1f} {k:9.1f} {w:8.1f} {int(n):6d}  {name}")
    print(f"\n{'CPU s':>8} {'wall s':>8}  test")
    for r in sorted(rows, key=lambda r: -(r["own_cpu_s"] + r["children_cpu_s"]))[:top]:
        print(f"{r['own_cpu_s'] + r['children_cpu_s']:8.1f} {r['wall_s']:8.1f}  {r['test']}")
    return {"tests": len(rows), "workers": workers, "wall_s": wall_s, "own_cpu_s": own, "children_cpu_s": kids,
            "cores": cpus, "busy": busy, "rows": rows}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workers", type=int, default=2, help="xdist workers (make test: 2)")
    ap.add_argument("--top", type=int, default=25, help="files and tests listed")
    ap.add_argument("--json", type=Path, help="write the totals and every test's row here")
    ap.add_argument("pytest_args", nargs="*", help='after --: pytest arguments (default: -m "not suites")')
    args = ap.parse_args()
    if args.workers < 1:
        ap.error("--workers: at least 1")
    if args.json is not None and not args.json.parent.is_dir():
        ap.error(f"--json: {args.json.parent} is not a directory")
    selection = args.pytest_args or ["-m", "not suites"]
    with tempfile.TemporaryDirectory(prefix="pqtwin-suite-cost-") as where:
        path = os.pathsep.join(filter(None, [str(ROOT / "bench"), os.environ.get("PYTHONPATH")]))
        env = {**os.environ, ROWS_ENV: where, "PYTHONPATH": path}  # the workers load this file as a plugin
        cmd = [sys.executable, "-m", "pytest", "-q", "-n", str(args.workers), "--dist", "worksteal",
               "-p", "suite_cost", *selection]  # fmt: skip
        t0 = time.monotonic()
        code = subprocess.call(cmd, cwd=ROOT, env=env)
        wall = time.monotonic() - t0
        rows = read_rows(Path(where))
    if not rows:
        print(f"suite_cost: pytest ran no test (exit {code})", file=sys.stderr)
        return 2
    out = report(rows, wall, args.workers, args.top)
    if args.json is not None:
        args.json.write_text(json.dumps({**out, "pytest_exit": code, "argv": sys.argv[1:]}, indent=1))
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
