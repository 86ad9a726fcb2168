"""``python -m billing_credits`` runs the command line."""

from .cli import main

main()
