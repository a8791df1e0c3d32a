"""Smoke test: every ``benchmarks/*.py`` runs with ``--quick`` and prints its side-by-side figures.

Not a timing test (the numbers depend on the machine and its load): it checks that each benchmark
still runs end to end in a fresh process, exits 0 and prints at least one ratio line of the form
``what: A / B = x`` (``benchmarks/_common.py``'s ``print_ratio``) with a finite, positive value.
A new benchmark is picked up by the glob; it must take ``--quick`` and print such a line.
"""
from __future__ import annotations

import importlib.util
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = sorted(p for p in BENCHMARKS.glob("*.py") if not p.name.startswith("_"))
QUICK_LIMIT_S = 180      # --quick aims at ~15-40 s here; this only catches a hang or a lost --quick


def _load_common():
    """benchmarks/_common.py without putting the benchmarks folder on sys.path for the whole session."""
    spec = importlib.util.spec_from_file_location("benchmarks_common", BENCHMARKS / "_common.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


RATIO_LINE = _load_common().RATIO_LINE


def test_the_glob_finds_the_benchmarks():
    names = {p.name for p in SCRIPTS}
    assert {"overhead.py", "throughput.py", "dit_step.py", "scrubber.py", "reproduce_owt.py"} <= names
    assert "_common.py" not in names


def test_the_ratio_line_pattern():
    found = RATIO_LINE.findall("dit-small: generate / bare calls = 1.087  (engine 2 ms per step)\n"
                               "  stories speed-up: upstream-style seconds / ours seconds = 3.09x\n"
                               "generate/bare 1.2\n")
    assert found == [("dit-small", "generate", "bare calls", "1.087"),
                     ("  stories speed-up", "upstream-style seconds", "ours seconds", "3.09")]


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_quick_run_prints_its_ratios(script, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1")
    res = subprocess.run([sys.executable, str(script), "--quick"], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=QUICK_LIMIT_S)
    assert res.returncode == 0, f"{script.name} --quick exited {res.returncode}:\n{res.stderr[-3000:]}"
    ratios = RATIO_LINE.findall(res.stdout)
    assert ratios, f"{script.name} --quick printed no 'what: A / B = x' line:\n{res.stdout[-2000:]}"
    for what, a, b, value in ratios:
        assert math.isfinite(float(value)) and float(value) > 0, (script.name, what, a, b, value)
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    assert list(tmp_path.iterdir()) == [], "a --quick run left files in its working folder"
