"""Issue 9.3 (must show 3): a known secret, configured, appears nowhere the library writes.

A loopback server misbehaves on purpose: it answers 401 with the ``Authorization`` header
echoed in the error body (as some proxies and vendors do), 5xx with every request header
echoed, or hangs past the timeout. The CLI is run against it for Stripe and Metronome with a
known secret, through every command that talks to a provider (list, create, get, export,
import, migrate plan/apply/verify), with bad settings and with debug logging on; the secret
must be absent from stdout, stderr, the log file, the plan, the journal, the export and every
rejects file.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import billing_credits as bc
from billing_credits._secrets import detach
from billing_credits.cli import cli

STRIPE_KEY = "sk_test_51HostileEchoKey0123456789abcdefXYZ"
METRONOME_TOKEN = "mtr-hostile-token-Q7w8e9r0t1y2u3i4"
"""Not shaped like any well-known credential: only registration can mask it."""


class Echo(BaseHTTPRequestHandler):
    mode = "401"

    def log_message(self, *args: Any) -> None:
        pass

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        auth = self.headers.get("Authorization", "")
        bare = auth.split(" ", 1)[-1]
        if Echo.mode == "hang":
            time.sleep(1.0)
            return
        if Echo.mode == "401":
            status = 401
            body = {"error": {"message": f"Invalid API Key provided: {auth}", "type":
                              "invalid_request_error", "key": bare},
                    "message": f"bad token {bare}"}
        else:
            status = 503
            body = {"error": {"message": f"upstream failed; request headers: {dict(self.headers)}",
                              "type": "api_error"}, "message": f"proxy saw {bare}"}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Echo-Authorization", auth)
        self.send_header("Request-Id", f"req_{bare}")
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = _answer


@pytest.fixture
def echo() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _settings(provider: str, url: str, flag: str = "-s") -> list[str]:
    if provider == "stripe":
        return [flag, f"api_key={STRIPE_KEY}", flag, f"base_url={url}", flag, "timeout=0.3",
                flag, "max_retries=0"]
    return [flag, f"bearer_token={METRONOME_TOKEN}", flag, f"base_url={url}", flag, "timeout=0.3",
            flag, "max_retries=0"]


def _customer(provider: str) -> str:
    return "6f1c0c9e-3d7e-4b7a-9a57-0d6f6b2b4b10" if provider.startswith("metronome") else "cus_1"


@pytest.mark.parametrize("provider", ["stripe", "metronome-plans"])
def test_secret_appears_nowhere(provider: str, echo: str, tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    log_file = tmp_path / "debug.log"
    handler = logging.FileHandler(log_file)
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    runner = CliRunner()
    outputs: list[str] = []
    customer = _customer(provider)

    def run(*args: str) -> Any:
        result = runner.invoke(cli, list(args), catch_exceptions=True)
        outputs.extend([result.stdout, result.stderr])
        assert "Traceback" not in result.stderr, result.stderr
        assert result.exception is None or isinstance(result.exception, SystemExit), \
            repr(result.exception)
        return result

    # A plan on the local provider to apply to the misbehaving target, and an export to import.
    grant = {"customer_id": customer, "amount": {"amount": "12.50", "currency": "USD"},
             "effective_at": "2026-01-01T00:00:00Z", "expires_at": "2030-01-01T00:00:00Z",
             "idempotency_key": "secret-test-1", "priority": "10"}
    (tmp_path / "grant.json").write_text(json.dumps(grant))
    assert run("grants", "create", "--from-json", "grant.json").exit_code == 0
    assert run("export", "-o", "local.jsonl").exit_code == 0
    try:
        for mode in ("401", "503", "hang"):
            Echo.mode = mode
            settings = _settings(provider, echo)
            for debug in ([], ["--debug"]):
                assert run(*debug, "grants", "list", "-p", provider, *settings).exit_code == 1
                assert run(*debug, "grants", "get", "-p", provider, *settings, "g_1").exit_code == 1
                assert run(*debug, "grants", "create", "-p", provider, *settings,
                           "--from-json", "grant.json").exit_code == 1
            assert run("export", "-p", provider, *settings, "-o", f"export-{mode}.jsonl",
                       "--customer", customer).exit_code == 1
            assert not (tmp_path / f"export-{mode}.jsonl").exists()  # nothing half-written
            assert run("import", "-p", provider, *settings, "local.jsonl",
                       "--rejects", f"import-{mode}.rejects.jsonl").exit_code == 1
            assert run("migrate", "plan", "--from", provider, "--to", "local",
                       *_settings(provider, echo, "-F"), "-o", f"from-{mode}.jsonl").exit_code == 1
            planned = run("migrate", "plan", "--from", "local", "--to", provider,
                          *_settings(provider, echo, "-T"), "--lenient", "-o", f"to-{mode}.jsonl")
            assert planned.exit_code in (0, 1)
            if Path(f"to-{mode}.jsonl").exists():
                assert run("migrate", "apply", f"to-{mode}.jsonl",
                           *_settings(provider, echo, "-T")).exit_code == 1
                assert run("migrate", "verify", f"to-{mode}.jsonl",
                           *_settings(provider, echo, "-T")).exit_code == 1
        # Bad settings, each holding or accompanied by the secret.
        secret = STRIPE_KEY if provider == "stripe" else METRONOME_TOKEN
        key = "api_key" if provider == "stripe" else "bearer_token"
        for bad in (["-s", f"{key}={secret}", "-s", "timeout=soon"],
                    ["-s", f"{key}={secret}", "-s", "base_url=http://billing.example.com"],
                    ["-s", f"{key}={secret}", "-s", f"max_retries={secret}"],
                    ["-s", f"{key}={secret}", "-s", f"rate_limit={secret}"],
                    ["-s", secret]):
            result = run("--debug", "grants", "list", "-p", provider, *bad)
            assert result.exit_code == 2, result.stderr
            assert len(result.stderr.strip().splitlines()) >= 1
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        handler.close()
        for existing in list(root.handlers):  # --debug's stderr handler, bound to the runner
            if isinstance(existing, logging.StreamHandler) and not isinstance(
                    existing, logging.FileHandler) and "RedactingWriter" in type(
                    getattr(existing, "stream", None)).__name__:
                root.removeHandler(existing)
    secret = STRIPE_KEY if provider == "stripe" else METRONOME_TOKEN
    written = [p for p in tmp_path.iterdir() if p.is_file()]
    assert any(p.name.endswith(".journal") for p in written)
    assert any(p.name.startswith("to-") and p.suffix == ".jsonl" for p in written)
    assert any("rejects" in p.name for p in written)
    assert log_file.stat().st_size > 0
    for text in outputs:
        assert secret not in text, text
    for path in written:
        data = path.read_bytes()
        assert secret.encode() not in data, f"secret in {path.name}"
    # the echoed body did reach the messages, masked
    assert any("[REDACTED]" in text for text in outputs)


def test_runtime_errors_carry_no_request_chain() -> None:
    """An error a flow raised inside ``except httpx.…`` leaves ``Runtime`` without the
    ``__context__``/``__cause__`` chain (which holds the request and its headers)."""

    class Request:
        headers = {"Authorization": f"Bearer {METRONOME_TOKEN}"}

    class Transport(Exception):
        request = Request()

    def fails() -> None:
        try:
            raise Transport("connect failed")
        except Transport as error:
            raise bc.UnavailableError("could not reach the vendor") from error

    def flow() -> bc.Flow[None]:
        yield bc.Call(fails, fails, retry_safe=False)  # type: ignore[arg-type]

    with pytest.raises(bc.UnavailableError) as caught:
        bc.Runtime().run(flow())
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None
    assert detach(ValueError("x")).__suppress_context__


def test_log_records_are_redacted_on_the_library_loggers(caplog: pytest.LogCaptureFixture) -> None:
    bc.register_secret(METRONOME_TOKEN)
    caplog.set_level(logging.DEBUG)
    for name in ("billing_credits", "billing_credits_metronome", "httpx", "stripe"):
        logger = logging.getLogger(name)
        logger.debug("sent %s", {"Authorization": f"Bearer {METRONOME_TOKEN}"})
        try:
            raise RuntimeError(f"echo {METRONOME_TOKEN}")
        except RuntimeError:
            logger.exception("failed with %s", METRONOME_TOKEN)
    assert METRONOME_TOKEN not in caplog.text
    assert all(METRONOME_TOKEN not in (r.exc_text or "") for r in caplog.records)
    assert "[REDACTED]" in caplog.text


def test_redacting_writer_masks_a_secret_split_over_writes() -> None:
    import io

    from billing_credits._secrets import RedactingWriter

    bc.register_secret(METRONOME_TOKEN)
    out = io.StringIO()
    writer = RedactingWriter(out)
    half = len(METRONOME_TOKEN) // 2
    writer.write(f"token {METRONOME_TOKEN[:half]}")
    writer.write(f"{METRONOME_TOKEN[half:]} end\npartial {METRONOME_TOKEN}")
    writer.flush()
    assert METRONOME_TOKEN not in out.getvalue()
    assert out.getvalue() == "token [REDACTED] end\npartial [REDACTED]"
