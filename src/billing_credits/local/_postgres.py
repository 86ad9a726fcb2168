"""The local ledger on PostgreSQL: the schema-3 design (``_store``) through a psycopg 3
connection pool, ``NUMERIC`` amounts, ``TIMESTAMPTZ`` times, row locks, the server's clock."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import billing_credits as bc

from ._store import (
    Dialect,
    GrantStore,
    T,
    Tx,
    Unavailable,
    _refuse_newer,
    _steps,
    moment,
    schema,
    text_time,
)


class PostgresDialect(Dialect):
    name = "postgresql"
    batch_sequence = False  # a sequence is shared with concurrent writers: numbers come from it
    amount_type = "NUMERIC"
    time_type = "TIMESTAMPTZ"
    serial = "BIGSERIAL PRIMARY KEY"
    for_update = " FOR UPDATE"
    without_rowid = ""

    def sql(self, text: str) -> str:
        return text.replace("?", "%s")

    def amount_in(self, value: Decimal | None) -> Any:
        return value

    def amount_out(self, value: Any) -> Decimal:
        return value if isinstance(value, Decimal) else Decimal(value)

    def time_in(self, value: datetime | None) -> Any:
        return value

    def time_out(self, value: Any) -> datetime:
        return value.astimezone(UTC) if isinstance(value, datetime) else moment(value)

    def stored_time(self, text: str | None) -> Any:
        return None if text is None else moment(text)

    def text_out(self, value: Any) -> str:
        return text_time(value) if isinstance(value, datetime) else str(value)  # type: ignore[return-value]

    def positive(self, column: str) -> str:
        return f"{column} > 0"


def _pgpass_password(params: dict[str, Any]) -> str | None:
    """The password libpq would take from the pgpass file for these parameters (to mask it)."""
    path = os.environ.get("PGPASSFILE") or os.path.expanduser("~/.pgpass")
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    wanted = [str(params.get("host") or "localhost"), str(params.get("port") or "5432"),
              str(params.get("dbname") or ""), str(params.get("user") or "")]
    for line in lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields: list[str] = []
        part, escaped = "", False
        for char in line:
            if escaped:
                part, escaped = part + char, False
            elif char == "\\":
                escaped = True
            elif char == ":" and len(fields) < 4:
                fields.append(part)
                part = ""
            else:
                part += char
        fields.append(part)
        if len(fields) == 5 and all(f in ("*", w) for f, w in zip(fields, wanted, strict=False)):
            return fields[4]
    return None


class PostgresStore(GrantStore):
    """A PostgreSQL database through a psycopg 3 connection pool. Concurrency by row locks:
    a consume locks the customer's lots (``SELECT … FOR UPDATE``), an expire, void or update
    the grant's row and lots; idempotency by the UNIQUE reference and key. A transaction that
    loses a deadlock or a unique race is run again (a few times, then a retryable error)."""

    ATTEMPTS = 5

    def __init__(self, url: str, clock: Callable[[], datetime], *, server_clock: bool,
                 upgrade: bool = True, pool_size: int = 10) -> None:
        super().__init__(clock)
        self.dialect = PostgresDialect()
        try:
            import psycopg
            import psycopg_pool
            from psycopg.conninfo import conninfo_to_dict
        except ImportError:  # pragma: no cover - depends on the install
            raise bc.ConfigurationError(
                "a postgresql:// database needs psycopg: pip install 'billing-credits[postgres]'"
            ) from None
        self._psycopg = psycopg
        try:
            params = conninfo_to_dict(url)
        except psycopg.ProgrammingError as error:
            raise bc.ConfigurationError("not a PostgreSQL URL: "
                                        + bc.redact(str(error))) from None
        for secret in (params.get("password"), os.environ.get("PGPASSWORD"),
                       _pgpass_password(params)):
            bc.register_secret(str(secret) if secret else None)
        self.host = str(params.get("host") or os.environ.get("PGHOST") or "localhost")
        self.port = str(params.get("port") or os.environ.get("PGPORT") or "5432")
        self.database = str(params.get("dbname") or os.environ.get("PGDATABASE")
                            or params.get("user") or os.environ.get("PGUSER") or "")
        self.user = str(params.get("user") or os.environ.get("PGUSER") or "")
        self._server_clock = server_clock
        self._conninfo = url
        self._kwargs = {"autocommit": True, "connect_timeout": 5,
                        "options": "-c TimeZone=UTC"}
        if "options" in params:  # the URL's own options (a search_path, say) come first
            self._kwargs["options"] = f"{params['options']} -c TimeZone=UTC"
        self._pool: Any = None
        if not upgrade:  # opened to look (``db upgrade --dry-run``): plain connections
            return
        self._migrate()
        self._pool = psycopg_pool.ConnectionPool(
            url, min_size=1, max_size=pool_size, kwargs=self._kwargs, open=True, timeout=10,
            name="billing-credits")

    def address(self) -> str:
        """Host, port and database: never the user's password."""
        return f"postgresql://{self.host}:{self.port}/{self.database}"

    def where(self) -> str:
        return f"PostgreSQL database {self.database!r} at {self.host}:{self.port}"

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()

    @contextmanager
    def _connection(self) -> Iterator[Any]:
        psycopg = self._psycopg
        try:
            if self._pool is None:
                with psycopg.connect(self._conninfo, **self._kwargs) as conn:
                    yield conn
            else:
                with self._pool.connection() as conn:
                    yield conn
        except (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected):
            raise  # run again by ``transaction``
        except psycopg.OperationalError as error:
            detail = bc.redact(" ".join(str(error).split()))
            refused = getattr(error, "sqlstate", None) in ("28P01", "28000") or \
                "authentication failed" in detail
            raise Unavailable(f"{self.where()} is unavailable: {detail}" if not refused else
                              f"{self.where()} refused the credentials: {detail}",
                              refused=refused) from None
        except Exception as error:
            if type(error).__name__ == "PoolTimeout":
                raise Unavailable(f"{self.where()} is unavailable: no connection within "
                                  "10 s") from None
            raise

    @contextmanager
    def _begin(self, write: bool) -> Iterator[Tx]:
        with self._connection() as conn:
            isolation = None if write else self._psycopg.IsolationLevel.REPEATABLE_READ
            conn.isolation_level = isolation
            with conn.transaction(), conn.cursor() as cursor:
                yield Tx(self, cursor, self._clock_of(cursor))

    def _clock_of(self, cursor: Any) -> Callable[[], datetime]:
        if not self._server_clock:
            return self.clock

        def now() -> datetime:
            found: datetime = cursor.execute("SELECT clock_timestamp()").fetchone()[0]
            return found.astimezone(UTC)
        return now

    def transaction(self, work: Callable[[Tx], T]) -> T:
        errors = self._psycopg.errors
        retry = (errors.SerializationFailure, errors.DeadlockDetected, errors.UniqueViolation)
        for attempt in range(self.ATTEMPTS):
            try:
                with self._begin(True) as tx:
                    return work(tx)
            except retry:
                if attempt == self.ATTEMPTS - 1:
                    raise
                time.sleep(0.005 * (attempt + 1))
        raise AssertionError("unreachable")  # pragma: no cover

    def version(self) -> int:
        with self._connection() as conn:
            return _pg_version(conn)

    def upgrade_steps(self) -> list[str]:
        return _steps(self.version(), {}, self.where())

    def _migrate(self) -> None:
        with self._connection() as conn, conn.transaction(), conn.cursor() as cursor:
            # One process creates the schema; the others wait for it, then find it.
            cursor.execute("SELECT pg_advisory_xact_lock(7261536)")
            version = _pg_version(conn)
            _refuse_newer(version, self.where())
            if version == 0:
                for statement in schema(self.dialect):
                    cursor.execute(statement)


def _pg_version(conn: Any) -> int:
    found = conn.execute("SELECT to_regclass('meta') IS NOT NULL").fetchone()[0]
    if not found:
        return 0
    row = conn.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()
    return int(row[0]) if row else 0
