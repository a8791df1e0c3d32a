"""``load_model``: one call from a name or a path to a denoiser.

Resolution order for ``name_or_path``:

1. a built-in model, built in code without weights (:mod:`explorer.models.registry`:
   ``orders-oracle``);
2. an existing local directory;
3. a shipped model name: ``$EXPLORER_DATA_DIR/models/<name>`` (or ``$EXPLORER_DATA_DIR/<name>``),
   then ``<repo>/data/models/<name>``;
4. a Hugging Face hub id: the local HF cache, then a download -- only with ``allow_download=True``.

A directory is dispatched on its config.json ``model_type`` / ``architectures``:

* ``"mdlm"``: the native DiT (:class:`~explorer.models.denoiser.MDLMDenoiser`);
* ``"llada"`` / ``LLaDAModelLM`` and ``"Dream"`` / ``DreamModel``: the native masked diffusion LLMs
  (:mod:`explorer.models.llada`, :mod:`explorer.models.dream`; reference llada-dream §1-§3) behind
  the variable-length protocol (:class:`~explorer.models.denoiser.DiffusionLMDenoiser`), never remote code;
* a model type transformers knows as a masked LM (bert, roberta, modernbert, ...), or any with
  ``trust_remote_code=True``: the masked-LM adapter (:class:`~explorer.models.hf_adapter.HFMaskedLMDenoiser`);
* anything else: an error listing what is supported.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import torch

from ..protocol import check_device
from .checkpoint import CONFIG_NAME, check_dtype, default_device_dtype, read_json, weights_file
from .denoiser import DiffusionLMDenoiser, MDLMDenoiser
from .dit import MDLM
from .dream import ARCHITECTURE as DREAM_ARCHITECTURE
from .dream import MODEL_TYPE as DREAM_MODEL_TYPE
from .dream import DreamModel
from .hf_adapter import HFMaskedLMDenoiser
from .llada import ARCHITECTURE as LLADA_ARCHITECTURE
from .llada import MODEL_TYPE as LLADA_MODEL_TYPE
from .llada import LLaDAModelLM
from .registry import BUILTIN_MODELS

REPO_ROOT = Path(__file__).resolve().parents[2]
MASK_TOKEN = "[MASK]"


def shipped_model_dirs() -> list[Path]:
    """Where shipped models live, first match wins."""
    dirs = []
    env = os.environ.get("EXPLORER_DATA_DIR")
    if env:
        dirs += [Path(env) / "models", Path(env)]
    dirs.append(REPO_ROOT / "data" / "models")
    return dirs


def shipped_models() -> list[str]:
    """Names of the checkpoint folders shipped under :func:`shipped_model_dirs`."""
    names = set()
    for d in shipped_model_dirs():
        if d.is_dir():
            names.update(p.name for p in d.iterdir() if (p / CONFIG_NAME).is_file())
    return sorted(names)


def known_models() -> list[str]:
    """Every name ``load_model`` takes without a path: shipped checkpoints and built-in models."""
    return sorted({*shipped_models(), *BUILTIN_MODELS})


def resolve_model_dir(name_or_path: str | os.PathLike, allow_download: bool = False,
                      trust_remote_code: bool = False) -> tuple[Path, str]:
    """(local directory, display name) for a path, a shipped name or a hub id."""
    raw = str(name_or_path)
    path = Path(raw).expanduser()
    if path.is_dir():
        return path, path.resolve().name
    if path.exists():
        raise ValueError(f"{raw} is a file; load_model expects a model directory (config.json + weights).")
    for d in shipped_model_dirs():
        if (d / raw / CONFIG_NAME).is_file():
            return d / raw, raw

    shipped = ", ".join(known_models())
    not_shipped = (f"{raw!r} is neither a model directory nor a shipped model (shipped: {shipped}; searched "
                   f"{', '.join(str(d) for d in shipped_model_dirs())})")
    could_be_hub_id = raw.count("/") <= 1 and not raw.startswith((".", "/", "~")) and "\\" not in raw
    if not could_be_hub_id:
        raise FileNotFoundError(not_shipped + ". Pass a directory with config.json and weights.")

    from huggingface_hub import snapshot_download
    try:  # already in the local HF cache: no network needed
        return Path(snapshot_download(raw, local_files_only=True)), raw
    except Exception:
        pass
    if not allow_download:
        target = REPO_ROOT / "data" / "models" / raw.split("/")[-1]
        raise FileNotFoundError(
            f"{not_shipped}, and as a Hugging Face hub id it is not in the local cache; downloads are off. "
            f"Either call load_model({raw!r}, allow_download=True) to fetch it from the hub, or put its files "
            f"(config.json, model.safetensors, tokenizer files) in a directory such as {target} and pass "
            "that path.")
    return download(raw, trust_remote_code=trust_remote_code), raw


# config, tokenizer files and safetensors weights; remote code only when it may run
_DOWNLOAD_PATTERNS = ["*.json", "*.txt", "*.model", "*.safetensors"]


def download(repo_id: str, trust_remote_code: bool = False) -> Path:
    """snapshot_download of what loading needs: not a second copy of the weights as .bin files."""
    from huggingface_hub import snapshot_download

    patterns = _DOWNLOAD_PATTERNS + (["*.py"] if trust_remote_code else [])
    path = Path(snapshot_download(repo_id, allow_patterns=patterns))
    if not any(path.glob("*.safetensors")):  # older repos: pytorch_model.bin only
        path = Path(snapshot_download(repo_id, allow_patterns=patterns + ["*.bin"]))
    return path


def read_config(directory: Path) -> dict:
    """config.json as a dict; a missing or damaged file gives an error naming it."""
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{directory} has no {CONFIG_NAME}; cannot tell which kind of model it holds.")
    return read_json(path)


def load_mdlm_tokenizer(directory: Path, vocab_size: int, mask_id: int) -> Any:
    """Tokenizer files in the directory, else (mdlm-owt) GPT-2 from the local HF cache, else None."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    tokenizer = None
    if (directory / "tokenizer_config.json").is_file():
        tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    elif (directory / "tokenizer.json").is_file():
        tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(directory / "tokenizer.json"))
    elif vocab_size == 50258:  # mdlm-owt: GPT-2 plus a mask id 50257 (reference §5.4)
        try:
            tokenizer = AutoTokenizer.from_pretrained("gpt2", local_files_only=True)
        except Exception:
            warnings.warn(f"{directory} has no tokenizer files and GPT-2's tokenizer is not in the local HF "
                          "cache; the model loads with tokenizer=None, so samples are token ids only. Copy "
                          "GPT-2's tokenizer files into the directory, or cache them once with "
                          "transformers.AutoTokenizer.from_pretrained('gpt2') while online.", stacklevel=3)
            return None
    else:
        warnings.warn(f"{directory} has no tokenizer files; the model loads with tokenizer=None.", stacklevel=3)
        return None

    vocab = tokenizer.get_vocab()
    if tokenizer.mask_token_id is None:
        if MASK_TOKEN in vocab:
            tokenizer.mask_token = MASK_TOKEN
        elif len(tokenizer) == mask_id:  # GPT-2: the mask is the one id past the tokenizer's vocab
            tokenizer.add_special_tokens({"mask_token": MASK_TOKEN})
    if tokenizer.mask_token_id != mask_id:
        warnings.warn(f"the tokenizer's mask id ({tokenizer.mask_token_id}) differs from the model's "
                      f"({mask_id}); the model's is used.", stacklevel=3)
    return tokenizer


# ------------------------------------------------------------------ masked diffusion LLMs
# family -> (config.json model_type, architectures entry, native class); reference §1.1, §2.1
DIFFUSION_LLMS = {
    "llada": (LLADA_MODEL_TYPE, LLADA_ARCHITECTURE, LLaDAModelLM),
    "dream": (DREAM_MODEL_TYPE, DREAM_ARCHITECTURE, DreamModel),
}
# the end-of-turn token of each family's chat template (reference §3.1, §3.2)
END_OF_TURN = {"llada": "<|eot_id|>", "dream": "<|im_end|>"}


def diffusion_llm_family(config: dict) -> str | None:
    """"llada" or "dream" when config.json names one of them (model_type or architectures), else None."""
    model_type = str(config.get("model_type") or "").lower()
    architectures = config.get("architectures") or []
    for family, (mtype, arch, _) in DIFFUSION_LLMS.items():
        if model_type == mtype.lower() or arch in architectures:
            return family
    return None


def supported_architectures() -> str:
    llms = ", ".join(f"{m!r} ({a})" for m, a, _ in DIFFUSION_LLMS.values())
    return (f"'mdlm' (MDLM DiT), {llms}, or a Hugging Face masked LM (bert, roberta, modernbert, ...; "
            "with trust_remote_code=True also custom ones)")


def check_supported(directory: Path, config: dict, trust_remote_code: bool) -> None:
    """Raise a clear error for a config.json of an architecture no loader here handles (a causal LM,
    e.g. the shipped ``stories-judge``, is told to be a judge)."""
    from transformers.models.auto.modeling_auto import (MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
                                                        MODEL_FOR_MASKED_LM_MAPPING_NAMES)

    model_type = config.get("model_type")
    if model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        return
    if trust_remote_code and "AutoModelForMaskedLM" in (config.get("auto_map") or {}):
        return
    what = f"model_type={model_type!r}" if model_type else "no model_type"
    if model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise ValueError(f"{directory / CONFIG_NAME} is a causal (left-to-right) language model ({what}), not a "
                         f"masked diffusion model, so no sampler here can run it. It can score samples as a judge: "
                         f"explorer.judge.load_judge('{directory}') in Python, --judge {directory} on the command line.")
    archs = config.get("architectures")
    raise ValueError(f"{directory / CONFIG_NAME} describes an unsupported architecture ({what}"
                     f"{f', architectures={archs}' if archs else ''}). Supported: {supported_architectures()}. "
                     "Check that the directory holds the model you meant.")


def load_diffusion_llm_tokenizer(directory: Path, family: str) -> Any:
    """The tokenizer in the folder, without remote code; None (with a warning) when it has none.

    tokenizer.json is read as a fast tokenizer (LLaDA ships one, §3.1). Dream's own tokenizer
    class is remote code; its vocab.json + merges.txt are a Qwen2 BPE (§3.2), read as such.
    A tokenizer file that cannot be read is a ValueError naming the folder's tokenizer files (the
    tokenizers library names none).
    """
    try:
        return _read_tokenizer(directory, family)
    except Exception as e:  # noqa: BLE001 -- tokenizers raises a bare Exception ('EOF while parsing ...')
        files = ", ".join(p.name for p in sorted(directory.glob("*")) if p.name in TOKENIZER_FILES) or "none"
        raise ValueError(f"the tokenizer in {directory} cannot be read ({type(e).__name__}: "
                         f"{(str(e).splitlines() or [''])[0]}); its tokenizer files ({files}) are damaged or cut "
                         "short: copy or download them again.") from None


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt")


def _read_tokenizer(directory: Path, family: str) -> Any:
    if (directory / "tokenizer.json").is_file():
        from transformers import PreTrainedTokenizerFast

        return PreTrainedTokenizerFast.from_pretrained(str(directory), local_files_only=True)
    if family == "dream" and (directory / "vocab.json").is_file() and (directory / "merges.txt").is_file():
        from transformers import Qwen2TokenizerFast

        return Qwen2TokenizerFast.from_pretrained(str(directory), local_files_only=True)
    if (directory / "tokenizer_config.json").is_file():
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(directory), local_files_only=True, trust_remote_code=False)
    warnings.warn(f"{directory} has no tokenizer files; the model loads with tokenizer=None, so prompts must be "
                  "token ids and samples are ids only. Copy the model's tokenizer files into the directory.",
                  stacklevel=4)
    return None


def load_diffusion_llm(directory: Path, family: str, name: str, device=None,
                       dtype: torch.dtype | None = None) -> DiffusionLMDenoiser:
    """A LLaDA or Dream checkpoint directory as a variable-length denoiser (docs/CONTRACTS.md).

    mask, EOS and pad ids come from config.json; the end-of-turn id from the tokenizer (None
    without one, or when its vocabulary lacks the token, as LLaDA-Base's does, §3.1).
    """
    device, dtype = default_device_dtype(device, dtype)
    tokenizer = load_diffusion_llm_tokenizer(directory, family)    # first: a damaged one fails in a moment
    model = DIFFUSION_LLMS[family][2].from_pretrained(directory, device=device, dtype=dtype)
    c = model.config
    eot_id = None
    if tokenizer is not None:
        eot = tokenizer.convert_tokens_to_ids(END_OF_TURN[family])
        eot_id = eot if isinstance(eot, int) and eot != tokenizer.unk_token_id else None
        if tokenizer.mask_token_id is not None and tokenizer.mask_token_id != c.mask_token_id:
            warnings.warn(f"the tokenizer's mask id ({tokenizer.mask_token_id}) differs from config.json's "
                          f"mask_token_id ({c.mask_token_id}); the config's is used.", stacklevel=3)
    return DiffusionLMDenoiser(model, family=family, max_length=c.max_length, mask_id=c.mask_token_id,
                               eos_id=c.eos_token_id, pad_id=c.pad_token_id, eot_id=eot_id, tokenizer=tokenizer,
                               name=name, directory=directory)


def load_model(name_or_path: str | os.PathLike, device: str | torch.device | None = None,
               dtype: torch.dtype | None = None, trust_remote_code: bool = False,
               allow_download: bool = False, seq_len: int | None = None) -> Any:
    """Load a denoiser from a built-in name (``"orders-oracle"``, :mod:`explorer.models.registry`),
    a directory, a shipped name (``"stories"``) or a hub id.

    ``device`` defaults to CPU; ``dtype`` to float32 weights (the native DiT still runs its blocks
    under bf16 autocast on CUDA, like upstream); LLaDA and Dream default to bf16 on CUDA and
    float32 elsewhere, read memory-mapped straight into that dtype and device (an 8B model
    needs its own size in host memory, not twice). ``seq_len`` only applies to HF masked LMs
    (the DiT's length is its ``model_length``). ``trust_remote_code`` is passed to transformers
    explicitly and is never prompted for; the native DiT never needs it.
    """
    if device is not None:      # checked before any file is read: torch's own errors say neither what nor why
        device = check_device(device)
    dtype = check_dtype(dtype)
    builtin = BUILTIN_MODELS.get(str(name_or_path))
    if builtin is not None:
        return builtin.build().to(device or "cpu")
    directory, name = resolve_model_dir(name_or_path, allow_download=allow_download,
                                        trust_remote_code=trust_remote_code)
    config = read_config(directory)
    model_type = config.get("model_type")
    if model_type == "mdlm":
        model = MDLM.from_pretrained(directory, device=device, dtype=dtype)
        tokenizer = load_mdlm_tokenizer(directory, model.config.vocab_size, model.config.mask_id)
        denoiser = MDLMDenoiser(model, tokenizer=tokenizer, name=name, weights_path=weights_file(directory))
        # positions the model was always given in training (e.g. the orders template's anchor),
        # written by explorer.train into config.json; the engine keeps them fixed like a prompt
        fixed = config.get("fixed_tokens")
        if fixed:
            denoiser.fixed_tokens = {int(p): int(t) for p, t in fixed.items()}
        return denoiser
    family = diffusion_llm_family(config)
    if family is not None:
        return load_diffusion_llm(directory, family, name, device=device, dtype=dtype)
    check_supported(directory, config, trust_remote_code)
    return HFMaskedLMDenoiser.from_pretrained(directory, device=device, dtype=dtype, seq_len=seq_len,
                                              trust_remote_code=trust_remote_code, name=name)
