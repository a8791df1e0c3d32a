"""Damaged trace files are refused with one clear error naming the file and the first bad place.

Each test damages a file the way it happens in practice (cut short by a full disk, a row deleted or
a cell retyped in a spreadsheet, a sidecar lost or edited, a Parquet file cut) and checks that
``Trace.read`` raises :class:`TraceFileError` (a ``ValueError``) whose message names the file and
the line / row / column / sidecar key, with the line counted independently of the reader.
"""
from __future__ import annotations

import csv
import io
import json
import shutil
import warnings

import pandas as pd
import pytest
import torch

import explorer
from explorer.samplers import ReMDMCap
from explorer.trace import (Trace, TraceFileError, TraceFileWarning, TraceSidecarMissing, Verification,
                            _sha256_file, sidecar_path)

# token texts that need CSV quoting: commas, quotes and line breaks make records span lines
TEXTS = ["a", "b,c", 'say "hi"', "two\nlines", "=1+1", "x\r\ny", "plain", ""]


class Tok:
    def decode(self, ids):
        return "".join(TEXTS[i] for i in ids)


@pytest.fixture(scope="module")
def trace():
    g = torch.Generator().manual_seed(0)
    p = torch.rand(12, len(TEXTS) + 1, generator=g)
    p[:, -1] = 0
    tr = explorer.generate(explorer.StubDenoiser(p, tokenizer=Tok()), ReMDMCap(0.3), 16, num_samples=3, seed=1,
                           progress=False, topk=2)
    assert (tr.events.kind == "remask").any() and tr.events.token.str.contains("\n").any()
    return tr


@pytest.fixture
def csv_file(tmp_path, trace):
    return trace.to_csv(tmp_path / "good.csv")


def records(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def serialize(row) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerow(row)
    return buf.getvalue()


def write_records(path, rows, sidecar_from, opened: int | None = None) -> list[int]:
    """Write ``rows`` (header first) as RFC 4180 and copy the sidecar; return each row's first line
    (1-based), counted from the line breaks of the text written before it.  ``opened=i`` puts
    one unmatched double quote at the start of row i."""
    starts, line = [], 1
    with open(path, "w", newline="", encoding="utf-8") as f:
        for i, row in enumerate(rows):
            text = ('"' if i == opened else "") + serialize(row)
            starts.append(line)
            line += text.count("\n")
            f.write(text)
    shutil.copy(sidecar_path(sidecar_from), sidecar_path(path))
    return starts


def refused(path, *fragments, names=None, **kw) -> TraceFileError:
    """Trace.read(path) raises a TraceFileError naming the file ``names`` (default: path) and the fragments."""
    with pytest.raises(TraceFileError) as info:
        Trace.read(path, **kw)
    msg = str(info.value)
    assert isinstance(info.value, ValueError)
    assert str(names or path) in msg, msg
    for frag in fragments:
        assert frag in msg, (frag, msg)
    return info.value


def a_row_after_a_multiline_token(rows) -> int:
    """Index (in rows, header = 0) of a row that comes after a token with a line break."""
    for i, row in enumerate(rows):
        if i and any("\n" in cell for cell in row):
            return i + 1
    raise AssertionError("the fixture has no multi-line token")


# ---------------------------------------------------------------------------- CSV damage
def test_truncated_mid_row(tmp_path, csv_file):
    raw = csv_file.read_bytes()
    cut = raw[: raw.index(b"\r\n", len(raw) // 2) + 12]       # a dozen bytes into some row
    damaged = tmp_path / "cut.csv"
    damaged.write_bytes(cut)
    shutil.copy(sidecar_path(csv_file), sidecar_path(damaged))
    line = cut.decode().count("\n") + 1                           # the last, partial line
    err = refused(damaged, f"line {line}", "fields where the header has")
    assert err.line == line


def test_truncated_at_a_row_boundary(tmp_path, csv_file, trace):
    rows = records(csv_file)
    damaged = tmp_path / "short.csv"
    write_records(damaged, rows[:-3], csv_file)                   # the last three events are gone
    refused(damaged, f"{len(rows) - 4} event rows but its sidecar recorded {len(trace.events)}", "sha256",
            "verify=False")


def test_one_event_row_deleted(tmp_path, csv_file, trace):
    rows = records(csv_file)
    gone = len(rows) // 2
    step = int(rows[gone][1])
    damaged = tmp_path / "deleted.csv"
    starts = write_records(damaged, rows[:gone] + rows[gone + 1:], csv_file)
    err = refused(damaged, f"step {step} has", "a row was deleted or added here")
    first_of_step = next(i for i, r in enumerate(rows[1:gone + 1], 1) if int(r[1]) == step)
    assert err.line == starts[first_of_step]


def test_a_row_whose_step_was_changed_is_named_exactly(tmp_path, csv_file):
    """Events are written in step order, so a row moved to another step is out of it: the error
    names that row's line, not the first line of a step."""
    rows = records(csv_file)
    i = next(i for i in range(2, len(rows) - 1) if int(rows[i - 1][1]) == int(rows[i][1]) == int(rows[i + 1][1]))
    last = int(rows[-1][1])
    i = next(j for j in range(i, len(rows) - 1) if int(rows[j + 1][1]) == int(rows[j][1]) < last)
    rows[i][1] = str(last)                              # a later step than the rows after it
    damaged = tmp_path / "moved.csv"
    starts = write_records(damaged, rows, csv_file)
    err = refused(damaged, "out of the step order", "its step was changed")
    assert err.line == starts[i]


def test_a_byte_that_is_not_utf8_is_named_by_its_line(tmp_path, csv_file):
    lines = csv_file.read_bytes().split(b"\r\n")
    k = len(lines) * 2 // 3
    lines[k] = lines[k].replace(b"unmask", b"unm\xe9sk", 1) if b"unmask" in lines[k] else lines[k] + b"\xe9"
    damaged = tmp_path / "latin1.csv"
    damaged.write_bytes(b"\r\n".join(lines))
    shutil.copy(sidecar_path(csv_file), sidecar_path(damaged))
    err = refused(damaged, "is not UTF-8 text")
    raw = damaged.read_bytes()
    assert err.line == raw[:raw.index(b"\xe9")].count(b"\n") + 1     # tokens may hold line breaks


def test_verify_says_when_a_sidecar_records_no_digest_of_itself(csv_file):
    """Older sidecars record no sidecar_sha256 and are read as they are; verify then says that their
    settings and steps table were not checked, rather than a plain match."""
    side = sidecar_path(csv_file)
    meta = json.loads(side.read_text())
    del meta["sidecar_sha256"]
    side.write_text(json.dumps(meta))
    v = Trace.verify(csv_file)
    assert v and "records no sidecar_sha256" in v.reason and "not checked" in v.reason


@pytest.mark.parametrize("column, value, expected", [
    ("kind", "unmsk", "one of unmask, remask"),
    ("reason", "because", "one of posterior, confidence, final_argmax"),
    ("prob", "abc", "a probability in [0, 1]"),
    ("prob", "", "a probability in [0, 1]"),           # was: could not convert string to float: ''
    ("prob", "1.5", "a probability in [0, 1]"),
    ("sigma", "0,3", "a number (or nan)"),            # a decimal comma (the writer quotes it)
    ("position", "3.5", "an integer in [0, 11]"),
    ("position", "12", "an integer in [0, 11]"),       # L = 12
    ("sample", "-1", "an integer in [0, 2]"),
    ("step", "x", "an integer in [1,"),
    ("cand1_id", "9", "an integer in [-1, 8]"),        # vocab = 9
])
def test_a_bad_value_names_its_line_and_column(tmp_path, csv_file, column, value, expected):
    rows = records(csv_file)
    i = a_row_after_a_multiline_token(rows)
    rows[i][rows[0].index(column)] = value
    damaged = tmp_path / "bad.csv"
    starts = write_records(damaged, rows, csv_file)
    if expected is None:
        err = refused(damaged, f"line {starts[i]}", "fields where the header has")
    else:
        err = refused(damaged, f"line {starts[i]}", f"column {column!r}", f"{column} is {value!r}", expected)
        assert err.column == column
    assert err.line == starts[i] and starts[i] > i + 1             # lines, not records, are counted


@pytest.mark.parametrize("where", ["middle", "last row"])
def test_an_unclosed_quote(tmp_path, csv_file, where):
    """An unmatched quote swallows the rest of the file, or is 'closed' by the next quoted token's
    quote, which then has text after it: either way the error points at the line where it opened."""
    rows = records(csv_file)
    i = a_row_after_a_multiline_token(rows) if where == "middle" else len(rows) - 1
    damaged = tmp_path / "quote.csv"
    starts = write_records(damaged, rows, csv_file, opened=i)
    refused(damaged, f"line {starts[i]}", "never closed" if where == "last row" else "broken CSV quoting")


def test_text_after_a_closing_quote(tmp_path, csv_file):
    damaged = tmp_path / "stray.csv"
    raw = csv_file.read_bytes().decode()
    assert '"b,c"' in raw
    at = raw.index('"b,c"')
    damaged.write_text(raw[:at] + '"b,c"x' + raw[at + 5:], encoding="utf-8", newline="")
    shutil.copy(sidecar_path(csv_file), sidecar_path(damaged))
    line = raw[:at].count("\n") + 1
    refused(damaged, f"line {line}", "broken CSV quoting")


def test_an_empty_file_and_a_lost_header(tmp_path, csv_file):
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    shutil.copy(sidecar_path(csv_file), sidecar_path(empty))
    refused(empty, "empty (0 bytes)")
    rows = records(csv_file)
    renamed = tmp_path / "renamed.csv"
    write_records(renamed, [["sample", "step", "pos"] + rows[0][3:]] + rows[1:], csv_file)
    err = refused(renamed, "line 1", "lacks the trace columns ['position']", "has columns a trace does not have ['pos']")
    assert err.column == "position"


def test_structural_damage_is_refused_even_with_verify_false(tmp_path, csv_file):
    rows = records(csv_file)
    rows[2][rows[0].index("kind")] = "unmsk"
    write_records(tmp_path / "bad.csv", rows, csv_file)
    refused(tmp_path / "bad.csv", "kind is 'unmsk'", verify=False)


# ---------------------------------------------------------------------------- the sidecar
def test_a_missing_sidecar(tmp_path, csv_file):
    lonely = tmp_path / "lonely.csv"
    shutil.copy(csv_file, lonely)
    err = refused(lonely, "lonely.csv.meta.json")
    assert isinstance(err, TraceSidecarMissing) and isinstance(err, FileNotFoundError)
    v = Trace.verify(lonely)
    assert isinstance(v, Verification) and not v and "no sidecar" in v.reason


def test_a_broken_sidecar(csv_file):
    side = sidecar_path(csv_file)
    text = side.read_text()
    side.write_text(text[: len(text) // 2])                     # cut short mid-JSON
    line = text[: len(text) // 2].count("\n") + 1
    err = refused(csv_file, "not valid JSON", f"line {line}", names=side)
    assert err.path == side
    v = Trace.verify(csv_file)                                # never raises
    assert not v and "cannot be read" in v.reason and side.name in v.reason
    side.write_text("[1, 2]")
    refused(csv_file, "JSON list", names=side)
    assert not Trace.verify(csv_file) and "no data_sha256" in Trace.verify(csv_file).reason
    side.write_bytes(b"\xff\xfe{")
    refused(csv_file, "cannot be read", names=side)
    assert not Trace.verify(csv_file)


@pytest.mark.parametrize("key, value, expected", [
    ("steps_table", None, "key 'steps_table'"),
    ("initial", [[1, 2], [3]], "key 'initial'"),
    ("fixed", [[True]], "fixed has shape [1, 1]"),
    ("last_step", "17", "last_step is '17'"),
    ("data_format", "xlsx", "data_format is 'xlsx'"),
    ("run_id", ..., "lacks the keys ['run_id']"),
])
def test_an_edited_sidecar_names_the_key(csv_file, key, value, expected):
    side = sidecar_path(csv_file)
    meta = json.loads(side.read_text())
    if value is ...:
        del meta[key]
    else:
        meta[key] = value
    side.write_text(json.dumps(meta))
    err = refused(csv_file, expected, names=side)
    assert err.key == key


def test_a_sidecar_sha_mismatch_is_refused_unless_verify_false(csv_file, trace):
    side = sidecar_path(csv_file)
    meta = json.loads(side.read_text())
    meta["data_sha256"] = "0" * 64
    side.write_text(json.dumps(meta))
    refused(csv_file, "sha256", "000000000000", "verify=False")
    v = Trace.verify(csv_file)
    assert not v and "changed after it was written" in v.reason
    with pytest.warns(TraceFileWarning, match="sha256") as caught:
        back = Trace.read(csv_file, verify=False)
    assert str(csv_file) in str(caught[0].message)
    assert back.complete is False and "sha256" in back.meta["incomplete_reason"]
    assert "INCOMPLETE" in repr(back)
    assert back.same_as(trace, rtol=0)                        # the data itself was fine
    g = torch.Generator().manual_seed(0)
    p = torch.rand(12, len(TEXTS) + 1, generator=g)
    p[:, -1] = 0
    model = explorer.StubDenoiser(p, tokenizer=Tok())
    with pytest.raises(ValueError, match="damaged file"):    # loaded anyway, it is not resumed
        explorer.resume(model, back, 4, progress=False)


@pytest.mark.parametrize("key, value, expected", [
    ("num_samples", 9, "num_samples is 9, but initial and fixed are [3, 12]"),
    ("seq_len", 4, "seq_len is 4, but initial and fixed are [3, 12]"),
    ("mask_id", 3, "mask_id is 3, but the unmask events replace token 8"),
])
def test_a_setting_that_contradicts_the_data_is_refused_even_with_verify_false(csv_file, key, value, expected):
    """verify=False loads an edited sidecar, but not one whose shape or mask id would mislabel the data."""
    side = sidecar_path(csv_file)
    meta = json.loads(side.read_text())
    meta[key] = value
    side.write_text(json.dumps(meta))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TraceFileWarning)
        err = refused(csv_file, expected, "Put back the sidecar written with this file", names=side, verify=False)
    assert err.key == key


@pytest.mark.parametrize("edit", ["sampler setting", "steps table", "seed"])
def test_an_edited_sidecar_that_keeps_the_data_sha_is_refused(csv_file, trace, edit):
    """Sidecar edits that the data's sha256 and event count cannot see (a sampler setting, a
    step's time, the seed) are caught by the sidecar's own sha256."""
    side = sidecar_path(csv_file)
    meta = json.loads(side.read_text())
    assert len(meta["sidecar_sha256"]) == 64
    if edit == "sampler setting":
        meta["sampler"]["eta"] = 0.9
    elif edit == "steps table":
        meta["steps_table"][0]["t"] = 0.5
    else:
        meta["seed"] += 1
    side.write_text(json.dumps(meta))
    refused(csv_file, "sidecar_sha256", "edited after it was written", "verify=False")
    v = Trace.verify(csv_file)
    assert not v and "edited after it was written" in v.reason and side.name in v.reason
    with pytest.warns(TraceFileWarning, match="sidecar_sha256"):
        back = Trace.read(csv_file, verify=False)
    assert back.complete is False and "edited" in back.meta["incomplete_reason"]


def test_a_sidecar_without_its_own_sha_still_reads(tmp_path, csv_file, trace):
    """Sidecars written before the digest existed record none; they are checked as before."""
    side = sidecar_path(csv_file)
    meta = json.loads(side.read_text())
    del meta["sidecar_sha256"]
    side.write_text(json.dumps(meta, indent=3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        back = Trace.read(csv_file)
    assert back.complete and back.same_as(trace, rtol=0) and Trace.verify(csv_file)
    again = back.to_parquet(tmp_path / "again.parquet")      # re-written: a fresh digest
    assert "sidecar_sha256" in json.loads(sidecar_path(again).read_text()) and Trace.verify(again)


def test_verify_false_loads_a_file_with_a_deleted_row(tmp_path, csv_file, trace):
    rows = records(csv_file)
    gone = len(rows) // 2
    damaged = tmp_path / "deleted.csv"
    write_records(damaged, rows[:gone] + rows[gone + 1:], csv_file)
    with pytest.warns(TraceFileWarning, match="step"):
        back = Trace.read(damaged, verify=False)
    assert not back.complete and len(back.events) == len(trace.events) - 1
    assert "deleted" in back.meta["incomplete_reason"]
    # the surviving events are the original ones
    ev = trace.events.drop(index=gone - 1).reset_index(drop=True)
    pd.testing.assert_frame_equal(back.events, ev, check_dtype=False, check_categorical=False)


def test_verify_returns_a_reason_and_never_raises(tmp_path, csv_file):
    v = Trace.verify(csv_file)
    assert v and v.ok and "matches" in v.reason
    assert not Trace.verify(tmp_path / "nothing.csv") and "no data file" in Trace.verify(tmp_path / "nothing.csv").reason
    with open(csv_file, "ab") as f:
        f.write(b"0,1,0,unmask,1,a,0.5,0.5,0.3,posterior,-1,,nan,-1,,nan\r\n")
    assert not Trace.verify(csv_file)


# ---------------------------------------------------------------------------- Parquet
def test_a_damaged_parquet_file(tmp_path, trace):
    path = trace.to_parquet(tmp_path / "t.parquet")
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    refused(path, "not a readable Parquet file")
    path.write_bytes(b"")
    refused(path, "not a readable Parquet file")


def test_a_parquet_file_with_a_bad_value_names_its_row(tmp_path, trace):
    """A Parquet file rewritten by another tool (its sidecar's sha updated too) is still checked."""
    path = trace.to_parquet(tmp_path / "t.parquet")
    df = pd.read_parquet(path)
    df.loc[4, "reason"] = "because"
    df.to_parquet(path, index=False)
    side = sidecar_path(path)
    meta = json.loads(side.read_text())
    meta["data_sha256"] = _sha256_file(path)
    side.write_text(json.dumps(meta))
    err = refused(path, "row 5", "column 'reason'", "reason is 'because'")
    assert err.row == 5
    df = pd.read_parquet(trace.to_parquet(tmp_path / "u.parquet"))
    df.drop(index=3).to_parquet(tmp_path / "u.parquet", index=False)      # a row deleted, sha fixed up
    side = sidecar_path(tmp_path / "u.parquet")
    meta = json.loads(side.read_text())
    meta["data_sha256"] = _sha256_file(tmp_path / "u.parquet")
    side.write_text(json.dumps(meta))
    err = refused(tmp_path / "u.parquet", f"{len(df) - 1} event rows but its sidecar recorded {len(df)}",
                  f"step {df.step[3]} has")
    assert err.row == 1 + int((df.step < df.step[3]).sum())


# ---------------------------------------------------------------------------- intact files
@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_an_intact_file_reads_back_losslessly_without_a_warning(tmp_path, trace, fmt):
    path = getattr(trace, f"to_{fmt}")(tmp_path / f"t.{fmt}")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        back = Trace.read(path)
    assert back.complete and "incomplete_reason" not in back.meta
    assert back.same_as(trace, rtol=0) and back.texts == trace.texts
    pd.testing.assert_frame_equal(back.events, trace.events, check_dtype=False, check_categorical=False)
    pd.testing.assert_frame_equal(back.steps, trace.steps, check_dtype=False)
    for k in range(trace.last_step + 1):
        assert torch.equal(back.state_at(k), trace.state_at(k))
    # written again, it is byte for byte the same data file
    again = getattr(back, f"to_{fmt}")(tmp_path / f"again.{fmt}")
    assert again.read_bytes() == path.read_bytes()


def test_a_trace_read_and_written_again_gives_the_same_bytes(tmp_path, trace):
    """A re-saved trace shows up unchanged in git: the data file and its sidecar (key order and the
    order of token_texts included), for both formats."""
    for fmt in ("csv", "parquet"):
        first = getattr(trace, f"to_{fmt}")(tmp_path / f"first.{fmt}")
        again = getattr(Trace.read(first), f"to_{fmt}")(tmp_path / f"again.{fmt}")
        assert again.read_bytes() == first.read_bytes(), fmt
        assert sidecar_path(again).read_bytes() == sidecar_path(first).read_bytes(), fmt


def test_a_sidecar_written_for_the_other_format_is_named_as_another_files(tmp_path, trace):
    """A Parquet file beside its CSV's sidecar (or the reverse) was told it 'changed or was cut short'
    and to restore the data file, which was intact; the format the sidecar was written for tells."""
    import shutil
    a_csv, a_pq = trace.to_csv(tmp_path / "a.csv"), trace.to_parquet(tmp_path / "a.parquet")
    for data, side in ((a_pq, a_csv), (a_csv, a_pq)):
        dst = tmp_path / f"x_{data.name}"
        shutil.copy(data, dst)
        shutil.copy(f"{side}.meta.json", f"{dst}.meta.json")
        with pytest.raises(TraceFileError, match="sidecar was written for a .* file: the sidecar belongs to another file"):
            Trace.read(dst)
        v = Trace.verify(dst)
        assert not v and "belongs to another file" in v.reason
