"""Two processes creating grants with overlapping idempotency keys: no duplicate, none lost."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import billing_credits as bc

WORKER = r"""
import sys
from decimal import Decimal
import billing_credits as bc

path, start = sys.argv[1], int(sys.argv[2])
provider = bc.get_provider("local", path=path)
ids = []
for n in range(start, start + 500):
    grant = provider.create_grant(bc.CreditGrant(
        customer_id=f"cus_{n % 7}",
        amount=bc.Money(amount=Decimal(n) / 100 + 1, currency="USD"),
        idempotency_key=f"key-{n}",
    ))
    ids.append(f"{n} {grant.id}")
print("\n".join(ids))
"""


def test_two_processes_with_overlapping_keys_make_each_grant_once(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.db")
    # Keys 0-499 and 250-749: 250 keys are created by both processes at about the same time.
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, path, str(start)],
            stdout=subprocess.PIPE, text=True,
        )
        for start in (0, 250)
    ]
    outputs = [w.communicate(timeout=240)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0]

    seen: dict[int, set[str]] = {}
    for output in outputs:
        for line in output.splitlines():
            number, grant_id = line.split()
            seen.setdefault(int(number), set()).add(grant_id)
    assert sorted(seen) == list(range(750)), "every key was answered"
    assert all(len(ids) == 1 for ids in seen.values()), "both processes got the same grant"

    with bc.get_provider("local", path=path) as provider:
        stored = list(provider.list_grants(page_size=97))
    assert len(stored) == 750
    assert len({g.idempotency_key for g in stored}) == 750
    by_key = {g.idempotency_key: g for g in stored}
    for number, ids in seen.items():
        grant = by_key[f"key-{number}"]
        assert {grant.id} == ids
        assert grant.amount.amount == Decimal(number) / 100 + 1



