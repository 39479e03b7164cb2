"""The import structure of src/w2vprof: no import from a lower layer to a higher one (the layers of
docs/architecture.md, written down once here as LAYERS), no import cycle between modules or between packages, and
no private name (`_x`) imported from another module; and no function longer than 60 lines unless a
`# long: <reason>` says why; and every wait for a GPU through the one `devices.sync.synchronize`.

The graph is read from the source with `ast` (nothing is imported). Every import counts, at module level or inside
a function (a lazy import still makes the two modules depend on each other), except those under
`if TYPE_CHECKING:`, which never run. A package's node is its top-level folder under w2vprof (`report`, `fl`,
...); a module directly under w2vprof (`records`, `files`, `errors`) is a package of its own.

Run as a script (`python tests/test_architecture.py`) to print every upward import, cycle, private import and long
function found.
"""

from __future__ import annotations

import ast
import functools
import re
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

SOURCE = Path(__file__).resolve().parent.parent / "src"
DOCS = Path(__file__).resolve().parent.parent / "docs" / "architecture.md"
ROOT_PACKAGE = "w2vprof"

#: docs/architecture.md's layers, top first: a module imports from its own layer or the ones below, never above.
#: A package is a folder under w2vprof; a module directly under it (records.py) is a package of its own; the root
#: package itself (w2vprof/__init__.py: the version) sits below everything.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("cli",),
    ("sweep", "fl", "report", "analysis", "doctor"),
    ("measure", "devices", "models", "workload", "compat"),
    ("records", "record_codec", "files", "plotting", "errors", "paper"),
)

#: Findings in files other helpers are still changing; the lead removes entries as they go (then the test is strict).
KNOWN_MODULE_CYCLES: set[frozenset[str]] = set()
KNOWN_PACKAGE_CYCLES: set[frozenset[str]] = set()
KNOWN_PRIVATE_IMPORTS: set[tuple[str, str]] = set()  # (importing module, "module._name")
KNOWN_UPWARD_IMPORTS: set[tuple[str, str]] = set()  # (importing module, imported module)
#: Modules that still wait for a GPU themselves instead of through w2vprof.devices.sync (issue 22: the lead moves
#: them after the measure/ split lands).
KNOWN_OWN_SYNCHRONIZE: set[str] = set()


@dataclass(frozen=True)
class Import:
    importer: str  # dotted module name of the file holding the import
    target: str  # dotted module the import loads (a submodule when `from pkg import submodule`)
    names: tuple[str, ...]  # names taken with `from target import ...` (empty for `import target`)
    line: int


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SOURCE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted((SOURCE / ROOT_PACKAGE).rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk_runtime(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node that can run: `if TYPE_CHECKING:` bodies are skipped (their `else:` is kept)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _resolve_from(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


@functools.lru_cache(maxsize=None)
def parsed(path: Path) -> ast.Module:
    """One file's syntax tree, parsed once per session (several checks walk every file)."""
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def imports_of(module: str, path: Path, known: dict[str, Path]) -> list[Import]:
    """The w2vprof imports of one file, `from pkg import submodule` resolved to the submodule."""
    tree = parsed(path)
    is_package = path.name == "__init__.py"
    found = []
    for node in _walk_runtime(tree):
        if isinstance(node, ast.Import):
            found += [
                Import(module, alias.name, (), node.lineno)
                for alias in node.names
                if alias.name.split(".")[0] == ROOT_PACKAGE
            ]
        elif isinstance(node, ast.ImportFrom):
            target = _resolve_from(module, is_package, node)
            if target.split(".")[0] != ROOT_PACKAGE:
                continue
            plain = tuple(a.name for a in node.names if f"{target}.{a.name}" not in known)
            found += [
                Import(module, f"{target}.{a.name}", (), node.lineno)
                for a in node.names
                if f"{target}.{a.name}" in known
            ]
            if plain:
                found.append(Import(module, target, plain, node.lineno))
    return found


def all_imports() -> list[Import]:
    known = source_modules()
    return [imp for module, path in known.items() for imp in imports_of(module, path, known)]


def package_of(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else module


def layer_of(module: str, layers: tuple[tuple[str, ...], ...] = LAYERS) -> int:
    """The module's layer, 0 at the top (cli); the root package below every layer; KeyError for a package no
    layer names (a new package must be placed in LAYERS and in docs/architecture.md)."""
    if module == ROOT_PACKAGE:
        return len(layers)
    name = package_of(module).split(".")[1]
    for depth, members in enumerate(layers):
        if name in members:
            return depth
    raise KeyError(f"{module}: its package {name!r} is in no layer of LAYERS")


def upward_imports(imports: list[Import], layers: tuple[tuple[str, ...], ...] = LAYERS) -> list[Import]:
    """Every import whose target sits in a higher layer than its importer (cli above all)."""
    return [imp for imp in imports if layer_of(imp.target, layers) < layer_of(imp.importer, layers)]


def documented_layers(text: str) -> tuple[tuple[str, ...], ...]:
    """The layers drawn in docs/architecture.md's first code block under '## Layers': per line, the names that
    end in / (a package) or .py (a module), top first."""
    section = text.split("## Layers", 1)[1]
    block = section.split("```", 2)[1]
    layers = []
    for line in block.splitlines():
        names = [
            re.sub(r"(/|\.py)$", "", chunk)
            for chunk in re.split(r"\s{2,}", line.strip())
            if re.fullmatch(r"\w+(/|\.py)", chunk)
        ]
        if names:
            layers.append(tuple(names))
    return tuple(layers)


def strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm (iterative): the groups of nodes that reach each other, groups of two or more only."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    groups: list[set[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.add(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(group)
    return groups


def module_cycles(imports: list[Import]) -> list[set[str]]:
    graph: dict[str, set[str]] = {}
    for imp in imports:
        if imp.target != imp.importer:
            graph.setdefault(imp.importer, set()).add(imp.target)
    return strongly_connected(graph)


def package_cycles(imports: list[Import]) -> list[set[str]]:
    graph: dict[str, set[str]] = {}
    for imp in imports:
        source, target = package_of(imp.importer), package_of(imp.target)
        if source != target and ROOT_PACKAGE not in (source, target):
            graph.setdefault(source, set()).add(target)
    return strongly_connected(graph)


def private_imports(imports: list[Import]) -> list[tuple[str, str, int]]:
    """(importer, "module._name", line) for every `_name` (not a dunder) taken from another module."""
    return [
        (imp.importer, f"{imp.target}.{name}", imp.line)
        for imp in imports
        for name in imp.names
        if name.startswith("_") and not name.startswith("__") and imp.target != imp.importer
    ]


def _witness(group: set[str], imports: list[Import], of=lambda name: name) -> list[str]:
    """The import lines inside one cycle, so a failure says where to cut it."""
    return sorted(
        f"{imp.importer} -> {imp.target} (line {imp.line})"
        for imp in imports
        if of(imp.importer) in group and of(imp.target) in group and of(imp.importer) != of(imp.target)
    )


@pytest.fixture(scope="module")
def imports() -> list[Import]:
    return all_imports()


def test_the_graph_sees_the_imports_it_should(imports):
    """A guard on the reader itself: known edges are found, lazy ones included, TYPE_CHECKING ones not."""
    edges = {(imp.importer, imp.target) for imp in imports}
    assert ("w2vprof.cli.main", "w2vprof.errors") in edges  # module level
    assert ("w2vprof.cli.report", "w2vprof.report.build") in edges  # inside a function
    cycle = module_cycles([Import("a.x", "a.y", (), 1), Import("a.y", "a.z", (), 1), Import("a.z", "a.x", (), 1)])
    assert cycle == [{"a.x", "a.y", "a.z"}]
    private = private_imports([Import("w2vprof.a", "w2vprof.b", ("_hidden", "shown", "__version__"), 3)])
    assert private == [("w2vprof.a", "w2vprof.b._hidden", 3)]


def test_no_import_cycle_between_modules(imports):
    cycles = [g for g in module_cycles(imports) if frozenset(g) not in KNOWN_MODULE_CYCLES]
    assert not cycles, "\n".join(" <-> ".join(sorted(g)) + ":\n  " + "\n  ".join(_witness(g, imports)) for g in cycles)


def test_no_import_cycle_between_packages(imports):
    cycles = [g for g in package_cycles(imports) if frozenset(g) not in KNOWN_PACKAGE_CYCLES]
    assert not cycles, "\n".join(
        " <-> ".join(sorted(g)) + ":\n  " + "\n  ".join(_witness(g, imports, package_of)) for g in cycles
    )


def test_no_private_name_imported_across_modules(imports):
    found = [p for p in private_imports(imports) if (p[0], p[1]) not in KNOWN_PRIVATE_IMPORTS]
    assert not found, "\n".join(f"{importer} line {line}: from {name}" for importer, name, line in found)


def layer_problems(imports: list[Import]) -> list[str]:
    """One line per upward import not on the allow-list: where it is and which layers it crosses."""
    return [
        f"{imp.importer} line {imp.line} imports {imp.target}: layer {layer_of(imp.importer)} reaches up to "
        f"{layer_of(imp.target)} ({', '.join(LAYERS[layer_of(imp.target)])})"
        for imp in upward_imports(imports)
        if (imp.importer, imp.target) not in KNOWN_UPWARD_IMPORTS
    ]


def test_every_package_is_in_a_layer():
    assert {module: layer_of(module) for module in source_modules()}  # KeyError names a package no layer holds


def test_the_layers_are_those_docs_architecture_draws():
    assert documented_layers(DOCS.read_text(encoding="utf-8")) == LAYERS


def test_no_import_from_a_higher_layer(imports):
    found = layer_problems(imports)
    assert not found, "move the code down, or the import up:\n" + "\n".join(found)


MADE_UP_DEVICES_MODULE = """
from typing import TYPE_CHECKING

from w2vprof.analysis import data
from w2vprof.devices import sensors
from w2vprof.records import ResultRecord

if TYPE_CHECKING:
    from w2vprof.cli import main


def later():
    from w2vprof.report.build import build_report
    import w2vprof.errors
"""


def test_the_layer_check_fails_on_an_upward_import(tmp_path):
    """Guard: a made-up devices module that imports analysis at module level and report inside a function fails
    the check; its sideways (devices), downward (records, errors) and TYPE_CHECKING-only (cli) imports do not."""
    path = tmp_path / "made_up.py"
    path.write_text(MADE_UP_DEVICES_MODULE, encoding="utf-8")
    made_up = imports_of("w2vprof.devices.made_up", path, source_modules())
    assert sorted((imp.target, imp.line) for imp in upward_imports(made_up)) == [
        ("w2vprof.analysis.data", 4),
        ("w2vprof.report.build", 13),
    ]
    with pytest.raises(AssertionError, match=r"made_up line 4 imports w2vprof.analysis.data: layer 2 reaches up"):
        test_no_import_from_a_higher_layer(made_up)
    assert layer_of("w2vprof") == len(LAYERS) and layer_of("w2vprof.cli.main") == 0
    with pytest.raises(KeyError, match="'newpkg' is in no layer"):
        layer_of("w2vprof.newpkg.thing")


def test_the_layers_are_read_from_the_docs_diagram():
    drawn = "## Layers\n\n```\ncli/        words\n   |\n   v\nsweep/  doctor.py   more words\n```\n"
    assert documented_layers(drawn) == (("cli",), ("sweep", "doctor"))


def test_the_plotting_module_stands_alone(imports):
    """report and fl both draw through w2vprof.plotting, so it must not lean on either (or anything of ours)."""
    assert [imp.target for imp in imports if imp.importer == "w2vprof.plotting"] == []
    users = {imp.importer for imp in imports if imp.target == "w2vprof.plotting"}
    assert {"w2vprof.report.plots", "w2vprof.fl.plots"} <= users


def test_known_findings_are_still_there(imports):
    """An allow-list entry whose finding is gone must be removed, so the list only ever shrinks."""
    cycles = {frozenset(g) for g in module_cycles(imports)}
    packages = {frozenset(g) for g in package_cycles(imports)}
    private = {(p[0], p[1]) for p in private_imports(imports)}
    upward = {(imp.importer, imp.target) for imp in upward_imports(imports)}
    stale = (
        [sorted(c) for c in KNOWN_MODULE_CYCLES - cycles]
        + [sorted(c) for c in KNOWN_PACKAGE_CYCLES - packages]
        + [list(p) for p in KNOWN_PRIVATE_IMPORTS - private]
        + [list(p) for p in KNOWN_UPWARD_IMPORTS - upward]
    )
    assert not stale, f"fixed, remove from the allow-list: {stale}"


# -- function length ------------------------------------------------------------------------------------------
#: The longest a function in src/ may be (its signature and decorators included) without saying why.
MAX_FUNCTION_LINES = 60
#: The comment that lets a function be longer: on the line before it (or its decorators), on its signature, or
#: before or on its first statement, followed by the reason ("# long: one option per flag, Typer needs them here").
LONG_REASON = "# long: "


def long_functions(source: str) -> list[tuple[str, int, int]]:
    """(name, first line, lines) of every function (methods and nested ones too) longer than MAX_FUNCTION_LINES
    whose reason is not written down (LONG_REASON with some text after it)."""
    lines = source.splitlines()
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        start = min([node.lineno] + [d.lineno for d in node.decorator_list])
        length = (node.end_lineno or node.lineno) - start + 1
        if length <= MAX_FUNCTION_LINES:
            continue
        # 1-based lines: the one before `start` through the first statement's (the signature in between)
        nearby = lines[max(start - 2, 0) : node.body[0].lineno]
        if not any(line.split(LONG_REASON, 1)[-1].strip() for line in nearby if LONG_REASON in line):
            found.append((node.name, start, length))
    return found


def test_the_length_check_counts_what_it_should():
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_FUNCTION_LINES - 1))  # with its def: exactly the limit
    assert long_functions(f"def fits():\n{body}") == []
    assert long_functions(f"@decorated\ndef over():\n{body}") == [("over", 1, MAX_FUNCTION_LINES + 1)]
    method = "class C:\n    def method(self):\n" + textwrap.indent(body, "    ") + "        y = 0\n"
    assert long_functions(method) == [("method", 2, MAX_FUNCTION_LINES + 1)]
    for reason in (
        f"# long: a table of settings, one line each\ndef over():\n    y = 0\n{body}",
        f"def over():\n    # long: a table of settings, one line each\n    y = 0\n{body}",
        f"def over():\n    y = 0  # long: a table of settings, one line each\n{body}",
    ):
        assert long_functions(reason) == []
    assert long_functions(f"# long: \ndef over():\n    y = 0\n{body}") == [("over", 2, MAX_FUNCTION_LINES + 1)]
    assert long_functions(f"# why not\ndef over():\n    y = 0\n{body}") == [("over", 2, MAX_FUNCTION_LINES + 1)]


def test_no_function_longer_than_the_limit_without_its_reason():
    found = [
        f"{path.relative_to(SOURCE)}:{line} {name} ({length} lines)"
        for path in source_modules().values()
        for name, line, length in long_functions(path.read_text())
    ]
    assert not found, (
        f"split these into named steps, or say why one is longer than {MAX_FUNCTION_LINES} lines with "
        f"'{LONG_REASON}<reason>' on the line before it or on its first line:\n" + "\n".join(found)
    )


# -- one way to wait for a GPU -------------------------------------------------------------------------------------
SYNC_MODULE = "w2vprof.devices.sync"


def own_synchronize_lines(tree: ast.AST) -> list[int]:
    """Lines that reach torch.cuda.synchronize or torch.mps.synchronize themselves (a call or a reference)."""
    return sorted(
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr == "synchronize"
        and isinstance(node.value, ast.Attribute)
        and node.value.attr in ("cuda", "mps")
    )


def own_synchronize_modules() -> dict[str, list[int]]:
    found = {module: own_synchronize_lines(parsed(path)) for module, path in source_modules().items()}
    return {module: lines for module, lines in found.items() if lines and module != SYNC_MODULE}


def test_the_synchronize_check_sees_calls_and_references():
    source = "import torch\ntorch.cuda.synchronize()\nwait = torch.mps.synchronize\nsync(device)\n"
    assert own_synchronize_lines(ast.parse(source)) == [2, 3]


def test_every_gpu_wait_goes_through_devices_sync():
    found = own_synchronize_modules()
    unknown = {module: lines for module, lines in found.items() if module not in KNOWN_OWN_SYNCHRONIZE}
    assert not unknown, f"call {SYNC_MODULE}.synchronize(device) instead (CUDA and MPS both): {unknown}"
    assert not KNOWN_OWN_SYNCHRONIZE - set(found), "fixed, remove from KNOWN_OWN_SYNCHRONIZE"


def main() -> int:
    found = all_imports()
    problems = 0
    for line in layer_problems(found):
        problems += 1
        print("upward import:", line)
    for group in module_cycles(found):
        problems += 1
        print("module cycle:", " <-> ".join(sorted(group)), *_witness(group, found), sep="\n  ")
    for group in package_cycles(found):
        problems += 1
        print("package cycle:", " <-> ".join(sorted(group)), *_witness(group, found, package_of), sep="\n  ")
    for importer, name, line in private_imports(found):
        problems += 1
        print(f"private import: {importer} line {line}: {name}")
    for path in source_modules().values():
        for name, line, length in long_functions(path.read_text()):
            problems += 1
            print(f"long function: {path.relative_to(SOURCE)}:{line} {name} ({length} lines)")
    print(f"{problems} finding(s) in {len(source_modules())} modules")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
