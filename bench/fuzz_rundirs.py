"""Damaged run directories for the commands that read them: every case must end in one line per problem (or a
result), never a traceback, a hang or a half-written output.

    python bench/fuzz_rundirs.py [--n 1000] [--seed 1] [--jobs 2] [--runs DIR]

Real runs first (``make_runs``: `pqtwin sim --mode both` and a 4-round `pqtwin hw run --mode both` of a small
localhost.yaml, and a copy of the twin run as a killed run leaves it, without its results), then ``--n`` cases,
each one file of them damaged in one way: gone, truncated, emptied, bytes flipped, a FIFO, a directory, a link
loop or a dangling link in its place; a JSON file with one value of another type (a string, null, a list,
NaN, 1e308, 2**70, a path outside the run) or one key gone; a spans file with one column of another type, a
NaN, a negative or huge value, a null, the column gone, no rows or every row twice; a YAML file mutated as
bench/fuzz_inputs.py mutates scenarios. Each case runs one of ``compare`` (one or more measured runs, a whole
both run, two both runs, --out, --at-speed), ``report`` (with and without a baseline, a whole both run), ``calibrate
--from-run`` and ``hw recover`` in a forked child, judged as bench/fuzz_inputs.py judges its cases. Prints the
counts, exits 1 when any case failed. ``tests/test_twin_modes.py`` runs a few dozen cases on its real both run
under ``make test``.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout without install

from fuzz_inputs import ROOT, Case, conclude, m_keys, m_lines, m_scalar, m_structure, m_value, run_cases

SMALL = ["--set", "workload.fl.model_parameters=50000", "--set", "workload.fl.samples_per_client=300"]
RESULTS = ("status.json", "summary.json", "spans.parquet", "modes.json", "sequential", "concurrent")
# (argv, the trees a case damages): sim/ a `pqtwin sim --mode both` run, tu/ one with --rounds-in-turn, hw/ a twin's,
# hk/ a killed twin run
TARGETS: list[tuple[list[str], tuple[str, ...]]] = [
    (["compare", "sim/sequential", "hw/sequential"], ("hw/sequential", "sim/sequential")),
    (["compare", "sim/concurrent", "hw/concurrent", "hw/sequential"], ("hw/concurrent", "sim/concurrent")),
    (["compare", "sim/sequential", "hw"], ("hw/", "sim/sequential")),
    (["compare", "sim/sequential", "hw/sequential", "--out", "out"], ("hw/sequential", "sim/sequential")),
    (["compare", "sim", "hw", "--out", "out"], ("hw/", "sim/")),  # two both runs: each mode, and the reduction
    (["compare", "sim/concurrent", "hw/concurrent", "--at-speed"], ("sim/concurrent", "hw/concurrent")),  # resimulated
    (["report", "hw/sequential", "--out", "r.html"], ("hw/sequential",)),
    (["report", "sim/concurrent", "--out", "r.html", "--baseline", "hw/concurrent"], ("hw/concurrent", "sim/")),
    (["report", "hw", "--out", "r.html"], ("hw/",)),
    (["report", "sim", "--out", "r.html"], ("sim/",)),
    (["calibrate", "--from-run", "hw/sequential", "--out", "p.yaml"], ("hw/sequential",)),
    (["calibrate", "--from-run", "hw/concurrent", "--out", "p.yaml"], ("hw/concurrent",)),
    (["hw", "recover", "hk"], ("hk/",)),
    (["compare", "tu", "hw", "--out", "out"], ("tu/",)),
    (["compare", "tu/sequential", "hw/sequential", "--at-speed"], ("tu/",)),  # the whole run resimulated, split
    (["report", "tu", "--out", "r.html"], ("tu/",)),
]
JSON_VALUES: list[Any] = ["x", None, [], {}, -1, 0, 1e308, float("nan"), float("inf"), 2**70, True, "../../etc/passwd"]


def make_runs(root: Path, hw: Path | None = None) -> dict[str, Path]:
    """The real runs the cases damage copies of: sim/, tu/, hw/ and hk/ (hw/ without its results, as a killed run);
    ``hw``: a `pqtwin hw run --mode both` run of ``SMALL`` made before, used instead of a new one."""
    cli = [sys.executable, "-m", "pqtwin"]
    runs = {"sim": root / "sim", "tu": root / "tu", "hw": hw or root / "hw", "hk": root / "hk"}
    argvs = [[*cli, "sim", "scenarios/localhost.yaml", "--mode", "both", *turn, "--replications", "2", *SMALL,
              "--set", "workload.fl.rounds=4", "--out", str(runs[name])]
             for name, turn in (("sim", []), ("tu", ["--rounds-in-turn"]))]  # fmt: skip
    if hw is None:
        argvs.append([*cli, "hw", "run", "scenarios/localhost.yaml", "--mode", "both", "--rounds", "4", *SMALL,
                      "--out", str(runs["hw"])])  # fmt: skip
    for argv in argvs:
        res = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600)
        if res.returncode != 0:
            raise SystemExit(f"{' '.join(argv)}: exit code {res.returncode}\n{res.stderr[-2000:]}")
    shutil.copytree(runs["hw"], runs["hk"], symlinks=True)
    for name in RESULTS:
        p = runs["hk"] / name
        shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    return runs


def tree(runs: dict[str, Path]) -> dict[str, bytes]:
    """Every regular file of the runs, by its path below the case's directory."""
    files = ((name, d, p) for name, d in runs.items() for p in sorted(d.rglob("*")))
    return {f"{name}/{p.relative_to(d)}": p.read_bytes() for name, d, p in files if p.is_file() and not p.is_symlink()}


def damage_spans(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    t = pq.read_table(io.BytesIO(data))
    col = rng.choice(t.column_names)
    how = rng.choice(["str", "nan", "neg", "huge", "null", "drop", "empty", "twice"])
    if how == "drop":
        t = t.drop_columns([col])
    elif how == "empty":
        t = t.slice(0, 0)
    elif how == "twice":
        t = pa.concat_tables([t, t])
    elif t.num_rows:
        values, k = t.column(col).to_pylist(), rng.randrange(t.num_rows)
        v = values[k]
        number = isinstance(v, int | float) and not isinstance(v, bool)
        if how == "str":
            values = [str(x) for x in values]
        elif how == "null":
            values[k] = None
        elif number:
            values[k] = {"nan": float("nan"), "neg": -abs(v) - 5, "huge": 1e300 if isinstance(v, float) else 2**62}[how]
        try:
            arr = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            arr = pa.array([str(x) for x in values])
        t = t.set_column(t.column_names.index(col), col, arr)
    out = io.BytesIO()
    pq.write_table(t, out)
    return out.getvalue(), f"{how}:{col}"


def damage_json(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    try:
        doc = json.loads(data)
    except ValueError:
        return data[: len(data) // 2], "half"
    slots: list[tuple[Any, Any, str]] = []

    def walk(node: Any, path: str) -> None:
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for k, v in items:
            slots.append((node, k, f"{path}.{k}"))
            walk(v, f"{path}.{k}")

    walk(doc, "")
    if not slots:
        return b"[]", "a list"
    node, key, path = rng.choice(slots)
    if isinstance(node, dict) and rng.random() < 0.15:
        del node[key]
        return json.dumps(doc).encode(), f"{path} gone"
    node[key] = rng.choice(JSON_VALUES)
    return json.dumps(doc).encode(), f"{path}={node[key]!r}"


def damage(rng: random.Random, rel: str, data: bytes) -> tuple[bytes | None, str]:
    """A damaged copy of one file (None: the file is gone, or a special file is in its place: the second item)."""
    r = rng.random()
    if r < 0.08:
        return None, "gone"
    if r < 0.18:
        return data[: rng.randrange(len(data) + 1)], "truncated"
    if r < 0.22:
        return b"", "empty"
    if r < 0.3:
        flipped = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            if flipped:
                flipped[rng.randrange(len(flipped))] = rng.randrange(256)
        return bytes(flipped), "flipped"
    if rel.endswith(".parquet"):
        return damage_spans(rng, data)
    if rel.endswith(".json"):
        return damage_json(rng, data)
    if rel.endswith(".yaml"):
        mutate = rng.choice([m_value, m_keys, m_structure, m_scalar, m_lines])
        return mutate(rng, data.decode(errors="replace")), mutate.__name__
    return data[: len(data) // 2], "half"


def generate(n: int, seed: int, files: dict[str, bytes]) -> list[Case]:
    rng = random.Random(seed)
    cases = []
    for _ in range(n):
        argv, trees = rng.choice(TARGETS)
        rel = rng.choice(sorted(f for f in files if f.startswith(trees)))
        mine, special = dict(files), {}
        if rng.random() < 0.1:
            special[rel] = rng.choice(["fifo", "dir", "loop", "dangling"])
            del mine[rel]
            what = special[rel]
        else:
            data, what = damage(rng, rel, files[rel])
            if data is None:
                del mine[rel]
            else:
                mine[rel] = data
        names = (rel, Path(rel).name, str(Path(rel).parent), *argv[1:], "out", "--out")
        cases.append(Case(f"rundir:{argv[0]}:{what}:{rel}", argv, names, files=mine, special=special, out="out"))
    return cases


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1000, help="number of cases")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds before a case counts as hung")
    ap.add_argument("--runs", type=Path, help="keep the real runs here (reused when they are there)")
    ap.add_argument("--show", type=int, default=5, help="failed cases to print")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="pqtwin-rundirs-") as tmp:
        root = args.runs or Path(tmp)
        runs = {k: root / k for k in ("sim", "tu", "hw", "hk")}
        if not all(d.is_dir() for d in runs.values()):
            root.mkdir(parents=True, exist_ok=True)
            runs = make_runs(root)
        started = time.monotonic()
        results = run_cases(generate(args.n, args.seed, tree(runs)), args.timeout, args.jobs)
    return conclude(results, time.monotonic() - started, args.show)


if __name__ == "__main__":
    sys.exit(main())
