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


# ----------------------------------------------------------------------------- ROUGE (reproduce_llada)

def _reproduce_llada():
    spec = importlib.util.spec_from_file_location("reproduce_llada", BENCHMARKS / "reproduce_llada.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# (reference, answer, (ROUGE-1, ROUGE-2, ROUGE-Lsum) F) as the hand-written implementation that
# benchmarks/reproduce_llada.py carried before it called rouge-score computed them: lower case,
# non-alphanumerics separate tokens, no stemming, " . " ends a sentence for Lsum
HAND_WRITTEN_ROUGE = [
    ("The cat sat.", "the cat ran", (0.6666666666666666, 0.5, 0.6666666666666666)),
    ("a b c d", "a x c y d", (0.6666666666666665, 0.0, 0.6666666666666665)),
    ("a b\nc d", "a c\nb d", (1.0, 0.0, 1.0)),
    ("I have no comment.", "I have no comment.", (1.0, 1.0, 1.0)),
    ("Paris is the capital of France.", "The capital of France is Paris.", (1.0, 0.6, 0.6666666666666666)),
    ("Nothing happens if you eat watermelon seeds . They pass through you.",
     "You grow watermelons in your stomach . Nothing happens.",
     (0.3157894736842105, 0.11764705882352941, 0.3157894736842105)),
    ("It's 3.5 km away, isn't it?", "it is 3 5 km away", (0.6666666666666667, 0.4615384615384615, 0.6666666666666667)),
    ("The sky is blue on a clear day.", "", (0.0, 0.0, 0.0)),
    ("", "something", (0.0, 0.0, 0.0)),
    ("the the the cat", "the cat the the", (1.0, 0.6666666666666666, 0.75)),
    ("Über café naïve", "uber cafe naive", (0.0, 0.0, 0.0)),
    ("A spider has eight legs . Spiders are arachnids . Insects have six legs.",
     "Spiders have eight legs . They are not insects.", (0.6, 0.1111111111111111, 0.6)),
    ("x y z x y z", "z y x z y x", (1.0, 0.0, 0.5)),
    ("Dwight D. Eisenhower was president of the United States in 1955.",
     "Eisenhower was president in 1955 . He was a Republican.", (0.5, 0.33333333333333326, 0.5)),
]


def test_rouge_agrees_with_rouge_score_and_with_the_hand_written_numbers():
    """reproduce_llada's ROUGE is lm-eval's TruthfulQA call of rouge-score (rouge1, rouge2, rougeLsum
    after " . " -> ".\\n"); the hand-written implementation it replaced gave the same numbers on
    every case above (frozen here), so Table-3 scores computed before and after agree."""
    from rouge_score import rouge_scorer

    rl = _reproduce_llada()
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeLsum"])
    for ref, answer, expected in HAND_WRITTEN_ROUGE:
        prepared = scorer.score(ref.replace(" . ", ".\n"), answer.replace(" . ", ".\n"))
        library = tuple(prepared[k].fmeasure for k in ("rouge1", "rouge2", "rougeLsum"))
        ours = (rl.rouge_n(ref, answer, 1), rl.rouge_n(ref, answer, 2), rl.rouge_lsum(ref, answer))
        assert ours == pytest.approx(expected, abs=1e-12), (ref, answer)
        assert library == pytest.approx(expected, abs=1e-12), (ref, answer)
