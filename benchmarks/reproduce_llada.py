"""Reproduce the paper's Table 3: ReMDM on LLaDA-8B-Instruct (Countdown, TruthfulQA).

The protocol of the authors' pipeline (llada-dream reference §4.3-§4.4):

* model: LLaDA-8B-Instruct in bf16, batch of one prompt, no chat template: the context is
  tokenised with ``tokenizer(context)`` and its default special tokens;
* sampling: 32 new tokens, 32 steps, one block of 32 -- the baseline is LLaDA's confidence
  sampler at temperature 1 (32 model calls per sample, one token per step), ReMDM-LLaDA adds the
  remasking window (64 calls; ``remdm_number`` 1 for Countdown, 4 for TruthfulQA);
* samplers: ``--samplers llada,remdm-llada,...`` in the one spec syntax (``name:key=value``,
  :mod:`explorer.samplers.spec`); ``llada`` and ``remdm-llada`` get the settings above unless the
  spec sets its own, any other registered sampler (a remasking strategy) runs with its own
  defaults. Every sampler answers the same problems with the same seeds; the table gives each
  one's score, model calls per answer and seconds per answer beside the paper's row for it;
* post-processing: decode the 32 tokens with special tokens, cut at the task's stop string, then
  at ``<|eot_id|>``, then at the EOS token; re-tokenise and decode without special tokens;
* Countdown (``countdown3``): 4-shot, ``repeats`` = 10 samples per problem, pass@1 = c / 10
  (c correct), averaged over the problems (256 by default); an answer is correct when the number
  after its last "=" is the target, the numbers before it are exactly five, include the three
  given numbers, any other number appears at least twice (an intermediate result), and every
  comma-separated equation holds;
* TruthfulQA (``truthfulqa_gen``, ``--truthfulqa``): the 817 validation questions, the standard
  6-shot Q/A primer, stop at a blank line; for ROUGE-1/2/Lsum, max F over the correct references
  ("I have no comment." added) minus max F over the incorrect ones, averaged, in points; ROUGE is
  the rouge-score package called as lm-eval's truthfulqa_gen calls it (no stemming, " . " ends a
  sentence for ROUGE-Lsum);
* seeds: the paper averages 20 seeds (mean +- 95% CI); ``--seeds 0 1 ... 19`` does the same.
  Problem i of seed s is sampled with seed ``s * 100003 + i`` whatever the number of processes.

Several GPUs: ``torchrun --nproc_per_node=K benchmarks/reproduce_llada.py ...`` splits the problems
over the ranks (rank r answers problems r, r + K, ...; each rank on ``cuda:LOCAL_RANK``), rank 0
gathers every answer's row (``torch.distributed``, NCCL on GPUs, gloo on CPU), prints the table and
writes ``--out``; the numbers are those of a single process.

Countdown data: the authors' ``cd3_test.json`` is not public (§4.4 "NOT FOUND"); problems come
from ``--countdown-file`` (a JSON list of {"numbers": [a, b, c], "target": d}; "nums" also read)
or from :func:`countdown_problems`, whose rule is documented there. The 4 shots are problems of
the same rule with their solutions (the authors' fixed list was not readable either), so the
absolute numbers can differ from the paper's; the baseline-vs-ReMDM comparison is the point.

    python benchmarks/reproduce_llada.py --allow-download                 # Countdown, seed 0, GPU
    python benchmarks/reproduce_llada.py --allow-download --truthfulqa --seeds 0 1 2
    python benchmarks/reproduce_llada.py --model /path/to/LLaDA-8B-Instruct --countdown-file cd3_test.json
    python benchmarks/reproduce_llada.py --samplers llada,remdm-llada,rescore,p2,rcr,wino,fire,saber --limit 64
    torchrun --nproc_per_node=8 benchmarks/reproduce_llada.py --allow-download --seeds 0 1 2 3 --out t3.csv
    python benchmarks/reproduce_llada.py --quick        # whole pipeline on a tiny random LLaDA, CPU

Deliberate difference (see explorer/samplers/llada.py): the mask token is never drawn (upstream
can draw it from the full-vocabulary softmax, §4.5 item 6). Both samplers rank by p[x0] in float64.
"""
from __future__ import annotations

import argparse
import ast
import functools
import json
import math
import operator
import os
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
from explorer.samplers.spec import SamplerSpec, SamplerSpecError, split_specs  # noqa: E402
from explorer.sweep import process_group  # noqa: E402

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


ROUGE_TYPES = ("rouge1", "rouge2", "rougeLsum")


@functools.lru_cache(maxsize=1)
def _rouge_scorer():
    try:
        from rouge_score import rouge_scorer
    except ImportError:
        raise SystemExit("TruthfulQA's ROUGE needs the rouge-score package: pip install -e '.[benchmarks]'.") from None
    return rouge_scorer.RougeScorer(list(ROUGE_TYPES))   # no stemming, as lm-eval


def rouge(ref: str, pred: str) -> dict[str, float]:
    """ROUGE-1, ROUGE-2 and ROUGE-Lsum F of ``pred`` against ``ref``, as lm-eval's truthfulqa_gen
    computes them: rouge-score's default tokenizer (lower case, non-alphanumerics separate tokens)
    after " . " -> ".\\n" (sentences are lines for Lsum)."""
    scores = _rouge_scorer().score(ref.replace(" . ", ".\n"), pred.replace(" . ", ".\n"))
    return {k: scores[k].fmeasure for k in ROUGE_TYPES}


def rouge_n(ref: str, pred: str, n: int) -> float:
    """ROUGE-n F (n = 1 or 2)."""
    return rouge(ref, pred)[f"rouge{n}"]


def rouge_lsum(ref: str, pred: str) -> float:
    """Summary-level ROUGE-L F ("rougeLsum")."""
    return rouge(ref, pred)["rougeLsum"]


def score_truthfulqa(answer: str, correct: list[str], incorrect: list[str]) -> dict[str, float]:
    """max F vs correct refs (plus "I have no comment.") minus max F vs incorrect ones, in points (§4.4)."""
    right = [rouge(r, answer) for r in list(correct) + ["I have no comment."]]
    wrong = [rouge(r, answer) for r in incorrect]
    return {column: 100 * (max(x[key] for x in right) - max((x[key] for x in wrong), default=0.0))
            for column, key in (("rouge1", "rouge1"), ("rouge2", "rouge2"), ("rougeL", "rougeLsum"))}


# ---------------------------------------------------------------------------- generation

def cut_answer(tokenizer, ids: list[int], until: list[str]) -> str:
    """Decode with special tokens, cut at each stop string in turn (task's, <|eot_id|>, EOS), then
    re-tokenise and decode without special tokens (§4.4 "Prompt building")."""
    text = tokenizer.decode(ids, skip_special_tokens=False)
    for stop in list(until) + [END_OF_TURN, tokenizer.eos_token]:
        if stop and stop in text:
            text = text[: text.index(stop)]
    return tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"], skip_special_tokens=True)


def answers(model, sampler, context: str, repeats: int, seed: int, until: list[str]) -> tuple[list[str], dict]:
    """``repeats`` answers for one context (one generate call: rows are independent streams) and
    their record: ``answers``, ``calls`` (model calls summed over the answers, as batch-1 runs
    would make them, ``trace.nfe``), ``seconds`` and the ``texts`` (a JSON list)."""
    ids = model.tokenizer(context)["input_ids"]
    t0 = time.perf_counter()
    trace = explorer.generate(model, sampler, steps=STEPS, num_samples=repeats, seed=seed, prompt=list(ids),
                              gen_length=GEN_LENGTH, progress=False, record=False)
    if model.device.type == "cuda":
        torch.cuda.synchronize(model.device)
    seconds = time.perf_counter() - t0
    start = trace.meta["gen_start"]
    texts = [cut_answer(model.tokenizer, row[start:].tolist(), until) for row in trace.final]
    return texts, {"answers": repeats, "calls": int(trace.nfe.sum()), "seconds": seconds, "texts": json.dumps(texts)}


# ----------------------------------------------------------------------------- samplers

# The Table-3 settings of the two samplers the paper ran (§4.3, §5); a spec's own settings win.
PROTOCOL = {"llada": {"block_length": BLOCK, "temperature": 1.0, "confidence_dtype": "float64"},
            "remdm-llada": {"block_length": BLOCK}}
PAPER_ROW = {"llada": "LLaDA", "remdm-llada": "LLaDA-ReMDM"}
DEFAULT_SAMPLERS = "llada,remdm-llada"


def samplers_for(specs: str, task: str) -> dict[str, object]:
    """``{spec: sampler}`` for one task: the protocol's settings under each spec's own
    (``remdm_number`` is the task's for ReMDM-LLaDA). The first spec is the baseline of the ratios."""
    out = {}
    for text in split_specs(specs):
        spec = SamplerSpec.parse(text)
        protocol = dict(PROTOCOL.get(spec.name, {}))
        if spec.name == "remdm-llada":
            protocol["remdm_number"] = REMDM_NUMBER[task]
        out[text] = SamplerSpec(spec.name, {**protocol, **spec.settings}).build()
    return out


# ----------------------------------------------------------------------------- the runs

def run_task(model, task: str, samplers: dict, items: list, seeds: list[int], repeats: int, mine, log,
             shots: list[dict] | None = None) -> list[dict]:
    """One row per (sampler, seed, item) this rank answers (``mine(i)``): the item's score
    (Countdown pass@1 in %, or TruthfulQA's three ROUGE differences in points), answers, model
    calls and seconds. Every sampler sees the same items with the same seeds."""
    rows = []
    for label, sampler in samplers.items():
        for seed in seeds:
            for i, item in enumerate(items):
                if not mine(i):
                    continue
                if task == "countdown":
                    outs, cost = answers(model, sampler, countdown_context(item, shots), repeats,
                                         seed * 100_003 + i, ["Question:"])
                    scores = {"countdown": 100 * pass_at_1([score_countdown(a, item["numbers"], item["target"])
                                                            for a in outs])}
                    shown = f"problem 0 {item['numbers']} -> {item['target']}"
                else:
                    outs, cost = answers(model, sampler, truthfulqa_context(item["question"]), 1,
                                         seed * 100_003 + i, ["\n\n"])
                    scores = score_truthfulqa(outs[0], item["correct"], item["incorrect"])
                    shown = "question 0"
                if i == 0:
                    log(f"  {label} seed {seed}, {shown}: {outs[0]!r}")
                rows += [{"sampler": label, "task": task, "seed": seed, "item": i, "metric": metric,
                          "value": value, **cost} for metric, value in scores.items()]
    return rows


def warm_up(model, samplers: dict) -> None:
    """One untimed answer per sampler first: a process's first generate call pays one-off costs
    (lazy initialisation, CUDA kernels) that are no sampler's, and would count against the first."""
    for sampler in samplers.values():
        answers(model, sampler, "Question: 1 + 1 =", 1, 0, [])


def mean_ci(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of a normal 95% interval over seeds (0 for one seed)."""
    m = statistics.fmean(values)
    return m, (1.96 * statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0)


def summarise(rows: list[dict]) -> dict[str, dict]:
    """Per sampler: ``{metric: [mean over items, per seed]}``, and ``answers``, ``calls``,
    ``seconds`` summed over every generate call (each metric row of an item repeats its cost, so
    the cost is counted once per item: from the first metric of each task)."""
    out: dict[str, dict] = {}
    first_metric = {}
    for r in rows:
        first_metric.setdefault(r["task"], r["metric"])
    for r in rows:
        s = out.setdefault(r["sampler"], {"scores": {}, "answers": 0, "calls": 0, "seconds": 0.0})
        s["scores"].setdefault(r["metric"], {}).setdefault(r["seed"], []).append(r["value"])
        if r["metric"] == first_metric[r["task"]]:
            s["answers"] += r["answers"]
            s["calls"] += r["calls"]
            s["seconds"] += r["seconds"]
    for s in out.values():
        s["scores"] = {m: [statistics.fmean(v) for _, v in sorted(by_seed.items())]
                       for m, by_seed in s["scores"].items()}
    return out


def table(summary: dict[str, dict], labels: list[str], columns: list[str]) -> str:
    """Ours (mean +- 95% CI over seeds) beside the paper's Table 3, with each sampler's model calls
    and seconds per answer; the paper's LLaDA-DFM row, which upstream's code does not have, last."""
    head = "| sampler | paper row | " + " | ".join(f"{c} (ours) | {c} (paper)" for c in columns) + \
        " | calls / answer | s / answer |"
    lines = [head, "|---" * (4 + 2 * len(columns)) + "|"]
    for label in labels:
        s = summary[label]
        paper = PAPER_ROW.get(SamplerSpec.parse(label).name)
        cells = []
        for c in columns:
            m, ci = mean_ci(s["scores"][c])
            cells.append(f"{m:.1f} ± {ci:.1f}")
            cells.append(f"{PAPER[paper][c][0]:.1f} ± {PAPER[paper][c][1]:.1f}" if paper else "—")
        lines.append(f"| {label} | {paper or '—'} | " + " | ".join(cells) +
                     f" | {s['calls'] / s['answers']:.1f} | {s['seconds'] / s['answers']:.3f} |")
    lines.append("| — | LLaDA-DFM | " + " | ".join(f"not in upstream code | {PAPER['LLaDA-DFM'][c][0]:.1f} ± "
                                                    f"{PAPER['LLaDA-DFM'][c][1]:.1f}" for c in columns) + " | — | — |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------- main

QUICK_TRUTHFULQA = [  # made-up items for --quick only: they exercise the scoring code, nothing else
    {"question": "What colour is the sky on a clear day?", "correct": ["The sky is blue on a clear day."],
     "incorrect": ["The sky is green on a clear day."]},
    {"question": "How many legs does a spider have?", "correct": ["A spider has eight legs."],
     "incorrect": ["A spider has six legs."]},
]


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=DEFAULT_MODEL, help=f"directory or hub id (default {DEFAULT_MODEL})")
    ap.add_argument("--allow-download", action="store_true", help="fetch the model / TruthfulQA from the hub")
    ap.add_argument("--device", default=None, help="default cuda when available (--quick: cpu); 'cuda' under "
                    "torchrun is cuda:LOCAL_RANK")
    ap.add_argument("--samplers", default=DEFAULT_SAMPLERS,
                    help="comma-separated sampler specs, the baseline first (default %(default)s)")
    ap.add_argument("--countdown-file", default=None, help="JSON list of {numbers, target}; default: generated")
    ap.add_argument("--limit", type=int, default=None, help="Countdown problems (the paper: 256; --quick: 2)")
    ap.add_argument("--repeats", type=int, default=None, help="samples per Countdown problem (the paper: 10; "
                    "--quick: 2)")
    ap.add_argument("--seeds", type=int, nargs="+", default=None, help="the paper: 0..19 (default 0; --quick: 0 1)")
    ap.add_argument("--problem-seed", type=int, default=1234, help="seed of the generated Countdown problems")
    ap.add_argument("--truthfulqa", action="store_true", help="also run TruthfulQA (downloads the questions)")
    ap.add_argument("--truthfulqa-limit", type=int, default=None, help="first N questions only")
    ap.add_argument("--no-countdown", action="store_true", help="skip Countdown")
    ap.add_argument("--no-truthfulqa", action="store_true", help="skip TruthfulQA, also under --quick")
    ap.add_argument("--out", default=None, help="write one row per (sampler, task, seed, item, metric) here as "
                    "CSV: value, answers, calls, seconds and the answers' texts; rank 0 writes")
    ap.add_argument("--quick", action="store_true", help="tiny random LLaDA (on the CPU unless --device): the "
                    "pipeline, not the numbers")
    return ap


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    if args.quick:
        args.limit = 2 if args.limit is None else args.limit
        args.repeats = 2 if args.repeats is None else args.repeats
        args.seeds = [0, 1] if args.seeds is None else args.seeds
    args.limit = 256 if args.limit is None else args.limit
    args.repeats = 10 if args.repeats is None else args.repeats
    args.seeds = [0] if args.seeds is None else args.seeds
    tasks = [t for t, skip in (("countdown", args.no_countdown),
                               ("truthfulqa", args.no_truthfulqa or not (args.truthfulqa or args.quick))) if not skip]
    try:
        per_task = {task: samplers_for(args.samplers, task) for task in tasks}
    except SamplerSpecError as e:
        raise SystemExit(f"--samplers: {e}") from None
    labels = split_specs(args.samplers)

    dist, owned = process_group()
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist is not None else (0, 1)
    device = args.device or ("cuda" if torch.cuda.is_available() and not args.quick else "cpu")
    if device == "cuda" and dist is not None:   # one GPU per rank
        device = f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
    if torch.device(device).type == "cuda" and torch.device(device).index is not None:
        torch.cuda.set_device(torch.device(device))   # plain "cuda" is the current device already

    def log(msg):
        if rank == 0:
            print(msg, flush=True)

    t0 = time.perf_counter()
    tmp = None
    if args.quick:
        from explorer.models import write_random_checkpoint

        tmp = tempfile.TemporaryDirectory()
        model = explorer.load_model(write_random_checkpoint(tmp.name, "llada", num_shards=2), device=device)
        log("# --quick: a tiny RANDOM LLaDA-format checkpoint. Its text is meaningless and the scores are "
            "noise; this run only shows that the whole pipeline works.")
    else:
        if device == "cpu":
            log("# warning: no GPU; LLaDA-8B on a CPU takes hours per seed.")
        try:
            model = explorer.load_model(args.model, device=device, allow_download=args.allow_download)
        except FileNotFoundError as e:      # said in this script's options, not load_model's keywords
            raise SystemExit(f"reproduce_llada: {args.model} is not on this machine ({str(e).splitlines()[0][:160]}).\n"
                             "  fix: pass --model DIR (a LLaDA-8B-Instruct folder), or --allow-download to fetch "
                             f"{DEFAULT_MODEL}; --quick checks the pipeline with a tiny random model.") from None
        if getattr(model, "family", None) != "llada":
            raise SystemExit(f"{args.model} is not a LLaDA checkpoint (Table 3 uses LLaDA-8B-Instruct).")
        if model.tokenizer is None:
            raise SystemExit(f"{args.model} has no tokenizer files; the protocol tokenises text contexts.")
    log(f"# model {model.identity['name']} ({model.device}, {model.dtype}); {GEN_LENGTH} tokens, {STEPS} steps, "
        f"block {BLOCK}; seeds {args.seeds}; samplers {', '.join(labels)}; {world} process(es)")

    def mine(i: int) -> bool:
        return i % world == rank

    for samplers in per_task.values():
        warm_up(model, samplers)
    rows: list[dict] = []
    columns: list[str] = []
    if "countdown" in tasks:
        problems = (read_countdown_file(args.countdown_file) if args.countdown_file
                    else countdown_problems(args.limit, seed=args.problem_seed))[: args.limit]
        shots = countdown_problems(4, seed=args.problem_seed + 1)
        log(f"# Countdown: {len(problems)} problems x {args.repeats} samples, 4 shots "
            f"({'from ' + args.countdown_file if args.countdown_file else 'generated, rule in countdown_problems'})")
        rows += run_task(model, "countdown", per_task["countdown"], problems, args.seeds, args.repeats, mine, log,
                         shots=shots)
        columns.append("countdown")
    if "truthfulqa" in tasks:
        items = QUICK_TRUTHFULQA[:1] if args.quick else load_truthfulqa(args.allow_download)
        items = items[: args.truthfulqa_limit] if args.truthfulqa_limit else items
        log(f"# TruthfulQA: {len(items)} questions, 6-shot primer")
        rows += run_task(model, "truthfulqa", per_task["truthfulqa"], items, args.seeds, 1, mine, log)
        columns += ["rouge1", "rouge2", "rougeL"]

    if dist is not None:
        gathered = [None] * world if rank == 0 else None
        dist.gather_object(rows, gathered, dst=0)
        if owned:
            dist.destroy_process_group()
        if rank != 0:
            return 0
        rows = [r for part in gathered for r in part]
    rows.sort(key=lambda r: (labels.index(r["sampler"]), r["task"], r["seed"], r["item"], r["metric"]))
    if args.out:
        import pandas as pd

        pd.DataFrame(rows).to_csv(args.out, index=False)
        log(f"# wrote {len(rows)} rows to {args.out}")

    summary = summarise(rows)
    log("\n## Table 3: ours beside the paper (Countdown pass@1 %, TruthfulQA ΔROUGE points; mean ± 95% CI over "
        f"{len(args.seeds)} seed(s))")
    log(table(summary, labels, columns))
    log("")
    base = labels[0]
    for label in labels[1:]:
        a, b = summary[label], summary[base]
        print_ratio("model calls per answer", label, base, (a["calls"] / a["answers"]) / (b["calls"] / b["answers"]),
                    f"{a['calls'] / a['answers']:.0f} vs {b['calls'] / b['answers']:.0f}"
                    + ("; not compute-matched, §5" if {SamplerSpec.parse(label).name, SamplerSpec.parse(base).name}
                       == {"llada", "remdm-llada"} else ""))
        print_ratio("seconds per answer", label, base, (a["seconds"] / a["answers"]) / (b["seconds"] / b["answers"]))
    for label in labels:
        paper = PAPER_ROW.get(SamplerSpec.parse(label).name)
        for c in columns:
            ours = statistics.fmean(summary[label]["scores"][c])
            if paper and ours > 0 and not args.quick:
                print_ratio(f"{label} {c}", "ours", "paper", ours / PAPER[paper][c][0])
    if args.quick:
        log("\n(random tiny model: the 'ours' column is noise, not a reproduction)")
    log(f"\n# {time.perf_counter() - t0:.0f} s")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
