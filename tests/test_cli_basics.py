from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import run_cli


def test_help_and_version_do_not_import_torch():
    code = (
        "import sys; from w2vprof.cli.main import run\n"
        "try:\n    run(['--version'])\nexcept SystemExit as e:\n    code = e.code\n"
        "print('torch' in sys.modules, code)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith("False 0"), out.stdout


def test_version_prints_version():
    from w2vprof import __version__

    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"w2vprof {__version__}"


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
    result = run_cli(*args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert fragment in lines[0]
    assert "Traceback" not in result.stderr
