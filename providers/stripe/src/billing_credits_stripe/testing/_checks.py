"""The fake's answer to a bad request: Stripe's error shape and the form-parameter checks that
raise it (shared by the credit-grant routes in ``_fake`` and the usage routes in ``_consume``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_INTEGER = re.compile(r"^-?\d+$")

class StripeError(Exception):
    """A 4xx the fake answers with, in Stripe's error shape."""

    def __init__(self, status: int, message: str, *, type_: str = "invalid_request_error",
                 code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.code = code
        self.param = param

def _missing(param: str) -> StripeError:
    return StripeError(400, f"Missing required param: {param}.", code="parameter_missing",
                       param=param)

def _invalid(param: str, message: str, code: str = "parameter_invalid_string") -> StripeError:
    return StripeError(400, message, code=code, param=param)

def _unknown(params: Mapping[str, Any], allowed: set[str], prefix: str = "") -> None:
    for name in params:
        if name not in allowed:
            full = f"{prefix}[{name}]" if prefix else name
            raise StripeError(400, f"Received unknown parameter: {full}",
                              code="parameter_unknown", param=full)

def _string(params: Mapping[str, Any], name: str, *, required: bool = False,
            max_length: int | None = None) -> str | None:
    value = params.get(name)
    if value is None:
        if required:
            raise _missing(name)
        return None
    if not isinstance(value, str):
        raise _invalid(name, f"Invalid string: {name} must be a string")
    if max_length is not None and len(value) > max_length:
        raise _invalid(name, f"Invalid string: must be at most {max_length} characters")
    return value

def _integer(params: Mapping[str, Any], name: str, *, minimum: int | None = None,
             maximum: int | None = None, where: str | None = None) -> int | None:
    where = where or name
    value = params.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not _INTEGER.match(value):
        raise _invalid(where, f"Invalid integer: {value}", code="parameter_invalid_integer")
    number = int(value)
    if minimum is not None and number < minimum:
        raise _invalid(where, f"This value must be greater than or equal to {minimum}.",
                       code="parameter_invalid_integer")
    if maximum is not None and number > maximum:
        raise _invalid(where, f"This value must be less than or equal to {maximum}.",
                       code="parameter_invalid_integer")
    return number
