"""The stories task: TinyStories text, its BPE tokenizer, a held-out split and training blocks.

The corpus is read offline from ``<repo>/../shared/corpus`` (or ``$EXPLORER_CORPUS_DIR``) and is
never shipped; only the derived tokenizer and weights are (``data/models/stories/``).

* Text: the four TinyStories pieces in ``tinystories/`` (see its SOURCE.md), split into stories.
  Everything is lower-cased because one of the four files is lower-case only; curly quotes become
  straight ones and every paragraph break becomes a single newline. These rules live in the
  tokenizer's normalizer, so any text (a model sample, a prompt) is normalised the same way.
* Held-out split: a story is held out when the SHA-1 of its normalised text falls in the lowest
  5 % (:data:`HELDOUT_PER_MILLE`). Identical stories share a hash, so they never straddle the split.
* Tokenizer: byte-level BPE (GPT-2 style, so every string encodes and decodes to readable text),
  4096 ids: ``<|endoftext|>`` is id 0 and separates (and pads) stories; ``[MASK]`` is the last id,
  ``mask_id = vocab_size - 1`` as in ``kuleshov-group/mdlm-owt``.
* Blocks: stories are concatenated, each followed by ``<|endoftext|>``, and cut into
  :data:`SEQ_LEN`-token blocks (the MDLM OpenWebText recipe without the BOS/EOS wrap).

The task interface used by ``explorer.train``: :func:`build_tokenizer`, :data:`SEQ_LEN`,
:func:`batches`, :func:`eval_tensor`; plus :func:`heldout_texts` for reference texts.
"""
from __future__ import annotations

import hashlib
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

NAME = "stories"
SEQ_LEN = 128
VOCAB_SIZE = 4096
EOT = "<|endoftext|>"
MASK = "[MASK]"
EOT_ID = 0
MASK_ID = VOCAB_SIZE - 1
HELDOUT_PER_MILLE = 50  # 5 % of stories

DATA_DESCRIPTION = (
    "TinyStories (Eldan & Li 2023, CDLA-Sharing-1.0): the four offline pieces in "
    "`../shared/corpus/tinystories/` (~8k stories, ~1.57M tokens), lower-cased and normalised; "
    "the 5 % of stories whose SHA-1 falls lowest are held out (`explorer/tasks/stories.py`); "
    "stories joined with `<|endoftext|>` and cut into 128-token blocks"
)

REPO_ROOT = Path(__file__).resolve().parents[2]
SHIPPED_DIR = REPO_ROOT / "data" / "models" / "stories"
TOKENIZER_PATH = SHIPPED_DIR / "tokenizer.json"
CACHE_DIR = REPO_ROOT / "runs" / "cache"

TINYSTORIES_FILES = (
    "ts_v1_train_head_smallGPT.txt",
    "ts_v1_train_lowercase_continuation_Transformer-Parallelism.txt",
    "ts_v1_valid_head_moe-routing-bench.txt",
    "ts_v2gpt4_train_head_decoding-gpt.txt",
)


# ----------------------------------------------------------------------------- corpus


def writes_stories(model) -> bool:
    """Whether ``model`` writes this task's sequences: a canvas of SEQ_LEN tokens over this
    vocabulary (the shipped ``stories`` model does), as :func:`explorer.tasks.orders.writes_records`
    tells an orders model. The judge's metrics and the strategy lab ask this, not the model's name."""
    return (getattr(model, "seq_len", None), getattr(model, "vocab_size", None)) == (SEQ_LEN, VOCAB_SIZE)


def corpus_dir() -> Path:
    """The offline corpus root: ``$EXPLORER_CORPUS_DIR``, else ``<repo>/../shared/corpus``."""
    env = os.environ.get("EXPLORER_CORPUS_DIR")
    if env:     # asked for: that folder or an error, never a silent fallback to another corpus
        root = Path(env)
        if (root / "tinystories").is_dir() or (root / TINYSTORIES_FILES[0]).is_file():
            return root
        raise FileNotFoundError(f"EXPLORER_CORPUS_DIR={env} holds no TinyStories corpus (no tinystories/ folder in "
                                "it); point it at the folder that holds tinystories/, or unset it to use "
                                f"{REPO_ROOT.parent / 'shared' / 'corpus'}.")
    candidates = [REPO_ROOT.parent / "shared" / "corpus", Path("/work/shared/corpus")]
    for root in candidates:
        if (root / "tinystories").is_dir() or (root / TINYSTORIES_FILES[0]).is_file():
            return root
    raise FileNotFoundError(
        "The TinyStories corpus was not found (looked in "
        + ", ".join(str(c) for c in candidates)
        + "). Set EXPLORER_CORPUS_DIR to the folder that holds tinystories/. "
        "Only training needs it; the shipped model and tokenizer do not."
    )


def _tinystories_dir() -> Path:
    root = corpus_dir()
    return root / "tinystories" if (root / "tinystories").is_dir() else root


def split_stories(name: str, text: str) -> list[str]:
    """Cut one TinyStories file into stories, following the formats described in its SOURCE.md."""
    if EOT in text:  # v2: stories separated by <|endoftext|> lines
        parts = text.split(EOT)
    elif "valid" in name:
        # v1 valid: stories and paragraphs are both separated by blank lines, so the boundaries
        # are not recoverable; start a new story at each "once upon a time" paragraph (most
        # stories open that way; the rest stay attached to the story before them).
        parts = re.split(r"\n\s*\n(?=once upon a time)", text, flags=re.IGNORECASE)
    else:  # v1 train: paragraphs separated by a blank line, stories by a single newline
        parts = re.split(r"(?<=[^\n])\n(?=[^\n])", text)
    return [p.strip() for p in parts if p.strip()]


def _normalise(text: str) -> str:
    """The tokenizer's normalisation in plain Python (used to hash and deduplicate stories)."""
    return normalizer().normalize_str(text)


@lru_cache(maxsize=1)
def load_stories() -> tuple[str, ...]:
    """All distinct TinyStories stories, normalised, in file order."""
    seen: set[str] = set()
    out: list[str] = []
    folder = _tinystories_dir()
    for name in TINYSTORIES_FILES:
        text = (folder / name).read_text(encoding="utf-8")
        for story in split_stories(name, text):
            story = _normalise(story).strip()
            if len(story) >= 20 and story not in seen:
                seen.add(story)
                out.append(story)
    return tuple(out)


def is_heldout(story: str) -> bool:
    """Deterministic 5 % split by the SHA-1 of the (normalised) story text."""
    h = int.from_bytes(hashlib.sha1(story.encode("utf-8")).digest()[:8], "big")
    return h % 1000 < HELDOUT_PER_MILLE


def partition(stories: Sequence[str]) -> dict[str, list[str]]:
    """``{"train": [...], "heldout": [...]}``; order within each split follows ``stories``."""
    parts: dict[str, list[str]] = {"train": [], "heldout": []}
    for s in stories:
        parts["heldout" if is_heldout(s) else "train"].append(s)
    return parts


# ----------------------------------------------------------------------------- tokenizer


def normalizer() -> normalizers.Normalizer:
    # TinyStories v1 carries UTF-8 read as cp1252 ("â€œ" for an opening quote): repair it first,
    # before NFKC turns the "™" of "â€™" into "TM".
    mojibake = [("â€œ", '"'), ("â€\x9d", '"'), ("â€™", "'"), ("â€˜", "'"), ("â€¦", "..."),
                ("â€”", " - "), ("â€“", " - "), ("â€", '"')]
    return normalizers.Sequence(
        [normalizers.Replace(bad, good) for bad, good in mojibake]
        + [
            normalizers.NFKC(),
            normalizers.Replace(Regex("[\u201c\u201d\u201e\u00ab\u00bb]"), '"'),
            normalizers.Replace(Regex("[\u2018\u2019\u201a`]"), "'"),
            normalizers.Replace(Regex("[\u2013\u2014]"), " - "),
            normalizers.Replace(Regex("[ \t]+\n"), "\n"),
            normalizers.Replace(Regex("\n\\s*\n"), "\n"),  # one newline per paragraph break
            normalizers.Replace(Regex("  +"), " "),
            normalizers.Lowercase(),
        ]
    )


def train_tokenizer(stories: Sequence[str], vocab_size: int = VOCAB_SIZE) -> Tokenizer:
    """Byte-level BPE on ``stories``: ``<|endoftext|>`` = 0, ..., ``[MASK]`` = vocab_size - 1."""
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizer()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - 1,  # the last id is added below as [MASK]
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(stories, trainer=trainer)
    tok.add_special_tokens([MASK])
    if tok.token_to_id(EOT) != EOT_ID or tok.token_to_id(MASK) != vocab_size - 1:
        raise RuntimeError(
            f"unexpected special ids: {EOT}={tok.token_to_id(EOT)}, {MASK}={tok.token_to_id(MASK)}, "
            f"vocab={tok.get_vocab_size()}; the corpus may be too small for {vocab_size} ids"
        )
    return tok


def build_tokenizer(retrain: bool = False) -> Tokenizer:
    """The stories tokenizer: the shipped ``tokenizer.json``, or trained on the train split.

    Training reads only the train split so the held-out stories stay unseen.
    """
    if TOKENIZER_PATH.is_file() and not retrain:
        return Tokenizer.from_file(str(TOKENIZER_PATH))
    tok = train_tokenizer(partition(load_stories())["train"])
    TOKENIZER_PATH.parent.mkdir(parents=True, exist_ok=True)
    tok.save(str(TOKENIZER_PATH))
    return tok


# ----------------------------------------------------------------------------- token streams


def tokenize_stories(tok: Tokenizer, stories: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Flat ids (each story followed by EOT) and the start offset of every story (+ the end)."""
    encs = tok.encode_batch(list(stories), add_special_tokens=False)
    lengths = np.array([len(e.ids) + 1 for e in encs], dtype=np.int64)
    offsets = np.zeros(len(encs) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.empty(int(offsets[-1]), dtype=np.int32)
    for e, start, end in zip(encs, offsets[:-1], offsets[1:]):
        flat[start : end - 1] = e.ids
        flat[end - 1] = EOT_ID
    return flat, offsets


def _cache_key(tok: Tokenizer) -> str:
    h = hashlib.sha256(tok.to_str().encode())
    folder = _tinystories_dir()
    for name in TINYSTORIES_FILES:
        st = (folder / name).stat()
        h.update(f"{name}:{st.st_size}:{HELDOUT_PER_MILLE}:v1".encode())
    return h.hexdigest()[:16]


@lru_cache(maxsize=2)
def _split_tokens(split: str) -> tuple[np.ndarray, np.ndarray]:
    """Token stream of one split, cached under ``runs/cache`` (git-ignored)."""
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', not {split!r}")
    tok = build_tokenizer()
    path = CACHE_DIR / f"stories-{_cache_key(tok)}.npz"
    if path.is_file():
        data = np.load(path)
        return data[f"{split}_ids"], data[f"{split}_offsets"]
    parts = partition(load_stories())
    arrays = {}
    for name, stories in parts.items():
        arrays[f"{name}_ids"], arrays[f"{name}_offsets"] = tokenize_stories(tok, stories)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)
    return arrays[f"{split}_ids"], arrays[f"{split}_offsets"]


def _blocks(flat: np.ndarray, offsets: np.ndarray, order: np.ndarray, seq_len: int) -> np.ndarray:
    """Concatenate the stories in ``order`` and cut the stream into ``[n, seq_len]`` blocks."""
    stream = np.concatenate([flat[offsets[i] : offsets[i + 1]] for i in order])
    n = len(stream) // seq_len
    return stream[: n * seq_len].reshape(n, seq_len)


def block_batches(
    flat: np.ndarray, offsets: np.ndarray, batch_size: int, seed: int, seq_len: int = SEQ_LEN
) -> Iterator[torch.Tensor]:
    """Endless ``LongTensor[batch_size, seq_len]``: each epoch reshuffles the stories and blocks."""
    epoch = 0
    n_stories = len(offsets) - 1
    while True:
        rng = np.random.default_rng([seed, epoch])
        blocks = _blocks(flat, offsets, rng.permutation(n_stories), seq_len)
        blocks = blocks[rng.permutation(len(blocks))]
        if len(blocks) < batch_size:
            raise ValueError(f"only {len(blocks)} blocks of {seq_len} tokens; batch_size={batch_size}")
        for i in range(0, len(blocks) - batch_size + 1, batch_size):
            yield torch.from_numpy(blocks[i : i + batch_size].astype(np.int64))
        epoch += 1


def batches(split: str, batch_size: int, seed: int = 0) -> Iterator[torch.Tensor]:
    """Endless training blocks ``LongTensor[batch_size, SEQ_LEN]`` from ``split`` ('train' or 'heldout')."""
    flat, offsets = _split_tokens(split)
    return block_batches(flat, offsets, batch_size, seed)


def heldout_blocks(flat: np.ndarray, offsets: np.ndarray, n: int, seed: int, seq_len: int = SEQ_LEN) -> torch.Tensor:
    """``n`` blocks of the held-out stream (stories in corpus order): distinct blocks first, in a
    seeded order; past that, windows at seeded random offsets."""
    blocks = _blocks(flat, offsets, np.arange(len(offsets) - 1), seq_len)
    rng = np.random.default_rng(seed)
    rows = blocks[rng.permutation(len(blocks))[:n]]
    if n > len(rows):
        stream = blocks.reshape(-1)
        starts = rng.integers(0, len(stream) - seq_len + 1, size=n - len(rows))
        rows = np.concatenate([rows, np.stack([stream[s : s + seq_len] for s in starts])])
    return torch.from_numpy(rows.astype(np.int64))


def eval_tensor(n: int, seed: int = 0) -> torch.Tensor:
    """``LongTensor[n, SEQ_LEN]`` of held-out blocks (deterministic for a given ``seed``)."""
    flat, offsets = _split_tokens("heldout")
    return heldout_blocks(flat, offsets, n, seed)


def num_heldout_blocks() -> int:
    """How many distinct ``SEQ_LEN`` blocks the held-out split has (``eval_tensor`` of that many = all)."""
    return len(_split_tokens("heldout")[0]) // SEQ_LEN


def heldout_texts(n: int, seed: int = 0, skip_special_tokens: bool = False) -> list[str]:
    """Decoded held-out blocks: the human reference texts for MAUVE and judge perplexity.

    Same length in tokens as a model sample, and ``<|endoftext|>`` is kept by default, as in
    the reference protocol (remdm-reference §3: references are decoded with special tokens).
    """
    tok = build_tokenizer()
    return tok.decode_batch(eval_tensor(n, seed).tolist(), skip_special_tokens=skip_special_tokens)


def stats() -> dict:
    """Sizes of the corpus and splits (for model cards)."""
    out = {}
    for split in ("train", "heldout"):
        flat, offsets = _split_tokens(split)
        out[split] = {"stories": len(offsets) - 1, "tokens": int(len(flat)), "blocks": len(flat) // SEQ_LEN}
    return out

