"""Another commit of this repository, side by side: ``--against REV`` in the benchmarks.

:func:`tree_at` exports ``git archive REV`` into a temporary folder (once per run), and
:func:`run_with_tree` runs a worker subprocess with that tree's ``explorer`` first on the import
path, so a benchmark can time the engine of this checkout and of REV alternately, in one run.
"""
from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_TREES: dict[str, Path] = {}


def tree_at(rev: str) -> Path:
    """The files of commit ``rev`` in a temporary folder (removed at exit); a clear error if unknown."""
    if rev not in _TREES:
        ok = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], cwd=ROOT,
                            capture_output=True, text=True)
        if ok.returncode:
            sys.exit(f"--against {rev}: not a commit of this repository; give a hash or a name like HEAD~1.")
        d = Path(tempfile.mkdtemp(prefix="explorer-against-"))
        atexit.register(shutil.rmtree, d, ignore_errors=True)
        archive = subprocess.run(["git", "archive", "--format=tar", rev], cwd=ROOT, capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(d)], input=archive.stdout, check=True)
        _TREES[rev] = d
    return _TREES[rev]


def run_with_tree(script: Path, spec: dict, tree: Path | None) -> dict:
    """``python script --worker SPEC`` with ``tree``'s explorer (None: this checkout's); its JSON answer."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if tree is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(tree)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    res = subprocess.run([sys.executable, str(script), "--worker", json.dumps(spec)], capture_output=True,
                         text=True, env=env, cwd=script.parent)
    if res.returncode:
        raise RuntimeError(res.stderr[-3000:])
    return json.loads(res.stdout.strip().splitlines()[-1])
