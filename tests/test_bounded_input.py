"""Issue 18.7: unbounded input. Every command that reads a file reads it through the one
bounded line reader (``billing_credits._lines``): a file with no newline ends with a clear
error in bounded time and memory, an over-long import line goes to the rejects file and the
import goes on, and a rejects file never lands in a device folder."""

from __future__ import annotations

import io
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from billing_credits._errors import InputTooLargeError
from billing_credits._lines import (
    MAX_LINE_BYTES,
    MAX_SKIP_BYTES,
    LongLine,
    bounded_lines,
    read_bounded,
)
from billing_credits.cli import cli

GRANT = {"customer_id": "cus_1", "amount": {"amount": "5", "currency": "USD"}}


def _line(key: str) -> str:
    return json.dumps({**GRANT, "idempotency_key": key}) + "\n"


# -- the reader -------------------------------------------------------------------------------

def test_lines_within_the_limit_pass_whole() -> None:
    data = b"a\n" + b"x" * 10 + b"\n" + b"tail"
    assert list(bounded_lines(io.BytesIO(data), source="f", limit=10)) == [
        (1, b"a\n"), (2, b"x" * 10 + b"\n"), (3, b"tail")]


def test_a_line_over_the_limit_is_refused_naming_file_and_line() -> None:
    data = b"ok\n" + b"x" * 11 + b"\n"
    with pytest.raises(InputTooLargeError) as caught:
        list(bounded_lines(io.BytesIO(data), source="in.jsonl", limit=10))
    assert caught.value.line == 2
    assert caught.value.source == "in.jsonl"
    assert str(caught.value).startswith("in.jsonl:2: a line longer than the limit")


def test_skip_long_passes_the_line_over_and_goes_on() -> None:
    data = b"ok\n" + b"y" * 50 + b"\nnext\n"
    got = list(bounded_lines(io.BytesIO(data), source="f", limit=10, skip_long=True))
    assert got[0] == (1, b"ok\n")
    assert isinstance(got[1][1], LongLine)
    assert got[1][1].number == 2
    assert got[1][1].head.startswith("yyyy")
    assert got[2] == (3, b"next\n")


def test_skipping_is_itself_bounded() -> None:
    endless = io.BytesIO(b"z" * (MAX_SKIP_BYTES + MAX_LINE_BYTES + 10))
    with pytest.raises(InputTooLargeError, match="no line end within the limit: not a file of lines"):
        list(bounded_lines(endless, source="f", skip_long=True))


def test_total_bounds_the_whole_read() -> None:
    with pytest.raises(InputTooLargeError, match="larger than the limit"):
        list(bounded_lines(io.BytesIO(b"ab\n" * 10), source="f", total=20))


def test_read_bounded_refuses_past_the_limit() -> None:
    assert read_bounded(io.BytesIO(b"x" * 10), name="f", limit=10) == b"x" * 10
    with pytest.raises(InputTooLargeError):
        read_bounded(io.BytesIO(b"x" * 11), name="f", limit=10)


# -- /dev/zero into every reading command -----------------------------------------------------

ZERO_COMMANDS = {
    "import": ["import", "/dev/zero"],
    "grants create --from-json": ["grants", "create", "--from-json", "/dev/zero"],
    "simulate --usage": ["simulate", "--usage", "/dev/zero"],
    "migrate apply": ["migrate", "apply", "/dev/zero"],
    "migrate verify": ["migrate", "verify", "/dev/zero"],
    "migrate plan --customer-map": ["migrate", "plan", "--from", "local", "--to", "local",
                                    "--customer-map", "/dev/zero", "-o", "plan.jsonl"],
}
SECONDS = 5.0
MEGABYTES = 100
_CEILING = 1024 * 1024 * 1024  # address space: today's code is stopped here, not the machine


def _limit() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (_CEILING, _CEILING))


def _measure(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, int, str]:
    """(seconds, peak RSS in MB, exit code, stderr) of one CLI run in a fresh process, reaped
    with ``wait4`` to read its own peak RSS; killed after four times the allowed time."""
    start = time.monotonic()
    child = subprocess.Popen([sys.executable, "-m", "billing_credits", *args], cwd=cwd, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             preexec_fn=_limit)  # noqa: PLW1509 - only setrlimit
    assert child.stderr is not None
    deadline = start + 4 * SECONDS
    while True:
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            child.kill()
            pid, status, usage = os.wait4(child.pid, 0)
            break
        time.sleep(0.02)
    elapsed = time.monotonic() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    stderr = child.stderr.read().decode("utf-8", "replace")
    child.stderr.close()
    return elapsed, usage.ru_maxrss / 1024, child.returncode, stderr


@pytest.mark.parametrize("args", list(ZERO_COMMANDS.values()), ids=list(ZERO_COMMANDS))
def test_dev_zero_ends_with_a_clear_error_quickly_and_small(
        args: list[str], tmp_path: Path) -> None:
    env = {**os.environ, "BILLING_CREDITS_DB": str(tmp_path / "credits.db")}
    elapsed, peak, code, stderr = _measure(args, tmp_path, env)
    print(f"{' '.join(args)}: {elapsed:.2f}s, peak RSS {peak:.0f} MB, exit {code}")
    assert elapsed < SECONDS, (elapsed, stderr)
    assert peak < MEGABYTES, (peak, stderr)
    assert code in (1, 2), stderr
    assert "Traceback" not in stderr
    assert "/dev/zero" in stderr, stderr
    assert "limit" in stderr, stderr
    assert not list(Path("/dev").glob("zero.rejects*"))


# -- import: an over-long line is rejected, the import goes on --------------------------------

def test_import_rejects_an_over_long_line_and_imports_the_rest(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch
                                                               ) -> None:
    monkeypatch.chdir(tmp_path)
    source = tmp_path / "grants.jsonl"
    source.write_text(_line("k-1") + "x" * (MAX_LINE_BYTES + 5) + "\n" + _line("k-2"))
    result = CliRunner().invoke(cli, ["import", "grants.jsonl", "--json"])
    summary = json.loads(result.stdout.splitlines()[-1])
    assert summary["created"] == 2, result.stdout
    assert summary["failed"] == 1, result.stdout
    rejects = [json.loads(x) for x in (tmp_path / "grants.jsonl.rejects.jsonl").read_text()
               .splitlines()]
    assert [r["line"] for r in rejects] == [2]
    assert "longer than" in rejects[0]["problem"]
    assert len(rejects[0]["raw"]) <= 200


def test_import_from_python_with_a_file_object_is_bounded_too() -> None:
    from billing_credits.local import LocalProvider
    from billing_credits.migrate._transfer import import_grants

    lines = io.BytesIO((_line("k-1") + "x" * (MAX_LINE_BYTES + 1) + "\n" + _line("k-2")).encode())
    got: list[tuple[int, str]] = []
    with LocalProvider(path=":memory:") as local:
        report = import_grants(local, lines, on_reject=lambda n, _text, why: got.append((n, why)))
    assert report.created == 2
    assert [n for n, _ in got] == [2]
    assert "longer than" in got[0][1]


# -- import: where the rejects file goes -------------------------------------------------------

def test_import_of_a_device_writes_rejects_in_the_working_folder(tmp_path: Path) -> None:
    """``import /dev/urandom`` (endless, short garbage lines) stopped by Ctrl-C: its rejects
    are in the working folder, never in /dev, and the message says where."""
    import signal

    env = {**os.environ, "BILLING_CREDITS_DB": str(tmp_path / "credits.db")}
    before = set(os.listdir("/dev"))
    child = subprocess.Popen([sys.executable, "-m", "billing_credits", "import", "/dev/urandom"],
                             cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    expected = tmp_path / "urandom.rejects.jsonl"
    deadline = time.monotonic() + 30
    while not expected.exists() and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.1)
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=30)
    leaked = {n for n in set(os.listdir("/dev")) - before if "rejects" in n}
    for name in leaked:
        os.unlink(f"/dev/{name}")
    assert not leaked
    assert expected.exists(), err
    assert str(expected) in out + err


def test_rejects_of_a_pipe_go_to_the_working_folder(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    folder = tmp_path / "in"
    folder.mkdir()
    pipe = folder / "feed"
    os.mkfifo(pipe)
    feeder = threading.Thread(target=lambda: pipe.write_text("{bad\n"))
    feeder.start()
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    result = CliRunner().invoke(cli, ["import", str(pipe)])
    feeder.join()
    assert not (folder / "feed.rejects.jsonl").exists()
    assert (work / "feed.rejects.jsonl").exists(), result.stdout + result.stderr
    assert str(work / "feed.rejects.jsonl") in result.stdout


def test_rejects_go_beside_a_regular_input_in_a_writable_folder(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch
                                                                ) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "g.jsonl").write_text("{bad\n")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    result = CliRunner().invoke(cli, ["import", str(folder / "g.jsonl")])
    assert (folder / "g.jsonl.rejects.jsonl").exists()
    assert str(folder / "g.jsonl.rejects.jsonl") in result.stdout


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_rejects_of_an_input_in_a_read_only_folder_go_to_the_working_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    (folder / "g.jsonl").write_text("{bad\n")
    folder.chmod(0o555)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    try:
        result = CliRunner().invoke(cli, ["import", str(folder / "g.jsonl")])
    finally:
        folder.chmod(0o755)
    assert (work / "g.jsonl.rejects.jsonl").exists(), result.stdout + result.stderr
    assert str(work / "g.jsonl.rejects.jsonl") in result.stdout
