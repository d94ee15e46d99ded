"""Malformed-input corpus for the pqtwin CLI: every case must end in one line per problem, never a traceback.

    python bench/fuzz_inputs.py [--n 2000] [--seed 1] [--jobs 2] [--timeout 60]

Generates ``--n`` cases from classes of mistakes (files that are not UTF-8, nested or alias-bombed YAML,
special files, mutated scenarios and profiles, malformed ``--set`` paths and values, every numeric field
at and past its bounds, bad CLI options and output directories) and runs each one in a forked child of
this process (the CLI's modules are imported once; ``pqtwin.cli.run`` is called directly). A case fails
when it prints a traceback or an ``internal error``, exits with a code other than 0 or 2, runs past the
timeout (hang), peaks above 1 GiB resident (over memory), prints an error line that names neither the file,
the option nor the field (vague), prints anything on stderr that is not an ``error:`` or ``warning:`` line
(not one line), or leaves ``.tmp`` files or half-written outputs behind (leftovers). Prints the counts
and exits 1 when any case failed. ``tests/test_input_hardening.py`` runs a few hundred cases of the same
generator under ``make test``; ``make fuzz`` runs the full corpus.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import resource
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "scenarios"
BASES = ("paper-3node.yaml", "ward-200.yaml", "localhost.yaml")
GIB = 1 << 30
MAX_RSS_BYTES = GIB
SIM_BUDGET = ("--max-minutes", "0.5")  # runs the corpus lets through stay short; the budget itself is tested


@dataclass
class Case:
    """One invocation: ``argv`` run in a fresh directory holding ``files`` (and ``special`` entries)."""

    kind: str
    argv: list[str]
    names: tuple[str, ...]  # an error line must mention one of these (the file, option or field)
    files: dict[str, bytes] = field(default_factory=dict)
    special: dict[str, str] = field(default_factory=dict)  # path -> fifo | dir | loop | dangling | notdir
    out: str | None = None  # an output directory to check for half-written results


@dataclass
class Result:
    case: Case
    code: int | None
    stdout: str
    stderr: str
    wall_s: float
    rss_bytes: int
    problems: list[str]


# --- values ------------------------------------------------------------------------------------------

EDGE_VALUES = [
    "0", "-1", "-0.0", "1", "1.0e+308", "-1.0e+308", "1.0e+30", "1.0e-9", "5.0e-324", "1e308", ".inf", "-.inf",
    ".nan", "true", "false", "null", "~", "''", "[]", "{}", "[1, 2]", "{a: 1}", "abc", "0x" + "f" * 3000,
    "9" * 5000, "1_000", "0o777", "0b101", "1:30:00", "2001-01-01", "2001-13-45", "9223372036854775808",
    "18446744073709551616", "1.7976931348623157e+309", "'[/red]'", "':smile:'", "\"\\0\"", "\"a\\nb\"", "-",
    "!!binary aGVsbG8=", "!!set {a, b}", "!!python/object/apply:os.system [true]", "*a", "&a 1", "[",
]  # fmt: skip
BAD_YAML_VALUES = [
    "[", "{", "*a", "]", "}", "[1,", "{a: [", "\0", "\t", "a\tb", "\x01", "\x7f", "\ufeff", "caf\udce9",
    "'unterminated",
    '"unterminated', "!!python/object/apply:os.system [echo]", "&a [*a]", "? [a]\n: b", "- a\n- b\n c",
    "a: b: c", "%YAML 1.1\n---\n1", "---\n1\n---\n2", "|\n bad", ">\n  x", "@x", "`x", "!<tag:x> 1",
    "{" * 100 + "}" * 100, "[" * 2000, "&" + "a" * 1000, "*" + "b" * 1000, "\ud800".encode("utf-8", "surrogatepass")
    .decode("utf-8", "replace"), "\u2028", "\x85",
]  # fmt: skip
ODD_PARTS = ["\udcff", "²", "٣", "１", "0x1", "-1", "1e3", " 0", "0 ", "00", "9" * 30, "9" * 5000, "", " ", "\t", "é",
             "a b", "*", "[0]", "'0'", "\u200b", "None", "name", "..", "0.5"]  # fmt: skip


# --- the schema's numeric fields ---------------------------------------------------------------------


def numeric_fields() -> list[tuple[str, dict[str, Any]]]:
    """(--set path into paper-3node, JSON-schema constraints) of every numeric field of a scenario."""
    from sim.scenario import schema

    s = schema()
    defs = s["$defs"]
    out: list[tuple[str, dict[str, Any]]] = []

    def walk(node: dict[str, Any], path: str, depth: int) -> None:
        node = defs[node["$ref"].rsplit("/", 1)[-1]] if "$ref" in node else node
        branches = node.get("anyOf", [node])
        numeric = [b for b in branches if b.get("type") in ("integer", "number")]
        if numeric:
            out.append((path, numeric[0]))
        for key, sub in node.get("properties", {}).items():
            walk(sub, f"{path}.{key}" if path else key, depth + 1)
        for b in node.get("anyOf", []):
            if "$ref" in b and depth < 8:
                walk(b, path, depth + 1)
        if node.get("type") == "array" and isinstance(node.get("items"), dict):
            walk(node["items"], f"{path}.0", depth + 1)

    walk(s, "", 0)
    return [(p, b) for p, b in out if _exists_in_paper(p)]


def _exists_in_paper(path: str) -> bool:
    node: Any = yaml.safe_load((SCENARIOS / "paper-3node.yaml").read_text())
    for part in path.split(".")[:-1]:
        if isinstance(node, list):
            node = node[int(part)] if part.isdigit() and int(part) < len(node) else None
        elif isinstance(node, dict):
            node = node.get(part, {})
        if node is None:
            return False
    return True


def bound_values(b: dict[str, Any]) -> list[str]:
    """Values at and just past a field's bounds, as YAML."""
    vals = []
    for key, delta in (("maximum", 1), ("exclusiveMaximum", 0), ("minimum", -1), ("exclusiveMinimum", 0)):
        if key in b:
            v = b[key]
            vals.append(_yaml_num(v))
            if delta and isinstance(v, int | float):
                step = delta if b.get("type") == "integer" else delta * max(abs(float(v)) * 1e-9, 1e-12)
                vals.append(_yaml_num(v + step))
    return vals


def _yaml_num(v: object) -> str:
    if isinstance(v, float):
        text = repr(v)
        if "e" in text and "." not in text.split("e")[0]:
            mantissa, exp = text.split("e")
            text = f"{mantissa}.0e{'+' if not exp.startswith('-') else ''}{exp}"  # YAML 1.1 floats need '.'
        return text
    return str(v)


# --- file mutations ----------------------------------------------------------------------------------


def base_text(rng: random.Random) -> tuple[str, str]:
    name = rng.choice(BASES)
    return name, (SCENARIOS / name).read_text()


def _insert(text: bytes, rng: random.Random, what: bytes) -> bytes:
    at = rng.randrange(len(text) + 1)
    return text[:at] + what + text[at:]


def m_utf8(rng: random.Random, text: str) -> bytes:
    bad = rng.choice([b"\xff", b"\xfe", b"\x80", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82",
                      bytes([rng.randrange(0x80, 0x100)])])  # fmt: skip
    return _insert(text.encode(), rng, bad)


def m_control(rng: random.Random, text: str) -> bytes:
    ch = rng.choice(["\0", "\x01", "\x07", "\x08", "\x0b", "\x0c", "\x1b[31m", "\x7f", "\x9b", "\ufffe", "\ufeff"])
    return _insert(text.encode(), rng, ch.encode("utf-8", "surrogatepass"))


def m_truncate(rng: random.Random, text: str) -> bytes:
    return text.encode()[: rng.randrange(len(text))]


def m_byteflip(rng: random.Random, text: str) -> bytes:
    data = bytearray(text.encode())
    for _ in range(rng.randint(1, 8)):
        data[rng.randrange(len(data))] = rng.randrange(256)
    return bytes(data)


def m_lines(rng: random.Random, text: str) -> bytes:
    lines = text.splitlines(keepends=True)
    for _ in range(rng.randint(1, 4)):
        i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
        op = rng.choice(["del", "dup", "swap", "indent", "dedent"])
        if op == "del" and len(lines) > 1:
            del lines[i]
        elif op == "dup":
            lines.insert(j, lines[i])
        elif op == "swap":
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "indent":
            lines[i] = "  " + lines[i]
        else:
            lines[i] = lines[i].lstrip()
    return "".join(lines).encode()


def m_deep(rng: random.Random, text: str) -> bytes:
    d = rng.choice([25, 30, 100, 999, 1001, 5000, 100_000])
    style = rng.choice(["flow-list", "flow-map", "block-map", "block-list", "mixed"])
    if style == "flow-list":
        value = "[" * d + "]" * d
    elif style == "flow-map":
        value = "{a: " * d + "1" + "}" * d
    elif style == "block-map":
        d = min(d, 3000)
        return ("name: x\n" + "".join("  " * i + "a:\n" for i in range(d)) + "  " * d + "b: 1\n").encode()
    elif style == "block-list":
        d = min(d, 3000)
        return ("".join("  " * i + "-\n" for i in range(d)) + "  " * d + "- 1\n").encode()
    else:
        value = "[{a: " * (d // 2) + "1" + "}]" * (d // 2)
    key = rng.choice(["name", "description", "workload", "run", "extra"])
    return f"{key}: {value}\n".encode() + text.encode()


def m_bomb(rng: random.Random, text: str) -> bytes:
    width, depth = rng.choice([(9, 9), (10, 6), (4, 12), (2, 30), (100, 3), (30, 4)])
    kind = rng.choice(["list", "map", "merge", "string"])
    lines = ['a0: &a0 ["lol"]' if kind != "string" else 'a0: &a0 "' + "x" * 1000 + '"']
    for i in range(1, depth):
        prev = f"*a{i - 1}"
        if kind == "map":
            body = "{" + ", ".join(f"k{j}: {prev}" for j in range(width)) + "}"
        elif kind == "merge":
            body = "{" + ", ".join(f"k{j}: {prev}" for j in range(width)) + f", <<: {{z: {prev}}}}}"
        else:
            body = "[" + ", ".join([prev] * width) + "]"
        lines.append(f"a{i}: &a{i} {body}")
    where = rng.choice(["top", "description", "devices"])
    if where == "description":
        lines.append(f"description: *a{depth - 1}")
    elif where == "devices":
        return (text + "\n" + "\n".join(f"x{line}" for line in lines)).encode()
    return ("\n".join(lines) + "\n" + text).encode()


def m_recursive(rng: random.Random, text: str) -> bytes:
    snippet = rng.choice(["a: &a [*a]", "a: &a {x: *a}", "a: &a [1, [2, *a]]", "a: &a {<<: *a}", "a: *b\nb: &b 1",
                          "a: &a 1\nb: &a 2\nc: *a", "description: &d [*d, *d]"])  # fmt: skip
    return (snippet + "\n" + text).encode()


def m_scalar(rng: random.Random, text: str) -> bytes:
    value = rng.choice(["9" * 5000, "0x" + "f" * 200_000, "0o" + "7" * 5000, "0b" + "1" * 100_000, "1" + ":59" * 2000,
                        "1." + "9" * 100_000, "'" + "x" * 900_000 + "'", "2001-13-45", "2001-02-30 25:61:61",
                        "!!int abc", "!!float x", "!!binary ###", "!!timestamp 0", "!!str [1]", "!custom 1",
                        "!!python/name:os.system", "!!python/object/apply:os.system [echo]", "!!set {a, b}",
                        "!!omap [a: 1, a: 2]", "!!pairs [a]", "&x !!map {a: 1}"])  # fmt: skip
    key = rng.choice(["name", "description", "x"])
    return f"{key}: {value}\n".encode() + text.encode()


def m_size(rng: random.Random, text: str) -> bytes:
    pad = rng.choice([(1 << 20) - len(text.encode()), 1 << 20, 2 << 20, 8 << 20])
    if rng.random() < 0.5:
        return text.encode() + b"#" + b"x" * max(0, pad) + b"\n"
    return text.encode() + b"\n".join(b"k%d: %d" % (i, i) for i in range(max(1, pad // 12))) + b"\n"


def m_structure(rng: random.Random, text: str) -> bytes:
    return rng.choice([b"", b"\n", b"# only a comment\n", b"- a\n- b\n", b"42\n", b"'a string'\n", b"null\n",
                       b"---\n...\n", text.encode() + b"\n---\n" + text.encode(), b"[" + text.encode() + b"]",
                       b"{a: 1, a: 2}\n", b"? [a, b]\n: c\n", b"\xef\xbb\xbf" + text.encode(),
                       b"%YAML 9.9\n---\na: 1\n",
                       text.replace("\n", "\r\n").encode(), text.replace("  ", "\t").encode(),
                       text.encode("utf-16"), text.encode("utf-32")])  # fmt: skip


def m_value(rng: random.Random, text: str) -> bytes:
    """A random scalar of the parsed scenario replaced with an edge value."""
    data = yaml.safe_load(text)
    slots = list(_scalar_slots(data))
    container, key = rng.choice(slots)
    container[key] = yaml.safe_load("x: " + rng.choice(EDGE_VALUES[:24]))["x"]
    if rng.random() < 0.3:
        del container[key]
    return yaml.safe_dump(data, sort_keys=False).encode()


def m_keys(rng: random.Random, text: str) -> bytes:
    data = yaml.safe_load(text)
    slots = [(c, k) for c, k in _scalar_slots(data) if isinstance(c, dict)]
    container, key = rng.choice(slots)
    op = rng.choice(["unknown", "rename", "nest", "list", "none"])
    if op == "unknown":
        container["x" * rng.choice([1, 100, 10_000])] = 1
    elif op == "rename":
        container[key.upper() if isinstance(key, str) else key] = container.pop(key)
    elif op == "nest":
        container[key] = {"value": container[key]}
    elif op == "list":
        container[key] = [container[key]] * rng.choice([2, 10_000])
    else:
        container[key] = None
    return yaml.safe_dump(data, sort_keys=False, width=10**6).encode()


def _scalar_slots(node: object) -> Iterator[tuple[dict | list, object]]:  # type: ignore[type-arg]
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for k, v in items:
        if isinstance(v, dict | list):
            yield from _scalar_slots(v)
        else:
            yield node, k  # type: ignore[misc]


FILE_MUTATIONS: dict[str, Callable[[random.Random, str], bytes]] = {
    "utf8": m_utf8, "control": m_control, "truncate": m_truncate, "byteflip": m_byteflip, "lines": m_lines,
    "deep": m_deep, "bomb": m_bomb, "recursive": m_recursive, "scalar": m_scalar, "size": m_size,
    "structure": m_structure, "value": m_value, "keys": m_keys,
}  # fmt: skip
SURELY_BAD = {"utf8", "deep", "bomb", "recursive", "size"}  # never a valid scenario: safe for a real twin run


# --- case generators ---------------------------------------------------------------------------------


def _command(rng: random.Random, target: str, kind: str, out: str = "out") -> list[str]:
    """A command that reads ``target`` as a scenario; real runs only where the input cannot be valid."""
    choices = ["check", "sim", "dry", "turn"] + (["hw"] if kind in SURELY_BAD else [])
    cmd = rng.choice(choices)
    if cmd == "check":
        return ["scenario", "check", target]
    if cmd == "sim":
        return ["sim", target, "--out", out, "--replications", "1", *SIM_BUDGET]
    if cmd == "turn":  # both modes in one run, their rounds in turn, split in two
        return ["sim", target, "--mode", "both", "--rounds-in-turn", "--out", out, "--replications", "1", *SIM_BUDGET]
    if cmd == "dry":
        return ["hw", "run", target, "--backend", "k8s", "--dry-run"]
    return ["hw", "run", target, "--out", out, "--rounds", "1"]


def gen_file(rng: random.Random) -> Case:
    kind = rng.choice(list(FILE_MUTATIONS))
    _, text = base_text(rng)
    content = FILE_MUTATIONS[kind](rng, text)
    argv = _command(rng, "s.yaml", kind)
    return Case(f"file:{kind}", argv, ("s.yaml",), files={"s.yaml": content}, out="out")


def gen_profile(rng: random.Random) -> Case:
    """A mutated profile, referenced by a host (or given with --profile)."""
    kind = rng.choice(list(FILE_MUTATIONS))
    text = (SCENARIOS / "profiles" / "pi4-liboqs.yaml").read_text()
    content = FILE_MUTATIONS[kind](rng, text)
    base = rng.choice(BASES)
    if rng.random() < 0.5:
        argv = ["sim", f"scenarios/{base}", "--profile", "p.yaml", "--out", "out", "--replications", "1", *SIM_BUDGET]
    else:
        argv = ["scenario", "check", f"scenarios/{base}", "--set", "deployment.hosts.0.profile=../p.yaml"]
    return Case(f"profile:{kind}", argv, ("p.yaml",), files={"p.yaml": content}, out="out")


SPECIAL = {
    "fifo": ("s.yaml", "fifo"), "dir": ("s.yaml", "dir"), "loop": ("s.yaml", "loop"),
    "dangling": ("s.yaml", "dangling"),
    "notdir": ("f/s.yaml", "notdir"), "missing": ("nope.yaml", ""), "dev-zero": ("/dev/zero", ""),
    "dev-null": ("/dev/null", ""), "dev-urandom": ("/dev/urandom", ""), "dev-stdin": ("/dev/stdin", ""),
    "proc": ("/proc/self/status", ""), "newline": ("a\nb.yaml", "copy"), "long": ("x" * 300 + ".yaml", ""),
    "deep-path": ("/".join(["d"] * 2000) + "/s.yaml", ""), "markup": ("m[/red]/[b]:smile:.yaml", "copy"),
}  # fmt: skip


def gen_special(rng: random.Random) -> Case:
    kind = rng.choice(list(SPECIAL))
    path, how = SPECIAL[kind]
    name = Path(path).name[:40]
    target_is_profile = rng.random() < 0.3 and how != "notdir"
    if target_is_profile:
        argv = ["sim", f"scenarios/{rng.choice(BASES)}", "--profile", path, "--out", "out", *SIM_BUDGET]
    else:
        argv = _command(rng, path, "special" if how == "copy" else "utf8")
    special = {path: how} if how else {}
    shown = name.replace("\n", "\\n")
    return Case(f"special:{kind}", argv, (name, shown, path[:40], "--profile"), special=special, out="out")


def gen_set(rng: random.Random) -> Case:
    """A malformed --set: odd path parts, malformed YAML values, very deep or long paths."""
    base = rng.choice(BASES)
    kind = rng.choice(["value", "part", "deep", "long-value", "no-equals", "edge"])
    path = rng.choice(["name", "workload.fl.rounds", "deployment.pods.0.host", "deployment.hosts.pi-1.cores",
                       "workload.devices.0.count", "run.seed", "workload.crypto.kem", "x.y"])  # fmt: skip
    if kind == "value":
        item = f"{path}={rng.choice(BAD_YAML_VALUES)}"
    elif kind == "part":
        parts = path.split(".")
        parts[rng.randrange(len(parts))] = rng.choice(ODD_PARTS)
        item = ".".join(parts) + "=1"
    elif kind == "deep":
        item = ".".join(["a"] * rng.choice([17, 100, 5000, 20_000])) + "=1"
    elif kind == "long-value":
        item = f"{path}=" + rng.choice(["x" * 70_000, "[" + "1," * 40_000 + "1]", "a: " * 30])
    elif kind == "edge":
        item = f"{path}={rng.choice(EDGE_VALUES)}"
    else:
        item = rng.choice(["", "=", "=1", "name", ".=1", "name==x", "\\=1"])
    target = f"scenarios/{base}"
    argv = (["scenario", "check", target, "--set", item] if rng.random() < 0.6
            else ["sim", target, "--set", item, "--out", "out", "--replications", "1", *SIM_BUDGET])  # fmt: skip
    return Case(f"set:{kind}", argv, ("--set", base), out="out")


def gen_edge(rng: random.Random, fields: list[tuple[str, dict[str, Any]]]) -> Case:
    """Every numeric field at, and just past, its bounds and at non-numbers; sometimes several at once."""
    sets = []
    for _ in range(rng.choice([1, 1, 1, 2, 4])):
        path, bounds = rng.choice(fields)
        at_bounds = bound_values(bounds)
        value = rng.choice(at_bounds + EDGE_VALUES[:30] if rng.random() < 0.8 or not at_bounds else at_bounds)
        sets += ["--set", f"{path}={value}"]
    cmd = rng.choice(["check", "sim", "sim"])
    paper = "scenarios/paper-3node.yaml"
    argv = (["scenario", "check", paper, *sets] if cmd == "check"
            else ["sim", paper, *sets, "--out", "out", "--replications", "1", *SIM_BUDGET])  # fmt: skip
    return Case("edge", argv, ("paper-3node.yaml", "--set"), out="out")


def gen_huge(rng: random.Random, fields: list[tuple[str, dict[str, Any]]]) -> Case:
    """Values that validate but ask for a run no machine finishes: the cost estimate must refuse them."""
    big = [("workload.devices.0.count", "100000"), ("workload.fl.rounds", "100000"), ("run.replications", "10000"),
           ("workload.fl.model_parameters", "1000000000"), ("run.segment_bytes", "64"),
           ("workload.devices.0.frame_period_s", "0.001"), ("workload.fl.clients", "10000"),
           ("run.horizon_s", "31536000"), ("workload.crypto.rekey.device_interval_s", "1"),
           ("workload.devices.0.sample_rate_hz", "1000000"), ("workload.fl.samples_per_client", "10000000"),
           ("workload.fl.local_epochs", "1000"), ("workload.processing.workers", "1024"),
           ("deployment.hosts.0.cores", "1024"), ("workload.fl.dropout_probability", "0.99"),
           ("workload.fl.round_timeout_s", "86400"), ("deployment.network.links.0.bandwidth_bps", "1")]  # fmt: skip
    picks = rng.sample(big, rng.choice([2, 3, 4]))
    sets = [a for p, v in picks for a in ("--set", f"{p}={v}")]
    twin = [("workload.fl.model_parameters", "1000000000"), ("workload.devices.0.count", "100000"),
            ("workload.fl.samples_per_client", "10000000")]  # fmt: skip
    if rng.random() < 0.2:  # the twin: real processes; what the estimate lets through would run for real
        picks = [rng.choice(twin), *rng.sample(big, 1)]
        sets = [a for p, v in picks for a in ("--set", f"{p}={v}")]
        argv = ["hw", "run", "scenarios/paper-3node.yaml", *sets, "--out", "out", "--max-memory-gib", "1"]
        return Case("huge", argv, ("paper-3node.yaml", "--set", *(p for p, _ in picks)), out="out")
    # check: the default budget (it only estimates); sim: a short one, so what it lets through ends in time
    argv = rng.choice([["scenario", "check", "scenarios/ward-200.yaml", *sets],
                       ["sim", "scenarios/ward-200.yaml", *sets, "--out", "out", *SIM_BUDGET]])  # fmt: skip
    names = ("ward-200.yaml", "--set", *(p for p, _ in picks))
    return Case("huge", argv, names, out="out")


OPTION_CASES = [
    (["--seed", "-1"], "--seed"), (["--seed", "99999999999999999999999"], "--seed"), (["--seed", "x"], "--seed"),
    (["--replications", "0"], "--replications"), (["--replications", "1000000000"], "--replications"),
    (["--replications", "1e3"], "--replications"), (["--mode", "parallel"], "--mode"), (["--mode", ""], "--mode"),
    (["--out", "/dev/null"], "--out"), (["--out", ""], "--out"), (["--out", " "], "--out"),
    (["--out", "file.txt"], "--out"), (["--out", "file.txt/sub"], "--out"), (["--out", "full"], "--out"),
    (["--out", "/proc/self/x"], "--out"), (["--out", "/" + "d" * 5000], "--out"), (["--profile", ""], "--profile"),
    (["--profile", "nope.yaml"], "--profile"), (["--profile", "/dev/zero"], "--profile"),
    (["--max-memory-gib", "nan"], "--max-memory-gib"), (["--max-memory-gib", "0"], "--max-memory-gib"),
    (["--max-memory-gib", "inf"], "--max-memory-gib"), (["--max-minutes", "-5"], "--max-minutes"),
    (["--bogus"], "--bogus"), (["--mode", "caf\udce9"], "--mode"), (["--set"], "--set"), (["--seed"], "--seed"),
    (["--max-memory-gib", "0.01"], "GiB"),
    (["--max-minutes", "0.01"], "--max-minutes"),
    (["--rounds-in-turn"], "--rounds-in-turn"), (["--mode", "sequential", "--rounds-in-turn"], "--rounds-in-turn"),
    (["--mode", "both", "--rounds-in-turn", "--set", "workload.fl.rounds=1"], "workload.fl.rounds"),
    (["--fabric-of", "nope"], "--fabric-of"), (["--fabric-of", "file.txt"], "--fabric-of"),
    (["--fabric-of", "nonempty"], "--fabric-of"), (["--workers", "-1"], "--workers"),
]  # fmt: skip
HW_OPTION_CASES = [
    (["--rounds", "0"], "--rounds"), (["--rounds", "1000000000"], "--rounds"), (["--backend", "cloud"], "--backend"),
    (["--start-timeout", "inf"], "--start-timeout"), (["--start-timeout", "nan"], "--start-timeout"),
    (["--start-timeout", "-1"], "--start-timeout"), (["--attack", "nuke"], "--attack"),
    (["--attack", "tamper", "--backend", "k8s"], "--attack"), (["--mode", "both"], "--mode"),
    (["--out", "/dev/null"], "--out"), (["--out", ""], "--out"), (["--out", "file.txt"], "--out"),
    (["--out", "nonempty"], "--out"), (["--seed", "-1"], "--seed"),
]  # fmt: skip
OTHER_COMMANDS = [
    (["compare", "nope", "nope2"], "nope"), (["compare", "file.txt", "file.txt"], "file.txt"),
    (["compare", "nonempty", "nonempty", "--out", "/dev/null"], "--out"),
    (["calibrate", "--out", "x.txt"], "--out"), (["calibrate", "--out", "nonempty"], "--out"),
    (["calibrate", "--out", "no/dir/p.yaml"], "--out"),
    (["calibrate", "--backend", "moon", "--out", "p.yaml"], "--backend"),
    (["calibrate", "--from-run", "nope", "--out", "p.yaml"], "nope"),
    (["calibrate", "--provider", "x", "--out", "p.yaml"], "--provider"),
    (["calibrate", "--algorithms", "Nope-1", "--out", "p.yaml"], "--algorithms"),
    (["node", "--role", "x", "--run-dir", "nope", "--name", "a"], "--run-dir"),
    (["scenario", "check"], "file"), (["scenario", "nope"], "nope"), (["nope"], "nope"), (["sim"], "scenario"),
    (["hw", "run"], "scenario"),
    (["compare", "nonempty", "nonempty", "--at-speed"], "nonempty"), (["report", "nope", "--out", "r.html"], "nope"),
    (["report", "file.txt", "--out", "r.html"], "file.txt"), (["report", "nonempty", "--out", "r.html"], "nonempty"),
    (["hw", "recover", "nope"], "nope"), (["hw", "recover", "nonempty"], "nonempty"),
    (["hw", "energy", "nonempty", "--power-log", "file.txt"], "file.txt"),
    (["study", "nope.yaml"], "nope.yaml"), (["study", "file.txt"], "file.txt"),
    (["scenario", "check", "scenarios/paper-3node.yaml", "--max-minutes", "0.01"], "--max-minutes"),
]  # fmt: skip


def gen_option(rng: random.Random) -> Case:
    files = {"file.txt": b"x", "nonempty/keep.txt": b"mine"}
    special = {"full": "full"}
    r = rng.random()
    if r < 0.5:
        opts, name = rng.choice(OPTION_CASES)
        argv = ["sim", f"scenarios/{rng.choice(BASES)}", "--replications", "1", *opts]
        if "--out" not in opts:
            argv += ["--out", "out"]
    elif r < 0.8:
        opts, name = rng.choice(HW_OPTION_CASES)
        argv = ["hw", "run", "scenarios/paper-3node.yaml", "--set", "workload.fl.rounds=1", *opts]
        argv += [] if "--out" in opts else ["--out", "out"]
        argv += ["--set", "name=bad name"] if not opts[0].startswith("--out") else []  # never a real twin run
    else:
        argv, name = rng.choice(OTHER_COMMANDS)
    values = tuple(a for a in argv[2:] if len(a) > 2 and not a.startswith("-"))
    return Case(
        "option", argv, (name, "bad name", "name", "argument", *values), files=files, special=special, out="out"
    )


def generate(n: int, seed: int = 1) -> list[Case]:
    """``n`` cases, the classes in fixed proportions, each drawn from ``seed``."""
    rng = random.Random(seed)
    fields = numeric_fields()
    gens: list[tuple[float, Callable[[random.Random], Case]]] = [
        (0.30, gen_file), (0.10, gen_profile), (0.08, gen_special), (0.17, gen_set),
        (0.17, lambda r: gen_edge(r, fields)), (0.06, lambda r: gen_huge(r, fields)), (0.12, gen_option),
    ]  # fmt: skip
    cases = []
    for i in range(n):
        x, acc = (i * 0.618034) % 1.0, 0.0  # low-discrepancy: every class in proportion, even for small n
        for share, gen in gens:
            acc += share
            if x < acc:
                cases.append(gen(rng))
                break
        else:
            cases.append(gens[-1][1](rng))
    return cases


# --- running -----------------------------------------------------------------------------------------


def _materialise(case: Case, where: Path, base: Path) -> None:
    where.mkdir(parents=True)
    (where / "scenarios").symlink_to(base / "scenarios")
    (where / "profiles").symlink_to(base / "scenarios" / "profiles")
    for rel, data in case.files.items():
        (where / rel).parent.mkdir(parents=True, exist_ok=True)
        (where / rel).write_bytes(data)
    for rel, how in case.special.items():
        p = where / rel
        if how != "notdir":  # its parent is the file "f"
            p.parent.mkdir(parents=True, exist_ok=True)  # a special file deep in a run directory
        if how == "fifo":
            os.mkfifo(p)
        elif how == "dir":
            p.mkdir()
        elif how == "loop":
            p.symlink_to(p.name)
        elif how == "dangling":
            p.symlink_to("nowhere.yaml")
        elif how == "notdir":
            (where / "f").write_text("a file")
        elif how == "copy":
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes((SCENARIOS / "paper-3node.yaml").read_bytes())
        elif how == "full":
            p.mkdir()


def _child(case: Case, where: Path) -> None:
    """In the forked child: run the CLI on the case and exit with its code (never returns)."""
    code = 99
    try:
        os.chdir(where)
        for fd, name in ((1, "stdout"), (2, "stderr")):
            os.dup2(os.open(where / f".{name}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
        sys.stdout, sys.stderr = open(1, "w", closefd=False), open(2, "w", closefd=False)  # noqa: SIM115
        sys.stdin = open(os.devnull)  # noqa: SIM115 - /dev/stdin cases must not wait for a terminal
        os.dup2(sys.stdin.fileno(), 0)
        if "full" in case.special:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a full disk: writes fail with EFBIG
            resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
            sys.dont_write_bytecode = True  # a module first imported now would be cached cut short (pqtwin/bytecode.py)
        from pqtwin.cli import run

        code = run(case.argv)
    except BaseException:
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)


def _limit_memory() -> None:
    """Cap the child's address space: a runaway case dies with MemoryError instead of taking the machine."""
    vm_kb = 0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            vm_kb = int(line.split()[1])
    limit = vm_kb * 1024 + 4 * GIB
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def run_cases(cases: list[Case], timeout_s: float = 60.0, jobs: int = 2, keep: Path | None = None) -> list[Result]:
    """Run every case in a forked child, at most ``jobs`` at a time."""
    import pqtwin.cli  # noqa: F401 - imported once here, shared by every child
    import sim.runner  # noqa: F401

    work = Path(keep or tempfile.mkdtemp(prefix="pqtwin-fuzz-"))
    base = work / "base"
    if not base.exists():
        shutil.copytree(SCENARIOS, base / "scenarios")
    results: list[Result | None] = [None] * len(cases)
    running: dict[int, tuple[int, float, Path]] = {}
    todo = list(enumerate(cases))
    try:
        while todo or running:
            while todo and len(running) < jobs:
                i, case = todo.pop(0)
                where = work / f"case-{i:05d}"
                _materialise(case, where, base)
                pid = os.fork()
                if pid == 0:
                    _limit_memory()
                    _child(case, where)
                running[pid] = (i, time.monotonic(), where)
            _reap(running, cases, results, timeout_s)
    finally:
        for pid in running:
            os.kill(pid, signal.SIGKILL)
        if keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return [r for r in results if r is not None]


def _reap(running: dict[int, tuple[int, float, Path]], cases: list[Case], results: list[Result | None],
          timeout_s: float) -> None:  # fmt: skip
    time.sleep(0.002)
    for pid, (i, started, where) in list(running.items()):
        done, status, usage = os.wait4(pid, os.WNOHANG)
        hung = False
        if done == 0:
            if time.monotonic() - started < timeout_s:
                continue
            os.kill(pid, signal.SIGKILL)
            _, status, usage = os.wait4(pid, 0)
            hung = True
        del running[pid]
        code = None if hung else os.waitstatus_to_exitcode(status)
        out = (where / ".stdout").read_text(errors="replace")
        err = (where / ".stderr").read_text(errors="replace")
        rss = usage.ru_maxrss * 1024
        res = Result(cases[i], code, out, err, time.monotonic() - started, rss, [])
        res.problems = judge(res, where)
        results[i] = res


def judge(r: Result, where: Path) -> list[str]:
    """What is wrong with how the CLI handled a case (empty: handled well)."""
    problems = []
    text = r.stdout + r.stderr
    if r.code is None:
        problems.append("hang")
    elif "Traceback" in text or "internal error" in r.stderr or r.code not in (0, 2):
        problems.append("traceback")
    if r.rss_bytes > MAX_RSS_BYTES:
        problems.append("over-memory")
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    if r.code == 2:
        if not lines or any(not ln.startswith(("error: ", "warning: ")) for ln in lines):
            problems.append("not-one-line")
        errors = [ln for ln in lines if ln.startswith("error: ")]
        if any(not any(n and n in ln for n in r.case.names) for ln in errors):
            problems.append("vague")
    if any(where.rglob("*.tmp")):
        problems.append("leftovers")
    out = where / (r.case.out or "out")
    if r.code not in (0, None) and out.is_dir() and any(p.name != "keep.txt" for p in out.iterdir()):
        problems.append("leftovers")
    return problems


def report(results: list[Result], wall_s: float) -> dict[str, Any]:
    counts = Counter(p for r in results for p in set(r.problems))
    codes = Counter(str(r.code) for r in results)
    kinds = Counter(r.case.kind.split(":")[0] for r in results)
    return {
        "cases": len(results), "wall_s": round(wall_s, 1), "by_class": dict(sorted(kinds.items())),
        "exit_codes": dict(sorted(codes.items())), "tracebacks": counts["traceback"], "hangs": counts["hang"],
        "over_memory": counts["over-memory"], "not_one_line": counts["not-one-line"], "vague": counts["vague"],
        "leftovers": counts["leftovers"], "max_rss_mib": round(max((r.rss_bytes for r in results), default=0) / 2**20),
        "slowest_s": round(max((r.wall_s for r in results), default=0), 1),
    }  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=2000, help="number of cases")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds before a case counts as hung")
    ap.add_argument("--keep", type=Path, help="keep the case directories here")
    ap.add_argument("--show", type=int, default=5, help="failed cases to print")
    args = ap.parse_args()
    started = time.monotonic()
    results = run_cases(generate(args.n, args.seed), args.timeout, args.jobs, args.keep)
    return conclude(results, time.monotonic() - started, args.show)


def conclude(results: list[Result], wall_s: float, show: int) -> int:
    """Print the first ``show`` failed cases and the counts; the exit code (1 when any case failed)."""
    for r in [r for r in results if r.problems][:show]:
        argv = " ".join(a[:60] for a in r.case.argv).encode("utf-8", "backslashreplace").decode()
        print(f"FAILED {r.case.kind} {r.problems} exit={r.code}: pqtwin {argv}")
        print("   " + (r.stderr.strip() or r.stdout.strip())[-600:].replace("\n", "\n   "))
    print(json.dumps(report(results, wall_s)))
    return 1 if any(r.problems for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
