"""The layout shows the architecture: a few rooms under ``facets/``, dependencies one way.

The direction itself is import-linter's contracts in ``pyproject.toml``; these tests run them
(and show they can fail), and hold the shape of the folder.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ROOMS = ["api", "cli", "counts", "edge", "ops"]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(tree: Path) -> subprocess.CompletedProcess:
    """Run import-linter's contracts over the packages in ``tree``."""
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(tree / "pyproject.toml"), "--no-cache"],
        cwd=tree,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def copy_of_the_tree(tmp_path: Path) -> Path:
    for name in ("facets", "models"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    return tmp_path


def test_the_dependency_contracts_hold():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "module, imported",
    [
        ("facets/counts/read.py", "facets.api.schemas"),
        ("facets/counts/cache.py", "facets.edge.auth"),
        ("facets/edge/limits.py", "facets.api.blueprint"),
        ("facets/ops/health.py", "facets.cli.commands"),
        ("models/uow.py", "facets.extensions"),
    ],
)
def test_an_import_against_the_direction_breaks_a_contract(tmp_path, module, imported):
    tree = copy_of_the_tree(tmp_path)
    with (tree / module).open("a") as source:
        source.write(f"\nimport {imported}  # noqa\n")
    result = lint_imports(tree)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout


def test_facets_holds_few_modules_at_its_top():
    modules = sorted(p.name for p in (ROOT / "facets").glob("*.py"))
    assert len(modules) <= 8, modules


@pytest.mark.parametrize("room", ROOMS)
def test_every_room_says_what_it_owns_and_may_import(room):
    init = ROOT / "facets" / room / "__init__.py"
    docstring = ast.get_docstring(ast.parse(init.read_text()))
    assert docstring and "import" in docstring, room


def test_every_subpackage_is_a_room():
    packages = {p.parent.name for p in (ROOT / "facets").glob("*/__init__.py")}
    assert packages == set(ROOMS)
