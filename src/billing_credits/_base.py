"""The pydantic base every neutral model shares: errors become ``InvalidGrantError``."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any, Self

import pydantic
import pydantic_core
from pydantic import ConfigDict, PlainValidator

from ._errors import FieldProblem, InvalidGrantError

__all__ = ["NeutralModel", "RawPayload", "decode_vendor_json", "exact_decimal",
           "is_checked_payload", "json_text_is_valid", "payload_copy", "problems_from"]


_SURROGATE = "contains a lone surrogate (not valid Unicode text)"
NAIVE_REFUSED = "naive datetime refused: give a timezone (for example +00:00 or Z)"
_OWN_WORDS = {
    "string_unicode": _SURROGATE,  # any string of a NeutralModel (see ``str_max_length``)
    "timezone_aware": NAIVE_REFUSED,  # an ``AwareDatetime`` (the grant's and segments' times)
    "decimal_type": "a boolean is not a number",  # only for a bool input (see problems_from)
}
"""pydantic-core's refusals the project words itself."""


def problems_from(error: pydantic.ValidationError) -> list[FieldProblem]:
    """Turn pydantic's errors into one ``FieldProblem`` per offending field."""
    problems = []
    for item in error.errors(include_url=False):
        parts = item["loc"]
        # A refused dict key is located (field, key, "[key]"): the key itself is the bad text.
        loc = ".".join(_loc_part(part) for i, part in enumerate(parts)
                       if parts[i + 1:i + 2] != ("[key]",))
        inner = item.get("ctx", {}).get("error")
        if isinstance(inner, InvalidGrantError):
            # A model validator raised the project's error: keep its field names.
            problems += [
                FieldProblem(".".join(p for p in (loc, problem.field) if p), problem.message)
                for problem in inner.problems
            ]
            continue
        if item["type"] in _OWN_WORDS:
            kind = item["type"]
            if kind != "decimal_type" or isinstance(item.get("input"), bool):
                problems.append(FieldProblem(loc, _OWN_WORDS[kind]))
                continue
        message = item["msg"]
        for prefix in ("Value error, ", "Assertion failed, "):
            message = message.removeprefix(prefix)
        if item["type"] in _NUMBER_ERRORS:  # echo what was given and the shape expected
            message = f"{message}: got {_shown(item.get('input'))}; expected a number such as \"12.34\""
        problems.append(FieldProblem(loc, message))
    return problems


def _loc_part(part: str | int) -> str:
    """One step of an error's location as text that can be printed: a dict key that is not
    valid Unicode (the very thing refused) is shown escaped."""
    if isinstance(part, str) and not part.isascii():
        return part.encode("utf-8", "backslashreplace").decode("utf-8")
    return str(part)


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


_MAYBE_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")


def json_text_is_valid(content: bytes) -> bool:
    """Whether every string that ``json.loads(content)`` can give is valid Unicode text.

    True when ``content`` is UTF-8 (``json.loads`` would read it as UTF-8: no UTF-16 or
    UTF-32 byte pattern, which it would decode with ``surrogatepass``), decodes strictly (which
    refuses an encoded surrogate) and holds no JSON escape of a surrogate
    (``\\uD800``-``\\uDFFF``): then no decoded string can hold a lone surrogate. A surrogate
    *pair*'s escapes (one valid character) make it False too: False means "check each
    string", never "invalid". A few C scans of the bytes, a fraction of a microsecond per KB.
    """
    if not json.detect_encoding(content).startswith("utf-8"):
        return False
    if b"\\u" in content and _MAYBE_SURROGATE.search(content) is not None:
        return False
    try:
        content.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


class _CheckedPayload(dict[str, Any]):
    """A vendor payload (a JSON object) whose text is known to be valid Unicode: made only by
    ``decode_vendor_json`` from bytes that ``json_text_is_valid`` passed, or copied from one
    by ``payload_copy``. ``CreditGrant.raw`` keeps one without walking it again (a walk of
    every string costs a few microseconds a grant: issue 17)."""

    __slots__ = ()


def decode_vendor_json(content: bytes, *, parse_float: Any = None) -> Any:
    """``json.loads(content, parse_float=...)`` of a vendor's answer, its objects one level
    down (the items of a top-level list, or of a list under a top-level key, and objects
    directly under a top-level key: a listing's items, a single answer's object) marked as
    known-valid text when ``json_text_is_valid(content)``; a grant read from one keeps it as
    ``raw`` without checking every string again. Use ``payload_copy`` to make ``raw``."""
    decoded = json.loads(content, parse_float=parse_float)
    if not json_text_is_valid(content):
        return decoded
    if type(decoded) is list:
        return [_CheckedPayload(item) if type(item) is dict else item for item in decoded]
    if type(decoded) is dict:
        for key, value in decoded.items():
            if type(value) is list:
                decoded[key] = [_CheckedPayload(item) if type(item) is dict else item
                                for item in value]
            elif type(value) is dict:
                decoded[key] = _CheckedPayload(value)
    return decoded


def payload_copy(item: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a vendor payload to keep as a grant's ``raw`` (and add to, with the item's
    own text or the reader's): still known-valid text when ``item`` came from
    ``decode_vendor_json`` marked so, a plain ``dict`` (checked by the model) otherwise."""
    return _CheckedPayload(item) if type(item) is _CheckedPayload else dict(item)


def is_checked_payload(value: object) -> bool:
    """Whether ``value`` is a payload ``decode_vendor_json`` marked as known-valid text."""
    return type(value) is _CheckedPayload


def _raw_payload(value: Any) -> dict[str, Any]:
    """A vendor payload (``raw``): a mapping with string keys, copied, whose text is valid
    Unicode at any depth. A payload ``decode_vendor_json`` marked (or its ``payload_copy``) is
    known valid: kept as it is (it is never the caller's own object).

    The neutral models' own strings are checked by pydantic's core (see ``NeutralModel``);
    ``raw`` is free-form, so it is checked here: in one pass of pydantic-core's JSON writer
    (which refuses a lone surrogate, in keys and values alike, at any depth), and by walking
    it only when that fails, to name the place. One Python call, no per-key validation.
    """
    if type(value) is _CheckedPayload:
        return value
    if not isinstance(value, Mapping):
        raise ValueError("Input should be a valid dictionary")
    try:  # every key a string: one C loop (``join`` refuses any other key with TypeError)
        "".join(value)
    except TypeError:
        raise InvalidGrantError([FieldProblem("[key]", "Input should be a valid string")]) \
            from None  # named under ``raw`` by ``problems_from``
    found: list[FieldProblem] = []
    payload = dict(value)
    try:
        pydantic_core.to_json(payload, serialize_unknown=True)
        return payload
    except (pydantic_core.PydanticSerializationError, ValueError, TypeError, RecursionError):
        pass
    for key, item in payload.items():
        _unencodable(key, "[key]", found)
        _unencodable(item, key if key.isascii() else "", found)
    if found:
        raise InvalidGrantError(found)
    return payload


RawPayload = Annotated[dict[str, Any], PlainValidator(_raw_payload)]
"""A vendor payload kept as read (``raw``): any JSON-like data whose text is valid Unicode."""


def _project_error(error: Exception, model: str) -> InvalidGrantError:
    """What a validation failure of ``model`` is raised as: pydantic's errors field by field,
    the project's own error as it is, any other exception as ``_internal`` words it."""
    if isinstance(error, pydantic.ValidationError):
        return InvalidGrantError(problems_from(error), model=model)
    if isinstance(error, InvalidGrantError):
        return error
    return _internal(error, model)


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

    All of it happens in one pass of pydantic's core: ``str_max_length`` makes every string
    field, dict key and value, and tuple item a *constrained* string, which pydantic-core reads
    as UTF-8 and refuses (``string_unicode``) when it holds a lone surrogate; nested models are
    validated by the core, never sent back through Python (``__init__`` below is marked as
    pydantic's own, so it is not a custom ``__init__`` that nested validation would call). The
    only free-form field, a vendor payload, is ``RawPayload``. The refusal of surrogates is
    guarded by tests (``tests/test_model.py``, ``tests/test_fuzz.py``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid",
                              str_max_length=sys.maxsize)

    if not TYPE_CHECKING:  # keep pydantic's typed __init__ for type checkers

        def __init__(self, /, **data: Any) -> None:
            try:
                self.__pydantic_validator__.validate_python(data, self_instance=self)
            except Exception as error:
                raise _project_error(error, type(self).__name__) from None

        # Only the error translation differs from pydantic's own __init__: nested models are
        # still validated in pydantic's core (a "custom" __init__ would be called for each).
        __init__.__pydantic_base_init__ = True

    @classmethod
    def model_validate(cls, obj: Any, *args: Any, **kwargs: Any) -> Self:
        try:
            if not args and not kwargs:  # the common call, straight to the core (pydantic's
                # own model_validate only checks its options and then does the same)
                return cls.__pydantic_validator__.validate_python(obj)  # type: ignore[no-any-return]
            return super().model_validate(obj, *args, **kwargs)
        except Exception as error:
            raise _project_error(error, cls.__name__) from None

    @classmethod
    def model_validate_strings(cls, obj: Any, *args: Any, **kwargs: Any) -> Self:
        try:
            return super().model_validate_strings(obj, *args, **kwargs)
        except Exception as error:
            raise _project_error(error, cls.__name__) from None

    @classmethod
    def model_validate_json(cls, json_data: str | bytes | bytearray, *args: Any, **kwargs: Any) -> Self:
        try:
            return super().model_validate_json(json_data, *args, **kwargs)
        except Exception as error:
            raise _project_error(error, cls.__name__) from None
