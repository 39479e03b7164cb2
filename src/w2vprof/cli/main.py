"""The `w2vprof` entry point: builds the Typer app and maps every expected failure to one line + exit status.

Only typer/rich are imported here; each command imports torch & co. inside its function, so `--help` and
`--version` stay instant.
"""

from __future__ import annotations

import sys
from typing import Any, Optional, Sequence

import typer

from w2vprof import __version__
from w2vprof.cli import (
    analysis,
    compare,
    devices,
    doctor,
    fl,
    models,
    partition,
    plan,
    profile,
    report,
    summary,
    sweep,
)
from w2vprof.errors import SettingError, W2vprofError

__all__ = ["app", "run"]

app = typer.Typer(
    name="w2vprof",
    help="What it costs to train wav2vec 2.0 on this device: params, FLOPs, memory, seconds per batch.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"w2vprof {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Optional[bool] = typer.Option(
        None, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """w2vprof: profile wav2vec 2.0 pretraining on the device in front of you."""


# Each command module registers its commands; the order here is the order in --help.
for _module in (summary, models, profile, sweep, report, compare, analysis, plan, devices, partition, fl, doctor):
    _module.register(app)


def run(argv: Optional[list[str]] = None) -> None:
    """Console-script entry: one line on stderr and a status for every expected failure, never a traceback."""
    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name="w2vprof", standalone_mode=False)
    except SettingError as exc:
        print(f"w2vprof: error: {as_flag(exc, command, sys.argv[1:] if argv is None else argv)}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except W2vprofError as exc:
        print(f"w2vprof: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("w2vprof: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:
        # Typer's (vendored or upstream) click exceptions, matched by shape so either Typer line works.
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):  # usage errors: bad option/value
            message = " ".join(exc.format_message().split())
            print(f"w2vprof: error: {message}", file=sys.stderr)
            sys.exit(exc.exit_code)
        if type(exc).__name__ == "Exit" and hasattr(exc, "exit_code"):
            sys.exit(exc.exit_code)
        if type(exc).__name__ == "Abort":
            print("w2vprof: interrupted", file=sys.stderr)
            sys.exit(130)
        raise
    sys.exit(result if isinstance(result, int) else 0)


def as_flag(exc: SettingError, root: Any, argv: Sequence[str]) -> W2vprofError:
    """The library names a setting (`batch`); the user typed a flag (`--batch`). The flag is the long option of
    the invoked command's parameter of that name (Typer names parameters after the function's arguments), so no
    table of flags is kept anywhere; a setting no parameter of the command carries keeps the library's word."""
    flags = {}
    for param in getattr(invoked_command(root, argv), "params", ()):
        long_options = [opt for opt in param.opts if opt.startswith("--")]
        if long_options:
            flags[param.name] = long_options[0]
    return exc.worded(lambda setting: flags.get(setting, setting))


def invoked_command(root: Any, argv: Sequence[str]) -> Any:
    """The (sub)command the argument words select: each group's subcommand named by the next plain word."""
    command = root
    for word in argv:
        if word.startswith("-"):
            continue
        subcommands = getattr(command, "commands", None)
        if not subcommands or word not in subcommands:
            break
        command = subcommands[word]
    return command


if __name__ == "__main__":  # pragma: no cover
    run()
