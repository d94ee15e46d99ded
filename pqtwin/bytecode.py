"""Damaged cached bytecode of pqtwin's own modules: found from an exception, removed, said in one line.

CPython writes a module's ``.pyc`` with one ``write`` and does not check for a short one: a process that imports a
module for the first time while its files are capped (a full disk, ``ulimit -f``) leaves a truncated ``.pyc`` in
place, and every later import of that module fails with ``EOFError: marshal data too short`` (or ``bad marshal
data``) until the file goes. typer reports an ``EOFError`` as an abort, so the command said "interrupted" forever.
The command line (pqtwin/cli.py) asks ``damaged_bytecode`` when something unexpected fails; the files go with it,
so the next run imports from the sources again.
"""

from __future__ import annotations

import importlib.util
import marshal
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pqtwin", "hw", "sim")  # ours; a library's damaged cache is its installer's to repair
HEADER_BYTES = 16  # a .pyc's magic, flags and source stamp (PEP 552), then the marshalled code


def from_import(exc: BaseException) -> bool:
    """Whether ``exc`` was raised while importlib read a cached module (``_compile_bytecode``)."""
    return any(f.name == "_compile_bytecode" for f in traceback.extract_tb(exc.__traceback__))


def damaged_files() -> list[Path]:
    """Our modules' cached bytecode files that do not load (cut short or garbled)."""
    bad = []
    for package in PACKAGES:
        for source in sorted((ROOT / package).rglob("*.py")):
            try:
                cached = Path(importlib.util.cache_from_source(str(source)))
                data = cached.read_bytes()
            except (OSError, ValueError, NotImplementedError):  # none cached, or caching is off
                continue
            try:
                marshal.loads(data[HEADER_BYTES:])  # noqa: S302 - our modules, as the import itself reads them
            except (EOFError, ValueError, TypeError):
                bad.append(cached)
    return bad


def damaged_bytecode(exc: BaseException) -> str | None:
    """The line to print when ``exc`` came from a damaged cached module of ours, after removing every such file;
    None when it did not (or none is found: then it is not ours to explain)."""
    if not from_import(exc) or not (bad := damaged_files()):
        return None
    removed, kept = [], []
    for path in bad:
        try:
            path.unlink()
            removed.append(path)
        except OSError:
            kept.append(path)
    names = ", ".join(str(p) for p in removed or kept)
    if kept:
        return (f"cached bytecode of pqtwin is damaged ({type(exc).__name__}: {exc}), and could not be removed: "
                f"remove {names} and run the command again")  # fmt: skip
    return (f"cached bytecode of pqtwin was damaged ({type(exc).__name__}: {exc}; written cut short, e.g. on a full "
            f"disk) and is removed ({names}): run the command again")  # fmt: skip
