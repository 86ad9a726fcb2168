"""The error hierarchy, on one page, and what each error carries."""

from __future__ import annotations

import pytest

import billing_credits as bc

PROVIDER_ERRORS = [
    bc.BadRequestError, bc.AuthenticationError, bc.PermissionDeniedError, bc.NotFoundError,
    bc.ConflictError, bc.RateLimitedError, bc.UnavailableError,
]


def test_hierarchy_shape() -> None:
    direct = [bc.ConfigurationError, bc.InvalidGrantError, bc.NotRepresentableError,
              bc.UnsupportedOperationError, bc.ProviderError]
    for cls in direct:
        assert cls.__bases__[0] is bc.BillingCreditsError
    for cls in PROVIDER_ERRORS:
        assert cls.__bases__ == (bc.ProviderError,)
    assert issubclass(bc.UnknownProviderError, bc.ConfigurationError)
    assert issubclass(bc.PriorityNotRepresentableError, bc.NotRepresentableError)
    assert issubclass(bc.BillingCreditsError, Exception)
    assert not issubclass(bc.ProviderError, ValueError)


def test_every_public_error_is_a_billing_credits_error() -> None:
    errors = [getattr(bc, name) for name in bc.__all__ if name.endswith("Error")]
    assert len(errors) >= 15
    for cls in errors:
        assert issubclass(cls, bc.BillingCreditsError), cls


def test_invalid_grant_error_is_a_value_error() -> None:
    error = bc.InvalidGrantError([bc.FieldProblem("amount", "must be greater than zero"),
                                  bc.FieldProblem("customer_id", "must not be blank")])
    assert isinstance(error, ValueError)
    assert error.fields == ("amount", "customer_id")
    assert str(error) == ("invalid CreditGrant: amount: must be greater than zero; "
                          "customer_id: must not be blank")
    with pytest.raises(ValueError, match="customer_id"):
        raise error


def test_field_problem_without_a_field() -> None:
    assert str(bc.FieldProblem("", "whole thing is wrong")) == "whole thing is wrong"


def test_not_representable_names_provider_and_fields() -> None:
    error = bc.NotRepresentableError("stripe", [bc.FieldProblem("scope.specifiers", "nope")])
    assert error.provider == "stripe"
    assert error.fields == ("scope.specifiers",)
    assert "'stripe'" in str(error)
    assert "scope.specifiers: nope" in str(error)


def test_unsupported_operation_message() -> None:
    error = bc.UnsupportedOperationError("metronome", "expire", "use void")
    assert (error.provider, error.operation) == ("metronome", "expire")
    assert str(error) == "provider 'metronome' does not support 'expire': use void"


def test_provider_error_str_includes_context() -> None:
    error = bc.RateLimitedError(
        "Too many requests", provider="stripe", status=429, code="rate_limit",
        request_id="req_123", body={"error": {"type": "rate_limit"}}, retry_after=2.5,
    )
    text = str(error)
    for part in ("Too many requests", "provider=stripe", "status=429", "code=rate_limit",
                 "request_id=req_123"):
        assert part in text
    assert error.retry_after == 2.5
    assert error.body == {"error": {"type": "rate_limit"}}
    assert repr(error) == f"RateLimitedError({text!r})"


def test_provider_error_without_context_is_just_the_message() -> None:
    assert str(bc.UnavailableError("connection refused")) == "connection refused"
    assert bc.UnavailableError("x").status is None


def test_retryable_defaults_and_override() -> None:
    assert bc.RateLimitedError("x").retryable
    assert bc.UnavailableError("x").retryable
    assert not bc.ConflictError("x").retryable
    assert bc.ConflictError("x", retryable=True).retryable
    assert not bc.UnavailableError("x", retryable=False).retryable
    for cls in (bc.BadRequestError, bc.AuthenticationError, bc.PermissionDeniedError,
                bc.NotFoundError, bc.ProviderError):
        assert not cls("x").retryable


@pytest.mark.parametrize(
    ("status", "cls"),
    [(400, bc.BadRequestError), (401, bc.AuthenticationError), (403, bc.PermissionDeniedError),
     (404, bc.NotFoundError), (409, bc.ConflictError), (422, bc.BadRequestError),
     (429, bc.RateLimitedError), (500, bc.UnavailableError), (502, bc.UnavailableError),
     (503, bc.UnavailableError), (599, bc.UnavailableError), (418, bc.ProviderError),
     (402, bc.ProviderError)],
)
def test_error_class_for_status(status: int, cls: type[bc.ProviderError]) -> None:
    assert bc.error_class_for_status(status) is cls


def test_unknown_provider_error() -> None:
    error = bc.UnknownProviderError("acme", ["stripe", "local"])
    assert error.installed == ["local", "stripe"]
    assert str(error) == "unknown provider 'acme'; installed providers: local, stripe"
    assert "none" in str(bc.UnknownProviderError("acme", []))


def test_errors_module_documents_every_error_it_defines() -> None:
    from billing_credits import _errors

    tree = _errors.__doc__ or ""
    defined = [name for name in _errors.__all__ if name.endswith("Error")]
    assert len(defined) >= 14
    for name in defined:
        assert name in tree, name
