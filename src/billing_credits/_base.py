"""The pydantic base every neutral model shares: errors become ``InvalidGrantError``."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any, Self

import pydantic
from pydantic import ConfigDict

from ._errors import FieldProblem, InvalidGrantError

__all__ = ["NeutralModel", "exact_decimal", "problems_from"]


def problems_from(error: pydantic.ValidationError) -> list[FieldProblem]:
    """Turn pydantic's errors into one ``FieldProblem`` per offending field."""
    problems = []
    for item in error.errors(include_url=False):
        loc = ".".join(str(part) for part in item["loc"])
        inner = item.get("ctx", {}).get("error")
        if isinstance(inner, InvalidGrantError):
            # A nested model validated through its own __init__: keep its field names.
            problems += [
                FieldProblem(".".join(p for p in (loc, problem.field) if p), problem.message)
                for problem in inner.problems
            ]
            continue
        message = item["msg"]
        for prefix in ("Value error, ", "Assertion failed, "):
            message = message.removeprefix(prefix)
        problems.append(FieldProblem(loc, message))
    return problems


def exact_decimal(value: Any) -> Any:
    """Convert a float from its shortest decimal text (``0.1`` → ``Decimal("0.1")``), exactly.

    A binary float is never used as a quantity: ``Decimal(0.1)`` would be
    0.1000000000000000055511151231257827…, which is not what anybody meant. Booleans are
    refused. Anything else is left for pydantic to validate.
    """
    if isinstance(value, bool):
        raise ValueError("a boolean is not a number")
    if isinstance(value, float):
        return Decimal(repr(value))
    return value


class NeutralModel(pydantic.BaseModel):
    """Frozen, strict-about-extras base; validation failures raise ``InvalidGrantError``."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    if not TYPE_CHECKING:  # keep pydantic's typed __init__ for type checkers

        def __init__(self, /, **data: Any) -> None:
            try:
                super().__init__(**data)
            except pydantic.ValidationError as error:
                raise InvalidGrantError(problems_from(error), model=type(self).__name__) from None

    @classmethod
    def model_validate(cls, obj: Any, *args: Any, **kwargs: Any) -> Self:
        try:
            return super().model_validate(obj, *args, **kwargs)
        except pydantic.ValidationError as error:
            raise InvalidGrantError(problems_from(error), model=cls.__name__) from None

    @classmethod
    def model_validate_json(cls, json_data: str | bytes | bytearray, *args: Any, **kwargs: Any) -> Self:
        try:
            return super().model_validate_json(json_data, *args, **kwargs)
        except pydantic.ValidationError as error:
            raise InvalidGrantError(problems_from(error), model=cls.__name__) from None
