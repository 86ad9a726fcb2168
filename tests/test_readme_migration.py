"""The README's "Try a migration" section runs verbatim and ends with verify exit 0."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def section_commands() -> list[str]:
    section = README.split("## Try a migration", 1)[1].split("\n## ", 1)[0]
    block = re.findall(r"```console\n(.*?)```", section, flags=re.DOTALL)[0]
    return [line for line in block.splitlines() if line.strip()]


def test_section_has_five_commands_or_fewer() -> None:
    commands = section_commands()
    assert len(commands) <= 5
    assert commands[0].startswith("billing-credits sandbox")
    assert any(c.startswith("billing-credits migrate plan") and "--customer-map" in c
               and "--scope-map" in c for c in commands)
    assert commands[-1].startswith("billing-credits migrate verify")


def test_try_a_migration_runs_verbatim(tmp_path: Path) -> None:
    sandbox, *rest = section_commands()
    env = {**{k: v for k, v in os.environ.items()
              if not k.startswith(("STRIPE_", "METRONOME_", "BILLING_CREDITS_"))},
           "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}
    server = subprocess.Popen(shlex.split(sandbox), cwd=tmp_path, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        env_file = tmp_path / "demo" / "sandbox.env"
        deadline = time.monotonic() + 60
        while not env_file.exists() or "STRIPE_BASE_URL" not in env_file.read_text():
            assert server.poll() is None, server.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.1)
        script = "set -e\n" + "\n".join(rest)
        done = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, text=True,
                              capture_output=True, timeout=120, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "5 grant(s) to create, 1 refused" in done.stdout
        assert "created 5, already there 0" in done.stdout
        assert "checked 5 planned grant(s): all present once, as planned" in done.stdout
        assert done.stdout.rstrip().endswith(
            "consumption: every customer burns the same way on both sides (3 simulated)")
        assert "127.0.0.1" in env_file.read_text()
        # Applying again creates nothing twice.
        again = subprocess.run(["bash", "-c", "set -e\n" + "\n".join(rest[:1] + rest[2:])],
                               cwd=tmp_path, env=env, text=True, capture_output=True,
                               timeout=120, check=False)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "created 0, already there 5" in again.stdout
    finally:
        server.send_signal(signal.SIGINT)
        _, err = server.communicate(timeout=30)
    assert server.returncode == 0, err
    assert "sandbox stopped" in err
    assert "Traceback" not in err
