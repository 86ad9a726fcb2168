"""billing-credits: prepaid billing credits across billing vendors, through one neutral model.

Everything public is importable from here; the modules behind it are private. Names are
imported on first use (module ``__getattr__``), so ``import billing_credits`` and the CLI's
``--help`` stay fast: pydantic models are built only when something needs them.
"""

from __future__ import annotations

import importlib
import typing

if typing.TYPE_CHECKING:
    from ._base import decode_vendor_json, is_checked_payload, json_text_is_valid, payload_copy
    from ._capabilities import (
        ALL_OPERATIONS,
        ALL_SCOPE_KINDS,
        BASIC_OPERATIONS,
        CONSERVATIVE_METADATA,
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
        InputTooLargeError,
        InvalidGrantError,
        InvalidResponseError,
        MigrationError,
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
        reading_vendor_payload,
        reads_vendor_payload,
    )
    from ._ledger import (
        Balance,
        BalancePart,
        GrantUpdate,
        LedgerEntry,
        LedgerKind,
        LedgerPage,
        Usage,
    )
    from ._model import (
        MIGRATED_KEY,
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
    from ._money import shared_exact as shared_exact_context
    from ._priority import (
        ANY_DECIMAL,
        FLOAT64,
        PriorityDomain,
        PriorityMapping,
        PriorityNotRepresentableError,
        float64_exact,
        preserve_order,
    )
    from ._provider import (
        MAX_LISTING_PAGES,
        UNSET,
        ListingGuard,
        ListQuery,
        OnUnreadable,
        Page,
        Provider,
        Setting,
        read_items,
    )
    from ._runtime import (
        Call,
        Flow,
        RateLimit,
        RetryPolicy,
        Runtime,
        blocking,
    )
    from ._secrets import (
        check_base_url,
        redact,
        register_secret,
    )
    from ._version import (
        __version__,
    )
    from .consumption._engine import (
        LOCAL_ORDER,
        RULE_NAMES,
        Allocation,
        ConsumptionOrder,
        Draw,
        Expiry,
        OrderRule,
        Tie,
        admits,
        allocate,
    )
    from .consumption._report import (
        BalancePoint,
        Comparison,
        CustomerSimulation,
        Difference,
        GrantOutcome,
        Simulation,
    )
    from .consumption._simulate import (
        read_usage,
        simulate,
        synthetic_usage,
    )
    from .migrate._apply import (
        ApplyReport,
        RetireOverlap,
        apply_plan,
    )
    from .migrate._compare import (
        compare_plan,
    )
    from .migrate._plan import (
        PROVENANCE_KEYS,
        Change,
        MigrationPlan,
        PlanItem,
        migration_key,
    )
    from .migrate._planner import (
        plan_migration,
        write_plan,
    )
    from .migrate._transfer import (
        ImportReport,
        export_grants,
        import_grants,
    )
    from .migrate._verify import (
        VerifyReport,
        verify_plan,
    )
    from .plugins._hookspecs import (
        hookimpl,
    )
    from .plugins._registers import (
        ProviderRegister,
    )
    from .plugins._registry import (
        ProviderInfo,
        available_providers,
        get_provider,
        plugin_manager,
    )
    from .plugins._sandbox import (
        Sandbox,
        SandboxRegister,
    )

_EXPORTS: dict[str, tuple[str, ...]] = {
    "._capabilities": (
        "ALL_OPERATIONS", "ALL_SCOPE_KINDS", "BASIC_OPERATIONS", "CONSERVATIVE_METADATA",
        "Capabilities", "MetadataLimits", "Operation", "ScopeKind",
    ),
    ".consumption._engine": (
        "LOCAL_ORDER", "RULE_NAMES", "Allocation", "ConsumptionOrder", "Draw", "Expiry",
        "OrderRule", "Tie", "admits", "allocate",
    ),
    ".consumption._report": (
        "BalancePoint", "Comparison", "CustomerSimulation", "Difference", "GrantOutcome",
        "Simulation",
    ),
    ".consumption._simulate": (
        "read_usage", "simulate", "synthetic_usage",
    ),
    "._errors": (
        "AuthenticationError", "BadRequestError", "BillingCreditsError", "ConfigurationError",
        "ConflictError", "FieldProblem", "InputTooLargeError", "InvalidGrantError",
        "InvalidResponseError",
        "MigrationError", "NotFoundError", "NotRepresentableError", "PermissionDeniedError",
        "ProviderError", "RateLimitedError", "UnavailableError", "UnknownProviderError",
        "UnreadableGrant", "UnreadableGrantsError", "UnsupportedOperationError",
        "error_class_for_status", "excerpt", "reading_vendor_payload", "reads_vendor_payload",
    ),
    "._ledger": (
        "Balance", "BalancePart", "GrantUpdate", "LedgerEntry", "LedgerKind", "LedgerPage", "Usage",
    ),
    ".migrate._plan": (
        "PROVENANCE_KEYS", "Change", "MigrationPlan", "PlanItem", "migration_key",
    ),
    ".migrate._planner": (
        "plan_migration", "write_plan",
    ),
    ".migrate._apply": (
        "ApplyReport", "RetireOverlap", "apply_plan",
    ),
    ".migrate._verify": (
        "VerifyReport", "verify_plan",
    ),
    ".migrate._compare": (
        "compare_plan",
    ),
    ".migrate._transfer": (
        "ImportReport", "export_grants", "import_grants",
    ),
    "._model": (
        "MIGRATED_KEY", "Adjustment", "Category", "CreditGrant", "GrantStatus", "Scope", "Segment",
        "Specifier",
    ),
    "._money": (
        "CreditUnit", "Money", "currency_exponent", "exact_sum", "is_iso_currency",
    ),
    ".plugins._hookspecs": (
        "hookimpl",
    ),
    ".plugins._registers": (
        "ProviderRegister",
    ),
    ".plugins._registry": (
        "ProviderInfo", "available_providers", "get_provider", "plugin_manager",
    ),
    ".plugins._sandbox": (
        "Sandbox", "SandboxRegister",
    ),
    "._base": (
        "decode_vendor_json", "is_checked_payload", "json_text_is_valid", "payload_copy",
    ),
    "._priority": (
        "ANY_DECIMAL", "FLOAT64", "PriorityDomain", "PriorityMapping",
        "PriorityNotRepresentableError", "float64_exact", "preserve_order",
    ),
    "._provider": (
        "MAX_LISTING_PAGES", "UNSET", "ListQuery", "ListingGuard", "OnUnreadable", "Page",
        "Provider", "Setting", "read_items",
    ),
    "._runtime": (
        "Call", "Flow", "RateLimit", "RetryPolicy", "Runtime", "blocking",
    ),
    "._secrets": (
        "check_base_url", "redact", "register_secret",
    ),
    "._version": (
        "__version__",
    ),
}

_SOURCES: dict[str, tuple[str, str]] = {
    name: (module, name) for module, names in _EXPORTS.items() for name in names
}
_SOURCES["exact_context"] = ("._money", "exact")
_SOURCES["shared_exact_context"] = ("._money", "shared_exact")

__all__ = [
    "ALL_OPERATIONS",
    "ALL_SCOPE_KINDS",
    "ANY_DECIMAL",
    "BASIC_OPERATIONS",
    "CONSERVATIVE_METADATA",
    "FLOAT64",
    "LOCAL_ORDER",
    "MAX_LISTING_PAGES",
    "MIGRATED_KEY",
    "PROVENANCE_KEYS",
    "RULE_NAMES",
    "UNSET",
    "Adjustment",
    "Allocation",
    "ApplyReport",
    "AuthenticationError",
    "BadRequestError",
    "Balance",
    "BalancePart",
    "BalancePoint",
    "BillingCreditsError",
    "Call",
    "Capabilities",
    "Category",
    "Change",
    "Comparison",
    "ConfigurationError",
    "ConflictError",
    "ConsumptionOrder",
    "CreditGrant",
    "CreditUnit",
    "CustomerSimulation",
    "Difference",
    "Draw",
    "Expiry",
    "FieldProblem",
    "Flow",
    "GrantOutcome",
    "GrantStatus",
    "GrantUpdate",
    "ImportReport",
    "InputTooLargeError",
    "InvalidGrantError",
    "InvalidResponseError",
    "LedgerEntry",
    "LedgerKind",
    "LedgerPage",
    "ListQuery",
    "ListingGuard",
    "MetadataLimits",
    "MigrationError",
    "MigrationPlan",
    "Money",
    "NotFoundError",
    "NotRepresentableError",
    "OnUnreadable",
    "Operation",
    "OrderRule",
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
    "RetireOverlap",
    "RetryPolicy",
    "Runtime",
    "Sandbox",
    "SandboxRegister",
    "Scope",
    "ScopeKind",
    "Segment",
    "Setting",
    "Simulation",
    "Specifier",
    "Tie",
    "UnavailableError",
    "UnknownProviderError",
    "UnreadableGrant",
    "UnreadableGrantsError",
    "UnsupportedOperationError",
    "Usage",
    "VerifyReport",
    "__version__",
    "admits",
    "allocate",
    "apply_plan",
    "available_providers",
    "blocking",
    "check_base_url",
    "compare_plan",
    "currency_exponent",
    "decode_vendor_json",
    "error_class_for_status",
    "exact_context",
    "exact_sum",
    "excerpt",
    "export_grants",
    "float64_exact",
    "get_provider",
    "hookimpl",
    "import_grants",
    "is_checked_payload",
    "is_iso_currency",
    "json_text_is_valid",
    "migration_key",
    "payload_copy",
    "plan_migration",
    "plugin_manager",
    "preserve_order",
    "read_items",
    "read_usage",
    "reading_vendor_payload",
    "reads_vendor_payload",
    "redact",
    "register_secret",
    "shared_exact_context",
    "simulate",
    "synthetic_usage",
    "verify_plan",
    "write_plan",
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
