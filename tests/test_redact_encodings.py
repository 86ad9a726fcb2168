"""Issue 18.9: a secret echoed back in another encoding, or split over lines, is still masked.

Every encoding ``redact`` handles is tested: JSON ``\\uXXXX`` escapes (``_`` as ``\\u005f``),
JSON-escaped slashes, percent-encoding, HTML numeric references, an escape escaped again, and
line breaks (LF, CRLF, CR and their JSON escapes) inside the secret. End to end, a loopback
vendor echoes the Stripe key so encoded, and the CLI (with and without ``--debug``, where the
Stripe SDK logs the response body) prints it nowhere.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from billing_credits._redact import MASK, redact, register_secret

KEY = "sk_test_51EncodedEchoKey0123456789abcdefQRS"
TOKEN = "mtr/encoded+token/Q7w8e9r0"  # registered only; holds a slash
TAIL = "EchoKey0123456789abcdefQRS"  # no underscore: visible whatever the escaping of "_"

register_secret(KEY)
register_secret(TOKEN)


def _u(text: str, chars: str = "_") -> str:
    return "".join(f"\\u{ord(c):04x}" if c in chars else c for c in text)


ENCODINGS = {
    "json \\u005f": _u(KEY),
    "json \\u005F upper": _u(KEY).replace("\\u005f", "\\u005F"),
    "json every char escaped": _u(KEY, KEY),
    "json escape escaped again": _u(KEY).replace("\\", "\\\\"),
    "percent %5F": KEY.replace("_", "%5F"),
    "percent every char": "".join(f"%{ord(c):02X}" for c in KEY),
    "percent escaped again %255F": KEY.replace("_", "%255F"),
    "html &#95;": KEY.replace("_", "&#95;"),
    "html &#x5f;": KEY.replace("_", "&#x5f;"),
    "split LF": KEY[:14] + "\n" + KEY[14:],
    "split CRLF": KEY[:14] + "\r\n" + KEY[14:],
    "split CR": KEY[:14] + "\r" + KEY[14:],
    "split JSON \\n": KEY[:14] + "\\n" + KEY[14:],
    "split JSON \\r\\n": KEY[:14] + "\\r\\n" + KEY[14:],
    "split twice": KEY[:6] + "\n" + KEY[6:20] + "\r\n" + KEY[20:],
    "escaped and split": _u(KEY[:14]) + "\n" + KEY[14:],
}


@pytest.mark.parametrize("encoded", list(ENCODINGS.values()), ids=list(ENCODINGS))
def test_every_encoding_is_masked(encoded: str) -> None:
    text = f'{{"error": {{"message": "Invalid API Key provided: {encoded}"}}, "n": 1}}\n'
    masked = redact(text)
    assert TAIL not in masked
    assert KEY[8:14] not in masked
    assert MASK in masked
    assert masked.startswith('{"error": {"message": "Invalid API Key provided: ')
    assert masked.endswith('"}, "n": 1}\n')  # only the secret's own span is masked


@pytest.mark.parametrize("encoded", [TOKEN.replace("/", "\\/"), TOKEN.replace("/", "%2F"),
                                     TOKEN.replace("+", "%2B").replace("/", "%2f"),
                                     TOKEN[:9] + "\r\n" + TOKEN[9:]])
def test_a_registered_secret_with_slashes_is_masked_encoded(encoded: str) -> None:
    assert "Q7w8e9r0" not in redact(f"token={encoded}; done")


def test_text_without_secrets_is_unchanged() -> None:
    for text in ["plain line\n", "50%25 off \\u00e9 &#233; a\\/b\r\n", "sk_test_\nshort",
                 "line one\nline two\n", '{"a": "\\u005f"}']:
        assert redact(text) == text


def test_log_records_of_sdk_child_loggers_are_masked(caplog: pytest.LogCaptureFixture) -> None:
    """A record logged on a child of an SDK logger (no filter of its own) is masked by the
    filter on the handler the CLI installs, and by the library's filters."""
    from billing_credits._secrets import install_log_redaction

    child = logging.getLogger("stripe.some_child_module")
    install_log_redaction()
    caplog.set_level(logging.DEBUG)
    child.debug("response body %s", _u(KEY))
    assert TAIL not in caplog.text


# -- end to end: the Stripe SDK's own response-body log line -----------------------------------

class _Echo(BaseHTTPRequestHandler):
    encoded = ""

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        body = ('{"error": {"message": "Invalid API Key provided: ' + _Echo.encoded
                + '", "type": "invalid_request_error"}}').encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Request-Id", "req_echo")
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def echo() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("debug", [["--debug"], []], ids=["debug", "plain"])
@pytest.mark.parametrize("encoded", [_u(KEY), KEY[:14] + "\\n" + KEY[14:],
                                     KEY[:14] + "\\r\\n" + KEY[14:], _u(KEY).replace("\\", "\\\\")],
                         ids=["\\u005f", "split \\n", "split \\r\\n", "escaped twice"])
def test_the_cli_prints_an_encoded_echo_nowhere(encoded: str, debug: list[str], echo: str,
                                                tmp_path: Path) -> None:
    _Echo.encoded = encoded
    env = {**os.environ, "BILLING_CREDITS_DB": str(tmp_path / "c.db"), "STRIPE_LOG": "debug"}
    done = subprocess.run(
        [sys.executable, "-m", "billing_credits", *debug, "grants", "list", "-p", "stripe",
         "-s", f"api_key={KEY}", "-s", f"base_url={echo}", "-s", "max_retries=0",
         "--customer", "cus_1"],
        capture_output=True, text=True, timeout=120, env=env, check=False, cwd=tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "req_echo" in output or "401" in output or "API Key" in output, output
    assert TAIL not in output, output
    assert json.dumps(KEY)[1:-1] not in output
