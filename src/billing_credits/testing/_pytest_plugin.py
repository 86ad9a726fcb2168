"""pytest plugin shipped with billing-credits (entry point ``pytest11``)."""
