"""The provider contract: what every provider, first- or third-party, implements."""

from __future__ import annotations

import abc
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Self

from ._capabilities import Capabilities, Operation
from ._errors import (
    ConfigurationError,
    FieldProblem,
    InvalidGrantError,
    InvalidResponseError,
    UnreadableGrant,
    UnreadableGrantsError,
    UnsupportedOperationError,
)
from ._runtime import Flow, Runtime

if TYPE_CHECKING:  # the models load when a grant is first prepared, not with the class
    from ._model import Adjustment, CreditGrant

__all__ = ["ListQuery", "OnUnreadable", "Page", "Provider", "Setting", "read_items"]

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
        returns the first grant (or raises ``ConflictError`` if the parameters differ).
        """
        checked, key = self.prepare(grant)
        return self.runtime.run(self._create(checked, key))

    async def acreate_grant(self, grant: CreditGrant | Mapping[str, Any]) -> CreditGrant:
        checked, key = self.prepare(grant)
        return await self.runtime.arun(self._create(checked, key))

    max_empty_pages: ClassVar[int] = 3
    """Consecutive empty pages that still carry a next cursor before a listing gives up."""

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
        return self.runtime.run(self._get(grant_id))

    async def aget_grant(self, grant_id: str) -> CreditGrant:
        self._require("get")
        return await self.runtime.arun(self._get(grant_id))

    def void_grant(self, grant_id: str) -> CreditGrant:
        self._require("void")
        return self.runtime.run(self._void(grant_id))

    async def avoid_grant(self, grant_id: str) -> CreditGrant:
        self._require("void")
        return await self.runtime.arun(self._void(grant_id))

    def expire_grant(self, grant_id: str) -> CreditGrant:
        self._require("expire")
        return self.runtime.run(self._expire(grant_id))

    async def aexpire_grant(self, grant_id: str) -> CreditGrant:
        self._require("expire")
        return await self.runtime.arun(self._expire(grant_id))

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

    def _require(self, operation: Operation) -> None:
        if not self.capabilities.supports(operation):
            raise UnsupportedOperationError(self.name, operation)



class _Walk:
    """The state of one listing: cursors seen, empty pages in a row, unreadable items."""

    def __init__(self, provider: Provider, on_unreadable: OnUnreadable | None) -> None:
        self.provider = provider
        self.on_unreadable = on_unreadable
        self.seen: set[str] = set()
        self.empty = 0
        self.unreadable: list[UnreadableGrant] = []

    def next(self, page: Page) -> str | None:
        """Report the page's unreadable items; the cursor to follow, or None at the end."""
        for entry in page.unreadable:
            if self.on_unreadable is not None:
                self.on_unreadable(entry)
            else:
                self.unreadable.append(entry)
        cursor = page.next_cursor
        if cursor is None:
            return None
        name = self.provider.name
        if cursor in self.seen:
            raise InvalidResponseError(
                f"the listing returned a cursor it had returned before ({cursor[:80]!r}); "
                "stopped so as not to loop", provider=name, request_id=page.request_id)
        self.seen.add(cursor)
        self.empty = 0 if (page.grants or page.unreadable) else self.empty + 1
        if self.empty >= self.provider.max_empty_pages:
            raise InvalidResponseError(
                f"the listing returned {self.empty} empty pages in a row, each with a new "
                "cursor; stopped so as not to loop", provider=name, request_id=page.request_id)
        return cursor

    def finish(self) -> None:
        if self.unreadable:
            raise UnreadableGrantsError(self.provider.name, self.unreadable)
