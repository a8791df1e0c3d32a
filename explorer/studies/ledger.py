"""What remasking did on ``orders``, in one vocabulary.

A *remask* takes a written token back to [MASK]; a later step *rewrites* that position. Every
analysis here speaks of them in the same five words:

* **hit** -- the remask's record was *broken* when the token was taken back (at the end of the
  step before the remask, the state the sampler saw); **miss** -- it was not;
* **fix** -- the rewrite turned the record from broken to not broken; **harm** -- from not broken
  to broken; **neutral** -- neither (the same token drawn again, or a change that left the record
  as it was: valid and valid, or broken and broken).

A record is *broken* when one of the rules whose fields are all written fails (``format`` is judged
only once the whole record is written): a half-written record can already be broken, a record with
masked fields and nothing wrong yet is not.

The outcome of a rewrite is the effect of that one token: the record as it stands right after the
rewrite step, against the same record with the removed token put back. Tokens rewritten in the
same step each get their own verdict against the rest.

* :func:`remask_ledger` -- one row per remask event, with its hit and its rewrite's outcome;
* :func:`ledger_summary` -- precision and recall of the remasks, fixes and harms per 100 calls;
* :func:`broken_rules` / :func:`find_fixes` / :func:`suggest_revisit` -- the same facts per rule,
  for telling one story (``explorer.viz.fix_story`` draws a row of :func:`find_fixes`);
* :func:`repair_ledger` / :func:`summarise_repairs` -- per record *episode* (a remask opens a
  complete record, later steps complete it again): ``fixed`` / ``broken`` are the fix / harm of an
  episode, with the per-step remask hazard of valid and of broken records;
* :func:`error_causes` -- why the final records are broken: rules whose fields were written in the
  same step (a clash of the schedule, which remasking can only re-roll) or apart.

    ledger = remask_ledger(trace)          # one row per remask: hit?, and fix / harm / neutral
    ledger_summary(ledger)                 # precision, recall, fixes and harms per 100 model calls
    ledger.groupby("outcome").size()       # or any other cut: by step, by field, by sample

Everything reads a recorded trace through its public API (``initial``, ``events``, ``state_at``,
``final``), so a hand-built trace with those members works as well as a generated one.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from explorer.tasks import orders
from explorer.tasks.orders import (FIELD_POS, RECORD_LEN, RECORDS_PER_SEQ, RULE_FIELDS, check_records, decode, parse,
                                   record_valid)

__all__ = ["OUTCOMES", "remask_ledger", "ledger_summary", "record_broken", "broken_rules", "find_fixes",
           "suggest_revisit", "repair_ledger", "summarise_repairs", "error_causes"]

OUTCOMES = ("fix", "harm", "neutral")
LEDGER_COLUMNS = ["sample", "step", "position", "record", "field", "removed", "hit", "broken",
                  "rewritten_at", "rewritten_to", "outcome"]

_SLOTS = [t[1:-1] if t.startswith("<") else None for t in orders.TEMPLATE]


def _word(token_id: int, mask_id: int) -> str:
    return orders.MASK if token_id == mask_id else orders.VOCAB[token_id]


class _Judge:
    """Broken rules of records (arrays of ``RECORD_LEN`` token ids), cached by their bytes: a run
    revisits few variants. :meth:`judge_all` checks many at once (one validator call per batch)."""

    def __init__(self, mask_id: int):
        self.mask_id = int(mask_id)
        self.cache: dict[bytes, tuple[str, ...]] = {}

    def __call__(self, ids) -> tuple[str, ...]:
        ids = np.asarray(ids, dtype=np.int64)
        key = ids.tobytes()
        if key not in self.cache:
            self.judge_all({key: ids})
        return self.cache[key]

    def judge_all(self, records: dict[bytes, np.ndarray], batch: int = orders.RECORDS_PER_SEQ) -> None:
        # batches of one sequence's worth of records: the length the validator expects (other lengths
        # make it re-split the text for every record)
        todo = [(k, v) for k, v in records.items() if k not in self.cache]
        for lo in range(0, len(todo), batch):
            part = todo[lo:lo + batch]
            words = [[_word(int(t), self.mask_id) for t in v] for _, v in part]
            rows = orders.check_records(" ".join(w for ws in words for w in ws))
            broken: dict[int, list[str]] = {}
            for r, rule, ok in zip(rows["record"], rows["rule"], rows["ok"]):
                if rule != "format" and not ok:
                    broken.setdefault(int(r), []).append(rule)
            for i, ((key, _), ws) in enumerate(zip(part, words)):
                rules = tuple(broken.get(i, ()))
                if not rules and orders.MASK not in ws and not orders.record_valid(orders.parse(" ".join(ws))[0]):
                    rules = ("format",)   # complete, every rule kept, yet not valid: the template is off
                self.cache[key] = rules


def record_broken(ids, mask_id: int = orders.MASK_ID) -> tuple[str, ...]:
    """The rules one record (its ``RECORD_LEN`` token ids, ``[MASK]`` allowed) breaks, in
    ``orders.RULES`` order of the checker; ``()`` when it is not broken."""
    ids = list(torch.as_tensor(ids).reshape(-1).tolist())
    if len(ids) != orders.RECORD_LEN:
        raise ValueError(f"a record is {orders.RECORD_LEN} tokens, got {len(ids)}.")
    return _Judge(mask_id)(ids)


def _check_orders(trace, what: str):
    if trace.seq_len % orders.RECORD_LEN:
        raise ValueError(f"{what} reads orders records ({orders.RECORD_LEN} tokens each); this trace has "
                         f"sequences of {trace.seq_len} tokens. Run it on an orders model.")
    if not getattr(trace, "recorded", True):
        raise ValueError(f"{what} needs a recorded trace: generate(..., record=True).")


def _calls(trace) -> int:
    """Model calls summed over the sequences (per-sequence NFE where known, else batched calls)."""
    nfe = getattr(trace, "nfe", None)
    if nfe is not None and len(nfe) == trace.num_samples:
        return int(torch.as_tensor(nfe).sum())
    return int(getattr(trace, "model_calls", 0))


def remask_ledger(trace) -> pd.DataFrame:
    """One row per remask event of a recorded ``orders`` trace, in step order:

    ``sample, step, position, record, field`` (the record slot's field, or its keyword),
    ``removed`` (the token taken back), ``hit`` (its record was broken at the end of step - 1),
    ``broken`` (the rules it broke then, comma-separated, "" for a miss), ``rewritten_at`` (the step
    that wrote the position again, -1 if none did: an interrupted run), ``rewritten_to`` and
    ``outcome`` (``"fix"``, ``"harm"`` or ``"neutral"``, see the module docstring; ``"neutral"``
    when never rewritten).

    ``attrs``: ``broken_records`` (records broken at the end of some step, the denominator of the
    recall), ``records`` (all records) and ``model_calls`` (summed over the sequences, the default
    of :func:`ledger_summary`).
    """
    _check_orders(trace, "remask_ledger")
    mask_id = int(trace.mask_id)
    judge = _Judge(mask_id)
    R = orders.RECORD_LEN
    z = torch.as_tensor(trace.initial).clone().numpy().astype(np.int64)
    n, length = z.shape
    records: dict[bytes, np.ndarray] = {}   # every record state to judge, judged in one batch below

    def seen(arr: np.ndarray) -> bytes:
        key = arr.tobytes()
        if key not in records:
            records[key] = arr.copy()
        return key

    states = [(s, r, seen(z[s, r * R:(r + 1) * R])) for s in range(n) for r in range(length // R)]
    ev = trace.events
    ev = ev[ev["kind"].isin(["unmask", "remask"])]
    order = np.argsort(ev["step"].to_numpy(), kind="stable")
    sample = ev["sample"].to_numpy()[order].astype(np.int64)
    step = ev["step"].to_numpy()[order].astype(np.int64)
    position = ev["position"].to_numpy()[order].astype(np.int64)
    remask = (ev["kind"].to_numpy()[order] == "remask")
    token = ev["token_id"].to_numpy()[order].astype(np.int64)
    rows: list[dict] = []
    judged: list[bytes] = []                                  # per ledger row: the record it was taken from
    rewrites: dict[int, tuple[bytes, bytes]] = {}             # ledger row -> (record with the new token, with the old)
    pending: dict[tuple[int, int], tuple[int, int]] = {}      # (sample, position) -> (ledger row, removed id)
    bounds = np.flatnonzero(np.diff(step)) + 1
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(step)]):
        k = int(step[lo]) if hi > lo else 0
        for e in np.flatnonzero(remask[lo:hi]) + lo:   # remasks: judged on the state the sampler saw
            s, p = int(sample[e]), int(position[e])
            r = p // R
            pending[(s, p)] = (len(rows), int(token[e]))
            judged.append(seen(z[s, r * R:(r + 1) * R]))
            rows.append({"sample": s, "step": k, "position": p, "record": r,
                         "field": _SLOTS[p % R] or orders.TEMPLATE[p % R], "removed": _word(int(token[e]), mask_id),
                         "rewritten_at": -1, "rewritten_to": ""})
        back, out = np.flatnonzero(remask[lo:hi]) + lo, np.flatnonzero(~remask[lo:hi]) + lo
        z[sample[back], position[back]] = mask_id      # a position taken back and rewritten in the same
        z[sample[out], position[out]] = token[out]     # step (a swap) ends with its new token
        for e in np.flatnonzero(~remask[lo:hi]) + lo:  # rewrites of remasked positions
            s, p = int(sample[e]), int(position[e])
            if (s, p) not in pending:
                continue
            row, removed = pending.pop((s, p))
            r = p // R
            now = z[s, r * R:(r + 1) * R].copy()
            after = seen(now)
            now[p % R] = removed
            rewrites[row] = (after, seen(now))
            rows[row].update(rewritten_at=k, rewritten_to=_word(int(token[e]), mask_id))
        for s, r in {(int(s), int(p) // R) for s, p in zip(sample[lo:hi], position[lo:hi])}:
            states.append((s, r, seen(z[s, r * R:(r + 1) * R])))
    judge.judge_all(records)
    verdict = judge.cache
    for row, key in zip(rows, judged):
        rules = verdict[key]
        row.update(hit=bool(rules), broken=",".join(rules), outcome="neutral")
    for row, (after, before) in rewrites.items():
        a, b = bool(verdict[after]), bool(verdict[before])
        rows[row]["outcome"] = "fix" if b and not a else "harm" if a and not b else "neutral"
    ever_broken = {(s, r) for s, r, key in states if verdict[key]}
    out = pd.DataFrame(rows, columns=LEDGER_COLUMNS)
    out = out.astype({"sample": "int64", "step": "int64", "position": "int64", "record": "int64",
                      "hit": "bool", "rewritten_at": "int64"})
    out.attrs.update(broken_records=len(ever_broken), records=n * (length // R), model_calls=_calls(trace))
    return out


def ledger_summary(ledger: pd.DataFrame, model_calls: int | None = None,
                   broken_records: int | None = None) -> dict:
    """Counts and rates of a :func:`remask_ledger`:

    ``remasks``, ``hits``, ``misses``; ``precision`` = hits / remasks; ``recall`` = broken records
    that got at least one hit / broken records (``broken_records``, default
    ``ledger.attrs["broken_records"]``); ``fixes``, ``harms``, ``neutral``; ``fixes_per_100_calls``
    and ``harms_per_100_calls`` = 100 x count / ``model_calls`` (default
    ``ledger.attrs["model_calls"]``: calls summed over the sequences, so the rates compare runs
    of any batch size). NaN where a denominator is zero or unknown.
    """
    calls = ledger.attrs.get("model_calls") if model_calls is None else model_calls
    broken = ledger.attrs.get("broken_records") if broken_records is None else broken_records
    remasks = len(ledger)
    hits = int(ledger["hit"].sum())
    recalled = int(ledger.loc[ledger["hit"], ["sample", "record"]].drop_duplicates().shape[0])
    counts = ledger["outcome"].value_counts()
    fixes, harms = int(counts.get("fix", 0)), int(counts.get("harm", 0))

    def ratio(a, b):
        return float(a) / float(b) if b else float("nan")

    return {"remasks": remasks, "hits": hits, "misses": remasks - hits, "precision": ratio(hits, remasks),
            "broken_records": broken if broken is not None else float("nan"),
            "recall": ratio(recalled, broken), "fixes": fixes, "harms": harms,
            "neutral": int(counts.get("neutral", 0)), "model_calls": calls if calls is not None else float("nan"),
            "fixes_per_100_calls": ratio(100 * fixes, calls), "harms_per_100_calls": ratio(100 * harms, calls)}


# ------------------------------------------------------------------------------ per rule, for a story
def broken_rules(trace, sample: int = 0, steps=None) -> pd.DataFrame:
    """Tidy: ``step, record, rule, ok, field, value, expected`` for each rule checkable at that step
    of one sample (``format`` only once nothing is masked), at ``steps`` (default: every step that
    changed the sample, its first and its last)."""
    mask_id = int(trace.mask_id)
    first = int(getattr(trace, "first_step", 0))
    if steps is None:
        ev = trace.events
        steps = sorted(set(int(k) for k in ev.loc[ev["sample"] == sample, "step"]) | {first, int(trace.last_step)})
    columns = ["step", "record", "rule", "ok", "field", "value", "expected"]
    rows = []
    for k in steps:
        words = [_word(int(t), mask_id) for t in trace.state_at(int(k))[sample]]
        df = orders.check_records(" ".join(words))
        if orders.MASK in words:
            df = df[df["rule"] != "format"]
        if len(df):
            rows.append(df.assign(step=int(k))[columns])
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=columns)


def find_fixes(trace, samples=None) -> pd.DataFrame:
    """The hits of :func:`remask_ledger` told per rule: a remask of one of the fields a rule couples,
    while that rule was broken, in a record where the rule holds at the end (the repair may need
    later rewrites too). One row per (sample, record, rule), its first such remask:

    ``sample, record, rule, broken_at`` (first step seen broken), ``remask_step, position, field,
    removed``, ``fixed_at`` (first step from which the rule holds for good), ``value_broken``,
    ``value_final`` (of the field the checker reports) and ``outcome`` (of that remask's rewrite).
    """
    columns = ["sample", "record", "rule", "broken_at", "remask_step", "position", "field", "removed",
               "fixed_at", "value_broken", "value_final", "outcome"]
    ledger = remask_ledger(trace)
    hits = ledger[ledger["hit"]]
    samples = range(trace.num_samples) if samples is None else samples
    out = []
    for s in samples:
        mine = hits[hits["sample"] == s]
        if mine.empty:
            continue
        history = broken_rules(trace, s)
        table = {key: g.set_index("step").sort_index() for key, g in history.groupby(["record", "rule"])}
        last = int(trace.last_step)
        seen = set()
        for row in mine.itertuples(index=False):
            for rule in row.broken.split(","):
                key = (row.record, rule)
                if rule not in orders.RULE_FIELDS or row.field not in orders.RULE_FIELDS[rule] or key in seen:
                    continue
                g = table.get(key)
                if g is None or last not in g.index or not bool(g.loc[last, "ok"]):
                    continue
                bad = g.index[~g["ok"].astype(bool)]
                seen.add(key)
                out.append({"sample": s, "record": row.record, "rule": rule, "broken_at": int(bad.min()),
                            "remask_step": row.step, "position": row.position, "field": row.field,
                            "removed": row.removed, "fixed_at": int(g.index[g.index > bad.max()].min()),
                            "value_broken": g.loc[g.index[g.index < row.step].max(), "value"],
                            "value_final": g.loc[last, "value"], "outcome": row.outcome})
    return pd.DataFrame(out, columns=columns)


def suggest_revisit(trace, sample: int | None = None) -> dict | None:
    """A "what if this field had been revisited?" edit for a finished run: the first rule broken at
    the end, the field of it that depends on the others (currency on country, total on price and
    quantity, ...), and the step at which that field was written.

    Returns ``{"sample", "record", "rule", "field", "position", "token", "step", "remask"}`` --
    ``explorer.resume(model, trace, d["step"], remask=d["remask"])`` (or an
    :class:`~explorer.widgets.InterventionViewer`'s ``branch``) replays the run from there with
    that field put back to [MASK]. ``sample=None`` looks through the samples in order. ``None``
    when nothing is broken.
    """
    if sample is None:
        for s in range(trace.num_samples):
            found = suggest_revisit(trace, s)
            if found is not None:
                return found
        return None
    last = int(trace.last_step)
    br = broken_rules(trace, sample, steps=[last])
    bad = br[~br["ok"].astype(bool) & br["rule"].isin(list(orders.RULE_FIELDS))]
    if bad.empty:
        return None
    row = bad.iloc[0]
    rec, rule = int(row["record"]), str(row["rule"])
    field = orders.RULE_FIELDS[rule][-1]
    position = rec * orders.RECORD_LEN + orders.FIELD_POS[field]
    ev = trace.events
    written = ev.loc[(ev["sample"] == sample) & (ev["position"] == position) & (ev["kind"] == "unmask"), "step"]
    first = int(getattr(trace, "first_step", 0))
    step = int(written.max()) if len(written) else first
    step = max(first, min(step, int(trace.num_steps) - 1))
    return {"sample": sample, "record": rec, "rule": rule, "field": field, "position": position,
            "token": _word(int(trace.state_at(last)[sample, position]), int(trace.mask_id)),
            "step": step, "remask": [position]}


# ------------------------------------------------------------------------------ per record episode, causes

def error_causes(trace) -> pd.DataFrame:
    """Why each broken rule in a recorded trace's final records broke: one row per (sample,
    record, rule) that the final record breaks, with ``steps`` (the step at which each of the
    rule's fields was last unmasked, in ``RULE_FIELDS`` order), ``together``: True when two of
    those fields were unmasked **in the same step**, and ``remasked``: True when one of them was
    remasked at some step of the run. Fields unmasked together are drawn independently from
    their marginals (reference §1.2, the factorised reverse step), so a clash between them is a
    property of the schedule, not of the model. ``together=False`` means the last of them was
    written while the other was in view: with ``remasked`` a remask changed one side; without,
    the model broke the rule (a model error, or a knock-on of an earlier clash in the record).
    """
    ev = trace.events
    remasked = set(zip(*ev.loc[ev["kind"] == "remask", ["sample", "position"]].to_numpy().T))
    ev = ev[ev["kind"] == "unmask"]
    last = ev.groupby(["sample", "position"])["step"].max()
    rows = []
    for i, ids in enumerate(trace.final):
        for _, bad in check_records(decode(ids)).query("not ok").iterrows():
            rule, r = bad["rule"], int(bad["record"])
            if rule not in RULE_FIELDS:
                continue
            where = [r * RECORD_LEN + FIELD_POS[f] for f in RULE_FIELDS[rule]]
            steps = [int(last.get((i, p), -1)) for p in where]
            known = [s for s in steps if s >= 0]
            rows.append({"sample": i, "record": r, "rule": rule, "steps": steps,
                         "together": len(known) != len(set(known)),
                         "remasked": any((i, p) in remasked for p in where)})
    return pd.DataFrame(rows, columns=["sample", "record", "rule", "steps", "together", "remasked"])


def repair_ledger(trace) -> pd.DataFrame:
    """What remasking did to each record, per *episode*, read off a recorded trace (``record=True``).

    A record is *complete* at step k when none of its 16 tokens is masked. Whenever a remask opens
    a complete record and later steps complete it again, that is one *episode*; the ledger has one
    row per episode: ``sample, record, opened`` (the step whose remask opened it), ``closed`` (the
    step that completed it again, -1 if it never was), ``before_valid``, ``after_valid`` and
    ``tokens_changed`` (positions that differ between the two complete versions). ``fixed`` =
    invalid before, valid after; ``broken`` = the reverse.

    ``ledger.attrs["exposure"]`` counts (record, step) pairs in which a complete record was
    valid / invalid and could have been remasked in the next step, so ``opened / exposure`` is the
    per-step remask hazard of valid and of invalid records: equal hazards mean the sampler does not
    aim its remasks at the broken records.
    """
    mask_id = int(trace.mask_id)
    cache: dict[tuple, bool] = {}

    def valid(rec: tuple) -> bool:
        if rec not in cache:
            cache[rec] = record_valid(parse(decode(rec))[0])
        return cache[rec]

    open_at: dict[tuple[int, int], tuple[int, tuple, bool]] = {}
    rows = []
    exposure = {"valid": 0, "invalid": 0}
    prev = None
    for k in range(trace.last_step + 1):
        z = trace.state_at(k).reshape(-1, RECORDS_PER_SEQ, RECORD_LEN)
        complete = (z != mask_id).all(-1)
        for i, r in zip(*torch.nonzero(complete | (prev if prev is not None else complete),
                                       as_tuple=True)):
            i, r = int(i), int(r)
            key = (i, r)
            if complete[i, r]:
                rec = tuple(z[i, r].tolist())
                if key in open_at:  # completed again: close the episode
                    opened, before, was_valid = open_at.pop(key)
                    rows.append({"sample": i, "record": r, "opened": opened, "closed": k,
                                 "before_valid": was_valid, "after_valid": valid(rec),
                                 "tokens_changed": sum(a != b for a, b in zip(before, rec))})
                if k < trace.last_step:
                    exposure["valid" if valid(rec) else "invalid"] += 1
            elif prev is not None and prev[i, r]:  # a remask opened a complete record
                before = tuple(prev_z[i, r].tolist())
                open_at[key] = (k, before, valid(before))
        prev, prev_z = complete, z
    for (i, r), (opened, before, was_valid) in open_at.items():
        rows.append({"sample": i, "record": r, "opened": opened, "closed": -1,
                     "before_valid": was_valid, "after_valid": False, "tokens_changed": -1})
    out = pd.DataFrame(rows, columns=["sample", "record", "opened", "closed", "before_valid",
                                      "after_valid", "tokens_changed"])
    out = out.sort_values(["sample", "record", "opened"], ignore_index=True)
    out.attrs["exposure"] = exposure
    return out


def summarise_repairs(ledger: pd.DataFrame) -> dict:
    """Counts from :func:`repair_ledger`: episodes, fixed, broken, and the per-step remask hazard
    of complete valid vs complete invalid records."""
    closed = ledger[ledger.closed >= 0]
    exp = ledger.attrs.get("exposure", {})
    opened_valid = int(ledger.before_valid.sum())
    opened_invalid = int((~ledger.before_valid.astype(bool)).sum())
    return {
        "episodes": len(ledger),
        "fixed": int((~closed.before_valid.astype(bool) & closed.after_valid.astype(bool)).sum()),
        "broken": int((closed.before_valid.astype(bool) & ~closed.after_valid.astype(bool)).sum()),
        "redrawn_same": int((closed.tokens_changed == 0).sum()),
        "hazard_valid": opened_valid / exp["valid"] if exp.get("valid") else float("nan"),
        "hazard_invalid": opened_invalid / exp["invalid"] if exp.get("invalid") else float("nan"),
    }
