"""Imports run one way: no circle among explorer modules (function-local imports included), and a
task definition imports nothing above it. ``python -m explorer._imports`` prints the graph."""
from __future__ import annotations

import textwrap
import warnings

import pytest

from explorer import _imports
from explorer.tasks import TASKS

TASK_DEFINITIONS = {"explorer.tasks", *(f"explorer.tasks.{name}" for name in TASKS)}


@pytest.fixture(scope="module")
def graph():
    return _imports.import_graph()


def test_no_import_circle_among_explorer_modules(graph):
    assert len(graph) > 50 and "explorer.tasks.orders" in graph and "explorer.studies.orders" in graph
    assert not _imports.circles(graph), "import circle(s):\n" + _imports.describe(graph)


def _write_package(root, files: dict[str, str]):
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def test_a_function_local_relative_import_back_up_is_a_circle(tmp_path):
    # the shape of the old explorer.tasks.orders: a task module whose function imports the engine,
    # which imports the task at module level
    pkg = _write_package(tmp_path / "explorer", {
        "__init__.py": "",
        "engine.py": "from .tasks import orders\n",
        "tasks/__init__.py": "",
        "tasks/orders.py": "def evaluate():\n    from ..engine import generate\n",
        "viz.py": "import explorer.engine\n",
    })
    graph = _imports.import_graph(pkg)
    assert graph["explorer.tasks.orders"] == {"explorer.engine"}
    assert graph["explorer.engine"] == {"explorer.tasks.orders"}
    assert graph["explorer.viz"] == {"explorer.engine"}
    assert _imports.circles(graph) == [["explorer.engine", "explorer.tasks.orders"]]
    assert "explorer.engine -> explorer.tasks.orders -> explorer.engine" in _imports.describe(graph)


def test_an_unlisted_getattr_import_counts(tmp_path):
    pkg = _write_package(tmp_path / "explorer", {
        "__init__.py": "",
        "low.py": "def __getattr__(name):\n    from . import high\n    return getattr(high, name)\n",
        "high.py": "from . import low\n",
    })
    assert _imports.circles(_imports.import_graph(pkg)) == [["explorer.high", "explorer.low"]]


def test_task_definitions_import_nothing_above_them(graph):
    for module in sorted(TASK_DEFINITIONS):
        reached, todo = set(), [module]
        while todo:
            for target in graph[todo.pop()] - reached:
                reached.add(target)
                todo.append(target)
        assert reached <= TASK_DEFINITIONS, f"{module} reaches {sorted(reached - TASK_DEFINITIONS)}"


def test_the_only_shims_are_the_listed_deprecated_reexports():
    # with them the old circle would be back; without them there is none (the first test)
    assert _imports.shim_edges() == set(_imports.DEPRECATED_REEXPORTS)
    assert _imports.circles(_imports.import_graph(with_shims=True))


def test_moved_orders_names_still_work_from_the_old_path_with_a_warning():
    from explorer.studies import orders as studies
    from explorer.tasks import orders

    for name in orders.MOVED_TO_STUDIES:
        with pytest.warns(DeprecationWarning, match=f"explorer.studies.orders.{name}"):
            assert getattr(orders, name) is getattr(studies, name)
    with pytest.raises(AttributeError):
        orders.no_such_name
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert orders.RULE_FIELDS["total"] == ("price", "qty", "total")  # task names: no warning


def test_moved_sweep_names_still_work_from_the_old_path_with_a_warning():
    import explorer.cli
    import explorer.viz.sweep_report
    from explorer import sweep as sweep_module  # the function; the module is in sys.modules
    import sys

    module = sys.modules["explorer.sweep"]
    assert callable(sweep_module)
    with pytest.warns(DeprecationWarning, match="explorer.cli.sweep_main"):
        assert module.main is explorer.cli.sweep_main
    with pytest.warns(DeprecationWarning, match="explorer.viz.sweep_report.report_html"):
        assert module.report_html is explorer.viz.sweep_report.report_html
