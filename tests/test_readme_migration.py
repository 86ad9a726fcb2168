"""The README's "Try a migration" section runs verbatim, in a fresh shell with the PATH a new
user has (no ``.venv/bin`` on it unless the README's own commands put it there), in a clone
after the quickstart (its ``.venv``), and ends with verify exit 0."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
NEW_USER_PATH = "/usr/local/bin:/usr/bin:/bin"  # Debian's default PATH for a login shell


def section_commands() -> list[str]:
    section = README.split("## Try a migration", 1)[1].split("\n## ", 1)[0]
    block = re.findall(r"```console\n(.*?)```", section, flags=re.DOTALL)[0]
    return [line for line in block.splitlines() if line.strip()]


def quickstart_venv() -> Path:
    """The ``.venv`` the quickstart made in this clone (else the one running the tests)."""
    made = ROOT / ".venv"
    if (made / "bin" / "billing-credits").exists():
        return made
    if sys.prefix == sys.base_prefix:
        pytest.skip("no .venv (run scripts/quickstart.sh) and not running in a virtualenv")
    return Path(sys.prefix)


def fresh_clone_dir(tmp_path: Path) -> Path:
    """A directory standing for the clone after the quickstart: its ``.venv`` and nothing else
    (the demo files the commands write land here, not in the repository)."""
    clone = tmp_path / "clone"
    clone.mkdir()
    (clone / ".venv").symlink_to(quickstart_venv())
    return clone


def new_user_env(tmp_path: Path) -> dict[str, str]:
    """What a new login shell has: HOME, a default PATH, a locale; nothing of this session
    (no activated venv, no provider settings)."""
    home = tmp_path / "home"
    home.mkdir()
    return {"HOME": str(home), "PATH": NEW_USER_PATH, "LANG": "C.UTF-8",
            "BILLING_CREDITS_DB": str(tmp_path / "credits.db"), "TERM": "dumb"}


def test_section_has_five_commands_or_fewer() -> None:
    commands = section_commands()
    assert len(commands) <= 5
    assert "billing-credits sandbox" in commands[0]
    assert any("billing-credits migrate plan" in c and "--customer-map" in c
               and "--scope-map" in c for c in commands)
    assert "billing-credits migrate verify" in commands[-1]


def test_the_command_is_not_on_a_new_users_path(tmp_path: Path) -> None:
    """The point of the test below: a bare ``billing-credits`` fails in a fresh shell."""
    done = subprocess.run(["bash", "-c", "command -v billing-credits"], env=new_user_env(tmp_path),
                          cwd=fresh_clone_dir(tmp_path), capture_output=True, check=False)
    assert done.returncode != 0


def test_try_a_migration_runs_verbatim(tmp_path: Path) -> None:
    sandbox, *rest = section_commands()
    clone = fresh_clone_dir(tmp_path)
    env = new_user_env(tmp_path)
    # Terminal 1: the sandbox line as written, in its own process group (as a terminal's
    # foreground job: Ctrl-C signals the group).
    server = subprocess.Popen(["bash", "-c", sandbox], cwd=clone, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              start_new_session=True)
    try:
        env_file = clone / "demo" / "sandbox.env"
        deadline = time.monotonic() + 60
        while not env_file.exists() or "STRIPE_BASE_URL" not in env_file.read_text():
            assert server.poll() is None, server.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.1)
        # Terminal 2: the other lines as written, one fresh shell.
        script = "set -e\n" + "\n".join(rest)
        done = subprocess.run(["bash", "-c", script], cwd=clone, env=env, text=True,
                              capture_output=True, timeout=180, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "5 grant(s) to create, 1 refused" in done.stdout
        # The target as a place, not its recorded identity; no retire note without --retire.
        assert "plan metronome-plans → stripe at http://127.0.0.1:" in done.stdout
        assert "retir" not in done.stdout + done.stderr
        assert "created 5, already there 0" in done.stdout
        assert "checked 5 planned grant(s): all present once, as planned" in done.stdout
        assert done.stdout.rstrip().endswith(
            "consumption: every customer burns the same way on both sides (3 simulated)")
        assert "127.0.0.1" in env_file.read_text()
        # Applying again (another fresh shell) creates nothing twice.
        again = subprocess.run(["bash", "-c", "set -e\n" + "\n".join(rest[:1] + rest[2:])],
                               cwd=clone, env=env, text=True, capture_output=True,
                               timeout=180, check=False)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "created 0, already there 5" in again.stdout
    finally:
        os.killpg(server.pid, signal.SIGINT)  # Ctrl-C in terminal 1
        _, err = server.communicate(timeout=30)
    assert server.returncode == 0, err
    assert "sandbox stopped" in err
    assert "Traceback" not in err
