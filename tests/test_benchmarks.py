"""Every ``benchmarks/*.py`` runs with ``--quick`` and what it prints means something.

Not a timing test (the numbers depend on the machine and its load): each benchmark runs end to end
in a fresh process, exits 0, leaves no file behind and prints its side-by-side figures as
``what: A / B = x`` lines (``benchmarks/_common.py``'s ``print_ratio``); then a checker of its own
(:data:`CHECKS`) reads those lines and the tables printed beside them and asserts what must hold
on any machine: the named measurements appear, each ratio is the quotient of the numbers printed
next to it, counts that must be equal are equal (model calls of two loops that run the same
schedule, ReMDM-LLaDA's two calls per step), and the bounds that follow from what is measured
(a fast path computes the head on fewer rows). A new benchmark is picked up by the glob and must
take ``--quick``, print such lines and have its checker here.

``benchmarks/reproduce_llada.py`` is also run under ``torchrun`` with two CPU ranks (gloo): the
rows rank 0 gathers are those of a single process, answer by answer.
"""
from __future__ import annotations

import importlib.util
import math
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = sorted(p for p in BENCHMARKS.glob("*.py") if not p.name.startswith("_"))
QUICK_LIMIT_S = 240      # --quick aims at ~15-40 s here; this only catches a hang or a lost --quick
ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")


def _load_common():
    """benchmarks/_common.py without putting the benchmarks folder on sys.path for the whole session."""
    spec = importlib.util.spec_from_file_location("benchmarks_common", BENCHMARKS / "_common.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


RATIO_LINE = _load_common().RATIO_LINE


def ratios(out: str) -> dict[tuple[str, str, str], float]:
    """``{(what, A, B): x}`` of every ratio line."""
    return {(w.strip(), a.strip(), b.strip()): float(v) for w, a, b, v in RATIO_LINE.findall(out)}


def close(x: float, y: float, rel: float, abs_: float = 0.0) -> bool:
    return math.isclose(x, y, rel_tol=rel, abs_tol=abs_)


def numbers(pattern: str, out: str) -> list[tuple]:
    """Every match of ``pattern`` (MULTILINE) with its groups; at least one."""
    found = re.findall(pattern, out, re.MULTILINE)
    assert found, f"no line matches {pattern!r}:\n{out[-2000:]}"
    return found


# ----------------------------------------------------------------------------- what each one must print

def check_dit_step(out, r):
    # what=remdm-loop T=4  precision=fp32  batch=1  ...  model calls=2  ...  vs T bare calls=0.76  per model call=1.53
    rows = numbers(r"^what=(.+? T=(\d+))\s+precision=(\S+)\s+batch=(\d+).*?model calls=(\d+)", out)
    for label, T, precision, batch, calls in rows:
        T, calls = int(T), int(calls)
        assert 1 <= calls <= T, (label, calls)     # the engine skips the network when nothing changed
        what = f"{label} {precision} batch {batch}"
        per_step = r[(what, "generate", f"{T} bare calls")]
        per_call = r[(what, "generate", f"{calls} bare calls (as many as the engine made)")]
        assert close(per_call, per_step * T / calls, rel=0.01, abs_=0.002), (what, per_step, per_call)
    assert re.search(r"^what=forward\s", out, re.MULTILINE)


def check_overhead(out, r):
    # stub   steps=   8 batch=  2 L=  32 model_calls=   6 | bare 0.000s  traced 0.018s  untraced 0.020s
    rows = numbers(r"^(\S+)\s+steps=\s*(\d+) batch=\s*\d+ L=\s*\d+ model_calls=\s*(\d+) \| "
                   r"bare ([\d.]+)s\s+traced ([\d.]+)s\s+untraced ([\d.]+)s", out)
    assert {name for name, *_ in rows} >= {"stub", "dit-small"}
    for name, steps, calls, bare, traced, untraced in rows:
        assert 1 <= int(calls) <= int(steps), name
        bare, traced, untraced = float(bare), float(traced), float(untraced)
        on_off = r[(name, "trace-on", "trace-off")]
        if untraced >= 0.01:
            assert close(on_off, traced / untraced, rel=0.15), (name, on_off, traced, untraced)
        generate_bare = next(v for (w, a, b), v in r.items() if w == name and (a, b) == ("generate", "bare calls"))
        if bare >= 0.01:
            assert close(generate_bare, traced / bare, rel=0.15), (name, generate_bare, traced, bare)
            assert generate_bare > 0.5, name   # generate makes the bare calls and more


def check_throughput(out, r):
    # "  ours   771.3   0.33   8   280   35" then "  upstream-style ..." under each model's header
    models = numbers(r"^\n?(\S.*?) \[model used: .*?\]: ", out)
    variants = numbers(r"^  (ours|upstream-style)\s+([\d.]+)\s+([\d.]+)\s+(\d+)\s+(\d+)\s+\d+\s*$", out)
    assert len(variants) == 2 * len(models)
    for k, name in enumerate(models):
        ours, upstream = variants[2 * k], variants[2 * k + 1]
        assert (ours[0], upstream[0]) == ("ours", "upstream-style")
        head = r[(f"{name} head rows", "ours", "upstream-style")]
        assert close(head, int(ours[4]) / int(upstream[4]), rel=0.002, abs_=0.001), (name, head)
        assert head < 1 and int(ours[3]) <= int(upstream[3]), name    # the head on fewer rows, no extra body call
        assert (f"{name} speed-up", "upstream-style seconds", "ours seconds") in r
        assert (f"{name} peak memory", "ours", "upstream-style") in r


def check_scrubber(out, r):
    median = {name.strip(): float(ms) for name, ms in
              numbers(r"^(random step \(cold\)|random step \(cached\)|one step forward)\s+median\s+([\d.]+) ms", out)}
    for name in ("random step (cold)", "one step forward"):
        assert close(r[(name, "median re-render", "100 ms budget")], median[name] / 100, rel=0.01, abs_=0.0015), name
    cold_cached = r[("re-render", "cold median", "cached median")]
    assert close(cold_cached, median["random step (cold)"] / median["random step (cached)"], rel=0.03), cold_cached


def check_reproduce_owt(out, r):
    # mdlm   128  entropy   4.116 ± 0.015   5.520
    rows = numbers(r"^(\S+)\s+(\d+)\s+(\S+)\s+([\d.]+) ± [\d.]+\s+([\d.]+)\s*$", out)
    for sampler, T, metric, measured, paper in rows:
        measured, paper = float(measured), float(paper)
        if metric == "entropy":
            assert 0 < measured <= math.log(1000), (sampler, measured)   # the --quick DiT has 1000 tokens
        value = r[(f"{sampler} T={T} {metric}", "measured", "paper")]
        assert close(value, measured / paper, rel=0.002, abs_=0.001), (sampler, value)


def check_llada_step(out, r):
    for L in numbers(r"^\s*logits \[1, L, V\]\s+(\d+)\s", out):
        assert (f"L={L} forward", "full logits ms", "body + 1-row head ms") in r
    calls = numbers(r"^\s*(explorer\.generate \(ReMDMLLaDA\)|upstream-style loop)\s+\d+\s+\d+\s+(\d+)\s", out)
    assert len(calls) == 2 and calls[0][1] == calls[1][1] == "64", calls   # 32 steps, 2 calls each, both loops
    assert any(w.startswith("ReMDM-LLaDA") and w.endswith("speed-up") for w, _, _ in r)


def check_live(out, r):
    # orders   ReMDM-loop T=64 ... | plain 6.001s  live 5.681s  (28 frames, ...
    rows = numbers(r"^(\S+)\s+ReMDM-loop .*?\| plain ([\d.]+)s\s+live ([\d.]+)s\s+\((\d+) frames", out)
    for name, plain, live, frames in rows:
        assert int(frames) > 0, name
        value = r[(f"{name} live view", "live generate", "plain generate")]
        assert close(value, float(live) / float(plain), rel=0.01, abs_=0.002), (name, value)
        threaded, = numbers(rf"^{name}\s+plain generate in a worker thread ([\d.]+)s$", out)
        value = r[(f"{name} worker thread", "plain generate in a thread", "plain generate")]
        assert close(value, float(threaded) / float(plain), rel=0.01, abs_=0.002), (name, value)


def check_reproduce_llada(out, r):
    assert r[("model calls per answer", "remdm-llada", "llada")] == 2.0   # the remasking window doubles the calls
    assert ("seconds per answer", "remdm-llada", "llada") in r
    rows = {label: float(calls) for label, calls in
            numbers(r"^\| (llada|remdm-llada) \| LLaDA(?:-ReMDM)? \|.*\| ([\d.]+) \| [\d.]+ \|$", out)}
    assert rows == {"llada": 32.0, "remdm-llada": 64.0}
    assert re.search(r"^\| — \| LLaDA-DFM \|", out, re.MULTILINE)


CHECKS = {"dit_step.py": check_dit_step, "overhead.py": check_overhead, "throughput.py": check_throughput,
          "scrubber.py": check_scrubber, "reproduce_owt.py": check_reproduce_owt, "llada_step.py": check_llada_step,
          "live.py": check_live, "reproduce_llada.py": check_reproduce_llada}


def test_every_benchmark_has_its_checker():
    names = {p.name for p in SCRIPTS}
    assert {"overhead.py", "throughput.py", "dit_step.py", "scrubber.py", "reproduce_owt.py"} <= names
    assert "_common.py" not in names
    missing = names - set(CHECKS)
    assert not missing, f"add a checker to CHECKS for {sorted(missing)}: what must its --quick output show?"


def test_the_ratio_line_pattern():
    found = RATIO_LINE.findall("dit-small: generate / bare calls = 1.087  (engine 2 ms per step)\n"
                               "  stories speed-up: upstream-style seconds / ours seconds = 3.09x\n"
                               "generate/bare 1.2\n")
    assert found == [("dit-small", "generate", "bare calls", "1.087"),
                     ("  stories speed-up", "upstream-style seconds", "ours seconds", "3.09")]


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_quick_run_prints_what_it_measured(script, tmp_path):
    res = subprocess.run([sys.executable, str(script), "--quick"], cwd=tmp_path, env=ENV, capture_output=True,
                         text=True, timeout=QUICK_LIMIT_S)
    assert res.returncode == 0, f"{script.name} --quick exited {res.returncode}:\n{res.stderr[-3000:]}"
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    assert list(tmp_path.iterdir()) == [], "a --quick run left files in its working folder"
    r = ratios(res.stdout)
    assert r, f"{script.name} --quick printed no 'what: A / B = x' line:\n{res.stdout[-2000:]}"
    for key, value in r.items():
        assert math.isfinite(value) and value > 0, (script.name, key, value)
    CHECKS[script.name](res.stdout, r)


def test_overhead_worker_holds_the_model_time_out():
    """``overhead.py --against``'s worker: per run, the seconds inside the model's own methods are
    measured (the same wrapper in both trees), so the engine's own time is positive and smaller
    than the run's, by the time the stub spent in its head."""
    import json
    spec = {"model": "stub", "steps": 4, "batch": 2, "length": 16, "repeats": 2}
    res = subprocess.run([sys.executable, str(BENCHMARKS / "overhead.py"), "--worker", json.dumps(spec)],
                         cwd=BENCHMARKS, env=ENV, capture_output=True, text=True, timeout=QUICK_LIMIT_S)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    for name in ("traced", "untraced"):
        assert len(out[name]) == len(out[name + "_engine"]) == 2
        for total, engine in zip(out[name], out[name + "_engine"]):
            assert 0 < engine < total, (name, total, engine)
    assert 1 <= out["model_calls"] <= 4 and out["ops_per_step"] > 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_reproduce_llada_over_two_ranks_equals_one_process(tmp_path):
    import pandas as pd

    script = str(BENCHMARKS / "reproduce_llada.py")
    args = ["--quick", "--no-truthfulqa", "--limit", "3", "--repeats", "2", "--seeds", "0",
            "--samplers", "llada,remdm-llada:remdm_number=2"]
    one = subprocess.run([sys.executable, script, *args, "--out", str(tmp_path / "one.csv")], env=ENV,
                         capture_output=True, text=True, timeout=QUICK_LIMIT_S)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                          f"--master_port={_free_port()}", script, *args, "--out", str(tmp_path / "two.csv")],
                         env=ENV, capture_output=True, text=True, timeout=QUICK_LIMIT_S)
    assert two.returncode == 0, two.stderr[-3000:]
    assert "2 process(es)" in two.stdout and two.stdout.count("## Table 3") == 1   # rank 0 alone reports
    cols = ["sampler", "task", "seed", "item", "metric", "value", "answers", "calls", "texts"]
    a, b = pd.read_csv(tmp_path / "one.csv")[cols], pd.read_csv(tmp_path / "two.csv")[cols]
    assert len(a) == 6 and a.equals(b)
    # per problem, 2 answers: LLaDA 32 calls each; ReMDM-LLaDA 64 (its remasking window, whatever remdm_number)
    assert set(a["calls"]) == {64, 128}
    assert a.groupby("sampler")["texts"].apply(tuple).nunique() == 2   # the samplers wrote different answers


def test_reproduce_llada_without_the_model_names_its_own_options(tmp_path):
    """Offline without LLaDA-8B it printed a traceback telling to call load_model(..., allow_download=True)."""
    res = subprocess.run([sys.executable, str(BENCHMARKS / "reproduce_llada.py"), "--device", "cpu", "--model",
                          str(tmp_path / "no-such-model"), "--limit", "1", "--no-truthfulqa"], env=ENV,
                         capture_output=True, text=True, timeout=QUICK_LIMIT_S)
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert "is not on this machine" in res.stderr and "--model DIR" in res.stderr and "--allow-download" in res.stderr


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
