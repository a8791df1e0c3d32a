"""The causal judge: a tiny training run lowers the loss, resumes, exports and loads offline."""
from __future__ import annotations

import itertools

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from explorer import judge
from explorer.tasks import stories


def tiny_config():
    return judge.judge_config(n_layer=1, n_embd=32, n_head=2, n_positions=64)


def fixed_batches(tok, batch_size=4, seq_len=32):
    text = "once upon a time, there was a little cat. the cat liked to play in the sun. "
    ids = tok.encode(text * 8).ids[:seq_len]
    return itertools.repeat(torch.tensor([ids] * batch_size))


def test_training_lowers_loss_and_resumes(tmp_path):
    torch.manual_seed(0)
    tok = stories.build_tokenizer()
    evals = next(fixed_batches(tok))
    kw = dict(batch_size=4, lr=3e-3, warmup=2, eval_every=0, ckpt_every=5, config=tiny_config(),
              eval_blocks=evals, progress=False)
    model = judge.GPT2LMHeadModel(tiny_config())
    before = judge.block_nll(model, evals)
    res = judge.train(tmp_path / "run", steps=10, data=fixed_batches(tok), **kw)
    after = judge.block_nll(res["model"], evals)
    assert after < before - 0.5
    resumed = judge.train(tmp_path / "run", steps=12, data=fixed_batches(tok), **kw)
    assert resumed["state"]["step"] == 12 and len(resumed["state"]["history"]) == 12


def test_export_loads_offline_with_auto_classes(tmp_path):
    tok = stories.build_tokenizer()
    judge.train(tmp_path / "run", steps=2, data=fixed_batches(tok), batch_size=4, warmup=1, eval_every=1,
                eval_blocks=next(fixed_batches(tok)), config=tiny_config(), progress=False)
    out = judge.export(tmp_path / "run", tmp_path / "export")
    model = AutoModelForCausalLM.from_pretrained(out, local_files_only=True)
    hf_tok = AutoTokenizer.from_pretrained(out, local_files_only=True)
    assert model.config.vocab_size == stories.VOCAB_SIZE
    assert hf_tok.mask_token_id == stories.MASK_ID and hf_tok.eos_token_id == stories.EOT_ID
    text = "the cat was happy."
    assert hf_tok.decode(hf_tok(text)["input_ids"]) == text


def test_shipped_judge_loads_offline():
    model, tok = judge.load_judge("stories-judge")
    assert tok.mask_token_id == model.config.vocab_size - 1 == stories.MASK_ID
    good = "once upon a time, there was a little girl named lily. she liked to play with her toys."
    bad = "toys her with play to liked she. lily named girl little a was there, time a upon once."
    j = judge.load_judge(judge.SHIPPED_DIR)
    nll = [judge.block_nll(j.model, torch.tensor([tok(t)["input_ids"]])) for t in (good, bad)]
    assert nll[0] < nll[1]


def test_shipped_mauve_references_are_the_judges_features_of_heldout_stories():
    """data/models/stories-judge/mauve_reference_features.npy: 1000 held-out stories featurised by
    the shipped judge (`explorer.metrics.build_stories_reference(1000)`). Shape and finiteness
    always; with the corpus present, the first rows are recomputed and must agree."""
    import numpy as np
    import pytest

    from explorer.metrics import judge_features, mauve_score, reference_features

    ref = reference_features()
    model, _ = judge.load_judge("stories-judge")
    assert ref.shape == (1000, model.config.hidden_size) and ref.dtype == np.float32
    assert np.isfinite(ref).all()
    # the default MAUVE reference is this file: scoring its own rows needs no texts at all
    assert mauve_score(None, ref[:100], kmeans_num_redo=1, kmeans_max_iter=50).n_p == 1000
    try:
        stories.corpus_dir()
    except FileNotFoundError:
        return  # a checkout without ../shared/corpus cannot recompute the texts; the rest held
    again = judge_features(stories.heldout_texts(1000)[:3])
    assert np.allclose(again, ref[:3], atol=1e-4)


def test_a_hub_judge_is_never_fetched_without_leave(monkeypatch):
    """A judge that is not a folder and not in the local HF cache is refused by name, before any
    download; one in the cache is loaded with local_files_only (nothing goes online)."""
    import huggingface_hub
    import pytest
    from explorer.metrics import _judge

    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: None)
    with pytest.raises(FileNotFoundError, match="--allow-download"):
        _judge.check_judge("no-such-org/no-such-judge")
    with pytest.raises(FileNotFoundError, match="local Hugging Face cache"):
        _judge._load("no-such-org/no-such-judge")

    asked = []
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: "/cache/config.json")
    monkeypatch.setattr(AutoTokenizer, "from_pretrained", lambda name, **k: asked.append(k) or "tok")
    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", lambda name, **k: asked.append(k) or "lm")
    assert _judge._load("some-org/cached-judge") == ("lm", "tok", "some-org/cached-judge")
    assert [k["local_files_only"] for k in asked] == [True, True]
