"""The README's install commands install everything the code and the tests import: every package imported by the
package, the app, the tests and the benchmarks is pinned in requirements.txt or requirements-dev.txt (a module that
only happens to be installed here, as mpmath was, breaks the test command in a fresh virtual environment)."""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions

from tests.conftest import ROOT

SOURCES = ["app.py", "app_state.py", "pages", "clm_core", "tests", "benchmarks"]


def _files() -> list:
    return [path for name in SOURCES for path in ((ROOT / name).rglob("*.py") if (ROOT / name).is_dir()
                                                  else [ROOT / name])]


def _imported_modules() -> set[str]:
    modules = set()
    for path in _files():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    return modules


def _pinned() -> set[str]:
    names = set()
    for file in ("requirements.txt", "requirements-dev.txt"):
        for line in (ROOT / file).read_text(encoding="utf-8").splitlines():
            match = re.match(r"([A-Za-z0-9_.-]+)==", line.strip())
            if match:
                names.add(match.group(1).lower().replace("_", "-"))
    return names


def test_every_imported_package_is_pinned():
    ours = {path.stem for path in _files()} | {"clm_core", "tests", "pages", "benchmarks"}  # by name, as scripts do
    distributions = packages_distributions()
    third_party = {module for module in _imported_modules() - ours - set(sys.stdlib_module_names)}
    missing = {module: distributions.get(module) for module in third_party
               if not {name.lower().replace("_", "-") for name in distributions.get(module, [module])} & _pinned()}
    assert missing == {}
