"""Numbers for people: each quantity in the unit that reads best (µs … h, B … GB, µJ … kJ, h … years).

Every formatter takes the SI base value (seconds, bytes, joules, watts, a fraction, days) and returns "—" for a
missing one (None, NaN or ±inf), so no table or metric ever shows "nan". ``fmt(value, unit)`` picks the
formatter from a KPI table's unit column; ``fmt_delta`` signs it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

MISSING = "—"


def _missing(x: float | None) -> bool:
    return x is None or not math.isfinite(x)


def _scaled(x: float, steps: tuple[tuple[float, str], ...], digits: int = 3, from_x: float = 1.0) -> str:
    """x in the first unit (scale, name) it reaches ``from_x`` times of (the last one otherwise), with ``digits``
    significant figures."""
    unit_step = next((step for step in steps if step[0] == 1.0), steps[-1])  # zero reads "0 s", not "0 ns"
    shown = float(f"{x:.{digits}g}")  # the unit of the rounded value: 0.9996 s reads "1.00 s", not "1,000 ms"
    scale, unit = next((step for step in steps if abs(shown) >= from_x * step[0]), steps[-1]) if x else unit_step
    v = x / scale  # rounded once, in its unit (rounding x first too would compound the two roundings)
    vr = float(f"{v:.{digits}g}")
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(vr)))) if vr else 0
    return f"{v:,.{decimals}f} {unit}"


def fmt_seconds(s: float | None) -> str:
    """A duration: 850 µs, 12.3 ms, 1.25 s, 12.5 min, 3.20 h, 2.10 days."""
    if _missing(s):
        return MISSING
    assert s is not None
    if abs(float(f"{s:.3g}")) >= 120:  # minutes from two of them, hours from two, days from two: never "1.02 h"
        return _scaled(s, ((86_400.0, "days"), (3600.0, "h"), (60.0, "min")), from_x=2.0)
    return _scaled(s, ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs"), (1e-9, "ns")))


def fmt_bytes(b: float | None) -> str:
    """A size in SI units (1 kB = 1000 B, as link rates count): 980 B, 12.5 kB, 3.40 MB, 1.20 GB."""
    if _missing(b):
        return MISSING
    assert b is not None
    if abs(round(b)) < 1000:
        return f"{b:,.0f} B"
    return _scaled(b, ((1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "kB")))


def fmt_joules(j: float | None) -> str:
    """Energy: 12.0 µJ, 3.40 mJ, 1.20 J, 4.50 kJ."""
    if _missing(j):
        return MISSING
    assert j is not None
    return _scaled(j, ((1e6, "MJ"), (1e3, "kJ"), (1.0, "J"), (1e-3, "mJ"), (1e-6, "µJ"), (1e-9, "nJ")))


def fmt_watts(w: float | None) -> str:
    """Power: 25.0 µW, 3.10 mW, 2.70 W."""
    if _missing(w):
        return MISSING
    assert w is not None
    return _scaled(w, ((1e3, "kW"), (1.0, "W"), (1e-3, "mW"), (1e-6, "µW"), (1e-9, "nW")))


def fmt_bps(bps: float | None) -> str:
    """A link rate in bits per second, as link rates are counted: 250 kbit/s, 940 Mbit/s, 1 Gbit/s."""
    if _missing(bps):
        return MISSING
    assert bps is not None
    for scale, unit in ((1e9, "Gbit/s"), (1e6, "Mbit/s"), (1e3, "kbit/s")):
        if bps >= scale:
            return f"{bps / scale:,.3g} {unit}"
    return f"{bps:,.3g} bit/s"


def fmt_days(days: float | None) -> str:
    """A battery life: hours below two days, days below two years, then years."""
    if _missing(days):
        return MISSING
    assert days is not None
    if abs(days) < 2:
        return f"{days * 24:.1f} h"
    return f"{days:,.1f} days" if abs(days) < 730 else f"{days / 365.25:,.1f} years"


def fmt_fraction(f: float | None) -> str:
    """A share as a percentage: 47.3 %."""
    return MISSING if _missing(f) else f"{f * 100:.1f} %"  # type: ignore[operator]


def fmt_count(n: float | None) -> str:
    return MISSING if _missing(n) else f"{n:,.4g}"


def fmt_mean_count(n: float | None) -> str:
    """A count per replication, which is a mean: 35,943,062 whole, 31.2 otherwise (not 31.166666666666668)."""
    if _missing(n):
        return MISSING
    assert n is not None
    return f"{int(n):,}" if float(n).is_integer() else f"{n:,.1f}"


def counted(n: int, noun: str) -> str:
    """'1 replication', '10 replications' (a noun whose plural takes an s)."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


FORMATTERS: dict[str, Callable[[float | None], str]] = {
    "s": fmt_seconds,
    "B": fmt_bytes,
    "J": fmt_joules,
    "W": fmt_watts,
    "days": fmt_days,
    "fraction": fmt_fraction,
}


def fmt(value: float | None, unit: str) -> str:
    """``value`` (in the base unit ``unit`` of a KPI table) for people; unknown units as a plain number."""
    f = FORMATTERS.get(unit)
    return f(value) if f is not None else (fmt_count(value) + (f" {unit}" if unit and not _missing(value) else ""))


def fmt_delta(delta: float | None, unit: str) -> str:
    """A signed difference: +1.25 ms, −3.0 %, ±0 (a fraction's difference is in percentage points)."""
    if _missing(delta):
        return MISSING
    assert delta is not None
    if delta == 0:
        return "±0"
    text = f"{abs(delta) * 100:.1f} pp" if unit == "fraction" else fmt(abs(delta), unit)
    return ("+" if delta > 0 else "−") + text
