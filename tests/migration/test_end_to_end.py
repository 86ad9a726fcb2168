"""Migration end to end, between the vendor fakes over loopback HTTP, with faults injected at
random and the apply process killed at random points and resumed.

Result checked against the fakes' own state, not just through the providers: exactly the
planned grants on the target (no duplicate, none missing), equal totals per customer and unit,
and the source untouched.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from billing_credits_metronome.testing import MetronomeFake
from billing_credits_stripe.testing import StripeFake
from click.testing import CliRunner

import billing_credits as bc
from billing_credits.cli import cli
from billing_credits.testing import Faults, LoopbackServer, serve

TOKEN = "mtr_test_e2e_token"
STRIPE_KEY = "sk_test_e2e_key_0123456789"
HOUR = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
FAULTS = {"429": 0.03, "500": 0.02, "reset": 0.02, "timeout_after_commit": 0.03}


def faults(seed: int) -> Faults:
    return Faults(probabilities=dict(FAULTS), retry_after=1, seed=seed)  # type: ignore[arg-type]


@pytest.fixture
def metronome_fake() -> MetronomeFake:
    return MetronomeFake(token=TOKEN)


@pytest.fixture
def metronome_server(metronome_fake: MetronomeFake) -> Iterator[LoopbackServer]:
    with serve(metronome_fake, faults(1)) as server:
        yield server


@pytest.fixture
def stripe_fake() -> StripeFake:
    return StripeFake(seed=7)


@pytest.fixture
def stripe_server(stripe_fake: StripeFake) -> Iterator[LoopbackServer]:
    with serve(stripe_fake, faults(2)) as server:
        yield server


def metronome_settings(server: LoopbackServer) -> dict[str, str]:
    return {"bearer_token": TOKEN, "base_url": server.url, "rate_limit": "0", "max_retries": "8"}


def stripe_settings(server: LoopbackServer) -> dict[str, str]:
    return {"api_key": STRIPE_KEY, "base_url": server.url, "rate_limit": "0", "max_retries": "8"}


def flags(option: str, settings: dict[str, str]) -> list[str]:
    return [part for key, value in settings.items() for part in (option, f"{key}={value}")]


def seed_metronome(settings: dict[str, str], customers: list[str], count: int) -> None:
    """``count`` USD grants across ``customers``, created concurrently through the provider."""
    provider = bc.get_provider("metronome-plans", **settings)
    rng = random.Random(3)

    async def make(n: int) -> None:
        await provider.acreate_grant(bc.CreditGrant(
            customer_id=customers[n % len(customers)],
            amount=bc.Money(amount=Decimal(rng.randint(100, 100_000)) / 100, currency="USD"),
            name=f"grant {n}", priority=Decimal(rng.randint(0, 100)),
            effective_at=HOUR - timedelta(days=1), expires_at=HOUR + timedelta(days=90),
            idempotency_key=f"seed-{n}"))

    async def run() -> None:
        gate = asyncio.Semaphore(16)

        async def one(n: int) -> None:
            async with gate:
                await make(n)

        await asyncio.gather(*(one(n) for n in range(count)))

    asyncio.run(run())


def plan(tmp_path: Path, source: str, target: str, source_settings: dict[str, str],
         target_settings: dict[str, str], customer_map: dict[str, str], *extra: str) -> Path:
    mapping = tmp_path / "customers.csv"
    mapping.write_text("source,target\n" + "".join(f"{k},{v}\n" for k, v in customer_map.items()))
    path = tmp_path / "plan.jsonl"
    result = CliRunner().invoke(cli, [
        "migrate", "plan", "--from", source, "--to", target, *flags("-F", source_settings),
        *flags("-T", target_settings), "--customer-map", str(mapping), "-o", str(path), "--json",
        *extra])
    assert result.exit_code == 0, result.output
    return path


def apply_with_kills(plan_path: Path, target_settings: dict[str, str], kills: int,
                     seed: int, between: Callable[[], None] | None = None) -> list[dict[str, int]]:
    """Run apply in a child process, SIGKILL it mid-way ``kills`` times, then let it finish.

    ``between`` runs after each kill, before the next run (to make the target forget, say).
    """
    rng = random.Random(seed)
    command = [sys.executable, "-m", "billing_credits", "migrate", "apply", str(plan_path),
               *flags("-T", target_settings), "--concurrency", "16", "--json"]
    seen: list[dict[str, int]] = []
    for attempt in range(kills + 1):
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True, env=os.environ.copy())
        assert child.stderr is not None
        threshold = rng.uniform(0.15, 0.85)
        killed = False
        if attempt < kills:
            for line in child.stderr:
                progress = json.loads(line) if line.startswith("{") else {}
                if progress.get("total") and progress["progress"] >= threshold * progress["total"]:
                    if progress["progress"] < progress["total"]:
                        child.send_signal(signal.SIGKILL)
                        killed = True
                        seen.append(progress)
                    break
        out, err = child.communicate(timeout=300)
        if killed:
            assert child.returncode == -signal.SIGKILL
            if between is not None:
                between()
        else:
            assert child.returncode == 0, err
            seen.append(json.loads(out.splitlines()[-1]))
            if attempt < kills:
                pytest.fail(f"apply finished before kill {attempt + 1}: make the run longer")
            break
    return seen


def stripe_state(fake: StripeFake) -> dict[str, dict[str, object]]:
    return {grant["metadata"]["bc_idempotency_key"]: grant for grant in fake.grants.values()}


def test_metronome_to_stripe_with_faults_and_three_kills(
    tmp_path: Path, metronome_fake: MetronomeFake, metronome_server: LoopbackServer,
    stripe_fake: StripeFake, stripe_server: LoopbackServer,
) -> None:
    customers = [str(uuid.UUID(int=i + 1)) for i in range(12)]
    source = metronome_settings(metronome_server)
    target = stripe_settings(stripe_server)
    seed_metronome(source, customers, 1_050)
    source_before = {k: dict(v.item) for k, v in metronome_fake.grants.items()}

    path = plan(tmp_path, "metronome-plans", "stripe", source, target,
                {c: f"cus_{i:04d}" for i, c in enumerate(customers)})
    planned = bc.MigrationPlan.load(path)
    assert len(planned.to_create) == 1_050
    assert planned.refusals == []

    def forget() -> None:  # Stripe's key memory and the journal both lost between runs
        stripe_fake.forget_idempotency_keys()
        for name in ("", "-wal", "-shm"):
            Path(f"{path}.journal{name}").unlink(missing_ok=True)

    runs = apply_with_kills(path, target, kills=3, seed=11, between=forget)
    assert len(runs) == 4
    assert runs[-1]["created"] + runs[-1]["already_done"] == 1_050

    # The target's own state: every planned key once, nothing else.
    state = stripe_state(stripe_fake)
    assert len(stripe_fake.grants) == 1_050, "a duplicate or a missing grant"
    assert set(state) == {item.key for item in planned.to_create}
    totals: dict[str, Counter[str]] = defaultdict(Counter)
    for grant in stripe_fake.grants.values():
        money = grant["amount"]["monetary"]  # type: ignore[index]
        totals[grant["customer"]][money["currency"]] += money["value"]  # type: ignore[index]
    for customer, units in planned.totals().items():
        assert totals[customer]["usd"] == Decimal(units["USD"]["planned"]) * 100
    # Faults did happen, on both sides.
    assert sum(stripe_server.faults.stats.injected.values()) > 30
    assert sum(metronome_server.faults.stats.injected.values()) > 0
    # The source is untouched.
    assert {k: dict(v.item) for k, v in metronome_fake.grants.items()} == source_before
    assert not any(g.voided for g in metronome_fake.grants.values())

    result = CliRunner().invoke(cli, ["migrate", "verify", str(path), *flags("-T", target)])
    assert result.exit_code == 0, result.output
    assert "checked 1050 planned grant(s): all present once, as planned" in result.output


def test_stripe_to_metronome_with_faults_and_kills(
    tmp_path: Path, metronome_fake: MetronomeFake, metronome_server: LoopbackServer,
    stripe_fake: StripeFake, stripe_server: LoopbackServer,
) -> None:
    source = stripe_settings(stripe_server)
    stripe = bc.get_provider("stripe", **source)
    customers = [f"cus_{i:03d}" for i in range(6)]
    for n in range(240):
        stripe.create_grant(bc.CreditGrant(
            customer_id=customers[n % 6], name=f"grant {n}", priority=Decimal(n % 101),
            amount=bc.Money(amount=Decimal(n + 1), currency="USD"),
            effective_at=HOUR - timedelta(days=2), idempotency_key=f"s-{n}"))
    before = {k: dict(v) for k, v in stripe_fake.grants.items()}
    target = metronome_settings(metronome_server)
    path = plan(tmp_path, "stripe", "metronome-plans", source, target,
                {c: str(uuid.UUID(int=100 + i)) for i, c in enumerate(customers)},
                "--amount", "original")
    planned = bc.MigrationPlan.load(path)
    assert len(planned.to_create) == 240
    # Metronome accepts only custom-field keys registered beforehand: once per account
    setup = CliRunner().invoke(cli, ["setup", "--provider", "metronome-plans",
                                     *flags("-s", target)])
    assert setup.exit_code == 0, setup.output

    apply_with_kills(path, target, kills=1, seed=5)

    live = [g for g in metronome_fake.grants.values() if not g.voided]
    assert len(live) == 240
    assert len({g.item.get("uniqueness_key") for g in live}) == 240
    assert {k: dict(v) for k, v in stripe_fake.grants.items()} == before
    report = bc.verify_plan(planned, bc.get_provider("metronome-plans", **target))
    assert report.ok, report.lines()


def test_metronome_into_local_with_faults(
    tmp_path: Path, metronome_server: LoopbackServer, monkeypatch: pytest.MonkeyPatch,
) -> None:
    customers = [str(uuid.UUID(int=i + 500)) for i in range(5)]
    source = metronome_settings(metronome_server)
    seed_metronome(source, customers, 200)
    target = {"path": str(tmp_path / "local.db")}
    path = plan(tmp_path, "metronome-plans", "local", source, target,
                {c: c for c in customers})
    apply_with_kills(path, target, kills=1, seed=9)
    with bc.get_provider("local", **target) as local:
        stored = list(local.list_grants())
        assert len(stored) == 200
        assert len({g.idempotency_key for g in stored}) == 200
        assert bc.verify_plan(bc.MigrationPlan.load(path), local).ok


def test_local_to_stripe_with_kills_when_stripe_forgets_keys_and_the_journal_is_lost(
    tmp_path: Path, stripe_fake: StripeFake, stripe_server: LoopbackServer,
) -> None:
    """Issue 8.1, must-show 2: between the runs Stripe forgets every idempotency key (as it
    does after 24 hours) and the journal is deleted. Apply reconciles against Stripe's own
    grants, so the result is still exactly the planned grants, once each."""
    source = {"path": str(tmp_path / "source.db")}
    customers = [f"cus_{i:03d}" for i in range(8)]
    rng = random.Random(4)
    with bc.get_provider("local", **source) as local:
        for n in range(400):
            local.create_grant(bc.CreditGrant(
                customer_id=customers[n % len(customers)], name=f"grant {n}",
                amount=bc.Money(amount=Decimal(rng.randint(100, 100_000)) / 100, currency="USD"),
                priority=Decimal(n % 101), effective_at=HOUR - timedelta(days=1),
                idempotency_key=f"app-{n}" if n % 2 else None))
    target = stripe_settings(stripe_server)
    path = plan(tmp_path, "local", "stripe", source, target, {c: c for c in customers})
    planned = bc.MigrationPlan.load(path)
    assert len(planned.to_create) == 400
    journal = Path(f"{path}.journal")
    forgotten = []

    def forget() -> None:
        stripe_fake.forget_idempotency_keys()
        for name in (journal, Path(f"{journal}-wal"), Path(f"{journal}-shm")):
            name.unlink(missing_ok=True)
        forgotten.append(len(stripe_fake.grants))

    runs = apply_with_kills(path, target, kills=2, seed=21, between=forget)
    assert len(runs) == 3
    assert len(forgotten) == 2
    assert 0 < forgotten[0] < 400
    assert runs[-1]["created"] + runs[-1]["already_done"] == 400
    assert runs[-1]["already_done"] >= forgotten[-1]

    state = stripe_state(stripe_fake)
    assert len(stripe_fake.grants) == 400, "a duplicate or a missing grant"
    assert set(state) == {item.key for item in planned.to_create}
    totals: Counter[str] = Counter()
    for grant in stripe_fake.grants.values():
        totals[grant["customer"]] += grant["amount"]["monetary"]["value"]  # type: ignore[index]
    for customer, units in planned.totals().items():
        assert totals[customer] == Decimal(units["USD"]["planned"]) * 100
    assert sum(stripe_server.faults.stats.injected.values()) > 10
    result = CliRunner().invoke(cli, ["migrate", "verify", str(path), *flags("-T", target)])
    assert result.exit_code == 0, result.output
