"""Calibration profiles: what each operation costs on one platform (scenarios/profiles/*.yaml).

A profile holds platform metadata and, per operation name, a cost model:

- ``per_call``: summary statistics (``mean_s``, optional ``p50_s``/``stdev_s``/``n``) plus a fitted
  ``distribution`` the simulator samples from -- ``lognormal`` (``mu``, ``sigma`` of ln seconds) or
  ``empirical`` (``quantiles_s`` at evenly spaced probabilities 0..1, sampled by inverse CDF).
  Public-key operations use this: signing is heavy-tailed, so it is sampled, never a constant.
- ``linear``: ``per_call_s + per_unit_s * units`` with optional lognormal noise ``cv``; ``unit`` is
  ``byte`` (AEAD, hashing, serialisation), ``sample_param`` (training) or ``param`` (FedAvg).

What a profile prices is stated, not implied: ``platform`` records the CPU and clock, and ``libraries`` maps
each *provider* (the hardware twin's provider names ``openssl`` and ``liboqs``, or ``numpy``, ``kernel`` ...)
to the library, version and build (NEON, asm, portable C ...) its figures come from; every crypto operation
names its ``provider``. Two profiles of one CPU priced by different libraries are different profiles
(``pi4-liboqs``, ``pi4-openssl``), and the simulator warns when a scenario's suite is priced by another
provider than the twin would run (sim/provenance.py).

Operation names are ``<algorithm>.<op>`` for crypto (``ML-KEM-768.encaps``, ``AES-256-GCM.encrypt``,
``SHA-256.hash``), and ``serialize``, ``deserialize``, ``fl.train``, ``fl.fedavg``, optionally ``net.loopback``
(a message between pods of one host, per byte). Every value carries
its ``source`` and a ``tag``: M measured, D derived from a measurement by unit conversion, E estimate,
F fitted from a hardware-twin run (``pqtwin calibrate --from-run``; the source names the run).

``overheads`` (optional, usually F) price what a real code path adds to the library call, per operation
*kind* — the last part of the op name (``encaps``, ``sign``, ``encrypt``, ``serialize``, ``loopback``,
``train`` ...), so one fit carries over to every algorithm and size: cost = (base × ``factor`` +
``per_call_s`` + ``per_byte_s`` × bytes, never below zero) × a lognormal of spread ``sigma`` and median 1: the fit
(hw/fit.py) puts the cost at the twin's median and ``sigma`` at the spread of ln(measured / fitted) around it, so
the simulated median is the twin's (a mean-preserving factor put it exp(-sigma²/2) lower: 8-12 % at the
hand-offs' and code paths' 0.4-0.5, and the mean as much below the twin's).
Two entries price no library call but the step between two (``Profile.handoff_s``): ``receive_handoff``, from a
model's last byte to the client's first step on it (its thread woken, the record parsed), and ``inbox_handoff``,
from an update's last byte (or a crypto worker's answer) to the aggregator's main thread's first step on it (a
reader thread passes it through a queue), which the simulator also charges a concurrent round's distribution job
on the job thread that takes it (the main thread submits every client's job at once; each job thread wakes on
its own). The simulator runs them as work on the receiving
thread's host: in the kernel's traces of the twin, the receiving process ran for 71-100 % of a client's hand-off
and 53-83 % of the aggregator's (2026-11-30, docs/twin-validation.md), the rest its wake-up.
"""

from __future__ import annotations

import bisect
import itertools
import math
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import yaml
from pydantic import Field, model_validator

from sim.catalogue import CATALOGUE
from sim.contract import FL_PHASES, atomic_write
from sim.errors import UserError, field_error, load_yaml, shorten, validate
from sim.strict import StrictModel

Tag = Literal["M", "D", "E", "F"]
# Bounds: a profile may come from anywhere (--profile); costs beyond these overflow the simulated clock or
# turn every run into a timeout, and no measurement produces them.
MAX_COST_S = 1e6  # one operation: 11 days
RECEIVE_HANDOFF, INBOX_HANDOFF = "receive_handoff", "inbox_handoff"  # steps between ops (module docstring)
# A thread that did nothing this long starts a new burst of work (``Overhead.cold_s``): the twin's steps within a
# round's chain of calls follow each other within 0.2 ms, its waits for messages last 1 ms or more (12.5 k-1 M)
COLD_GAP_S = 0.0005
COLD_PHASES = tuple(p for p in FL_PHASES if p != "handshake")  # a round's calls: the runs fitted (hw/fit.py) hold them
MAX_PER_UNIT_S = 1.0  # per byte / sample-parameter / parameter: a second per unit is 10^7 times a Pi 4's
MAX_UNITS = 1e15
MAX_POINTS = 10_000  # quantiles or points of one operation
MAX_N = 10**12
PositiveSeconds = Annotated[float, Field(gt=0, le=MAX_COST_S)]
ProviderName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$")]


_Strict = StrictModel


class Lognormal(_Strict):
    kind: Literal["lognormal"]
    mu: float = Field(ge=-60, le=13.8)  # ln seconds: e^-60 s is nothing; e^13.8 s is MAX_COST_S
    sigma: float = Field(ge=0, le=5)

    def sample(self, rng: np.random.Generator) -> float:
        return float(rng.lognormal(self.mu, self.sigma)) if self.sigma > 0 else math.exp(self.mu)

    def samples(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return lognormals(rng, self.mu, self.sigma, n) if self.sigma > 0 else np.full(n, math.exp(self.mu))

    @property
    def mean_s(self) -> float:
        return math.exp(self.mu + self.sigma**2 / 2)


class Empirical(_Strict):
    kind: Literal["empirical"]
    quantiles_s: list[PositiveSeconds] = Field(min_length=2, max_length=MAX_POINTS)

    @model_validator(mode="after")
    def _sorted(self) -> Empirical:
        if any(b < a for a, b in zip(self.quantiles_s, self.quantiles_s[1:], strict=False)):
            raise ValueError("quantiles_s must be non-decreasing")
        return self

    def sample(self, rng: np.random.Generator) -> float:
        q = self.quantiles_s
        return float(np.interp(rng.random(), np.linspace(0, 1, len(q)), q))

    def samples(self, rng: np.random.Generator, n: int) -> np.ndarray:
        q = self.quantiles_s
        return np.interp(rng.random(n), np.linspace(0, 1, len(q)), q)

    @property
    def mean_s(self) -> float:
        return float(np.trapezoid(self.quantiles_s, np.linspace(0, 1, len(self.quantiles_s))))


class PerCallOp(_Strict):
    """A fixed-size operation: statistics as measured, and the distribution fitted to them."""

    kind: Literal["per_call"]
    mean_s: PositiveSeconds
    p50_s: PositiveSeconds | None = None
    stdev_s: float | None = Field(default=None, ge=0, le=MAX_COST_S)
    n: int | None = Field(default=None, ge=1, le=MAX_N)
    distribution: Lognormal | Empirical = Field(discriminator="kind")
    source: str = Field(min_length=1)
    tag: Tag
    provider: ProviderName | None = None  # a key of platform.libraries; required for crypto operations

    def cost_s(self, rng: np.random.Generator, units: float = 0.0) -> float:
        return self.distribution.sample(rng)

    def costs_s(self, rng: np.random.Generator, units: float, n: int) -> np.ndarray:
        return self.distribution.samples(rng, n)


BASES_KEPT = 1024  # sizes whose interpolated cost a LinearOp keeps (a model message, a frame, a training: a handful)
POINTS_KEPT = 4096  # points lists whose interpolated costs are kept (a run's profiles: a few dozen)
# interpolated costs by their points list's id: the list itself (so its id is not another's) and cost by units.
# Outside the model, so a LinearOp compares (==) by its fields alone and a copy with other points reads its own
_BASES: dict[int, tuple[list[Any], dict[float, float]]] = {}


def _bases_of(points: list[Any]) -> dict[float, float]:
    """The interpolated costs kept for ``points`` (``LinearOp.base_s``); a fresh dict past POINTS_KEPT lists."""
    kept = _BASES.get(id(points))
    if kept is None or kept[0] is not points:
        kept = (points, {})
        if len(_BASES) < POINTS_KEPT:
            _BASES[id(points)] = kept
    return kept[1]


class LinearOp(_Strict):
    """A size-dependent operation: per_call_s + per_unit_s * units, times lognormal noise of spread cv.

    Optional ``points`` ([units, seconds] medians as measured) take precedence: the cost is interpolated
    between them and extrapolated with the last segment's slope. Real costs bend (e.g. buffers past the
    allocator's mmap threshold cost page faults), which one straight line cannot follow.

    Optional ``pair_slowdown`` ([units, factor], training only): how many times slower each of two calls of
    that size runs when both run at once on two cores of the host, as measured -- two trainings share the
    memory bus and the last-level cache, which time-slicing (sim/hosts.py) does not capture (``slowdown``).
    """

    kind: Literal["linear"]
    unit: Literal["byte", "sample_param", "param"]
    per_call_s: float = Field(ge=0, le=MAX_COST_S)
    per_unit_s: float = Field(ge=0, le=MAX_PER_UNIT_S)
    cv: float = Field(default=0.0, ge=0, le=2)
    points: list[tuple[Annotated[float, Field(ge=0, le=MAX_UNITS)], PositiveSeconds]] | None = Field(
        default=None, min_length=2, max_length=MAX_POINTS
    )
    pair_slowdown: (
        list[tuple[Annotated[float, Field(ge=0, le=MAX_UNITS)], Annotated[float, Field(ge=1, le=10)]]] | None
    ) = Field(default=None, min_length=1, max_length=MAX_POINTS)
    source: str = Field(min_length=1)
    tag: Tag
    provider: ProviderName | None = None  # a key of platform.libraries; required for crypto operations

    @model_validator(mode="after")
    def _increasing_units(self) -> LinearOp:
        if (name := _not_increasing(self, ("points", "pair_slowdown"))) is not None:
            raise ValueError(f"{name} must have strictly increasing units")
        return self

    def slowdown(self, units: float, others: float) -> float:
        """The factor on a call's cost while ``others`` calls of this op run on other cores of the host: each
        adds the measured pair slowdown's excess (interpolated in units, held beyond the ends); 1 without
        measurements or others."""
        if not self.pair_slowdown or others <= 0:
            return 1.0
        excess = float(np.interp(units, [p[0] for p in self.pair_slowdown], [p[1] for p in self.pair_slowdown])) - 1
        return 1.0 + excess * others

    def base_s(self, units: float) -> float:
        if not self.points:
            return self.per_call_s + self.per_unit_s * units
        bases = _bases_of(self.points)
        base = bases.get(units)
        if base is None:
            base = self._interpolated_s(units)
            if len(bases) < BASES_KEPT:
                bases[units] = base
        return base

    def _interpolated_s(self, units: float) -> float:
        assert self.points
        (u0, t0), (u1, t1) = self.points[-2], self.points[-1]
        if units > u1:  # on along the last segment; held where it falls (more units never cost less: a noisy last
            return t1 + max(0.0, (t1 - t0) / (u1 - u0)) * (units - u1)  # point drove larger sizes' costs to 0)
        return float(np.interp(units, [p[0] for p in self.points], [p[1] for p in self.points]))

    def cost_s(self, rng: np.random.Generator, units: float = 0.0) -> float:
        base = self.base_s(units)
        if self.cv == 0:
            return base
        sigma = math.sqrt(math.log1p(self.cv**2))  # mean-preserving lognormal factor
        return base * float(rng.lognormal(-(sigma**2) / 2, sigma))

    def costs_s(self, rng: np.random.Generator, units: float, n: int) -> np.ndarray:
        base = self.base_s(units)
        if self.cv == 0:
            return np.full(n, base)
        sigma = math.sqrt(math.log1p(self.cv**2))
        return base * lognormals(rng, -(sigma**2) / 2, sigma, n)


def _not_increasing(model: Any, names: tuple[str, ...]) -> str | None:
    """The first of ``names`` whose [x, y] pairs' x does not strictly increase (None: all do, or are unset)."""
    for name in names:
        pts = getattr(model, name) or ()
        if any(b[0] <= a[0] for a, b in itertools.pairwise(pts)):
            return name
    return None


# [size, spread] pairs (``Overhead``): a size is bytes or seconds, a spread that of ln(cost)
SpreadTable = Annotated[
    list[tuple[Annotated[float, Field(gt=0, le=1e12)], Annotated[float, Field(ge=0, le=3)]]],
    Field(min_length=2, max_length=64),
]

# [model parameters, seconds] a fixed-size code path costs a call at each model size a fit ran
# (``Overhead.per_call_by_parameters``): may be negative
ParameterTable = Annotated[
    list[tuple[Annotated[float, Field(gt=0, le=MAX_UNITS)], Annotated[float, Field(ge=-MAX_COST_S, le=MAX_COST_S)]]],
    Field(min_length=2, max_length=64),
]

# [bytes, seconds] a code path adds at each message size a fit saw (``Overhead.extra_by_bytes``): may be negative
ExtraTable = Annotated[
    list[tuple[Annotated[float, Field(gt=0, le=MAX_UNITS)], Annotated[float, Field(ge=-MAX_COST_S, le=MAX_COST_S)]]],
    Field(min_length=3, max_length=64),
]


class Overhead(_Strict):
    """What a code path adds to an operation kind's library cost (module docstring).

    ``sigma_by_bytes``, ``sigma_by_cost_s`` (optional): the spread by size, [size, sigma] pairs in increasing size,
    where the fit saw several sizes (hw/fit.py ``_jitter_by_size``): by the call's bytes for calls that carry
    bytes, else by the profile's cost of the call in seconds (training, FedAvg, fixed-size calls). Between two
    sizes the spread is interpolated in log size, beyond the ends the nearest is taken; a call with no table for
    its axis draws ``sigma``, the pooled spread. A 1 M-parameter training step jitters less, relative to its
    length, than a 12.5 k one (2026-12-01: ln-spread 0.10-0.13 at 250 k, 0.29-0.34 at 12.5 k); one pooled
    ``sigma`` made the simulated steps of a round end twice as far apart as the twin's, and a round waits for the
    last. (The fit sizes a training step by its price beside the other steps it ran with, ``pair_slowdown`` 1.04-
    1.17x; the simulator by the drawn library cost, before that slowdown: the same size class, a factor of 2
    wide, for all but steps at a class's edge.)

    ``extra_by_bytes`` (optional, a fit of runs at three model sizes or more, hw/fit.py): [bytes, seconds] the code
    path adds at each message size the fit saw, in place of ``per_call_s + per_byte_s * bytes`` for calls that
    carry bytes: linear in bytes between two sizes, beyond the ends the line through the nearest two. The
    profile's own price of a large message is memory-bound where a small one's is cache-warm (AES-256-GCM here:
    x7.9 from 1 to 4 MB for x4 the bytes), while the twin's data is never warm (x3.0): a line fitted at
    53 KB-1 MB counted that step twice at 4 MB (docs/twin-validation.md, stop 70).

    ``per_call_by_parameters`` (optional, a fit of runs at two model sizes or more, hw/fit.py): [model parameters,
    seconds] the constant ``per_call_s`` at each model size the fit ran, for a code path of fixed size (a KEM
    operation, a hand-off): interpolated in log size at the scenario's model size (``at_model``; clamped at the
    ends). The same decapsulation costs the twin 50-55 µs a call in rounds of a 12.5 k-parameter model and 91-98 µs
    in rounds of a 250 k one (the model's buffers pass through the caches between two calls); fitted per size the
    constants are steady from one calibration to the next, pooled over the sizes their median fell anywhere between
    (docs/twin-validation.md, stop 74).

    ``linear_between_parameters`` (optional, training only: a fit of training runs at two model sizes, hw/fit.py):
    [smallest, largest] model parameters the runs trained. Between them a step is priced on the line between the
    profile's prices at the two sizes (``Profile.at_model``, through ``factor``), not through the calibration's
    points inside: the twin's steps grow linearly there (64 ns a parameter from 12.5 k to 50 k and from 50 k to
    250 k, eight matrices alike), while one calibration's fastest-of-5 point at 50 k ran 53-59 ns a parameter to
    its 250 k point, and the fit, a line of measured against that price, carried the bend to every 50 k step
    (+6-12 %; docs/twin-validation.md, stop 75).

    ``cold_per_call_s``, ``cold_per_byte_s`` (optional, fitted from sequential twin runs, hw/fit.py ``_cold``): what a
    round's *first* call of this kind in a burst of its thread's work costs beyond a later one of the same size in
    the same burst (a burst: the thread's steps with less than ``COLD_GAP_S`` between them; sim/hosts.py
    ``Endpoint``). The twin's aggregator decrypts its second update of a round 1 MB 78 µs and 8 MB 658 µs faster
    than its first, serialises the second client's model 70 / 511 µs faster (fresh pages and cold caches after the
    wait, whatever the cause: the calibration times its calls back to back, always warm); the overhead proper is
    fitted net of it (docs/twin-validation.md, stop 77)."""

    factor: float = Field(default=1.0, gt=0, le=1e3)
    per_call_s: float = Field(default=0.0, ge=-MAX_COST_S, le=MAX_COST_S)  # fitted: may be negative
    per_byte_s: float = Field(default=0.0, ge=-MAX_PER_UNIT_S, le=MAX_PER_UNIT_S)
    sigma: float = Field(default=0.0, ge=0, le=3)  # spread of ln(cost) around it: a lognormal of median 1
    sigma_by_bytes: SpreadTable | None = None
    sigma_by_cost_s: SpreadTable | None = None
    extra_by_bytes: ExtraTable | None = None
    per_call_by_parameters: ParameterTable | None = None
    linear_between_parameters: (
        tuple[Annotated[float, Field(gt=0, le=MAX_UNITS)], Annotated[float, Field(gt=0, le=MAX_UNITS)]] | None
    ) = None
    cold_per_call_s: float = Field(default=0.0, ge=0, le=MAX_COST_S)
    cold_per_byte_s: float = Field(default=0.0, ge=0, le=MAX_PER_UNIT_S)
    n: int | None = Field(default=None, ge=1, le=MAX_N)
    source: str = Field(min_length=1)
    tag: Tag

    @model_validator(mode="after")
    def _sizes_increase(self) -> Overhead:
        names = ("sigma_by_bytes", "sigma_by_cost_s", "extra_by_bytes", "per_call_by_parameters")
        if (name := _not_increasing(self, names)) is not None:
            raise ValueError(f"{name}: sizes must increase (got {[size for size, _ in getattr(self, name)]})")
        if (pair := self.linear_between_parameters) is not None and pair[1] <= pair[0]:
            raise ValueError(f"linear_between_parameters: the largest size must exceed the smallest (got {list(pair)})")
        return self

    def at_model(self, parameters: int) -> Overhead:
        """This overhead in rounds of a ``parameters``-sized model: ``per_call_s`` from ``per_call_by_parameters``
        where it has one (class docstring; the table kept, for the reader)."""
        if self.per_call_by_parameters is None:
            return self
        return self.model_copy(update={"per_call_s": _interp_log(self.per_call_by_parameters, float(parameters))})

    @property
    def varies(self) -> bool:
        """A call's cost is drawn (some spread at some size)."""
        if self.sigma > 0:  # every call asks: the common answer first
            return True
        return any(sd > 0 for table in (self.sigma_by_bytes, self.sigma_by_cost_s) for _, sd in table or ())

    def sigma_at(self, nbytes: float, cost_s: float) -> float:
        """The spread of a call of ``nbytes`` (0: none) that the profile prices at ``cost_s`` (class docstring)."""
        pts = self.sigma_by_bytes if nbytes > 0 else self.sigma_by_cost_s
        return self.sigma if pts is None else _interp_log(pts, nbytes if nbytes > 0 else cost_s)

    def extra_s(self, nbytes: float) -> float:
        """What the code path adds to a call of ``nbytes`` (class docstring)."""
        pts = self.extra_by_bytes
        if pts is None or nbytes <= 0:
            return self.per_call_s + self.per_byte_s * nbytes
        i = min(max(bisect.bisect_left(pts, (nbytes,)), 1), len(pts) - 1)  # the segment holding it, or the end's
        (x0, y0), (x1, y1) = pts[i - 1], pts[i]
        return y0 + (y1 - y0) * (nbytes - x0) / (x1 - x0)

    def cold_s(self, nbytes: float) -> float:
        """What a burst's first call of ``nbytes`` (0: none) costs beyond a later one (class docstring)."""
        return self.cold_per_call_s + self.cold_per_byte_s * max(nbytes, 0.0)

    def apply(self, base_s: float, nbytes: float, rng: np.random.Generator | None = None) -> float:
        cost = max(0.0, base_s * self.factor + self.extra_s(nbytes))
        if rng is None or not self.varies:
            return cost
        return cost * float(rng.lognormal(0.0, self.sigma_at(nbytes, base_s)))

    def apply_all(self, base_s: np.ndarray, nbytes: float, rng: np.random.Generator) -> np.ndarray:
        cost: np.ndarray = np.maximum(0.0, base_s * self.factor + self.extra_s(nbytes))
        if not self.varies:
            return cost
        if nbytes > 0 or self.sigma_by_cost_s is None:  # one spread for all
            factor: np.ndarray = lognormals(rng, 0.0, self.sigma_at(nbytes, 0.0), cost.size)
        else:
            sizes, sds = np.array(self.sigma_by_cost_s).T
            factor = rng.standard_normal(cost.size)
            factor *= np.interp(np.log(np.maximum(base_s, 1e-300)), np.log(sizes), sds)  # clamped at both ends
            np.exp(factor, out=factor)
        cost *= factor
        return cost


def _interp_log(points: list[tuple[float, float]], x: float) -> float:
    """The value at ``x`` of [size, value] points in increasing size: interpolated in log size, clamped."""
    if x <= points[0][0]:
        return points[0][1]
    for (x0, y0), (x1, y1) in itertools.pairwise(points):
        if x <= x1:
            return y0 + (y1 - y0) * math.log(x / x0) / math.log(x1 / x0)
    return points[-1][1]


def lognormals(rng: np.random.Generator, mu: float, sigma: float, n: int) -> np.ndarray:
    """``n`` draws of exp(N(mu, sigma)): ``rng.lognormal``'s normal draws, then numpy's vectorised exp (a third
    faster for the vectorized engine's millions of frames; the same law, each value within an ulp of it)."""
    z = rng.standard_normal(n)
    z *= sigma
    z += mu
    return np.exp(z, out=z)


# What the simulator counts a linear op's units in (sim/model.py): training in samples x parameters, FedAvg in
# parameters, everything else (AEAD, hashes, serialisation, the loopback, a signature's message) in bytes.
UNIT_OF: dict[str, str] = {"fl.train": "sample_param", "fl.fedavg": "param"}
UNIT_WORDS = {"byte": "bytes", "sample_param": "samples x parameters", "param": "parameters"}


def unit_of(op: str) -> str:
    """The unit the simulator prices linear op ``op`` per (``UNIT_OF``; bytes for every other op)."""
    return UNIT_OF.get(op, "byte")


def unit_problem(op: str, unit: Any) -> str | None:
    """Why a linear op's ``unit`` is not the one the simulator prices ``op`` per (None: it is)."""
    want = unit_of(op)
    if not isinstance(unit, str) or unit == want or unit not in UNIT_WORDS:  # not a unit: the field's error says so
        return None
    return f"{op} is priced per {want} ({UNIT_WORDS[want]}), not per {unit}: write unit: {want}"


def overhead_bytes(model: PerCallOp | LinearOp, units: float) -> float:
    """The bytes a call processed, for its kind's per-byte overhead: a per-byte op's units, a signature's
    message size (its cost is per call); 0 for work counted in other units (training, FedAvg)."""
    return units if not isinstance(model, LinearOp) or model.unit == "byte" else 0.0


def op_kind(op: str) -> str:
    """``ML-KEM-768.encaps`` -> ``encaps``; ``net.loopback`` -> ``loopback``; ``serialize`` -> ``serialize``."""
    return op.rsplit(".", 1)[-1]


class Library(_Strict):
    """One library a profile's figures come from (measured with it, or for tag E estimated for it)."""

    library: str = Field(min_length=1, max_length=200)  # "OpenSSL", "liboqs", "NumPy"
    version: str = Field(min_length=1, max_length=200)  # "3.6.0", "0.14.1-dev"
    build: str = Field(min_length=1, max_length=500)  # "aarch64 NEON (OQS_OPT_TARGET=auto)", "asm", "portable C"

    def __str__(self) -> str:
        return f"{self.library} {self.version} ({self.build})"


class Platform(_Strict):
    cpu: str
    cores: int = Field(ge=1, le=1_000_000)
    clock_hz: float | None = Field(default=None, gt=0, le=1e12)  # None: not known (e.g. no cpufreq in a VM)
    # the reference kernel's CPU time in the state the prices were taken at, and its p90/p10 spread over the whole
    # calibration (hw/speed.py usual_us: the median on a steady host); None: not probed
    speed_probe_us: float | None = Field(default=None, gt=0, le=1e9)
    speed_probe_spread: float | None = Field(default=None, ge=1, le=1e6)
    # a reference training step alone (hw/trainprobe.py training_probe: its model's parameters and samples) in the
    # memory state the training price holds (a calibration's, or the fitted runs'); None: not probed
    training_probe_s: float | None = Field(default=None, gt=0, le=1e6)
    training_probe_parameters: int | None = Field(default=None, ge=1, le=10**12)
    training_probe_samples: int | None = Field(default=None, ge=1, le=10**12)
    libraries: dict[ProviderName, Library] = Field(min_length=1, max_length=64)
    date: str
    how_measured: str

    @model_validator(mode="after")
    def _probe_whole(self) -> Platform:
        given = [self.training_probe_s, self.training_probe_parameters, self.training_probe_samples]
        if any(x is not None for x in given) and any(x is None for x in given):
            raise ValueError("training_probe_s, training_probe_parameters and training_probe_samples go together")
        return self


class HostPower(_Strict):
    """A host's electrical power (LEAF's linear model): ``idle_w`` whatever it does, plus ``busy_core_w`` for
    each core busy with work (the marginal power of a core, above idle). sim/energy.py prices spans with it."""

    idle_w: float = Field(ge=0, le=1e5)
    busy_core_w: float = Field(ge=0, le=1e4)
    source: str = Field(min_length=1)
    tag: Tag


# a profile's name: what tables and one-line messages show as is (no newline, no path separator)
PROFILE_NAME = r"[A-Za-z0-9][A-Za-z0-9._+-]{0,99}"


class Profile(_Strict):
    """Costs of every operation on one platform, as read from a profile file."""

    profile: str = Field(pattern=f"^{PROFILE_NAME}$")
    description: str = ""
    platform: Platform
    ops: dict[str, Annotated[PerCallOp | LinearOp, Field(discriminator="kind")]]
    overheads: dict[str, Overhead] = Field(default_factory=dict)
    power: HostPower | None = None  # None: energy is not reported for hosts priced by this profile
    # costs x this: a host at another speed (``at_speed``, from a scenario's ``cpu_speed``); not a file field
    # (``load_profile`` refuses it) and never written; a plain field because costs read it on every call
    time_scale: float = Field(default=1.0, gt=0, le=1e6, exclude=True, repr=False)

    def at_speed(self, speed: float) -> Profile:
        """This profile on cores running ``speed`` times as fast as when it was measured (every cost / speed)."""
        if not 0 < speed < math.inf:
            raise ValueError(f"speed must be positive and finite (got {speed})")
        return self.model_copy(update={"time_scale": self.time_scale / speed})

    def at_model(self, parameters: int, train_units: float | None = None) -> Profile:
        """This profile priced for rounds of a ``parameters``-sized model (``Overhead.at_model``), whose training
        step counts ``train_units`` (samples x parameters x epochs; ``Overhead.linear_between_parameters``); itself
        where no overhead depends on the model's size."""
        if all(o.per_call_by_parameters is None and o.linear_between_parameters is None
               for o in self.overheads.values()):  # fmt: skip
            return self
        overheads = {k: o.at_model(parameters) for k, o in self.overheads.items()}
        if (train := overheads.get("train")) is not None and train_units is not None:
            overheads["train"] = self._train_on_line(train, parameters, train_units)
        return self.model_copy(update={"overheads": overheads})

    def _train_on_line(self, train: Overhead, parameters: int, units: float) -> Overhead:
        """``train`` whose factor prices a step of ``units`` on the line between the op's prices at the ends of
        ``linear_between_parameters``, where ``parameters`` lies strictly between them (``Overhead`` docstring)."""
        pair, op = train.linear_between_parameters, self.ops.get("fl.train")
        if pair is None or not isinstance(op, LinearOp) or not pair[0] < parameters < pair[1]:
            return train
        per_parameter = units / parameters
        (u0, u1), at = (pair[0] * per_parameter, pair[1] * per_parameter), op.base_s(units)
        t0, t1 = op.base_s(u0), op.base_s(u1)
        on_line = t0 + (t1 - t0) * (units - u0) / (u1 - u0)
        return train.model_copy(update={"factor": train.factor * on_line / at}) if at > 0 and on_line > 0 else train

    @model_validator(mode="after")
    def _training_line_on_training(self) -> Profile:
        """``linear_between_parameters`` prices a training step (``at_model``): on another kind it would be ignored."""
        for kind, o in self.overheads.items():
            if o.linear_between_parameters is not None and kind != "train":
                raise ValueError(f"overheads.{kind}.linear_between_parameters: only the train overhead has one")
        return self

    @model_validator(mode="after")
    def _providers_stated(self) -> Profile:
        """Every crypto operation names its provider, and every named provider is described."""
        for name, op in self.ops.items():
            if op.provider is None and name.rsplit(".", 1)[0] in CATALOGUE:
                raise ValueError(f"ops.{name}: a crypto operation names its provider (a key of platform.libraries)")
            if op.provider is not None and op.provider not in self.platform.libraries:
                known = ", ".join(self.platform.libraries)
                raise ValueError(f"ops.{name}: provider {op.provider!r} is not in platform.libraries ({known})")
        return self

    @model_validator(mode="after")
    def _units_priced(self) -> Profile:
        """A linear op's ``unit`` is what the simulator counts it in: ``fl.train`` with ``unit: byte`` was
        priced per sample-parameter all the same, and reported "per byte" (and its units taken as bytes by a
        per-byte overhead)."""
        for name, op in self.ops.items():
            if isinstance(op, LinearOp) and (problem := unit_problem(name, op.unit)) is not None:
                raise ValueError(f"ops.{name}.unit: {problem}")
        return self

    def library(self, name: str) -> Library | None:
        """The library that priced operation ``name`` (None when the op names no provider)."""
        provider = self.op(name).provider
        return None if provider is None else self.platform.libraries[provider]

    def op(self, name: str) -> PerCallOp | LinearOp:
        try:
            return self.ops[name]
        except KeyError:
            raise KeyError(f"profile {self.profile!r} has no cost for operation {name!r}") from None

    def cost_s(self, name: str, rng: np.random.Generator, units: float = 0.0, cold: bool = False) -> float:
        """One call's cost: the op's sampled cost, plus its kind's overhead when the profile has one; ``cold``: the
        first of its kind in a burst of its thread's work (``Overhead.cold_s``)."""
        model = self.op(name)
        base = model.cost_s(rng, units)
        extra = self.overheads.get(op_kind(name))
        if extra is None:
            return base * self.time_scale
        nbytes = overhead_bytes(model, units)
        cost = extra.apply(base, nbytes, rng) + (extra.cold_s(nbytes) if cold else 0.0)
        return cost * self.time_scale

    def costs_s(self, name: str, rng: np.random.Generator, units: float, n: int) -> np.ndarray:
        """``n`` calls' costs at once, from the same distributions as ``cost_s`` (the vectorized engine)."""
        model = self.op(name)
        base = model.costs_s(rng, units, n)
        extra = self.overheads.get(op_kind(name))
        if extra is None:
            return base * self.time_scale
        return extra.apply_all(base, overhead_bytes(model, units), rng) * self.time_scale

    def handoff_s(self, kind: str, rng: np.random.Generator) -> float:
        """One hand-off's duration (``RECEIVE_HANDOFF``, ``INBOX_HANDOFF``); 0 where the profile has none."""
        over = self.overheads.get(kind)
        return 0.0 if over is None else over.apply(0.0, 0.0, rng) * self.time_scale

    def is_deterministic(self, name: str) -> bool:
        """True when every call of ``name`` costs the same (no spread in its distribution or overhead)."""
        model = self.op(name)
        spread = model.cv if isinstance(model, LinearOp) else getattr(model.distribution, "sigma", 1.0)
        extra = self.overheads.get(op_kind(name))
        return spread == 0 and (extra is None or not extra.varies)


def fit_lognormal(mean_s: float, stdev_s: float) -> Lognormal:
    """Lognormal with the given mean and standard deviation (moment matching)."""
    if mean_s <= 0 or stdev_s < 0:
        raise ValueError(f"need mean_s > 0 and stdev_s >= 0 (got {mean_s}, {stdev_s})")
    sigma2 = math.log1p((stdev_s / mean_s) ** 2)
    return Lognormal(kind="lognormal", mu=math.log(mean_s) - sigma2 / 2, sigma=math.sqrt(sigma2))


def load_profile(path: Path) -> Profile:
    """Read and validate a profile file; UserError (one line per problem) if it is invalid."""
    data = load_yaml(path)
    if isinstance(data, dict) and "time_scale" in data:
        raise UserError(f"{path}: time_scale: not a profile field (a host's speed is the scenario's "
                        "deployment.hosts[].cpu_speed)")  # fmt: skip
    ops = data.get("ops") if isinstance(data, dict) else None
    for name, op in ops.items() if isinstance(ops, dict) else ():  # the op's own field named (the model's check
        linear = isinstance(op, dict) and op.get("kind") == "linear"  # would name the whole profile)
        if linear and (problem := unit_problem(str(name), op.get("unit"))) is not None:
            raise UserError(field_error(path, f"ops.{shorten(str(name), 120)}.unit", op.get("unit"), problem))
    return validate(Profile, data, path)


def write_profile(data: dict[str, Any], out: Path) -> None:
    """Write profile data (a dict that validates as ``Profile``) as YAML, whole or not at all."""
    atomic_write(out, yaml.safe_dump(data, sort_keys=False, width=120))
