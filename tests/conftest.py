"""Shared test helpers: the CLI run in this process or as a real subprocess, the unit/integration split, and the
session's thread count and fake calibration cache.

Two loops (markers registered in pyproject.toml):
    python -m pytest -q -m "not integration"   # the unit loop: no training, no sweep children, servers or Flower
    python -m pytest -q                        # everything
"""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
import warnings
from dataclasses import dataclass, replace

import pytest


@pytest.fixture(autouse=True, scope="session")
def _few_threads():
    """Tests share a 2-core machine: keep torch from oversubscribing it. Under pytest-xdist each worker gets its
    share of the cores, so two workers on two cores do not fight over them."""
    import os

    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    try:
        import torch

        torch.set_num_threads(max(1, min(2, (os.cpu_count() or 1) // workers)))
    except ImportError:  # pragma: no cover
        pass


@pytest.fixture(params=[True, False], ids=["cpu-bf16-native", "cpu-bf16-emulated"])
def cpu_native_bf16(request, monkeypatch) -> bool:
    """The host CPU's bfloat16 flags faked both ways (AVX512-BF16 present, or a CPU like a Raspberry Pi's without
    it), through the real /proc/cpuinfo parser: a test that takes this fixture runs twice and cannot pass or fail
    because of the CPU it runs on. The value is whether the faked CPU has native bfloat16."""
    import w2vprof.devices.cpu as cpu

    flags = "fpu sse2 avx2 avx512f" + (" avx512_bf16" if request.param else "")
    cpuinfo = f"processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: {flags}\n"
    monkeypatch.setattr(cpu, "read_native_bf16", lambda root="/": cpu.has_native_bf16(cpuinfo))
    native: bool = request.param
    return native


@dataclass(frozen=True)
class CliResult:
    """What a user sees of one `w2vprof` run: the exit status and everything written to stdout and stderr."""

    returncode: int
    stdout: str
    stderr: str


def run_cli_in_process(*args: str) -> CliResult:
    """`w2vprof ARGS` through the console-script entry (w2vprof.cli.main.run) in this process.

    The same error mapping and exit status as the installed command, without a subprocess's interpreter start and
    torch import (about 2 s of CPU each). Python warnings are shown as a plain run shows them (Python's default
    filters) and land in stderr, so a "one line on stderr" assertion still sees a stray warning.
    """
    from w2vprof.cli.main import run

    stdout, stderr = io.StringIO(), io.StringIO()
    with warnings.catch_warnings(record=True) as caught:
        _python_default_warning_filters()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                run(list(args))
            except SystemExit as stop:
                returncode = _exit_status(stop.code, stderr)
            else:  # pragma: no cover - run() always ends in sys.exit
                raise AssertionError("w2vprof.cli.main.run returned instead of exiting")
    shown = "".join(warnings.formatwarning(w.message, w.category, w.filename, w.lineno, w.line) for w in caught)
    return CliResult(returncode, stdout.getvalue(), stderr.getvalue() + shown)


def _python_default_warning_filters() -> None:
    """The filters a plain `python` starts with (pytest's own differ): deprecations and the like stay hidden."""
    warnings.resetwarnings()
    warnings.simplefilter("default")
    for hidden in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
        warnings.simplefilter("ignore", hidden)


def _exit_status(code: object, stderr: io.StringIO) -> int:
    """The status a process would end with for `sys.exit(code)`: None is 0, a message is printed and is 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=stderr)
    return 1


def run_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run `w2vprof ARGS` as a real subprocess (exit status and stderr as a user sees them).

    Slow (a fresh interpreter, often a torch import): kept for what only a process shows - the exit code the
    shell gets, what `--help` imports, a signal. Everything else uses run_cli_in_process.
    """
    return subprocess.run(
        [sys.executable, "-m", "w2vprof.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


#: The ceilings of the fake calibration every test finds in its cache (so no test measures this machine's).
FAKE_PEAK_FLOPS_FP32 = 123e9
FAKE_PEAK_FLOPS_MIXED = 234e9
FAKE_MEM_BW = 12.5e9


@pytest.fixture(autouse=True, scope="session")
def _fake_calibration_cache(_few_threads, tmp_path_factory):
    """A cache folder of the session's own (XDG_CACHE_HOME, inherited by the CLI subprocesses) holding a fake
    calibration of this CPU at the tests' thread count: a sweep finds it and measures nothing, and no test reads
    or writes the user's ~/.cache."""
    import os

    import torch

    from w2vprof.devices import identify
    from w2vprof.devices.calibrate import Calibration, cache_path, mixed_dtype_name

    folder = tmp_path_factory.mktemp("xdg-cache")
    previous = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(folder)
    identity = identify("cpu")
    fake = Calibration(
        device="cpu",
        device_fingerprint=str(identity["device_fingerprint"]),
        device_name="fake",
        threads=torch.get_num_threads(),
        peak_flops_fp32_measured=FAKE_PEAK_FLOPS_FP32,
        peak_flops_mixed_measured=FAKE_PEAK_FLOPS_MIXED,
        mixed_dtype=mixed_dtype_name("cpu"),
        mem_bw_measured=FAKE_MEM_BW,
        matmul_size_fp32=2048,
        matmul_size_mixed=2048,
        copy_bytes=2**28,
        repeats=5,
        peak_flops_fp32_vendor=None,
        peak_flops_mixed_vendor=None,
        vendor_profile="",
        torch_version=torch.__version__,
        measured_at="2026-01-01T00:00:00+00:00",
        note="fake (tests/conftest.py)",
    )
    # one per thread count a test may run at: this process's (one under pytest-xdist), a child's default, --threads 2
    for threads in {torch.get_num_threads(), os.cpu_count() or 1, 1, 2}:
        path = cache_path(fake.device_fingerprint, threads)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(replace(fake, threads=threads).to_json(), encoding="utf-8")
    yield fake
    if previous is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = previous


# -- the unit/integration split -------------------------------------------------------------------------------------
#: Tests marked `integration` (pyproject.toml says what that means), by module: the names of its tests (one
#: parameter set: "name[id]"), or of fixtures whose every user is one, that train or run the network, draw figures,
#: run a profile or a sweep's children, start a process that imports torch or a server, run Flower, or fuzz a reader
#: with thousands of cases. "*": the whole module.
#: Kept here so no test file needs editing; a test may also carry @pytest.mark.integration itself.
INTEGRATION: dict[str, frozenset[str]] = {
    "test_compat": frozenset(
        {
            "test_training_probe_works_on_cpu_in_both_precisions",
            "test_training_probe_reports_the_failure_in_one_line",
        }
    ),
    "test_device_rules": frozenset(
        {
            "test_lengths_on_the_host_or_with_the_batch_give_the_same_step",
            "test_a_training_step_makes_no_float64_tensor",
            "test_a_tiny_profile_makes_no_float64_tensor",
            "test_the_model_reads_no_tensor_value_in_a_step",
        }
    ),
    # its module fixture `report` runs the real doctor (a training probe)
    "test_doctor": frozenset(
        {
            "report",
        }
    ),
    "test_files": frozenset(
        {
            "test_a_killed_holder_never_blocks",
        }
    ),
    # a real (shrunken) calibration forked from the sweep's fork server
    "test_first_run": frozenset(
        {
            "test_a_real_calibration_comes_from_the_fork_server",
        }
    ),
    # one real `fl simulate --fleet` (the rest of the module tests its pieces without Flower's simulation)
    "test_fl_fleet": frozenset(
        {
            "test_simulate_on_a_fleet_cuts_the_slow_device_and_still_learns",
        }
    ),
    # its module fixture `simulated` runs a Flower simulation
    "test_fl_flower": frozenset(
        {
            "simulated",
        }
    ),
    "test_fl_rehearsal": frozenset(
        {
            "test_federated_plots_draw_and_skip_what_has_no_data",
            "test_write_plots_writes_each_png_whole",
        }
    ),
    "test_fl_tls": frozenset(
        {
            "test_deploy_local_rehearses_over_tls_and_turns_strangers_away",
        }
    ),
    "test_golden_numbers": frozenset(
        {
            "tiny_profile",
        }
    ),
    "test_layer_timing": frozenset(
        {
            "tiny_step",
        }
    ),
    "test_layer_wiring": frozenset(
        {
            "test_every_new_plot_draws_and_degrades_without_data",
            "test_the_report_shows_layer_times_and_the_roofline",
            "test_the_report_degrades_without_layer_times_or_calibration",
            "profiled",
            "test_a_slow_layer_lands_on_that_layer_and_direction_in_the_records",
            "test_a_failing_layer_timing_is_a_warning_and_the_measurement_stands",
            "test_without_layer_repeats_layers_have_no_times_and_no_other_row",
            "test_a_trace_that_cannot_be_written_is_a_warning",
            "test_a_real_sweep_child_records_layer_times_and_the_calibration",
        }
    ),
    "test_measurement_pass": frozenset(
        {
            "*",
        }
    ),
    "test_mixed_precision": frozenset(
        {
            "cpu_float16_scaled",
            "test_warm_up_runs_until_the_scale_stops_falling_and_skipped_steps_are_counted",
            "test_warm_up_is_bounded_and_the_state_is_allocated_when_every_step_overflows",
            "test_fp32_and_bfloat16_rows_record_no_skipped_steps",
            "test_allocating_adamw_state_ahead_changes_nothing_that_follows",
        }
    ),
    "test_objective": frozenset(
        {
            "test_padded_batch_scores_only_real_frames",
            "test_untrained_contrastive_loss_is_near_ln_101",
            "test_gradients_reach_conv_stack_codebook_and_mask_embedding",
            "test_tiny_training_step_updates_every_parameter_group",
        }
    ),
    "test_old_torch": frozenset(
        {
            "test_the_tiny_profile_goldens_hold_with_the_fallback_counter",
            "test_the_fallback_counts_a_training_step_as_torchs_counter",
            "test_checkpointing_announces_its_recomputation_without_context_fn",
        }
    ),
    "test_profile": frozenset(
        {
            "tiny_profile",
            "test_mixed_precision_on_cpu_runs_in_bfloat16",
            "test_unsupported_precision_is_a_record_not_a_crash",
            "test_any_failure_while_measuring_is_a_one_line_record_not_a_traceback",
            "test_an_out_of_memory_while_measuring_is_an_oom_record",
            "test_a_model_built_ahead_gives_the_same_numbers_and_is_measured_once",
            "test_deterministic_with_seed",
            "test_activation_memory_and_flops_grow_linearly_with_length",
            "test_profile_bad_input_is_one_line_and_exit_2",
            "test_profile_out_in_missing_folder",
            "test_cuda_request_without_cuda_is_bad_input",
        }
    ),
    "test_python38_source": frozenset(
        {
            "test_vermin_finds_nothing_newer_than_python_38",
        }
    ),
    # 2,000 generated files per reader (the truncation tests stay in the unit loop)
    "test_readers_fuzz": frozenset(
        {
            "test_results_reader",
            "test_resume_reader",
            "test_layers_reader",
            "test_rounds_reader",
            "test_clients_reader",
            "test_summary_reader",
            "test_profiles_reader",
            "test_manifest_reader",
        }
    ),
    "test_recipes": frozenset(
        {
            "test_report_recipes_table_relative_to_the_default",
            "measured",
            "test_compile_time_is_kept_out_of_the_timed_steps",
            "test_profile_writes_the_recipe_columns",
            "test_a_platform_that_cannot_compile_is_unsupported",
            "test_a_compiler_that_fails_is_unsupported_with_its_reason",
        }
    ),
    # these draw every figure of a report (matplotlib); the bad-input cases stay in the unit loop
    "test_report": frozenset(
        {
            "test_every_plot_draws_and_degrades_without_data",
            "test_report_writes_every_table_and_plot",
            "test_report_with_the_paper_puts_your_device_in_table2",
            "test_report_notes_a_missing_layers_file_and_one_precision",
            "test_report_plots_federated_runs",
        }
    ),
    # Table 1's counts against a real forward pass (tiny and base); the counts on the meta device stay
    "test_summary": frozenset(
        {
            "test_meta_count_equals_a_real_pass",
            "test_conv_and_linear_flops_equal_twice_fvcore",
            "test_summary_never_imports_torch_dynamo_and_compile_still_works_after",
        }
    ),
    "test_sweep": frozenset(
        {
            "test_two_sweeps_on_one_file_started_together_one_runs_the_other_exits_2",
            "test_resident_memory_watcher_reads_a_real_process",
            "test_children_match_an_in_process_profile_and_limits_stop_only_the_child",
            "test_a_template_killed_mid_run_costs_that_configuration_only",
            "test_sigkill_then_resume_runs_exactly_the_missing_configurations",
            "test_sigterm_stops_cleanly_with_the_resume_command",
        }
    ),
    "test_telemetry": frozenset(
        {
            "*",
        }
    ),
    "test_trace": frozenset(
        {
            "*",
        }
    ),
    "test_unified_memory": frozenset(
        {
            "test_a_profile_records_both_peaks",
            "test_a_unified_memory_device_profile_uses_the_mem_available_formula",
        }
    ),
}


def is_integration(module: str, test: str, test_id: str, fixtures: list[str]) -> bool:
    """Whether INTEGRATION names this test (its function, or one parameter set: test_id) or one of its fixtures."""
    names = INTEGRATION.get(module, frozenset())
    return "*" in names or test in names or test_id in names or not names.isdisjoint(fixtures)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        module = item.module.__name__.rpartition(".")[2] if getattr(item, "module", None) else ""
        test = getattr(item, "originalname", item.name)
        if is_integration(module, test, item.name, list(getattr(item, "fixturenames", ()))):
            item.add_marker(pytest.mark.integration)
