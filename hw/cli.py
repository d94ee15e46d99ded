"""The ``pqtwin`` command: the simulator's commands (sim/cli.py) plus the hardware twin's.

hw may import sim, never the reverse, so the full command line is assembled here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from hw.calibrate import calibrate, write_profile
from sim import cli as sim_cli
from sim.errors import UserError

app = sim_cli.app


@app.command("calibrate")
def calibrate_cmd(
    out: Annotated[Path, typer.Option("--out", help="profile file to write (YAML)")],
    provider: Annotated[str | None, typer.Option(help="only this provider (openssl | liboqs)")] = None,
    algorithms: Annotated[str | None, typer.Option(help="comma-separated algorithm names")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="short time budgets: under a minute")] = False,
    name: Annotated[str | None, typer.Option(help="profile name (default: calibrated-<hostname>)")] = None,
) -> None:
    """Measure this machine's crypto, serialisation and FL compute costs into a calibration profile."""
    if out.suffix not in (".yaml", ".yml"):
        raise UserError(f"--out: profile files end in .yaml (got {str(out)!r})")
    names = [a.strip() for a in algorithms.split(",") if a.strip()] if algorithms else None
    columns = (TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=sim_cli.err, transient=True) as bar:
        task = bar.add_task("calibrating", total=1)

        def step(op: str, done: int, total: int) -> None:
            bar.update(task, description=op, completed=done, total=total)

        data = calibrate(names, provider, quick, progress=step)
    if name:
        data["profile"] = name
    write_profile(data, out)
    sim_cli.out.print(f"profile: {out} ({len(data['ops'])} operations, {data['platform']['cpu']})")


def main() -> None:
    sim_cli.main()
