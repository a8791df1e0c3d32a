"""The import graph of the ``explorer`` package, read from the source with ``ast``.

    python -m explorer._imports            # every edge, then the circles (exit 1 if there is one)
    python -m explorer._imports --circles  # only the circles
    python -m explorer._imports --with-shims --circles   # counting the deprecated re-exports too

Every ``import`` and ``from ... import`` statement counts, wherever it sits: at module level,
inside a function, under ``if TYPE_CHECKING`` or in a ``try``. A function-local import that
reaches upward is a circle in disguise: it runs later, but the two modules still cannot be
understood, tested or moved one without the other.

Nodes are module names (``explorer.tasks.orders``; a package is its ``__init__``:
``explorer.metrics``). An edge ``a -> b`` means ``a`` names ``b`` in an import statement:
``from explorer.tasks import orders`` is an edge to ``explorer.tasks.orders`` (the submodule),
``from explorer.metrics import generative_perplexity`` one to ``explorer.metrics`` (the
package, whose ``__init__`` runs and imports its own submodules). The implicit import of the
parents of a module (``explorer``, ``explorer.tasks``) is not an edge: every module of a package
would otherwise depend on the package's ``__init__``, and a package that re-exports its modules
would be a circle by construction (the convention of ``grimp`` / ``import-linter``).

Circles are the strongly connected components with more than one module (Tarjan's algorithm),
plus any module that imports itself.

Not seen: ``importlib.import_module`` with a computed name. Two modules use it today, both
downward: ``explorer.tasks.get_task`` (a task module by name) and ``explorer.viz``'s lazy access
to ``explorer.viz.sweep``.

One exception, listed by name in ``DEPRECATED_REEXPORTS``: a module-level ``__getattr__`` (PEP 562)
that imports a name which moved *up* out of the module, so that old code reading it at the old
path keeps working, with a DeprecationWarning. Its import runs only when someone asks for a moved
name, never when the module is imported, and it is the only way to keep such a name without the
module importing its new home. Those edges are kept apart (:func:`shim_edges`); any other import in
a ``__getattr__`` counts like every other import, and a shim not on the list fails the test.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = "explorer"
ROOT = Path(__file__).resolve().parent

# (module, the module its PEP 562 ``__getattr__`` imports moved names from); see the docstring.
DEPRECATED_REEXPORTS: frozenset[tuple[str, str]] = frozenset({
    ("explorer.tasks.orders", "explorer.studies.orders"),  # sampler_validity, error_causes, ...
    ("explorer.sweep", "explorer.cli"),                    # main -> explorer.cli.sweep_main
    ("explorer.sweep", "explorer.viz.sweep_report"),       # report_html
})


def module_files(root: Path = ROOT, package: str = PACKAGE) -> dict[str, Path]:
    """``{module name: file}`` for every ``.py`` file under ``root``."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join([package, *parts])] = path
    return out


def _resolve_relative(module: str, is_package: bool, level: int, name: str | None) -> str:
    """The absolute name of ``from <level dots><name> import ...`` written in ``module``."""
    base = module.split(".")
    if not is_package:
        base = base[:-1]  # a plain module's dots count from its package
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join([*base, *([name] if name else [])])


def _import_targets(node: ast.AST, module: str, is_package: bool, modules: set[str]) -> set[str]:
    """The ``explorer`` modules one import statement names."""

    def nearest(name: str) -> str | None:
        # ``import explorer.models.loading`` names that module; a name that is not a module of
        # ours (``explorer.sweep.sweep`` as an attribute) falls back to its nearest module
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    out: set[str] = set()
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name == PACKAGE or alias.name.startswith(PACKAGE + "."):
                target = nearest(alias.name)
                if target:
                    out.add(target)
    elif isinstance(node, ast.ImportFrom):
        base = _resolve_relative(module, is_package, node.level, node.module) if node.level else node.module or ""
        if base == PACKAGE or base.startswith(PACKAGE + "."):
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                target = sub if sub in modules else nearest(base)
                if target:
                    out.add(target)
    return out


def _parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _module_getattr(tree: ast.Module) -> ast.FunctionDef | None:
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "__getattr__":
            return node
    return None


def imports_of(module: str, path: Path, modules: set[str], with_shims: bool = False) -> set[str]:
    """The ``explorer`` modules that ``module`` (source at ``path``) names in an import, anywhere
    in the file; the imports of a listed ``DEPRECATED_REEXPORTS`` shim only if ``with_shims``."""
    tree = _parse(path)
    is_package = path.name == "__init__.py"
    shim = _module_getattr(tree)
    in_shim = {id(n) for n in ast.walk(shim)} if shim is not None else set()
    out: set[str] = set()
    for node in ast.walk(tree):
        targets = _import_targets(node, module, is_package, modules)
        if id(node) in in_shim and not with_shims:
            targets = {t for t in targets if (module, t) not in DEPRECATED_REEXPORTS}
        out |= targets
    return out


def shim_edges(root: Path = ROOT, package: str = PACKAGE) -> set[tuple[str, str]]:
    """Every ``(module, target)`` imported inside a module-level ``__getattr__``."""
    files = module_files(root, package)
    names = set(files)
    out = set()
    for m, p in files.items():
        shim = _module_getattr(_parse(p))
        if shim is not None:
            for node in ast.walk(shim):
                out |= {(m, t) for t in _import_targets(node, m, p.name == "__init__.py", names)}
    return out


def import_graph(root: Path = ROOT, package: str = PACKAGE, with_shims: bool = False) -> dict[str, set[str]]:
    """``{module: set of explorer modules it imports}`` for every module of the package (without
    the listed deprecation shims' edges unless ``with_shims``)."""
    files = module_files(root, package)
    names = set(files)
    return {m: imports_of(m, p, names, with_shims) for m, p in files.items()}


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components, each sorted, largest first."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    comps: list[list[str]] = []
    counter = [0]
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph) + 100))

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            comps.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(comps, key=lambda c: (-len(c), c))


def circles(graph: dict[str, set[str]] | None = None) -> list[list[str]]:
    """The import circles: components of more than one module, and modules importing themselves."""
    graph = import_graph() if graph is None else graph
    return [c for c in strongly_connected(graph) if len(c) > 1 or c[0] in graph.get(c[0], ())]


def cycle_path(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """One closed path through a circle, ``[a, b, ..., a]``, to show a reader where it turns."""
    members = set(component)
    start = component[0]
    # breadth-first from ``start`` inside the component: the shortest circle through it
    prev: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & members):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(prev[path[-1]])
                    return [*reversed(path), start]
                if w not in prev:
                    prev[w] = v
                    nxt.append(w)
        frontier = nxt
    return component


def describe(graph: dict[str, set[str]] | None = None) -> str:
    """Human-readable report of the circles (empty string when there are none)."""
    graph = import_graph() if graph is None else graph
    lines = []
    for comp in circles(graph):
        lines.append(f"circle of {len(comp)} modules: {', '.join(comp)}")
        lines.append("  e.g. " + " -> ".join(cycle_path(graph, comp)))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    graph = import_graph(with_shims="--with-shims" in argv)
    if "--circles" not in argv:
        for m in sorted(graph):
            print(f"{m} -> {', '.join(sorted(graph[m])) or '(nothing in explorer)'}")
        print()
    text = describe(graph)
    print(text or f"no import circle among {len(graph)} explorer modules")
    return 1 if text else 0


if __name__ == "__main__":
    sys.exit(main())
