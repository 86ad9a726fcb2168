"""The ``slow`` marker, for the whole suite (``tests/`` and ``providers/``).

``.venv/bin/python -m pytest -m "not slow"`` runs everything else in under a minute (see the
README). A test is listed here when ``--durations`` showed it taking about a second or more on
2 cores: end-to-end runs with faults and kills, subprocesses and servers, property tests with
many examples, timing tests that wait on purpose. Entries are node-id prefixes: a file marks
every test in it, ``FILE::NAME`` one test with all its parameters. One list, kept beside its
measurements, rather than decorators scattered over files that other changes also touch.
"""

from __future__ import annotations

import warnings

import pytest

SLOW = (
    # end-to-end: migrations with faults and kills (9-110 s), memory at scale (8-25 s)
    "tests/migration/test_end_to_end.py",
    "tests/migration/test_streaming.py::test_memory_per_planned_grant_is_a_small_index_not_the_plan",
    "tests/migration/test_cli_summaries.py::test_plan_onto_a_coarser_clock_aligns_and_summarizes",
    "tests/test_migration.py::test_four_concurrent_applies_count_each_grant_once",
    "tests/test_migration.py::test_apply_lists_each_customer_once_up_front",
    # the README and the guide run verbatim (subprocesses, a sandbox)
    "tests/test_readme_migration.py::test_try_a_migration_runs_verbatim",
    "tests/test_docs_snippets.py::test_snippet_runs",
    "tests/test_docs_snippets.py::test_readme_command_line_block_runs",
    "tests/test_cli_ledger.py::test_readme_ledger_example_runs_verbatim",
    "tests/test_readme.py::test_python_example_runs_verbatim",
    "tests/simulator/test_browser.py",  # Chromium
    # sandboxes and subprocesses
    "tests/test_sandbox.py::test_a_sandbox_started_from_a_script_stops_on_ctrl_c_and_sigterm",
    "tests/test_sandbox.py::test_sandbox_masks_every_secret_setting_including_a_plugins",
    "tests/test_sandbox.py::test_sandbox_json_lines_then_stops_cleanly",
    "tests/test_sandbox.py::test_sandbox_text_says_which_file_to_source",
    "tests/test_sandbox.py::test_the_metronome_demo_account_is_shaped_like_the_seeds",
    "tests/test_startup_imports.py",
    "tests/test_plugins.py::test_disabled_plugins_are_not_loaded",
    "tests/test_public_api.py::test_importing_the_testing_package_does_not_import_hypothesis",
    "tests/local/test_ledger.py::test_eight_processes_consuming_lose_nothing",
    "tests/local/test_concurrency.py",
    "tests/local/test_bulk_import.py",
    "tests/local/test_ledger.py::test_ledger_pages_lazily",
    "tests/local/test_consume_running_balance.py::test_consume_carries_the_ledgers_running",
    "tests/migration/test_seed_shaped.py",  # the seed account, planned and simulated
    "tests/simulator/test_seed_shaped_order.py",
    "tests/migration/test_import_safety.py::test_an_exported_paid_grant_is_recorded_not",
    "tests/migration/test_import_safety.py::test_a_hand_written_line_is_created_as_given",
    "tests/migration/test_stripe_target.py::test_one_listing_per_customer_and_a_late_rerun",
    "providers/metronome/tests/test_metronome_money_safety.py::test_cli_setup",
    "tests/test_fakes.py::test_rate_limit_window_slides",
    "tests/test_consumption.py::test_the_neutral_grant_examples_draw_on_their_grants",
    "tests/local/test_credentials.py::test_an_url_given_through_the_environment_is_masked_too",
    "tests/local/test_lot_order.py::test_consume_draws_what_the_engine_draws",
    "tests/test_money.py::test_money_json_round_trip_is_exact",
    "providers/orb/tests/test_migration_end_to_end.py",
    "providers/orb/tests/test_translate.py",
    "providers/orb/tests/test_payloads.py",
    "providers/orb/tests/test_hostile.py",
    "tests/test_quiet_faults.py::test_sigterm_during_export_removes_the_partial_file",
    "tests/test_redact_encodings.py::test_the_cli_prints_an_encoded_echo_nowhere",
    "tests/local/test_clock_race.py",
    "tests/test_bounded_input.py::test_dev_zero_ends_with_a_clear_error_quickly_and_small",
    "tests/test_bounded_input.py::test_import_of_a_device_writes_rejects_in_the_working_folder",
    "providers/metronome/tests/test_metronome_fake_contract.py::test_the_sdk_drives_the_fake",
    "providers/orb/tests/test_sandbox.py",
    # property tests with many examples
    "tests/test_fuzz.py",
    "tests/test_consumption.py::test_consumed_plus_expired_plus_remaining_is_granted_exactly",
    "tests/test_consumption.py::test_invariants_hold",
    "tests/test_consumption.py::test_draws_follow_the_declared_order_and_drain_before_moving_on",
    "tests/test_capabilities.py::test_strategy_grants_fit_their_capabilities",
    "tests/simulator/test_properties.py",
    "tests/test_model.py::test_json_round_trip_of",
    "tests/test_model.py::test_as_new_drops_read_back_fields_only",
    "tests/test_model.py::test_times_are_normalized_to_utc",
    "tests/test_priority.py::test_preserve_order_stripe_domain",
    "tests/test_secrets_everywhere.py::test_secret_appears_nowhere",
    "providers/metronome/tests/test_metronome_translate.py::test_round_trip",
    "providers/stripe/tests/test_translate.py::test_neutral_to_stripe_to_neutral_is_lossless",
    "providers/stripe/tests/test_ledger.py::test_the_fake_burns_in_the_declared_order",
    "providers/metronome/tests/test_metronome_ledger.py::test_the_fake_burns_in_the_declared_order",
    # waiting on purpose: rate limits, slow drips, huge bodies
    "tests/test_runtime.py::test_rate_limit_spaces_calls",
    "providers/stripe/tests/test_hostile.py::test_a_slow_drip_ends_at_the_total_deadline",
    "providers/stripe/tests/test_hostile.py::test_a_huge_error_body_gives_a_bounded_error",
    "providers/metronome/tests/test_metronome_hostile.py::test_a_slow_drip_ends_at_the_total_deadline",
    "providers/metronome/tests/test_metronome_hostile.py::test_a_huge_error_body_gives_a_bounded_error",
    "providers/stripe/tests/test_key_memory.py::test_lookup_cost_is_one_list_request_per_100_grants",
    # property tests over many examples, measured at integration (6.7 s, 1.8 s, 1.7 s, 1.1 s)
    "providers/orb/tests/test_timezone.py::test_through_the_fake_the_stored_window_is_inside_the_requested_one",
    "providers/stripe/tests/test_vendor_semantics.py::test_hostile_test_clock_answers_raise_only_library_errors",
    "tests/test_bounded_input.py::test_a_file_of_bare_newlines_costs_its_size_not_an_object_per_line",
    "tests/test_model.py::test_as_new_without_changes_is_what_validation_makes",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    used: set[str] = set()
    for item in items:
        for prefix in SLOW:
            if item.nodeid == prefix or item.nodeid.startswith(
                    (prefix + "::", prefix + "[", prefix + "_") if "::" in prefix
                    else (prefix + "::",)):
                item.add_marker(pytest.mark.slow)
                used.add(prefix)
                break
    # A listed test renamed or moved would silently join the fast subset: say so (only when
    # the whole suite was collected, so that running one file does not warn).
    if config.args_source == pytest.Config.ArgsSource.TESTPATHS:
        for prefix in sorted(set(SLOW) - used):
            warnings.warn(f"conftest.SLOW lists {prefix!r}, which matches no test",
                          pytest.PytestConfigWarning, stacklevel=1)
