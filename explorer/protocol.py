"""The one small protocol every model implements to be sampled.

A *denoiser* is anything with

* ``mask_id`` (int), ``vocab_size`` (int, includes the mask token), ``seq_len`` (int),
* ``tokenizer`` (an HF-style tokenizer or ``None``),
* ``logits(z: LongTensor[B, L]) -> FloatTensor[B, L, V]`` -- raw logits, no SUBS
  (the engine applies the SUBS rules of reference §1.2 itself).

Optional, for the fast exact path (issue "compute only what a step can change"):

* ``body(z) -> FloatTensor[B, L, D]`` -- everything but the output head,
* ``head(h: FloatTensor[N, D]) -> FloatTensor[N, V]`` -- the output head on selected rows.
  ``head(body(z)[b, l])`` must equal ``logits(z)[b, l]``, in a new tensor (the engine may
  overwrite what ``head`` returns).

Optional metadata:

* ``fixed_tokens: dict[int, int]`` -- positions the model always keeps (e.g. BERT's [CLS]/[SEP]);
  the engine treats them like prompt tokens: never masked, never remasked.
* ``identity: dict`` -- at least ``name`` and ``sha256`` of the weights; traces record it.
* ``device`` -- where the model lives.

Variable-length models (LLaDA, Dream; docs/CONTRACTS.md, llada-dream reference §1.3, §2.3):

* ``seq_len = None`` and ``max_length: int`` -- no fixed canvas: the engine builds prompt +
  ``gen_length`` masks, at most ``max_length`` tokens (LLaDA 4096, Dream 2048);
* ``pad_id``, ``eos_id``, ``eot_id`` (end of turn, or None), ``family`` (``"llada"``/``"dream"``),
  ``dtype``, ``to(device)``;
* ``logits(z, pad=None) -> [B, L, V]`` in the model dtype, row i the distribution of token i
  (Dream's AR shift is inside the model); ``pad`` is None or BoolTensor[B, L], True at left
  padding, and the model applies its own padding rules (LLaDA: additive key mask, positions not
  shifted; Dream: outer-AND mask and position ids cumsum(valid) - 1, so a padded row equals the
  unpadded one at its valid positions);
* ``body(z, pad=None) -> [B, L, D]`` and ``head(h[N, D]) -> [N, V]`` with
  ``head(body(z, pad)[b, l]) == logits(z, pad)[b, l]``.

The engine calls ``logits(z)`` / ``body(z)`` without ``pad`` when no row is padded, so
fixed-length models need not accept it.
"""
from __future__ import annotations

import hashlib
from typing import Any, Protocol, runtime_checkable

import torch


@runtime_checkable
class Denoiser(Protocol):
    mask_id: int
    vocab_size: int
    seq_len: int
    tokenizer: Any

    def logits(self, z: torch.Tensor) -> torch.Tensor: ...


def has_split(model: Any) -> bool:
    """True when the model exposes ``body``/``head`` for the fast path."""
    return callable(getattr(model, "body", None)) and callable(getattr(model, "head", None))


def model_device(model: Any) -> torch.device:
    dev = getattr(model, "device", None)
    if dev is not None:
        return torch.device(dev)
    params = getattr(model, "parameters", None)
    if callable(params):
        for p in params():
            return p.device
    return torch.device("cpu")


class DeviceError(ValueError):
    """A device no model can run on here: what is wrong with it (``problem``, a predicate: "is not a
    device a model can run on") and the devices to use instead (``use``), so that the command line
    can say the same in its own options' terms."""

    def __init__(self, device: Any, problem: str, use: tuple[str, ...]):
        self.device, self.problem, self.use = device, problem, use
        super().__init__(f"device={device!r} {problem}; use " + " or ".join(f"device={u!r}" for u in use)
                         + " (or None, the default).")


def check_device(device: Any) -> torch.device:
    """``device`` as a torch.device a model can run on here: ``cpu``, a CUDA GPU of this machine
    (``cuda`` / ``cuda:N``) or ``mps`` where available; anything else (``meta``, an unknown name, a
    GPU that is not there) is a :class:`DeviceError` naming the devices to use. ``cuda`` becomes the
    current GPU's ``cuda:N``, the name a model placed there reports, so a trace records one name for
    one GPU."""
    try:
        dev = torch.device(device) if isinstance(device, (str, torch.device)) else None
    except RuntimeError:      # an unknown device string
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda", "mps"):
        raise DeviceError(device, "is not a device a model can run on", ("cpu", "cuda"))
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise DeviceError(device, "was asked for but no CUDA GPU is available", ("cpu",))
        if dev.index is not None and dev.index >= count:
            raise DeviceError(device, f"is not here: this machine has {count} CUDA GPU(s), cuda:0 to "
                              f"cuda:{count - 1}", ("cuda:0", "cpu"))
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError(device, "was asked for but Apple's MPS is not available here", ("cpu",))
    return dev


def model_identity(model: Any) -> dict:
    ident = getattr(model, "identity", None)
    if isinstance(ident, dict):
        return dict(ident)
    return {"name": type(model).__name__, "sha256": None}


def check_denoiser(model: Any) -> None:
    """Raise a clear error when ``model`` does not follow the protocol."""
    missing = [a for a in ("mask_id", "vocab_size") if not isinstance(getattr(model, a, None), int)]
    if getattr(model, "seq_len", None) is None and isinstance(getattr(model, "max_length", None), int):
        if model.max_length < 1:
            raise ValueError(f"max_length={model.max_length} must be positive: it is the longest canvas the model takes.")
    elif not isinstance(getattr(model, "seq_len", None), int):
        missing.append("seq_len (or seq_len=None with an integer max_length)")
    if not callable(getattr(model, "logits", None)):
        missing.append("logits(z)")
    if missing:
        raise TypeError(
            f"{type(model).__name__} is not a denoiser: missing {', '.join(missing)}. "
            "Wrap it so it has integer mask_id, vocab_size, seq_len (or seq_len=None and an integer "
            "max_length for a model without a fixed canvas) and a logits(z) method "
            "(see explorer.protocol), or load it with explorer.load_model()."
        )
    if not 0 <= model.mask_id < model.vocab_size:
        raise ValueError(
            f"mask_id={model.mask_id} is outside the vocabulary [0, {model.vocab_size}); "
            "the mask token must be one of the model's output classes."
        )


class StubDenoiser:
    """A context-free denoiser: p(x0 | z_t) = ``probs[l]`` whatever the sequence.

    ``context_free = True`` tells the engine so: re-scoring a token with its position masked
    (``ctx.rescore``) would tell nothing about it, and is refused.

    Used for statistical tests of the samplers (the final per-position token frequencies of a
    marginal-preserving sampler must match ``probs``) and for overhead benchmarks.
    ``probs`` is ``[L, V]`` (or ``[V]``, shared by all positions) over the vocabulary *including*
    the mask token, whose probability must be zero.
    """

    def __init__(self, probs: torch.Tensor, mask_id: int | None = None, tokenizer: Any = None,
                 seq_len: int | None = None):
        probs = torch.as_tensor(probs, dtype=torch.float64)
        if probs.dim() == 1:
            if seq_len is None:
                raise ValueError("StubDenoiser with a shared [V] distribution needs seq_len=.")
            probs = probs.expand(seq_len, -1).clone()
        if probs.dim() != 2:
            raise ValueError(f"probs must be [L, V] or [V], got shape {tuple(probs.shape)}.")
        self.seq_len, self.vocab_size = probs.shape
        self.mask_id = self.vocab_size - 1 if mask_id is None else int(mask_id)
        if (probs < 0).any():
            raise ValueError("probs must be non-negative.")
        if (probs[:, self.mask_id] != 0).any():
            raise ValueError("the mask token must have zero probability in probs.")
        probs = probs / probs.sum(-1, keepdim=True)
        self.probs = probs
        self._logits = torch.log(probs).float()  # -inf on the mask column
        self.tokenizer = tokenizer
        self.context_free = True
        self.calls = 0
        self.device = torch.device("cpu")
        digest = hashlib.sha256(self._logits.numpy().tobytes()).hexdigest()
        self.identity = {"name": "stub", "sha256": digest}

    def to(self, device):
        self.device = torch.device(device)
        self._logits = self._logits.to(self.device)
        return self

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        b = z.shape[0]
        return self._logits.to(z.device).unsqueeze(0).expand(b, -1, -1)

    # fast path: the "hidden state" of a position is its index; the head looks the row up.
    def body(self, z: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        pos = torch.arange(z.shape[1], device=z.device, dtype=torch.float32)
        return pos.expand(z.shape[0], -1).unsqueeze(-1)

    def head(self, h: torch.Tensor) -> torch.Tensor:
        return self._logits.to(h.device)[h[:, 0].long()]
