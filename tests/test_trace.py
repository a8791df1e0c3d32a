"""Trace files: lossless CSV / Parquet round trips, spreadsheet-safe text, atomic writes, clear errors."""
from __future__ import annotations

import csv
import json

import numpy as np
import pandas as pd
import pytest
import torch

import explorer
from explorer.samplers import ReMDMCap, ReMDMLoop
from explorer.trace import Trace, neutralize, sidecar_path, unneutralize

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
