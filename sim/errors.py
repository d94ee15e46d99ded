"""User-facing errors: every problem with an input file becomes one line naming file, field and value."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


class UserError(Exception):
    """A mistake in the user's input. The CLI prints each line of ``lines`` and exits non-zero."""

    def __init__(self, lines: list[str] | str):
        self.lines = [lines] if isinstance(lines, str) else list(lines)
        super().__init__("\n".join(self.lines))


def field_error(path: Path | str, loc: str, value: Any, msg: str) -> str:
    """The one-line form every input error takes."""
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"{path}: {loc or '<top>'}: {msg} (got {shown})"


def load_yaml(path: Path) -> dict[str, Any]:
    """Parse a YAML mapping, or raise UserError saying why it cannot be read."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise UserError(f"{path}: cannot read file: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise UserError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping at the top level (got {type(data).__name__})")
    return data


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def validate(model: type[M], data: dict[str, Any], path: Path | str) -> M:
    """Validate ``data`` as ``model``; pydantic errors become one UserError line each."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors(include_url=False):
            # Drop pydantic's tagged-union discriminator hops (e.g. 'per_call') from the path.
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p in _UNION_TAGS))
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key"
            lines.append(field_error(path, _loc(loc), err.get("input"), msg))
        raise UserError(lines) from None


_UNION_TAGS = {"per_call", "linear", "lognormal", "empirical"}
