"""Tiny random LLaDA- and Dream-format checkpoints, written in the published layouts.

For tests, benchmarks and notebooks without the real 16 GB weights: :func:`write_random_checkpoint`
writes what the hub repos hold (reference §1.1-1.2, §2.1-2.2, §3):

* ``config.json`` with each family's keys, ``model_type`` and ``architectures``;
* ``model-0000i-of-0000n.safetensors`` shards and ``model.safetensors.index.json`` (or one
  ``model.safetensors`` when ``num_shards=1``), with the published state-dict keys;
* with ``with_tokenizer``, a small byte-level BPE tokenizer (256 byte ids, no merges, then the
  family's special tokens) saved as ``tokenizer.json`` + ``tokenizer_config.json`` with a chat
  template in the family's style (§3.1 Llama-3 headers for LLaDA, §3.2 ChatML with the default
  system turn for Dream); the config's mask, EOS and pad ids point at its special tokens.

The weights are random, so the text a model writes is meaningless.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

import torch

from ..io import atomic_write_many
from .checkpoint import CONFIG_NAME, INDEX_NAME, WEIGHTS_NAME
from .dream import DreamConfig, DreamModel
from .llada import LLaDAConfig, LLaDAModelLM

FAMILIES = ("llada", "dream")

# Special tokens, in id order after the 256 byte ids (reference §3.1, §3.2).
LLADA_SPECIAL = ["<|startoftext|>", "<|endoftext|>", "<|mdm_mask|>", "<|start_header_id|>",
                 "<|end_header_id|>", "<|eot_id|>"]
DREAM_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|mask|>"]

# Llama-3 style (§3.1): BOS, then per turn a role header, a blank line, the content and <|eot_id|>;
# the generation prompt ends with the assistant header.
LLADA_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n{{ message['content'] }}<|eot_id|>"
    "{% endfor %}{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
# Qwen2.5 ChatML (§3.2): a default system turn when none is given.
DREAM_CHAT_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

NUM_BYTE_IDS = 256
TINY_LLADA = dict(d_model=32, n_heads=4, n_kv_heads=4, n_layers=2, mlp_hidden_size=48, max_sequence_length=4096)
TINY_DREAM = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2)


def special_ids(family: str) -> dict[str, int]:
    """{token: id} of the tiny tokenizer's special tokens (after the 256 byte ids)."""
    tokens = LLADA_SPECIAL if family == "llada" else DREAM_SPECIAL
    return {tok: NUM_BYTE_IDS + i for i, tok in enumerate(tokens)}


def tiny_config(family: str, **overrides) -> LLaDAConfig | DreamConfig:
    """A small config of ``family`` whose special ids are the tiny tokenizer's; ``overrides`` win."""
    _check_family(family)
    ids = special_ids(family)
    vocab = NUM_BYTE_IDS + len(ids) + 2   # two unused rows, like the published vocabularies' padding
    if family == "llada":
        base = dict(TINY_LLADA, vocab_size=vocab, embedding_size=vocab, mask_token_id=ids["<|mdm_mask|>"],
                    eos_token_id=ids["<|endoftext|>"], pad_token_id=ids["<|endoftext|>"])
        if "vocab_size" in overrides and "embedding_size" not in overrides:
            base["embedding_size"] = overrides["vocab_size"]
        return LLaDAConfig(**{**base, **overrides}).validate()
    eos = ids["<|endoftext|>"]
    base = dict(TINY_DREAM, vocab_size=vocab, mask_token_id=ids["<|mask|>"], bos_token_id=eos, eos_token_id=eos,
                pad_token_id=eos)
    return DreamConfig(**{**base, **overrides}).validate()


def random_model(config: LLaDAConfig | DreamConfig, seed: int = 0, std: float = 0.2):
    """A model of ``config`` with every weight random (norm weights near 1), reproducible from ``seed``."""
    cls = LLaDAModelLM if isinstance(config, LLaDAConfig) else DreamModel
    model = cls(config)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            noise = torch.randn(p.shape, generator=g)
            p.copy_(1.0 + 0.1 * noise if name.endswith("norm.weight") or name.endswith("ln_f.weight")
                    else std * noise)
    return model.eval()


def write_random_checkpoint(directory: str | os.PathLike, family: str, *, num_shards: int = 2, seed: int = 0,
                            with_tokenizer: bool = True, dtype: torch.dtype = torch.float32,
                            **config_overrides) -> Path:
    """Write a tiny random ``family`` ("llada" or "dream") checkpoint in the published layout.

    ``config_overrides`` are config.json keys of the family (e.g. ``n_layers=3`` for LLaDA,
    ``num_key_value_heads=1`` for Dream). Every file is written atomically. Returns ``directory``.
    """
    _check_family(family)
    if not isinstance(num_shards, int) or num_shards < 1:
        raise ValueError(f"num_shards must be a positive integer, got {num_shards!r}.")
    config = tiny_config(family, **config_overrides)
    model = random_model(config, seed=seed)
    tensors = {k: v.detach().to(dtype).contiguous() for k, v in model.state_dict().items()}
    if num_shards > len(tensors):
        raise ValueError(f"num_shards={num_shards} is more than the {len(tensors)} tensors of this config.")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)

    config_dict = {**config.to_dict(), "torch_dtype": str(dtype).removeprefix("torch.")}
    writers: list[tuple[Path, Callable[[str], None]]] = [
        (directory / CONFIG_NAME, _text_writer(json.dumps(config_dict, indent=2) + "\n"))]
    writers += _weight_writers(directory, tensors, num_shards)
    if with_tokenizer:
        writers += _tokenizer_writers(directory, family)
    atomic_write_many(writers)
    return directory


# ----------------------------------------------------------------------------------- weights

def _weight_writers(directory: Path, tensors: dict[str, torch.Tensor], num_shards: int):
    from safetensors.torch import save_file

    names = list(tensors)
    if num_shards == 1:
        return [(directory / WEIGHTS_NAME,
                 lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))]
    bounds = [round(i * len(names) / num_shards) for i in range(num_shards + 1)]
    writers, weight_map = [], {}
    for i in range(num_shards):
        shard = f"model-{i + 1:05d}-of-{num_shards:05d}.safetensors"
        part = {n: tensors[n] for n in names[bounds[i]:bounds[i + 1]]}
        weight_map.update({n: shard for n in part})
        writers.append((directory / shard, lambda tmp, part=part: save_file(part, tmp, metadata={"format": "pt"})))
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    writers.append((directory / INDEX_NAME, _text_writer(json.dumps(index, indent=2) + "\n")))
    return writers


# --------------------------------------------------------------------------------- tokenizer

def build_tokenizer(family: str):
    """The tiny byte-level ``tokenizers.Tokenizer`` of ``family`` and its tokenizer_config.json dict."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

    _check_family(family)
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    assert len(alphabet) == NUM_BYTE_IDS
    tok = Tokenizer(models.BPE(vocab={ch: i for i, ch in enumerate(alphabet)}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    ids = special_ids(family)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in ids])
    if family == "llada":  # a Llama-3 style tokenizer puts BOS in front of plain text
        bos = "<|startoftext|>"
        tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A $B",
                                                           special_tokens=[(bos, ids[bos])])
        special = dict(bos_token=bos, eos_token="<|endoftext|>", pad_token="<|endoftext|>",
                       mask_token="<|mdm_mask|>")
        template = LLADA_CHAT_TEMPLATE
    else:
        special = dict(bos_token=None, eos_token="<|endoftext|>", pad_token="<|endoftext|>", mask_token="<|mask|>")
        template = DREAM_CHAT_TEMPLATE
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        **special,
        "chat_template": template,
        "model_max_length": 4096 if family == "llada" else 2048,
        "clean_up_tokenization_spaces": False,
        "added_tokens_decoder": {str(i): {"content": t, "lstrip": False, "normalized": False, "rstrip": False,
                                          "single_word": False, "special": True} for t, i in ids.items()},
    }
    return tok, config


def _tokenizer_writers(directory: Path, family: str) -> list:
    """tokenizer.json, tokenizer_config.json (with the chat template) and special_tokens_map.json."""
    tok, config = build_tokenizer(family)
    special_map = {k: config[k] for k in ("bos_token", "eos_token", "pad_token", "mask_token") if config.get(k)}
    return [(directory / "tokenizer.json", _text_writer(tok.to_str(pretty=True))),
            (directory / "tokenizer_config.json", _text_writer(json.dumps(config, indent=2) + "\n")),
            (directory / "special_tokens_map.json", _text_writer(json.dumps(special_map, indent=2) + "\n"))]


# ------------------------------------------------------------------------------------ helpers

def _text_writer(text: str) -> Callable[[str], None]:
    return lambda tmp: Path(tmp).write_text(text, encoding="utf-8")


def _check_family(family: str) -> None:
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {', '.join(FAMILIES)}, got {family!r}.")
