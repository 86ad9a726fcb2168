"""Check that the suite guards itself: each mutation below breaks the code (or, for a test's
own strategy, the test) the way a real defect would, and the tests named for it must fail.

Each mutation is applied to a temporary copy of the tree (the working tree is never changed),
and pytest runs the named tests there with the copy's packages first on ``PYTHONPATH``. The
code to change is found by a text snippet that occurs exactly once in the tree, not by a path
and line, so the script keeps working when files move.

    python scripts/mutations.py            # every mutation; exit 1 if any survives
    python scripts/mutations.py --list     # the mutations and their tests
    python scripts/mutations.py -k verify  # those whose name contains "verify"
    python scripts/mutations.py --baseline # also check the named tests pass unmutated

Run it with the project's virtual environment (``.venv/bin/python``); tests/README.md says
which mutations there are and what each one's failure looks like.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEARCHED = ("src", "providers", "examples", "tests")
IGNORED = shutil.ignore_patterns(".venv", ".git", "__pycache__", ".mypy_cache", ".ruff_cache",
                                 ".hypothesis", "*.egg-info", ".pytest_cache")


@dataclass(frozen=True)
class Mutation:
    name: str
    find: str
    replace: str
    tests: tuple[str, ...]
    """pytest arguments selecting the tests that must fail."""


MUTATIONS = (
    # -- issue 21, points 1-7 -------------------------------------------------------------------
    Mutation(
        "insert_many commits after every row",
        find="""                fresh.append((row, grant))  # lots only for what is written
            tx.insert_grants(fresh)
            return result
        return self.transaction(work)""",
        replace="""                fresh.append((row, grant))  # lots only for what is written
            pending.extend(fresh)
            return result
        pending: list[tuple[Row, bc.CreditGrant]] = []
        decided = self.transaction(work)
        for one in pending:  # each row in a transaction of its own
            self.transaction(lambda tx, one=one: tx.insert_grants([one]))
        return decided""",
        tests=("tests/local/test_bulk_import.py::test_a_batch_is_one_transaction",),
    ),
    Mutation(
        "the neutral-grant property's usage is for a customer no grant has",
        find="            customer_id=g.customer_id, amount=g.amount.with_amount(draw(AMOUNTS)),",
        replace='            customer_id="c", amount=g.amount.with_amount(draw(AMOUNTS)),',
        tests=("tests/test_consumption.py::test_the_neutral_grant_examples_draw_on_their_grants",),
    ),
    Mutation(
        "apply voids a source grant before the journal refuses the target",
        find="""    scan, creator, book = _start(plan, target, journal, source, retire, keep)
""",
        replace="""    if retire is not None and source is not None:
        for grant in list(source.list_grants()):
            if grant.status is GrantStatus.ACTIVE and grant.id:
                await source.avoid_grant(grant.id)
                break
    scan, creator, book = _start(plan, target, journal, source, retire, keep)
""",
        tests=("tests/test_migration.py::test_a_journal_is_tied_to_its_plan_and_target",),
    ),
    Mutation(
        "Stripe's currency list has CUP in place of UZS (the fake follows it)",
        find='"UYU", "UZS", "VND",',
        replace='"UYU", "CUP", "VND",',
        tests=("providers/stripe/tests/test_limits.py::"
               "test_the_provider_and_the_fake_take_exactly_the_documented_currencies",),
    ),
    Mutation(
        "LOCAL_ORDER consumes higher priorities first",
        find='OrderRule("priority", "asc", "billing-credits documented", "lower first; none last")',
        replace='OrderRule("priority", "desc", "billing-credits documented", "lower first; none last")',
        tests=("tests/local/test_conformance.py", "-k", "test_consume_burns_down_in_the_declared_order"),
    ),
    Mutation(
        "the engine draws on the open windows in reverse order",
        find="                                 pair[1].index))",
        replace="                                 pair[1].index), reverse=True)",
        # local consumes from its lots (schema 3), not through the engine: the engine's own tests
        tests=("tests/test_consumption.py", "tests/local/test_lot_order.py"),
    ),
    Mutation(
        "the Stripe fake answers livemode as a string",
        find='            "livemode": live,\n            "metadata": metadata,',
        replace='            "livemode": str(live).lower(),\n            "metadata": metadata,',
        tests=("providers/stripe/tests/test_fake.py::test_every_response_parses_with_the_sdk_objects",),
    ),
    Mutation(
        "the Stripe fake answers amount='garbage'",
        find='            "amount": amount,\n            "applicability_config": {"scope": scope},',
        replace='            "amount": "garbage",\n            "applicability_config": {"scope": scope},',
        tests=("providers/stripe/tests/test_fake.py::test_every_response_parses_with_the_sdk_objects",),
    ),
    Mutation(
        "the fake kit calls the app without its lock",
        find="""        with self.lock:
            response = self.app.handle(request)""",
        replace="""        if True:
            response = self.app.handle(request)""",
        tests=("tests/test_fakes.py::test_the_app_handles_one_request_at_a_time",),
    ),
    # -- verify_plan: each comparison it documents ------------------------------------------------
    Mutation(
        "verify_plan does not compare amounts",
        find='            for name, a, b in (("amount", want.amount, stored.amount),\n'
             '                               ("priority",',
        replace='            for name, a, b in (("priority",',
        tests=("tests/migration/test_verify.py::test_a_different_amount_is_reported",),
    ),
    Mutation(
        "verify_plan does not compare priorities",
        find='                               ("priority", want.priority, stored.priority),\n',
        replace="",
        tests=("tests/migration/test_verify.py::test_a_different_priority_is_reported",),
    ),
    Mutation(
        "verify_plan does not compare customers",
        find='                               ("customer_id", want.customer_id, stored.customer_id)):',
        replace="                               ):",
        tests=("tests/migration/test_verify.py::test_a_different_customer_is_reported",),
    ),
    Mutation(
        "verify_plan does not compare per-customer totals",
        find='                totals.append((customer, f"total {unit}", want_total, str(got_total)))',
        replace="                pass",
        tests=("tests/migration/test_verify.py::test_a_per_customer_total_that_differs_is_reported",),
    ),
    Mutation(
        "verify_plan does not report duplicates",
        find="            if stored.count > 1:\n",
        replace="            if False:\n",
        tests=("tests/migration/test_verify.py::test_a_duplicate_is_reported",),
    ),
    Mutation(
        "verify_plan does not report missing grants",
        find='                per_key.append((position, "missing", (key, "", "", "")))',
        replace="                pass",
        tests=("tests/migration/test_verify.py::test_a_missing_grant_is_reported",),
    ),
    Mutation(
        "the check before a consume reads the customer's whole ledger (issue 16: constant cost)",
        # ``+at`` keeps the query's meaning but stops SQLite from using the (customer_id, at) index
        find='WHERE customer_id = ? AND at >= ? AND unit = ? "',
        replace='WHERE customer_id = ? AND +at >= ? AND unit = ? "',
        tests=("tests/local/test_constant_cost.py",),
    ),
    Mutation(
        "retire ignores a voided target grant",
        find="if stored.amount != amount or stored.customer_id != customer_id or stored.voided:",
        replace="if stored.amount != amount or stored.customer_id != customer_id:",
        tests=("tests/migration/test_verify.py::"
               "test_retire_leaves_the_source_when_its_target_grant_was_voided",),
    ),
    # -- issue 17: the fast paths keep every guarantee ---------------------------------------------
    Mutation(
        "a vendor page in UTF-16 is trusted without a check of its strings",
        find='    if not json.detect_encoding(content).startswith("utf-8"):\n        return False\n',
        replace="",
        tests=("tests/test_model.py::test_json_text_is_valid_only_when_no_string_can_hold_a_surrogate",
               "providers/metronome/tests/test_metronome_hostile.py::"
               "test_a_page_is_trusted_only_when_its_text_cannot_hold_a_surrogate"),
    ),
    Mutation(
        "the request hash's direct text writes metadata in insertion order",
        find="""        f'"metadata":{_encode_sorted(metadata) if metadata else "{}"},'""",
        replace="""        f'"metadata":{json.dumps(metadata, separators=(",", ":"))"""
                """ if metadata else "{}"},'""",
        tests=("tests/local/test_bulk_import.py::test_canonical_text_is_the_encoded_canonical_form",),
    ),
    Mutation(
        "a batch's ids are not in line order",
        find="    return sorted(stamp + noise[i:i + 20] for i in range(0, 20 * count, 20))",
        replace="    return [stamp + noise[i:i + 20] for i in range(0, 20 * count, 20)]",
        tests=("tests/local/test_bulk_import.py::test_a_batch_consumes_in_the_order_of_its_lines",),
    ),
    Mutation(
        "the grant's rules let an amount of zero through",
        find='        if amount.amount <= 0:\n            found.append(FieldProblem("amount", "must be',
        replace='        if amount.amount < 0:\n            found.append(FieldProblem("amount", "must be',
        tests=("tests/test_model.py",),
    ),
    Mutation(
        "a Metronome ledger summary skips deductions that are not small whole numbers",
        find="""            else:
                whole = None
        invoice = entry.get("invoice_id")""",
        replace="""            else:
                pass
        invoice = entry.get("invoice_id")""",
        tests=("providers/metronome/tests/test_metronome_translate.py::"
               "test_deductions_are_summed_exactly_with_their_invoices",),
    ),
    Mutation(
        "a Metronome paid amount in another credit type is read in the grant's",
        find="scale if same else _scale_of(paid_type, config)",
        replace="scale",
        tests=("providers/metronome/tests/test_metronome_translate.py::"
               "test_seed_003_list_grants_reads_with_every_field_kept",),
    ),
)


def locate(tree: Path, snippet: str) -> Path:
    """The one file under ``tree`` holding ``snippet``, exactly once."""
    found = []
    for top in SEARCHED:
        for path in sorted((tree / top).rglob("*.py")):
            if ".venv" in path.parts:
                continue
            count = path.read_text(encoding="utf-8").count(snippet)
            if count:
                found.append((path, count))
    if [count for _, count in found] != [1]:
        where = ", ".join(f"{p.relative_to(tree)} ({n}x)" for p, n in found) or "nowhere"
        raise SystemExit(f"the snippet must occur exactly once; found {where}:\n{snippet}")
    return found[0][0]


def pytest_in(tree: Path, args: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    paths = [tree / "src", tree / "providers" / "stripe" / "src",
             tree / "providers" / "metronome" / "src", tree / "examples" / "billing-credits-acme"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, paths))}
    return subprocess.run(  # noqa: S603 - this interpreter, running pytest
        [sys.executable, "-m", "pytest", "-q", "-x", "--no-header", "-p", "no:randomly", *args],
        cwd=tree, env=env, capture_output=True, text=True, timeout=900, check=False)


def first_failure(output: str) -> str:
    """The first assertion or error line of a pytest run, else its summary."""
    for line in output.splitlines():
        if re.match(r"^E\s+\S", line):
            return line[1:].strip()
    failed = [line for line in output.splitlines() if line.startswith(("FAILED", "ERROR"))]
    return failed[0] if failed else output.strip().splitlines()[-1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-k", dest="pick", default="", help="only mutations whose name has this")
    parser.add_argument("--list", action="store_true", help="list the mutations and stop")
    parser.add_argument("--baseline", action="store_true",
                        help="first check the named tests pass on the tree as it is")
    options = parser.parse_args()
    chosen = [m for m in MUTATIONS if options.pick.lower() in m.name.lower()]
    if options.list:
        for m in chosen:
            print(f"{m.name}\n    {' '.join(m.tests)}")
        return 0
    survivors = 0
    with tempfile.TemporaryDirectory(prefix="bc-mutations-") as scratch:
        tree = Path(scratch) / "tree"
        shutil.copytree(ROOT, tree, ignore=IGNORED)
        if options.baseline:
            for m in chosen:
                run = pytest_in(tree, m.tests)
                if run.returncode != 0:
                    print(f"BASELINE FAILS  {' '.join(m.tests)}\n{run.stdout[-2000:]}")
                    return 1
            print(f"baseline: the named tests of {len(chosen)} mutations pass unmutated")
        for m in chosen:
            path = locate(tree, m.find)
            original = path.read_text(encoding="utf-8")
            path.write_text(original.replace(m.find, m.replace), encoding="utf-8")
            try:
                run = pytest_in(tree, m.tests)
            finally:
                path.write_text(original, encoding="utf-8")
            where = path.relative_to(tree)
            if run.returncode == 1 and " failed" in run.stdout:
                print(f"caught   {m.name} ({where})\n         {first_failure(run.stdout)}")
            else:
                survivors += 1
                print(f"SURVIVED {m.name} ({where}): pytest exit {run.returncode}\n"
                      f"{run.stdout[-1500:]}{run.stderr[-500:]}")
    print(f"{len(chosen) - survivors} of {len(chosen)} mutations caught")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
