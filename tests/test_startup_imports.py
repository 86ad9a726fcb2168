"""Start-up (issue 10): listing the installed providers loads no vendor SDK, no HTTP client and
no pydantic model.

``billing-credits providers`` imports every installed plugin to read its provider classes; the
plugins import the stripe SDK and httpx on first real use (constructing a provider, sending a
request), and the models load when a grant is first handled, so listing stays fast. Each check
runs in a fresh interpreter and reads ``sys.modules``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

# The vendor SDKs, the HTTP client (and rich, which httpx's command line pulls in), pydantic
# (no model is built to describe a provider).
HEAVY = {"stripe", "httpx", "requests", "metronome", "orb", "rich", "pydantic", "pydantic_core"}

# Everything `billing-credits providers` prints (and --json), read from every provider class.
READ_EVERY_PROVIDER = """
import json, sys
import billing_credits as bc
from billing_credits.plugins._registry import providers

for name, cls in providers().items():
    rows = cls.capabilities.describe()
    settings = [(s.name, s.env, s.secret, s.help) for s in cls.settings]
    order = cls.consumption_order
    notes = cls.capabilities.notes
    assert name == cls.name and rows and isinstance(notes, tuple), name
info = bc.available_providers()
print(json.dumps({"providers": [p.name for p in info],
                  "loaded": sorted({m.split(".")[0] for m in sys.modules})}))
"""

RUN_THE_COMMAND = """
import json, sys
from click.testing import CliRunner
from billing_credits.cli import cli

outputs = []
for args in (["providers"], ["providers", "--json"], ["providers", "stripe"], ["providers", "orb"]):
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, (args, result.output)
    outputs.append(result.output)
print(json.dumps({"output": outputs[2], "orb": outputs[3],
                  "loaded": sorted({m.split(".")[0] for m in sys.modules})}))
"""


def run(code: str) -> dict[str, object]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("BILLING_CREDITS_")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=environment, check=True, timeout=120)
    answer: dict[str, object] = json.loads(done.stdout)
    return answer


def test_reading_every_installed_provider_class_imports_no_sdk_httpx_nor_pydantic() -> None:
    answer = run(READ_EVERY_PROVIDER)
    names = answer["providers"]
    assert isinstance(names, list)
    assert {"local", "stripe", "metronome", "metronome-plans", "orb"} <= set(names)
    loaded = set(answer["loaded"])  # type: ignore[call-overload]
    assert {"billing_credits_stripe", "billing_credits_metronome", "billing_credits_orb"} <= loaded
    assert not loaded & HEAVY, sorted(loaded & HEAVY)


def test_the_providers_command_imports_no_sdk_httpx_nor_pydantic() -> None:
    answer = run(RUN_THE_COMMAND)
    assert "api_key" in str(answer["output"])  # the stripe provider's settings were printed
    for setting in ("api_key", "ORB_API_KEY", "base_url", "ORB_BASE_URL", "ORB_CUSTOMER_IDS"):
        assert setting in str(answer["orb"])  # `billing-credits providers orb` lists them
    loaded = set(answer["loaded"])  # type: ignore[call-overload]
    assert not loaded & HEAVY, sorted(loaded & HEAVY)


def test_constructing_a_provider_loads_what_it_sends_requests_with() -> None:
    """The lazy imports happen on first use: a constructed provider has its SDK and client."""
    answer = run("""
import json, sys
import billing_credits as bc
before = sorted({m.split(".")[0] for m in sys.modules})
stripe = bc.get_provider("stripe", api_key="sk_test_startup")
metronome = bc.get_provider("metronome-plans", bearer_token="startup-token")
metronome._http.client  # the sync httpx client is made on first use
orb = bc.get_provider("orb", api_key="orb_test_startup")
stripe.close(); metronome.close(); orb.close()
print(json.dumps({"before": before, "loaded": sorted({m.split(".")[0] for m in sys.modules})}))
""")
    assert not set(answer["before"]) & HEAVY  # type: ignore[call-overload]
    assert {"stripe", "httpx", "orb"} <= set(answer["loaded"])  # type: ignore[call-overload]
