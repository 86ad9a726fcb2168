#!/usr/bin/env bash
# Sets up a virtual environment in .venv with billing-credits, its first-party providers and the
# test tools, then runs the main job on the embedded `local` provider: create a grant (safe to
# repeat: it carries an idempotency key) and list the customer's grants.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { echo "billing-credits needs Python 3.11 or newer" >&2; exit 1; }
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -r requirements-dev.txt
bc=.venv/bin/billing-credits
set -x
$bc providers
$bc grants create --customer cus_quickstart --amount 25.00 --currency USD \
  --name "Welcome credit" --category promotional --priority 10 \
  --expires-at 2030-01-01T00:00:00Z --idempotency-key quickstart-welcome
$bc grants list --customer cus_quickstart
