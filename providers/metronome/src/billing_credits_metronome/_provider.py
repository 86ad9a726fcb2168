"""The two Metronome providers, sharing settings, transport and the idempotent-create recipe.

- ``metronome``: contract-era customer credits (``/v1/contracts/customerCredits/*``).
- ``metronome-plans``: Plans-era v1 credit grants (``/v1/credits/*``, deprecated by Metronome).

Each operation is one flow (see ``billing_credits.Runtime``), so sync and async share it.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import billing_credits as bc
from billing_credits import _secrets as bc_secrets

from . import _ledger as ledger
from . import _translate as tr
from ._transport import DEFAULT_BASE_URL, MetronomeHTTP, Reply, created_id, page_of

if TYPE_CHECKING:
    import httpx

__all__ = ["MetronomeCreditsProvider", "MetronomePlansProvider"]

DEFAULT_RATE_LIMIT = 10.0
"""Requests per second per provider instance. Metronome publishes no limit for these endpoints;
ten a second is a cautious guess that still lists thousands of grants a minute."""
DEFAULT_MAX_RETRIES = 4
DEFAULT_TIMEOUT = 30.0
DEFAULT_PRIORITY = Decimal(100)
DEFAULT_FAR_FUTURE = datetime(2099, 12, 31, tzinfo=UTC)

CREATE_GRANT = "/v1/credits/createGrant"
LIST_GRANTS = "/v1/credits/listGrants"
EDIT_GRANT = "/v1/credits/editGrant"
VOID_GRANT = "/v1/credits/voidGrant"
CREATE_CREDIT = "/v1/contracts/customerCredits/create"
LIST_CREDITS = "/v1/contracts/customerCredits/list"
UPDATE_END_DATE = "/v1/contracts/customerCredits/updateEndDate"
ADD_KEY = "/v1/customFields/addKey"
LIST_KEYS = "/v1/customFields/listKeys"

ALREADY_VOIDED = "already_voided"
"""``code`` of the ``NotFoundError`` that ``void_grant`` raises for a grant Metronome already
voided: Metronome keeps no readable record of a voided grant (``listGrants`` "does not include
voided grants"), so there is nothing to return; a retire treats it as done."""
KEY_NOT_REGISTERED = "custom_field_key_not_registered"
"""``code`` of the ``BadRequestError`` raised when Metronome refuses a custom-field key that is
not registered: run ``billing-credits setup`` (``provider.setup()``)."""

MAX_KEY_LENGTH = 100
""""There is a 100 character limit on custom field keys" (``v1.custom_fields.add_key``,
https://metronome.metronome.beta.stldocs.com/api/python/resources/v1/subresources/custom_fields)."""
_VOIDED = re.compile(r"already\s+(been\s+)?voided|credit_grant_voided|is\s+voided", re.IGNORECASE)
_DUPLICATE_KEY = re.compile(r"duplicate|already\s+exists", re.IGNORECASE)

GRANTS_PAGE_MAX = 100
CREDITS_PAGE_MAX = 25

_COMMON_SETTINGS = (
    bc.Setting("bearer_token", "Metronome API token (Authorization: Bearer)",
               env="METRONOME_BEARER_TOKEN", secret=True),
    bc.Setting("base_url", f"API base URL (default {DEFAULT_BASE_URL})", env="METRONOME_BASE_URL"),
    bc.Setting("timeout", f"total seconds per request, connect to last byte "
               f"(default {DEFAULT_TIMEOUT:g})"),
    bc.Setting("max_retries", f"retries after the first attempt on 429, 5xx and network errors "
               f"(default {DEFAULT_MAX_RETRIES})"),
    bc.Setting("rate_limit", f"client-side requests per second, 0 for none (default "
               f"{DEFAULT_RATE_LIMIT:g}; Metronome publishes no limit)"),
    bc.Setting("http_client", "an httpx.Client to send sync requests with"),
    bc.Setting("async_http_client", "an httpx.AsyncClient to send async requests with"),
    bc.Setting("credit_types", "map of Metronome credit type id to ISO currency, as 'EUR' "
               "(ISO scale), 'EUR:2' or (currency, scale); USD (cents) "
               f"{tr.USD_CENTS} is built in; other ids read as custom credit units"),
    bc.Setting("default_priority", f"priority sent when a grant has none (default "
               f"{DEFAULT_PRIORITY}); Metronome requires one", env="METRONOME_DEFAULT_PRIORITY"),
    bc.Setting("far_future", "end date standing for 'never' (default 2099-12-31T00:00:00Z); "
               "reads back as None"),
    bc.Setting("time_alignment", "'hour' (default: floor starts, ceil ends, report it), "
               "'strict' (refuse times off the hour) or 'none'"),
    bc.Setting("custom_field_keys", "more custom-field keys for `setup` to register (comma "
               "separated): the keys of your own metadata; the library's are always registered"),
)


def _env(name: str | None) -> str | None:
    return os.environ.get(name) if name else None


def _decimal(name: str, value: Any) -> Decimal:
    try:
        return tr.to_decimal(value)
    except (TypeError, ValueError, ArithmeticError):
        raise bc.ConfigurationError(f"{name} must be a number, not {value!r}") from None


def _number(name: str, value: Any, default: float, *, minimum: float = 0,
            integer: bool = False) -> float:
    if value is None:
        return default
    try:
        number = float(value) if not integer else float(int(str(value).strip()))
    except (TypeError, ValueError, OverflowError):
        raise bc.ConfigurationError(f"{name} must be a{'' if not integer else 'n integer'} "
                                    "number") from None
    if not math.isfinite(number) or number < minimum:
        raise bc.ConfigurationError(f"{name} must be a finite number of at least {minimum:g}")
    return number


def _keys(value: Any) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    items = value.split(",") if isinstance(value, str) else list(value)
    keys = tuple(dict.fromkeys(str(k).strip() for k in items if str(k).strip()))
    for key in keys:
        if len(key) > MAX_KEY_LENGTH:
            raise bc.ConfigurationError(
                f"custom_field_keys: a key is {len(key)} characters; Metronome allows at most "
                f"{MAX_KEY_LENGTH}")
    return keys


def _bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no",
                                                    "off", ""):
        return value.lower() in ("1", "true", "yes", "on")
    raise bc.ConfigurationError(f"{name} must be true or false, not {value!r}")


def _credit_types_text(value: str) -> Mapping[str, Any]:
    """``credit_types`` given as text (CLI, environment): JSON, or ``id=EUR,id2=EUR:2``."""
    import json

    text = value.strip()
    if text.startswith("{"):
        try:
            decoded = json.loads(text)
        except ValueError:
            raise bc.ConfigurationError("credit_types: not valid JSON") from None
        if not isinstance(decoded, dict):
            raise bc.ConfigurationError("credit_types: give a JSON object")
        return {str(k): (tuple(v) if isinstance(v, list) else v) for k, v in decoded.items()}
    pairs: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        type_id, sep, spec = part.partition("=")
        if not sep or not type_id.strip() or not spec.strip():
            raise bc.ConfigurationError("credit_types: give 'credit_type_id=EUR' pairs "
                                        "separated by commas, or a JSON object")
        pairs[type_id.strip()] = spec.strip()
    return pairs


def _credit_types(value: Mapping[str, Any] | str | None) -> dict[str, tr.CurrencyScale]:
    try:
        return _parse_credit_types(value)
    except (TypeError, ValueError, AttributeError):
        raise bc.ConfigurationError("credit_types: give {credit type id: 'EUR' | 'EUR:2' | "
                                    "(currency, scale)}") from None


def _parse_credit_types(value: Mapping[str, Any] | str | None) -> dict[str, tr.CurrencyScale]:
    types = {tr.USD_CENTS: tr.CurrencyScale("USD", 2)}
    if isinstance(value, str):
        value = _credit_types_text(value)
    for type_id, spec in (value or {}).items():
        if isinstance(spec, tr.CurrencyScale):
            currency, scale = spec.currency, spec.scale
        elif isinstance(spec, tuple) and len(spec) == 2:
            currency, scale = str(spec[0]), int(spec[1])
        elif isinstance(spec, str):
            currency, _, digits = spec.partition(":")
            if not bc.is_iso_currency(currency):
                raise bc.ConfigurationError(f"credit_types[{type_id!r}]: {currency!r} is not ISO")
            exponent = int(digits) if digits else bc.currency_exponent(currency)
            if exponent is None:
                raise bc.ConfigurationError(f"credit_types[{type_id!r}]: give a scale for "
                                            f"{currency}")
            scale = exponent
        else:
            raise bc.ConfigurationError(f"credit_types[{type_id!r}]: {spec!r} is not a currency")
        if not bc.is_iso_currency(currency):
            raise bc.ConfigurationError(f"credit_types[{type_id!r}]: {currency!r} is not ISO")
        if not 0 <= scale <= 18:
            raise bc.ConfigurationError(f"credit_types[{type_id!r}]: scale {scale} is not 0-18")
        types[str(type_id)] = tr.CurrencyScale(currency.upper(), scale)
    currencies = [s.currency for s in types.values()]
    if len(currencies) != len(set(currencies)):
        raise bc.ConfigurationError("credit_types maps two credit types to the same currency")
    return types


def _now() -> datetime:
    return datetime.now(UTC)


def _capabilities(*, scope: frozenset[bc.ScopeKind], max_segments: int | None,
                  operations: frozenset[bc.Operation], in_metadata: frozenset[str],
                  notes: tuple[str, ...], updatable: frozenset[str] = frozenset(),
                  balance_as_of: Literal["now", "any"] = "now") -> bc.Capabilities:
    return bc.Capabilities(
        balance_as_of=balance_as_of,
        updatable_fields=updatable,
        currencies=frozenset({"USD"}),
        custom_units=True,
        amount_float64=True,
        priority=bc.PriorityDomain("float64", default=DEFAULT_PRIORITY),
        scope_kinds=scope,
        max_segments=max_segments,
        expiry_required=True,
        metadata=bc.MetadataLimits(max_value_length=tr.MAX_CUSTOM_FIELD_VALUE,
                                   reserved_prefix=tr.RESERVED_PREFIX),
        fields_in_metadata=in_metadata,
        operations=operations,
        notes=(
            "currencies: those mapped in the credit_types setting (USD (cents) built in); "
            "other Metronome credit types are custom credit units",
            "amounts travel as JSON numbers in the credit type's unit and must be exact doubles",
            "expires_at None is sent as the far-future date and reads back as None",
            "time_alignment 'hour' (default) floors starts and ceils ends to the UTC hour and "
            "reports each change in adjustments",
            "custom-field keys must be registered in Metronome first: run `billing-credits "
            "setup` (provider.setup()); keys 'bc_*' are reserved",
            *notes,
        ),
    )


class _MetronomeProvider(bc.Provider):
    """What both Metronome providers share: settings, transport, time, the create recipe."""

    settings: ClassVar[tuple[bc.Setting, ...]] = _COMMON_SETTINGS

    def __init__(
        self,
        *,
        bearer_token: str | None = None,
        base_url: str | None = None,
        timeout: float | str | None = None,
        max_retries: int | str | None = None,
        rate_limit: float | str | None = None,
        http_client: httpx.Client | None = None,
        async_http_client: httpx.AsyncClient | None = None,
        credit_types: Mapping[str, Any] | None = None,
        default_priority: Decimal | float | str | None = None,
        far_future: datetime | str | None = None,
        time_alignment: str | None = None,
        invoice_paid_amount: bool | str | None = None,
        default_name: str | None = None,
        product_id: str | None = None,
        custom_field_keys: str | Iterable[str] | None = None,
        runtime: bc.Runtime | None = None,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        token = bearer_token or _env("METRONOME_BEARER_TOKEN")
        if not token or not isinstance(token, str):
            raise bc.ConfigurationError(
                f"provider {self.name!r} needs bearer_token (or METRONOME_BEARER_TOKEN)")
        bc_secrets.register_secret(token)
        retries = int(_number("max_retries", max_retries, DEFAULT_MAX_RETRIES, integer=True))
        per_second = _number("rate_limit", rate_limit, DEFAULT_RATE_LIMIT)
        seconds = _number("timeout", timeout, DEFAULT_TIMEOUT)
        if seconds <= 0:
            raise bc.ConfigurationError("timeout must be more than 0 seconds")
        self._extra_keys = _keys(custom_field_keys)
        super().__init__(runtime=runtime or bc.Runtime(
            retry=bc.RetryPolicy(attempts=retries + 1),
            rate_limit=bc.RateLimit(per_second if per_second > 0 else None),
        ))
        priority = default_priority if default_priority is not None else _env(
            "METRONOME_DEFAULT_PRIORITY")
        domain_default = _decimal("default_priority", priority) if priority is not None else (
            DEFAULT_PRIORITY)
        if not bc.float64_exact(domain_default):
            raise bc.ConfigurationError("default_priority must be exact as a double")
        if isinstance(far_future, str):
            try:
                far_future = tr.parse_time(far_future)
            except (ValueError, OverflowError):
                raise bc.ConfigurationError("far_future must be an RFC 3339 time with an "
                                            "offset") from None
        if far_future is not None and not isinstance(far_future, datetime):
            raise bc.ConfigurationError("far_future must be a time")
        alignment = time_alignment or "hour"
        if alignment not in ("hour", "strict", "none"):
            raise bc.ConfigurationError("time_alignment must be 'hour', 'strict' or 'none'")
        self._config = tr.TranslationConfig(
            credit_types=_credit_types(credit_types),
            default_priority=domain_default,
            far_future=far_future or DEFAULT_FAR_FUTURE,
            alignment=alignment,  # type: ignore[arg-type]
            invoice_paid_amount=_bool("invoice_paid_amount", invoice_paid_amount or False),
            default_name=default_name or "Credits",
            product_id=product_id,
            provider=self.name,
        )
        if self._config.far_future.tzinfo is None:
            raise bc.ConfigurationError("far_future must be timezone-aware")
        self._identity = "{}:{}:{}".format(
            self.name, base_url or _env("METRONOME_BASE_URL") or DEFAULT_BASE_URL,
            hashlib.sha256(token.encode()).hexdigest()[:12])
        self._http = MetronomeHTTP(
            provider=self.name, bearer_token=token,
            base_url=base_url or _env("METRONOME_BASE_URL") or DEFAULT_BASE_URL,
            timeout=seconds,
            http_client=http_client, async_http_client=async_http_client,
        )
        self._clock = clock
        self.capabilities = dataclasses.replace(
            type(self).capabilities,
            currencies=frozenset(s.currency for s in self._config.credit_types.values()),
            priority=self._config.priority_domain,
        )

    entity: ClassVar[str]
    """Metronome's custom-field entity for what this provider creates (``addKey``)."""
    own_keys: ClassVar[frozenset[str]]
    """The ``bc_*`` custom-field keys this provider writes."""

    def _customer_page(self, customer_id: str, cursor: str | None) -> bc.Call[Reply]:
        """The request for one page of a customer's grants or credits, from ``cursor``."""
        raise NotImplementedError

    def _pages(self, label: str, request: Callable[[str | None], bc.Call[Reply]]
               ) -> bc.Flow[list[Any]]:
        """Every item of a listing, page after page, with the core's loop guard: a cursor seen
        before, or ``max_empty_pages`` empty pages in a row, is ``InvalidResponseError``."""
        found: list[Any] = []
        seen: set[str] = set()
        empty = 0
        cursor: str | None = None
        while True:
            reply = yield request(cursor)
            items, next_page = page_of(self.name, label, reply)
            found.extend(items)
            if next_page is None:
                return found
            if next_page in seen:
                raise bc.InvalidResponseError(
                    f"Metronome {label} returned a cursor it had returned before "
                    f"({next_page[:80]!r}); stopped so as not to loop", provider=self.name,
                    request_id=reply.request_id)
            seen.add(next_page)
            empty = 0 if items else empty + 1
            if empty >= self.max_empty_pages:
                raise bc.InvalidResponseError(
                    f"Metronome {label} returned {empty} empty pages in a row, each with a new "
                    "cursor; stopped so as not to loop", provider=self.name,
                    request_id=reply.request_id)
            cursor = next_page

    def _find_item_by_key(self, customer_id: str, key: str) -> bc.Flow[Mapping[str, Any] | None]:
        """The customer's item holding uniqueness ``key``, paging through all of them."""
        items = yield from self._pages("list", lambda c: self._customer_page(customer_id, c))
        for item in items:
            if isinstance(item, Mapping) and item.get("uniqueness_key") == key:
                found: Mapping[str, Any] = item
                return found
        return None

    def custom_field_keys(self) -> tuple[str, ...]:
        """Every custom-field key ``setup`` registers: the ``bc_*`` keys this provider writes,
        the migration provenance keys (``bc.PROVENANCE_KEYS``, which ``plan_migration`` writes
        with ``provenance=True``: migrating into Metronome needs no extra step), and those of the
        ``custom_field_keys`` setting."""
        return tuple(dict.fromkeys([*sorted(self.own_keys), *bc.PROVENANCE_KEYS,
                                    *self._extra_keys]))

    def setup(self) -> list[str]:
        """Register every custom-field key this provider needs (``custom_field_keys``) for its
        entity, idempotently: keys already listed (``/v1/customFields/listKeys``) are left
        alone, and an ``addKey`` answered "duplicate" counts as done. Returns one line per key
        added.

        Metronome accepts on a grant or credit only custom-field keys on the entity's allow
        list: ``/v1/customFields/addKey`` "Add[s] a key to the allow list for an entity"
        (https://docs.metronome.com/api-reference/custom-fields/create-a-custom-field-key; SDK
        ``client.v1.custom_fields.add_key``, ``metronome/resources/v1/custom_fields.py``).
        """
        return self.runtime.run(self._setup())

    def _registered_keys(self) -> bc.Flow[set[str]]:
        """The custom-field keys registered for this provider's entity (``listKeys``)."""
        def request(cursor: str | None) -> bc.Call[Reply]:
            return self._http.call(LIST_KEYS, {"entities": [self.entity]},
                                   query={"next_page": cursor} if cursor else None,
                                   label="customFields/listKeys")

        listed = yield from self._pages("customFields/listKeys", request)
        return {str(k.get("key")) for k in listed
                if isinstance(k, Mapping) and k.get("entity") == self.entity}

    def _setup(self) -> bc.Flow[list[str]]:
        present = yield from self._registered_keys()
        done: list[str] = []
        for key in self.custom_field_keys():
            if key in present:
                continue
            try:
                yield self._http.call(ADD_KEY, {"entity": self.entity, "key": key,
                                                "enforce_uniqueness": False},
                                      label="customFields/addKey")
            except bc.BadRequestError as refused:
                if not _DUPLICATE_KEY.search(refused.message):
                    raise
                continue  # registered meanwhile: done
            done.append(f"registered custom field key {key!r} for {self.entity}")
        return done

    def _key_refusal(self, refused: bc.BadRequestError,
                     payload: Mapping[str, Any]) -> bc.Flow[bc.ProviderError]:
        """A create refused with 400: when some of its custom-field keys are not registered
        (asked of ``listKeys``, whatever the refusal's wording; by the wording only when the
        keys cannot be listed), an error saying so and what to run; else the refusal itself."""
        keys = sorted(dict(payload.get("custom_fields") or {}))
        if not keys:
            return refused
        missing: list[str] | None
        try:
            registered = yield from self._registered_keys()
            missing = [k for k in keys if k not in registered]
        except bc.ProviderError:
            missing = None
        if missing is None:
            text = f"{refused.message} {refused.code or ''}".lower()
            named = "custom field" in text or "custom_field" in text or any(
                k.lower() in text for k in keys)
            missing = keys if named else []
        if not missing:
            return refused
        extra = sorted(set(missing) - set(self.custom_field_keys()))
        hint = (f"; keys of your own metadata ({', '.join(extra)}) also need "
                f"-s custom_field_keys={','.join(extra)}" if extra else "")
        return bc.BadRequestError(
            f"Metronome refused custom field key(s) {', '.join(missing)} for {self.entity}: "
            "Metronome accepts only keys registered beforehand. Run `billing-credits setup "
            f"--provider {self.name}` (or provider.setup()) to register them{hint}. "
            f"Metronome said: {refused.message}",
            provider=self.name, status=refused.status, body=refused.body,
            request_id=refused.request_id, code=KEY_NOT_REGISTERED, retryable=False)

    def _read_one(self, read: Callable[[], bc.CreditGrant], item: Any,
                  reply: Reply) -> bc.CreditGrant:
        """Read one item that must be readable (a get, a create's read-back)."""
        try:
            return read()
        except Exception as error:  # readers raise InvalidResponseError (reading_vendor_payload)
            problem = error.message if isinstance(error, bc.ProviderError) else (
                " ".join(str(error).split()) or type(error).__name__)
            raise bc.InvalidResponseError(
                f"Metronome returned an item that cannot be read as a grant: {problem[:300]}",
                provider=self.name, status=200, body=bc.excerpt(item),
                request_id=reply.request_id) from None

    def retire_effective_at(self, how: Literal["void", "expire"], now: datetime) -> datetime:
        """When retiring a grant at ``now`` stops its credit being spendable.

        A void is immediate. An expire sets the end to the UTC hour (vendor-surface.md §2.8:
        Metronome credit times are aligned to hours, "floor the start and ceil the end"; see
        ``_end_now``): at the start of the current hour for a grant that began before it, at
        the next hour for one that began within it. The answer is the later bound, the next
        UTC hour (``now`` itself when on the hour), so nothing started at or after it can
        overlap. Under ``time_alignment='none'``: ``now``, to the millisecond.
        """
        if how == "void" or self._config.alignment == "none":
            return now
        return tr.ceil_hour(now)

    def identity(self) -> str:
        """Base URL and a digest of the token (never the token): which account this is."""
        return self._identity

    @property
    def config(self) -> tr.TranslationConfig:
        """The translation settings in force (read-only)."""
        return self._config

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} base_url={self._http.base_url!r}>"

    def close(self) -> None:
        self._http.close()

    async def aclose(self) -> None:
        await self._http.aclose()

    def _now(self) -> datetime:
        return self._clock().astimezone(UTC)

    def _end_now(self, start: datetime | None) -> tuple[datetime, datetime, str]:
        """``(now, the end to send for "now", why they differ)``.

        With hour alignment the end is the start of the current UTC hour: usage from then on
        is no longer covered, so a grant that replaces this one (created with a floored start)
        never overlaps it and no credit can be spent twice. A grant that started within the
        current hour cannot end before it started: it ends at the next hour instead, and the
        adjustment says so.
        """
        now = self._now()
        if self._config.alignment == "none":
            end = now - (now - datetime(1970, 1, 1, tzinfo=UTC)) % timedelta(milliseconds=1)
            return now, end, "expire: cut to Metronome's millisecond resolution"
        end = tr.floor_hour(now)
        if start is not None and end <= start:
            return now, tr.ceil_hour(now), (
                "expire: the grant started within the current hour, so under hour alignment "
                "it ends at the next UTC hour and stays usable until then")
        return now, end, ("expire: floored to the UTC hour, so usage since then is no longer "
                          "covered (no overlap with a replacement grant)")

    @staticmethod
    def _expire_adjustment(now: datetime, end: datetime, why: str) -> tuple[bc.Adjustment, ...]:
        if end == now:
            return ()
        return (bc.Adjustment(field="expires_at", requested=tr.format_time(now),
                              stored=tr.format_time(end), reason=why),)

    def _problems(self, grant: bc.CreditGrant) -> list[bc.FieldProblem]:
        raise NotImplementedError

    def check(self, grant: bc.CreditGrant) -> None:
        """The declared capabilities, then what depends on settings (currencies, the
        far-future date, time alignment, values of the custom fields this package writes)."""
        super().check(grant)
        if problems := self._problems(grant):
            raise bc.NotRepresentableError(self.name, problems)

    @staticmethod
    def _conflict(key: str, detail: str, error: bc.ProviderError) -> bc.ConflictError:
        return bc.ConflictError(
            f"uniqueness_key {key!r} is already used {detail}",
            provider=error.provider, status=error.status, body=error.body,
            request_id=error.request_id, code="uniqueness_key_reused", retryable=False,
        )


def _vendor_id(item: Any) -> str | None:
    found = item.get("id") if isinstance(item, Mapping) else None
    return found if isinstance(found, str) else None


def _same_number(a: Any, b: Any) -> bool:
    return tr.to_decimal(a) == tr.to_decimal(b)


def _took_over_key(item: Mapping[str, Any], key: str) -> bool:
    """Whether the stored item is a migrated grant or credit that took over the application's
    key ``key`` (custom field ``migrated_from_key``, see ``CreditGrant.took_over_key``): the
    application's own create repeated after cut-over finds it, whatever the migration changed
    (the amount left, provenance custom fields)."""
    fields = item.get("custom_fields")
    return isinstance(fields, Mapping) and fields.get(bc.MIGRATED_KEY) == key


def _same_time(a: Any, b: Any) -> bool:
    return tr.parse_time(str(a)) == tr.parse_time(str(b))


class MetronomePlansProvider(_MetronomeProvider):
    """Metronome v1 credit grants (Plans, deprecated by Metronome): /v1/credits/*.

    ``create_grant`` sends ``createGrant`` (which answers only an id) and reads the grant back
    with ``listGrants`` filtered by ``credit_grant_ids``: the grant returned is Metronome's.
    A 409 (uniqueness key used) is answered by finding the grant with that key among the
    customer's grants and returning it when it is the same grant; otherwise ``ConflictError``.
    ``void_grant`` voids with ``voidGrant`` (the uniqueness key stays burnt, the purchase invoice
    is left alone) and returns the grant as read just before, with status voided and balance 0:
    voided grants vanish from ``listGrants``. A grant Metronome already voided cannot be read
    back: ``void_grant`` then raises ``NotFoundError`` with ``code`` ``ALREADY_VOIDED``
    ("already retired"; nothing was changed). ``expire_grant`` edits ``expires_at`` to now,
    floored to the hour under the default time alignment (see ``_end_now``); on a grant already
    expired it changes nothing and returns the grant read back.

    With ``invoice_paid_amount`` the instance bills the paid amount
    (``capabilities.invoices_paid_amount``); ``record_only()`` is a copy that never does.
    """

    name = "metronome-plans"
    capabilities = _capabilities(
        scope=frozenset({"product_ids"}), max_segments=1,
        operations=bc.ALL_OPERATIONS - {"consume"}, in_metadata=frozenset({"paid_amount"}),
        updatable=ledger.PLANS_UPDATABLE,
        notes=(
            "paid_amount is sent as 0 (no invoice) unless invoice_paid_amount is set; the cost "
            "basis then travels in custom fields bc_paid_*",
            "category ↔ credit_grant_type; another label is kept in category_label and the "
            "category inferred from paid_amount",
            "balance: what the customer can still use: including_pending when the grant outlives "
            "the billing period, else excluding_pending minus the listed pending deductions",
            "voided grants are not listed by Metronome; get_grant on one raises NotFoundError",
            "get_balance: listGrants excluding_pending now, pending deductions as pending",
            "ledger: /v1/credits/listEntries (posted entries); update: editGrant (name, "
            "expires_at)",
        ),
    )
    consumption_order = ledger.PLANS_ORDER
    remaining_source = ("listGrants balance: the smaller of excluding_pending and "
                        "including_pending (as of the end of the current billing period)")
    settings = (
        *_COMMON_SETTINGS,
        bc.Setting("invoice_paid_amount", "send a positive paid_amount to Metronome, which "
                   "invoices the customer for it (default false: sent as 0, kept in custom "
                   "fields)"),
        bc.Setting("default_name", "name sent when a grant has none (Metronome requires one; "
                   "default 'Credits'); reads back as None"),
    )

    entity = "credit_grant"
    own_keys = frozenset({tr.PAID_AMOUNT, tr.PAID_UNIT, tr.PAID_UNIT_NAME, tr.CATEGORY,
                          tr.UNNAMED, tr.PRIORITY_DEFAULT})

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self._borrowed = False
        self.capabilities = dataclasses.replace(
            self.capabilities, invoices_paid_amount=self._config.invoice_paid_amount)

    def record_only(self) -> MetronomePlansProvider:
        """``self`` when it does not invoice; else a copy (sharing the connection) that sends
        ``paid_amount`` 0 and keeps the paid amount in custom fields, whatever the settings.
        Closing the copy leaves the connection to the original."""
        if not self._config.invoice_paid_amount:
            return self
        other = copy.copy(self)
        other._config = dataclasses.replace(self._config, invoice_paid_amount=False,
                                            record_only=True)
        other.capabilities = dataclasses.replace(self.capabilities, invoices_paid_amount=False)
        other._borrowed = True
        return other

    def close(self) -> None:
        if not self._borrowed:
            super().close()

    async def aclose(self) -> None:
        if not self._borrowed:
            await super().aclose()

    def _problems(self, grant: bc.CreditGrant) -> list[bc.FieldProblem]:
        return tr.plans_problems(grant, self._config, self._now())

    def _read(self, item: Mapping[str, Any]) -> bc.CreditGrant:
        return tr.grant_from_item(item, self._config, self._now(), provider=self.name)

    def _read_reply(self, item: Mapping[str, Any], reply: Reply) -> bc.CreditGrant:
        return self._read_one(lambda: self._read(item), item, reply)

    def preview(self, grant: bc.CreditGrant) -> list[bc.Adjustment]:
        return list(tr.grant_create_payload(grant, "preview", self._config, self._now())[1])

    def _create(self, grant: bc.CreditGrant, idempotency_key: str) -> bc.Flow[bc.CreditGrant]:
        payload, adjustments = tr.grant_create_payload(
            grant, idempotency_key, self._config, self._now())
        try:
            created = yield self._http.call(CREATE_GRANT, payload, label="createGrant")
        except bc.BadRequestError as refused:
            error = yield from self._key_refusal(refused, payload)
            raise error from None
        except bc.ConflictError as conflict:
            item = yield from self._find_item_by_key(grant.customer_id, idempotency_key)
            if item is None:
                raise self._conflict(
                    idempotency_key, "by a grant that is not listed (voided, or another "
                    "customer's)", conflict) from conflict
            try:
                differs = [] if _took_over_key(item, idempotency_key) else self._differences(
                    payload, item, start_defaulted=grant.effective_at is None)
            except Exception:  # hostile stored item: not provably the same grant
                differs = ["(unreadable stored fields)"]
            if differs:
                raise self._conflict(
                    idempotency_key, f"by grant {item.get('id')} with different "
                    f"{', '.join(differs)}", conflict) from conflict
            stored: Mapping[str, Any] = item
            found = self._read_one(lambda: self._read(stored), stored,
                                   Reply(stored, conflict.request_id))
            return found.model_copy(update={"adjustments": adjustments, "replayed": True})
        grant_id = created_id(self.name, "createGrant", created)
        item, reply = yield from self._item(grant_id)
        if item is None:
            raise bc.ProviderError(
                f"created credit grant {grant_id} but could not read it back; creating again "
                "with the same idempotency_key returns it", provider=self.name,
                request_id=reply.request_id)
        return self._read_reply(item, reply).model_copy(
            update={"adjustments": adjustments, "replayed": False})

    @staticmethod
    def _differences(payload: Mapping[str, Any], item: Mapping[str, Any], *,
                     start_defaulted: bool) -> list[str]:
        """Which fields of the stored grant differ from what this create asked for.

        Fields Metronome lets you edit later (name, expires_at, credit_grant_type) are not
        compared; nor is a start the library chose (the grant had no ``effective_at``).
        """
        found = []
        if payload["customer_id"] != item.get("customer_id"):
            found.append("customer_id")
        for key in ("grant_amount", "paid_amount"):
            sent, stored = payload[key], item.get(key) or {}
            stored_type = (stored.get("credit_type") or {}).get("id")
            if not _same_number(sent["amount"], stored.get("amount", "NaN")) or (
                    sent["credit_type_id"] != stored_type):
                found.append(key)
        if not _same_number(payload["priority"], item.get("priority", "NaN")):
            found.append("priority")
        if not start_defaulted and not _same_time(payload["effective_at"], item["effective_at"]):
            found.append("effective_at")
        if payload.get("reason") != item.get("reason"):
            found.append("reason")
        if list(payload.get("product_ids") or ()) != [p["id"] for p in item.get("products") or ()]:
            found.append("product_ids")
        if dict(payload.get("custom_fields") or {}) != dict(item.get("custom_fields") or {}):
            found.append("custom_fields")
        return found

    def _customer_page(self, customer_id: str, cursor: str | None) -> bc.Call[Reply]:
        query: dict[str, str | int] = {"limit": GRANTS_PAGE_MAX}
        if cursor:
            query["next_page"] = cursor  # listGrants takes its cursor in the query
        return self._http.call(LIST_GRANTS, {"customer_ids": [customer_id]}, query=query,
                               label="listGrants")

    def _item(self, grant_id: str) -> bc.Flow[tuple[Mapping[str, Any] | None, Reply]]:
        reply = yield self._http.call(LIST_GRANTS, {"credit_grant_ids": [grant_id]},
                                      query={"limit": GRANTS_PAGE_MAX}, label="listGrants")
        items, _ = page_of(self.name, "listGrants", reply)
        for item in items:
            if isinstance(item, Mapping) and item.get("id") == grant_id:
                return item, reply
        return None, reply

    def _list_page(self, query: bc.ListQuery, cursor: str | None) -> bc.Flow[bc.Page]:
        limit = max(1, min(query.page_size or GRANTS_PAGE_MAX, GRANTS_PAGE_MAX))
        params: dict[str, str | int] = {"limit": limit}
        if cursor:
            params["next_page"] = cursor
        body = {"customer_ids": [query.customer_id]} if query.customer_id else {}
        reply = yield self._http.call(LIST_GRANTS, body, query=params, label="listGrants")
        items, next_page = page_of(self.name, "listGrants", reply)
        grants, unreadable = bc.read_items(self.name, items, self._read, _vendor_id)
        return bc.Page(grants, next_page, unreadable, request_id=reply.request_id)

    def _get(self, grant_id: str) -> bc.Flow[bc.CreditGrant]:
        item, reply = yield from self._item(grant_id)
        if item is None:
            raise bc.NotFoundError(
                f"no credit grant {grant_id!r} (Metronome does not list voided grants)",
                provider=self.name, request_id=reply.request_id)
        return self._read_reply(item, reply)

    def _void(self, grant_id: str) -> bc.Flow[bc.CreditGrant]:
        item, reply = yield from self._item(grant_id)
        grant = None if item is None else self._read_reply(item, reply)
        try:
            yield self._http.call(VOID_GRANT, {"id": grant_id}, label="voidGrant")
        except (bc.NotFoundError, bc.BadRequestError) as refused:
            voided = bool(_VOIDED.search(f"{refused.message} {refused.code or ''}"))
            if grant is None:
                # Not listed, and Metronome will not void it: voided before (say, a crash
                # between voiding and recording it), or no such grant.
                raise bc.NotFoundError(
                    f"credit grant {grant_id!r} is already voided: nothing changed (Metronome "
                    "keeps no readable record of voided grants)" if voided else
                    f"no credit grant {grant_id!r}: not listed (voided already, or never "
                    "existed) and Metronome will not void it",
                    provider=self.name, status=refused.status, body=refused.body,
                    request_id=refused.request_id,
                    code=ALREADY_VOIDED if voided else "not_listed") from None
            if not voided:
                if isinstance(refused, bc.BadRequestError):
                    raise
                again, _ = yield from self._item(grant_id)
                if again is not None:
                    raise
        if grant is None:  # voided although not listed just before
            raise bc.NotFoundError(
                f"credit grant {grant_id!r} was not listed, yet Metronome voided it",
                provider=self.name, code=ALREADY_VOIDED)
        return grant.model_copy(update={
            "status": bc.GrantStatus.VOIDED, "balance": grant.amount.with_amount(Decimal(0))})

    def _expire(self, grant_id: str) -> bc.Flow[bc.CreditGrant]:
        grant = yield from self._get(grant_id)
        now, end, why = self._end_now(grant.effective_at)
        if grant.status is bc.GrantStatus.EXPIRED or (
                grant.expires_at is not None and grant.expires_at <= end):
            return grant  # already in the wanted state: already retired
        if grant.status is bc.GrantStatus.SCHEDULED:
            raise bc.ConflictError("the grant is not effective yet and cannot expire before it "
                                   "starts; void it instead", provider=self.name)
        yield self._http.call(EDIT_GRANT, {"id": grant_id, "expires_at": tr.format_time(end)},
                              label="editGrant")
        read = yield from self._get(grant_id)
        return read.model_copy(update={"adjustments": self._expire_adjustment(now, end, why)})


    # -- balances, ledger, updates (issue 11: see _ledger) ---------------------------------

    def _balance(self, customer_id: str, unit: str | None,
                 at: datetime | None) -> bc.Flow[list[bc.Balance]]:
        return ledger.plans_balance_flow(self, customer_id, unit, at)

    def _ledger_page(self, customer_id: str, grant_id: str | None, since: datetime | None,
                     cursor: str | None) -> bc.Flow[bc.LedgerPage]:
        return ledger.plans_ledger_flow(self, customer_id, grant_id, since, cursor)

    def _update(self, grant_id: str, update: bc.GrantUpdate) -> bc.Flow[bc.CreditGrant]:
        return ledger.plans_update_flow(self, grant_id, update)


class MetronomeCreditsProvider(_MetronomeProvider):
    """Metronome contract customer credits: /v1/contracts/customerCredits/*.

    Needs ``product_id``: the Metronome product the credit is booked under (required by
    Metronome; not what the credit applies to, which is the scope). Grant ids are
    ``<customer_id>:<credit_id>``, because every customer-credit endpoint needs both.

    ``create_grant`` sends ``customerCredits/create`` (which answers only an id) and reads the
    credit back with ``customerCredits/list`` filtered by ``credit_id``: the grant returned is
    Metronome's. A 409 is answered by finding the customer's credit with that uniqueness key.
    Multi-segment access schedules map to ``schedule``. ``expire_grant`` uses
    ``updateEndDate`` (which can only shorten). Void is not offered: SDK 4.12 has no archive
    endpoint, and ``/v2/contracts/credits/archive`` cannot release the uniqueness key nor be
    checked against the SDK's types; expire the credit instead.
    """

    name = "metronome"
    capabilities = _capabilities(
        scope=frozenset({"product_ids", "product_tags", "contract_ids", "specifiers"}),
        max_segments=None,
        operations=bc.ALL_OPERATIONS - {"void", "consume"},
        in_metadata=frozenset({"paid_amount", "category", "category_label"}),
        updatable=ledger.CREDITS_UPDATABLE,
        balance_as_of="any",
        notes=(
            "customer credits have no paid amount or category: they travel in custom fields "
            "bc_paid_*, bc_category, bc_category_label",
            "reason ↔ description (not shown to end customers)",
            "listing needs a customer: customerCredits/list is per customer",
            "balance: Metronome's usable-now balance (include_balance)",
            "void is not supported; archived credits are not listed",
            "get_balance and ledger: /v1/contracts/customerBalances/list (customer-level "
            "credits, with ledgers); a balance at another moment is summed from the ledgers",
            "update: expires_at through updateEndDate, which can only shorten",
        ),
    )
    consumption_order = ledger.CREDITS_ORDER
    remaining_source = ("customerCredits/list include_balance: balance (usable now) plus the "
                        "amounts of segments not started yet")
    settings = (
        *_COMMON_SETTINGS,
        bc.Setting("product_id", "Metronome product the credit itself is booked under "
                   "(required by Metronome to create; not to list)", env="METRONOME_CREDIT_PRODUCT_ID"),
    )

    def __init__(self, *, product_id: str | None = None, **settings: Any) -> None:
        # Only creating needs product_id (refused then, before any request); listing does not.
        super().__init__(product_id=product_id or _env("METRONOME_CREDIT_PRODUCT_ID"), **settings)

    entity = "contract_credit"
    own_keys = frozenset({tr.PAID_AMOUNT, tr.PAID_UNIT, tr.PAID_UNIT_NAME, tr.CATEGORY,
                          tr.CATEGORY_LABEL, tr.PRIORITY_DEFAULT})

    def _problems(self, grant: bc.CreditGrant) -> list[bc.FieldProblem]:
        return tr.credits_problems(grant, self._config, self._now())

    def _read(self, item: Mapping[str, Any], customer_id: str) -> bc.CreditGrant:
        return tr.credit_from_item(item, customer_id, self._config, self._now(),
                                   provider=self.name)

    def preview(self, grant: bc.CreditGrant) -> list[bc.Adjustment]:
        return list(tr.credit_create_payload(grant, "preview", self._config, self._now())[1])

    def _create(self, grant: bc.CreditGrant, idempotency_key: str) -> bc.Flow[bc.CreditGrant]:
        payload, adjustments = tr.credit_create_payload(
            grant, idempotency_key, self._config, self._now())
        customer = grant.customer_id
        try:
            created = yield self._http.call(CREATE_CREDIT, payload, label="customerCredits/create")
        except bc.BadRequestError as refused:
            error = yield from self._key_refusal(refused, payload)
            raise error from None
        except bc.ConflictError as conflict:
            item = yield from self._find_item_by_key(customer, idempotency_key)
            if item is None:
                raise self._conflict(
                    idempotency_key, "by a commit or credit that is not listed for this "
                    "customer (archived, contract-level, or another customer's)",
                    conflict) from conflict
            try:
                differs = [] if _took_over_key(item, idempotency_key) else self._differences(
                    payload, item, start_defaulted=grant.effective_at is None
                    and grant.schedule is None)
            except Exception:  # hostile stored item: not provably the same credit
                differs = ["(unreadable stored fields)"]
            if differs:
                raise self._conflict(
                    idempotency_key, f"by credit {item.get('id')} with different "
                    f"{', '.join(differs)}", conflict) from conflict
            stored: Mapping[str, Any] = item
            found = self._read_one(lambda: self._read(stored, customer), stored,
                                   Reply(stored, conflict.request_id))
            return found.model_copy(update={"adjustments": adjustments, "replayed": True})
        credit = created_id(self.name, "customerCredits/create", created)
        item, reply = yield from self._item(customer, credit)
        if item is None:
            raise bc.ProviderError(
                f"created customer credit {credit} but could not read it back; creating again "
                "with the same idempotency_key returns it", provider=self.name,
                request_id=reply.request_id)
        return self._read_one(lambda: self._read(item, customer), item, reply).model_copy(
            update={"adjustments": adjustments, "replayed": False})

    @staticmethod
    def _differences(payload: Mapping[str, Any], item: Mapping[str, Any], *,
                     start_defaulted: bool) -> list[str]:
        """Which fields of the stored credit differ from this create.

        Segment ends are not compared (``updateEndDate`` shortens them later), nor a start
        the library chose.
        """
        found = []
        if payload["product_id"] != (item.get("product") or {}).get("id"):
            found.append("product_id")
        if not _same_number(payload["priority"], item.get("priority", "NaN")):
            found.append("priority")
        schedule = item.get("access_schedule") or {}
        stored_type = (schedule.get("credit_type") or {}).get("id", tr.USD_CENTS)
        if payload["access_schedule"]["credit_type_id"] != stored_type:
            found.append("credit_type")
        sent_items = payload["access_schedule"]["schedule_items"]
        stored_items = schedule.get("schedule_items") or []
        if len(stored_items) > len(sent_items) or not stored_items:
            found.append("access_schedule")
        else:
            for i, (sent, stored) in enumerate(zip(sent_items, stored_items, strict=False)):
                if not _same_number(sent["amount"], stored["amount"]) or (
                        not (start_defaulted and i == 0)
                        and not _same_time(sent["starting_at"], stored["starting_at"])):
                    found.append("access_schedule")
                    break
        found.extend(key for key in ("name", "description") if payload.get(key) != item.get(key))
        found.extend(
            key for key in ("applicable_product_ids", "applicable_product_tags",
                            "applicable_contract_ids")
            if list(payload.get(key) or ()) != list(item.get(key) or ()))
        sent_specs = [dict(s) for s in payload.get("specifiers") or ()]
        stored_specs = [{k: v for k, v in dict(s).items() if v not in (None, [], {})}
                        for s in item.get("specifiers") or ()]
        if sent_specs != stored_specs:
            found.append("specifiers")
        if dict(payload.get("custom_fields") or {}) != dict(item.get("custom_fields") or {}):
            found.append("custom_fields")
        return found

    def _list_body(self, customer_id: str, **extra: Any) -> dict[str, Any]:
        return {"customer_id": customer_id, "include_balance": True, **extra}

    def _customer_page(self, customer_id: str, cursor: str | None) -> bc.Call[Reply]:
        body = self._list_body(customer_id, limit=CREDITS_PAGE_MAX)
        if cursor:
            body["next_page"] = cursor  # customerCredits/list takes its cursor in the body
        return self._http.call(LIST_CREDITS, body, label="customerCredits/list")

    def _item(self, customer_id: str, credit: str
              ) -> bc.Flow[tuple[Mapping[str, Any] | None, Reply]]:
        reply = yield self._http.call(
            LIST_CREDITS, self._list_body(customer_id, credit_id=credit),
            label="customerCredits/list")
        items, _ = page_of(self.name, "customerCredits/list", reply)
        for item in items:
            if isinstance(item, Mapping) and item.get("id") == credit:
                return item, reply
        return None, reply

    def _split(self, grant_id: str) -> tuple[str, str]:
        parts = tr.split_credit_id(grant_id)
        if parts is None:
            raise bc.NotFoundError(
                f"{grant_id!r} is not a metronome credit id; they look like "
                "'<customer_id>:<credit_id>'", provider=self.name)
        return parts

    def _list_page(self, query: bc.ListQuery, cursor: str | None) -> bc.Flow[bc.Page]:
        if not query.customer_id:
            raise bc.UnsupportedOperationError(
                self.name, "list", "Metronome lists customer credits per customer: pass "
                "customer_id")
        limit = max(1, min(query.page_size or CREDITS_PAGE_MAX, CREDITS_PAGE_MAX))
        body = self._list_body(query.customer_id, limit=limit)
        if cursor:
            body["next_page"] = cursor
        reply = yield self._http.call(LIST_CREDITS, body, label="customerCredits/list")
        items, next_page = page_of(self.name, "customerCredits/list", reply)
        customer = query.customer_id
        grants, unreadable = bc.read_items(self.name, items, lambda i: self._read(i, customer),
                                           _vendor_id)
        return bc.Page(grants, next_page, unreadable, request_id=reply.request_id)

    def _get(self, grant_id: str) -> bc.Flow[bc.CreditGrant]:
        customer, credit = self._split(grant_id)
        item, reply = yield from self._item(customer, credit)
        if item is None:
            raise bc.NotFoundError(f"no customer credit {grant_id!r} (archived credits are "
                                   "not listed)", provider=self.name, request_id=reply.request_id)
        return self._read_one(lambda: self._read(item, customer), item, reply)

    def _expire(self, grant_id: str) -> bc.Flow[bc.CreditGrant]:
        customer, credit = self._split(grant_id)
        grant = yield from self._get(grant_id)
        now, end, why = self._end_now(grant.effective_at)
        current_end = grant.segments[-1].ends_before
        if grant.status is bc.GrantStatus.EXPIRED or (
                current_end is not None and current_end <= end):
            return grant  # already in the wanted state: already retired
        if grant.status is bc.GrantStatus.SCHEDULED:
            raise bc.ConflictError("the credit is not effective yet and cannot expire before "
                                   "it starts", provider=self.name)
        yield self._http.call(UPDATE_END_DATE, {
            "customer_id": customer, "credit_id": credit,
            "access_ending_before": tr.format_time(end)}, label="customerCredits/updateEndDate")
        read = yield from self._get(grant_id)
        return read.model_copy(update={"adjustments": self._expire_adjustment(now, end, why)})

    # -- balances, ledger, updates (issue 11: see _ledger) ---------------------------------

    def _balance(self, customer_id: str, unit: str | None,
                 at: datetime | None) -> bc.Flow[list[bc.Balance]]:
        return ledger.credits_balance_flow(self, customer_id, unit, at)

    def _ledger_page(self, customer_id: str, grant_id: str | None, since: datetime | None,
                     cursor: str | None) -> bc.Flow[bc.LedgerPage]:
        return ledger.credits_ledger_flow(self, customer_id, grant_id, since, cursor)

    def _update(self, grant_id: str, update: bc.GrantUpdate) -> bc.Flow[bc.CreditGrant]:
        return ledger.credits_update_flow(self, grant_id, update)
