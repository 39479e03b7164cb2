"""SettingError: the library names a setting; the CLI shows the invoked command's flag for it."""

from __future__ import annotations

import pickle

import typer

from w2vprof.cli.main import app, as_flag, invoked_command
from w2vprof.errors import BadInput, SettingError


def test_a_setting_error_reads_as_the_setting_and_its_problem():
    error = SettingError("accumulate", "3 does not divide {batch} 4", ("batch",))
    assert isinstance(error, BadInput) and error.exit_code == 2
    assert str(error) == "accumulate 3 does not divide batch 4"
    assert str(error.worded(lambda s: f"<{s}>")) == "<accumulate> 3 does not divide <batch> 4"
    copy = pickle.loads(pickle.dumps(error))  # crosses a sweep's child process intact
    assert (copy.setting, copy.problem, copy.others, str(copy)) == (
        error.setting,
        error.problem,
        error.others,
        str(error),
    )


def test_the_flag_is_the_invoked_commands_parameter_of_that_name():
    root = typer.main.get_command(app)
    assert invoked_command(root, ["fl", "simulate", "--out", "x"]).name == "simulate"
    error = SettingError("clients_per_round", "must be between 1 and {clients} (4)", ("clients",))
    assert str(as_flag(error, root, ["fl", "simulate", "--clients", "4"])) == (
        "--clients-per-round must be between 1 and --clients (4)"
    )
    # A setting the command has no parameter for keeps the library's word.
    assert str(as_flag(SettingError("trials", "must be positive"), root, ["summary"])) == "trials must be positive"
    assert str(as_flag(SettingError("batch", "must be positive"), root, [])) == "batch must be positive"
