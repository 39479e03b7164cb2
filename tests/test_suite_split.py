"""The unit/integration split in conftest.INTEGRATION names tests and fixtures that exist.

A renamed or deleted test would otherwise drop out of the list silently, and a slow test would slip into the
unit loop (`python -m pytest -q -m "not integration"`).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import INTEGRATION, is_integration

TESTS = Path(__file__).parent


def functions_in(module: str) -> set[str]:
    """Names of the module's top-level functions and of the tests it makes with `name = factory(...)`."""
    tree = ast.parse((TESTS / f"{module}.py").read_text(encoding="utf-8"))
    names = {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
    assigned = {
        target.id
        for node in tree.body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name) and isinstance(node.value, ast.Call)
    }
    return names | assigned


@pytest.mark.parametrize("module", sorted(INTEGRATION))
def test_every_integration_name_is_a_test_or_fixture_of_its_module(module):
    assert (TESTS / f"{module}.py").is_file(), f"conftest.INTEGRATION names {module}.py, which does not exist"
    missing = {name for name in INTEGRATION[module] - {"*"} if name.partition("[")[0] not in functions_in(module)}
    assert not missing, f"conftest.INTEGRATION[{module!r}] names what {module}.py does not define: {sorted(missing)}"


def test_a_test_is_integration_by_name_parameter_set_fixture_or_module(monkeypatch):
    monkeypatch.setitem(INTEGRATION, "test_made_up", frozenset({"test_slow", "test_mixed[big]", "trained"}))
    monkeypatch.setitem(INTEGRATION, "test_all_slow", frozenset({"*"}))
    assert is_integration("test_made_up", "test_slow", "test_slow[a-1]", [])
    assert is_integration("test_made_up", "test_mixed", "test_mixed[big]", [])
    assert not is_integration("test_made_up", "test_mixed", "test_mixed[small]", [])
    assert is_integration("test_made_up", "test_quick", "test_quick", ["tmp_path", "trained"])
    assert not is_integration("test_made_up", "test_quick", "test_quick", ["tmp_path"])
    assert is_integration("test_all_slow", "test_anything", "test_anything", [])
    assert not is_integration("test_no_such_module", "test_slow", "test_slow", ["trained"])
