"""The CLI as a user meets it: instant --help/--version, and every expected failure as one line with exit status 2.

Most cases run in this process (conftest.run_cli_in_process, the console-script entry with its error mapping);
a few start a real `python -m w2vprof.cli.main` so the status the shell receives is checked too.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import run_cli, run_cli_in_process


def test_help_and_version_do_not_import_torch():
    # A fresh interpreter: this test process has long imported torch.
    code = (
        "import sys; from w2vprof.cli.main import run\n"
        "codes = []\n"
        "for argv in (['--version'], ['--help'], ['summary', '--help'], ['sweep', '--help'], ['fl', '--help']):\n"
        "    try:\n        run(argv)\n    except SystemExit as e:\n        codes.append(e.code)\n"
        "print('torch' in sys.modules, codes)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False [0, 0, 0, 0, 0]", out.stdout


def test_version_prints_version():
    from w2vprof import __version__

    result = run_cli_in_process("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"w2vprof {__version__}"


@pytest.mark.parametrize(
    "args, status",
    [
        (["summary", "--model", "nope"], 2),  # the library's BadInput, mapped by cli.main.run
        (["no-such-command"], 2),  # a usage error from Typer/Click
        (["--version"], 0),
    ],
)
def test_a_real_process_shows_what_the_in_process_runner_shows(args, status):
    """The shell gets the status, and the in-process shortcut every other CLI test uses sees the same three
    things a real process shows: status, stdout, stderr."""
    there = run_cli(*args)
    assert there.returncode == status, there.stderr
    assert "Traceback" not in there.stderr and len(there.stderr.strip().splitlines()) == (status != 0)
    here = run_cli_in_process(*args)
    assert (here.returncode, here.stdout, here.stderr) == (there.returncode, there.stdout, there.stderr)


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["summary", "--model", "nope"], "unknown model 'nope'"),
        (["summary", "--seconds", "0"], "--seconds must be a positive number"),
        (["summary", "--seconds", "-1"], "--seconds must be a positive number"),
        (["summary", "--seconds", "abc"], "--seconds must be a positive number"),
        (["summary", "--batch", "0"], "--batch must be a positive whole number"),
        (["summary", "--format", "xml"], "unknown --format"),
        (["no-such-command"], "No such command"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, fragment):
    result = run_cli_in_process(*args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("w2vprof: error: ") and fragment in lines[0]
    assert "Traceback" not in result.stderr and result.stdout == ""
