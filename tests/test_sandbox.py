"""The sandbox (issue 10): vendor fakes on loopback only, seeded like the seed documents."""

from __future__ import annotations

import json
import os
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import pytest

import billing_credits as bc
from billing_credits.plugins._registry import sandboxes


def test_a_sandbox_beyond_loopback_is_refused() -> None:
    for url in ("http://0.0.0.0:8000", "http://10.0.0.1:80", "http://example.com"):
        with pytest.raises(bc.ConfigurationError, match="loopback"):
            bc.Sandbox(name="x", url=url, environment={})
    with pytest.raises(bc.ConfigurationError):
        bc.Sandbox(name="x", url="http://127.0.0.1:1", environment={"not a name": "v"})
    with pytest.raises(bc.ConfigurationError):
        bc.Sandbox(name="x", url="http://127.0.0.1:1", environment={}, files={"../x": ""})


def test_every_installed_sandbox_serves_on_loopback_and_points_its_providers_at_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    installed = sandboxes()
    assert {"stripe", "metronome"} <= set(installed)
    for name, start in installed.items():
        with start() as box:
            assert urlsplit(box.url).hostname == "127.0.0.1"
            assert box.providers
            for key, value in box.environment.items():
                monkeypatch.setenv(key, value)
            for provider in box.providers:
                with bc.get_provider(provider) as opened:  # settings from the environment only
                    assert opened.identity()
            for key in box.environment:
                monkeypatch.delenv(key)
        assert name == box.name
    assert not any(k.startswith(("STRIPE_", "METRONOME_")) for k in os.environ)


def test_the_metronome_demo_account_is_shaped_like_the_seeds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with sandboxes()["metronome"]() as box:
        for key, value in box.environment.items():
            monkeypatch.setenv(key, value)
        with bc.get_provider("metronome-plans") as plans, bc.get_provider("metronome") as credits:
            customers = {line.split(",")[0] for line in box.files["customers.csv"].splitlines()[1:]}
            grants = [g for c in sorted(customers) for p in (plans, credits)
                      for g in p.list_grants(c)]
    assert len(customers) >= 3
    assert {g.priority for g in grants} >= {Decimal("0.5"), Decimal(1), Decimal(100),
                                            Decimal("0.75")}
    assert any(g.amount.unit is not None for g in grants)  # a custom credit unit
    assert any(g.paid_amount is not None for g in grants)
    assert any(g.schedule is not None and len(g.schedule) == 3 for g in grants)


def test_sandbox_json_lines_then_stops_cleanly(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    command = [str(Path(sys.executable).parent / "billing-credits"), "sandbox", "--json",
               "--only", "stripe", "--dir", str(tmp_path / "box")]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert server.stdout is not None
    first = json.loads(server.stdout.readline())
    assert first["name"] == "stripe"
    assert urlsplit(first["url"]).hostname == "127.0.0.1"
    assert first["environment"]["STRIPE_BASE_URL"] == first["url"]
    time.sleep(0.2)
    server.send_signal(signal.SIGINT)
    _, err = server.communicate(timeout=30)
    assert server.returncode == 0
    assert "sandbox stopped" in err


def test_sandbox_text_says_which_file_to_source_and_that_masked_values_are_in_it(
    tmp_path: Path,
) -> None:
    import signal
    import subprocess
    import sys

    folder = tmp_path / "box"
    command = [str(Path(sys.executable).parent / "billing-credits"), "sandbox", "--only", "stripe",
               "--dir", str(folder)]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert server.stdout is not None
    lines = []
    for line in server.stdout:
        lines.append(line.rstrip("\n"))
        if line.startswith("Serving on loopback"):
            break
    server.send_signal(signal.SIGINT)
    server.communicate(timeout=30)
    assert f"  . {folder / 'sandbox.env'}" in lines
    # A line printed masked (a secret setting) cannot be pasted: the output says where it is.
    assert any("[REDACTED]" in line for line in lines)
    assert f"(secret values are masked here; {folder / 'sandbox.env'} holds them)" in lines
    assert "export STRIPE_API_KEY=sk_test_sandbox" in (folder / "sandbox.env").read_text()


def _sandbox_from_a_script(tmp_path: Path) -> tuple[int, Path, Path]:
    """``billing-credits sandbox &`` in a non-interactive shell script: the job inherits SIGINT
    (and SIGQUIT) ignored, as any script's background job does. Returns its pid, the folder
    and the file its stdout goes to, once it serves."""
    import subprocess
    import sys
    import time

    command = Path(sys.executable).parent / "billing-credits"
    folder, out, pid_file = tmp_path / "box", tmp_path / "out.txt", tmp_path / "pid"
    script = (f"'{command}' sandbox --dir '{folder}' > '{out}' 2>> '{out}.err' &\n"
              f"echo $! > '{pid_file}'\n")
    subprocess.run(["bash", "-c", script], check=True, timeout=30)  # the script ends at once
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 60
    while "Serving on loopback" not in (out.read_text() if out.exists() else ""):
        assert time.monotonic() < deadline, out.read_text() if out.exists() else "no output"
        time.sleep(0.1)
    status = Path(f"/proc/{pid}/status")
    if status.exists():  # Linux: the job was started with SIGQUIT ignored, as bash does it
        ignored = int(next(line for line in status.read_text().splitlines()
                           if line.startswith("SigIgn:")).split()[1], 16)
        assert ignored & (1 << (3 - 1)), "bash did not start the job with signals ignored"
    return pid, folder, out


def _gone(pid: int, timeout: float = 30) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        status = Path(f"/proc/{pid}/status")  # a zombie nobody reaped yet has ended too
        if status.exists() and "\nState:\tZ" in status.read_text(errors="replace"):
            return True
        time.sleep(0.1)
    return False


def _serving(url: str) -> bool:
    import socket

    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=2):
            return True
    except OSError:
        return False


@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM"])
def test_a_sandbox_started_from_a_script_stops_on_ctrl_c_and_sigterm(
    how: str, tmp_path: Path,
) -> None:
    import signal

    pid, folder, out = _sandbox_from_a_script(tmp_path)
    urls = [line.split("=", 1)[1] for line in (folder / "sandbox.env").read_text().splitlines()
            if line.startswith("export ") and line.split("=", 1)[0].endswith("_BASE_URL")]
    assert urls
    assert all(_serving(url) for url in urls)
    try:
        os.kill(pid, getattr(signal, how))
        assert _gone(pid), f"the sandbox ignored {how}"
    finally:
        if not _gone(pid, timeout=0.5):
            os.kill(pid, signal.SIGKILL)
    assert not any(_serving(url) for url in urls), "a server outlived the sandbox"
    assert "sandbox stopped" in Path(f"{out}.err").read_text()


def test_sandbox_masks_every_secret_setting_including_a_plugins(tmp_path: Path) -> None:
    """The example plugin's ``api_key`` (ACME_API_KEY) is a secret setting like Stripe's: it
    prints masked above "secret values are masked here"; the env file holds it."""
    import signal

    from billing_credits.plugins._registry import providers

    secret_envs = {s.env for p in providers().values() for s in p.settings if s.secret and s.env}
    assert {"ACME_API_KEY", "STRIPE_API_KEY"} <= secret_envs
    pid, folder, out = _sandbox_from_a_script(tmp_path)
    os.kill(pid, signal.SIGTERM)
    if not _gone(pid):
        os.kill(pid, signal.SIGKILL)
    printed = out.read_text()
    environment = (folder / "sandbox.env").read_text()
    secrets = {line.split("=", 1)[0].removeprefix("export "): line.split("=", 1)[1]
               for line in environment.splitlines()
               if line.split("=", 1)[0].removeprefix("export ") in secret_envs}
    assert {"ACME_API_KEY", "STRIPE_API_KEY"} <= set(secrets)
    for name, value in secrets.items():
        assert value, name
        assert value not in printed, name
        assert f"export {name}=[REDACTED]" in printed
    assert "secret values are masked here" in printed
