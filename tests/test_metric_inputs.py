"""Inputs the metrics and the sweep refuse with a message that names the fix, before any work:
texts where ids are expected (and the reverse), per-sample values from a callable metric, and
sweep axes that are a bare int, unparseable or empty."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from explorer.metrics import get_metric, orders_validity, per_sample_validity, unigram_entropy
from explorer.protocol import StubDenoiser
from explorer.sweep import sweep


def stub(L=6, V=5):
    probs = torch.rand(L, V, generator=torch.Generator().manual_seed(0))
    probs[:, -1] = 0
    return StubDenoiser(probs)


def small_sweep(steps=(2,), **kw):
    return sweep(stub(), "mdlm", steps, num_samples=3, progress=False, **kw)


# ----------------------------------------------------------------------------- F10: sweep axes

def test_a_bare_int_of_steps_is_one_step_count_like_seeds():
    timed = ["seconds", "tokens_per_second"]
    one = small_sweep(steps=2, seeds=1).drop(columns=timed)
    assert one.equals(small_sweep(steps=[2], seeds=[1]).drop(columns=timed)) and one["steps"].tolist() == [2]


@pytest.mark.parametrize("steps, said", [
    ("abc", "'abc' is not a step count.*'L/4,L,2L'"),
    ("L/0", "'L/0' is not a step count"),
    ("L/1000", r"'L/1000' \(T = 0 at L = 6\) asks for fewer than 1 step.*'L/4,L'"),
    (0, "steps 0 asks for fewer than 1 step"),
    ([], "steps is empty.*steps=\\[16, 32\\]"),
    ("", "steps is empty"),
    ([4, 10**7], r"steps=10,000,000 is above the limit of 1,000,000 steps"),
])
def test_unusable_steps_are_refused_before_the_cache_is_touched(tmp_path, steps, said):
    with pytest.raises(ValueError, match=said):
        small_sweep(steps=steps, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_no_seeds_is_refused_not_an_empty_table(tmp_path):
    with pytest.raises(ValueError, match=r"seeds is empty.*seeds=\[0, 1\]"):
        small_sweep(seeds=[], cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("axis, values, said", [
    ("steps", [4.7], r"each of steps must be a whole number >= 0 .*got 4.7"),
    ("steps", ["8"], r"each of steps must be a whole number"),
    ("seeds", [-1], r"each of seeds must be a whole number >= 0 .*got -1"),
    ("seeds", 0.5, r"each of seeds must be a whole number"),
    ("seeds", [2**63], r"seed 9223372036854775808 is above 2\*\*63 - 1"),
])
def test_a_float_word_or_negative_seed_on_an_axis_is_refused_before_the_cache_is_touched(tmp_path, axis, values,
                                                                                         said):
    """A float step count was cut to an int (4.7 ran as 4), and a negative seed was refused only by
    the first cell's generate, after the cache folder was made."""
    with pytest.raises(ValueError, match=said):
        small_sweep(cache_dir=tmp_path / "cache", **{axis: values})
    assert not (tmp_path / "cache").exists()


def test_numpy_integers_on_an_axis_are_the_same_cells_as_python_ints():
    timed = ["seconds", "tokens_per_second"]
    assert small_sweep(steps=np.array([2]), seeds=np.int64(1)).drop(columns=timed).equals(
        small_sweep(steps=[2], seeds=[1]).drop(columns=timed))


# ----------------------------------------------------------------------------- F9: callable metrics

def test_a_callable_metric_may_return_one_value_per_sample():
    """Per-sample values give their mean and its standard error, as the built-in entropy does."""
    per_sample = lambda ids, texts: [float(i) for i in range(len(texts))]  # noqa: E731
    df = small_sweep(metrics=[("rank", per_sample)])
    assert df["metric"].tolist() == ["rank"]
    assert df["value"].item() == 1.0 and math.isclose(df["stderr"].item(), 1 / math.sqrt(3))


def test_a_callable_metric_with_an_unusable_return_names_the_accepted_ones():
    metric = get_metric(("short", lambda ids, texts: [1.0]))
    with pytest.raises(TypeError, match="'short' returned 1 values for 2 samples.*a number.*dict.*DataFrame"):
        metric(torch.zeros(2, 3, dtype=torch.long), ["a", "b"])
    with pytest.raises(TypeError, match="'words' returned.*str.*a number"):
        get_metric(("words", lambda ids, texts: "good"))(torch.zeros(2, 3, dtype=torch.long), ["a", "b"])


# ----------------------------------------------------------------------------- F8: texts vs ids

@pytest.mark.parametrize("fn", [orders_validity, per_sample_validity])
def test_validity_refuses_one_string_or_token_ids(fn):
    with pytest.raises(TypeError, match=r"a list of texts \(e.g. trace.texts\).*one string.*\[text\]"):
        fn("order france")
    with pytest.raises(TypeError, match=r"a list of texts \(e.g. trace.texts\).*token ids"):
        fn(torch.zeros(2, 5, dtype=torch.long))


def test_entropy_refuses_texts_and_float_tensors():
    with pytest.raises(TypeError, match=r"token ids \[N, L\] \(e.g. trace.final\), not texts"):
        unigram_entropy(["order one", "order two"])
    with pytest.raises(TypeError, match=r"integer token ids \(e.g. trace.final\), got torch.float32"):
        unigram_entropy(torch.rand(2, 5))
    assert unigram_entropy(np.array([[1, 1]])).tolist() == [0.0]
