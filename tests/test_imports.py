"""Imports run one way. The contracts are declared in ``.importlinter`` at the repository root (the
layers, no circle in any package, who may import the package facade, task definitions import no
other explorer module) and checked here by import-linter, exactly as ``lint-imports`` checks them:
every import statement counts, function-local ones included. One more check reads the same grimp
graph module by module: no module is in a circle, including one through its own package's
``__init__``, which import-linter's sibling contract cannot see."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / ".importlinter"


def lint_imports(cwd: Path) -> tuple[int, str]:
    """Run import-linter on the ``explorer`` package found from ``cwd``, with ``cwd``'s
    ``.importlinter``: (exit status, its report). In a subprocess, so that the package it reads is
    the one under ``cwd``, not the one this test session imported."""
    code = ("import sys; from importlinter.cli import lint_imports; "
            "sys.exit(lint_imports(config_filenames=('.importlinter',), no_cache=True, no_logo=True))")
    path = os.pathsep.join(p for p in (str(cwd), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "PYTHONPATH": path}
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)
    return done.returncode, done.stdout + done.stderr


def broken_part(report: str) -> str:
    """The report from its "Broken contracts" heading on (the importer -> imported lines)."""
    at = report.find("Broken contracts")
    return report[at:] if at >= 0 else report


def test_the_import_contracts_hold():
    status, report = lint_imports(ROOT)
    assert "Analyzed" in report and "explorer" in report, report
    assert status == 0, "import contracts broken (.importlinter):\n" + broken_part(report)


def test_a_planted_upward_import_or_circle_breaks_the_contracts(tmp_path):
    # a copy of the package with three planted imports, each inside a function: a task definition
    # that reaches up to a figure module, a model module that closes a circle with its sibling
    # (explorer.models.loading imports explorer.models.dit), and an engine import of the facade
    shutil.copytree(ROOT / "explorer", tmp_path / "explorer", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(CONFIG, tmp_path / ".importlinter")
    planted = {
        "tasks/orders.py": "def _planted():\n    from explorer.viz import palette\n",
        "models/dit.py": "def _planted():\n    from . import loading\n",
        "engine.py": "def _planted():\n    import explorer\n",
    }
    for rel, text in planted.items():
        path = tmp_path / "explorer" / rel
        path.write_text(path.read_text(encoding="utf-8") + "\n\n" + textwrap.dedent(text), encoding="utf-8")

    status, report = lint_imports(tmp_path)
    broken = broken_part(report)
    assert status != 0, report
    assert "explorer.tasks.orders -> explorer.viz.palette" in broken, broken
    assert "explorer.models" in broken and ".dit -> .loading" in broken, broken
    assert "protected package explorer" in broken and "- explorer.engine -> explorer (l." in broken, broken


def import_circles(graph: grimp.ImportGraph) -> list[str]:
    """The imports ``a -> b`` (function-local ones included) from which a chain of imports leads back
    to ``a``, each circle once, written as the closed path ``a -> b -> ... -> a``."""
    circles, seen = [], set()
    for module in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            back = graph.find_shortest_chain(importer=imported, imported=module)
            if back and frozenset(back) not in seen:   # each circle once, from its first module
                seen.add(frozenset(back))
                circles.append(" -> ".join((module, *back)))
    return circles


def test_no_module_is_in_an_import_circle():
    # acyclic_siblings sees circles between the children of a package, each child package taken
    # whole; a package's __init__ that imports one of its modules, which imports the package back
    # (``from . import from_config`` inside a function), is a circle only the module graph shows
    graph = grimp.build_graph("explorer", cache_dir=None)
    assert len(graph.modules) > 50
    circles = import_circles(graph)
    assert not circles, "import circles:\n" + "\n".join(circles)


def test_a_planted_import_of_the_own_package_is_a_circle():
    graph = grimp.build_graph("explorer", cache_dir=None)
    assert graph.direct_import_exists(importer="explorer.metrics", imported="explorer.metrics.entropy")
    graph.add_import(importer="explorer.metrics.entropy", imported="explorer.metrics", line_number=1,
                     line_contents="from explorer import metrics")
    assert "explorer.metrics -> explorer.metrics.entropy -> explorer.metrics" in import_circles(graph)
