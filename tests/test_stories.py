"""The stories task: tokenizer, held-out split and training blocks (no corpus needed except where marked)."""
from __future__ import annotations

import pytest
import torch

from explorer.tasks import stories

STORIES = [
    f"once upon a time, there was a {animal} named {name}. {name} liked to {verb} every day.\n"
    f"one day, {name} met a friend and said, \"let's {verb} together!\" they were happy."
    for animal in ("cat", "dog", "bird", "frog", "fox")
    for name in ("lily", "tom", "ben", "sue")
    for verb in ("play", "run", "jump", "sing", "read")
]


@pytest.fixture(scope="module")
def tok():
    return stories.build_tokenizer()  # the shipped data/models/stories/tokenizer.json


def test_special_ids_follow_the_mdlm_owt_convention(tok):
    assert tok.get_vocab_size() == stories.VOCAB_SIZE
    assert tok.token_to_id(stories.MASK) == stories.VOCAB_SIZE - 1 == stories.MASK_ID
    assert tok.token_to_id(stories.EOT) == stories.EOT_ID


def test_round_trip_is_readable_and_normalised(tok):
    text = "once upon a time, a little girl named lily said, \"hi!\"\nshe was happy."
    assert tok.decode(tok.encode(text).ids) == text
    # curly quotes, mojibake, capitals and blank lines are normalised, not lost
    messy = "Once upon a time, Lily said, \u201cHi!\u201d\n\nShe was â€œhappyâ€\x9d."
    assert tok.decode(tok.encode(messy).ids) == 'once upon a time, lily said, "hi!"\nshe was "happy".'
    ids = tok.encode(f"the end.{stories.EOT}once").ids
    assert stories.EOT_ID in ids and stories.MASK_ID not in ids


def test_train_tokenizer_puts_mask_last():
    small = stories.train_tokenizer(STORIES, vocab_size=300)
    assert small.get_vocab_size() == 300
    assert small.token_to_id(stories.MASK) == 299 and small.token_to_id(stories.EOT) == 0


def test_split_is_deterministic_and_disjoint():
    parts = stories.partition(STORIES)
    assert parts == stories.partition(list(STORIES))
    assert not set(parts["train"]) & set(parts["heldout"])
    assert sorted(parts["train"] + parts["heldout"]) == sorted(STORIES)
    # the rule depends on the story alone, not on its neighbours or position
    assert stories.partition(STORIES[::-1])["heldout"] == parts["heldout"][::-1]


def test_split_stories_follows_each_file_format():
    v1 = "story one.\n\nsecond para.\nstory two.\n\nmore."
    assert stories.split_stories("ts_v1_train_x.txt", v1) == ["story one.\n\nsecond para.", "story two.\n\nmore."]
    v2 = "\nfirst.\nline.\n<|endoftext|>\nsecond.\n<|endoftext|>\n"
    assert stories.split_stories("ts_v2_x.txt", v2) == ["first.\nline.", "second."]
    valid = "tail of one.\n\nOnce upon a time, two.\n\nmore of two."
    assert stories.split_stories("ts_v1_valid_x.txt", valid) == ["tail of one.", "Once upon a time, two.\n\nmore of two."]


def test_block_batches_shape_dtype_and_eot(tok):
    flat, offsets = stories.tokenize_stories(tok, STORIES)
    it = stories.block_batches(flat, offsets, batch_size=4, seed=0, seq_len=16)
    xs = [next(it) for _ in range(len(flat) // 16)]  # more than one epoch
    for x in xs:
        assert x.shape == (4, 16) and x.dtype == torch.long
        assert 0 <= int(x.min()) and int(x.max()) < stories.MASK_ID
    assert (torch.cat(xs) == stories.EOT_ID).any()
    again = stories.block_batches(flat, offsets, batch_size=4, seed=0, seq_len=16)
    assert all(torch.equal(a, next(again)) for a in xs)
    other = next(stories.block_batches(flat, offsets, batch_size=4, seed=1, seq_len=16))
    assert not torch.equal(other, xs[0])


def test_heldout_blocks_deterministic_and_distinct(tok):
    flat, offsets = stories.tokenize_stories(tok, STORIES)
    a = stories.heldout_blocks(flat, offsets, 5, seed=3, seq_len=16)
    assert torch.equal(a, stories.heldout_blocks(flat, offsets, 5, seed=3, seq_len=16))
    assert len({tuple(r) for r in a.tolist()}) == 5
    many = stories.heldout_blocks(flat, offsets, len(flat), seed=0, seq_len=16)  # more than exist
    assert many.shape == (len(flat), 16)


@pytest.fixture(scope="module")
def corpus():
    try:
        stories.corpus_dir()
    except FileNotFoundError as e:
        pytest.skip(str(e))


def test_real_corpus_split_and_interface(corpus):
    all_stories = stories.load_stories()
    parts = stories.partition(all_stories)
    assert not set(parts["train"]) & set(parts["heldout"])
    assert 0.03 < len(parts["heldout"]) / len(all_stories) < 0.07
    x = next(stories.batches("train", 2, seed=0))
    assert x.shape == (2, stories.SEQ_LEN) and x.dtype == torch.long and int(x.max()) < stories.MASK_ID
    ev = stories.eval_tensor(3, seed=0)
    assert torch.equal(ev, stories.eval_tensor(3, seed=0)) and ev.shape == (3, stories.SEQ_LEN)
    texts = stories.heldout_texts(2, seed=0)
    assert len(texts) == 2 and all(isinstance(t, str) and t == t.lower() for t in texts)


def test_a_corpus_folder_asked_for_is_used_or_refused_never_replaced(tmp_path, monkeypatch):
    """EXPLORER_CORPUS_DIR naming a folder without the corpus is an error that names it, not a
    silent fallback to ../shared/corpus; a folder that holds tinystories/ is taken."""
    monkeypatch.setenv("EXPLORER_CORPUS_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="EXPLORER_CORPUS_DIR=.*nowhere.*holds no TinyStories"):
        stories.corpus_dir()
    (tmp_path / "mine" / "tinystories").mkdir(parents=True)
    monkeypatch.setenv("EXPLORER_CORPUS_DIR", str(tmp_path / "mine"))
    assert stories.corpus_dir() == tmp_path / "mine"
