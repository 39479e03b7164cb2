"""The import structure of src/w2vprof: no import cycle between modules or between packages, and no private name
(`_x`) imported from another module; and no function longer than 60 lines unless a `# long: <reason>` says why.

The graph is read from the source with `ast` (nothing is imported). Every import counts, at module level or inside
a function (a lazy import still makes the two modules depend on each other), except those under
`if TYPE_CHECKING:`, which never run. A package's node is its top-level folder under w2vprof (`report`, `fl`,
...); a module directly under w2vprof (`records`, `files`, `errors`) is a package of its own.

Run as a script (`python tests/test_architecture.py`) to print every cycle, private import and long function found.
"""

from __future__ import annotations

import ast
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

SOURCE = Path(__file__).resolve().parent.parent / "src"
ROOT_PACKAGE = "w2vprof"

#: Findings in files other helpers are still changing; the lead removes entries as they go (then the test is strict).
KNOWN_MODULE_CYCLES: set[frozenset[str]] = set()
KNOWN_PACKAGE_CYCLES: set[frozenset[str]] = set()
KNOWN_PRIVATE_IMPORTS: set[tuple[str, str]] = set()  # (importing module, "module._name")


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


def imports_of(module: str, path: Path, known: dict[str, Path]) -> list[Import]:
    """The w2vprof imports of one file, `from pkg import submodule` resolved to the submodule."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
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
    stale = (
        [sorted(c) for c in KNOWN_MODULE_CYCLES - cycles]
        + [sorted(c) for c in KNOWN_PACKAGE_CYCLES - packages]
        + [list(p) for p in KNOWN_PRIVATE_IMPORTS - private]
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


def main() -> int:
    found = all_imports()
    problems = 0
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
