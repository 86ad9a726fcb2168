"""billing-credits: prepaid billing credits across billing vendors, through one neutral model.

Everything public is importable from here; the modules behind it are private.
"""

from __future__ import annotations

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
    NotFoundError,
    NotRepresentableError,
    PermissionDeniedError,
    ProviderError,
    RateLimitedError,
    UnavailableError,
    UnknownProviderError,
    UnsupportedOperationError,
    error_class_for_status,
)
from ._hookspecs import hookimpl
from ._model import (
    Adjustment,
    Category,
    CreditGrant,
    GrantStatus,
    Scope,
    Segment,
    Specifier,
)
from ._money import CreditUnit, Money, currency_exponent, is_iso_currency
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
from ._provider import ListQuery, Page, Provider, Setting
from ._runtime import Call, Flow, RateLimit, RetryPolicy, Runtime, blocking
from ._version import __version__

__all__ = [
    "ALL_OPERATIONS",
    "ALL_SCOPE_KINDS",
    "ANY_DECIMAL",
    "FLOAT64",
    "Adjustment",
    "AuthenticationError",
    "BadRequestError",
    "BillingCreditsError",
    "Call",
    "Capabilities",
    "Category",
    "ConfigurationError",
    "ConflictError",
    "CreditGrant",
    "CreditUnit",
    "FieldProblem",
    "Flow",
    "GrantStatus",
    "InvalidGrantError",
    "ListQuery",
    "MetadataLimits",
    "Money",
    "NotFoundError",
    "NotRepresentableError",
    "Operation",
    "Page",
    "PermissionDeniedError",
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
    "Scope",
    "ScopeKind",
    "Segment",
    "Setting",
    "Specifier",
    "UnavailableError",
    "UnknownProviderError",
    "UnsupportedOperationError",
    "__version__",
    "available_providers",
    "blocking",
    "currency_exponent",
    "error_class_for_status",
    "float64_exact",
    "get_provider",
    "hookimpl",
    "is_iso_currency",
    "plugin_manager",
    "preserve_order",
]
