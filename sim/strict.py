"""The base of the models users write (scenario, profile, study files): what every one of them refuses.

Unknown keys, changes after loading, infinities and NaNs (they pass a ``gt=0`` check but no model can run them),
subnormal numbers (below 2.2e-308 they pass ``gt=0`` too, and divide to 0 or infinity: ``run.horizon_s: 5e-324``
made 120 series bins of 0 s each, an internal error), and a boolean where a number goes: pydantic's lax mode reads
``true`` as 1, so ``count: true`` made one device and ``burst_bytes: yes`` a one-byte bucket, with no word said.
"""

from __future__ import annotations

import sys
import typing
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator, model_validator


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_boolean_for_a_number(cls, data: Any) -> Any:
        """A boolean given for a number becomes the word it was written as, which the field then refuses in its
        own error (its path, "unable to parse string as an integer (got 'true')")."""
        if not isinstance(data, dict) or not any(isinstance(v, bool) for v in data.values()):
            return data  # (most models: no boolean given at all)
        words = {}
        for name, field in cls.model_fields.items():
            key = field.alias if field.alias in data else name
            if isinstance(data.get(key), bool) and _wants_a_number(field.annotation):
                words[key] = str(data[key]).lower()
        return {**data, **words} if words else data

    @field_validator("*", mode="after")
    @classmethod
    def _no_subnormal_number(cls, value: Any) -> Any:
        """A number too close to 0 to be a normal float is refused, in its field's own error."""
        if (bad := _subnormal(value)) is not None:
            raise ValueError(f"{bad!r} is too close to 0 (below {sys.float_info.min:.3g}, the smallest normal float): "
                             "give 0 where 0 is allowed, or a larger value")  # fmt: skip
        return value

    @field_validator("*", mode="after")
    @classmethod
    def _no_control_character(cls, value: Any) -> Any:
        """Text is printed to terminals and reports: a control character in it (an escape sequence in a study's name
        recoloured the terminal) is refused, in its field's own error; line breaks and tabs are text."""
        for text in _texts(value):
            if not text.isprintable() and (bad := next((c for c in text if _control(c)), None)) is not None:
                raise ValueError(f"a control character ({bad!r}): give plain text")
        return value


def _texts(value: Any) -> list[str]:
    """The text in a field's value: itself, or the strings of a list (one level) or a mapping (keys and values)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple):
        return [v for v in value if isinstance(v, str)]
    if isinstance(value, dict):
        return [t for kv in value.items() for t in kv if isinstance(t, str)]
    return []


def _control(c: str) -> bool:
    """A C0 or C1 control character or DEL, not a line break or a tab."""
    return c not in "\t\n\r" and (ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0)


def _wants_a_number(annotation: Any) -> bool:
    """Whether a field takes an int or a float and no boolean (through Optional, unions, Annotated, Literal)."""
    leaves = _leaves(annotation)
    return bool(leaves & {int, float}) and bool not in leaves and True not in leaves and False not in leaves


def _leaves(annotation: Any) -> set[Any]:
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is typing.Literal:
        return set(args)
    if not args:
        return {annotation}
    if typing.get_origin(annotation) is typing.Annotated:
        return _leaves(args[0])
    return set().union(*(_leaves(a) for a in args))


def _subnormal(value: Any, depth: int = 0) -> float | None:
    """A subnormal float in ``value`` (a number, or lists of them a few levels deep), or None."""
    if isinstance(value, float) and value != 0.0 and abs(value) < sys.float_info.min:
        return value
    if isinstance(value, list | tuple) and depth < 3:
        for v in value:
            if (bad := _subnormal(v, depth + 1)) is not None:
                return bad
    return None
