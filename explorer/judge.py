"""A small causal judge LM on the stories tokenizer: generative perplexity and MAUVE features offline.

The reference protocol (remdm-reference §3) scores samples with ``gpt2-large``; on a machine with
no hub access we score stories samples with this judge instead: a 4-layer GPT-2 trained here on
the TinyStories train split, shipped in ``data/models/stories-judge/`` in the Hugging Face format,
so ``AutoModelForCausalLM.from_pretrained(dir)`` and ``AutoTokenizer.from_pretrained(dir)`` work.

    explorer judge train --out runs/judge --steps 6000 --export data/models/stories-judge
    explorer judge eval data/models/stories-judge          # = heldout_report("data/models/stories-judge")

    model, tokenizer = load_judge()         # or judge = load_judge(); judge.model, judge.tokenizer
                                            # (load_judge lives in explorer.metrics._judge)
    explorer.metrics.generative_perplexity(texts)   # uses this judge by default (§3 rules)
"""
from __future__ import annotations

import itertools
import json
import math
import random
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from explorer.metrics._judge import DEFAULT_JUDGE, Judge, load_judge  # noqa: F401 (loading sits below the metrics; re-exported)
from explorer.tasks import stories
from explorer.runs import check_finite_nonnegative, damaged_checkpoint

SHIPPED_DIR = DEFAULT_JUDGE


def judge_config(vocab_size: int = stories.VOCAB_SIZE, n_layer: int = 4, n_embd: int = 256, n_head: int = 4,
                 n_positions: int = 256, dropout: float = 0.0) -> GPT2Config:
    return GPT2Config(
        vocab_size=vocab_size, n_positions=n_positions, n_embd=n_embd, n_layer=n_layer, n_head=n_head,
        resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=dropout,
        bos_token_id=stories.EOT_ID, eos_token_id=stories.EOT_ID, pad_token_id=stories.EOT_ID,
        tie_word_embeddings=True,
    )


def hf_tokenizer(tok=None) -> PreTrainedTokenizerFast:
    """The stories tokenizer as a ``PreTrainedTokenizerFast`` (what ``AutoTokenizer`` returns)."""
    return PreTrainedTokenizerFast(
        tokenizer_object=tok or stories.build_tokenizer(),
        bos_token=stories.EOT, eos_token=stories.EOT, pad_token=stories.EOT, mask_token=stories.MASK,
        model_max_length=256,
    )


# ----------------------------------------------------------------------------- scoring


@torch.no_grad()
def block_nll(model: GPT2LMHeadModel, blocks: torch.Tensor, batch_size: int = 64) -> float:
    """Mean next-token NLL (nats) over all positions 1.. of ``blocks`` ``[N, L]`` (held-out blocks)."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    dev = model.device
    for chunk in blocks.split(batch_size):
        chunk = chunk.to(dev)
        logits = model(input_ids=chunk, attention_mask=torch.ones_like(chunk)).logits[:, :-1].float()
        nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), chunk[:, 1:], reduction="sum")
        total += nll.item()
        count += chunk[:, 1:].numel()
    model.train(was_training)
    return total / count


# ----------------------------------------------------------------------------- training


def lr_at(step: int, peak: float, warmup: int, total: int, floor: float = 0.1) -> float:
    """Linear warm-up, then cosine decay to ``floor * peak``."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def train(
    out: str | Path,
    steps: int,
    batch_size: int = 32,
    lr: float = 1e-3,
    warmup: int = 200,
    weight_decay: float = 0.1,
    seed: int = 0,
    eval_every: int = 250,
    ckpt_every: int = 250,
    config: GPT2Config | None = None,
    data: Iterator[torch.Tensor] | None = None,
    eval_blocks: torch.Tensor | None = None,
    device: str = "cpu",
    progress: bool = True,
) -> dict:
    """Train (or resume) a judge in ``out``; returns a summary with held-out loss when evaluated.

    ``ckpt.pt`` holds model, optimizer, step and the RNG state and is written every ``ckpt_every``
    steps; ``best.pt`` holds the weights with the lowest held-out loss so far. An infinite ``lr`` or
    ``weight_decay`` is a :class:`~explorer.runs.SettingError` and a ``ckpt.pt`` that cannot be read
    back a :class:`~explorer.runs.RunFolderError`, both raised before ``out`` changes.
    """
    check_finite_nonnegative("lr", lr, "give lr a finite learning rate, e.g. 1e-3.")
    check_finite_nonnegative("weight_decay", weight_decay, "give weight_decay a finite decay, e.g. 0.1.")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)
    config = config or judge_config()
    model = GPT2LMHeadModel(config).to(device)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.95))
    state = {"step": 0, "best_loss": float("inf"), "history": [], "seconds": 0.0}
    ckpt = out / "ckpt.pt"
    if ckpt.is_file():
        fix = "delete it (judge train then starts again from step 0) or choose another --out."
        try:
            saved = torch.load(ckpt, map_location=device, weights_only=False)
            weights, opt_state, state, rng = saved["model"], saved["opt"], saved["state"], saved["torch_rng"]
            if not isinstance(state["step"], int):
                raise TypeError(f"step {state['step']!r} is not a whole number")
        except Exception as err:  # noqa: BLE001 -- zip, pickle, EOF errors and lost parts alike: the file is damaged
            raise damaged_checkpoint(ckpt, err, fix) from err
        model.load_state_dict(weights)  # another architecture is refused by name earlier, by `judge train`
        opt.load_state_dict(opt_state)
        torch.set_rng_state(rng)
        print(f"resumed from {ckpt} at step {state['step']}")
    data = data if data is not None else stories.batches("train", batch_size, seed)
    data = itertools.islice(data, state["step"], None)  # the batch at step k depends only on (seed, k)
    if eval_blocks is None and eval_every:
        eval_blocks = stories.eval_tensor(stories.num_heldout_blocks())

    def save_ckpt():
        tmp = out / "ckpt.tmp"
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "state": state,
                    "torch_rng": torch.get_rng_state(), "config": config.to_dict()}, tmp)
        tmp.replace(ckpt)

    model.train()
    bar = tqdm(total=steps, initial=state["step"], disable=not progress, desc="judge")
    t0 = time.time()
    seconds0 = state["seconds"]
    while state["step"] < steps:
        x = next(data).to(device)
        for g in opt.param_groups:
            g["lr"] = lr_at(state["step"], lr, warmup, steps)
        loss = model(input_ids=x, attention_mask=torch.ones_like(x), labels=x).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        state["step"] += 1
        state["seconds"] = seconds0 + time.time() - t0
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}")
        row = {"step": state["step"], "train_loss": loss.item()}
        if eval_every and (state["step"] % eval_every == 0 or state["step"] == steps):
            row["heldout_loss"] = block_nll(model, eval_blocks)
            if row["heldout_loss"] < state["best_loss"]:
                state["best_loss"] = row["heldout_loss"]
                state["best_step"] = state["step"]
                torch.save(model.state_dict(), out / "best.pt")
            bar.write(f"step {state['step']}: held-out loss {row['heldout_loss']:.4f} "
                      f"(ppl {math.exp(row['heldout_loss']):.2f})")
        state["history"].append(row)
        if state["step"] % ckpt_every == 0 or state["step"] == steps:
            save_ckpt()
    bar.close()
    (out / "history.json").write_text(json.dumps(state["history"]))
    return {"model": model, "state": state, "config": config}


def export(out: str | Path, export_dir: str | Path, use_best: bool = True,
           dtype: torch.dtype = torch.float16) -> Path:
    """Write the trained judge (best held-out weights by default) as an HF model + tokenizer.

    Weights are stored in float16 to halve the shipped size (held-out perplexity moves by < 0.1 %);
    :func:`load_judge` computes in float32.
    """
    out, export_dir = Path(out), Path(export_dir)
    saved = torch.load(out / "ckpt.pt", map_location="cpu", weights_only=False)
    model = GPT2LMHeadModel(GPT2Config.from_dict(saved["config"]))
    weights = saved["model"]
    if use_best and (out / "best.pt").is_file():
        weights = torch.load(out / "best.pt", map_location="cpu", weights_only=True)
    model.load_state_dict(weights)
    model.to(dtype)
    export_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(export_dir)
    hf_tokenizer().save_pretrained(export_dir)
    return export_dir


def heldout_report(judge: str | Path = "stories-judge") -> dict:
    """A judge's held-out perplexity: per-token NLL of the stories held-out blocks, and the
    generative perplexity (§3 rules, on decoded text) of the same stories. ``judge``: a shipped
    name or a folder (``FileNotFoundError`` when there is none)."""
    from explorer.metrics import generative_perplexity  # the §3 rules, on decoded text

    model = load_judge(judge).model
    blocks = stories.eval_tensor(stories.num_heldout_blocks())
    nll = block_nll(model, blocks)
    text_ppl = generative_perplexity(stories.heldout_texts(len(blocks)), judge=str(judge))
    return {"heldout_blocks": len(blocks), "heldout_nll_per_token": nll, "heldout_ppl": math.exp(nll),
            "heldout_text_gen_ppl": float(text_ppl)}
