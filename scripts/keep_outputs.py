"""Run notebooks and keep their outputs in the files, so their pictures show before anything runs.

    python scripts/keep_outputs.py notebooks/02_why_remasking.ipynb

Each notebook runs top to bottom in a fresh ``python3`` kernel (nbclient, as the test suite's nbmake
does) with the notebook's own folder as working directory, then is written back in place with its
outputs. What cannot show without a kernel is not kept: a widget's live view becomes one line
saying to run the cell (and the widgets' saved state goes), and the kernel's warnings on stderr are
dropped. Cell sources are untouched, so ``git diff`` shows only outputs.

``tests/test_browser_02.py`` checks that the figures kept in notebook 02 are the figures a fresh run
draws now: run this script again after changing anything they are drawn from.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

WIDGET = "application/vnd.jupyter.widget-view+json"
WIDGET_NOTE = "(an interactive viewer: run this cell to open it)"


def keepable(output: dict) -> dict | None:
    """The part of one output worth keeping in the file, or None."""
    if output.get("output_type") == "stream" and output.get("name") == "stderr":
        return None
    data = output.get("data")
    if data and WIDGET in data:
        output = dict(output, data={"text/plain": WIDGET_NOTE})
    return output


def run(path: Path, timeout: int = 900, kernel: str = "python3"):
    """Execute ``path`` and return the notebook with its keepable outputs (not written)."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=timeout, kernel_name=kernel,
                   resources={"metadata": {"path": str(path.parent.resolve())}}).execute()
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        cell.outputs = [nbformat.from_dict(o) for o in (keepable(o) for o in cell.outputs) if o is not None]
        cell.metadata.pop("execution", None)   # timings change on every run
    nb.metadata.pop("widgets", None)           # live widget state: useless once its views are dropped
    return nb


def main(argv: list[str] | None = None) -> int:
    import nbformat

    p = argparse.ArgumentParser(prog="python scripts/keep_outputs.py", description=__doc__.split("\n\n")[0])
    p.add_argument("notebooks", nargs="+", type=Path, help="notebooks to run and rewrite in place")
    p.add_argument("--timeout", type=int, default=900, help="seconds per cell (default 900)")
    a = p.parse_args(argv)
    for path in a.notebooks:
        if not path.is_file():
            print(f"{path}: no such notebook", file=sys.stderr)
            return 2
    for path in a.notebooks:
        nb = run(path, timeout=a.timeout)
        nbformat.write(nb, path)
        print(f"{path}: outputs kept")
    return 0


if __name__ == "__main__":
    sys.exit(main())
