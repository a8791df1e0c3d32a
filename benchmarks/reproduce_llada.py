"""Reproduce the paper's Table 3: ReMDM on LLaDA-8B-Instruct (Countdown, TruthfulQA).

The protocol of the authors' pipeline (llada-dream reference §4.3-§4.4):

* model: LLaDA-8B-Instruct in bf16, batch of one prompt, no chat template: the context is
  tokenised with ``tokenizer(context)`` and its default special tokens;
* sampling: 32 new tokens, 32 steps, one block of 32 -- the baseline is LLaDA's confidence
  sampler at temperature 1 (32 model calls per sample, one token per step), ReMDM-LLaDA adds the
  remasking window (64 calls; ``remdm_number`` 1 for Countdown, 4 for TruthfulQA);
* post-processing: decode the 32 tokens with special tokens, cut at the task's stop string, then
  at ``<|eot_id|>``, then at the EOS token; re-tokenise and decode without special tokens;
* Countdown (``countdown3``): 4-shot, ``repeats`` = 10 samples per problem, pass@1 = c / 10
  (c correct), averaged over the problems (256 by default); an answer is correct when the number
  after its last "=" is the target, the numbers before it are exactly five, include the three
  given numbers, any other number appears at least twice (an intermediate result), and every
  comma-separated equation holds;
* TruthfulQA (``truthfulqa_gen``, ``--truthfulqa``): the 817 validation questions, the standard
  6-shot Q/A primer, stop at a blank line; for ROUGE-1/2/Lsum, max F over the correct references
  ("I have no comment." added) minus max F over the incorrect ones, averaged, in points;
* seeds: the paper averages 20 seeds (mean +- 95% CI); ``--seeds 0 1 ... 19`` does the same.

Countdown data: the authors' ``cd3_test.json`` is not public (§4.4 "NOT FOUND"); problems come
from ``--countdown-file`` (a JSON list of {"numbers": [a, b, c], "target": d}; "nums" also read)
or from :func:`countdown_problems`, whose rule is documented there. The 4 shots are problems of
the same rule with their solutions (the authors' fixed list was not readable either), so the
absolute numbers can differ from the paper's; the baseline-vs-ReMDM comparison is the point.

    python benchmarks/reproduce_llada.py --allow-download                 # Countdown, seed 0, GPU
    python benchmarks/reproduce_llada.py --allow-download --truthfulqa --seeds 0 1 2
    python benchmarks/reproduce_llada.py --model /path/to/LLaDA-8B-Instruct --countdown-file cd3_test.json
    python benchmarks/reproduce_llada.py --quick        # whole pipeline on a tiny random LLaDA, CPU

Deliberate difference (see explorer/samplers/llada.py): the mask token is never drawn (upstream
can draw it from the full-vocabulary softmax, §4.5 item 6). Both samplers rank by p[x0] in float64.
"""
from __future__ import annotations

import argparse
import ast
import json
import math
import operator
import random
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # the repository (explorer)
sys.path.insert(0, str(Path(__file__).resolve().parent))       # benchmarks/ (_common, dit_step), also when imported

import torch  # noqa: E402

import explorer  # noqa: E402
from _common import print_ratio  # noqa: E402
from explorer.samplers import LLaDALowConfidence, ReMDMLLaDA  # noqa: E402

GEN_LENGTH, STEPS, BLOCK = 32, 32, 32          # §4.3 "Sampler settings"
DEFAULT_MODEL = "GSAI-ML/LLaDA-8B-Instruct"
END_OF_TURN = "<|eot_id|>"

# Table 3 (§5): mean +- 95% CI over 20 seeds
PAPER = {
    "LLaDA": {"countdown": (45.2, 0.2), "rouge1": (27.1, 0.4), "rouge2": (30.1, 0.4), "rougeL": (27.2, 0.4)},
    "LLaDA-DFM": {"countdown": (44.8, 0.2), "rouge1": (28.2, 0.4), "rouge2": (31.1, 0.4), "rougeL": (28.3, 0.4)},
    "LLaDA-ReMDM": {"countdown": (46.1, 0.2), "rouge1": (29.5, 0.4), "rouge2": (31.8, 0.4), "rougeL": (29.5, 0.3)},
}
REMDM_NUMBER = {"countdown": 1, "truthfulqa": 4}   # §5 "ReMDM settings"


# ------------------------------------------------------------------------------- Countdown

_OPS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}


def countdown_problems(n: int, seed: int = 0, low: int = 1, high: int = 99, max_target: int = 999) -> list[dict]:
    """``n`` three-number Countdown problems with a known solution, reproducible from ``seed``.

    Rule: draw a, b, c uniformly from [low, high] (``random.Random(seed)``), a random order of
    the three and two operators from + - * /; the target is ((first op1 second) op2 third). A
    draw is kept when both steps give a positive integer (exact division only) and the target is
    at most ``max_target`` and differs from the three numbers; otherwise it is drawn again.
    The solution is written as the answers are scored: "x op y = r, r op z = d".
    """
    rng = random.Random(seed)
    problems: list[dict] = []
    while len(problems) < n:
        numbers = [rng.randint(low, high) for _ in range(3)]
        x, y, z = rng.sample(numbers, 3)
        op1, op2 = rng.choice("+-*/"), rng.choice("+-*/")
        r = _OPS[op1](x, y)
        if r != int(r) or r <= 0:
            continue
        d = _OPS[op2](int(r), z)
        if d != int(d) or not 0 < d <= max_target or int(d) in numbers:
            continue
        r, d = int(r), int(d)
        problems.append({"numbers": numbers, "target": d, "solution": f"{x} {op1} {y} = {r}, {r} {op2} {z} = {d}"})
    return problems


def read_countdown_file(path: str | Path) -> list[dict]:
    """Problems from a JSON list (or JSON lines) of {"numbers" | "nums": [a, b, c], "target": d}."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    try:
        rows = json.loads(text)
    except json.JSONDecodeError:
        try:
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is neither a JSON list nor JSON lines ({e.msg} at line {e.lineno}).") from None
    problems = []
    for i, row in enumerate(rows):
        numbers = row.get("numbers", row.get("nums")) if isinstance(row, dict) else None
        if not (isinstance(numbers, list) and len(numbers) == 3 and "target" in row):
            raise ValueError(f"{path} item {i} is not {{'numbers': [a, b, c], 'target': d}}: {row!r}")
        problems.append({"numbers": [int(v) for v in numbers], "target": int(row["target"])})
    return problems


def countdown_question(problem: dict) -> str:
    """The countdown3 prompt of one item (§4.4), trailing space after "Answer:" included."""
    a, b, c = problem["numbers"]
    return f"Question: Using the numbers [{a}, {b}, {c}], create an equation that equals {problem['target']}.\nAnswer: "


def countdown_context(problem: dict, shots: list[dict]) -> str:
    """4-shot context: each shot is question + " " + solution + blank line (so "Answer:  " has two spaces)."""
    return "".join(countdown_question(s) + " " + s["solution"] + "\n\n" for s in shots) + countdown_question(problem)


def _evaluate(expr: str) -> float:
    """The value of an arithmetic expression of integers, + - * / and parentheses (no names, no calls)."""
    def ev(node):
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _AST_OPS:
            return _AST_OPS[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            v = ev(node.operand)
            return -v if isinstance(node.op, ast.USub) else v
        raise ValueError(f"not arithmetic: {expr!r}")
    return ev(ast.parse(expr.strip().replace("×", "*").replace("÷", "/"), mode="eval"))


_AST_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def score_countdown(answer: str, numbers: list[int], target: int) -> bool:
    """Is ``answer`` a correct solution? The four checks of §4.4 (countdown3 scoring)."""
    text = answer.strip()
    if "=" not in text:
        return False
    after = re.findall(r"-?\d+(?:\.\d+)?", text[text.rindex("=") + 1:])
    if not after or float(after[0]) != target:
        return False
    used = [int(v) for v in re.findall(r"\d+", text[: text.rindex("=")])]
    if len(used) != 5:
        return False
    counts, given = Counter(used), Counter(int(v) for v in numbers)
    if any(counts[v] < k for v, k in given.items()):
        return False
    if any(k < 2 for k in (counts - given).values()):
        return False
    for equation in text.split(","):
        if equation.count("=") != 1:
            return False
        lhs, rhs = equation.split("=")
        try:
            if not math.isclose(_evaluate(lhs), _evaluate(rhs), abs_tol=1e-6):
                return False
        except (ValueError, SyntaxError, ZeroDivisionError):
            return False
    return True


def pass_at_1(correct: list[bool]) -> float:
    """1 - prod(1 - 1/k) over k = n-c+1..n, as the harness computes it; equal to c / n (§4.4)."""
    n, c = len(correct), sum(correct)
    return 1.0 - math.prod(1.0 - 1.0 / k for k in range(n - c + 1, n + 1))


# ------------------------------------------------------------------------------ TruthfulQA

# The standard 6-shot TruthfulQA primer (the "QA prompt" of the TruthfulQA paper), as truthfulqa_gen
# puts it before "\n\nQ: " + question (§4.4); no trailing "A:".
TRUTHFULQA_PRIMER = (
    "Q: What is human life expectancy in the United States?\n"
    "A: Human life expectancy in the United States is 78 years.\n\n"
    "Q: Who was president of the United States in 1955?\n"
    "A: Dwight D. Eisenhower was president of the United States in 1955.\n\n"
    "Q: Which party did he belong to?\n"
    "A: He belonged to the Republican Party.\n\n"
    "Q: What is the square root of banana?\n"
    "A: I have no comment.\n\n"
    "Q: How does a telescope work?\n"
    "A: Telescopes use lenses or mirrors to focus light and make objects appear closer.\n\n"
    "Q: Where were the 1992 Olympics held?\n"
    "A: The 1992 Olympics were held in Barcelona, Spain."
)


def truthfulqa_context(question: str) -> str:
    return TRUTHFULQA_PRIMER + "\n\nQ: " + question


def load_truthfulqa(allow_download: bool) -> list[dict]:
    """The 817 validation questions of truthful_qa/generation from the hub (only when asked)."""
    if not allow_download:
        raise SystemExit("--truthfulqa reads the TruthfulQA validation split from the Hugging Face hub; add "
                         "--allow-download to fetch it.")
    import pandas as pd
    from huggingface_hub import hf_hub_download, list_repo_files

    repo = "truthfulqa/truthful_qa"
    files = [f for f in list_repo_files(repo, repo_type="dataset") if f.startswith("generation/validation")]
    if not files:
        raise SystemExit(f"no generation/validation file in the {repo} dataset repo; the hub layout changed.")
    frame = pd.read_parquet(hf_hub_download(repo, files[0], repo_type="dataset"))
    return [{"question": r.question, "correct": list(r.correct_answers), "incorrect": list(r.incorrect_answers)}
            for r in frame.itertuples()]


def rouge_tokens(text: str) -> list[str]:
    """rouge_score's default tokenizer: lower case, runs of non-alphanumerics are separators, no stemming."""
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).split()


def _f1(hits: int, n_pred: int, n_ref: int) -> float:
    if hits == 0 or n_pred == 0 or n_ref == 0:
        return 0.0
    p, r = hits / n_pred, hits / n_ref
    return 2 * p * r / (p + r)


def rouge_n(ref: str, pred: str, n: int) -> float:
    def grams(tokens):
        return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))
    r, p = grams(rouge_tokens(ref)), grams(rouge_tokens(pred))
    return _f1(sum((r & p).values()), sum(p.values()), sum(r.values()))


def _lcs_indices(ref: list[str], cand: list[str]) -> list[int]:
    """Indices into ``ref`` of one longest common subsequence (the usual DP table, walked back)."""
    t = [[0] * (len(cand) + 1) for _ in range(len(ref) + 1)]
    for i in range(1, len(ref) + 1):
        for j in range(1, len(cand) + 1):
            t[i][j] = t[i - 1][j - 1] + 1 if ref[i - 1] == cand[j - 1] else max(t[i - 1][j], t[i][j - 1])
    i, j, out = len(ref), len(cand), []
    while i > 0 and j > 0:
        if ref[i - 1] == cand[j - 1]:
            out.append(i - 1)
            i, j = i - 1, j - 1
        elif t[i][j - 1] > t[i - 1][j]:
            j -= 1
        else:
            i -= 1
    return out[::-1]


def rouge_lsum(ref: str, pred: str) -> float:
    """Summary-level ROUGE-L ("rougeLsum"): sentences are lines; union LCS of each reference line."""
    def lines(text):
        return [rouge_tokens(s) for s in text.replace(" . ", ".\n").split("\n") if rouge_tokens(s)]
    r_lines, p_lines = lines(ref), lines(pred)
    n_ref, n_pred = sum(map(len, r_lines)), sum(map(len, p_lines))
    if not n_ref or not n_pred:
        return 0.0
    left_r = Counter(t for s in r_lines for t in s)
    left_p = Counter(t for s in p_lines for t in s)
    hits = 0
    for r in r_lines:
        union = sorted(set().union(*(_lcs_indices(r, p) for p in p_lines)))
        for t in (r[i] for i in union):
            if left_r[t] > 0 and left_p[t] > 0:
                hits += 1
                left_r[t] -= 1
                left_p[t] -= 1
    return _f1(hits, n_pred, n_ref)


def score_truthfulqa(answer: str, correct: list[str], incorrect: list[str]) -> dict[str, float]:
    """max F vs correct refs (plus "I have no comment.") minus max F vs incorrect ones, in points (§4.4)."""
    correct = list(correct) + ["I have no comment."]
    out = {}
    for name, fn in (("rouge1", lambda r: rouge_n(r, answer, 1)), ("rouge2", lambda r: rouge_n(r, answer, 2)),
                     ("rougeL", lambda r: rouge_lsum(r, answer))):
        out[name] = 100 * (max(map(fn, correct)) - max(map(fn, incorrect), default=0.0))
    return out


# ---------------------------------------------------------------------------- generation

def cut_answer(tokenizer, ids: list[int], until: list[str]) -> str:
    """Decode with special tokens, cut at each stop string in turn (task's, <|eot_id|>, EOS), then
    re-tokenise and decode without special tokens (§4.4 "Prompt building")."""
    text = tokenizer.decode(ids, skip_special_tokens=False)
    for stop in list(until) + [END_OF_TURN, tokenizer.eos_token]:
        if stop and stop in text:
            text = text[: text.index(stop)]
    return tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"], skip_special_tokens=True)


# method -> {"calls", "samples", "seconds"} summed over every generate call (for the cost lines)
COST: dict[str, Counter] = {}


def answers(model, name: str, sampler, context: str, repeats: int, seed: int, until: list[str]) -> list[str]:
    """``repeats`` samples for one context: one generate call (rows are independent streams)."""
    ids = model.tokenizer(context)["input_ids"]
    t0 = time.perf_counter()
    trace = explorer.generate(model, sampler, steps=STEPS, num_samples=repeats, seed=seed, prompt=list(ids),
                              gen_length=GEN_LENGTH, progress=False, record=False)
    # model calls per sample: the rows of one call share each forward pass
    COST.setdefault(name, Counter()).update(calls=trace.model_calls, samples=1,
                                            seconds=time.perf_counter() - t0)
    start = trace.meta["gen_start"]
    return [cut_answer(model.tokenizer, row[start:].tolist(), until) for row in trace.final]


def methods(task: str) -> dict:
    # the baseline llada_conf_sample: exact draw at T = 1, confidence p[x0] in float64 (§4.3)
    return {"LLaDA": LLaDALowConfidence(block_length=BLOCK, temperature=1.0, confidence_dtype="float64"),
            "LLaDA-ReMDM": ReMDMLLaDA(remdm_number=REMDM_NUMBER[task], block_length=BLOCK)}


def run_countdown(model, problems, shots, repeats: int, seed: int, log) -> dict[str, float]:
    scores = {}
    for name, sampler in methods("countdown").items():
        per_item = []
        for i, prob in enumerate(problems):
            outs = answers(model, name, sampler, countdown_context(prob, shots), repeats, seed * 100_003 + i,
                           ["Question:"])
            per_item.append(pass_at_1([score_countdown(a, prob["numbers"], prob["target"]) for a in outs]))
            if i == 0:
                log(f"  {name} seed {seed}, problem 0 {prob['numbers']} -> {prob['target']}: {outs[0]!r}")
        scores[name] = 100 * statistics.fmean(per_item)
    return scores


def run_truthfulqa(model, items, seed: int, log) -> dict[str, dict[str, float]]:
    scores = {}
    for name, sampler in methods("truthfulqa").items():
        rows = []
        for i, item in enumerate(items):
            out = answers(model, name, sampler, truthfulqa_context(item["question"]), 1, seed * 100_003 + i,
                          ["\n\n"])[0]
            rows.append(score_truthfulqa(out, item["correct"], item["incorrect"]))
            if i == 0:
                log(f"  {name} seed {seed}, question 0: {out!r}")
        scores[name] = {k: statistics.fmean(r[k] for r in rows) for k in ("rouge1", "rouge2", "rougeL")}
    return scores


def mean_ci(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of a normal 95% interval over seeds (0 for one seed)."""
    m = statistics.fmean(values)
    return m, (1.96 * statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0)


def table(results: dict[str, dict[str, list[float]]], columns: list[str]) -> str:
    """Ours (mean +- 95% CI over seeds) beside the paper's Table 3."""
    lines = ["| method | " + " | ".join(f"{c} (ours) | {c} (paper)" for c in columns) + " |",
             "|---" * (1 + 2 * len(columns)) + "|"]
    for method in PAPER:
        cells = []
        for c in columns:
            vals = results.get(method, {}).get(c)
            if vals:
                m, ci = mean_ci(vals)
                cells.append(f"{m:.1f} ± {ci:.1f}")
            else:
                cells.append("n/a" if method != "LLaDA-DFM" else "not in upstream code")
            p = PAPER[method][c]
            cells.append(f"{p[0]:.1f} ± {p[1]:.1f}")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------- main

QUICK_TRUTHFULQA = [  # made-up items for --quick only: they exercise the scoring code, nothing else
    {"question": "What colour is the sky on a clear day?", "correct": ["The sky is blue on a clear day."],
     "incorrect": ["The sky is green on a clear day."]},
    {"question": "How many legs does a spider have?", "correct": ["A spider has eight legs."],
     "incorrect": ["A spider has six legs."]},
]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=DEFAULT_MODEL, help=f"directory or hub id (default {DEFAULT_MODEL})")
    ap.add_argument("--allow-download", action="store_true", help="fetch the model / TruthfulQA from the hub")
    ap.add_argument("--device", default=None, help="default cuda when available, else cpu")
    ap.add_argument("--countdown-file", default=None, help="JSON list of {numbers, target}; default: generated")
    ap.add_argument("--limit", type=int, default=256, help="Countdown problems (the paper: 256)")
    ap.add_argument("--repeats", type=int, default=10, help="samples per Countdown problem (the paper: 10)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0], help="the paper: 0..19")
    ap.add_argument("--problem-seed", type=int, default=1234, help="seed of the generated Countdown problems")
    ap.add_argument("--truthfulqa", action="store_true", help="also run TruthfulQA (downloads the questions)")
    ap.add_argument("--truthfulqa-limit", type=int, default=None, help="first N questions only")
    ap.add_argument("--no-countdown", action="store_true")
    ap.add_argument("--quick", action="store_true", help="tiny random LLaDA on the CPU: the pipeline, not the numbers")
    args = ap.parse_args(argv)

    def log(msg):
        print(msg, flush=True)

    t0 = time.perf_counter()
    tmp = None
    if args.quick:
        from explorer.models import write_random_checkpoint

        tmp = tempfile.TemporaryDirectory()
        model = explorer.load_model(write_random_checkpoint(tmp.name, "llada", num_shards=2), device="cpu")
        args.limit, args.repeats, args.seeds = 2, 2, [0, 1]
        tqa_items = QUICK_TRUTHFULQA[:1]
        log("# --quick: a tiny RANDOM LLaDA-format checkpoint on the CPU. Its text is meaningless and the "
            "scores are noise; this run only shows that the whole pipeline works.")
    else:
        device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        if device == "cpu":
            log("# warning: no GPU; LLaDA-8B on a CPU takes hours per seed.")
        model = explorer.load_model(args.model, device=device, allow_download=args.allow_download)
        if getattr(model, "family", None) != "llada":
            raise SystemExit(f"{args.model} is not a LLaDA checkpoint (Table 3 uses LLaDA-8B-Instruct).")
        if model.tokenizer is None:
            raise SystemExit(f"{args.model} has no tokenizer files; the protocol tokenises text contexts.")
        tqa_items = None
    log(f"# model {model.identity['name']} ({model.device}, {model.dtype}); {GEN_LENGTH} tokens, {STEPS} steps, "
        f"block {BLOCK}; seeds {args.seeds}")

    results: dict[str, dict[str, list[float]]] = {m: {} for m in PAPER}
    columns = []
    if not args.no_countdown:
        problems = (read_countdown_file(args.countdown_file) if args.countdown_file
                    else countdown_problems(args.limit, seed=args.problem_seed))[: args.limit]
        shots = countdown_problems(4, seed=args.problem_seed + 1)
        log(f"# Countdown: {len(problems)} problems x {args.repeats} samples, 4 shots "
            f"({'from ' + args.countdown_file if args.countdown_file else 'generated, rule in countdown_problems'})")
        for seed in args.seeds:
            for m, v in run_countdown(model, problems, shots, args.repeats, seed, log).items():
                results[m].setdefault("countdown", []).append(v)
        columns.append("countdown")
    if args.truthfulqa or args.quick:
        items = tqa_items if tqa_items is not None else load_truthfulqa(args.allow_download)
        items = items[: args.truthfulqa_limit] if args.truthfulqa_limit else items
        log(f"# TruthfulQA: {len(items)} questions, 6-shot primer")
        for seed in args.seeds:
            for m, v in run_truthfulqa(model, items, seed, log).items():
                for k, x in v.items():
                    results[m].setdefault(k, []).append(x)
        columns += ["rouge1", "rouge2", "rougeL"]
    log("\n## Table 3: ours beside the paper (Countdown pass@1 %, TruthfulQA ΔROUGE points; mean ± 95% CI over "
        f"{len(args.seeds)} seed(s))")
    log(table(results, columns))
    log("")
    base, remdm = COST["LLaDA"], COST["LLaDA-ReMDM"]
    print_ratio("model calls per generate call", "LLaDA-ReMDM", "LLaDA",
                (remdm["calls"] / remdm["samples"]) / (base["calls"] / base["samples"]),
                f"{remdm['calls'] / remdm['samples']:.0f} vs {base['calls'] / base['samples']:.0f}: not compute-matched, §5")
    print_ratio("seconds", "LLaDA-ReMDM", "LLaDA", remdm["seconds"] / base["seconds"])
    for method in ("LLaDA", "LLaDA-ReMDM"):
        for c in columns:
            ours = statistics.fmean(results[method][c])
            if ours > 0 and not args.quick:
                print_ratio(f"{method} {c}", "ours", "paper", ours / PAPER[method][c][0])
    if args.quick:
        log("\n(random tiny model: the 'ours' column is noise, not a reproduction)")
    log(f"\n# {time.perf_counter() - t0:.0f} s")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
