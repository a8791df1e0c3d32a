"""Metric functions against hand-computed values (reference §3)."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from explorer.metrics import (generative_perplexity, judge_features, mauve_score, metric_by_step,
                              orders_validity, unigram_entropy)
from explorer.metrics.perplexity import eos_weights

EOS = "<|endoftext|>"
WORDS = [EOS, "a", "b", "c", "d", "[UNK]"]


def tiny_tokenizer():
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(WordLevel(vocab={w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    tok.pre_tokenizer = WhitespaceSplit()
    tok.add_special_tokens([EOS])
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=EOS, unk_token="[UNK]")


class BigramJudge(torch.nn.Module):
    """p(next | previous) = P[previous]: every NLL is a table lookup, so Gen PPL is hand-computable."""

    def __init__(self, P, context=16):
        super().__init__()
        self.logp = torch.nn.Parameter(torch.log(torch.as_tensor(P, dtype=torch.float32)))
        self.config = SimpleNamespace(n_positions=context)

    def forward(self, input_ids, attention_mask=None, output_hidden_states=False):
        logits = self.logp[input_ids]
        return SimpleNamespace(logits=logits, hidden_states=(logits,))


def bigram_table():
    rng = np.random.default_rng(0)
    P = rng.uniform(0.1, 1.0, size=(len(WORDS), len(WORDS)))
    return P / P.sum(1, keepdims=True)


# ----------------------------------------------------------------------------- entropy

def test_entropy_hand_values():
    ids = torch.tensor([[1, 1, 2, 3], [5, 5, 5, 5], [0, 1, 2, 3]])
    h = unigram_entropy(ids)
    assert h[0].item() == pytest.approx(-(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25)))
    assert h[1].item() == 0.0
    assert h[2].item() == pytest.approx(math.log(4))  # special id 0 counts like any other


def test_entropy_matches_a_counting_loop():
    ids = torch.randint(0, 7, (20, 33), generator=torch.Generator().manual_seed(1))
    want = []
    for row in ids.tolist():
        c = np.unique(row, return_counts=True)[1] / len(row)
        want.append(-(c * np.log(c)).sum())
    assert np.allclose(unigram_entropy(ids).numpy(), want)


# ----------------------------------------------------------------------------- Gen PPL

def test_eos_weights_rule():
    e = 0
    x = torch.tensor([[1, 2, e, 3, e, e],      # first eos at 2 scored; later eos not
                      [e, 1, e, 2, 3, 4]])     # first eos is position 0 (never a target): no eos scored
    w = eos_weights(x, e)
    assert w.tolist() == [[True, True, True, False, False], [True, False, True, True, True]]
    w = eos_weights(x, e, lengths=torch.tensor([6, 4]))
    assert w[1].tolist() == [True, False, True, False, False]


def test_gen_ppl_hand_computed_with_eos_rule():
    P = bigram_table()
    judge = (BigramJudge(P), tiny_tokenizer())
    a, b, c, d, e = 1, 2, 3, 4, 0
    texts = [f"a b {EOS} c {EOS} {EOS}", f"{EOS} d {EOS} a", "c"]
    # sample 1 targets: b|a, eos|b (first eos), c|eos ; eos|c and eos|eos are not scored
    # sample 2: d|eos, eos|d is the 2nd eos (the first is position 0) -> not scored, a|eos
    # sample 3: a single token, nothing to predict
    nll1 = -(math.log(P[a, b]) + math.log(P[b, e]) + math.log(P[e, c]))
    nll2 = -(math.log(P[e, d]) + math.log(P[e, a]))
    for bs in (1, 2, 3):
        r = generative_perplexity(texts, judge=judge, batch_size=bs)
        assert r.tokens.tolist() == [3, 2, 0]
        assert r.value == pytest.approx(math.exp((nll1 + nll2) / 5), rel=1e-6)
        assert r.per_sample[0] == pytest.approx(math.exp(nll1 / 3), rel=1e-6)
        assert np.isnan(r.per_sample[2])
        assert float(r) == r.value and r.stderr > 0


def test_gen_ppl_truncates_to_judge_context():
    P = bigram_table()
    judge = (BigramJudge(P, context=3), tiny_tokenizer())
    r = generative_perplexity(["a b c d a b"], judge=judge)
    assert r.tokens.tolist() == [2]
    assert r.value == pytest.approx(math.exp(-(math.log(P[1, 2]) + math.log(P[2, 3])) / 2), rel=1e-6)


@pytest.fixture(scope="module")
def tiny_gpt2_dir(tmp_path_factory):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=len(WORDS), n_positions=12, n_embd=16, n_layer=1, n_head=2,
                     bos_token_id=0, eos_token_id=0, pad_token_id=0)
    path = tmp_path_factory.mktemp("judge")
    GPT2LMHeadModel(cfg).save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    return path


def test_gen_ppl_tiny_gpt2_from_a_directory_matches_a_plain_loop(tiny_gpt2_dir):
    from transformers import AutoModelForCausalLM

    texts = ["a b c d a", f"b {EOS} c", f"d d d {EOS} {EOS} a b c d a b c d a b"]  # last is truncated to 12
    r1 = generative_perplexity(texts, judge=str(tiny_gpt2_dir), batch_size=1)
    r3 = generative_perplexity(texts, judge=str(tiny_gpt2_dir), batch_size=3)
    assert r1.value == pytest.approx(r3.value, rel=1e-5)
    model = AutoModelForCausalLM.from_pretrained(tiny_gpt2_dir).eval()
    tok = tiny_tokenizer()
    total, count = 0.0, 0
    for t in texts:
        ids = tok(t, add_special_tokens=False)["input_ids"][:12]
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), -1)
        seen_eos = ids[0] == 0
        for j in range(1, len(ids)):
            if ids[j] != 0 or not seen_eos:
                total -= logp[j - 1, ids[j]].item()
                count += 1
            seen_eos |= ids[j] == 0
    assert r1.tokens.sum() == count
    assert r1.value == pytest.approx(math.exp(total / count), rel=1e-5)


# ----------------------------------------------------------------------------- MAUVE

def test_mauve_identical_high_disjoint_low():
    rng = np.random.default_rng(0)
    p = rng.normal(size=(200, 8)).astype(np.float32)
    q_same = rng.normal(size=(200, 8)).astype(np.float32)
    q_far = (rng.normal(size=(200, 8)) + 20).astype(np.float32)
    same = mauve_score(p, q_same, kmeans_num_redo=1, kmeans_max_iter=50)
    far = mauve_score(p, q_far, kmeans_num_redo=1, kmeans_max_iter=50)
    assert same.value > 0.9
    assert far.value < 0.1
    assert same.num_buckets == 20 and same.n_q == 200


def test_judge_features_are_last_real_token_states(tiny_gpt2_dir):
    from transformers import AutoModelForCausalLM

    texts = ["a b c", "d", "a b c d a b"]
    f = judge_features(texts, judge=str(tiny_gpt2_dir), batch_size=3)
    model = AutoModelForCausalLM.from_pretrained(tiny_gpt2_dir).eval()
    tok = tiny_tokenizer()
    for i, t in enumerate(texts):
        ids = torch.tensor([tok(t, add_special_tokens=False)["input_ids"]])
        with torch.no_grad():
            h = model(ids, output_hidden_states=True).hidden_states[-1][0, -1].numpy()
        assert np.allclose(f[i], h, atol=1e-5)


# ----------------------------------------------------------------------------- validity

def test_orders_validity_counts_records_with_cluster_errors():
    from explorer.metrics.validity import per_sample_validity
    from explorer.tasks import orders

    k = orders.RECORDS_PER_SEQ  # 16 records per sequence
    good = orders.generate(3, seed=0)  # 3 sequences = 48 valid records
    words = good[0].split()
    bad_currency = list(words)
    bad_currency[2] = "jpy" if words[2] != "jpy" else "eur"  # record 0 of a 4th sequence
    bad_total = good[1].split()
    bad_total[10] = "999" if bad_total[10] != "999" else "30"  # record 0 of a 5th sequence
    texts = good + [" ".join(bad_currency), " ".join(bad_total)]
    df = orders_validity(texts).set_index("metric")
    # 80 records, 2 broken: hits per sequence 16, 16, 16, 15, 15
    assert df.loc["validity", "value"] == pytest.approx(78 / 80)
    assert df.loc["validity", "n"] == 80
    # ratio-estimator SE by hand: p = 0.975, residuals 16 - 15.6 = 0.4 (x3) and -0.6 (x2);
    # sqrt(sum r^2 / (5 * 4)) / mean cluster size
    assert df.loc["validity", "stderr"] == pytest.approx(math.sqrt(1.2 / 20) / k)
    assert df.loc["violation:currency", "value"] == pytest.approx(1 / 80)
    # "999" is not a total at all, so the record breaks the format rule (total is then not evaluated)
    assert df.loc["violation:format", "value"] == pytest.approx(1 / 80)
    assert df.loc["violation:total", "value"] == 0
    assert df.loc["violation:dates", "value"] == 0
    q = 0.5 / 81  # no record breaks dates: the floor (k + 1/2)/(n + 1) over 80 records, never 0
    assert df.loc["violation:dates", "stderr"] == pytest.approx(math.sqrt(q * (1 - q) / 80))
    assert df.loc["sequence_validity", "value"] == pytest.approx(3 / 5)
    p = 3.5 / 6
    assert df.loc["sequence_validity", "stderr"] == pytest.approx(math.sqrt(p * (1 - p) / 5))
    assert set(df.index) == {"validity", "sequence_validity", *(f"violation:{r}" for r in orders.RULES)}
    assert per_sample_validity(texts).tolist() == [1, 1, 1, 15 / 16, 15 / 16]


def test_cluster_stderr_matches_the_spread_of_the_estimate():
    """Clustered binomial data (each cluster of 4 shares a Beta-drawn success rate): the mean
    estimated SE is within 10 % of the empirical SD of the estimate over 2000 replications
    (seed 0; the SD itself is known to ~1.6 %, the SE mean to well under 1 %)."""
    from explorer.metrics.validity import cluster_stderr

    rng = np.random.default_rng(0)
    S, m, reps = 64, 4, 2000
    rates = rng.beta(4.0, 1.0, size=(reps, S))  # mean 0.8, strongly clustered
    hits = rng.binomial(m, rates)
    sizes = np.full(S, m)
    est = hits.sum(axis=1) / (S * m)
    ses = np.array([cluster_stderr(h, sizes) for h in hits])
    assert ses.mean() == pytest.approx(est.std(ddof=1), rel=0.10)
    # the naive binomial SE over records would be too small here (clustering inflates variance)
    naive = np.sqrt(est * (1 - est) / (S * m)).mean()
    assert naive < 0.9 * est.std(ddof=1)  # theory: 1/sqrt(design effect 1.5) = 0.82


# ----------------------------------------------------------------------------- per-step

class FakeTrace:
    """Just what metric_by_step needs: three states of two samples over vocab {0..3}, mask 4."""

    mask_id = 4
    last_step = 2

    def __init__(self):
        self.states = [torch.tensor([[4, 4, 4], [4, 4, 4]]), torch.tensor([[1, 4, 4], [2, 2, 4]]),
                       torch.tensor([[1, 1, 3], [2, 2, 2]])]

    def state_at(self, k):
        return self.states[k]

    def decode(self, ids):
        return [" ".join(map(str, r)) for r in ids.tolist()]


def test_metric_by_step_fill_mask_and_fill_model():
    from explorer.protocol import StubDenoiser

    tr = FakeTrace()
    df = metric_by_step(tr, "entropy", fill="mask")
    assert list(df.columns) == ["sample", "step", "value", "n_masked"]
    assert len(df) == 6
    got = df.set_index(["sample", "step"])["value"]
    assert got[(0, 0)] == 0.0 and got[(1, 2)] == 0.0
    assert got[(0, 1)] == pytest.approx(-(1 / 3 * math.log(1 / 3) + 2 / 3 * math.log(2 / 3)))
    probs = torch.tensor([[0.1, 0.7, 0.2, 0.0, 0.0]] * 3)  # argmax 1 everywhere; mask prob 0
    stub = StubDenoiser(probs)
    df = metric_by_step(tr, lambda ids: (ids == 1).float().mean(1), fill=stub, steps=[0, 1])
    got = df.set_index(["sample", "step"])["value"]
    assert got[(0, 0)] == 1.0 and got[(1, 1)] == pytest.approx(1 / 3)  # [2, 2, fill->1]
    assert df["n_masked"].tolist() == [3, 3, 2, 1]


def test_metric_by_step_on_a_real_trace_ends_at_the_final_samples():
    import explorer
    from explorer.metrics import attribute_changes
    from explorer.protocol import StubDenoiser
    from explorer.samplers import ReMDMCap

    g = torch.Generator().manual_seed(0)
    probs = torch.rand(8, 6, generator=g)
    probs[:, -1] = 0
    stub = StubDenoiser(probs)
    tr = explorer.generate(stub, ReMDMCap(eta=0.3), steps=6, num_samples=3, seed=0, progress=False)
    df = metric_by_step(tr, "entropy", fill=stub)
    last = df[df.step == tr.last_step].sort_values("sample")["value"].to_numpy()
    assert np.allclose(last, unigram_entropy(tr.final).numpy())
    # at step 0 everything is masked and filled by the per-position argmax of the stub
    first = df[df.step == 0]["value"].to_numpy()
    assert np.allclose(first, unigram_entropy(probs.argmax(-1).expand(3, -1)).numpy())
    ch = attribute_changes(df, tr)
    assert {"sample", "step", "delta", "n_remask", "remasked"} <= set(ch.columns)
    assert (ch["delta"] != 0).all()


def test_reference_features_saved_next_to_the_judge_and_used_by_default(tiny_gpt2_dir):
    from explorer.metrics import reference_features
    from explorer.metrics.mauve import REFERENCE_FEATURES

    refs = ["a b c", "d a", "b b c d", "c a d", "a a", "d c b a"] * 4
    saved = reference_features(str(tiny_gpt2_dir), refs, save=True)
    assert (tiny_gpt2_dir / REFERENCE_FEATURES).exists()
    assert np.array_equal(reference_features(str(tiny_gpt2_dir)), saved)
    r = mauve_score(None, refs[:12], judge=str(tiny_gpt2_dir), kmeans_num_redo=1, kmeans_max_iter=20)
    assert r.n_p == len(refs) and r.n_q == 12 and 0.0 <= r.value <= 1.0
