"""The pydantic base every neutral model shares: errors become ``InvalidGrantError``."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any, Self

import pydantic
from pydantic import ConfigDict, model_validator

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
        if item["type"] in _NUMBER_ERRORS:  # echo what was given and the shape expected
            message = f"{message}: got {_shown(item.get('input'))}; expected a number such as \"12.34\""
        problems.append(FieldProblem(loc, message))
    return problems


_NUMBER_ERRORS = frozenset({"decimal_parsing", "decimal_type"})


def _shown(value: Any) -> str:
    """A given value, short: its repr, cut at 40 characters."""
    text = repr(value)
    return text if len(text) <= 40 else text[:39] + "…"


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


def _unencodable(value: Any, path: str, found: list[FieldProblem]) -> None:
    """Add a problem for each string in ``value`` that UTF-8 cannot encode (a lone surrogate):
    it could be neither sent to a vendor, nor written to a file, nor hashed into a key."""
    if isinstance(value, str):
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                found.append(FieldProblem(path, "contains a lone surrogate (not valid Unicode text)"))
    elif isinstance(value, dict):
        for key, item in value.items():
            _unencodable(key, f"{path}.[key]", found)
            _unencodable(item, f"{path}.{key}" if isinstance(key, str) and key.isascii() else path,
                         found)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _unencodable(item, f"{path}.{index}", found)


def _internal(error: Exception, model: str) -> InvalidGrantError:
    """Any other exception of validation (a validator's bug, an overflow, a bad key type) as
    the project's error: a caller only ever has to catch ``BillingCreditsError``."""
    message = " ".join(str(error).split()) or type(error).__name__
    return InvalidGrantError([FieldProblem("", f"cannot be read ({type(error).__name__}: "
                                               f"{message[:200]})")], model=model)


class NeutralModel(pydantic.BaseModel):
    """Frozen, strict-about-extras base; validation failures raise ``InvalidGrantError``.

    Every failure of validation is one: pydantic's errors field by field, and any other
    exception a validator or a conversion may raise (it is never let through). Strings must be
    valid Unicode (a lone surrogate is refused: nothing could encode it).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    if not TYPE_CHECKING:  # keep pydantic's typed __init__ for type checkers

        def __init__(self, /, **data: Any) -> None:
            try:
                super().__init__(**data)
            except pydantic.ValidationError as error:
                raise InvalidGrantError(problems_from(error), model=type(self).__name__) from None
            except InvalidGrantError:
                raise
            except Exception as error:
                raise _internal(error, type(self).__name__) from None

    @model_validator(mode="after")
    def _valid_unicode(self) -> Self:
        found: list[FieldProblem] = []
        for name, value in self.__dict__.items():
            if not isinstance(value, NeutralModel):
                _unencodable(value, name, found)
        if found:
            raise InvalidGrantError(found, model=type(self).__name__)
        return self

    @classmethod
    def model_validate(cls, obj: Any, *args: Any, **kwargs: Any) -> Self:
        try:
            return super().model_validate(obj, *args, **kwargs)
        except pydantic.ValidationError as error:
            raise InvalidGrantError(problems_from(error), model=cls.__name__) from None
        except InvalidGrantError:
            raise
        except Exception as error:
            raise _internal(error, cls.__name__) from None

    @classmethod
    def model_validate_json(cls, json_data: str | bytes | bytearray, *args: Any, **kwargs: Any) -> Self:
        try:
            return super().model_validate_json(json_data, *args, **kwargs)
        except pydantic.ValidationError as error:
            raise InvalidGrantError(problems_from(error), model=cls.__name__) from None
        except InvalidGrantError:
            raise
        except Exception as error:
            raise _internal(error, cls.__name__) from None
