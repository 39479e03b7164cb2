"""The sweep: planning, resume and retry, one writer per file, disk errors, pruning, and its child processes
(start method, model templates, memory and time limits, kills).

Most tests fake the measurement (the behaviour under test is the runner's); real tiny-model children only where
the process boundary is the point.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import datetime
from pathlib import Path

import pytest

from conftest import QuietProgress, fake_sweep_record, run_cli_in_process
from w2vprof.measure.engine import ProfileConfig
from w2vprof.records import ResultRecord, read_results_csv
from w2vprof.sweep.grid import GridSpec, expand
from w2vprof.sweep.plan import SweepRequest, default_grid, default_results_path, plan_sweep
from w2vprof.sweep.runner import ChildMeasurer, SweepOptions, run_sweep

TINY_GRID = ["--model", "tiny", "--seconds", "0.5,1", "--batch", "1,2", "--precision", "fp32", "--repeats", "1"]


def _rows(path: Path) -> list[ResultRecord]:
    return read_results_csv(path, require_rows=False)


def _keys(rows):
    return sorted((r.model, r.batch, r.seconds, r.precision) for r in rows)


class FakeMeasurer:
    """Stands in for ChildMeasurer: records what it was asked to measure, answers at once."""

    calls: list = []

    def __init__(self, device="cpu", *args, **kwargs) -> None:
        pass

    def __call__(self, config, options):
        FakeMeasurer.calls.append((config.batch, config.seconds))
        return fake_sweep_record(config, options), []

    def close(self) -> None:
        pass


@pytest.fixture
def fake_children(monkeypatch):
    """The CLI runs in-process with the measurement faked and no fork server started."""
    import w2vprof.sweep.launch
    import w2vprof.sweep.runner

    FakeMeasurer.calls = []
    monkeypatch.setattr(w2vprof.sweep.runner, "ChildMeasurer", FakeMeasurer)
    monkeypatch.setattr(w2vprof.sweep.launch, "warm_start", lambda method=None: None)
    return FakeMeasurer


def _cli(argv: list[str], capsys) -> tuple[int, str]:
    """Run `w2vprof ARGV` in this process: (exit status, stderr)."""
    from w2vprof.cli.main import run

    with pytest.raises(SystemExit) as exit_info:
        run(argv)
    return int(exit_info.value.code or 0), capsys.readouterr().err


def _plan(tmp_path: Path, name: str = "r.csv", **changes) -> object:
    request = SweepRequest(
        models=("tiny",),
        seconds=(1.0, 2.0),
        batches=(1, 2),
        precisions=("fp32",),
        repeats=1,
        device="cpu",
        out=tmp_path / name,
        **changes,
    )
    return plan_sweep(request, warm_start=False)


# -- planning ---------------------------------------------------------------------------------------------------
def test_default_results_path_names_host_and_time(tmp_path):
    path = default_results_path(tmp_path / "results", host="pi4", now=datetime(2024, 5, 6, 7, 8, 9))
    assert path == tmp_path / "results" / "pi4-20240506-070809.csv"
    assert path.parent.is_dir()


def test_default_grid_adds_mixed_on_a_cpu_only_with_native_bf16(cpu_native_bf16):
    assert default_grid("cpu", None).precisions == (("fp32", "mixed") if cpu_native_bf16 else ("fp32",))
    assert default_grid("cuda", None).models == ("base", "large")
    assert default_grid("cpu", "quick").repeats == 3


def test_plan_holds_the_files_lock_until_closed(tmp_path):
    from w2vprof.errors import BadInput

    plan = _plan(tmp_path)
    with plan:
        assert [c.device for c in plan.configs] == ["cpu"] * 4
        holder = f"{plan.out}: being written by another w2vprof process \\(pid {os.getpid()}\\)"
        with pytest.raises(BadInput, match=holder):
            _plan(tmp_path, resume=True)
    _plan(tmp_path, resume=True).close()  # released


def test_cheap_first_order():
    spec = GridSpec(("tiny", "base"), (4.0, 1.0), (4, 1), ("mixed", "fp32"))
    configs = expand(spec, "cpu", {})
    assert [c.model for c in configs[:8]] == ["tiny"] * 8
    tiny = [(c.batch * c.seconds, c.precision) for c in configs[:8]]
    assert tiny[:2] == [(1.0, "fp32"), (1.0, "mixed")]
    assert [cost for cost, _ in tiny] == sorted(cost for cost, _ in tiny)


# -- bad input: one line, exit 2, nothing run -------------------------------------------------------------------
@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--preset", "huge"], "--preset 'huge' is unknown"),
        (["--batch", "0"], "--batch must be a positive whole number"),
        (["--seconds", "x"], "--seconds must be a positive number"),
        (["--warmup", "-1"], "--warmup must be a whole number"),
        (["--mem-limit", "lots"], "--mem-limit must be a size"),
        (["--model", "tiny,nope"], "unknown model 'nope'"),
        (["--precision", "fp16"], "unknown precision 'fp16'"),
        (["--retry", "error"], "--retry re-runs rows of an existing results file: it needs --resume"),
        (["--resume", "--retry", "ok"], "unknown --retry status 'ok'"),
        (["--device", "tpu"], "--device 'tpu' is unknown"),
        (["--out", "/nonexistent-folder/r.csv"], "does not exist"),
    ],
)
def test_sweep_bad_input_is_one_line_and_exit_2(args, fragment, fake_children, capsys, tmp_path):
    out = [] if "--out" in args else ["--out", str(tmp_path / "r.csv")]
    code, err = _cli(["sweep", *TINY_GRID, *out, *args], capsys)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and fragment in err
    assert fake_children.calls == []


def test_existing_file_without_resume_is_refused(tmp_path, fake_children, capsys):
    out = tmp_path / "r.csv"
    assert _cli(["sweep", *TINY_GRID, "--out", str(out)], capsys)[0] == 0
    code, err = _cli(["sweep", *TINY_GRID, "--out", str(out)], capsys)
    assert code == 2 and "already holds 4 result rows: --resume it" in err and str(out) in err


def test_resume_on_a_foreign_csv_is_refused_and_leaves_it_untouched(tmp_path, fake_children, capsys):
    foreign = tmp_path / "sales.csv"
    foreign.write_text("region,revenue\nnorth,10\n")
    before = foreign.read_bytes()
    code, err = _cli(["sweep", *TINY_GRID, "--out", str(foreign), "--resume"], capsys)
    assert code == 2
    assert "not a w2vprof" in err and str(foreign) in err
    assert foreign.read_bytes() == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_out_folder(tmp_path, fake_children, capsys):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    code, err = _cli(["sweep", *TINY_GRID, "--out", str(folder / "r.csv")], capsys)
    assert code == 2 and "not writable" in err


# -- resume, retry, pruning (measurement faked) -----------------------------------------------------------------
def test_retry_reruns_the_named_statuses_in_place_and_oom_only_when_named(tmp_path):
    plan = _plan(tmp_path)
    statuses = ["ok", "error", "timeout", "oom"]
    with plan:
        for config, status in zip(plan.configs, statuses):
            plan.writer.append(fake_sweep_record(config, plan.options, status))
    measured = []

    def measure(config, options):
        measured.append((config.batch, config.seconds))
        return fake_sweep_record(config, options), []

    with _plan(tmp_path, resume=True, retry=("error", "timeout")) as plan:
        written = run_sweep(plan, QuietProgress(), measure=measure)
    assert measured == [(c.batch, c.seconds) for c in plan.configs[1:3]]
    assert [r.status for r in written] == ["ok", "ok"]
    rows = _rows(plan.out)
    assert [r.status for r in rows] == ["ok", "ok", "ok", "oom"]  # replaced in place, each configuration once
    assert _keys(rows) == _keys(fake_sweep_record(c, plan.options) for c in plan.configs)

    with _plan(tmp_path, resume=True, retry=("error", "oom")) as plan:
        run_sweep(plan, QuietProgress(), measure=measure)
    assert len(measured) == 3 and [r.status for r in _rows(plan.out)] == ["ok"] * 4


def test_oom_prunes_configurations_that_need_at_least_as_much(tmp_path):
    measured = []

    def measure(config, options):
        measured.append((config.batch, config.seconds))
        return fake_sweep_record(config, options, "oom" if config.batch >= 4 else "ok"), []

    request = dict(
        models=("tiny",), seconds=(1.0, 2.0), batches=(1, 4, 8), precisions=("fp32",), repeats=1, device="cpu"
    )
    with plan_sweep(SweepRequest(out=tmp_path / "r.csv", **request), warm_start=False) as plan:
        rows = run_sweep(plan, QuietProgress(), measure=measure)
    by_key = {(r.batch, r.seconds): r for r in rows}
    # cheap first: (1,1) (1,2) (4,1) then (8,1), (4,2), (8,2) are implied by the OOM of (4,1)
    assert measured == [(1, 1.0), (1, 2.0), (4, 1.0)]
    for key in [(8, 1.0), (4, 2.0), (8, 2.0)]:
        assert by_key[key].status == "oom"
        assert by_key[key].skipped_because == "tiny batch 4 1 s fp32 was oom"
    assert len(_rows(tmp_path / "r.csv")) == 6

    measured.clear()
    with plan_sweep(SweepRequest(out=tmp_path / "r2.csv", prune=False, **request), warm_start=False) as plan:
        run_sweep(plan, QuietProgress(), measure=measure)
    assert len(measured) == 6


def test_no_space_after_two_rows_exits_2_keeps_them_and_resume_finishes(tmp_path, fake_children, capsys, monkeypatch):
    out = tmp_path / "r.csv"
    real_write = os.write
    rows_written = []

    def write(fd, data):
        if os.path.realpath(f"/proc/self/fd/{fd}") == str(out.resolve()) and not bytes(data).startswith(b"model,"):
            if len(rows_written) == 2:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            rows_written.append(bytes(data))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    code, err = _cli(["sweep", *TINY_GRID, "--out", str(out), "--quiet"], capsys)
    monkeypatch.setattr(os, "write", real_write)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and str(out) in err and "no space left" in err.lower()
    assert len(_rows(out)) == 2 and out.read_text().endswith("\n")
    code, err = _cli(["sweep", *TINY_GRID, "--out", str(out), "--resume"], capsys)
    assert code == 0, err
    rows = _rows(out)
    assert len(rows) == 4 and len(set(_keys(rows))) == 4
    assert len(fake_children.calls) == 3 + 2  # the configuration whose row failed is measured again


_RACER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    import test_sweep, w2vprof.sweep.runner, w2vprof.sweep.launch

    RELEASE = Path({release!r})

    class HoldsTheFile(test_sweep.FakeMeasurer):
        def __call__(self, config, options):
            deadline = time.monotonic() + 120
            while not RELEASE.exists() and time.monotonic() < deadline:
                time.sleep(0.02)
            return super().__call__(config, options)

    w2vprof.sweep.runner.ChildMeasurer = HoldsTheFile
    w2vprof.sweep.launch.warm_start = lambda method=None: None
    from w2vprof.cli.main import run
    run(sys.argv[1:])
    """
)


@pytest.mark.integration
def test_two_sweeps_on_one_file_started_together_one_runs_the_other_exits_2(tmp_path):
    """Whichever sweep takes the file measures nothing until the other has exited (no sleep that is hoped to be
    long enough), so the other always finds the file held, however the two starts interleave."""
    out, release = tmp_path / "r.csv", tmp_path / "release"
    script = _RACER.format(tests=str(Path(__file__).parent), release=str(release))
    argv = [sys.executable, "-c", script, "sweep", *TINY_GRID, "--out", str(out), "--quiet"]
    racers = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    deadline = time.monotonic() + 300
    while all(racer.poll() is None for racer in racers) and time.monotonic() < deadline:
        time.sleep(0.02)
    release.touch()
    results = [(p.wait(timeout=300), p.stderr.read()) for p in racers]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    loser_err = next(err for code, err in results if code == 2)
    winner_pid = next(p.pid for p, (code, _) in zip(racers, results) if code == 0)
    assert len(loser_err.strip().splitlines()) == 1 and str(out) in loser_err
    assert f"being written by another w2vprof process (pid {winner_pid})" in loser_err
    rows = _rows(out)
    assert len(rows) == 4 and len(set(_keys(rows))) == 4


# -- start method -----------------------------------------------------------------------------------------------
def test_start_method_is_spawn_on_macos_and_where_there_is_no_fork_server(monkeypatch):
    from w2vprof.sweep.launch import ChildLauncher, start_method

    assert start_method("linux", ["fork", "spawn", "forkserver"]) == "forkserver"
    assert start_method("darwin", ["fork", "spawn", "forkserver"]) == "spawn"
    assert start_method("win32", ["spawn"]) == "spawn"
    monkeypatch.setattr(sys, "platform", "darwin")
    launcher = ChildLauncher()
    assert launcher.method == "spawn" and not launcher.templates
    monkeypatch.setattr(sys, "platform", "linux")
    launcher = ChildLauncher()
    assert launcher.method == "forkserver" and launcher.templates


def test_a_template_is_kept_only_where_its_copy_of_the_weights_is_small():
    from w2vprof.sweep.launch import TEMPLATE_MAX_MEMORY_SHARE, template_fits

    gib = 2**30
    base = 380_178_432
    assert TEMPLATE_MAX_MEMORY_SHARE == 0.05
    assert template_fits(base, 16 * gib, unified_memory=False)
    assert not template_fits(base, 4 * gib, unified_memory=False)  # a 4 GB Raspberry Pi: each child builds
    assert not template_fits(base, 64 * gib, unified_memory=True)  # Jetson: the GPU shares that RAM


# -- memory watchers --------------------------------------------------------------------------------------------
def _meminfo(root: Path, available_kib: int) -> None:
    (root / "proc").mkdir(parents=True, exist_ok=True)
    (root / "proc" / "meminfo").write_text(f"MemTotal: 8000000 kB\nMemFree: 100 kB\nMemAvailable: {available_kib} kB\n")


def test_watcher_per_device(tmp_path):
    from w2vprof.sweep.watch import GpuProcessMemory, ResidentMemory, SystemMemoryDrop, memory_watcher

    assert isinstance(memory_watcher("cpu"), ResidentMemory)
    assert isinstance(memory_watcher("mps", "apple"), ResidentMemory)
    assert isinstance(memory_watcher("cuda", "jetson", root=str(tmp_path)), SystemMemoryDrop)
    assert isinstance(memory_watcher("cuda", "x86", gpu_memory=lambda: {}), GpuProcessMemory)


def test_jetson_watcher_reports_the_drop_in_mem_available(tmp_path):
    from w2vprof.sweep.watch import memory_watcher

    _meminfo(tmp_path, 6_000_000)
    watcher = memory_watcher("cuda", "jetson", root=str(tmp_path))
    watcher.start(os.getpid())
    _meminfo(tmp_path, 4_000_000)
    assert watcher.used_bytes(os.getpid()) == 2_000_000 * 1024
    _meminfo(tmp_path, 7_000_000)  # more available than at the start: nothing used
    assert watcher.used_bytes(os.getpid()) == 0


def test_gpu_watcher_sums_the_childs_process_tree_only():
    from w2vprof.sweep.watch import memory_watcher

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        readings = {os.getpid(): 3 * 2**30, sleeper.pid: 2**30, 999_999_999: 5 * 2**30}
        watcher = memory_watcher("cuda", "x86", gpu_memory=lambda: readings)
        assert watcher.used_bytes(sleeper.pid) == 2**30
        assert watcher.used_bytes(os.getpid()) == 4 * 2**30  # this process and its child, not the stranger
    finally:
        sleeper.kill()
        sleeper.wait()


@pytest.mark.integration
def test_resident_memory_watcher_reads_a_real_process():
    from w2vprof.sweep.watch import ResidentMemory

    used = ResidentMemory().used_bytes(os.getpid())
    assert 10 * 2**20 < used < 64 * 2**30


# -- real children (tiny model): the process boundary ------------------------------------------------------------
class _OverLimit:
    what = "fake memory"
    source = "fake_sampled_by_sweep"

    def start(self, pid):
        pass

    def used_bytes(self, pid):
        return 3 * 2**30


@pytest.mark.integration
def test_children_match_an_in_process_profile_and_limits_stop_only_the_child(tmp_path):
    """Template children (forked from one built model) and spawned ones give the numbers of an in-process
    profile; a child over the memory or time limit is stopped and the next one still runs."""
    from w2vprof.measure.engine import profile_configuration
    from w2vprof.sweep.launch import ChildLauncher

    options = SweepOptions(out=tmp_path / "r.csv")
    configs = [
        ProfileConfig(model="tiny", batch=b, seconds=1.0, repeats=1, device="cpu", telemetry=False) for b in (1, 2)
    ]
    template = ChildMeasurer("cpu", launcher=ChildLauncher("forkserver"))
    spawned = ChildMeasurer("cpu", launcher=ChildLauncher("spawn"))
    try:
        for config, measurer in zip(configs, (template, spawned)):
            record, layers = measurer(config, options)
            here = profile_configuration(config)
            assert record.status == "ok", record.error
            for name in ("loss", "masked_fraction", "fwd_flops", "bwd_flops", "act_mem_bytes", "optim_state_bytes"):
                assert getattr(record, name) == getattr(here.record, name), name
            assert [layer.bwd_flops for layer in layers] == [layer.bwd_flops for layer in here.layers]

        default_watcher, template.watcher = template.watcher, _OverLimit()
        stopped, _ = template(configs[0], SweepOptions(out=options.out, mem_limit_bytes=2**30))
        assert stopped.status == "oom" and "fake memory 3.00 GiB over the memory limit (1.00 GiB)" in stopped.error
        long_run = ProfileConfig(model="tiny", batch=1, seconds=1.0, repeats=1000, device="cpu", telemetry=False)
        timed_out, _ = template(long_run, SweepOptions(out=options.out, timeout_s=0.5))
        assert timed_out.status == "timeout" and timed_out.sec_per_batch_median is None
        template.watcher = default_watcher
        again, _ = template(configs[1], options)
        assert again.status == "ok"
    finally:
        template.close()
        spawned.close()


#: A template's _serve with its child's first steps replaced: _built_for waits for a file (the test kills the
#: template meanwhile, deterministically inside the window between fork and the child's own work), and
#: forked_entry writes "alive" instead of measuring. No torch: a plain Python process.
TEMPLATE_KILLED_BEFORE_ITS_CHILD_STARTS = """
import os, signal, sys, time
from multiprocessing import Pipe

from w2vprof.sweep import child

release, marker = sys.argv[1], sys.argv[2]


def built_for_after_release(template, config_json, threads):
    while not os.path.exists(release):
        time.sleep(0.01)


def entry_that_reports(*args):
    with open(marker, "w") as handle:
        handle.write("alive")
    os._exit(0)


child._built_for, child.forked_entry = built_for_after_release, entry_that_reports
sweep_end, template_end = Pipe()
template = os.fork()
if template == 0:
    sweep_end.close()
    child._serve(template_end, None, 1, os.getppid())
    os._exit(0)
template_end.close()
sweep_end.send(("{}", "result.json", "stderr.txt"))
print(sweep_end.recv()[1], flush=True)  # ("started", the child's pid)
os.kill(template, signal.SIGKILL)
os.waitpid(template, 0)
open(release, "w").close()
"""


def test_a_child_whose_template_dies_before_it_starts_does_not_outlive_it(tmp_path):
    """The race emulated ARM hit: the template killed after its fork, before the child asked for the
    parent-death signal. The child must go all the same (never reach its measurement)."""
    import psutil

    release, marker = tmp_path / "release", tmp_path / "alive"
    script = subprocess.run(
        [sys.executable, "-c", TEMPLATE_KILLED_BEFORE_ITS_CHILD_STARTS, str(release), str(marker)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert script.returncode == 0, script.stderr
    pid = int(script.stdout.split()[0])
    deadline = time.monotonic() + 30  # an orphan is reaped by init: gone, or a zombie until then
    while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline and not marker.exists(), "the child outlived its template"
        time.sleep(0.01)
    assert not marker.exists()


@pytest.mark.integration
def test_a_template_killed_mid_run_costs_that_configuration_only(tmp_path):
    import psutil

    from w2vprof.sweep.launch import ChildLauncher

    launcher = ChildLauncher("forkserver")
    config = ProfileConfig(model="tiny", batch=1, seconds=1.0, repeats=1000, device="cpu", telemetry=False)
    try:
        child = launcher.start(config, str(tmp_path / "a.json"), str(tmp_path / "a.txt"))
        template_pid = psutil.Process(child.pid).ppid()
        os.kill(template_pid, signal.SIGKILL)
        assert child.wait(30) == -signal.SIGKILL
        deadline = time.monotonic() + 30
        while psutil.pid_exists(child.pid) and psutil.Process(child.pid).status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline, "the child outlived its template"
            time.sleep(0.05)
        short = ProfileConfig(model="tiny", batch=1, seconds=1.0, repeats=1, device="cpu", telemetry=False)
        record, _ = ChildMeasurer("cpu", launcher=launcher)(short, SweepOptions(out=tmp_path / "r.csv"))
        assert record.status == "ok", record.error
    finally:
        launcher.close()


@pytest.mark.integration
def test_sigkill_then_resume_runs_exactly_the_missing_configurations(tmp_path):
    out = tmp_path / "r.csv"
    process = subprocess.Popen(
        [sys.executable, "-m", "w2vprof.cli.main", "sweep", *TINY_GRID, "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if out.exists() and len(out.read_text().splitlines()) >= 2:  # header + a row
                break
            time.sleep(0.05)
        os.killpg(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    before = _rows(out)  # parses after kill -9
    assert 1 <= len(before) < 4
    result = run_cli_in_process("sweep", *TINY_GRID, "--out", str(out), "--resume")  # real children all the same
    assert result.returncode == 0, result.stderr
    assert f"{4 - len(before)} configurations to run" in result.stderr
    after = _rows(out)
    assert len(after) == 4 and len(set(_keys(after))) == 4  # each configuration exactly once
    assert [r.timestamp for r in after[: len(before)]] == [r.timestamp for r in before]  # old rows untouched
    assert all((tmp_path / r.layers_file).is_file() for r in after)  # per-layer files beside the CSV


@pytest.mark.integration
def test_sigterm_stops_cleanly_with_the_resume_command(tmp_path):
    out = tmp_path / "r.csv"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "w2vprof.cli.main",
            "sweep",
            "--model",
            "tiny",
            "--seconds",
            "0.5,30",
            "--batch",
            "1,8",
            "--precision",
            "fp32",
            "--repeats",
            "3",
            "--out",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not (out.exists() and len(out.read_text().splitlines()) >= 2):
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "Interrupted" in stderr and "--resume" in stderr
    assert 1 <= len(_rows(out)) < 4
    assert not Path(str(out) + ".lock").exists()  # the lock went with the sweep


def test_a_child_gives_tqdm_a_thread_lock_so_no_semaphore_outlives_it(monkeypatch):
    """A configuration child ends in os._exit. A multiprocessing lock made by tqdm's first bar (torch.compile's FX
    interpreter makes one) was left registered with the resource tracker, which warned of a leaked semaphore at the
    end of every sweep with --compile."""
    pytest.importorskip("tqdm")
    import multiprocessing.synchronize

    from tqdm import tqdm
    from tqdm.std import TqdmDefaultWriteLock

    from w2vprof.sweep.child import give_tqdm_a_thread_lock

    made: list[object] = []
    semlock_init = multiprocessing.synchronize.SemLock.__init__

    def recording_init(self, *args, **kwargs):
        made.append(self)
        semlock_init(self, *args, **kwargs)

    def as_in_a_fresh_process() -> None:  # tqdm as a newly started process finds it: no lock made yet
        monkeypatch.delattr(tqdm, "_lock", raising=False)
        monkeypatch.delattr(TqdmDefaultWriteLock, "mp_lock", raising=False)

    monkeypatch.setattr(multiprocessing.synchronize.SemLock, "__init__", recording_init)
    as_in_a_fresh_process()
    tqdm(range(3), disable=True).close()
    assert len(made) == 1  # without the fix: the semaphore the tracker warned about
    made.clear()
    as_in_a_fresh_process()
    give_tqdm_a_thread_lock()
    tqdm(range(3), disable=True).close()
    assert made == []


def test_a_template_is_sized_as_the_model_its_objective_builds(monkeypatch):
    """CTC's model (the encoder and its own head) is not the pretraining model: the template's memory check sizes
    the model each configuration's objective builds, on a machine where one fits and the other does not."""
    import types

    import psutil

    from w2vprof.measure.engine import ProfileConfig
    from w2vprof.models.size import parameter_bytes
    from w2vprof.sweep.launch import TEMPLATE_MAX_MEMORY_SHARE, ChildLauncher, template_key

    sizes = {objective: parameter_bytes("base", objective=objective) for objective in ("pretrain", "ctc")}
    assert sizes["pretrain"] != sizes["ctc"]
    total = (sizes["pretrain"] + sizes["ctc"]) / 2 / TEMPLATE_MAX_MEMORY_SHARE  # the smaller fits, the larger not
    monkeypatch.setattr(psutil, "virtual_memory", lambda: types.SimpleNamespace(total=int(total)))
    launcher = ChildLauncher(method="spawn", templates=True)
    fits = {}
    for objective in sizes:
        config = ProfileConfig(model="base", objective=objective)
        fits[objective] = launcher._fits(template_key(config), config)
    smaller = min(sizes, key=sizes.__getitem__)
    assert fits == {objective: objective == smaller for objective in sizes}
