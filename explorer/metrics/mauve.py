"""MAUVE between generated and reference texts, on judge features (reference §3).

Features follow ``mauve-text``'s own featuriser: the judge's final hidden state (after the final
layer norm) at the last token of each text, texts retokenised by the judge's tokenizer and
truncated to ``max_text_length`` tokens with no BOS added. The score itself is computed by
``mauve.compute_mauve`` with the package defaults upstream used (``num_buckets='auto'`` = n/10
clusters, PCA to 90% variance, 5 k-means restarts of at most 500 iterations, scaling 5, seed 25).

**Noise.** MAUVE is a k-means estimate: across k-means seeds it moves by about 0.005-0.01
(standard deviation, krishnap25/mauve#11; reference §6) at 5000 vs 5000 texts, and more with fewer
texts. Treat differences below about 0.01-0.02 as noise; ``mauve_score(..., seeds=[...])``
reports the spread across seeds.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ._judge import DEFAULT_JUDGE, resolve_judge
from .perplexity import retokenize

#: file name of precomputed reference features, stored next to the judge's weights
REFERENCE_FEATURES = "mauve_reference_features.npy"


@torch.no_grad()
def judge_features(texts: Sequence[str], judge: Any = None, batch_size: int = 8,
                   device: Any = None, max_text_length: int = 1024,
                   progress: bool = False) -> np.ndarray:
    """``float32[N, D]``: the judge's last-layer hidden state at the last token of each text."""
    j = resolve_judge(judge, device)
    max_len = min(int(max_text_length), j.context)
    ids = retokenize(texts, j.tokenizer, max_len)
    if any(len(x) == 0 for x in ids):
        raise ValueError("an empty text has no features; drop empty texts before MAUVE.")
    feats: list[np.ndarray | None] = [None] * len(ids)
    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if progress:
        from tqdm.auto import tqdm
        batches = tqdm(batches, desc="MAUVE features", leave=False)
    pad = j.tokenizer.pad_token_id if j.tokenizer.pad_token_id is not None else 0
    for batch in batches:
        lens = torch.tensor([len(ids[i]) for i in batch])
        x = torch.full((len(batch), int(lens.max())), pad, dtype=torch.long)
        for r, i in enumerate(batch):
            x[r, :len(ids[i])] = torch.tensor(ids[i])
        attn = (torch.arange(x.shape[1]).unsqueeze(0) < lens.unsqueeze(1)).long()
        out = j.model(input_ids=x.to(j.device), attention_mask=attn.to(j.device),
                      output_hidden_states=True)
        last = out.hidden_states[-1][torch.arange(len(batch)), lens - 1].float().cpu().numpy()
        for r, i in enumerate(batch):
            feats[i] = last[r]
    return np.stack(feats).astype(np.float32)


def judge_dir(judge: Any) -> Path | None:
    """The directory a judge was loaded from, when it has one (shipped name, path, loaded judge)."""
    if judge is None:
        return DEFAULT_JUDGE
    if isinstance(judge, (str, Path)):
        for cand in (Path(judge), DEFAULT_JUDGE.parent / str(judge)):
            if cand.is_dir():
                return cand
        return None
    path = getattr(judge, "path", None)
    return Path(path) if path else None


def reference_features(judge: Any = None, texts: Sequence[str] | None = None, *,
                       path: str | Path | None = None, save: bool = False, **kw) -> np.ndarray:
    """Reference (human-text) features for MAUVE.

    With ``texts``, featurise them (and write them to ``path`` when ``save``). Without, read the
    precomputed ``mauve_reference_features.npy`` shipped next to the judge (``path`` overrides).
    """
    if path is None:
        base = judge_dir(judge)
        path = None if base is None else base / REFERENCE_FEATURES
    if texts is None:
        if path is None or not Path(path).exists():
            raise FileNotFoundError(
                f"no precomputed reference features at {path}; pass reference texts "
                "(e.g. explorer.tasks.stories.heldout_texts(n)) instead.")
        return np.load(path)
    feats = judge_features(texts, judge, **kw)
    if save:
        if path is None:
            raise ValueError("save=True needs a path when the judge is an in-memory model.")
        tmp = Path(path).with_name(Path(path).name + ".tmp.npy")
        np.save(tmp, feats)
        tmp.replace(path)
    return feats


def read_references(path: str | Path) -> np.ndarray | list[str]:
    """MAUVE references from a file, checked before any work: a ``.npy`` of judge features
    (``float[N, D]``, N and D at least 1, read without pickle) or a UTF-8 text file with one
    reference per line (blank lines skipped, at least one left). Raises ``ValueError`` saying what
    the file holds instead."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is not a file")
    if path.stat().st_size == 0:
        raise ValueError(f"{path} is empty")
    if path.suffix.lower() == ".npy":
        with open(path, "rb") as f:
            if f.read(6) != b"\x93NUMPY":
                raise ValueError(f"{path} is not a .npy file (it has no numpy header)")
        try:
            feats = np.load(path, allow_pickle=False)
        except OSError as e:
            raise ValueError(f"{path} cannot be read as a numpy array ({e})") from None
        except ValueError:   # numpy: object arrays need pickle, which a reference file never needs
            raise ValueError(f"{path} holds Python objects (pickled), not an array of numbers") from None
        if not isinstance(feats, np.ndarray) or feats.ndim != 2 or 0 in feats.shape:
            raise ValueError(f"{path} holds an array of shape {getattr(feats, 'shape', '?')}, not features [N, D]")
        if not np.issubdtype(feats.dtype, np.floating):
            raise ValueError(f"{path} holds {feats.dtype} numbers, not float features")
        if not np.isfinite(feats).all():
            raise ValueError(f"{path} holds NaN or infinite features")
        return feats
    try:
        texts = [t for t in path.read_text(encoding="utf-8").splitlines() if t.strip()]
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not UTF-8 text") from None
    if not texts:
        raise ValueError(f"{path} has no text, only blank lines")
    return texts


def build_stories_reference(n: int = 1000, judge: Any = None, seed: int = 0, **kw) -> Path:
    """Featurise ``n`` held-out stories (``explorer.tasks.stories.heldout_texts``) with the judge and
    save them as ``mauve_reference_features.npy`` next to it; returns the path.

    MAUVE compares like with like: use as many references as you will have samples (its cluster
    count is n/10 of the smaller side).
    """
    from explorer.tasks import stories

    base = judge_dir(judge)
    if base is None:
        raise ValueError("the judge has no directory to store reference features next to; pass a path.")
    path = base / REFERENCE_FEATURES
    reference_features(judge, stories.heldout_texts(n, seed=seed), path=path, save=True, **kw)
    return path


@dataclass
class MauveResult:
    """``value`` is MAUVE (mean over k-means seeds); ``spread`` its std across seeds (NaN for one)."""
    value: float
    spread: float
    per_seed: list
    num_buckets: int
    n_p: int
    n_q: int

    def __float__(self) -> float:
        return float(self.value)


def _as_features(x, judge, device, batch_size, max_text_length) -> np.ndarray:
    if isinstance(x, np.ndarray) or torch.is_tensor(x):
        arr = np.asarray(x.cpu() if torch.is_tensor(x) else x, dtype=np.float32)
        if arr.ndim != 2:
            raise ValueError(f"features must be [N, D], got shape {arr.shape}.")
        return arr
    return judge_features(list(x), judge, batch_size=batch_size, device=device,
                          max_text_length=max_text_length)


def mauve_score(p, q, judge: Any = None, *, device: Any = None, batch_size: int = 8,
                max_text_length: int = 1024, num_buckets: Any = "auto", seeds: Sequence[int] = (25,),
                kmeans_num_redo: int = 5, kmeans_max_iter: int = 500, **mauve_kw) -> MauveResult:
    """MAUVE of generated ``q`` against human references ``p`` (each texts or ``[N, D]`` features).

    The order is ``mauve-text``'s: ``p`` the references, ``q`` the model's samples.
    ``p=None`` uses the reference features shipped next to the judge. Upstream's call is
    ``compute_mauve(p_text=references, q_text=samples, max_text_length=1024)`` with gpt2-large
    features; pass ``judge="gpt2-large"`` for that. The score's noise across k-means seeds is about
    0.005-0.01 (reference §6); pass several ``seeds`` to measure it on your data.
    """
    import mauve

    qf = _as_features(q, judge, device, batch_size, max_text_length)
    pf = reference_features(judge) if p is None else _as_features(p, judge, device, batch_size, max_text_length)
    if qf.shape[1] != pf.shape[1]:
        raise ValueError(f"feature sizes differ: samples {qf.shape[1]}, references {pf.shape[1]} "
                         "(were the references featurised by another judge?).")
    scores, buckets = [], None
    for seed in seeds:
        out = mauve.compute_mauve(p_features=pf, q_features=qf, num_buckets=num_buckets, seed=int(seed),
                                  kmeans_num_redo=kmeans_num_redo, kmeans_max_iter=kmeans_max_iter,
                                  verbose=False, **mauve_kw)
        scores.append(float(out.mauve))
        buckets = int(out.num_buckets)
    spread = float(np.std(scores, ddof=1)) if len(scores) > 1 else float("nan")
    return MauveResult(value=float(np.mean(scores)), spread=spread, per_seed=scores,
                       num_buckets=buckets, n_p=len(pf), n_q=len(qf))
