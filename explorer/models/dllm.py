"""Pieces shared by the masked diffusion LLMs (LLaDA, Dream): norm, rotary, checkpoints, denoiser.

Everything here follows ``llada-dream-reference.md``:

* :class:`RMSNorm` -- normalise in fp32, cast back, then multiply by the weight in the input dtype
  (§1.3 item 4 for LLaDA, §2.3 item 6 for Dream: the same rule);
* :func:`rope_cos_sin` -- the rotate-half (NeoX / HF-Llama) rotary tables, angles in fp32
  (§1.3 item 6, §2.3 item 3); each model applies its own precision rule on top;
* :func:`load_checkpoint` -- single or sharded safetensors through ``model.safetensors.index.json``,
  memory-mapped and one tensor at a time into a model built on the meta device, with a strict
  check that names every missing, unexpected or mis-shaped tensor before any weight is read;
* :class:`DiffusionLMDenoiser` -- the variable-length denoiser protocol of ``docs/CONTRACTS.md``
  (``seq_len=None``, ``max_length``, ``logits(z, pad)``, ``body(z, pad)``, ``head(h)``).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from .denoiser import sha256_tensors
from .dit import check_state_dict, rotate_half
from .hf_adapter import weights_sha256

CONFIG_NAME = "config.json"
SINGLE_WEIGHTS_NAME = "model.safetensors"
INDEX_NAME = "model.safetensors.index.json"


# --------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------

class RMSNorm(nn.Module):
    """y = weight * (x / sqrt(mean(x^2) + eps)) (reference §1.3 item 4, §2.3 item 6).

    The normalisation runs in fp32 with autocast off; the result is cast back to the input
    dtype *before* the multiplication by ``weight`` (so in bf16 the product is bf16 * bf16).
    """

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = float(eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            xf = x.float()
            xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * xf.to(x.dtype)


def rope_cos_sin(positions: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin of the rotate-half rotary embedding, fp32, shape ``positions.shape + (head_dim,)``.

    inv_freq = 1 / theta^(arange(0, head_dim, 2) / head_dim) in fp32; angles = pos * inv_freq;
    the table is cat(angles, angles) (reference §1.3 item 6, §2.3 item 3). Nothing is stored in
    the checkpoint (§1.2, §2.2), so it is computed here, on the positions' device.
    """
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=positions.device)
                                / head_dim))
    angles = positions.to(torch.float32)[..., None] * inv_freq
    emb = torch.cat([angles, angles], dim=-1)
    return emb.cos(), emb.sin()


def apply_rope(t: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """t * cos + rotate_half(t) * sin, in the dtype of its arguments (the caller chooses it)."""
    return t * cos + rotate_half(t) * sin


# --------------------------------------------------------------------------------------------
# Config files
# --------------------------------------------------------------------------------------------

def read_json(path: str | os.PathLike) -> dict:
    """A JSON file as a dict; a damaged file gives an error naming it and the parse position."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            obj = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}); "
                         "the file is damaged or truncated: restore it from the model's original files.") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{path} holds a JSON {type(obj).__name__}, not an object; restore the original file.")
    return obj


def config_fields(cls, d: dict) -> dict:
    """The keys of config.json that the dataclass ``cls`` knows (the rest, e.g. auto_map, is ignored)."""
    known = set(cls.__dataclass_fields__)
    return {k: v for k, v in d.items() if k in known}


def require_settings(config: Any, required: dict, family: str) -> None:
    """Raise NotImplementedError naming each config key whose value this native model does not implement."""
    wrong = [f"{k}={getattr(config, k)!r} (supported: {v!r})" for k, v in required.items() if getattr(config, k) != v]
    if wrong:
        raise NotImplementedError(f"this {family} config uses settings the native model does not implement: "
                                  + "; ".join(wrong) + ". Only the published architecture is supported.")


# --------------------------------------------------------------------------------------------
# Checkpoints: single or sharded safetensors, memory-mapped, straight into dtype and device
# --------------------------------------------------------------------------------------------

class PublishedConfig:
    """What LLaDA's and Dream's config dataclasses share: read and write the published config.json.

    A subclass is a dataclass with the family's keys, ``ARCHITECTURE`` (the ``architectures`` entry)
    and a ``validate()`` that refuses settings the native model does not implement.
    """
    ARCHITECTURE = ""

    @classmethod
    def from_dict(cls, d: dict):
        return cls(**config_fields(cls, d)).validate()

    @classmethod
    def from_json_file(cls, path: str | os.PathLike):
        return cls.from_dict(read_json(path))

    def to_dict(self) -> dict:
        """The published config.json layout, minus ``auto_map``: no remote code is shipped."""
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["architectures"] = [self.ARCHITECTURE]
        return dict(sorted(d.items()))


class PublishedModel(nn.Module):
    """What the LLaDA and Dream module trees share around their own ``body`` / ``head`` math:
    ``forward = head(body)``, the parameter count, and strict loading on the meta device.
    A subclass sets ``config_class`` and ``family``."""
    config_class: type = PublishedConfig
    family = ""

    def forward(self, ids: torch.Tensor, pad: torch.Tensor | None = None) -> torch.Tensor:
        """Logits [B, L, V]; position i's row is the distribution of token i."""
        return self.head(self.body(ids, pad))

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, device: str | torch.device | None = None,
                        dtype: torch.dtype | None = None):
        """config.json + (sharded) safetensors, strict by name and shape, built on the meta device."""
        directory = Path(directory)
        config = cls.config_class.from_json_file(directory / CONFIG_NAME)
        device, dtype = default_device_dtype(device, dtype)
        with torch.device("meta"):
            model = cls(config)
        return load_checkpoint(model, directory, device, dtype, family=cls.family)


def open_safetensors(path: Path):
    """``safe_open`` (memory-mapped); a damaged or truncated file gives an error naming it."""
    from safetensors import safe_open

    try:
        return safe_open(str(path), framework="pt")
    except Exception as e:   # SafetensorError, OSError: the header cannot be read
        raise ValueError(f"{path} is not a readable safetensors file ({e}); the file is damaged or was cut "
                         "short: download it again.") from None


def checkpoint_files(directory: str | os.PathLike) -> dict[str, Path]:
    """{tensor name: shard file} from ``model.safetensors.index.json``, or every tensor of
    ``model.safetensors``. Shards named by the index must exist; an index naming a tensor that
    its shard lacks is an error naming both (checked in :func:`checkpoint_shapes`)."""
    directory = Path(directory)
    index = directory / INDEX_NAME
    if index.is_file():
        weight_map = read_json(index).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise ValueError(f"{index} has no 'weight_map' of tensor name -> shard file; restore the original index.")
        files = {name: directory / shard for name, shard in weight_map.items()}
        absent = sorted({str(p.name) for p in files.values() if not p.is_file()})
        if absent:
            raise FileNotFoundError(f"{index} names shard file(s) missing from {directory}: {', '.join(absent)}. "
                                    "Copy or download every shard the index lists (an interrupted download leaves "
                                    "some out).")
        return files
    single = directory / SINGLE_WEIGHTS_NAME
    if single.is_file():
        with open_safetensors(single) as f:
            return {name: single for name in f.keys()}
    found = sorted(p.name for p in directory.glob("*.safetensors"))
    hint = (f" It holds {', '.join(found)} but no {INDEX_NAME} saying which tensor is where; restore the index."
            if found else " Only safetensors weights are read (no pytorch_model.bin for these models).")
    raise FileNotFoundError(f"{directory} has neither {INDEX_NAME} nor {SINGLE_WEIGHTS_NAME}.{hint}")


def checkpoint_shapes(files: dict[str, Path]) -> dict[str, tuple]:
    """{name: shape} read from the safetensors headers only (no weight is loaded)."""
    shapes: dict[str, tuple] = {}
    by_file: dict[Path, list[str]] = {}
    for name, path in files.items():
        by_file.setdefault(path, []).append(name)
    for path, names in by_file.items():
        with open_safetensors(path) as f:
            present = set(f.keys())
            lacking = sorted(n for n in names if n not in present)
            if lacking:
                raise ValueError(f"{path.name} lacks tensor(s) that {INDEX_NAME} places in it: "
                                 f"{', '.join(lacking[:10])}{' ...' if len(lacking) > 10 else ''}. The shards and the "
                                 "index come from different versions of the checkpoint; re-download them together.")
            unlisted = sorted(present - set(names))
            if unlisted:   # (a single model.safetensors lists all its own tensors)
                raise ValueError(f"{path.name} holds tensor(s) that {INDEX_NAME} does not list: "
                                 f"{', '.join(unlisted[:10])}{' ...' if len(unlisted) > 10 else ''}. The shards and "
                                 "the index come from different versions of the checkpoint; re-download them together.")
            for n in names:
                shapes[n] = tuple(f.get_slice(n).get_shape())
    return shapes


def load_checkpoint(model: nn.Module, directory: str | os.PathLike, device: torch.device,
                    dtype: torch.dtype, family: str) -> nn.Module:
    """Fill ``model`` (built on the meta device) from the checkpoint in ``directory``.

    First every tensor's name and shape is checked against the model's (strict: one error names
    every missing, unexpected and mis-shaped tensor); then tensors are read memory-mapped, one at
    a time, converted to ``dtype`` on ``device`` and assigned in place of the meta parameter, so
    host memory holds the model (none of it when ``device`` is a GPU), one tensor in transit and
    the mapped pages of the shard being read -- never a second copy of the model.
    """
    directory = Path(directory)
    files = checkpoint_files(directory)
    shapes = checkpoint_shapes(files)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    check_state_dict({k: torch.empty(s, device="meta") for k, s in shapes.items()}, expected, source=directory,
                     architecture=family)
    by_file: dict[Path, list[str]] = {}
    for name, path in files.items():
        by_file.setdefault(path, []).append(name)
    for path, names in by_file.items():
        with open_safetensors(path) as f:
            for name in names:
                tensor = f.get_tensor(name).to(device=device, dtype=dtype, copy=True)
                _assign(model, name, tensor)
    return model.eval()


def _assign(model: nn.Module, name: str, tensor: torch.Tensor) -> None:
    module_name, _, leaf = name.rpartition(".")
    module = model.get_submodule(module_name)
    setattr(module, leaf, nn.Parameter(tensor, requires_grad=False))


def default_device_dtype(device: str | torch.device | None,
                         dtype: torch.dtype | None) -> tuple[torch.device, torch.dtype]:
    """CPU unless told; bf16 on CUDA and float32 elsewhere unless told."""
    device = torch.device(device or "cpu")
    if dtype is None:
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    return device, dtype


# --------------------------------------------------------------------------------------------
# The denoiser protocol for variable-length models (docs/CONTRACTS.md)
# --------------------------------------------------------------------------------------------

class DiffusionLMDenoiser:
    """A LLaDA or Dream network behind the variable-length denoiser protocol.

    ``seq_len`` is None: the canvas is whatever the engine builds (prompt + ``gen_length`` masks),
    up to ``max_length``. ``logits(z, pad)[:, i]`` is the distribution of token i for both
    families (Dream's AR shift is inside the network). ``pad`` is None or a BoolTensor[B, L],
    True at left padding. Logits come out in the model dtype (bf16 on CUDA); the engine upcasts
    only the rows it uses. Everything runs in eval mode without gradients.
    """

    seq_len = None

    def __init__(self, model: nn.Module, *, family: str, max_length: int, mask_id: int, eos_id: int | None,
                 pad_id: int | None, eot_id: int | None, tokenizer: Any = None, name: str | None = None,
                 directory: str | os.PathLike | None = None, identity: dict | None = None):
        self.model = model.eval()
        self.family = family
        self.max_length = int(max_length)
        self.mask_id = int(mask_id)
        self.eos_id = None if eos_id is None else int(eos_id)
        self.pad_id = None if pad_id is None else int(pad_id)
        self.eot_id = None if eot_id is None else int(eot_id)
        self.vocab_size = int(model.vocab_size)
        self.tokenizer = tokenizer
        self.name = name or (Path(directory).name if directory is not None else family)
        self.directory = None if directory is None else Path(directory)
        self._identity: dict | None = identity   # given, or computed on first use

    @property
    def identity(self) -> dict:
        """name and sha256 of the weights (of the shards' digests, in name order), computed once,
        on first use: hashing 16 GB of shards takes a while, so loading does not pay for it."""
        if self._identity is None:
            sha = weights_sha256(self.directory) if self.directory is not None else None
            if sha is None:
                sha = sha256_tensors(self.model.state_dict())
            self._identity = {"name": self.name, "sha256": sha, "family": self.family}
        return self._identity

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def config(self):
        return self.model.config

    def to(self, device=None, dtype=None) -> "DiffusionLMDenoiser":
        self.model.to(device=device, dtype=dtype)
        return self

    def _inputs(self, z: torch.Tensor, pad: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        if z.dim() != 2:
            raise ValueError(f"expected token ids of shape [B, L], got {tuple(z.shape)}")
        if z.shape[1] > self.max_length:
            raise ValueError(f"a canvas of {z.shape[1]} tokens is longer than {self.family}'s maximum of "
                             f"{self.max_length}; shorten the prompt or gen_length.")
        z = z.to(self.device, dtype=torch.long)
        if pad is not None:
            if pad.shape != z.shape:
                raise ValueError(f"pad has shape {tuple(pad.shape)}; it must match the tokens' {tuple(z.shape)}.")
            pad = pad.to(self.device, dtype=torch.bool)
            if not pad.any():
                pad = None
        return z, pad

    @torch.no_grad()
    def logits(self, z: torch.Tensor, pad: torch.Tensor | None = None) -> torch.Tensor:
        z, pad = self._inputs(z, pad)
        return self.model.head(self.model.body(z, pad))

    @torch.no_grad()
    def body(self, z: torch.Tensor, pad: torch.Tensor | None = None) -> torch.Tensor:
        z, pad = self._inputs(z, pad)
        return self.model.body(z, pad)

    @torch.no_grad()
    def head(self, h: torch.Tensor) -> torch.Tensor:
        return self.model.head(h.to(self.device, self.dtype))

    def __repr__(self) -> str:
        return (f"DiffusionLMDenoiser(family={self.family!r}, name={self.name!r}, V={self.vocab_size}, "
                f"mask_id={self.mask_id}, max_length={self.max_length}, device={self.device}, dtype={self.dtype})")
