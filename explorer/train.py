"""Train a masked diffusion LM (MDLM) on a task: one recipe, readable in one sitting.

    explorer train --task orders --out runs/orders --steps 20000 \\
        --batch-size 64 --lr 1e-3 --hidden-dim 192 --n-blocks 4 --n-heads 4 --cond-dim 64 \\
        --export data/models/orders

    summary = train(TrainConfig(task="orders", out="runs/orders", steps=20000))   # the same, in Python

The recipe (reference §1.1, ``../shared/docs/remdm-reference.md``):

* **Loss.** Draw t ~ U[eps, 1] (eps = 1e-3) with antithetic sampling across the batch, mask
  each token independently with probability t (the linear schedule alpha_t = 1 - t that the
  sampler uses, §1.1), and score the clean token at every masked position with the SUBS
  parameterisation (the mask logit is -inf, §1.2). The NELBO weight -alpha'_t / (1 - alpha_t)
  is 1/t. The loss is the per-token NELBO: the weighted cross-entropy summed over masked
  positions and divided by B * L, as upstream normalises it.
* **Optimiser.** AdamW, linear warm-up to ``--lr``, then constant (upstream MDLM's schedule), or
  cosine decay to 10 % with ``--schedule cosine``; gradients clipped at norm 1.
* **EMA.** An exponential moving average of the weights with decay 0.9999 as upstream, but
  with the usual warm-up ``decay_n = min(decay, (1 + n) / (10 + n))`` (torch_ema / score_sde).
  Why: a plain 0.9999 average remembers ~10k steps, so after a 20k-step CPU run it would still
  hold a large share of the random initial weights; with the warm-up the average covers the
  last ~10 % of the steps taken so far, and the cap 0.9999 only binds after ~90k steps, where
  long runs behave exactly as upstream. The exported weights are the EMA ones.
* **Checkpoints.** Every ``--ckpt-every`` steps (and at the end) ``<out>/checkpoint.pt`` is
  replaced atomically: model, EMA, optimiser, step and every RNG state. ``--resume`` continues
  from it, fast-forwarding the seeded data stream, so an interrupted run ends where an
  uninterrupted one would. A folder that already holds a run is never overwritten: without
  ``--resume`` it is refused, and ``--resume`` with other architecture settings is refused by name.
* **Held-out NELBO** of the EMA weights every ``--eval-every`` steps on ``task.eval_tensor``,
  with a fixed noise seed so the numbers are comparable across evaluations.

A task is a module with ``build_tokenizer()``, ``SEQ_LEN``, ``batches(split, batch_size, seed)``
and ``eval_tensor(n, seed)`` (``explorer.tasks.orders``, ``explorer.tasks.stories``).
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
import platform
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from explorer.io import atomic_write, write_text_atomic
from explorer.runs import RunFolderError, SettingError, check_finite_nonnegative, damaged_checkpoint
from explorer.models.dit import MDLM, MDLMConfig
from explorer.tasks import TASKS, get_task

SAMPLING_EPS = 1e-3
CHECKPOINT = "checkpoint.pt"
LOG = "log.jsonl"

# the architecture settings a checkpoint must share with a run that resumes it, and the option of each
ARCHITECTURE_OPTIONS = {"hidden_dim": "--hidden-dim", "n_blocks": "--n-blocks", "n_heads": "--n-heads",
                        "cond_dim": "--cond-dim", "vocab_size": "--task", "model_length": "--task"}


class MissingWeightsError(RunFolderError, FileNotFoundError):
    """``init_from`` names a folder without weights: a FileNotFoundError to Python, a problem and a
    fix to the command line."""


# ---------------------------------------------------------------------------------------------
# The loss (§1.1)
# ---------------------------------------------------------------------------------------------

def sample_times(batch_size: int, generator: torch.Generator, eps: float = SAMPLING_EPS) -> torch.Tensor:
    """Antithetic t in [eps, 1]: one uniform offset, then evenly spaced across the batch."""
    u = torch.rand((), generator=generator)
    t = (u + torch.arange(batch_size) / batch_size) % 1
    return eps + (1 - eps) * t


def mdlm_loss(model: torch.nn.Module, x0: torch.Tensor, mask_id: int,
              generator: torch.Generator) -> torch.Tensor:
    """Per-token NELBO (nats) of clean sequences ``x0`` [B, L]; noise drawn on CPU from ``generator``."""
    b, L = x0.shape
    t = sample_times(b, generator)
    masked = (torch.rand(b, L, generator=generator) < t[:, None]).to(x0.device)
    t = t.to(x0.device)
    z_t = torch.where(masked, torch.full_like(x0, mask_id), x0)
    logits = model(z_t).float()
    logits[..., mask_id] = float("-inf")  # SUBS: the model never predicts the mask
    nll = -F.log_softmax(logits, dim=-1).gather(-1, x0[..., None]).squeeze(-1)
    weighted = torch.where(masked, nll / t[:, None], torch.zeros_like(nll))
    return weighted.sum() / (b * L)


@torch.no_grad()
def heldout_nelbo(model: torch.nn.Module, data: torch.Tensor, mask_id: int, seed: int = 0,
                  batch_size: int = 256, repeats: int = 1) -> float:
    """Mean per-token NELBO on ``data`` with a fixed noise seed (comparable across calls)."""
    was_training = model.training
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for _ in range(repeats):
        for i in range(0, len(data), batch_size):
            x0 = data[i:i + batch_size].to(device)
            total += mdlm_loss(model, x0, mask_id, gen).item() * len(x0)
            count += len(x0)
    model.train(was_training)
    return total / count


# ---------------------------------------------------------------------------------------------
# EMA of the weights
# ---------------------------------------------------------------------------------------------

class EMA:
    """Shadow copies of the trainable parameters; ``decay_n = min(decay, (1+n)/(10+n))``."""

    def __init__(self, model: torch.nn.Module, decay: float = 0.9999):
        self.decay = decay
        self.num_updates = 0
        self.shadow = {k: p.detach().clone() for k, p in model.named_parameters() if p.requires_grad}

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.num_updates += 1
        d = self.current_decay()
        for k, p in model.named_parameters():
            if k in self.shadow:
                self.shadow[k].mul_(d).add_(p.detach(), alpha=1 - d)

    def copy_to(self, model: torch.nn.Module) -> torch.nn.Module:
        with torch.no_grad():
            for k, p in model.named_parameters():
                if k in self.shadow:
                    p.copy_(self.shadow[k])
        return model

    def state_dict(self) -> dict:
        return {"decay": self.decay, "num_updates": self.num_updates, "shadow": self.shadow}

    def load_state_dict(self, state: dict) -> None:
        self.decay = state["decay"]
        self.num_updates = state["num_updates"]
        for k, v in state["shadow"].items():
            self.shadow[k].copy_(v)


def ema_model(model: torch.nn.Module, ema: EMA) -> torch.nn.Module:
    """A copy of ``model`` holding the EMA weights, in eval mode."""
    return ema.copy_to(copy.deepcopy(model)).eval()


# ---------------------------------------------------------------------------------------------
# Learning rate
# ---------------------------------------------------------------------------------------------

def learning_rate(step: int, lr: float, warmup: int, total: int, schedule: str = "constant") -> float:
    if step < warmup:
        return lr * (step + 1) / warmup
    if schedule == "cosine":
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))
    return lr


# ---------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------

def _atomic_torch_save(obj, path: Path) -> None:
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def save_checkpoint(out: Path, model, ema: EMA, optimizer, step: int, noise_gen: torch.Generator,
                    args: dict, elapsed: float) -> Path:
    state = {
        "step": step,
        "model": model.state_dict(),
        "ema": ema.state_dict(),
        "optimizer": optimizer.state_dict(),
        "config": model.config.to_dict(),
        "args": args,
        "elapsed_s": elapsed,
        "rng": {
            "noise": noise_gen.get_state(),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        },
    }
    path = out / CHECKPOINT
    _atomic_torch_save(state, path)
    return path


def check_run_folder(out: Path, resume: bool) -> None:
    """A folder that already holds a run (checkpoint or log) is continued with ``resume``, never
    overwritten: refused otherwise, before any work."""
    held = [name for name in (CHECKPOINT, LOG) if (Path(out) / name).exists()]
    if held and not resume:
        raise RunFolderError(f"{out} already holds a training run ({', '.join(held)}).",
                             "continue it with --resume, or choose a new --out folder.")


def _check_architecture(path: Path, saved: dict, model) -> None:
    """The checkpoint's architecture is the model's: else a :class:`RunFolderError` naming the settings."""
    now = model.config.to_dict()
    differ = [k for k in ARCHITECTURE_OPTIONS if k in saved and k in now and saved[k] != now[k]]
    if differ:
        said = ", ".join(f"{k} {saved[k]} there, {now[k]} now" for k in differ)
        options = " ".join(dict.fromkeys(f"{ARCHITECTURE_OPTIONS[k]} {saved[k]}" if ARCHITECTURE_OPTIONS[k] != "--task"
                                         else "the same --task" for k in differ))
        raise RunFolderError(f"{path} holds a model of another architecture ({said}).",
                             f"resume with the run's settings ({options}), or choose a new --out folder.")


def load_checkpoint(path: Path, model, ema: EMA, optimizer, noise_gen: torch.Generator) -> dict:
    """Restore a run from ``path``. A checkpoint that cannot be read back, or one of another
    architecture, is a :class:`RunFolderError`, raised before the run folder changes."""
    fix = "delete it (--resume then starts the run again from step 0) or choose a new --out folder."
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
        saved_config = state.get("config", {})
        if not isinstance(saved_config, dict):
            raise TypeError(f"its config is a {type(saved_config).__name__}, not a dict")
    except Exception as err:  # noqa: BLE001 -- zip, pickle, EOF and int() errors alike: the file is damaged
        raise damaged_checkpoint(path, err, fix) from err
    _check_architecture(path, saved_config, model)
    try:
        if not isinstance(state["step"], int):
            raise TypeError(f"step {state['step']!r} is not a whole number")
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        noise_gen.set_state(state["rng"]["noise"])
        torch.set_rng_state(state["rng"]["torch"])
        if state["rng"]["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:  # a part lost, or of the wrong kind
        raise damaged_checkpoint(path, err, fix) from err
    return state


# ---------------------------------------------------------------------------------------------
# Export: config.json + model.safetensors (EMA) + tokenizer.json + README.md
# ---------------------------------------------------------------------------------------------

def hardware() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} (CUDA), torch {torch.__version__}"
    return (f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} thread(s), "
            f"torch {torch.__version__}")


def model_card(task: str, command: str, summary: dict) -> str:
    s = summary
    origin = (f"fine-tuned from the weights in `{s['init_from']}`" if s.get("init_from")
              else "trained from scratch")
    return f"""# `{task}`: a small MDLM trained by ReMDM Explorer

A masked diffusion language model (MDLM; the DiT of `explorer/models/dit.py`, the
`kuleshov-group/mdlm-owt` architecture and checkpoint layout at a small size) {origin}
with `explorer/train.py` on the `{task}` task (`explorer/tasks/{task}.py`).
Weights are the EMA weights. Load with `explorer.load_model("{task}")` or
`MDLM.from_pretrained("data/models/{task}")`.

## Training

- Command: `{command}`
- Data: {s['data']}
- Model: hidden {s['hidden_dim']}, {s['n_blocks']} blocks, {s['n_heads']} heads, cond_dim {s['cond_dim']},
  dropout {s['dropout']}, vocabulary {s['vocab_size']} (mask id {s['mask_id']}), length {s['seq_len']};
  {s['parameters']:,} parameters.
- Optimiser: AdamW lr {s['lr']}, warm-up {s['warmup']} steps, schedule {s['schedule']}, weight decay
  {s['weight_decay']}, batch {s['batch_size']}, grad clip 1.0; EMA decay {s['ema_decay']} with warm-up
  min(decay, (1+n)/(10+n)); seed {s['seed']}.
- Fixed tokens (position: id, given at every step and never masked by the sampler):
  {s.get('fixed_tokens') or 'none'}
- Steps: {s['step']:,} ({s['tokens']:,} training tokens).
- Time: {s['elapsed_s'] / 60:.1f} min on {s['hardware']}.

## Metrics (at export)

- Training loss (per-token NELBO, nats, mean of the last {s['loss_window']} steps): {s['final_loss']:.4f}
- Held-out NELBO per token (EMA weights, {s['eval_n']} held-out sequences): {s['val_nelbo']:.4f} nats
  (perplexity bound {math.exp(s['val_nelbo']):.3f})
"""


def export(directory: Path, model, ema: EMA, tokenizer, card: str,
           fixed_tokens: dict[int, int] | None = None) -> Path:
    """Write the EMA model. ``fixed_tokens`` ({position: id}, e.g. a BOS the model is always given)
    go into config.json so that loaders can hand them to the engine, which never masks them."""
    directory = Path(directory)
    ema_model(model, ema).to("cpu").save_pretrained(directory)
    if fixed_tokens:
        config_path = directory / "config.json"
        config = json.loads(config_path.read_text(encoding="utf-8"))
        config["fixed_tokens"] = {str(int(p)): int(t) for p, t in fixed_tokens.items()}
        write_text_atomic(config_path, json.dumps(config, indent=2, sort_keys=True) + "\n")
    tokenizer.save(str(directory / "tokenizer.json"))
    (directory / "README.md").write_text(card, encoding="utf-8")
    return directory


# ---------------------------------------------------------------------------------------------
# The training loop
# ---------------------------------------------------------------------------------------------

@dataclass
class TrainConfig:
    """Everything a training run takes (``explorer train`` builds one from its options, same names).

    Checked when built (a :class:`SettingError`): a known task, positive sizes and step counts,
    finite ``lr`` and ``weight_decay`` >= 0, ``n_heads`` dividing ``hidden_dim``, ``ema`` and
    ``dropout`` in [0, 1). Files are checked by :func:`train` when it
    reads them (``init_from``) or creates them (``out``, ``export``)."""
    task: str
    out: Path
    steps: int = 20000               # optimizer steps in all (a resumed run stops here too)
    batch_size: int = 64
    lr: float = 1e-3                 # peak learning rate (AdamW)
    warmup: int = 500                # linear warm-up steps
    schedule: str = "constant"       # after the warm-up: "constant" or "cosine" (to 10 %)
    weight_decay: float = 0.0
    ema: float = 0.9999              # EMA decay (with warm-up)
    hidden_dim: int = 192
    n_blocks: int = 4
    n_heads: int = 4
    cond_dim: int = 64
    dropout: float = 0.0
    seed: int = 0                    # data stream, noise and weights
    device: str = "auto"             # cpu, cuda or auto
    threads: int | None = None       # torch CPU threads
    eval_every: int = 1000
    eval_n: int = 512                # held-out sequences for the NELBO
    ckpt_every: int = 1000
    resume: bool = False             # continue from <out>/checkpoint.pt
    init_from: Path | None = None    # start from an exported model's weights (a fine-tune)
    export: Path | None = None       # write the EMA model here at the end
    progress: bool = True

    def __post_init__(self):
        self.out = Path(self.out)
        self.init_from = None if self.init_from is None else Path(self.init_from)
        self.export = None if self.export is None else Path(self.export)
        if self.task not in TASKS:
            raise SettingError(("task",), f"unknown task {self.task!r}", f"choose one of {', '.join(TASKS)}.")
        if self.schedule not in ("constant", "cosine"):
            raise SettingError(("schedule",), f"schedule {self.schedule!r} is neither 'constant' nor 'cosine'",
                               "choose one of the two.")
        for name in ("steps", "batch_size", "hidden_dim", "n_blocks", "n_heads", "cond_dim", "eval_every",
                     "eval_n", "ckpt_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SettingError((name,), f"{name} must be a whole number >= 1, got {value!r}",
                                   f"give {name} a whole number >= 1.")
        if self.warmup < 0:
            raise SettingError(("warmup",), f"warmup must be >= 0, got {self.warmup!r}",
                               "give warmup a number of steps >= 0.")
        check_finite_nonnegative("lr", self.lr, "give lr a finite learning rate, e.g. 1e-3.")
        check_finite_nonnegative("weight_decay", self.weight_decay, "give weight_decay a finite decay, e.g. 0 or 0.1.")
        if self.hidden_dim % self.n_heads:
            raise SettingError(("n_heads", "hidden_dim"),
                               f"n_heads {self.n_heads} does not divide hidden_dim {self.hidden_dim}",
                               "choose a head count that divides the width, e.g. 4.")
        for name in ("ema", "dropout"):
            value = getattr(self, name)
            if not 0 <= value < 1:
                raise SettingError((name,), f"{name} {value} is outside [0, 1)", f"give {name} a value in [0, 1).")

    def command_line(self) -> str:
        """The ``explorer train`` command that runs this config (every setting spelled out)."""
        words = ["explorer", "train"]
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            option = "--" + f.name.replace("_", "-")
            if f.name == "progress":
                words += [] if value else ["--no-progress"]
            elif isinstance(value, bool):
                words += [option] if value else []
            elif value is not None:
                words += [option, str(value)]
        return shlex.join(words)


def json_text(record: dict) -> str:
    """``record`` as JSON that any reader parses: a NaN or an infinity (no evaluation yet, no logged
    loss) is written as null, not as the non-standard NaN / Infinity."""
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
    return json.dumps(clean, indent=2, allow_nan=False) + "\n"


def _init_from(model: MDLM, directory: Path) -> None:
    """Copy the weights of the exported model in ``directory`` into ``model`` (a fine-tune)."""
    from explorer.models.checkpoint import check_state_dict, load_state_dict_file, weights_file

    try:
        weights = weights_file(directory)
    except FileNotFoundError as err:
        raise MissingWeightsError(f"--init-from {directory}: no model.safetensors there.",
                                  "pass a folder written by `explorer train --export` or `save_pretrained`.") from err
    try:
        state = load_state_dict_file(weights)
    except ValueError as err:
        raise RunFolderError(f"--init-from {directory}: {weights.name} is damaged or incomplete.",
                             "export the model again, or pass another --init-from folder.") from err
    try:
        check_state_dict(state, {k: tuple(v.shape) for k, v in model.state_dict().items()}, source=weights)
    except ValueError as err:
        raise RunFolderError(f"--init-from {directory}: its weights do not fit this architecture "
                             "(--debug names each tensor).",
                             "use that model's --hidden-dim, --n-blocks, --n-heads, --cond-dim and --task.") from err
    model.load_state_dict(state)


def _logged_loss(log: Path, step: int, window: int) -> tuple[float, int]:
    """Mean training loss over the last ``window`` steps before ``step``, from the run's log
    (rows of 50-step means): the card's figure when a call resumes at the last step and trains
    none. ``(nan, 0)`` when the log has no such rows."""
    rows = []
    if log.is_file():
        for line in log.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            if "loss" in row and step - window < row["step"] <= step:
                rows.append(row)
    latest = {r["step"]: r["loss"] for r in rows}  # a resumed run may log a step twice: keep the last
    if not latest:
        return float("nan"), 0
    return sum(latest.values()) / len(latest), 50 * len(latest)


def train(config: TrainConfig, command: str | None = None) -> dict:
    """Run (or resume) training as ``config`` says; returns the summary written to the model card.

    ``command`` is what the card says was run (default: :meth:`TrainConfig.command_line`)."""
    if config.init_from is not None and not config.init_from.is_dir():
        raise FileNotFoundError(f"init_from {config.init_from}: no such model folder; pass the folder an earlier "
                                "run exported (config.json + model.safetensors).")
    check_run_folder(config.out, config.resume)
    if config.threads:
        torch.set_num_threads(config.threads)
    device = torch.device("cuda" if config.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if config.device == "auto" else config.device))
    task = get_task(config.task)
    tokenizer = task.build_tokenizer()
    vocab_size = tokenizer.get_vocab_size()
    mask_id = tokenizer.token_to_id("[MASK]")
    if mask_id != vocab_size - 1:
        raise ValueError(f"the task's [MASK] must be the last id (got {mask_id} of {vocab_size})")

    torch.manual_seed(config.seed)
    architecture = MDLMConfig(vocab_size=vocab_size, hidden_dim=config.hidden_dim, cond_dim=config.cond_dim,
                              n_blocks=config.n_blocks, n_heads=config.n_heads, model_length=task.SEQ_LEN,
                              dropout=config.dropout)
    model = MDLM(architecture).to(device).train()
    if config.init_from is not None:
        _init_from(model, Path(config.init_from))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, betas=(0.9, 0.999),
                                  weight_decay=config.weight_decay)
    ema = EMA(model, config.ema)
    noise_gen = torch.Generator().manual_seed(config.seed + 1)

    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    step, elapsed_before = 0, 0.0
    ckpt = out / CHECKPOINT
    if config.resume and ckpt.is_file():
        state = load_checkpoint(ckpt, model, ema, optimizer, noise_gen)
        step, elapsed_before = state["step"], state.get("elapsed_s", 0.0)
        if step > config.steps:  # the loop below trains nothing: say so rather than finish in silence
            print(f"--resume: {ckpt} is already at step {step}, past --steps {config.steps}: nothing to train.",
                  file=sys.stderr)
    elif config.resume:
        print(f"--resume: no {ckpt}, starting from scratch", file=sys.stderr)

    data = task.batches("train", config.batch_size, config.seed)
    for _ in range(step):  # fast-forward the seeded stream to where the checkpoint left it
        next(data)
    eval_data = task.eval_tensor(config.eval_n, config.seed)
    run_args = {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(config).items()}
    log = open(out / LOG, "a", encoding="utf-8")

    def log_row(**row):
        log.write(json.dumps(row) + "\n")
        log.flush()

    from tqdm.auto import tqdm
    bar = tqdm(total=config.steps, initial=step, disable=not config.progress, desc=f"train {config.task}")
    losses: list[float] = []
    val_nelbo = float("nan")
    start = time.time()
    while step < config.steps:
        lr = learning_rate(step, config.lr, config.warmup, config.steps, config.schedule)
        for group in optimizer.param_groups:
            group["lr"] = lr
        x0 = next(data).to(device)
        loss = mdlm_loss(model, x0, mask_id, noise_gen)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        ema.update(model)
        step += 1
        losses.append(loss.item())
        bar.update(1)
        if step % 50 == 0 or step == config.steps:
            recent = sum(losses[-50:]) / len(losses[-50:])
            bar.set_postfix(loss=f"{recent:.4f}", lr=f"{lr:.2e}")
            log_row(step=step, loss=recent, lr=lr, grad_norm=float(grad_norm),
                    elapsed_s=elapsed_before + time.time() - start)
        if step % config.eval_every == 0 or step == config.steps:
            val_nelbo = heldout_nelbo(ema_model(model, ema), eval_data, mask_id, seed=config.seed)
            log_row(step=step, val_nelbo=val_nelbo, elapsed_s=elapsed_before + time.time() - start)
            bar.write(f"step {step}: held-out NELBO (EMA) {val_nelbo:.4f}")
        if step % config.ckpt_every == 0 or step == config.steps:
            save_checkpoint(out, model, ema, optimizer, step, noise_gen, run_args,
                            elapsed_before + time.time() - start)
    bar.close()
    if math.isnan(val_nelbo):  # resumed at the last step: nothing was evaluated in this call
        val_nelbo = heldout_nelbo(ema_model(model, ema), eval_data, mask_id, seed=config.seed)
    log.close()

    window = min(500, len(losses)) or 1
    final_loss = sum(losses[-window:]) / window if losses else float("nan")
    if not losses:  # resumed at the last step: read the last 500 steps' loss from the log
        final_loss, window = _logged_loss(out / LOG, step, 500)
    summary = {
        "task": config.task, "step": step, "batch_size": config.batch_size, "lr": config.lr,
        "warmup": config.warmup, "schedule": config.schedule, "weight_decay": config.weight_decay,
        "ema_decay": config.ema, "seed": config.seed, "hidden_dim": config.hidden_dim,
        "n_blocks": config.n_blocks, "n_heads": config.n_heads, "cond_dim": config.cond_dim,
        "dropout": config.dropout, "vocab_size": vocab_size, "mask_id": mask_id,
        "seq_len": task.SEQ_LEN, "parameters": model.num_parameters(),
        "tokens": step * config.batch_size * task.SEQ_LEN,
        "elapsed_s": elapsed_before + time.time() - start, "hardware": hardware(),
        "final_loss": final_loss,
        "loss_window": window, "val_nelbo": val_nelbo, "eval_n": config.eval_n,
        "fixed_tokens": getattr(task, "FIXED_TOKENS", None),
        "init_from": str(config.init_from) if config.init_from is not None else None,
        "data": getattr(task, "DATA_DESCRIPTION", f"`explorer/tasks/{config.task}.py`, seed {config.seed}"),
    }
    write_text_atomic(out / "summary.json", json_text(summary))
    if config.export is not None:
        export(config.export, model, ema, tokenizer, model_card(config.task, command or config.command_line(), summary),
               fixed_tokens=getattr(task, "FIXED_TOKENS", None))
    return summary
