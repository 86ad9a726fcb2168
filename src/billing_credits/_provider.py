"""The provider contract: what every provider, first- or third-party, implements."""

from __future__ import annotations

import abc
import enum
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, Final, Literal, Self

from ._capabilities import Capabilities, Operation
from ._errors import (
    ConfigurationError,
    ConflictError,
    FieldProblem,
    InvalidGrantError,
    InvalidResponseError,
    NotRepresentableError,
    UnreadableGrant,
    UnreadableGrantsError,
    UnsupportedOperationError,
)
from ._runtime import Flow, Runtime
from .consumption._engine import ConsumptionOrder

if TYPE_CHECKING:  # the models load when first needed, not with the class
    from ._ledger import Balance, GrantUpdate, LedgerEntry, LedgerPage, Usage
    from ._model import Adjustment, Category, CreditGrant
    from ._money import Money

__all__ = ["MAX_LISTING_PAGES", "UNSET", "ListQuery", "ListingGuard", "OnUnreadable", "Page",
           "Provider", "Setting", "read_items"]


class _Unset(enum.Enum):
    UNSET = "UNSET"

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = _Unset.UNSET
"""The default of ``update_grant``'s fields: leave this field as it is (``None`` clears it)."""

OnUnreadable = Callable[[UnreadableGrant], None]
"""Receives each listing item that could not be read; without one, the listing raises
``UnreadableGrantsError`` after yielding every readable grant."""


@dataclass(frozen=True)
class Setting:
    """One provider setting, for ``get_provider(name, **settings)``, the CLI and the docs.

    ``env`` is the environment variable read when the setting is not given; ``secret`` settings
    are never printed.
    """

    name: str
    help: str
    env: str | None = None
    secret: bool = False


@dataclass(frozen=True)
class ListQuery:
    """What to list: one customer's grants (or all), fetched ``page_size`` at a time."""

    customer_id: str | None = None
    page_size: int | None = None

    def __post_init__(self) -> None:
        if self.page_size is not None and (
                not isinstance(self.page_size, int) or isinstance(self.page_size, bool)):
            raise ConfigurationError(f"page_size must be a whole number, not {self.page_size!r}")
        if self.page_size is not None and self.page_size < 1:
            raise ConfigurationError(f"page_size must be at least 1, not {self.page_size}")


@dataclass(frozen=True)
class Page:
    """One page of a listing; ``next_cursor`` is None on the last page.

    ``unreadable`` holds the items of this page that could not be read as grants (see
    ``read_items``); ``request_id`` is the vendor's id for the request, named in errors.
    """

    grants: Sequence[CreditGrant]
    next_cursor: str | None = None
    unreadable: Sequence[UnreadableGrant] = ()
    request_id: str | None = None


MAX_LISTING_PAGES: Final = 100_000
"""The default ceiling of pages one listing may take (``Provider.max_listing_pages``)."""

REPEAT_WINDOW: Final = 16
"""How many recent pages' item ids a listing remembers to notice a vendor paging in a circle
with fresh cursors (memory: ids of at most this many pages)."""


class ListingGuard:
    """What keeps one listing (grants, balances, ledger entries) from running for ever on a
    vendor that pages in a circle, every provider's paging loop goes through it:

    - a cursor the listing returned before ends it;
    - ``max_empty_pages`` empty pages in a row, each with a new cursor, end it;
    - a page holding an item id seen on one of the last ``REPEAT_WINDOW`` pages ends it (fresh
      cursors, same items: a circle no cursor check sees);
    - more than ``max_pages`` pages end it (the ceiling: ``Provider.max_listing_pages``, a
      provider setting where the provider offers it).

    Each ends with ``InvalidResponseError`` naming the provider and the last request id.
    Memory: the cursors (at most ``max_pages``) and the ids of the last ``REPEAT_WINDOW`` pages.
    """

    def __init__(self, provider: str, *, max_pages: int = MAX_LISTING_PAGES,
                 max_empty_pages: int = 3, what: str = "the listing") -> None:
        self.provider = provider
        self.max_pages = max_pages
        self.max_empty_pages = max_empty_pages
        self.what = what
        self.pages = 0
        self.empty = 0
        self.cursors: set[str] = set()
        self.recent: deque[frozenset[str]] = deque(maxlen=REPEAT_WINDOW)

    def _stop(self, problem: str, request_id: str | None) -> InvalidResponseError:
        return InvalidResponseError(f"{self.what} {problem}; stopped so as not to loop",
                                    provider=self.provider, request_id=request_id)

    def page(self, ids: Iterable[str | None], cursor: str | None, *,
             request_id: str | None = None, items: bool | None = None) -> str | None:
        """Check one page (its item ids, its next cursor); the cursor to follow, or None at
        the end. ``items``: whether the page held anything (default: whether it had ids)."""
        self.pages += 1
        if cursor is not None and cursor in self.cursors:
            raise self._stop(f"returned a cursor it had returned before ({cursor[:80]!r})",
                             request_id)
        known = [i for i in ids if isinstance(i, str) and i]
        if items is None:
            items = bool(known)
        page_ids = frozenset(known)
        repeated = sorted(i for i in page_ids if any(i in earlier for earlier in self.recent))
        if repeated or len(page_ids) < len(known):
            again = repeated or sorted(i for i in page_ids if known.count(i) > 1)
            raise self._stop(f"returned item {again[0][:80]!r} again"
                             + (f" (and {len(again) - 1} more)" if len(again) > 1 else "")
                             + ", each page with a new cursor", request_id)
        self.recent.append(page_ids)
        if cursor is None:
            return None
        self.cursors.add(cursor)
        self.empty = 0 if items else self.empty + 1
        if self.empty >= self.max_empty_pages:
            raise self._stop(f"returned {self.empty} empty pages in a row, each with a new "
                             "cursor", request_id)
        if self.pages >= self.max_pages:
            raise self._stop(f"reached its ceiling of {self.max_pages} pages "
                             "(max_listing_pages) with more to come; raise the setting if the "
                             "account really holds more", request_id)
        return cursor


def read_items(
    provider: str,
    items: Iterable[Any],
    read: Callable[[Any], CreditGrant],
    vendor_id: Callable[[Any], str | None],
) -> tuple[list[CreditGrant], list[UnreadableGrant]]:
    """Read each raw listing item with ``read``; one that fails becomes an ``UnreadableGrant``.

    Hostile or edited vendor data may fail in any way, so any exception of one item's reading
    is caught here and reported with the item, never allowed to stop the listing.
    """
    grants: list[CreditGrant] = []
    unreadable: list[UnreadableGrant] = []
    for item in items:
        try:
            grants.append(read(item))
        except Exception as error:
            try:
                found = vendor_id(item)
            except Exception:
                found = None
            problem = " ".join(str(error).split()) or type(error).__name__
            unreadable.append(UnreadableGrant(provider, found if isinstance(found, str) else None,
                                              item, problem))
    return grants, unreadable


class Provider(abc.ABC):
    """Base class of every provider.

    Subclasses set ``name``, ``capabilities`` and ``settings``, and write each operation once,
    as a flow (see ``billing_credits.Runtime``): ``_create``, ``_list_page``, ``_get`` and, when
    the capabilities include them, ``_void`` and ``_expire``. This class provides the public
    sync and async methods on top, and guarantees for every provider that:

    - a grant is validated and checked against ``capabilities`` before any I/O;
    - every create carries an idempotency key, the caller's or one generated per call, and
      the same key on every retry of that call;
    - listings page through everything;
    - calls are rate-limited and retried in one place (``self.runtime``).
    """

    name: ClassVar[str]
    capabilities: Capabilities
    """What this provider can hold. Declared on the class; an instance may narrow or widen it
    from its settings (``self.capabilities = dataclasses.replace(type(self).capabilities, …)``),
    and every check uses the instance's."""
    settings: ClassVar[tuple[Setting, ...]] = ()
    remaining_source: ClassVar[str] = "each grant's balance as listed"
    """Where ``CreditGrant.balance`` (what is left of a grant) comes from on this provider: the
    vendor field or endpoint it documents as authoritative. Migration plans record it."""
    consumption_order: ClassVar[ConsumptionOrder | None] = None
    """The order in which this provider's vendor consumes a customer's grants, as cited data
    (``billing_credits.ConsumptionOrder``); None where it is not declared."""

    find_existing_before_create: bool = True
    """With ``capabilities.idempotency_key_memory`` set, whether a keyed create first looks for
    a grant already carrying the key (``_find_by_key``). Providers expose it as the setting
    ``find_existing``; turn it off only when repeats past the vendor's key memory cannot
    happen (or are reconciled elsewhere, as ``migrate apply`` does)."""

    def __init__(self, *, runtime: Runtime | None = None) -> None:
        self.runtime = runtime or Runtime()

    # -- what a provider implements -------------------------------------------------------

    @abc.abstractmethod
    def _create(self, grant: CreditGrant, idempotency_key: str) -> Flow[CreditGrant]:
        """Create ``grant`` (already checked) under ``idempotency_key``; return it read back."""

    @abc.abstractmethod
    def _list_page(self, query: ListQuery, cursor: str | None) -> Flow[Page]:
        """One page of grants, starting at ``cursor`` (None: the first page)."""

    @abc.abstractmethod
    def _get(self, grant_id: str) -> Flow[CreditGrant]:
        """One grant by id; ``NotFoundError`` when there is none."""

    def _void(self, grant_id: str) -> Flow[CreditGrant]:
        """Void the grant now: its remaining credits are gone. Return it read back."""
        raise UnsupportedOperationError(self.name, "void")

    def _expire(self, grant_id: str) -> Flow[CreditGrant]:
        """End the grant's availability now. Return it read back."""
        raise UnsupportedOperationError(self.name, "expire")

    def _find_by_key(self, customer_id: str, key: str) -> Flow[CreditGrant | None]:
        """The customer's grant carrying idempotency key ``key``, or None (contract C1).

        The default pages through the customer's grants (``_list_page``), guarded like a
        listing against cursors that cycle. Override it when the vendor offers a cheaper
        documented lookup. An item that cannot be read but holds the key as a string of its raw
        payload stops the create (``InvalidResponseError``): it may be the grant, and a
        duplicate is worse than a refusal.
        """
        query = ListQuery(customer_id=customer_id)
        skipped: list[UnreadableGrant] = []
        walk = _Walk(self, skipped.append)
        cursor: str | None = None
        while True:
            page = yield from self._list_page(query, cursor)
            for grant in page.grants:
                if grant.idempotency_key == key:
                    return grant
            cursor = walk.next(page)
            if cursor is None:
                break
        for entry in skipped:
            if _holds_text(entry.raw, key):
                raise InvalidResponseError(
                    f"looking for a grant with idempotency key {key!r} before creating, item "
                    f"{entry.vendor_id or '(no id)'} could not be read ({entry.problem}) and "
                    "may be that grant; not creating another", provider=self.name)
        return None

    def _create_once(self, grant: CreditGrant, key: str, keyed: bool) -> Flow[CreditGrant]:
        """``_create``, preceded by the C1 lookup when the vendor forgets keys (see
        ``Capabilities.idempotency_key_memory``); marks the result ``replayed``."""
        if (keyed and self.capabilities.idempotency_key_memory is not None
                and self.find_existing_before_create):
            found = yield from self._find_by_key(grant.customer_id, key)
            if found is not None:
                return _as_replayed(grant, found, self.name, self.preview(grant))
        return (yield from self._create(grant, key))

    def _balance(
        self, customer_id: str, unit: str | None, at: datetime | None
    ) -> Flow[list[Balance]]:
        """The customer's balances, one per unit (only ``unit`` when given, as
        ``Money.unit_key``), as of ``at`` (None: now; otherwise already checked against
        ``capabilities.balance_as_of``)."""
        raise UnsupportedOperationError(self.name, "balance")

    def _ledger_page(
        self, customer_id: str, grant_id: str | None, since: datetime | None, cursor: str | None
    ) -> Flow[LedgerPage]:
        """One page of the customer's ledger (of one grant, from ``since``), oldest first
        where the vendor allows, starting at ``cursor`` (None: the first page)."""
        raise UnsupportedOperationError(self.name, "ledger")

    def _update(self, grant_id: str, update: GrantUpdate) -> Flow[CreditGrant]:
        """Change the fields set in ``update`` (already checked against
        ``capabilities.updatable_fields``); return the grant read back."""
        raise UnsupportedOperationError(self.name, "update")

    def _consume(self, usage: Usage) -> Flow[list[LedgerEntry]]:
        """Burn ``usage`` down from the customer's grants in ``consumption_order``, once per
        ``usage.reference``; return the consumed entries it wrote (the same ones again when
        the reference was applied before)."""
        raise UnsupportedOperationError(self.name, "consume")

    def now(self) -> datetime:
        """The provider's clock (UTC), for the default time of ``consume``."""
        return datetime.now(UTC)

    def check(self, grant: CreditGrant) -> None:
        """Refuse what this provider cannot hold, before any I/O.

        The default checks the declared ``capabilities``; override to add checks that data
        cannot express, calling ``super().check(grant)`` first.
        """
        self.capabilities.ensure(grant, self.name)

    def preview(self, grant: CreditGrant) -> list[Adjustment]:
        """What this provider would change of ``grant`` when creating it (no I/O).

        A time aligned to the hour, a scope narrowed to what the vendor has: the same
        ``Adjustment`` objects a create reports afterwards, known beforehand so a migration plan
        can list them. The default: none.
        """
        return []

    def identity(self) -> str:
        """Which account or store this instance talks to, without any secret in it.

        Migration journals are tied to it, so one made against a sandbox is never taken for
        one made against production. Override to add the account (a base URL, a database
        path, a digest of the credential).
        """
        return self.name

    def setup(self) -> list[str]:
        """Prepare the vendor account for this provider, idempotently (register what it needs,
        such as metadata keys); return what was done, one line each. The default: nothing.

        Running it again does nothing more; ``billing-credits setup`` runs it from the CLI.
        """
        return []

    def record_only(self) -> Provider:
        """This provider, creating grants that record their ``paid_amount`` without billing it.

        Migration creates through it: credit paid for on the source must never be invoiced
        again. The default returns ``self`` when this instance does not invoice
        (``capabilities.invoices_paid_amount`` is false) and otherwise refuses; a provider
        that invoices overrides it to return a copy that only records the paid amount.
        """
        if not self.capabilities.invoices_paid_amount:
            return self
        raise UnsupportedOperationError(
            self.name, "record_only",
            "this instance invoices the paid amount and offers no record-only copy")

    def retire_effective_at(self, how: Literal["void", "expire"], now: datetime) -> datetime:
        """When voiding or expiring a grant at ``now`` actually stops its credit being spendable.

        The default is ``now``; a provider that aligns the end of a grant (to the hour, say)
        returns the moment its credit really stops, so a migration can say how long source and
        target credit overlap.
        """
        return now

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (connections, files)."""

    async def aclose(self) -> None:
        self.close()

    # -- the public API ---------------------------------------------------------------------

    def prepare(self, grant: CreditGrant | Mapping[str, Any]) -> tuple[CreditGrant, str]:
        """Validate and check a grant for creation; return it with its idempotency key."""
        from ._model import CreditGrant

        self._require("create")
        # Validate again even an instance: model_copy(update=...) and model_construct skip
        # validation, and nothing unvalidated may reach a provider.
        data = grant.model_dump() if isinstance(grant, CreditGrant) else grant
        grant = CreditGrant.model_validate(data)
        if grant.is_read_back():
            raise InvalidGrantError([FieldProblem(
                "id", "this grant was read back from a provider; create grant.as_new() instead"
            )])
        self.check(grant)
        return grant, grant.idempotency_key or f"bc-{uuid.uuid4()}"

    def create_grant(self, grant: CreditGrant | Mapping[str, Any]) -> CreditGrant:
        """Create a grant and return it as stored, with ``id``.

        Creating twice with the same ``idempotency_key`` yields one grant: the second call
        returns the first grant (or raises ``ConflictError`` if the vendor still remembers the
        key and the parameters differ). On a vendor that forgets keys, a keyed create first
        looks for a grant carrying the key and returns it (``ConflictError`` if the parameters
        differ), so a key never yields two grants however late it is repeated. The result's
        ``replayed`` says whether the grant already existed.
        """
        checked, key = self.prepare(grant)
        return self.runtime.run(self._create_once(checked, key, checked.idempotency_key is not None))

    async def acreate_grant(self, grant: CreditGrant | Mapping[str, Any]) -> CreditGrant:
        checked, key = self.prepare(grant)
        return await self.runtime.arun(
            self._create_once(checked, key, checked.idempotency_key is not None))

    max_empty_pages: ClassVar[int] = 3
    """Consecutive empty pages that still carry a next cursor before a listing gives up."""

    max_listing_pages: int = MAX_LISTING_PAGES
    """The most pages one listing (grants, balances, ledger) may take before it ends with
    ``InvalidResponseError``: a ceiling against a vendor that pages for ever. Providers offer
    it as the ``max_listing_pages`` setting (``ListingGuard``)."""

    def listing_guard(self, what: str = "the listing") -> ListingGuard:
        """A fresh ``ListingGuard`` with this provider's limits, for one paging loop."""
        return ListingGuard(self.name, max_pages=self.max_listing_pages,
                            max_empty_pages=self.max_empty_pages, what=what)

    def list_grants(
        self,
        customer_id: str | None = None,
        *,
        page_size: int | None = None,
        on_unreadable: OnUnreadable | None = None,
    ) -> Iterator[CreditGrant]:
        """Every grant (of one customer, or all), fetching page after page lazily.

        An item that cannot be read never stops the listing: it goes to ``on_unreadable``, or,
        without one, every such item is raised at the end as ``UnreadableGrantsError``. A
        cursor seen before, or a run of empty pages, ends it with ``InvalidResponseError``.
        """
        self._require("list")
        _ident("customer_id", customer_id, optional=True)
        query = ListQuery(customer_id=customer_id, page_size=page_size)
        walk = _Walk(self, on_unreadable)
        cursor: str | None = None
        while True:
            page = self.runtime.run(self._list_page(query, cursor))
            yield from page.grants
            cursor = walk.next(page)
            if cursor is None:
                walk.finish()
                return

    async def alist_grants(
        self,
        customer_id: str | None = None,
        *,
        page_size: int | None = None,
        on_unreadable: OnUnreadable | None = None,
    ) -> AsyncIterator[CreditGrant]:
        self._require("list")
        _ident("customer_id", customer_id, optional=True)
        query = ListQuery(customer_id=customer_id, page_size=page_size)
        walk = _Walk(self, on_unreadable)
        cursor: str | None = None
        while True:
            page = await self.runtime.arun(self._list_page(query, cursor))
            for grant in page.grants:
                yield grant
            cursor = walk.next(page)
            if cursor is None:
                walk.finish()
                return

    def get_grant(self, grant_id: str) -> CreditGrant:
        self._require("get")
        _ident("grant_id", grant_id)
        return self.runtime.run(self._get(grant_id))

    async def aget_grant(self, grant_id: str) -> CreditGrant:
        self._require("get")
        _ident("grant_id", grant_id)
        return await self.runtime.arun(self._get(grant_id))

    def void_grant(self, grant_id: str) -> CreditGrant:
        self._require("void")
        _ident("grant_id", grant_id)
        return self.runtime.run(self._void(grant_id))

    async def avoid_grant(self, grant_id: str) -> CreditGrant:
        self._require("void")
        _ident("grant_id", grant_id)
        return await self.runtime.arun(self._void(grant_id))

    def expire_grant(self, grant_id: str) -> CreditGrant:
        self._require("expire")
        _ident("grant_id", grant_id)
        return self.runtime.run(self._expire(grant_id))

    async def aexpire_grant(self, grant_id: str) -> CreditGrant:
        self._require("expire")
        _ident("grant_id", grant_id)
        return await self.runtime.arun(self._expire(grant_id))

    # -- balances, ledger, updates, consumption ------------------------------------------

    def _balance_args(self, at: datetime | None) -> datetime | None:
        self._require_flow("balance")
        if at is None:
            return None
        at = _moment("at", at)
        if self.capabilities.balance_as_of != "any":
            raise NotRepresentableError(self.name, [FieldProblem(
                "at", "this provider answers balances as of now only")])
        return at

    def get_balance(
        self, customer_id: str, *, unit: str | None = None, at: datetime | None = None
    ) -> list[Balance]:
        """The customer's balances, one per unit (``unit``: only that one, as
        ``Money.unit_key``: ``USD``, ``unit:<id>``), as of ``at`` (default now).

        ``at`` other than None needs ``capabilities.balance_as_of == "any"``; otherwise it is
        refused with ``NotRepresentableError`` before any request.
        """
        _ident("customer_id", customer_id)
        _ident("unit", unit, optional=True)
        moment = self._balance_args(at)
        return self.runtime.run(self._balance(customer_id, unit, moment))

    async def aget_balance(
        self, customer_id: str, *, unit: str | None = None, at: datetime | None = None
    ) -> list[Balance]:
        _ident("customer_id", customer_id)
        _ident("unit", unit, optional=True)
        moment = self._balance_args(at)
        return await self.runtime.arun(self._balance(customer_id, unit, moment))

    def list_ledger(
        self, customer_id: str, *, grant_id: str | None = None, since: datetime | None = None
    ) -> Iterator[LedgerEntry]:
        """Every ledger entry of the customer (of one grant; from ``since``), fetching page
        after page lazily. A cursor seen before, or a run of empty pages, ends it with
        ``InvalidResponseError``."""
        self._require_flow("ledger")
        _ident("customer_id", customer_id)
        _ident("grant_id", grant_id, optional=True)
        since = None if since is None else _moment("since", since)
        walk = _Walk(self, None)
        cursor: str | None = None
        while True:
            page = self.runtime.run(self._ledger_page(customer_id, grant_id, since, cursor))
            yield from page.entries
            cursor = walk.next(page)
            if cursor is None:
                walk.finish()
                return

    async def alist_ledger(
        self, customer_id: str, *, grant_id: str | None = None, since: datetime | None = None
    ) -> AsyncIterator[LedgerEntry]:
        self._require_flow("ledger")
        _ident("customer_id", customer_id)
        _ident("grant_id", grant_id, optional=True)
        since = None if since is None else _moment("since", since)
        walk = _Walk(self, None)
        cursor: str | None = None
        while True:
            page = await self.runtime.arun(
                self._ledger_page(customer_id, grant_id, since, cursor))
            for entry in page.entries:
                yield entry
            cursor = walk.next(page)
            if cursor is None:
                walk.finish()
                return

    def prepare_update(
        self,
        *,
        expires_at: datetime | _Unset | None = UNSET,
        name: str | _Unset | None = UNSET,
        metadata: Mapping[str, str] | _Unset | None = UNSET,
        category: Category | str | _Unset | None = UNSET,
        category_label: str | _Unset | None = UNSET,
    ) -> GrantUpdate:
        """Validate an update and check it against ``capabilities`` (no I/O)."""
        from ._ledger import GrantUpdate

        self._require_flow("update")
        given: dict[str, Any] = {
            key: (dict(value) if isinstance(value, Mapping) else value)
            for key, value in (("expires_at", expires_at), ("name", name), ("metadata", metadata),
                               ("category", category), ("category_label", category_label))
            if value is not UNSET
        }
        if not given:
            raise InvalidGrantError([FieldProblem("", "nothing to update: give expires_at, "
                                                  "name, metadata or category")], model="GrantUpdate")
        update = GrantUpdate(**given)
        caps = self.capabilities
        problems = [FieldProblem(field, "this provider cannot change it after creation")
                    for field in sorted(update.model_fields_set - caps.updatable_fields)]
        if update.name is not None and caps.name_max_length is not None \
                and len(update.name) > caps.name_max_length:
            problems.append(FieldProblem(
                "name", f"{len(update.name)} characters; at most {caps.name_max_length} fit"))
        if update.metadata is not None:
            reserved = len(caps.fields_in_metadata)
            problems += caps.metadata.problems(update.metadata, reserved=reserved)
        if update.expires_at is not None:
            step = caps.time_resolution
            if (update.expires_at - _EPOCH) % step:
                problems.append(FieldProblem(
                    "expires_at", f"{update.expires_at.isoformat()} is finer than this "
                    f"provider's {step.total_seconds():g} s resolution"))
        elif "expires_at" in update.model_fields_set and caps.expiry_required:
            problems.append(FieldProblem("expires_at", "this provider needs an end date"))
        if problems:
            raise NotRepresentableError(self.name, problems)
        return update

    def update_grant(
        self,
        grant_id: str,
        *,
        expires_at: datetime | _Unset | None = UNSET,
        name: str | _Unset | None = UNSET,
        metadata: Mapping[str, str] | _Unset | None = UNSET,
        category: Category | str | _Unset | None = UNSET,
        category_label: str | _Unset | None = UNSET,
    ) -> CreditGrant:
        """Change what the vendor lets change on an existing grant; return it read back.

        Only the fields given are sent (``expires_at=None``: never expire). A field outside
        ``capabilities.updatable_fields`` is refused with ``NotRepresentableError`` before any
        request. ``metadata`` replaces the grant's metadata.
        """
        _ident("grant_id", grant_id)
        update = self.prepare_update(expires_at=expires_at, name=name, metadata=metadata,
                                     category=category, category_label=category_label)
        return self.runtime.run(self._update(grant_id, update))

    async def aupdate_grant(
        self,
        grant_id: str,
        *,
        expires_at: datetime | _Unset | None = UNSET,
        name: str | _Unset | None = UNSET,
        metadata: Mapping[str, str] | _Unset | None = UNSET,
        category: Category | str | _Unset | None = UNSET,
        category_label: str | _Unset | None = UNSET,
    ) -> CreditGrant:
        _ident("grant_id", grant_id)
        update = self.prepare_update(expires_at=expires_at, name=name, metadata=metadata,
                                     category=category, category_label=category_label)
        return await self.runtime.arun(self._update(grant_id, update))

    def prepare_usage(
        self, customer_id: str, amount: Money, *, at: datetime | None, reference: str,
        product_id: str | None = None,
    ) -> Usage:
        """Validate usage for ``consume`` (no I/O)."""
        from ._ledger import Usage
        from ._money import Money

        self._require_flow("consume")
        data = amount.model_dump() if isinstance(amount, Money) else amount
        return Usage(customer_id=customer_id, amount=data,
                     at=self.now() if at is None else at,
                     reference=reference, product_id=product_id)

    def consume(
        self, customer_id: str, amount: Money, *, at: datetime | None = None, reference: str,
        product_id: str | None = None,
    ) -> list[LedgerEntry]:
        """Pay ``amount`` of usage at ``at`` (default now) with the customer's credit, in
        ``consumption_order``; return the consumed ledger entries.

        Idempotent by ``reference``: applying one reference again changes nothing and returns
        the entries of the first time (``ConflictError`` if the usage differs). Usage the
        credit cannot cover entirely is refused whole (``ConflictError``), never part-paid.
        """
        usage = self.prepare_usage(customer_id, amount, at=at, reference=reference,
                                   product_id=product_id)
        return self.runtime.run(self._consume(usage))

    async def aconsume(
        self, customer_id: str, amount: Money, *, at: datetime | None = None, reference: str,
        product_id: str | None = None,
    ) -> list[LedgerEntry]:
        usage = self.prepare_usage(customer_id, amount, at=at, reference=reference,
                                   product_id=product_id)
        return await self.runtime.arun(self._consume(usage))

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    def supports(self, operation: Operation) -> bool:
        """Whether this instance can do ``operation``: its capabilities declare it and, for the
        balance / ledger / update / consume operations, its class implements the flow."""
        if not self.capabilities.supports(operation):
            return False
        flow = _FLOWS.get(operation)
        return flow is None or getattr(type(self), flow) is not getattr(Provider, flow)

    def _require(self, operation: Operation) -> None:
        if not self.capabilities.supports(operation):
            raise UnsupportedOperationError(self.name, operation)

    def _require_flow(self, operation: Operation) -> None:
        self._require(operation)
        if not self.supports(operation):
            raise UnsupportedOperationError(self.name, operation, "not implemented yet")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FLOWS: dict[str, str] = {
    "balance": "_balance", "ledger": "_ledger_page", "update": "_update", "consume": "_consume"}


def _moment(name: str, value: datetime) -> datetime:
    if not isinstance(value, datetime):
        raise InvalidGrantError([FieldProblem(name, "must be a datetime")], model="query")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidGrantError([FieldProblem(
            name, "naive datetime refused: give a timezone (for example +00:00 or Z)")],
            model="query")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise InvalidGrantError([FieldProblem(
            name, f"{value.isoformat()} is outside the calendar once in UTC")],
            model="query") from None


def _ident(name: str, value: object, *, optional: bool = False) -> None:
    """Refuse, before any I/O, an id argument that is not text or that UTF-8 cannot encode (a
    lone surrogate): no database or vendor request could carry it."""
    from ._base import _unencodable

    if value is None and optional:
        return
    if not isinstance(value, str):
        raise InvalidGrantError([FieldProblem(
            name, f"must be a string, not {type(value).__name__}")], model="query")
    problems: list[FieldProblem] = []
    _unencodable(value, name, problems)
    if problems:
        raise InvalidGrantError(problems, model="query")


def _as_replayed(requested: CreditGrant, found: CreditGrant, provider: str,
                 changes: list[Adjustment]) -> CreditGrant:
    """An existing grant returned for a keyed create, marked ``replayed``.

    As a vendor that still remembers the key would, a request whose parameters differ from the
    grant found is refused with ``ConflictError`` (never taken as success, never a second
    grant), except for a migrated grant that took over the key; fields the provider says it
    changes on every create (``preview``: a time aligned to the hour, a scope narrowed) are not
    counted as differences.
    """
    if found.took_over_key(requested.idempotency_key):
        # A migrated grant holding the application's key: it is the application's grant moved
        # here (its amount may be what was left), so the application's repeat finds it.
        return found.model_copy(update={"replayed": True})
    asked = requested.as_new().comparable()
    got = found.as_new().comparable()
    changed_by_provider = {a.field.split(".")[0] for a in changes}
    differing = [name for name in sorted(asked)
                 if asked[name] != got.get(name) and name not in changed_by_provider]
    if differing:
        raise ConflictError(
            f"idempotency key {requested.idempotency_key!r} is already used by grant "
            f"{found.id} with other parameters ({', '.join(differing)}); not creating another",
            provider=provider, code="idempotency_error", retryable=False)
    return found.model_copy(update={"replayed": True})


def _holds_text(value: Any, text: str, depth: int = 0) -> bool:
    """Whether ``text`` is one of the strings anywhere inside ``value`` (a raw vendor item)."""
    if isinstance(value, str):
        return value == text
    if depth > 20:
        return False
    if isinstance(value, Mapping):
        return any(_holds_text(v, text, depth + 1) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_holds_text(v, text, depth + 1) for v in value)
    return False


class _Walk:
    """The state of one listing (grants or ledger entries): its ``ListingGuard`` and the
    unreadable items."""

    def __init__(self, provider: Provider, on_unreadable: OnUnreadable | None) -> None:
        self.provider = provider
        self.on_unreadable = on_unreadable
        self.guard = provider.listing_guard()
        self.unreadable: list[UnreadableGrant] = []

    def next(self, page: Page | LedgerPage) -> str | None:
        """Report the page's unreadable items; the cursor to follow, or None at the end."""
        ids: list[str | None]
        if isinstance(page, Page):
            items: bool = bool(page.grants or page.unreadable)
            unreadable: Sequence[UnreadableGrant] = page.unreadable
            ids = [g.id for g in page.grants] + [u.vendor_id for u in page.unreadable]
        else:  # a LedgerPage
            items = bool(page.entries)
            unreadable = ()
            ids = [e.vendor_id for e in page.entries]
        for entry in unreadable:
            if self.on_unreadable is not None:
                self.on_unreadable(entry)
            else:
                self.unreadable.append(entry)
        return self.guard.page(ids, page.next_cursor, request_id=page.request_id, items=items)

    def finish(self) -> None:
        if self.unreadable:
            raise UnreadableGrantsError(self.provider.name, self.unreadable)
