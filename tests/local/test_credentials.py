"""A PostgreSQL password never leaves the library (issue 16, point 4): not in an error, a log
line, a repr, ``providers`` output, a plan, a journal or ``identity()``.

The connection errors are provoked with known passwords against loopback: a closed port (the
server away), and, where a server runs, a wrong password, ``PGPASSWORD`` and a pgpass file.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

import billing_credits as bc
from billing_credits._secrets import MASK
from billing_credits.local import LocalProvider

from .conftest import require_postgres

SECRET = "Sup3r-Secret-pw-4711"


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port  # closed again: nothing listens there


def assert_masked(*texts: str, secret: str = SECRET) -> None:
    for text in texts:
        assert secret not in text, text
        assert secret[:-1] not in text, text


def test_the_server_away_is_a_retryable_error_without_the_password(
        caplog: pytest.LogCaptureFixture) -> None:
    url = f"postgresql://billing:{SECRET}@127.0.0.1:{closed_port()}/ledger"
    caplog.set_level(logging.DEBUG)
    with pytest.raises(bc.UnavailableError) as caught:
        bc.get_provider("local", url=url)
    error = caught.value
    assert error.retryable
    assert error.code == "database_unavailable"
    assert "PostgreSQL database 'ledger' at 127.0.0.1:" in str(error)
    assert_masked(str(error), repr(error), caplog.text)
    assert error.__cause__ is None  # nothing chained holds the driver's connection
    assert error.__context__ is None
    assert bc.redact(f"echo {SECRET}") == f"echo {MASK}"  # registered with the redaction


def test_an_url_given_through_the_environment_is_masked_too(monkeypatch: pytest.MonkeyPatch,
                                                            tmp_path: Path) -> None:
    secret = "EnvSecret-0042-pw"
    monkeypatch.setenv("BILLING_CREDITS_DB",
                       f"postgresql://billing:{secret}@127.0.0.1:{closed_port()}/ledger")
    with pytest.raises(bc.UnavailableError) as caught:
        bc.get_provider("local")
    assert_masked(str(caught.value), secret=secret)
    # The CLI: the error line, and ``providers`` (it names settings, never their values).
    env = {**os.environ, "BILLING_CREDITS_DB": os.environ["BILLING_CREDITS_DB"]}
    for args in (["balance", "alice"], ["providers", "local"], ["providers", "--json"]):
        done = subprocess.run([sys.executable, "-m", "billing_credits", *args], env=env,
                              capture_output=True, text=True, timeout=120, check=False)
        assert_masked(done.stdout, done.stderr, secret=secret)
    done = subprocess.run(
        [sys.executable, "-m", "billing_credits", "balance", "alice", "-s",
         f"url=postgresql://billing:{secret}@127.0.0.1:{closed_port()}/ledger"],
        env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode != 0
    assert "unavailable" in done.stderr
    assert_masked(done.stdout, done.stderr, secret=secret)


def test_a_pgpass_password_is_registered_for_masking(monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    secret = "PgPass-Secret-9931"
    port = closed_port()
    pgpass = tmp_path / "pgpass"
    pgpass.write_text(f"# comment\n127.0.0.1:{port}:ledger:billing:{secret}\n")
    pgpass.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(pgpass))
    with pytest.raises(bc.UnavailableError) as caught:
        bc.get_provider("local", url=f"postgresql://billing@127.0.0.1:{port}/ledger")
    assert_masked(str(caught.value), secret=secret)
    assert bc.redact(secret) == MASK


def test_a_wrong_password_and_pgpassword_against_a_real_server(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(require_postgres())
    host, port, db = params.get("host", "127.0.0.1"), params.get("port", "5432"), params["dbname"]
    user = params.get("user", "postgres")
    caplog.set_level(logging.DEBUG)
    with pytest.raises(bc.AuthenticationError) as caught:
        bc.get_provider("local", url=f"postgresql://{user}:{SECRET}@{host}:{port}/{db}")
    assert not caught.value.retryable
    assert_masked(str(caught.value), repr(caught.value), caplog.text)
    other = "PgPassword-Env-5521"
    monkeypatch.setenv("PGPASSWORD", other)
    with pytest.raises(bc.AuthenticationError) as caught:
        bc.get_provider("local", url=f"postgresql://{user}@{host}:{port}/{db}")
    assert_masked(str(caught.value), caplog.text, secret=other)
    assert bc.redact(other) == MASK


def test_identity_repr_plan_and_journal_name_the_database_never_the_password(
        pg_url: str, tmp_path: Path) -> None:
    from psycopg.conninfo import conninfo_to_dict

    password = str(conninfo_to_dict(pg_url).get("password") or "")
    if len(password) < 4:
        pytest.skip("the test server's URL has no password to look for")
    with LocalProvider(tmp_path / "source.db") as source, LocalProvider(url=pg_url) as target:
        source.create_grant({"customer_id": "c", "amount": {"amount": "5", "currency": "USD"},
                             "idempotency_key": "k"})
        identity = target.identity()
        assert identity.startswith("local:postgresql://")
        assert identity.endswith(f":{conninfo_to_dict(pg_url).get('port', '5432')}/"
                                 f"{conninfo_to_dict(pg_url)['dbname']}")
        plan = bc.plan_migration(source, target)
        journal = tmp_path / "journal.db"
        report = asyncio.run(bc.apply_plan(plan, target, journal=journal))
        assert report.created == 1
        assert [g.amount.amount for g in target.list_grants()] == [Decimal(5)]
        plan.save(tmp_path / "plan.jsonl")
        dumped = (tmp_path / "plan.jsonl").read_text()
        assert "local:postgresql://" in dumped  # the plan names its target ...
        assert_masked(identity, repr(target), dumped, repr(plan), repr(report),
                      journal.read_bytes().decode("utf-8", "replace"), secret=password)
