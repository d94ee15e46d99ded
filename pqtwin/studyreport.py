"""A study's result (sim/study.py) as a figure and tables: the contour plane as a self-contained SVG, the axis
ranking and the reproduction table as rows (for rich in the CLI, Markdown in README, a dataframe in the app)."""

from __future__ import annotations

import math
from html import escape
from typing import Any

import numpy as np

from sim.study import StudySpec, changed, fmt_ci, log_or_linear, meets, plane, reproductions

W, H, LEFT, TOP, RIGHT, BOTTOM = 680, 440, 60, 30, 160, 50
MIN_CELL_PX = 6  # a level's cell narrower than this on a to-scale axis: the levels are spaced evenly instead
EVEN = " (levels evenly spaced, not to scale)"


def _ramp(v: float) -> str:
    """Reduction 0 → pale, 0.6 → dark teal (negative: pale red)."""
    if math.isnan(v):
        return "#eeeeee"
    if v < 0:
        return "#f4cccc"
    t = min(1.0, v / 0.6)
    r, g, b = (int(a + (z - a) * t) for a, z in ((240, 0), (248, 105), (245, 110)))
    return f"rgb({r},{g},{b})"


def _segments(xs: np.ndarray, ys: np.ndarray, z: np.ndarray, level: float) -> list[tuple[float, float, float, float]]:
    """Marching squares: the line segments where the grid ``z`` (rows = ys) crosses ``level``, interpolated."""
    out = []
    for j in range(len(ys) - 1):
        for i in range(len(xs) - 1):
            corners = [(xs[i], ys[j], z[j, i]), (xs[i + 1], ys[j], z[j, i + 1]),
                       (xs[i + 1], ys[j + 1], z[j + 1, i + 1]), (xs[i], ys[j + 1], z[j + 1, i])]  # fmt: skip
            if any(math.isnan(c[2]) for c in corners):
                continue
            hits = []
            for (x0, y0, a), (x1, y1, b) in zip(corners, corners[1:] + corners[:1], strict=True):
                if a < level < b or b < level < a or (a == level and b != level):  # compared, not multiplied
                    t = _frac(level, a, b)
                    hits.append((x0 + t * (x1 - x0), y0 + t * (y1 - y0)))
            for k in range(0, len(hits) - 1, 2):
                out.append((*hits[k], *hits[k + 1]))
    return out


def svg(result: dict[str, Any], spec: StudySpec) -> str:
    """The contour plane: reduction per grid point (colour, value), the reduction target's contour (solid) and
    the distribution time target's line (dashed)."""
    ax, ay, red, dist = plane(result, spec)
    fx, fy = log_or_linear(ax), log_or_linear(ay)
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM
    xs, x_even = _place(np.array([fx(lv.value or 0) for lv in ax.levels]), pw)
    ys, y_even = _place(np.array([fy(lv.value or 0) for lv in ay.levels]), ph)
    bx, by = _cells(xs), _cells(ys)
    x0, x1 = min(b[0] for b in bx), max(b[1] for b in bx)
    y0, y1 = min(b[0] for b in by), max(b[1] for b in by)
    ox, oy = np.argsort(xs, kind="stable"), np.argsort(ys, kind="stable")  # the contours walk the grid in order
    sx, sy = xs[ox], ys[oy]
    px = lambda v: LEFT + (v - x0) / (x1 - x0) * pw  # noqa: E731
    py = lambda v: TOP + ph - (v - y0) / (y1 - y0) * ph  # noqa: E731
    t = result["targets"]
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="11">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{LEFT}" y="16" font-size="12">{escape(result["study"])}: round latency, concurrent vs sequential '
           f'(each cell {result["replications"]} replications x {result["rounds"]} rounds)</text>']  # fmt: skip
    for (j, yv), (i, xv) in ((a, b) for a in enumerate(ys) for b in enumerate(xs)):
        v = red[j, i]
        (xa, xb), (ya, yb) = bx[i], by[j]
        out.append(f'<rect x="{px(xa) + 1:.1f}" y="{py(yb) + 1:.1f}" width="{max(0.0, px(xb) - px(xa) - 2):.1f}" '
                   f'height="{max(0.0, py(ya) - py(yb) - 2):.1f}" fill="{_ramp(v)}"/>')  # fmt: skip
        if ax.levels[i].label == result["base"][ax.name] and ay.levels[j].label == result["base"][ay.name]:
            out.append(f'<rect x="{px(xa) + 2:.1f}" y="{py(yb) + 2:.1f}" '
                       f'width="{max(0.0, px(xb) - px(xa) - 4):.1f}" height="{max(0.0, py(ya) - py(yb) - 4):.1f}" '
                       'fill="none" stroke="black" stroke-width="2"/>')  # fmt: skip
        label = "—" if math.isnan(v) else f"{v * 100:.0f} %"
        colour = "white" if not math.isnan(v) and v > 0.35 else "black"
        out.append(f'<text x="{px(xv):.1f}" y="{py(yv) + 4:.1f}" text-anchor="middle" fill="{colour}">{label}</text>')
    for seg in _segments(sx, sy, red[np.ix_(oy, ox)], t["round_latency_reduction"]):
        out.append(f'<line x1="{px(seg[0]):.1f}" y1="{py(seg[1]):.1f}" x2="{px(seg[2]):.1f}" y2="{py(seg[3]):.1f}" '
                   'stroke="#c0392b" stroke-width="3"/>')  # fmt: skip
    for seg in _segments(sx, sy, dist[np.ix_(oy, ox)], t["distribution_s"]):
        out.append(f'<line x1="{px(seg[0]):.1f}" y1="{py(seg[1]):.1f}" x2="{px(seg[2]):.1f}" y2="{py(seg[3]):.1f}" '
                   'stroke="#2c3e50" stroke-width="3" stroke-dasharray="7,4"/>')  # fmt: skip
    for i, lv in enumerate(ax.levels):
        out.append(f'<text x="{px(xs[i]):.1f}" y="{TOP + ph + 16:.1f}" text-anchor="middle">{escape(lv.label)}</text>')
    for j, lv in enumerate(ay.levels):
        out.append(f'<text x="{LEFT - 6}" y="{py(ys[j]) + 4:.1f}" text-anchor="end">{escape(lv.label)}</text>')
    out.append(f'<text x="{LEFT + pw / 2:.0f}" y="{TOP + ph + 36}" text-anchor="middle" font-size="12">'
               f"{escape(ax.title)}{EVEN if x_even else ''}</text>")  # fmt: skip
    out.append(f'<text transform="translate(14,{TOP + ph / 2:.0f}) rotate(-90)" text-anchor="middle" font-size="12">'
               f"{escape(ay.title)}{EVEN if y_even else ''}</text>")  # fmt: skip
    lx = W - RIGHT + 20
    out += [f'<line x1="{lx}" y1="{TOP + 10}" x2="{lx + 24}" y2="{TOP + 10}" stroke="#c0392b" stroke-width="3"/>',
            f'<text x="{lx + 28}" y="{TOP + 14}">{t["round_latency_reduction"] * 100:.0f} % reduction</text>',
            f'<line x1="{lx}" y1="{TOP + 32}" x2="{lx + 24}" y2="{TOP + 32}" stroke="#2c3e50" stroke-width="3" '
            'stroke-dasharray="7,4"/>',
            f'<text x="{lx + 28}" y="{TOP + 36}">{t["distribution_s"]:g} s distribution</text>',
            f'<rect x="{lx}" y="{TOP + 48}" width="24" height="14" fill="none" stroke="black" stroke-width="2"/>',
            f'<text x="{lx + 28}" y="{TOP + 59}">base scenario</text>',
            f'<text x="{lx}" y="{TOP + 84}" font-size="10">other axes at the base</text>',
            f'<text x="{lx}" y="{TOP + 98}" font-size="10">scenario\'s values</text>', "</svg>"]  # fmt: skip
    return "\n".join(out)


def _frac(v: float, a: float, b: float) -> float:
    """How far ``v`` lies from ``a`` towards ``b`` (a != b, v between them): 0 at a, 1 at b. The difference of two
    finite floats can overflow (1e308 - -1e308); then their halves are subtracted, which cannot."""
    d = b - a
    if math.isfinite(d):
        return (v - a) / d
    return (v / 2 - a / 2) / (b / 2 - a / 2)


def _place(pos: np.ndarray, length: float) -> tuple[np.ndarray, bool]:
    """An axis's level positions (values, or their logs) as fractions of their range: the smallest at 0, the
    largest at 1, whatever their magnitude. Where that would leave a level's cell under MIN_CELL_PX of the
    ``length`` the plot gives the axis, the levels are spaced evenly in their order instead (True: say so)."""
    if len(pos) < 2:
        return np.zeros(len(pos)), False
    lo, hi = float(pos.min()), float(pos.max())
    scaled = np.array([_frac(float(v), lo, hi) for v in pos]) if hi > lo else np.zeros(len(pos))
    cells = _cells(scaled)
    span = max(b[1] for b in cells) - min(b[0] for b in cells)
    if hi > lo and min(b - a for a, b in cells) / span * length >= MIN_CELL_PX:
        return scaled, False
    rank = np.empty(len(pos))
    rank[np.argsort(pos, kind="stable")] = np.arange(len(pos)) / (len(pos) - 1)
    return rank, True


def _cells(pos: np.ndarray) -> list[tuple[float, float]]:
    """Each position's cell, in the positions' order: halfway to its neighbours in value (the edge cells mirror
    their inner half)."""
    order = np.argsort(pos, kind="stable")
    cells = dict(zip(order.tolist(), _bounds(pos[order]), strict=True))
    return [cells[i] for i in range(len(pos))]


def _bounds(pos: np.ndarray) -> list[tuple[float, float]]:
    """Each grid position's cell (positions in increasing order): halfway to its neighbours (the edge cells mirror
    their inner half)."""
    if len(pos) == 1:
        return [(pos[0] - 0.5, pos[0] + 0.5)]
    mids = (pos[1:] + pos[:-1]) / 2
    lo = np.concatenate([[pos[0] - (mids[0] - pos[0])], mids])
    hi = np.concatenate([mids, [pos[-1] + (pos[-1] - mids[-1])]])
    return list(zip(lo.tolist(), hi.tolist(), strict=True))


def describe(result: dict[str, Any], point: dict[str, Any]) -> str:
    return "; ".join(f"{a} {v}" for a, v in changed(result, point).items()) or "the base scenario"


def reproduction_rows(result: dict[str, Any], limit: int = 15) -> list[dict[str, str]]:
    """The reproduction table: the points meeting both targets (robust = by their whole CIs), best first."""
    rows = []
    for p in reproductions(result)[:limit]:
        rows.append({
            "combination (vs the base scenario)": describe(result, p),
            "reduction [95 % CI]": fmt_ci(p["reduction"], p["reduction_ci95"], 100, " %", 1),
            "distribution [95 % CI]": fmt_ci(p["distribution_s"], p["distribution_ci95"], 1, " s", 3),
            "both CIs clear": "yes" if meets(p, result["targets"], robust=True) else "no",
        })  # fmt: skip
    return rows


def ranking_rows(result: dict[str, Any]) -> list[dict[str, str]]:
    return [{"axis": r["title"], "reduction range (points)": f"{r['reduction_range'] * 100:.1f}",
             "distribution max/min": f"{r['distribution_ratio']:.1f}x"} for r in result["ranking"]]  # fmt: skip


def base_point(result: dict[str, Any]) -> dict[str, Any]:
    return next(p for p in result["points"] if not changed(result, p))


def markdown(rows: list[dict[str, str]]) -> str:
    """A Markdown table; a cell's ``|`` and line breaks (a study's titles and labels are free text) escaped, so a
    cell cannot split its row."""
    if not rows:
        return "(none)\n"
    head = list(rows[0])
    lines = ["| " + " | ".join(map(_cell, head)) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(_cell(r[h]) for h in head) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return " ".join(str(text).replace("\\", "\\\\").replace("|", "\\|").splitlines())
