"""Bounded reading of input files and values: whatever a user points us at is read within fixed limits.

Scenario and profile files are read only when they are regular files (a FIFO blocks, ``/dev/zero`` never
ends), at most ``MAX_FILE_BYTES``, decoded as strict UTF-8, and parsed by a YAML loader that refuses
nesting deeper than ``MAX_DEPTH`` and documents that expand (through aliases) to more than ``MAX_NODES``
nodes: a 426-byte "billion laughs" file expands to 10⁹ nodes that every later walk (validation, ``repr``)
would visit. ``--set`` values go through the same loader. Every problem is one ``UserError`` line that names
the file (or option), where in it, and what is wrong.

Numbers and booleans mean the same in YAML 1.1 (PyYAML's resolver) and YAML 1.2 (its core schema, what most other
tools and editors read): a plain value on which the two disagree is refused, naming the field, rather than read
either way (``count: 010`` was 8 devices, octal; ``rounds: 1:30`` 90 rounds, base 60). Refused: integers with a
leading zero (``010``), ``0b`` binary, ``_`` between digits, base-60 ``1:30``, signed hex, and the
booleans ``yes``/``no``/``on``/``off`` (write ``true``/``false``, or quote the text). Reinterpreting them as YAML
1.2 would silently change what a file written for 1.1 means, and what we write (``yaml.safe_dump``) is read the
same by both.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from sim.errors import UserError, shorten

MAX_FILE_BYTES = 1 << 20  # 1 MiB: shipped scenarios are ~3 KiB, calibrated profiles ~50 KiB
MAX_DEPTH = 24  # scenarios nest 5 levels (workload.devices[0].access_link.preset), profiles 5
MAX_NODES = 200_000  # YAML nodes after alias expansion; a calibrated profile has ~3,000
MAX_VALUE_CHARS = 65_536  # one --set value

_Base: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml parses ~8x faster when present
MERGE_TAG = "tag:yaml.org,2002:merge"


class _Loader(_Base):
    """The safe loader, with two rules of ours in its (pure-Python) constructor, so that they hold for every
    value however it is written: a key given twice in one mapping is an error, and a scalar that cannot be read
    as its tag says names its line and text."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self.own_keys: dict[int, list[Node]] = {}  # a mapping's own keys (not merged in), by id of its node

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        """PyYAML's constructors raise whatever a bad scalar makes them (ValueError for 5,000 digits or month 13,
        AttributeError for ``!!timestamp 0``): a ConstructorError at the scalar instead."""
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except Exception as exc:
            tag = node.tag.rsplit(":", 1)[-1]
            # a ValueError says what is wrong with the text; other errors speak of PyYAML's internals
            why = f" ({shorten(str(exc), 80)})" if isinstance(exc, ValueError | OverflowError) else ""
            raise yaml.constructor.ConstructorError(
                None, None, f"{shorten(str(node.value), 60)!r} cannot be read as {tag}{why}", node.start_mark
            ) from None

    def flatten_mapping(self, node: MappingNode) -> None:
        """PyYAML merges (``<<``) a mapping's sources into it in place, recursively: their own keys are noted
        first (a source flattened before it is constructed would seem to hold its merged keys twice)."""
        self.own_keys.setdefault(id(node), [k for k, _ in node.value if k.tag != MERGE_TAG])
        super().flatten_mapping(node)

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        """A key given twice in one mapping: PyYAML keeps the last silently, so ``name: a`` then ``name: b`` (a
        copy-paste) ran as ``b``. Keys are compared as values (``1``, ``0x1`` and ``1.0`` are one key, as are
        ``true`` and ``True``); keys a merge (``<<``) brings in may be overridden, as YAML says."""
        mapping: dict[Any, Any] = super().construct_mapping(node, deep)  # not a mapping node: PyYAML's error
        seen: set[Any] = set()  # hashable: PyYAML refused an unhashable key above
        for k in self.own_keys[id(node)]:  # noted by ``flatten_mapping``, which PyYAML's call made first
            key = self.construct_object(k, deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {shorten(str(k.value))!r} is given twice in one mapping (keep one)",
                    k.start_mark,
                )  # fmt: skip
            seen.add(key)
        return mapping


def read_text(path: Path | str, limit_bytes: int = MAX_FILE_BYTES) -> str:
    """The text of a regular file of at most ``limit_bytes``, strictly UTF-8; UserError naming the file."""
    return decode(read_bytes(path, limit_bytes), path)


def read_json_object(path: Path | str, limit_bytes: int, what: str) -> dict[str, Any]:
    """The JSON object in a regular UTF-8 file of at most ``limit_bytes``; UserError naming the file and saying it
    is not ``what`` ("a sweep manifest") when it is not JSON or not an object."""
    try:
        data = json.loads(read_text(path, limit_bytes))
    except (json.JSONDecodeError, RecursionError) as exc:
        raise UserError(f"{path}: not {what} (not JSON: {shorten(str(exc), 200)})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: not {what} (a JSON object expected, got {type(data).__name__})")
    return data


def read_bytes(path: Path | str, limit_bytes: int = MAX_FILE_BYTES, expected: str = "a YAML file") -> bytes:
    """The bytes of a regular file of at most ``limit_bytes``; UserError naming the file (a FIFO, a device, a
    directory or a file over the limit is refused before it is opened: opening a FIFO blocks, ``/dev/zero`` never
    ends). ``expected``: what the message asks for instead."""
    data = _read_regular(path, limit_bytes + 1, limit_bytes, expected)  # a file may grow after the stat
    if len(data) > limit_bytes:
        raise UserError(f"{path}: file too large (more than {limit_bytes:,} bytes; the limit is {limit_bytes:,})")
    return data


def _read_regular(path: Path | str, n: int, limit_bytes: int | None, expected: str) -> bytes:
    """The first ``n`` bytes of a regular file (of at most ``limit_bytes``), checked before it is opened (opening
    a FIFO blocks) and again once it is (the path may have changed since); UserError naming the file."""
    name = os.fspath(path)
    if "\0" in name:
        raise UserError(f"{shorten(name)}: not a valid file name (contains a NUL byte)")
    try:
        _require_regular(path, os.stat(name), limit_bytes, expected)
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0))
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            _require_regular(path, st, limit_bytes, expected)
            return _read_up_to(f, n, st.st_size)
    except OSError as exc:
        raise UserError(f"{path}: cannot read file: {exc.strerror or exc}") from None


def _read_up_to(f: Any, n: int, size_bytes: int) -> bytes:
    """``f.read(n)`` without asking for ``n`` bytes at once: a buffered read allocates what it is asked for before
    it reads, so a 389-byte report read against a 256 MiB bound took 256 MiB (and failed under a memory limit).
    Asks for what the file holds (one byte more: a file that grew since is still caught by the caller's bound),
    then in chunks while it keeps growing."""
    chunks, left = [], n
    want = min(n, size_bytes + 1)
    while left > 0:
        chunk = f.read(min(left, want))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
        want = READ_CHUNK_BYTES
    return b"".join(chunks)


READ_CHUNK_BYTES = 1 << 20


def require_regular(path: Path | str, expected: str) -> None:
    """UserError unless ``path`` is a regular file (a reader that opens it itself, e.g. Parquet's or gzip's, would
    block on a FIFO or read ``/dev/zero`` forever); no size limit."""
    try:
        _require_regular(path, os.stat(path), None, expected)
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: cannot read file: {getattr(exc, 'strerror', None) or exc}") from None


def exists(path: Path | str) -> bool:
    """Whether ``path`` names anything; False (not an exception) for names the OS cannot even look up
    (too long, a NUL byte, a loop of links)."""
    try:
        os.stat(path)
    except (OSError, ValueError):
        return False
    return True


def refuse_repeated_dirs(dirs: Sequence[Path], option: str, same_file: str | None = None) -> None:
    """UserError naming the first of ``dirs`` that is one given before: the same directory however it is written
    (``RUN``, ``RUN/``, ``../x/RUN``, a link to it: compared by device and inode), or a copy of one, where
    ``same_file`` in both holds the same bytes (a measurement's spans: two runs never time alike). Pooled, a run
    given twice counts twice (double the n, a narrower CI). Directories that cannot be read are the caller's to
    name."""
    by_inode: dict[tuple[int, int], Path] = {}
    by_size: dict[int, list[Path]] = {}
    for d in dirs:
        try:
            st = os.stat(d)
        except (OSError, ValueError):
            continue
        if (first := by_inode.setdefault((st.st_dev, st.st_ino), d)) is not d:
            same = "" if str(first) == str(d) else f" (the same directory as {first})"
            raise UserError(f"{option} {d}: given twice{same}; pooled, a run given twice counts twice: give each "
                            "run once")  # fmt: skip
        if same_file is None:
            continue
        try:
            fst = os.stat(Path(d) / same_file)
        except (OSError, ValueError):
            continue
        if not stat.S_ISREG(fst.st_mode):  # opening a FIFO blocks
            continue
        size = fst.st_size
        for other in by_size.setdefault(size, []):
            if _same_bytes(Path(other) / same_file, Path(d) / same_file):
                raise UserError(f"{option} {d}: the same measurement as {other} (its {same_file} is identical: a "
                                "copy; pooled, a run given twice counts twice): give each run once")  # fmt: skip
        by_size[size].append(d)


def _same_bytes(a: Path, b: Path, chunk: int = 1 << 20) -> bool:
    """Whether two regular files hold the same bytes (False when either cannot be read)."""
    try:
        with open(a, "rb") as fa, open(b, "rb") as fb:
            if not (stat.S_ISREG(os.fstat(fa.fileno()).st_mode) and stat.S_ISREG(os.fstat(fb.fileno()).st_mode)):
                return False
            while True:
                x, y = fa.read(chunk), fb.read(chunk)
                if x != y:
                    return False
                if not x:
                    return True
    except OSError:
        return False


def out_file_problem(path: Path, example: str) -> str | None:
    """Why an output file cannot be written at ``path`` (a directory, no such directory, not writable), or None:
    checked before the work whose result it will hold, so a mistake costs nothing."""
    raw = str(path)
    if not raw.strip() or raw.endswith(os.sep):
        return f"give a file name, e.g. {example} (got {raw!r})"
    parent = path.parent
    if exists(path) and path.is_dir():
        return f"{path} is a directory; give a file name, e.g. {path}/{example}"
    if not exists(parent) or not parent.is_dir():
        return f"no directory {parent} to write {path.name} in"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"cannot write in {parent} (permission denied)"
    return None


def check_not_a_run_file(path: Path, option: str, run_dirs: Sequence[Path | None], example: str,
                         kinds: tuple[str, ...] = (), what: str = "run directory") -> None:  # fmt: skip
    """Refuse to replace an existing file of a run directory the command reads, other than an earlier output of
    ``kinds`` (``report --out RUN/summary.json`` wrote the report over the run's summary, ``calibrate --from-run RUN
    --out RUN/scenario.yaml`` a profile over its scenario)."""
    if not exists(path) or (kinds and path.suffix.lower() in kinds):
        return
    target = path.resolve()
    for d in run_dirs:
        if d is not None and exists(d) and target.is_relative_to(d.resolve()):
            raise UserError(f"{option}: {path} is a file of the {what} {d}: give a new file name, e.g. "
                            f"{d / example}")  # fmt: skip


def refuse_foreign_file(path: Path, option: str, what: str, ours: Callable[[Path], bool]) -> None:
    """UserError (``OPTION: ...``) where an output would replace a file that is not an earlier output of its kind
    (``ours``; ``what`` names the kind): a report written over a scenario, or a profile over the user's notes, lost
    them. Nothing where ``path`` is new, empty, or a directory (``out_file_problem`` says so)."""
    if (problem := foreign_file_problem(path, what, ours)) is not None:
        raise UserError(f"{option}: {problem}")


def foreign_file_problem(path: Path, what: str, ours: Callable[[Path], bool]) -> str | None:
    """``refuse_foreign_file``'s reason, without the option's name (None: ``path`` may be written)."""
    if exists(path) and not os.path.isdir(path) and not ours(path) and not _empty_file(path):
        return f"{path} exists and is not {what}: give a new file name (or remove it first)"
    return None


def _empty_file(path: Path) -> bool:
    """An empty regular file (``mktemp``'s): nothing in it to lose."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_size == 0


def starts_with(*heads: bytes) -> Callable[[Path], bool]:
    """``ours`` for ``refuse_foreign_file``: a regular file whose first bytes are one of ``heads``."""

    def ours(path: Path) -> bool:
        try:
            return _read_regular(path, max(len(h) for h in heads), None, "a file").startswith(heads)
        except UserError:
            return False

    return ours


HTML_FILE = starts_with(b"<!DOCTYPE html", b"<!doctype html", b"<html")  # our reports' first bytes
PDF_FILE = starts_with(b"%PDF-")


JSON_FILE = starts_with(b"{", b"[")  # our benches' JSON outputs


def SVG_FILE(path: Path) -> bool:  # an ``ours`` like the others
    """An SVG image: ``<svg`` first, or an XML declaration and then ``<svg`` within its first kilobyte."""
    try:
        head = _read_regular(path, 1024, None, "a file")
    except UserError:
        return False
    return head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in head)


def out_file(example: str, what: str, ours: Callable[[Path], bool]) -> Callable[[str], Path]:
    """An ``argparse`` type for a bench's output file: refused when the arguments are parsed (one line naming the
    option), not after minutes of measuring whose results it was to hold; an existing file is replaced only when
    it is an earlier output of its kind (``ours``, ``what``), as ``refuse_foreign_file`` does for the CLI."""
    import argparse

    def parse(raw: str) -> Path:
        if (problem := output_problem(Path(raw), example, what, ours)) is not None:
            raise argparse.ArgumentTypeError(problem)
        return Path(raw)

    return parse


def output_problem(path: Path, example: str, what: str, ours: Callable[[Path], bool]) -> str | None:
    """Why an output file cannot be written at ``path``: ``out_file_problem``, or an existing file that is not an
    earlier output of its kind (``foreign_file_problem``); None: it may be."""
    return out_file_problem(path, example) or foreign_file_problem(path, what, ours)


out_json = out_file("results.json", "a JSON file", JSON_FILE)
out_svg = out_file("plot.svg", "an SVG image", SVG_FILE)


def in_range(lo: float, hi: float, kind: type[int] | type[float] = int) -> Callable[[str], Any]:
    """An ``argparse`` type for a bench's count or duration: a number of ``kind`` in [lo, hi], else one line
    naming the option and the range (0 samples, a negative count or NaN seconds failed later, with a traceback)."""
    import argparse

    def parse(raw: str) -> int | float:
        try:
            value = kind(raw)
        except ValueError:
            what = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"not {what} (got {shorten(raw)!r})") from None
        if not lo <= value <= hi:  # NaN is in no range
            raise argparse.ArgumentTypeError(f"must be in [{lo:g}, {hi:g}] (got {shorten(raw)})")
        return value

    parse.__name__ = kind.__name__
    return parse


def _require_regular(path: Path | str, st: os.stat_result, limit_bytes: int | None,
                     expected: str = "a YAML file") -> None:  # fmt: skip
    if stat.S_ISDIR(st.st_mode):
        raise UserError(f"{path}: is a directory, not a file")
    if not stat.S_ISREG(st.st_mode):
        raise UserError(f"{path}: not a regular file (a {_kind(st.st_mode)}); give {expected}")
    if limit_bytes is not None and st.st_size > limit_bytes:
        raise UserError(f"{path}: file too large ({st.st_size:,} bytes; the limit is {limit_bytes:,})")


def _kind(mode: int) -> str:
    kinds = {stat.S_ISFIFO: "FIFO", stat.S_ISCHR: "character device", stat.S_ISBLK: "block device",
             stat.S_ISSOCK: "socket"}  # fmt: skip
    return next((k for test, k in kinds.items() if test(mode)), "special file")


def decode(data: bytes, path: Path | str) -> str:
    """Strict UTF-8 (a leading BOM is dropped); UserError with the first bad byte's line and column."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise UserError(
            f"{path}: not UTF-8 text: byte 0x{data[exc.start]:02x} at line {line}, column {column} "
            "(save the file as UTF-8)"
        ) from None


def parse_yaml(text: str, where: str) -> Any:
    """One YAML document within the depth and expansion limits; UserError ``WHERE: not valid YAML ...``."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_size(node, where)
        _check_scalars(node, where, "\n" in text.strip())
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise UserError(f"{where}: not valid YAML{yaml_error(exc, text)}") from None
    except RecursionError:  # the pure-Python composer recurses; libyaml stops at 1,000 levels itself
        raise UserError(f"{where}: not valid YAML: nested more than {MAX_DEPTH} levels deep") from None
    except UserError:
        raise
    except Exception as exc:  # a constructor's own error outside ``construct_object`` (a collection's second step)
        raise UserError(f"{where}: not valid YAML: a value cannot be read ({shorten(str(exc), 120)})") from None
    finally:
        loader.dispose()


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _check_size(root: Node, where: str) -> None:
    """Depth and expanded size of a composed document, walked once per distinct node (aliases share nodes,
    so a billion-laughs document is small here and enormous once constructed and walked)."""
    size: dict[int, int] = {}
    ancestors: set[int] = set()  # visited, not finished: the path from the root (iterative DFS)
    stack: list[tuple[Node, int, bool]] = [(root, 1, False)]
    while stack:
        node, depth, finished = stack.pop()
        key = id(node)
        if finished:
            ancestors.discard(key)
            size[key] = 1 + sum(size[id(c)] for c in _children(node))
            if size[key] > MAX_NODES:
                raise UserError(
                    f"{where}: YAML too large: more than {MAX_NODES:,} values once aliases are expanded "
                    f"(at line {node.start_mark.line + 1})"
                )
            continue
        if key in size:
            continue
        if key in ancestors:
            raise UserError(f"{where}: not valid YAML at line {node.start_mark.line + 1}: an alias refers to itself")
        if depth > MAX_DEPTH:
            raise UserError(
                f"{where}: not valid YAML at line {node.start_mark.line + 1}: nested more than {MAX_DEPTH} levels deep"
            )
        ancestors.add(key)
        stack.append((node, depth, True))
        stack.extend((c, depth + 1, False) for c in _children(node) if id(c) not in size)


_TAG = "tag:yaml.org,2002:"
_INT_12 = re.compile(r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+")  # YAML 1.2 core schema
_FLOAT_12 = re.compile(
    r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)"
)
_BOOL_12 = frozenset({"true", "True", "TRUE", "false", "False", "FALSE"})
_LEADING_ZERO = re.compile(r"[-+]?0[0-9]+")  # 010: octal in YAML 1.1 (08 is text there, as yaml.safe_dump writes it)


def _ambiguity(node: ScalarNode) -> str | None:
    """Why a scalar means one thing in YAML 1.1 and another in YAML 1.2 (and how to write it), or None. ``node.tag``
    is PyYAML's (YAML 1.1) reading; a quoted value is text in both."""
    text, tag = node.value, node.tag
    plain = not node.style  # None from PyYAML's parser, "" from libyaml's
    if tag == _TAG + "bool":
        if text in _BOOL_12:
            return None
        meaning = "true" if text.lower() in ("yes", "on", "y") else "false"
        return (f"{text} is a boolean ({meaning}) in YAML 1.1 but text in YAML 1.2: write {meaning}, or '{text}' "
                "for the text")  # fmt: skip
    if tag == _TAG + "int" and _LEADING_ZERO.fullmatch(text):
        decimal, octal = int(text, 10), int(text, 8) if set(text) <= set("+-01234567") else None
        if octal in (None, decimal):  # 00, or !!int 09 (no octal number)
            return f"{text} has a leading zero (an octal number in YAML 1.1): write {decimal}"
        return f"{text} is ambiguous (octal {octal} in YAML 1.1, {decimal} in YAML 1.2): write {decimal} or {octal}"
    if tag in (_TAG + "int", _TAG + "float"):
        core = _INT_12 if tag == _TAG + "int" else _FLOAT_12
        if core.fullmatch(text):
            return None
        try:
            value = yaml.safe_load(text) if plain else None  # PyYAML's reading, to suggest (a plain scalar's text)
        except yaml.YAMLError:
            value = None
        number = isinstance(value, int | float) and not isinstance(value, bool)
        fix = f"write {value!r}" if number else "write it in decimal"
        if ":" in text:
            why = "base 60"
        elif "_" in text:
            why = "'_' between digits"
        elif "0b" in text.lower():
            why = "binary"
        elif "0x" in text.lower():
            why = "a signed hexadecimal number"
        else:
            why = "not a YAML 1.2 number"
        shown = f" ({value!r})" if number else ""
        return f"{text} is a number{shown} in YAML 1.1 ({why}) but text in YAML 1.2: {fix}, or '{text}' for the text"
    return None


def _check_scalars(root: Node, where: str, lines: bool = True) -> None:
    """Refuse a scalar on which YAML 1.1 and 1.2 disagree (``_ambiguity``), naming its field, value and (``lines``:
    the text has several) line. A field's path is kept as a chain of (parent, part) and spelled out only for the
    error (a calibrated profile has thousands of values)."""
    checked = (_TAG + "int", _TAG + "float", _TAG + "bool")
    seen: set[int] = set()
    stack: list[tuple[Node, Any]] = [(root, None)]
    while stack:
        node, path = stack.pop()
        if id(node) in seen:  # an alias: checked where it was defined
            continue
        seen.add(id(node))
        if isinstance(node, ScalarNode):
            if node.tag in checked and (why := _ambiguity(node)) is not None:
                field = f"{_spell(path)}: " if path is not None else ""
                line = f" (line {node.start_mark.line + 1})" if lines else ""
                raise UserError(f"{where}: {field}{shorten(why, 200)}{line}")
        elif isinstance(node, SequenceNode):
            stack.extend((c, (path, i)) for i, c in reversed(list(enumerate(node.value))))  # the first on top
        elif isinstance(node, MappingNode):
            for k, v in reversed(node.value):
                stack.append((v, (path, k.value if isinstance(k, ScalarNode) else "?")))
                stack.append((k, (path, None)))  # a key: its mapping's path


def _spell(path: Any) -> str:
    """``a.b[0].c`` from ``_check_scalars``' chain (a part None: the mapping's key itself)."""
    parts: list[Any] = []
    while path is not None:
        path, part = path
        parts.append(part)
    out = ""
    for part in reversed(parts):
        if part is None:
            out += " (a key)" if out else "(a key)"
        elif isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{shorten(str(part), 40)}" if out else shorten(str(part), 40)
    return out


def yaml_error(exc: yaml.YAMLError, text: str) -> str:
    """A YAML error as one line: `` at line L, column C: problem`` (PyYAML's own text spans several)."""
    if isinstance(exc, yaml.reader.ReaderError):
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        char = exc.character if isinstance(exc.character, int) else ord(str(exc.character)[:1] or "\0")
        return f" at line {line}, column {column}: character U+{char:04X} is not allowed in YAML"
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = " ".join(p for p in (exc.context, exc.problem) if p) or type(exc).__name__
        return f"{where}: {shorten(what, 200)}"
    return f": {shorten(str(exc), 200)}"


def load_yaml_file(path: Path | str) -> dict[str, Any]:
    """A YAML mapping read from a bounded file, or UserError saying why it cannot be read."""
    data = parse_yaml(read_text(path), str(path))
    if data is None:
        raise UserError(f"{path}: the file is empty (expected a YAML mapping)")
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping at the top level (got {type(data).__name__})")
    return data


def parse_value(raw: str, where: str) -> Any:
    """A ``--set`` value: YAML within the same limits as a file."""
    if len(raw) > MAX_VALUE_CHARS:
        raise UserError(f"{where}: value too long ({len(raw):,} characters; the limit is {MAX_VALUE_CHARS:,})")
    require_utf8(raw, where)
    return parse_yaml(raw, where)


def require_utf8(text: str, where: str) -> None:
    """Command-line text that is UTF-8 (Python keeps other bytes of argv as lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        byte = ord(text[exc.start]) & 0xFF
        raise UserError(f"{where}: not UTF-8 text: byte 0x{byte:02x} at character {exc.start + 1}") from None


def machine_memory_bytes() -> int | None:
    """This machine's physical memory (None where the OS does not say): what an input's size is weighed against
    (a spans file's rows, a sweep's planned points, the twin's default budget)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None
