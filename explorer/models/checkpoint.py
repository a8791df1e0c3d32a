"""Reading checkpoints: config.json, safetensors (single, or sharded through an index), strict
name-and-shape checks, and the one digest of a model's weights.

* :func:`read_json` -- a config or index file; a damaged one is an error naming it;
* :func:`weights_file`, :func:`load_state_dict_file` -- one weights file read whole (the small
  native DiT, which also takes a legacy ``pytorch_model.bin``);
* :func:`checkpoint_files`, :func:`checkpoint_shapes`, :func:`load_checkpoint` -- single or sharded
  safetensors through ``model.safetensors.index.json``, memory-mapped and one tensor at a time into
  a model built on the meta device (LLaDA, Dream: 16 GB of bf16 shards), after a strict check
  (:func:`check_state_dict`) that names every missing, unexpected or mis-shaped tensor before any
  weight is read;
* :class:`PublishedModel` -- what the LLaDA and Dream module trees share: ``forward = head(body)``,
  validating their config (:class:`~explorer.models.config.PublishedConfig`) and ``from_pretrained``;
* :func:`weights_sha256`, :func:`model_sha256` -- the weights digest that traces, sweeps and model
  cards record (``model_sha256`` in ``data/sweeps``): the sha256 of the weights file itself.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ..protocol import check_device

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
LEGACY_WEIGHTS_NAME = "pytorch_model.bin"
INDEX_NAME = "model.safetensors.index.json"


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
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not valid JSON (not UTF-8 text: {e.reason}); the file is damaged: restore "
                         "it from the model's original files.") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{path} holds a JSON {type(obj).__name__}, not an object; restore the original file.")
    return obj


# --------------------------------------------------------------------------------------------
# Strict checks
# --------------------------------------------------------------------------------------------

def check_state_dict(state_dict: dict, expected_shapes: dict[str, tuple], source: object = "checkpoint",
                     architecture: str = "MDLM") -> None:
    """Raise one ValueError naming every missing, unexpected and mis-shaped tensor."""
    missing = sorted(k for k in expected_shapes if k not in state_dict)
    unexpected = sorted(k for k in state_dict if k not in expected_shapes)
    misshaped = sorted(
        f"{k}: file {tuple(state_dict[k].shape)} vs model {expected_shapes[k]}"
        for k in expected_shapes if k in state_dict and tuple(state_dict[k].shape) != expected_shapes[k]
    )
    if missing or unexpected or misshaped:
        lines = [f"{source} does not match the {architecture} architecture of its config.json:"]
        for title, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)):
            if items:
                lines.append(f"  {title} ({len(items)}): " + ", ".join(items))
        raise ValueError("\n".join(lines))


# --------------------------------------------------------------------------------------------
# One weights file, read whole (the native DiT)
# --------------------------------------------------------------------------------------------

def weights_file(directory: str | os.PathLike) -> Path:
    directory = Path(directory)
    for name in (WEIGHTS_NAME, LEGACY_WEIGHTS_NAME):
        if (directory / name).is_file():
            return directory / name
    raise FileNotFoundError(f"{directory} has neither {WEIGHTS_NAME} nor {LEGACY_WEIGHTS_NAME}.")


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` file or a ``torch.save``d state dict; a truncated or
    otherwise damaged file is a ValueError that names it."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            return load_file(str(path))
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (FileNotFoundError, PermissionError):
        raise
    except Exception as e:  # SafetensorError, UnpicklingError, EOFError, RuntimeError: all "damaged"
        reason = f"{type(e).__name__}: {(str(e).splitlines() or [''])[0]}"
        raise ValueError(f"{path} is damaged or incomplete ({reason}). Replace it with a complete copy "
                         "(download or export the model again).") from e
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    return dict(obj)


# --------------------------------------------------------------------------------------------
# Single or sharded safetensors, memory-mapped, straight into dtype and device
# --------------------------------------------------------------------------------------------

def open_safetensors(path: Path):
    """``safe_open`` (memory-mapped); a damaged or truncated file gives an error naming it."""
    from safetensors import safe_open

    try:
        return safe_open(str(path), framework="pt")
    except Exception as e:   # SafetensorError, OSError: the header cannot be read
        raise ValueError(f"{path} is not a readable safetensors file ({e}); the file is damaged or was cut "
                         "short: download it again.") from None


def checkpoint_files(directory: str | os.PathLike) -> dict[str, Path]:
    """{tensor name: shard file}: every tensor of ``model.safetensors`` when the folder has one (as
    transformers reads it, and the file :func:`weights_sha256` hashes, so a trace names the weights
    it ran), else those of ``model.safetensors.index.json``. Shards named by the index must exist;
    an index naming a tensor that its shard lacks is an error naming both (checked in
    :func:`checkpoint_shapes`)."""
    directory = Path(directory)
    index, single = directory / INDEX_NAME, directory / WEIGHTS_NAME
    if single.is_file():
        with open_safetensors(single) as f:
            return {name: single for name in f.keys()}
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
    found = sorted(p.name for p in directory.glob("*.safetensors"))
    hint = (f" It holds {', '.join(found)} but no {INDEX_NAME} saying which tensor is where; restore the index."
            if found else " Only safetensors weights are read (no pytorch_model.bin for these models).")
    raise FileNotFoundError(f"{directory} has neither {INDEX_NAME} nor {WEIGHTS_NAME}.{hint}")


def _by_file(files: dict[str, Path]) -> dict[Path, list[str]]:
    by_file: dict[Path, list[str]] = {}
    for name, path in files.items():
        by_file.setdefault(path, []).append(name)
    return by_file


def checkpoint_shapes(files: dict[str, Path]) -> dict[str, tuple]:
    """{name: shape} read from the safetensors headers only (no weight is loaded)."""
    shapes: dict[str, tuple] = {}
    for path, names in _by_file(files).items():
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
    for path, names in _by_file(files).items():
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
    """CPU unless told; bf16 on CUDA and float32 elsewhere unless told. A device this machine lacks
    (``cuda`` without a GPU) or a dtype that is not a floating torch dtype (``torch.bfloat16``, or its
    name ``"bfloat16"``) is a ValueError naming the fix, before any file is read."""
    device, dtype = check_device(device or "cpu"), check_dtype(dtype)
    if dtype is None:
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    return device, dtype


def check_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    """A floating torch dtype, given as one or by name (``"bfloat16"``); None passes (the default)."""
    if dtype is None:
        return None
    named = getattr(torch, dtype.removeprefix("torch."), None) if isinstance(dtype, str) else dtype
    if not (isinstance(named, torch.dtype) and named.is_floating_point):
        raise ValueError(f"dtype={dtype!r} is not a floating torch dtype; use torch.float32, torch.bfloat16 or "
                         "torch.float16 (or their names, e.g. 'bfloat16'), or None for the device's default.")
    return named


# --------------------------------------------------------------------------------------------
# What the LLaDA and Dream module trees share around their own math
# --------------------------------------------------------------------------------------------

class PublishedModel(nn.Module):
    """``forward = head(body)``, the parameter count, and strict loading on the meta device.
    A subclass sets ``config_class`` (a :class:`~explorer.models.config.PublishedConfig`), calls
    ``super().__init__(config)`` (which validates the config and keeps it) and writes ``body`` and ``head``."""
    config_class: type

    def __init__(self, config):
        super().__init__()
        self.config = config.validate()

    @property
    def vocab_size(self) -> int:
        """Width of the logits: the config's ``OUTPUT_ROWS`` (LLaDA's embedding_size, Dream's vocab_size)."""
        return self.config.output_rows

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
        return load_checkpoint(model, directory, device, dtype, family=cls.config_class.FAMILY)


# --------------------------------------------------------------------------------------------
# The weights digest
# --------------------------------------------------------------------------------------------

def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            h.update(chunk)
    return h.hexdigest()


# the weights files of a checkpoint folder, first pattern that matches wins
_WEIGHTS_PATTERNS = (WEIGHTS_NAME, LEGACY_WEIGHTS_NAME, "model-*.safetensors", "pytorch_model-*.bin")


def weights_sha256(weights: str | os.PathLike | Mapping[str, torch.Tensor] | nn.Module) -> str:
    """The sha256 of a model's weights: what a trace's ``meta["model"]["sha256"]``, a sweep's
    ``model_sha256`` column and a model card record.

    * a weights file: the sha256 of its bytes (``sha256sum model.safetensors`` gives the same);
    * a checkpoint folder: that of its weights file (``model.safetensors``, else
      ``pytorch_model.bin``); for a sharded checkpoint, the sha256 of the shards' hex digests
      concatenated in file-name order;
    * weights in memory, never saved (a state dict or a module): the sha256 of every tensor, in
      name order, as name, dtype, shape and raw bytes -- so the same values in another dtype or
      shape give another digest.
    """
    if isinstance(weights, (str, os.PathLike)):
        path = Path(weights)
        if path.is_file():
            return sha256_file(path)
        for pattern in _WEIGHTS_PATTERNS:
            files = sorted(path.glob(pattern))
            if len(files) == 1:
                return sha256_file(files[0])
            if files:
                return hashlib.sha256("".join(sha256_file(f) for f in files).encode()).hexdigest()
        raise FileNotFoundError(f"{path} holds no weights file ({', '.join(_WEIGHTS_PATTERNS)}).")
    state_dict = weights.state_dict() if isinstance(weights, nn.Module) else weights
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().to("cpu").contiguous()
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def model_sha256(model: Any) -> str:
    """A denoiser's weights digest: ``model.identity["sha256"]`` (set from its weights file when it
    was loaded), else :func:`weights_sha256` of its ``state_dict()``; a model with neither is an
    error, since two different models must never share a digest."""
    identity = getattr(model, "identity", None)
    sha = identity.get("sha256") if isinstance(identity, dict) else None
    if sha:
        return str(sha)
    state_dict = getattr(model, "state_dict", None)
    if callable(state_dict):
        return weights_sha256(state_dict())
    raise ValueError(f"{type(model).__name__} has no identity['sha256'] and no state_dict(); give it an "
                     "identity (a dict with 'name' and 'sha256') so its results can be told apart.")
