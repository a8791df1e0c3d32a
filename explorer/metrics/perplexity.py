"""Generative perplexity under a judge causal LM, with upstream's rules (reference §3).

* Retokenise each decoded sample with the judge's own tokenizer, truncated to the judge's
  context, **no BOS added**; special-token strings in the text (``<|endoftext|>``) become their
  ids, as they do upstream.
* NLL of token j+1 given tokens 0..j (logits[:, :-1] against tokens[:, 1:]).
* Weights on targets: every non-eos token, plus the target that is the sequence's *first* eos
  (if the sample starts with eos, that eos is position 0, never a target, and no eos is scored).
* Corpus level, token-weighted: Gen PPL = exp(sum w*nll / sum w) over all samples -- not a mean
  of per-sample perplexities.

Upstream scores with batch size 1, so no padding enters the sums. We batch for speed (padding
with eos, attention mask on) but weight only real tokens, so the number is exactly the batch-1
number whatever ``batch_size`` is.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from ._judge import resolve_judge


@dataclass
class PerplexityResult:
    """Corpus Gen PPL with per-sample detail. ``float(result)`` is the corpus value."""
    value: float
    stderr: float
    per_sample: np.ndarray = field(repr=False)  # exp(nll_sum / tokens) per sample (NaN if 0 tokens)
    nll_sum: np.ndarray = field(repr=False)     # sum of weighted NLL per sample (nats)
    tokens: np.ndarray = field(repr=False)      # number of scored targets per sample
    judge: str = ""

    def __float__(self) -> float:
        return float(self.value)


def retokenize(texts: Sequence[str], tokenizer: Any, max_length: int) -> list[list[int]]:
    """The judge's token ids of each text: truncated to ``max_length``, no BOS/EOS added."""
    enc = tokenizer(list(texts), add_special_tokens=False, truncation=True, max_length=max_length)
    return [list(ids) for ids in enc["input_ids"]]


def eos_weights(tokens: torch.Tensor, eos_id: int, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """Upstream's target weights for ``tokens[B, n]`` -> ``Bool[B, n-1]`` (targets 1..n-1).

    A target counts when it is not eos, or when it is the sequence's first eos. Positions at or
    beyond ``lengths`` (padding) never count.
    """
    is_eos = tokens == eos_id
    first_eos = is_eos & (is_eos.long().cumsum(-1) == 1)
    keep = ~is_eos | first_eos
    if lengths is not None:
        pos = torch.arange(tokens.shape[1], device=tokens.device)
        keep &= pos.unsqueeze(0) < lengths.to(tokens.device).unsqueeze(1)
    return keep[:, 1:]


@torch.no_grad()
def generative_perplexity(texts: Sequence[str], judge: Any = None, batch_size: int = 8,
                          device: Any = None, max_length: int | None = None,
                          progress: bool = False) -> PerplexityResult:
    """Gen PPL of ``texts`` under ``judge`` (reference §3), token-weighted over the corpus.

    ``judge``: ``None`` for the shipped small judge (``data/models/stories-judge``), an HF causal
    LM name or local directory (``"gpt2-large"`` is the paper's judge), or a ``(model, tokenizer)``
    pair. ``max_length`` defaults to the judge's context (1024 for gpt2-large).

    ``stderr`` is the delta-method standard error of the corpus value, treating samples as
    independent draws (ratio estimator over samples); it says how much the number would move
    with another set of samples of the same size.
    """
    j = resolve_judge(judge, device)
    eos = j.eos_id
    max_length = int(max_length or j.context)
    ids = retokenize(texts, j.tokenizer, max_length)
    n = len(ids)
    nll_sum = np.zeros(n, dtype=np.float64)
    tokens = np.zeros(n, dtype=np.int64)
    order = sorted(range(n), key=lambda i: -len(ids[i]))  # similar lengths share a batch
    batches = [order[i:i + batch_size] for i in range(0, n, batch_size)]
    if progress:
        from tqdm.auto import tqdm
        batches = tqdm(batches, desc="Gen PPL", leave=False)
    dev = j.device
    for batch in batches:
        lens = torch.tensor([len(ids[i]) for i in batch])
        width = int(lens.max()) if len(batch) else 0
        if width < 2:
            continue  # nothing to predict
        x = torch.full((len(batch), width), eos, dtype=torch.long)
        for r, i in enumerate(batch):
            x[r, :len(ids[i])] = torch.tensor(ids[i], dtype=torch.long)
        attn = (torch.arange(width).unsqueeze(0) < lens.unsqueeze(1)).long()
        logits = j.model(input_ids=x.to(dev), attention_mask=attn.to(dev)).logits[:, :-1].float()
        nll = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1).to(dev), reduction="none",
        ).view(len(batch), width - 1).double().cpu()
        w = eos_weights(x, eos, lens).double()
        nll_sum[batch] = (nll * w).sum(1).numpy()
        tokens[batch] = w.sum(1).long().numpy()
    total = tokens.sum()
    if total == 0:
        raise ValueError("no scorable tokens: every text is shorter than two judge tokens.")
    mean_nll = nll_sum.sum() / total
    value = math.exp(mean_nll)
    # ratio estimator R = sum a / sum b over samples; Var(R) ~ n/(n-1) * sum (a - R b)^2 / (sum b)^2
    if n > 1:
        resid = nll_sum - mean_nll * tokens
        se_nll = math.sqrt(n / (n - 1) * float((resid ** 2).sum())) / total
        stderr = value * se_nll
    else:
        stderr = float("nan")
    with np.errstate(divide="ignore", invalid="ignore"):
        per_sample = np.exp(nll_sum / tokens)
    return PerplexityResult(value=value, stderr=stderr, per_sample=per_sample,
                            nll_sum=nll_sum, tokens=tokens, judge=j.name)
