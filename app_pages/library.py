"""Saved what-ifs: a local library of scenarios the app can save, list, load, delete and take uploads into.

The library is a directory (``PQTWIN_WHATIFS_DIR``, default ``~/.pqtwin/whatifs/``); each what-if is a folder
``<name>/`` holding ``scenario.yaml`` and ``profiles/`` (``sim.scenario.write_scenario``: the profiles it was
priced with travel with it), so a saved what-if loads, and reruns exactly, like any scenario file. Its
processing mode, seed and replications are saved in the scenario itself (``workload.processing.mode``,
``run.seed``, ``run.replications``). Names are scenario names (a DNS label): they are folder names too.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

from sim.contract import RunLayout
from sim.errors import UserError, shorten
from sim.loading import MAX_FILE_BYTES, decode, parse_yaml
from sim.scenario import Scenario, load_scenario_data, write_scenario

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
PROFILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")  # no dot: not a file name, no path
MAX_ENTRIES = 500  # listed per rerun: a library is read on every page


def root() -> Path:
    """The library's folder, absolute: a sweep file names its scenario relative to itself, and background runs
    work in the repository, so a relative one named another folder to them."""
    return Path(os.environ.get("PQTWIN_WHATIFS_DIR") or Path.home() / ".pqtwin" / "whatifs").absolute()


def entries() -> list[Path]:
    """The saved what-ifs' scenario files, newest first."""
    found = [p for p in root().glob(f"*/{RunLayout.SCENARIO}") if NAME.match(p.parent.name)]
    return sorted(found, key=lambda p: -_mtime(p))[:MAX_ENTRIES]


def _mtime(p: Path) -> float:
    """A what-if's modification time; 0 for one that cannot be stat'ed (a dangling link, gone since the listing):
    it is still listed, and saying why it does not load is the loader's job."""
    try:
        return p.stat().st_mtime
    except OSError:
        return 0.0


def is_saved(file: Path) -> bool:
    return file.parent.parent == root()


def check_name(name: str) -> str:
    """The name, stripped; UserError naming the rule when it cannot be a what-if's name."""
    name = name.strip()
    if not NAME.match(name):
        raise UserError(f"what-if name: use 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit "
                        f"(got {shorten(repr(name), 80)})")  # fmt: skip
    return name


def as_run(scenario: Scenario, mode: str, seed: int, replications: int, name: str | None = None) -> Scenario:
    """The scenario with the mode, seed and replications a run used (and a new name): what reruns it as is."""
    data = scenario.pinned_data()  # the profiles it was priced with, a host-profile override included
    data["name"] = name or scenario.name
    data["workload"]["processing"]["mode"] = mode
    data.setdefault("run", {}).update(seed=seed, replications=replications)
    return load_scenario_data(data, scenario.path)


def save(scenario: Scenario, name: str, mode: str, seed: int, replications: int, overwrite: bool = False) -> Path:
    """Save the what-if under ``name`` (its scenario renamed, with mode, seed and replications); its file."""
    name = check_name(name)
    folder = root() / name
    if folder.exists() and not overwrite:
        raise UserError(f"what-if name: {name!r} is already saved in {root()} (delete it first or pick another name)")
    renamed = as_run(scenario, mode, seed, replications, name)
    tmp = folder.with_name(f".{name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        write_scenario(renamed, tmp)
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise UserError(f"{folder}: cannot save the what-if: {exc.strerror or exc}") from None
    return folder / RunLayout.SCENARIO


def delete(file: Path) -> None:
    """Remove a saved what-if (only folders of the library)."""
    if not is_saved(file):
        raise UserError(f"{file}: not a saved what-if of {root()}")
    if file.parent.is_symlink():  # a what-if linked into the library: the link goes, the folder it names stays
        file.parent.unlink()  # (rmtree refuses a link: Delete did nothing, unsaid)
    else:
        shutil.rmtree(file.parent, ignore_errors=True)


def upload(filename: str, data: bytes, anchor: Path) -> Path:
    """Validate an uploaded scenario YAML and save it in the library under its ``name``; its file.

    Profile references resolve against ``anchor``'s folder (the shipped scenarios/): an upload is a file out of
    that folder. Every problem is a one-line error naming the uploaded file."""
    where = f"{shorten(filename, 120)} (uploaded)"
    if len(data) > MAX_FILE_BYTES:
        raise UserError(f"{where}: file too large (more than {MAX_FILE_BYTES:,} bytes)")
    parsed: Any = parse_yaml(decode(data, where), where)
    if not isinstance(parsed, dict):
        raise UserError(f"{where}: expected a scenario (a YAML mapping) at the top level")
    if problems := _profile_paths(parsed, where):
        raise UserError(problems)
    try:
        scenario = load_scenario_data(parsed, anchor)
    except UserError as exc:  # named as the user knows it: the file uploaded, not the path it is anchored at
        raise UserError([_as_uploaded(line, str(anchor), where) for line in exc.lines]) from None
    if (root() / scenario.name).exists():  # as Save: an upload never replaces a saved what-if
        raise UserError(f"{where}: name: {scenario.name!r} is already saved in {root()} (delete it first or "
                        "rename the scenario)")  # fmt: skip
    run = scenario.run
    return save(scenario, scenario.name, scenario.workload.processing.mode, run.seed, run.replications)


def _as_uploaded(line: str, anchor: str, where: str) -> str:
    return f"{where}{line[len(anchor) :]}" if line.startswith(f"{anchor}: ") else f"{where}: {line}"


def _profile_paths(data: dict[str, Any], where: str) -> list[str]:
    """An upload names shipped profiles only (a bare name, as in scenarios/profiles/): a path would let a stranger
    read files of the server, and echo them in errors."""
    items = [(f"deployment.hosts[{i}].profile", h) for i, h in enumerate(_list(data, "deployment", "hosts"))]
    items += [(f"workload.devices[{i}].profile", d) for i, d in enumerate(_list(data, "workload", "devices"))]
    out = []
    for loc, item in items:
        ref = item.get("profile") if isinstance(item, dict) else None
        if isinstance(ref, str) and not PROFILE_NAME.match(ref):
            out.append(f"{where}: {loc}: an uploaded scenario names a profile of scenarios/profiles/ by its name, "
                       f"not a path (got {shorten(repr(ref), 80)})")  # fmt: skip
    return out


def _list(data: dict[str, Any], *keys: str) -> list[Any]:
    node: Any = data
    for k in keys:
        node = node.get(k) if isinstance(node, dict) else None
    return node if isinstance(node, list) else []
