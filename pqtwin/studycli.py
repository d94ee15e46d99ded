"""``pqtwin study``: the paper's what-ifs, each simulated, into a table and a figure (sim/study.py).

Like the rest of the command line, this module imports typer and rich only; the command imports the model
and the twin when it runs (pqtwin/cli.py: start-up).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    pass


from pqtwin.cli import STDOUT, _out_path, _progress, _say, _warn, _writing, app, path_arg


@app.command("study")
def study_cmd(
    study: Annotated[
        Path, typer.Argument(parser=path_arg, help="study file (default scenarios/studies/paper-3node.yaml)")
    ] = Path("scenarios/studies/paper-3node.yaml"),
    out_given: Annotated[
        str, typer.Option("--out", help="directory for study.json, study.svg, study.md")
    ] = "runs/study",  # text, not a Path: typer makes '' the current directory
    workers: Annotated[int, typer.Option(min=0, max=256, help="processes (0: one per core of this machine)")] = 0,
    force: Annotated[bool, typer.Option("--force", help="replace an earlier study's files in --out")] = False,
    max_minutes: Annotated[
        float, typer.Option(min=0.01, max=1e6, help="refuse a study estimated to take longer (all its points)")
    ] = 60.0,
) -> None:
    """Which of a study's unpublished choices reproduce its headline figures: one axis at a time, the grid of the
    two most influential numeric axes, random combinations; the contour plot and the reproduction table."""
    import json
    import os

    from rich.table import Table

    from hw import rundir
    from pqtwin import studyreport as rep
    from sim.contract import atomic_write
    from sim.cost import duration
    from sim.errors import UserError
    from sim.study import check_levels, fmt_ci, load_study, planned_cost, reproductions, run_study

    out = _out_path(out_given) or Path("runs/study")
    spec, scenario = load_study(study, check=False)
    n_points, total_s = planned_cost(spec, check_levels(study, spec, scenario))
    workers = workers or os.cpu_count() or 1
    wall_s = total_s / min(workers, n_points)
    if wall_s > max_minutes * 60:  # before --out is claimed
        raise UserError(f"{study}: the study's {n_points:,} points need ~{duration(wall_s)} on {workers} worker(s) "
                        f"(~{duration(total_s)} of simulation), over the {max_minutes:g} min budget (--max-minutes); "
                        "fewer random_points, replications or levels make it shorter")  # fmt: skip
    _say(f"{spec.study} study: up to {n_points:,} points, ~{duration(wall_s)} estimated on {workers} worker(s)")
    outputs = ("study.json", "study.svg", "study.md")  # a directory of the user's is claimed as a run's is (rundir)
    with rundir.claimed(out, force, outputs, outputs[:1], discard=True), _writing(out), _progress(None) as bar:
        task = bar.add_task(f"{spec.study} study", total=None)
        result = run_study(spec, scenario, workers,
                           progress=lambda done, total: bar.update(task, completed=done, total=total))  # fmt: skip
        atomic_write(out / "study.json", json.dumps(result, indent=1))
        atomic_write(out / "study.svg", rep.svg(result, spec))
        md = "## Axes by influence\n\n" + rep.markdown(rep.ranking_rows(result))
        md += "\n## Combinations that reproduce both figures\n\n" + rep.markdown(rep.reproduction_rows(result, 1000))
        atomic_write(out / "study.md", md)
    base = rep.base_point(result)
    t = result["targets"]
    none = [None, None]
    red = fmt_ci(base.get("reduction"), base.get("reduction_ci95", none), 100, " %", 1)
    dist = fmt_ci(base.get("distribution_s"), base.get("distribution_ci95", none), 1, " s", 3)
    _say(f"base scenario: reduction {red}, distribution {dist} "
         f"(targets: ≥ {t['round_latency_reduction'] * 100:.0f} %, < {t['distribution_s']:g} s)")  # fmt: skip
    for title, rows in (("axes by influence", rep.ranking_rows(result)),
                        ("combinations that reproduce both figures", rep.reproduction_rows(result))):  # fmt: skip
        table = Table(title=title, title_justify="left")
        for col in rows[0] if rows else ["(none)"]:
            table.add_column(col)
        for row in rows:
            table.add_row(*row.values())
        STDOUT.print(table)
    n_ok, n = len(reproductions(result)), len(result["points"])
    failed = [p for p in result["points"] if "error" in p]
    _say(f"{n_ok} of {n} points reproduce both figures; plane: {result['plane']['x']} x {result['plane']['y']}")
    for p in failed[:5]:
        _warn(f"point {rep.describe(result, p)}: {p['error']}")
    _say(f"results: {out}/ (study.json, study.svg, study.md)")
