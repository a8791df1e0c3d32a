"""Small helpers that keep notebook cells to one or two calls, and never fail silently."""
from __future__ import annotations

import torch


def hf_tokenizer(tok, **special):
    """A raw ``tokenizers.Tokenizer`` as the ``transformers`` tokenizer every reader of a prompt
    calls (``tokenizer(text)["input_ids"]``, ``decode``), with its special tokens named."""
    from transformers import PreTrainedTokenizerFast
    return PreTrainedTokenizerFast(tokenizer_object=tok, **special)


def _standin(name: str):
    """A context-free StubDenoiser with the task's vocabulary and per-position token frequencies:
    it writes well-formed text but knows no rule linking the fields."""
    from explorer.protocol import StubDenoiser
    if name == "orders":
        from explorer.tasks import orders
        ids = orders.eval_tensor(2000)
        probs = torch.full((orders.SEQ_LEN, orders.VOCAB_SIZE), 1e-3)
        probs.scatter_add_(1, ids.T.contiguous(), torch.ones(ids.T.shape))
        probs[:, orders.MASK_ID] = 0
        tok = hf_tokenizer(orders.build_tokenizer(), unk_token=orders.UNK, mask_token=orders.MASK)
        return StubDenoiser(probs, tokenizer=tok)
    if name == "stories":
        from explorer.tasks import stories
        from explorer.models.loading import shipped_model_dirs
        tok = None
        for d in shipped_model_dirs():
            if (d / "stories" / "tokenizer.json").is_file():
                from tokenizers import Tokenizer
                tok = hf_tokenizer(Tokenizer.from_file(str(d / "stories" / "tokenizer.json")),
                                   eos_token=stories.EOT, pad_token=stories.EOT, mask_token=stories.MASK)
                break
        g = torch.Generator().manual_seed(0)
        probs = torch.rand(stories.SEQ_LEN, stories.VOCAB_SIZE, generator=g) ** 8
        probs[:, stories.MASK_ID] = 0
        return StubDenoiser(probs, tokenizer=tok)
    raise ValueError(f"no stand-in for {name!r}")


def notebook_model(name: str, allow_standin: bool = True, **kwargs):
    """``explorer.load_model(name)``; if that shipped model is missing and ``allow_standin``,
    say so loudly and return an untrained, context-free stand-in with the same vocabulary so the
    notebook still runs (its pictures then show the mechanics, not a trained model's skill)."""
    import explorer
    try:
        model = explorer.load_model(name, **kwargs)
    except (FileNotFoundError, ValueError, OSError) as exc:
        if not allow_standin or name not in ("orders", "stories"):
            raise
        print(f"NOTE: the shipped model {name!r} could not be loaded ({exc}).\n"
              f"      Using an UNTRAINED context-free stand-in with the {name} vocabulary instead:\n"
              "      the views work the same, but the samples and quality numbers mean nothing.\n"
              f"      Train or install data/models/{name} (see the README) and re-run.")
        return _standin(name)
    print(f"loaded {name!r}: {getattr(model, 'identity', {}).get('name', type(model).__name__)}, "
          f"L={model.seq_len}, vocabulary {model.vocab_size}"
          + (f", fixed tokens {dict(sorted(model.fixed_tokens.items()))}" if getattr(model, "fixed_tokens", None) else ""))
    return model


def gpu_checkpoint_ready(run: str | bool, checkpoint: str, allow_download: bool) -> bool:
    """Whether the GPU/hub cells of a notebook should run, printing why not when they will not.

    ``run``: ``True`` (run, fail loudly if impossible), ``False`` (skip) or ``"auto"`` (run only
    when a CUDA GPU is present and the checkpoint is on disk or may be downloaded).
    """
    if run is False:
        print("SKIPPED: RUN_REAL_CHECKPOINT=False. Set it to True or 'auto' on a machine with a GPU.")
        return False
    has_gpu = torch.cuda.is_available()
    have_ckpt = allow_download
    if not have_ckpt:
        try:
            from explorer.models.loading import resolve_model_dir
            resolve_model_dir(checkpoint, allow_download=False)
            have_ckpt = True
        except Exception:
            have_ckpt = False
    reasons = []
    if not has_gpu:
        reasons.append("no CUDA GPU is available")
    if not have_ckpt:
        reasons.append(f"{checkpoint!r} is not on disk and ALLOW_DOWNLOAD=False")
    if reasons:
        msg = "; ".join(reasons)
        if run is True:
            raise RuntimeError(f"RUN_REAL_CHECKPOINT=True but {msg}.")
        print(f"SKIPPED the real-checkpoint cells: {msg}. (Set ALLOW_DOWNLOAD=True and run on a GPU.)")
        return False
    print(f"running {checkpoint} on {torch.cuda.get_device_name(0)}")
    return True
