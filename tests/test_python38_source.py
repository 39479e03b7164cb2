"""The measurement path's source is valid Python 3.8 (NVIDIA's torch for JetPack 5, the Xavier boards, runs there).

No Python 3.8 interpreter can be installed here, so the check is static, on everything under src/w2vprof except
the federated package (its extra needs Flower 1.42, Python 3.11+), whose modules the rest imports included:
- the grammar: Python's own parser told to read 3.8 (`ast.parse(feature_version=(3, 8))`: match, parenthesized
  context managers, except*);
- the standard library and builtins: vermin (a database of which Python added each module, function and
  argument: zip(strict=), str.removeprefix, functools.cache, importlib.resources.files, relaxed decorators...);
- what vermin skips because `from __future__ import annotations` makes annotations strings: Typer evaluates the
  annotations of every command it registers (typing.get_type_hints), so those must be 3.8 typing (Optional[X],
  List[X], not X | None or list[X]); and expressions that run (aliases, isinstance, casts) must be too.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "w2vprof"
TARGET = (3, 8)
#: Subscripting these is Python 3.9+ (PEP 585) where the expression is evaluated.
BUILTIN_GENERICS = {"list", "dict", "tuple", "set", "frozenset", "type"}
#: Operands that make `a | b` a type union (PEP 604, Python 3.10+) rather than arithmetic or set union.
TYPE_NAMES = BUILTIN_GENERICS | {"int", "float", "str", "bytes", "bool", "complex", "object"}


def module_file(name: str) -> Optional[Path]:
    """src/w2vprof/a/b.py or src/w2vprof/a/b/__init__.py for 'w2vprof.a.b'; None for a name that is not a module."""
    base = SRC.joinpath(*name.split(".")[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def w2vprof_imports(path: Path) -> Iterator[Path]:
    """The files of the w2vprof modules `path` imports (anywhere in it), their packages' __init__ included."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("w2vprof"):
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names if alias.name.startswith("w2vprof")]
        else:
            continue
        for name in names:
            parts = name.split(".")
            for end in range(2, len(parts) + 1):
                found = module_file(".".join(parts[:end]))
                if found is not None:
                    yield found


def measurement_path_files() -> List[Path]:
    """Every module but the federated package's, and the federated modules those import (report reads a run's
    rounds.csv through w2vprof.fl.records). cli/fl.py's commands import the rest of w2vprof.fl only when run."""
    fl_commands = SRC / "cli" / "fl.py"
    files = {p for p in SRC.rglob("*.py") if p.relative_to(SRC).parts[0] != "fl"}
    todo = sorted(files - {fl_commands})
    while todo:
        for found in w2vprof_imports(todo.pop()):
            if found not in files:
                files.add(found)
                todo.append(found)
    return sorted(files)


def newer_typing(node: ast.AST) -> Iterator[Tuple[int, str]]:
    """(line, what) for each PEP 585 builtin generic or PEP 604 union in the expression `node`."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.Subscript) and isinstance(sub.value, ast.Name) and sub.value.id in BUILTIN_GENERICS:
            yield sub.lineno, f"{sub.value.id}[...] (Python 3.9+; typing.{sub.value.id.capitalize()}[...])"
        if isinstance(sub, ast.BinOp) and isinstance(sub.op, ast.BitOr):
            sides = (sub.left, sub.right)
            if any(_names_a_type(side) for side in sides):
                yield sub.lineno, f"{ast.unparse(sub)} (a | b of types is Python 3.10+; typing.Optional/Union)"


def _names_a_type(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant) and node.value is None:
        return True
    if isinstance(node, ast.Name) and node.id in TYPE_NAMES:
        return True
    return (
        isinstance(node, ast.Subscript)
        and isinstance(node.value, ast.Name)
        and (node.value.id in BUILTIN_GENERICS or node.value.id in {"Optional", "Union", "List", "Dict", "Tuple"})
    )


def runtime_expressions(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node evaluated when the module runs: all but annotations (strings under `from __future__ import
    annotations`) and what only type checkers run (`if TYPE_CHECKING:` blocks)."""
    skipped = set()
    for node in ast.walk(tree):
        parts: List[ast.AST] = []
        if isinstance(node, (ast.arg, ast.AnnAssign)) and node.annotation is not None:
            parts.append(node.annotation)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.returns is not None:
            parts.append(node.returns)
        elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            parts.extend(node.body)
        skipped.update(id(sub) for part in parts for sub in ast.walk(part))
    return (node for node in ast.walk(tree) if id(node) not in skipped)


def test_the_check_covers_the_measurement_path():
    files = {p.relative_to(SRC).as_posix() for p in measurement_path_files()}
    for needed in (
        "measure/engine.py",
        "measure/flops.py",
        "cli/main.py",
        "cli/fl.py",
        "compat.py",
        "sweep/child.py",
        "fl/__init__.py",
        "fl/records.py",
        "fl/plots.py",
    ):
        assert needed in files
    for federated_only in ("fl/simulate.py", "fl/deploy.py", "fl/client_app.py", "fl/tls.py"):
        assert federated_only not in files


@pytest.mark.parametrize("path", measurement_path_files(), ids=lambda p: p.relative_to(SRC).as_posix())
def test_the_grammar_is_python_38(path):
    ast.parse(path.read_text(encoding="utf-8"), filename=str(path), feature_version=TARGET)


def test_expressions_that_run_use_python_38_typing():
    found = []
    for path in measurement_path_files():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for expression in runtime_expressions(tree):
            if isinstance(expression, (ast.Subscript, ast.BinOp)):
                found += [f"{path.relative_to(SRC)}:{line}: {what}" for line, what in newer_typing(expression)]
    assert not found, "\n".join(sorted(set(found)))


def test_the_checks_catch_what_python_38_cannot_run():
    """The detectors themselves: each construct is found, and its 3.8 spelling is not."""
    source = (
        "from __future__ import annotations\n"
        "Alias = dict[str, int]\n"
        "ok = isinstance(x, (int, str))\n"
        "bad = isinstance(x, int | None)\n"
        "def f(a: list[int] | None = None) -> dict[str, int]:\n"
        "    return a | b\n"
    )
    tree = ast.parse(source)
    found = {
        line
        for e in runtime_expressions(tree)
        if isinstance(e, (ast.Subscript, ast.BinOp))
        for line, _ in newer_typing(e)
    }
    assert found == {2, 4}  # the annotations (line 5) are strings; a | b of values (line 6) is fine
    with pytest.raises(SyntaxError):
        ast.parse("match x:\n    case 1:\n        pass\n", feature_version=TARGET)


def typer_callbacks() -> Iterator[Tuple[str, object]]:
    """(command path, function) for every function Typer reads a signature from: commands, group callbacks."""
    import typer

    from w2vprof.cli.main import app

    def walk(group: typer.Typer, prefix: str) -> Iterator[Tuple[str, object]]:
        if group.registered_callback is not None and group.registered_callback.callback is not None:
            yield prefix or "(root)", group.registered_callback.callback
        for command in group.registered_commands:
            name = command.name or getattr(command.callback, "__name__", "?")
            yield f"{prefix} {name}".strip(), command.callback
        for sub in group.registered_groups:
            yield from walk(sub.typer_instance, f"{prefix} {sub.name}".strip())

    yield from walk(app, "")


def test_every_typer_command_has_python_38_annotations():
    """Typer evaluates each command's annotation strings (typing.get_type_hints): on Python 3.8 `str | None`
    or `list[str]` there is a TypeError when `w2vprof` starts, whatever the command."""
    import inspect

    callbacks = list(typer_callbacks())
    assert len(callbacks) > 10
    found = []
    for name, function in callbacks:
        for param in inspect.signature(function).parameters.values():
            annotation = param.annotation
            if isinstance(annotation, str):
                found += [
                    f"{name}: {param.name}: {what}" for _, what in newer_typing(ast.parse(annotation, mode="eval"))
                ]
    assert not found, "\n".join(found)


@pytest.mark.integration
def test_vermin_finds_nothing_newer_than_python_38():
    """The standard library and builtins: each module, function and argument used exists in Python 3.8."""
    pytest.importorskip("vermin", reason="vermin is in the test extra: pip install '.[test]'")
    run_vermin = "import sys; from vermin import main; sys.exit(main())"  # its console script, without PATH
    # `--exclude long`: vermin reads tensor.long() as Python 2's builtin long.
    command = [
        sys.executable,
        "-c",
        run_vermin,
        "--target=3.8-",
        "--violations",
        "--no-tips",
        "--exclude",
        "long",
        *map(str, measurement_path_files()),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
