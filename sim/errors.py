"""User-facing errors: every problem with an input file becomes one line naming file, field and value."""

from __future__ import annotations

import reprlib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


class UserError(Exception):
    """A mistake in the user's input. The CLI prints each line of ``lines`` and exits non-zero."""

    def __init__(self, lines: list[str] | str):
        self.lines = [lines] if isinstance(lines, str) else list(lines)
        super().__init__("\n".join(self.lines))


def field_error(path: Path | str, loc: str, value: Any, msg: str) -> str:
    """The one-line form every input error takes."""
    return f"{path}: {loc or '<top>'}: {shorten(msg, 300)} (got {show(value)})"


class _Repr(reprlib.Repr):
    """A repr bounded in time and length whatever the value (huge ints, deep or shared structures)."""

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 128:  # int -> str of more than 4,300 digits raises; long ones are unreadable anyway
            return f"<int of {x.bit_length()} bits>"
        return repr(x)


_REPR = _Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict, _REPR.maxstring, _REPR.maxother = 3, 4, 4, 60, 60


def show(value: Any, limit: int = 60) -> str:
    """A value as the user wrote it, on one line and at most ``limit`` characters."""
    try:
        shown = _REPR.repr(value)
    except Exception:  # a value whose repr fails: name its type
        shown = f"<{type(value).__name__}>"
    return shorten(shown, limit)


def shorten(text: str, limit: int = 60) -> str:
    """``text`` on one line (control characters escaped), cut to ``limit`` characters."""
    if not text.isprintable():
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def load_yaml(path: Path) -> dict[str, Any]:
    """Parse a YAML mapping from a bounded file (sim/loading.py), or raise UserError saying why it cannot."""
    from sim.loading import load_yaml_file  # loading raises our UserError: import it late

    return load_yaml_file(path)


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def validate(model: type[M], data: dict[str, Any], path: Path | str, context: dict[str, Any] | None = None) -> M:
    """Validate ``data`` as ``model`` (with pydantic's validation ``context``); pydantic errors become one UserError
    line each."""
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        lines = []
        for err in errors[:MAX_LINES]:
            # Drop pydantic's tagged-union discriminator hops (e.g. 'per_call') from the path.
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p in _UNION_TAGS))
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key"
            lines.append(field_error(path, shorten(_loc(loc), 200), err.get("input"), msg))
        if len(errors) > MAX_LINES:
            lines.append(f"{path}: ... and {len(errors) - MAX_LINES} more problems")
        raise UserError(lines) from None


MAX_LINES = 20  # problems listed per file; a list of 10,000 bad items is one mistake repeated


_UNION_TAGS = {"per_call", "linear", "lognormal", "empirical"}
