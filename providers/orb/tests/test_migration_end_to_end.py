"""Migrations into and out of Orb, between the vendor fakes over loopback HTTP, with faults
injected at random and the apply process killed at random points and resumed (the approach
of ``tests/migration/test_end_to_end.py``). Results are checked against the fakes' own state.

Must-show 3: Metronome → Orb of the ``metronome`` sandbox's seeded customers: plan (which
names each customer whose burn order changes, and why), apply with three kills and random
faults, verify exit 0, no duplicate, and every paid grant recorded as paid (its invoice marked
paid: nothing left to collect), even with the target configured to invoice.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from billing_credits_metronome.testing import _sandbox as metronome_sandbox
from billing_credits_orb.testing import OrbFake
from billing_credits_stripe.testing import StripeFake
from click.testing import CliRunner

import billing_credits as bc
from billing_credits.cli import cli
from billing_credits.testing import Faults, LoopbackServer, serve

ORB_KEY = "orb_test_e2e_key_0123456789"
STRIPE_KEY = "sk_test_e2e_key_0123456789"
DAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
FAULTS = {"429": 0.03, "500": 0.02, "reset": 0.02, "timeout_after_commit": 0.03}


def faults(seed: int) -> Faults:
    return Faults(probabilities=dict(FAULTS), retry_after=1, seed=seed)  # type: ignore[arg-type]


def flags(option: str, settings: dict[str, str]) -> list[str]:
    return [part for key, value in settings.items() for part in (option, f"{key}={value}")]


def orb_settings(server: LoopbackServer, **extra: str) -> dict[str, str]:
    return {"api_key": ORB_KEY, "base_url": f"{server.url}/v1", "rate_limit": "0",
            "max_retries": "8", **extra}


def stripe_settings(server: LoopbackServer) -> dict[str, str]:
    return {"api_key": STRIPE_KEY, "base_url": server.url, "rate_limit": "0", "max_retries": "8"}


def plan(tmp_path: Path, source: str, target: str, source_settings: dict[str, str],
         target_settings: dict[str, str], customer_map: str, *extra: str) -> tuple[Path, dict]:
    mapping = tmp_path / "customers.csv"
    mapping.write_text(customer_map)
    path = tmp_path / "plan.jsonl"
    result = CliRunner().invoke(cli, [
        "migrate", "plan", "--from", source, "--to", target, *flags("-F", source_settings),
        *flags("-T", target_settings), "--customer-map", str(mapping), "-o", str(path),
        "--json", *extra])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    return path, summary


def apply_with_kills(plan_path: Path, target_settings: dict[str, str], kills: int,
                     seed: int) -> list[dict[str, int]]:
    """Run apply in a child process, SIGKILL it mid-way ``kills`` times, then let it finish."""
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
        else:
            assert child.returncode == 0, err
            seen.append(json.loads(out.splitlines()[-1]))
            if attempt < kills:
                pytest.fail(f"apply finished before kill {attempt + 1}: make the run longer")
            break
    return seen


@pytest.fixture
def orb_fake() -> OrbFake:
    fake = OrbFake(api_key=ORB_KEY, seed=11)
    for customer in metronome_sandbox.CUSTOMERS.values():  # the sandbox's map targets
        fake.add_customer(customer)
    return fake


@pytest.fixture
def orb_server(orb_fake: OrbFake) -> Iterator[LoopbackServer]:
    with serve(orb_fake, faults(4)) as server:
        yield server


def test_metronome_sandbox_to_orb_with_faults_and_three_kills(
    tmp_path: Path, orb_fake: OrbFake, orb_server: LoopbackServer,
) -> None:
    with metronome_sandbox.start() as sandbox:
        source = {"bearer_token": metronome_sandbox.TOKEN, "base_url": sandbox.url,
                  "rate_limit": "0"}
        customers = list(metronome_sandbox.CUSTOMERS)
        # The seeded customers get more grants, so that three kills land mid-run.
        with bc.get_provider("metronome-plans", **source) as plans:
            rng = random.Random(8)
            for n in range(240):
                amount = Decimal(rng.randint(100, 50_000)) / 100
                plans.create_grant(bc.CreditGrant(
                    customer_id=customers[n % 3], name=f"bulk {n}",
                    amount=bc.Money(amount=amount, currency="USD"),
                    paid_amount=bc.Money(amount=amount / 2, currency="USD") if n % 2 else None,
                    priority=Decimal(rng.randint(0, 100)),
                    effective_at=DAY - timedelta(days=2),
                    expires_at=DAY + timedelta(days=30 + n % 60), idempotency_key=f"bulk-{n}"))
        target = orb_settings(orb_server, priority="record", invoice="on")
        path, summary = plan(tmp_path, "metronome-plans", "orb", source, target,
                             sandbox.files["customers.csv"], "--priority", "preserve-order",
                             "--lenient")
        planned = bc.MigrationPlan.load(path)
        # The seeded grant in a custom credit unit is the one Orb cannot hold (custom pricing
        # units are not offered by this provider): refused, named, the rest planned.
        assert [r.source_id for r in planned.refusals]
        assert all(
            "custom credit units" in (r.reason or "") for r in planned.refusals)
        assert len(planned.to_create) == 245
        # The plan names each customer whose burn order changes on Orb, and why.
        differs = summary["consumption_differs"]
        named = json.dumps(differs)
        for customer in customers:
            assert customer in named, f"{customer} not named in {differs}"
        changes = [c for item in planned.to_create for c in item.changes]
        assert any(c.field == "priority" and "does not order consumption" in c.why
                   for c in changes), "the recorded priority is reported"
        assert any(c.field == "paid_amount" and "not invoiced" in c.why for c in changes)

        runs = apply_with_kills(path, target, kills=3, seed=13)
        assert len(runs) == 4
        assert runs[-1]["created"] + runs[-1]["already_done"] == 245

        keys = Counter(b.metadata.get("bc_idempotency_key") for b in orb_fake.blocks.values())
        assert len(orb_fake.blocks) == 245, "a duplicate or a missing block"
        assert set(keys.values()) == {1}
        assert set(keys) == {item.key for item in planned.to_create}
        paid = [b for b in orb_fake.blocks.values() if Decimal(b.cost_basis or 0) > 0]
        assert len(paid) > 100
        invoiced = {i["metadata"]["credit_block"]: i for i in orb_fake.invoices}
        assert {b.id for b in paid} <= set(invoiced)
        assert {i["status"] for i in orb_fake.invoices} == {"paid"}, "no invoice left to collect"
        assert {i["amount_due"] for i in orb_fake.invoices} == {"0.00"}
        for customer, units in planned.totals().items():
            held = sum((b.initial for b in orb_fake.blocks.values() if b.customer == customer),
                       Decimal(0))
            assert held == Decimal(units["USD"]["planned"])
        assert sum(orb_server.faults.stats.injected.values()) > 10
        assert orb_fake.conflicts == [], "no key was ever sent with two payloads"

        result = CliRunner().invoke(cli, ["migrate", "verify", str(path),
                                          *flags("-T", target)])
        assert result.exit_code == 0, result.output
        assert "checked 245 planned grant(s): all present once, as planned" in result.output


def test_stripe_to_orb_and_back_with_faults_and_kills(
    tmp_path: Path, orb_fake: OrbFake, orb_server: LoopbackServer,
) -> None:
    stripe_fake = StripeFake(seed=9)
    customers = [f"cus_{i:03d}" for i in range(4)]
    with serve(stripe_fake, faults(6)) as stripe_server:
        source = stripe_settings(stripe_server)
        with bc.get_provider("stripe", **source) as stripe:
            for n in range(160):
                stripe.create_grant(bc.CreditGrant(
                    customer_id=customers[n % 4], name=f"grant {n}",
                    amount=bc.Money(amount=Decimal(n + 1), currency="USD"),
                    paid_amount=bc.Money(amount=Decimal(n + 1), currency="USD")
                    if n % 3 == 0 else None,
                    effective_at=DAY - timedelta(days=2),
                    expires_at=DAY + timedelta(days=40), idempotency_key=f"s-{n}"))
        for customer in customers:
            orb_fake.add_customer(f"orb_{customer}")
        target = orb_settings(orb_server)
        path, _ = plan(tmp_path, "stripe", "orb", source, target,
                       "source,target\n" + "".join(f"{c},orb_{c}\n" for c in customers),
                       "--amount", "original", "--lenient")
        planned = bc.MigrationPlan.load(path)
        assert len(planned.to_create) == 160
        assert planned.refusals == []
        apply_with_kills(path, target, kills=1, seed=5)
        assert len(orb_fake.blocks) == 160
        assert {i["status"] for i in orb_fake.invoices} == {"paid"}
        verify = CliRunner().invoke(cli, ["migrate", "verify", str(path), *flags("-T", target)])
        assert verify.exit_code == 0, verify.output

        # ... and back out of Orb into a fresh Stripe account.
        back_fake = StripeFake(seed=10)
        (tmp_path / "back").mkdir()
        with serve(back_fake, faults(7)) as back_server:
            back = stripe_settings(back_server)
            back_path, _ = plan(tmp_path / "back", "orb", "stripe", target, back,
                                "source,target\n" + "".join(
                                    f"orb_{c},cus_back_{c[4:]}\n" for c in customers),
                                "--amount", "original", "--lenient")
            back_plan = bc.MigrationPlan.load(back_path)
            assert len(back_plan.to_create) == 160
            apply_with_kills(back_path, back, kills=1, seed=6)
            assert len(back_fake.grants) == 160
            paid = [g for g in back_fake.grants.values()
                    if "bc_paid_amount" in g["metadata"]]
            assert len(paid) == len([n for n in range(160) if n % 3 == 0])
            verify = CliRunner().invoke(cli, ["migrate", "verify", str(back_path),
                                              *flags("-T", back)])
            assert verify.exit_code == 0, verify.output
