"""``python -m billing_credits`` runs the command line."""

from ._cli import main

main()
