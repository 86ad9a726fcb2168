"""billing-credits: prepaid billing credits across billing vendors, through one neutral model.

Everything public is importable from here; the modules behind it are private. Names are
imported on first use (module ``__getattr__``), so ``import billing_credits`` and the CLI's
``--help`` stay fast: pydantic models are built only when something needs them.
"""

from __future__ import annotations

import importlib
import typing

if typing.TYPE_CHECKING:
    from ._capabilities import (
        ALL_OPERATIONS,
        ALL_SCOPE_KINDS,
        Capabilities,
        MetadataLimits,
        Operation,
        ScopeKind,
    )
    from ._errors import (
        AuthenticationError,
        BadRequestError,
        BillingCreditsError,
        ConfigurationError,
        ConflictError,
        FieldProblem,
        InvalidGrantError,
        InvalidResponseError,
        NotFoundError,
        NotRepresentableError,
        PermissionDeniedError,
        ProviderError,
        RateLimitedError,
        UnavailableError,
        UnknownProviderError,
        UnreadableGrant,
        UnreadableGrantsError,
        UnsupportedOperationError,
        error_class_for_status,
        excerpt,
    )
    from ._hookspecs import hookimpl
    from ._migration import (
        ApplyReport,
        Change,
        MigrationError,
        MigrationPlan,
        PlanItem,
        VerifyReport,
        apply_plan,
        migration_key,
        plan_migration,
        verify_plan,
    )
    from ._model import (
        Adjustment,
        Category,
        CreditGrant,
        GrantStatus,
        Scope,
        Segment,
        Specifier,
    )
    from ._money import CreditUnit, Money, currency_exponent, exact_sum, is_iso_currency
    from ._money import exact as exact_context
    from ._plugins import (
        ProviderInfo,
        ProviderRegister,
        available_providers,
        get_provider,
        plugin_manager,
    )
    from ._priority import (
        ANY_DECIMAL,
        FLOAT64,
        PriorityDomain,
        PriorityMapping,
        PriorityNotRepresentableError,
        float64_exact,
        preserve_order,
    )
    from ._provider import ListQuery, OnUnreadable, Page, Provider, Setting, read_items
    from ._runtime import Call, Flow, RateLimit, RetryPolicy, Runtime, blocking
    from ._sandbox import Sandbox, SandboxRegister
    from ._secrets import check_base_url, redact, register_secret
    from ._transfer import ImportReport, export_grants, import_grants
    from ._version import __version__

_SOURCES: dict[str, tuple[str, str]] = {
    "ALL_OPERATIONS": ("._capabilities", "ALL_OPERATIONS"),
    "ALL_SCOPE_KINDS": ("._capabilities", "ALL_SCOPE_KINDS"),
    "ANY_DECIMAL": ("._priority", "ANY_DECIMAL"),
    "FLOAT64": ("._priority", "FLOAT64"),
    "Adjustment": ("._model", "Adjustment"),
    "ApplyReport": ("._migration", "ApplyReport"),
    "AuthenticationError": ("._errors", "AuthenticationError"),
    "BadRequestError": ("._errors", "BadRequestError"),
    "BillingCreditsError": ("._errors", "BillingCreditsError"),
    "Call": ("._runtime", "Call"),
    "Capabilities": ("._capabilities", "Capabilities"),
    "Category": ("._model", "Category"),
    "Change": ("._migration", "Change"),
    "ConfigurationError": ("._errors", "ConfigurationError"),
    "ConflictError": ("._errors", "ConflictError"),
    "CreditGrant": ("._model", "CreditGrant"),
    "CreditUnit": ("._money", "CreditUnit"),
    "FieldProblem": ("._errors", "FieldProblem"),
    "Flow": ("._runtime", "Flow"),
    "GrantStatus": ("._model", "GrantStatus"),
    "ImportReport": ("._transfer", "ImportReport"),
    "InvalidGrantError": ("._errors", "InvalidGrantError"),
    "InvalidResponseError": ("._errors", "InvalidResponseError"),
    "ListQuery": ("._provider", "ListQuery"),
    "MetadataLimits": ("._capabilities", "MetadataLimits"),
    "MigrationError": ("._migration", "MigrationError"),
    "MigrationPlan": ("._migration", "MigrationPlan"),
    "Money": ("._money", "Money"),
    "NotFoundError": ("._errors", "NotFoundError"),
    "NotRepresentableError": ("._errors", "NotRepresentableError"),
    "OnUnreadable": ("._provider", "OnUnreadable"),
    "Operation": ("._capabilities", "Operation"),
    "Page": ("._provider", "Page"),
    "PermissionDeniedError": ("._errors", "PermissionDeniedError"),
    "PlanItem": ("._migration", "PlanItem"),
    "PriorityDomain": ("._priority", "PriorityDomain"),
    "PriorityMapping": ("._priority", "PriorityMapping"),
    "PriorityNotRepresentableError": ("._priority", "PriorityNotRepresentableError"),
    "Provider": ("._provider", "Provider"),
    "ProviderError": ("._errors", "ProviderError"),
    "ProviderInfo": ("._plugins", "ProviderInfo"),
    "ProviderRegister": ("._plugins", "ProviderRegister"),
    "RateLimit": ("._runtime", "RateLimit"),
    "RateLimitedError": ("._errors", "RateLimitedError"),
    "RetryPolicy": ("._runtime", "RetryPolicy"),
    "Runtime": ("._runtime", "Runtime"),
    "Sandbox": ("._sandbox", "Sandbox"),
    "SandboxRegister": ("._sandbox", "SandboxRegister"),
    "Scope": ("._model", "Scope"),
    "ScopeKind": ("._capabilities", "ScopeKind"),
    "Segment": ("._model", "Segment"),
    "Setting": ("._provider", "Setting"),
    "Specifier": ("._model", "Specifier"),
    "UnavailableError": ("._errors", "UnavailableError"),
    "UnknownProviderError": ("._errors", "UnknownProviderError"),
    "UnreadableGrant": ("._errors", "UnreadableGrant"),
    "UnreadableGrantsError": ("._errors", "UnreadableGrantsError"),
    "UnsupportedOperationError": ("._errors", "UnsupportedOperationError"),
    "VerifyReport": ("._migration", "VerifyReport"),
    "__version__": ("._version", "__version__"),
    "apply_plan": ("._migration", "apply_plan"),
    "available_providers": ("._plugins", "available_providers"),
    "blocking": ("._runtime", "blocking"),
    "check_base_url": ("._secrets", "check_base_url"),
    "currency_exponent": ("._money", "currency_exponent"),
    "error_class_for_status": ("._errors", "error_class_for_status"),
    "exact_context": ("._money", "exact"),
    "exact_sum": ("._money", "exact_sum"),
    "excerpt": ("._errors", "excerpt"),
    "export_grants": ("._transfer", "export_grants"),
    "float64_exact": ("._priority", "float64_exact"),
    "get_provider": ("._plugins", "get_provider"),
    "hookimpl": ("._hookspecs", "hookimpl"),
    "import_grants": ("._transfer", "import_grants"),
    "is_iso_currency": ("._money", "is_iso_currency"),
    "migration_key": ("._migration", "migration_key"),
    "plan_migration": ("._migration", "plan_migration"),
    "plugin_manager": ("._plugins", "plugin_manager"),
    "preserve_order": ("._priority", "preserve_order"),
    "read_items": ("._provider", "read_items"),
    "redact": ("._secrets", "redact"),
    "register_secret": ("._secrets", "register_secret"),
    "verify_plan": ("._migration", "verify_plan"),
}

__all__ = [
    "ALL_OPERATIONS",
    "ALL_SCOPE_KINDS",
    "ANY_DECIMAL",
    "FLOAT64",
    "Adjustment",
    "ApplyReport",
    "AuthenticationError",
    "BadRequestError",
    "BillingCreditsError",
    "Call",
    "Capabilities",
    "Category",
    "Change",
    "ConfigurationError",
    "ConflictError",
    "CreditGrant",
    "CreditUnit",
    "FieldProblem",
    "Flow",
    "GrantStatus",
    "ImportReport",
    "InvalidGrantError",
    "InvalidResponseError",
    "ListQuery",
    "MetadataLimits",
    "MigrationError",
    "MigrationPlan",
    "Money",
    "NotFoundError",
    "NotRepresentableError",
    "OnUnreadable",
    "Operation",
    "Page",
    "PermissionDeniedError",
    "PlanItem",
    "PriorityDomain",
    "PriorityMapping",
    "PriorityNotRepresentableError",
    "Provider",
    "ProviderError",
    "ProviderInfo",
    "ProviderRegister",
    "RateLimit",
    "RateLimitedError",
    "RetryPolicy",
    "Runtime",
    "Sandbox",
    "SandboxRegister",
    "Scope",
    "ScopeKind",
    "Segment",
    "Setting",
    "Specifier",
    "UnavailableError",
    "UnknownProviderError",
    "UnreadableGrant",
    "UnreadableGrantsError",
    "UnsupportedOperationError",
    "VerifyReport",
    "__version__",
    "apply_plan",
    "available_providers",
    "blocking",
    "check_base_url",
    "currency_exponent",
    "error_class_for_status",
    "exact_context",
    "exact_sum",
    "excerpt",
    "export_grants",
    "float64_exact",
    "get_provider",
    "hookimpl",
    "import_grants",
    "is_iso_currency",
    "migration_key",
    "plan_migration",
    "plugin_manager",
    "preserve_order",
    "read_items",
    "redact",
    "register_secret",
    "verify_plan",
]



def __getattr__(name: str) -> typing.Any:
    """Import a public name from its private module on first use, then keep it here."""
    source = _SOURCES.get(name)
    if source is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(source[0], __name__), source[1])
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
