"""What the two Metronome providers share: settings, transport and the idempotent-create recipe.

The providers themselves live apart:

- ``metronome``: contract-era customer credits (``/v1/contracts/customerCredits/*``), ``_credits``.
- ``metronome-plans``: Plans-era v1 credit grants (``/v1/credits/*``, deprecated by Metronome),
  ``_plans``.

Each operation is one flow (see ``billing_credits.Runtime``), so sync and async share it.
"""

from __future__ import annotations

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
import billing_credits_metronome._translate as tr
from billing_credits import _secrets as bc_secrets

from ._transport import ADD_KEY, DEFAULT_BASE_URL, LIST_KEYS, MetronomeHTTP, Reply, page_of

if TYPE_CHECKING:
    import httpx

__all__ = ["DEFAULT_PRIORITY", "DEFAULT_RATE_LIMIT"]

DEFAULT_RATE_LIMIT = 10.0
"""Requests per second per provider instance. Metronome publishes no limit for these endpoints;
ten a second is a cautious guess that still lists thousands of grants a minute."""
DEFAULT_MAX_RETRIES = 4
DEFAULT_TIMEOUT = 30.0
DEFAULT_PRIORITY = Decimal(100)
DEFAULT_FAR_FUTURE = datetime(2099, 12, 31, tzinfo=UTC)


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
        """Every item of a listing, page after page, with the core's loop guard
        (``bc.ListingGuard``: a cursor seen before, empty pages in a row, items repeated with
        fresh cursors, the ``max_listing_pages`` ceiling, each ``InvalidResponseError``)."""
        found: list[Any] = []
        guard = self.listing_guard(f"Metronome {label}")
        cursor: str | None = None
        while True:
            reply = yield request(cursor)
            items, next_page = page_of(self.name, label, reply)
            found.extend(items)
            next_cursor = guard.page(_ids(items), next_page, request_id=reply.request_id,
                                     items=bool(items))
            if next_cursor is None:
                return found
            cursor = next_cursor

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


def _ids(items: list[Any]) -> list[str | None]:
    """The vendor ids of a page's raw items (None where an item has none)."""
    return [item.get("id") if isinstance(item, Mapping) and isinstance(item.get("id"), str)
            else None for item in items]
