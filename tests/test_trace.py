"""Trace files: lossless CSV / Parquet round trips, spreadsheet-safe text, atomic writes, clear errors."""
from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import explorer
from explorer.samplers import ReMDMCap, ReMDMLoop, Rescore
from explorer.trace import FIXED, MASKED, REMASKED, REWRITTEN, STABLE, UNMASKED, Trace
from explorer.trace_files import _FILE_KEYS, neutralize, sidecar_path, unneutralize
from explorer.trace_schema import EVENT_COLUMNS, KINDS, REASONS, STEP_COLUMNS, RunRecord
from stub_models import ContextModel

NASTY = ['=HYPERLINK("http://x","y")', "+1", "-2", "@SUM(A1)", "a,b", 'say "hi"', "new\nline", "\ttab",
         "'quoted", "", "nan", "NA", "null", " lead", "ünï 🎉", "\r\nx", "=", "-", "plain"]


class NastyTokenizer:
    def decode(self, ids):
        return "".join(NASTY[i] for i in ids)


def nasty_trace(**kw):
    V = len(NASTY) + 1
    g = torch.Generator().manual_seed(0)
    p = torch.rand(8, V, generator=g)
    p[:, -1] = 0
    m = explorer.StubDenoiser(p, tokenizer=NastyTokenizer())
    return explorer.generate(m, ReMDMCap(0.3), 12, num_samples=5, seed=1, progress=False, **kw)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_roundtrip_is_lossless(tmp_path, fmt):
    tr = nasty_trace()
    assert set(tr.events.token) & {"=HYPERLINK(\"http://x\",\"y\")", "a,b", "new\nline"}
    path = tmp_path / f"t.{fmt}"
    getattr(tr, f"to_{fmt}")(path)
    assert Trace.verify(path)
    back = Trace.read(path)
    pd.testing.assert_frame_equal(back.events, tr.events, check_dtype=False, check_categorical=False)
    pd.testing.assert_frame_equal(back.steps, tr.steps, check_dtype=False)
    assert back.same_as(tr, rtol=0)
    assert back.texts == tr.texts
    for k in range(tr.last_step + 1):
        assert torch.equal(back.state_at(k), tr.state_at(k))
    for key in ("run_id", "sampler", "seed", "steps", "model", "versions", "device", "created"):
        assert back.meta[key] == tr.meta[key]


def test_csv_is_rfc4180_and_neutralizes_formulas(tmp_path):
    tr = nasty_trace()
    path = tmp_path / "audit.csv"
    tr.to_csv(path)
    raw = path.read_bytes()
    assert raw.decode("utf-8")
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    assert len(body) == len(tr.events)
    assert b"\r\n" in raw
    text_cols = [i for i, c in enumerate(header) if c == "token" or c.endswith("_token")]
    for row in body:
        assert len(row) == len(header)
        for i in text_cols:
            assert not row[i].startswith(("=", "+", "-", "@", "\t", "\r")), row[i]
    assert any(row[text_cols[0]] == "'=HYPERLINK(\"http://x\",\"y\")" for row in body)
    # opt-out writes raw text (for tools that are not spreadsheets)
    tr.to_csv(tmp_path / "raw.csv", neutralize_formulas=False)
    with open(tmp_path / "raw.csv", newline="", encoding="utf-8") as f:
        raw_rows = list(csv.reader(f))[1:]
    assert any(r[text_cols[0]].startswith("=") for r in raw_rows)
    assert Trace.read(tmp_path / "raw.csv").events.token.tolist() == tr.events.token.tolist()


def test_neutralize_is_invertible():
    for s in NASTY + ["''x", "'=x"]:
        assert unneutralize(neutralize(s)) == s


def test_sidecar_has_the_audit_metadata(tmp_path):
    tr = nasty_trace()
    tr.to_parquet(tmp_path / "t.parquet")
    meta = json.loads(sidecar_path(tmp_path / "t.parquet").read_text())
    assert meta["sampler"] == {"name": "remdm-cap", "nucleus_p": 1.0, "eta": 0.3}
    assert meta["model"]["sha256"] and len(meta["model"]["sha256"]) == 64
    assert {"torch", "python", "pandas"} <= set(meta["versions"])
    assert set(meta["event_columns"]) >= {"sample", "step", "position", "kind", "token", "prob", "sigma"}
    # every reason code a file can hold is explained, and a remask's prob is not only "when decoded"
    assert all(r in meta["event_columns"]["reason"] for r in REASONS)
    assert "re-judged" in meta["event_columns"]["prob"]


def test_a_read_trace_keeps_its_files_column_words_and_a_new_run_gets_todays(tmp_path):
    """Column descriptions are the file's own: a file written with older wording writes back the
    same words, while a new run is described with the current ones (EVENT_COLUMNS)."""
    tr = nasty_trace()
    assert tr.column_docs is None
    tr.to_csv(tmp_path / "t.csv")
    side = json.loads(sidecar_path(tmp_path / "t.csv").read_text())
    assert side["event_columns"]["prob"] == EVENT_COLUMNS["prob"]
    side["event_columns"]["prob"] = "older words"
    del side["sidecar_sha256"]                 # as in a sidecar of an older format
    old = tmp_path / "old.csv"
    old.write_bytes((tmp_path / "t.csv").read_bytes())
    sidecar_path(old).write_text(json.dumps(side), encoding="utf-8")
    Trace.read(old).to_csv(tmp_path / "again.csv")
    again = json.loads(sidecar_path(tmp_path / "again.csv").read_text())
    assert again["event_columns"]["prob"] == "older words" and again["step_columns"] == side["step_columns"]


def test_writes_are_atomic_and_leave_nothing_behind(tmp_path, monkeypatch):
    tr = nasty_trace()
    path = tmp_path / "t.csv"

    def boom(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(pd.DataFrame, "to_csv", boom)
    with pytest.raises(OSError, match="disk full"):
        tr.to_csv(path)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    tr.to_csv(path)
    before = path.read_bytes()
    monkeypatch.setattr(json, "dumps", boom)       # the sidecar fails: the old pair stays intact
    with pytest.raises(OSError):
        nasty_trace().to_csv(path)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["t.csv", "t.csv.meta.json"]


@pytest.mark.parametrize("fail_at", [1, 2])
def test_a_pair_is_replaced_whole_or_not_at_all(tmp_path, monkeypatch, fail_at):
    """Interrupted between the renames of a trace and its sidecar (or at the first), the old pair
    comes back intact and nothing is left beside it; a sidecar path that is a folder is refused
    before the trace file is touched."""
    import os
    path = tmp_path / "t.csv"
    nasty_trace().to_csv(path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    new = nasty_trace(topk=1)                  # other candidates: other bytes
    rename, calls = os.replace, []

    def interrupted(src, dst):
        calls.append(dst)
        if len(calls) == fail_at:
            raise KeyboardInterrupt
        return rename(src, dst)
    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        new.to_csv(path)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    assert Trace.verify(path)
    (tmp_path / "d.csv.meta.json").mkdir()
    with pytest.raises(IsADirectoryError, match="is a folder"):
        nasty_trace().to_csv(tmp_path / "d.csv")
    assert not (tmp_path / "d.csv").exists()


def test_read_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="no trace file"):
        Trace.read(tmp_path / "missing.csv")
    (tmp_path / "lonely.csv").write_text("a,b\n1,2\n")
    with pytest.raises(FileNotFoundError, match="sidecar"):
        Trace.read(tmp_path / "lonely.csv")
    tr = nasty_trace()
    tr.to_csv(tmp_path / "t.csv")
    sidecar_path(tmp_path / "t.csv").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        Trace.read(tmp_path / "t.csv")
    with pytest.raises(IsADirectoryError):
        tr.to_csv(tmp_path)
    tr.to_csv(tmp_path / "u.csv")
    (tmp_path / "u.csv").write_text("sample,step\n0,1\n")
    with pytest.raises(ValueError, match="lacks the trace columns"):
        Trace.read(tmp_path / "u.csv")
    assert not Trace.verify(tmp_path / "u.csv")


def test_events_are_compact():
    """Bytes per event bound the memory of big runs (T=4096, L=1024, 16 samples: ~1.2M events)."""
    g = torch.Generator().manual_seed(0)
    p = torch.rand(128, 20, generator=g)
    p[:, -1] = 0
    tr = explorer.generate(explorer.StubDenoiser(p), ReMDMLoop(), 256, num_samples=4, progress=False)
    n = len(tr.events)
    assert n > 0 and (tr.events.kind == "remask").any()
    assert tr.nbytes / n <= 52          # at ~1.3M events that is < 70 MB, well under 100 MB
    dense = tr.num_steps * tr.num_samples * tr.seq_len * 8      # one int64 copy of the state per step
    assert tr.nbytes < dense / 4
    # the top-k candidates cost 3 x (int32 id + float32 prob) on unmask events only, nothing on remasks
    bare = explorer.generate(explorer.StubDenoiser(p), ReMDMLoop(), 256, num_samples=4, progress=False, topk=0)
    assert len(bare.events) == n
    n_unmask = int((tr.events.kind == "unmask").sum())
    assert tr.nbytes - bare.nbytes == n_unmask * 3 * (4 + 4)


def test_exports_get_normal_file_permissions(tmp_path):
    import os
    import stat

    tr = nasty_trace()
    old = os.umask(0o022)
    try:
        tr.to_csv(tmp_path / "t.csv")
    finally:
        os.umask(old)
    for p in (tmp_path / "t.csv", sidecar_path(tmp_path / "t.csv")):
        assert stat.S_IMODE(p.stat().st_mode) == 0o644     # not mkstemp's 0600


# ---------------------------------------------------------------------------- the run record
def test_the_run_record_round_trips_every_dict_exactly():
    tr = nasty_trace()
    assert isinstance(tr.meta, RunRecord) and tr.meta.seed == 1 == tr.meta["seed"] and tr.meta.sampler["eta"] == 0.3
    engine = tr.meta.to_dict()
    cases = [engine, {**engine, "a_future_key": [1, 2], "gen_start": 3}, {"mask_id": 9, "steps": 4}, {},
             {"parent": None, "gen_start": None, "note": None}, {"extra": 1, "_none_keys": 2}]
    for d in cases:
        r = RunRecord.from_dict(d)
        assert r.to_dict() == d and dict(r) == d and r == d and len(r) == len(d)
        assert set(r.extra) == set(d) - {f.name for f in dataclasses.fields(RunRecord)} | ({"extra", "_none_keys"} & set(d))
    assert list(RunRecord.from_dict(engine)) == list(engine)


def test_the_run_record_reads_and_writes_like_the_dict_it_replaces():
    r = RunRecord.from_dict({"mask_id": 9})
    assert "gen_start" not in r and r.get("gen_start") is None and r.gen_start is None
    with pytest.raises(KeyError):
        r["seed"]
    r["gen_start"] = 4                     # a field: typed attribute and key at once
    r["parent"] = None                     # a key although None (as the engine writes it)
    r["note"] = "kept"                     # not a field: kept in extra
    assert r.gen_start == 4 and "parent" in r and r.extra == {"note": "kept"}
    assert r.to_dict() == {"mask_id": 9, "gen_start": 4, "parent": None, "note": "kept"}
    del r["gen_start"], r["note"]
    assert r.to_dict() == {"mask_id": 9, "parent": None}
    with pytest.raises(KeyError):
        del r["seed"]
    # a record made directly has the engine's always-present keys
    assert RunRecord(run_id="x", mask_id=3).to_dict() == {"run_id": "x", "mask_id": 3, "parent": None, "prompt": None}


def test_a_trace_made_with_a_meta_dict_has_the_record():
    tr = nasty_trace()
    d = tr.meta.to_dict()
    again = Trace(initial=tr.initial, fixed=tr.fixed, events=tr._ev, steps=tr.steps, meta=d, tokenizer=tr.tokenizer)
    assert isinstance(again.meta, RunRecord) and again.meta == d and again.same_as(tr)
    again.meta["parent"] = {"run_id": "p", "step": 2, "edit": {}}      # as explorer.resume does
    assert again.meta.parent["run_id"] == "p" and "prompt" in again.meta


# ---------------------------------------------------------------------------- files written before the split
OLD = Path(__file__).parent / "data" / "trace_format1"


def replay(trace) -> dict[int, torch.Tensor]:
    """The state after every step, by applying ``trace.events`` one row at a time in their listed order."""
    x, ev = trace.initial.clone(), trace.events
    out = {trace.first_step: x.clone()}
    for k in range(trace.first_step + 1, trace.last_step + 1):
        for r in ev[ev["step"] == k].itertuples():
            x[r.sample, r.position] = r.token_id if r.kind == "unmask" else trace.mask_id
        out[k] = x.clone()
    return out


@pytest.mark.parametrize("name", ["generated.csv", "branch.parquet"])
def test_a_file_written_before_the_split_reads_and_writes_back_the_same(tmp_path, name):
    path = OLD / name
    side = json.loads(sidecar_path(path).read_text(encoding="utf-8"))
    assert Trace.verify(path)
    tr = Trace.read(path)
    run = {k: v for k, v in side.items() if k not in _FILE_KEYS}
    assert list(tr.meta) == list(run) and tr.meta == run and tr.meta.run_id == side["run_id"]
    assert tr.meta.texts == side["texts"] == tr.texts and tr.complete
    if name.startswith("branch"):
        assert tr.meta.parent["step"] == 6 == tr.first_step and tr.meta.parent["edit"]["remask"]
    states = replay(tr)
    for k, x in states.items():
        assert torch.equal(tr.state_at(k), x), k
    out = tmp_path / name
    (tr.to_csv if name.endswith(".csv") else tr.to_parquet)(out)
    back = json.loads(sidecar_path(out).read_text(encoding="utf-8"))
    if name.endswith(".csv"):     # same events, same run record: the same data bytes, the same sidecar
        assert out.read_bytes() == path.read_bytes() and back == side
    else:
        drop = ("data_sha256", "sidecar_sha256")
        assert {k: v for k, v in back.items() if k not in drop} == {k: v for k, v in side.items() if k not in drop}
        assert Trace.read(out).same_as(tr, rtol=0)


# ---------------------------------------------------------------------------- the one event index
def expected_codes(trace, states, k) -> torch.Tensor:
    """State codes after step k from the events table (independent of the index)."""
    x = states[k]
    codes = torch.where(x == trace.mask_id, MASKED, STABLE)
    ev = trace.events
    for (b, p), kinds in ev[ev["step"] == k].groupby(["sample", "position"])["kind"]:
        kinds = set(kinds)            # a remask and an unmask in one step: remasked and rewritten
        codes[b, p] = REWRITTEN if len(kinds) == 2 else UNMASKED if kinds == {"unmask"} else REMASKED
    return torch.where(trace.fixed, FIXED, codes)


@pytest.mark.parametrize("sampler", [ReMDMCap(0.5), ReMDMLoop(), Rescore()])
def test_every_reader_of_the_index_agrees_with_replaying_the_events(sampler):
    g = torch.Generator().manual_seed(1)
    p = torch.rand(10, 7, generator=g)
    p[:, -1] = 0
    # rescore re-scores in context, so it needs a model with one; it remasks and rewrites in one step
    model = ContextModel() if isinstance(sampler, Rescore) else explorer.StubDenoiser(p)
    tr = explorer.generate(model, sampler, 12, num_samples=3, seed=2, progress=False, prompt={3: 4})
    assert (tr.events.kind == "remask").any()
    states = replay(tr)
    steps = np.arange(tr.first_step, tr.last_step + 1)
    for s in range(tr.num_samples):
        ix = tr.index(s)
        assert ix is tr.index(s)                                    # built once
        assert ix.matrix(np.arange(tr.seq_len), steps, "token").T.tolist() == [states[k][s].tolist() for k in steps]
        codes = ix.matrix(np.arange(tr.seq_len), steps, "state")
        for j, k in enumerate(steps):
            fr = ix.frame(int(k))
            assert fr.tokens.tolist() == states[k][s].tolist() == tr.state_at(int(k))[s].tolist()
            assert fr.codes.tolist() == codes[:, j].tolist() == expected_codes(tr, states, k)[s].tolist()
            np.testing.assert_array_equal(fr.prob, tr.prob_at(int(k))[s].numpy())
            held = fr.event >= 0
            assert (ix.pos[fr.event[held]] == fr.positions[held]).all() and (ix.step[fr.event[held]] <= k).all()
    assert torch.equal(tr.final, states[tr.last_step])
    if isinstance(sampler, Rescore):   # the remask-and-rewrite case is exercised, not only the others
        assert any((tr.index(s).matrix(np.arange(tr.seq_len), steps) == REWRITTEN).any() for s in range(3))


def hand_trace(rows, initial, mask_id=9, steps=2) -> Trace:
    """A one-sample trace from (step, position, kind, token, prob) rows, kept in the given order."""
    n = len(rows)
    col = lambda i, dt: np.array([r[i] for r in rows], dt).reshape(n)  # noqa: E731
    events = {"sample": np.zeros(n, np.int32), "step": col(0, np.int32), "position": col(1, np.int32),
              "kind": np.array([KINDS.index(r[2]) for r in rows], np.int8).reshape(n), "token_id": col(3, np.int32),
              "prob": col(4, np.float32), "p_transition": np.ones(n, np.float32),
              "sigma": np.zeros(n, np.float32), "reason": np.zeros(n, np.int8), "cand_row": np.full(n, -1, np.int32),
              "cand_ids": np.zeros((0, 0), np.int32), "cand_probs": np.zeros((0, 0), np.float32)}
    table = pd.DataFrame({c: [] for c in STEP_COLUMNS}).astype({"step": int, "phase": str})
    return Trace(initial=torch.tensor([initial]), fixed=torch.zeros(1, len(initial), dtype=torch.bool),
                 events=events, steps=table, meta={"mask_id": mask_id, "steps": steps, "last_step": steps,
                                                   "model_calls": steps, "run_id": "hand", "topk": 0})


@pytest.mark.parametrize("unmask_first", [False, True])
def test_the_tie_rule_a_remask_comes_before_an_unmask_of_the_same_step(unmask_first):
    """Position 0 is decoded at step 1, then remasked and decoded again at step 2 (LLaDA's remasking
    window does this); however the rows are stored, the state after step 2 is the new token."""
    again = [(2, 0, "unmask", 5, 0.7), (2, 0, "remask", 3, 0.4)]
    tr = hand_trace([(1, 0, "unmask", 3, 0.4), *(again if unmask_first else again[::-1])], [9, 9])
    assert tr.state_at(2).tolist() == [[5, 9]] and tr.prob_at(2)[0, 0].item() == pytest.approx(0.7)
    assert tr.events["kind"].tolist() == ["unmask", "remask", "unmask"]
    fr = tr.index(0).frame(2)
    # the cell holds the new token, but the remask is not lost from view: its own state
    assert fr.tokens.tolist() == [5, 9] and fr.codes.tolist() == [REWRITTEN, MASKED]
    assert fr.shown.tolist() == [5, 9] and int(tr.index(0).tok[fr.event[0] - 1]) == 3   # the one it replaced
    assert [int(tr.index(0).tok[e]) for e in tr.index(0).history(0)] == [3, 3, 5]
    assert replay(tr)[2].tolist() == tr.state_at(2).tolist()


def test_remasked_and_rewritten_only_within_one_step_and_read_back_from_a_file(tmp_path):
    """REWRITTEN is a remask and an unmask of one cell in the same step: a remask at one step and the
    rewrite at the next read as remasked, then unmasked; the state codes come from the events alone,
    so a file written before the state existed reads back with it."""
    tr = hand_trace([(1, 0, "unmask", 3, 0.4), (1, 1, "unmask", 4, 0.5), (2, 0, "remask", 3, 0.4),
                     (2, 0, "unmask", 5, 0.7), (2, 1, "remask", 4, 0.5), (3, 1, "unmask", 6, 0.8),
                     (3, 0, "remask", 5, 0.7)], [9, 9], steps=3)
    ix = tr.index(0)
    assert ix.matrix([0, 1], [0, 1, 2, 3]).tolist() == [[MASKED, UNMASKED, REWRITTEN, REMASKED],
                                                         [MASKED, UNMASKED, REMASKED, UNMASKED]]
    tr.to_csv(tmp_path / "t.csv")
    back = Trace.read(tmp_path / "t.csv").index(0)
    assert back.matrix([0, 1], [0, 1, 2, 3]).tolist() == ix.matrix([0, 1], [0, 1, 2, 3]).tolist()


def test_the_index_of_a_sample_without_events_and_of_an_unrecorded_trace():
    tr = hand_trace([], [9, 4])
    fr = tr.index(0).frame(2)
    assert fr.tokens.tolist() == [9, 4] and fr.codes.tolist() == [MASKED, STABLE] and fr.event.tolist() == [-1, -1]
    assert tr.index(0).matrix([0, 1], [0, 1, 2], "prob").shape == (2, 3)
    with pytest.raises(IndexError):
        tr.index(1)
    with pytest.raises(ValueError, match="value must be"):
        tr.index(0).matrix([0], [0], "colour")
    g = torch.Generator().manual_seed(0)
    p = torch.rand(6, 5, generator=g)
    p[:, -1] = 0
    bare = explorer.generate(explorer.StubDenoiser(p), ReMDMCap(0.3), 5, progress=False, record=False)
    with pytest.raises(ValueError, match="record=False"):
        bare.index(0)
