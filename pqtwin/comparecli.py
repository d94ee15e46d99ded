"""``pqtwin compare`` and ``pqtwin report``: measured against simulated, and a run's report.

Like the rest of the command line, this module imports typer and rich only; the command imports the model
and the twin when it runs (pqtwin/cli.py: start-up).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    pass


from pqtwin.cli import STDOUT, _out_path, _say, _warn, _writing, app, path_arg


@app.command("compare")
def compare_cmd(
    sim_dir: Annotated[Path, typer.Argument(parser=path_arg, help="simulated run directory (pqtwin sim --out)")],
    hw_dir: Annotated[Path, typer.Argument(parser=path_arg, help="measured run directory (hardware twin)")],
    repeats: Annotated[
        list[Path] | None,
        typer.Argument(
            metavar="MORE_HW_DIRS",
            help="more measured runs of the same configuration: pooled, and the CI also holds the spread between runs",
            show_default=False,
        ),
    ] = None,
    json_: Annotated[bool, typer.Option("--json", help="print compare.json instead of the table")] = False,
    out_dir: Annotated[str | None, typer.Option("--out", help="output dir (default HW_DIR/compare)")] = None,
    force: Annotated[bool, typer.Option("--force", help="replace an earlier report in the output dir")] = False,
    at_speed: Annotated[
        bool,
        typer.Option(
            "--at-speed",
            help="also simulate SIM_DIR again on cores as fast as the measured runs' speed probe read them (seconds): "
            "what is left of the error is the model's, not the host's state (hw/at_speed.py)",
        ),
    ] = False,
) -> None:
    """Simulated vs measured: per metric, the error in % with its 95 % bootstrap CI (table, JSON, PNG)."""
    from hw import rundir
    from hw.compare import COMPARE_JSON, COMPARE_PNG, write_outputs
    from pqtwin.tables import fidelity_line, render_table
    from sim.contract import RunLayout

    out = _out_path(out_dir) or Path(hw_dir) / RunLayout.COMPARE
    if _both_runs(sim_dir, hw_dir, repeats or []):
        _compare_both(sim_dir, hw_dir, repeats or [], json_, out, force, at_speed)
        return
    result = _compared(sim_dir, hw_dir, repeats or [], at_speed)
    report = (COMPARE_JSON, COMPARE_PNG)
    with rundir.claimed(out, force, outputs=report, markers=report, discard=True), _writing(out):
        paths = write_outputs(result, out)
    if json_:
        typer.echo(json.dumps(result, indent=2))
    else:
        STDOUT.print(render_table(result))
        _say(f"results: {paths['json']}, {paths['png']}")
    for w in result["warnings"]:
        _warn(w)
    if not json_:  # last: the one line to read (and whether the measurement was clean)
        STDOUT.print(fidelity_line(result), highlight=False, soft_wrap=True)


def _compared(sim_dir: Path, hw_dir: Path, repeats: list[Path], at_speed: bool = False) -> dict[str, Any]:
    """compare.json's content (``at_speed``: with the model simulated at the measured speed,
    ``model_at_measured_speed``); a UserError when no metric has values in both runs (an empty report and exit 0
    would say the runs were compared)."""
    from hw.compare import compare_dirs
    from sim.errors import UserError

    result = compare_dirs(sim_dir, hw_dir, repeats)
    if not result["metrics"]:
        why = "; ".join(f"{k}: {v}" for k, v in list(result["not_compared"].items())[:2])
        raise UserError(f"{hw_dir}: nothing to compare with {sim_dir}: no metric has values in both runs ({why})")
    if at_speed:
        from hw.at_speed import at_measured_speed

        result["model_at_measured_speed"] = at_measured_speed(Path(sim_dir), [Path(hw_dir), *map(Path, repeats)])
    return result


def _both_runs(sim_dir: Path, hw_dir: Path, repeats: list[Path]) -> bool:
    """Whether compare is given a `pqtwin sim --mode both` run and `hw run --mode both` runs (each mode compared,
    and the reduction); a UserError where the measured runs are of both kinds."""
    from sim.errors import UserError
    from sim.modes_json import both_halves

    if both_halves(Path(sim_dir)) is None or both_halves(Path(hw_dir)) is None:
        return False
    if odd := [str(r) for r in repeats if both_halves(Path(r)) is None]:
        raise UserError(f"MORE_HW_DIRS: {odd[0]} is not a --mode both run, as {hw_dir} is: pool runs of one kind")
    return True


def _compare_both(sim_dir: Path, hw_dir: Path, repeats: list[Path], json_: bool, out: Path, force: bool,
                  at_speed: bool = False) -> None:  # fmt: skip
    """Each mode's halves compared (``out/sequential``, ``out/concurrent``), and the concurrent-vs-sequential
    round latency reduction the simulation predicts beside the one the twin measured over its pairs of rounds
    (``out/reduction.json``)."""
    from hw import rundir
    from hw.compare import write_outputs
    from hw.modes import REDUCTION_JSON, pooled_reduction, reduction_facts
    from pqtwin.tables import fidelity_line, reduction_line, render_table
    from sim.contract import RunLayout, write_json
    from sim.errors import UserError
    from sim.modes_json import HALVES, read_modes

    results = {m: _compared(Path(sim_dir) / m, Path(hw_dir) / m, [Path(r) / m for r in repeats], at_speed)
               for m in HALVES}  # fmt: skip
    simulated = read_modes(Path(sim_dir))
    if simulated is None:
        raise UserError(f"{sim_dir}: its {RunLayout.MODES} holds no round latency reduction (damaged?): run it again")
    reduction = reduction_facts(simulated, pooled_reduction([Path(hw_dir), *map(Path, repeats)]))
    outputs = (*HALVES, REDUCTION_JSON)
    with rundir.claimed(out, force, outputs=outputs, markers=(REDUCTION_JSON,), discard=True), _writing(out):
        paths = {m: write_outputs(results[m], out / m) for m in HALVES}
        write_json(out / REDUCTION_JSON, reduction)
    if json_:
        typer.echo(json.dumps({**results, "reduction": reduction}, indent=2))
    else:
        for m in HALVES:
            STDOUT.print(render_table(results[m]))
        _say(f"results: {', '.join(str(p['json']) for p in paths.values())}, {out / REDUCTION_JSON}")
    both = set(results[HALVES[0]]["warnings"]) & set(results[HALVES[1]]["warnings"])  # the run's, said once
    for w in results[HALVES[0]]["warnings"]:
        _warn(w if w in both else f"{HALVES[0]}: {w}")
    for w in results[HALVES[1]]["warnings"]:
        if w not in both:
            _warn(f"{HALVES[1]}: {w}")
    if not json_:  # last: the lines to read, the fidelity (and whether the machine was quiet) at the end
        STDOUT.print(reduction_line(reduction), highlight=False, soft_wrap=True)
        for m in HALVES:
            STDOUT.print(f"{m}: {fidelity_line(results[m])}", highlight=False, soft_wrap=True)


@app.command("report")
def report_cmd(
    run_dir: Annotated[
        Path,
        typer.Argument(
            parser=path_arg, metavar="RUN_DIR", help="a run directory (pqtwin sim --out, pqtwin hw run --out)"
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", parser=path_arg, help="the HTML file to write (self-contained: opens offline)")
    ],
    baseline: Annotated[
        Path | None, typer.Option(parser=path_arg, help="a run directory to compare with: KPI deltas with 95 % CIs")
    ] = None,
    pdf: Annotated[
        Path | None, typer.Option("--pdf", parser=path_arg, help="also print the report to this PDF (Chromium)")
    ] = None,
) -> None:
    """A run as one self-contained HTML report to hand over: settings, provenance of every profile value,
    KPIs with 95 % CIs, charts, deltas against a baseline, and the commands that reproduce it."""
    import shlex

    from pqtwin import report as rep
    from sim.errors import UserError
    from sim.loading import HTML_FILE, PDF_FILE, check_not_a_run_file, refuse_foreign_file
    from sim.modes_json import both_halves

    rep.check_out(out, "--out")
    check_not_a_run_file(out, "--out", [run_dir, baseline], "report.html", (".html", ".htm"))
    refuse_foreign_file(out, "--out", "an HTML report", HTML_FILE)
    if pdf is not None:
        rep.check_out(pdf, "--pdf")
        check_not_a_run_file(pdf, "--pdf", [run_dir, baseline], "report.pdf", (".pdf",))
        refuse_foreign_file(pdf, "--pdf", "a PDF", PDF_FILE)
        if os.path.abspath(pdf) == os.path.abspath(out):
            raise UserError(f"--pdf: the same file as --out (got {str(pdf)!r})")
    halves = both_halves(run_dir) if baseline is None else None
    base: rep.ReportRun | None = None
    if halves is not None:  # a --mode both run: its concurrent rounds against its sequential ones
        run, base = rep.load_run(halves[1]), rep.load_run(halves[0])
    else:
        run = rep.load_run(run_dir)
        base = rep.load_run(baseline, "--baseline") if baseline is not None else None
    if base is not None and (warning := rep.name_warning(base, run)):
        _warn(f"--baseline {baseline}: {warning}")
    args = [str(run_dir), *(["--baseline", str(baseline)] if baseline else []), "--out", str(out)]
    line = "pqtwin report " + shlex.join([*args, *(["--pdf", str(pdf)] if pdf else [])])
    rep.write_file(out, rep.report_html(run, base, report_command=line), "--out")
    _say(
        f"report: {out}" + (" (a --mode both run: its concurrent rounds against its sequential ones)" if halves else "")
    )
    if pdf is not None:
        pages = rep.write_pdf(out, pdf)
        _say(f"pdf: {pdf} ({pages} pages)")
