"""The base of the models users write (scenario, profile, study files): what every one of them refuses.

Unknown keys, changes after loading, infinities and NaNs (they pass a ``gt=0`` check but no model can run them),
and a boolean where a number goes: pydantic's lax mode reads ``true`` as 1, so ``count: true`` made one device
and ``burst_bytes: yes`` a one-byte bucket, with no word said.
"""

from __future__ import annotations

import typing
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator


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
