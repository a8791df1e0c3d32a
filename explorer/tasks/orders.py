"""Synthetic order records: a small language whose fields are tied together by business rules.

One sequence is ``RECORDS_PER_SEQ = 16`` records of ``RECORD_LEN = 16`` word tokens, so
``SEQ_LEN = 256`` exactly (no padding); each record reads::

    order france eur 20% chair furniture 120 x 3 = 360 ordered 04 shipped 09 ;

Field by field (positions inside a record)::

    0 order  1 country  2 currency  3 tax  4 item  5 category  6 price  7 x  8 qty  9 =
    10 total  11 ordered  12 order day  13 shipped  14 ship day  15 ;

The rules a model must learn (``RULES``):

* ``currency``: the currency is the country's (``COUNTRIES``);
* ``tax``:      the tax rate is the country's;
* ``category``: the category is the item's (``ITEMS``);
* ``price``:    the unit price is the item's;
* ``total``:    total = price x qty, as written (one word token, e.g. ``360``);
* ``dates``:    the order ships 1 to 7 days after it is ordered (days of one month);
* ``format``:   the fixed template, each field drawn from its own vocabulary.

Why this makes remasking visible: every rule couples two or more fields that can sit anywhere
in the decoding order. A model that decodes one token at a time conditions each field on the
fields already written, so it can keep every rule. When few steps decode many tokens at once,
coupled fields are drawn *independently* from their marginals in the same step (say ``france``
and ``jpy``), and the record breaks a rule; MDLM can never revisit a decoded token, ReMDM can.

Why 16 records in a sequence: under MDLM's log-linear schedule each token's unmask step is
uniform over the T steps, so two coupled fields of a record share a step with probability 1/T
whatever else the sequence holds. A record's chance of a clash is therefore set by T, and at
"T = 4L" by L: more records per sequence, same records, fewer clashes per record. With 4 records
(L = 64) even a perfect model (``explorer.tasks.orders_oracle``) keeps only 98.3 % of its
records valid at T = 4L = 256 steps; with 16 (L = 256, T = 1024) it keeps 99.4 %. Few steps
still break many records: at T = L/8 = 32 steps (8 tokens a step) it keeps 85 %.

Interface shared with ``explorer.tasks.stories`` and used by ``explorer.train``:
``build_tokenizer()``, ``SEQ_LEN``, ``batches(split, batch_size, seed)``, ``eval_tensor(n, seed)``.
Validator: ``parse``, ``check``, ``check_records``, ``record_validity``, ``is_valid``, ``RULES``.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import pandas as pd
import torch

NAME = "orders"
RECORD_LEN = 16
RECORDS_PER_SEQ = 16
SEQ_LEN = RECORD_LEN * RECORDS_PER_SEQ

# country -> (currency, tax rate)
COUNTRIES: dict[str, tuple[str, str]] = {
    "france": ("eur", "20%"),
    "germany": ("eur", "19%"),
    "italy": ("eur", "22%"),
    "spain": ("eur", "21%"),
    "uk": ("gbp", "20%"),
    "sweden": ("sek", "25%"),
    "poland": ("pln", "23%"),
    "switzerland": ("chf", "8%"),
    "japan": ("jpy", "10%"),
    "canada": ("cad", "5%"),
}
# item -> (category, unit price); prices are all distinct and >= 30, so no price or total
# is spelled like a quantity ("1".."5") or a day ("01".."28").
ITEMS: dict[str, tuple[str, int]] = {
    "laptop": ("electronics", 900),
    "phone": ("electronics", 600),
    "monitor": ("electronics", 250),
    "headphones": ("electronics", 80),
    "novel": ("books", 35),
    "cookbook": ("books", 40),
    "atlas": ("books", 65),
    "comic": ("books", 30),
    "desk": ("furniture", 300),
    "chair": ("furniture", 120),
    "lamp": ("furniture", 45),
    "shelf": ("furniture", 90),
    "kettle": ("kitchen", 55),
    "blender": ("kitchen", 70),
    "pan": ("kitchen", 48),
    "knife": ("kitchen", 60),
}
QTY_MAX = 5
LAST_ORDER_DAY = 21
MAX_SHIP_DELAY = 7  # ship day = order day + 1..7, so ship days run up to 28

RULES: tuple[str, ...] = ("format", "currency", "tax", "category", "price", "total", "dates")

# The template: a keyword (str) or the name of a field (an entry of FIELD_DOMAINS).
TEMPLATE: tuple[str, ...] = (
    "order", "<country>", "<currency>", "<tax>", "<item>", "<category>", "<price>", "x", "<qty>",
    "=", "<total>", "ordered", "<order_day>", "shipped", "<ship_day>", ";",
)
assert len(TEMPLATE) == RECORD_LEN
FIELDS = tuple(t[1:-1] for t in TEMPLATE if t.startswith("<"))
FIELD_POS: dict[str, int] = {name: TEMPLATE.index(f"<{name}>") for name in FIELDS}  # inside a record
KEYWORDS = tuple(dict.fromkeys(t for t in TEMPLATE if not t.startswith("<")))


def _day(d: int) -> str:
    return f"{d:02d}"


def _sorted_unique(xs):
    return list(dict.fromkeys(xs))


_PRICES = sorted({p for _, p in ITEMS.values()})
_TOTALS = sorted({p * q for p in _PRICES for q in range(1, QTY_MAX + 1)})
FIELD_DOMAINS: dict[str, list[str]] = {
    "country": list(COUNTRIES),
    "currency": _sorted_unique(c for c, _ in COUNTRIES.values()),
    "tax": _sorted_unique(t for _, t in COUNTRIES.values()),
    "item": list(ITEMS),
    "category": _sorted_unique(c for c, _ in ITEMS.values()),
    "price": [str(p) for p in _PRICES],
    "qty": [str(q) for q in range(1, QTY_MAX + 1)],
    "total": [str(t) for t in _TOTALS],
    "order_day": [_day(d) for d in range(1, LAST_ORDER_DAY + 1)],
    "ship_day": [_day(d) for d in range(1, LAST_ORDER_DAY + MAX_SHIP_DELAY + 1)],
}

UNK, MASK = "[UNK]", "[MASK]"


def vocabulary() -> list[str]:
    """All tokens, in id order: [UNK] first, [MASK] last (mask_id = vocab_size - 1, as mdlm-owt)."""
    words = [UNK, *KEYWORDS]
    for name in FIELDS:
        words += FIELD_DOMAINS[name]
    return [*_sorted_unique(words), MASK]


VOCAB = vocabulary()
TOKEN_ID = {w: i for i, w in enumerate(VOCAB)}
VOCAB_SIZE = len(VOCAB)
MASK_ID = VOCAB_SIZE - 1


# The positions a model is always given, like BOS tokens: ``{position: token id}``, the word
# "order" that starts each record. Why: the DiT has no absolute position embedding (rotary only,
# as mdlm-owt), so on the all-mask input of the first step every position has the same hidden
# state and the same p(x0). A fixed template then has no phase: the first tokens decoded pick one
# at random and the records come out cyclically shifted ("... x 3 = 360 ordered 04 shipped 09 ;
# order france ..."). An anchor at each record start gives every position its phase from a
# neighbour at most 15 tokens away. Exported into config.json as ``fixed_tokens``; the engine
# never masks or changes such positions.
FIXED_TOKENS: dict[int, int] = {r * RECORD_LEN: TOKEN_ID["order"] for r in range(RECORDS_PER_SEQ)}


def build_tokenizer():
    """A word-level HF tokenizer (``tokenizers.Tokenizer``): whitespace split, fixed vocabulary."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit

    tok = Tokenizer(WordLevel(vocab=dict(TOKEN_ID), unk_token=UNK))
    tok.pre_tokenizer = WhitespaceSplit()
    tok.add_special_tokens([UNK, MASK])
    return tok


# ---------------------------------------------------------------------------------------------
# Generator (vectorised: it feeds training, so it works on ids, not text)
# ---------------------------------------------------------------------------------------------

def _ids(words) -> torch.Tensor:
    return torch.tensor([TOKEN_ID[w] for w in words], dtype=torch.long)


_COUNTRY_IDS = _ids(COUNTRIES)
_CURRENCY_IDS = _ids([c for c, _ in COUNTRIES.values()])
_TAX_IDS = _ids([t for _, t in COUNTRIES.values()])
_ITEM_IDS = _ids(ITEMS)
_CATEGORY_IDS = _ids([c for c, _ in ITEMS.values()])
_PRICE_IDS = _ids([str(p) for _, p in ITEMS.values()])
_ITEM_PRICES = torch.tensor([p for _, p in ITEMS.values()], dtype=torch.long)
_TOTAL_ID = {t: TOKEN_ID[str(t)] for t in _TOTALS}
_TOTAL_LOOKUP = torch.zeros(max(_TOTALS) + 1, dtype=torch.long)
for _t, _i in _TOTAL_ID.items():
    _TOTAL_LOOKUP[_t] = _i
_QTY_IDS = _ids(FIELD_DOMAINS["qty"])  # index q - 1
_DAY_IDS = _ids(FIELD_DOMAINS["ship_day"])  # index d - 1


def sample_ids(n: int, generator: torch.Generator) -> torch.LongTensor:
    """``n`` sequences of token ids, ``[n, SEQ_LEN]``, drawn with ``generator``."""
    shape = (n, RECORDS_PER_SEQ)
    country = torch.randint(len(COUNTRIES), shape, generator=generator)
    item = torch.randint(len(ITEMS), shape, generator=generator)
    qty = torch.randint(1, QTY_MAX + 1, shape, generator=generator)
    order_day = torch.randint(1, LAST_ORDER_DAY + 1, shape, generator=generator)
    ship_day = order_day + torch.randint(1, MAX_SHIP_DELAY + 1, shape, generator=generator)

    rec = torch.empty(n, RECORDS_PER_SEQ, RECORD_LEN, dtype=torch.long)
    for pos, slot in enumerate(TEMPLATE):
        if not slot.startswith("<"):
            rec[..., pos] = TOKEN_ID[slot]
    rec[..., FIELD_POS["country"]] = _COUNTRY_IDS[country]
    rec[..., FIELD_POS["currency"]] = _CURRENCY_IDS[country]
    rec[..., FIELD_POS["tax"]] = _TAX_IDS[country]
    rec[..., FIELD_POS["item"]] = _ITEM_IDS[item]
    rec[..., FIELD_POS["category"]] = _CATEGORY_IDS[item]
    rec[..., FIELD_POS["price"]] = _PRICE_IDS[item]
    rec[..., FIELD_POS["qty"]] = _QTY_IDS[qty - 1]
    rec[..., FIELD_POS["total"]] = _TOTAL_LOOKUP[_ITEM_PRICES[item] * qty]
    rec[..., FIELD_POS["order_day"]] = _DAY_IDS[order_day - 1]
    rec[..., FIELD_POS["ship_day"]] = _DAY_IDS[ship_day - 1]
    return rec.reshape(n, SEQ_LEN)


# Disjoint random streams for the two splits (the space of sequences is ~1e22, so a train and a
# held-out sequence essentially never coincide; the streams keep them apart by construction of
# the seeds, not by rejection).
_SPLIT_OFFSET = {"train": 0, "valid": 1_000_003, "test": 2_000_029}


def _generator(split: str, seed: int) -> torch.Generator:
    if split not in _SPLIT_OFFSET:
        raise ValueError(f"split must be one of {sorted(_SPLIT_OFFSET)}, got {split!r}")
    return torch.Generator().manual_seed(int(seed) * 7_919 + _SPLIT_OFFSET[split])


def batches(split: str, batch_size: int, seed: int) -> Iterator[torch.LongTensor]:
    """An endless, seeded stream of ``[batch_size, SEQ_LEN]`` id tensors."""
    gen = _generator(split, seed)
    while True:
        yield sample_ids(batch_size, gen)


def eval_tensor(n: int, seed: int = 0) -> torch.LongTensor:
    """A fixed held-out set of ``n`` sequences (split ``valid``)."""
    return sample_ids(n, _generator("valid", seed))


def decode(ids) -> str:
    return " ".join(VOCAB[int(i)] for i in ids)


def generate(n: int, seed: int = 0, split: str = "train") -> list[str]:
    """``n`` valid sequences as text (each ``RECORDS_PER_SEQ`` records)."""
    return [decode(row) for row in sample_ids(n, _generator(split, seed))]


# ---------------------------------------------------------------------------------------------
# Validator
# ---------------------------------------------------------------------------------------------

def parse(text: str) -> list[dict]:
    """Split a sequence into records, by position (the template is fixed).

    Each record is a dict ``{field: token}`` for the fields of ``FIELDS`` plus ``"tokens"``
    (its raw tokens). A short last record keeps what is there; missing fields are ``None``.
    """
    words = text.split()
    n_rec = max(1, -(-len(words) // RECORD_LEN))
    out = []
    for r in range(n_rec):
        toks = words[r * RECORD_LEN:(r + 1) * RECORD_LEN]
        rec = {"tokens": toks}
        for pos, slot in enumerate(TEMPLATE):
            if slot.startswith("<"):
                rec[slot[1:-1]] = toks[pos] if pos < len(toks) else None
        out.append(rec)
    return out


def _as_int(tok):
    try:
        return int(tok)
    except (TypeError, ValueError):
        return None


def _record_rows(r: int, rec: dict) -> list[dict]:
    rows = []

    def row(rule, ok, field, value, expected=""):
        rows.append({"record": r, "rule": rule, "ok": bool(ok), "field": field,
                     "value": value, "expected": expected})

    # format: keywords in place, each field in its own domain
    toks = rec["tokens"]
    bad = []
    if len(toks) != RECORD_LEN:
        bad.append(f"{len(toks)} tokens")
    for pos, slot in enumerate(TEMPLATE):
        tok = toks[pos] if pos < len(toks) else None
        if tok is None:
            continue
        if slot.startswith("<"):
            if tok not in FIELD_DOMAINS[slot[1:-1]]:
                bad.append(f"{slot[1:-1]}={tok}")
        elif tok != slot:
            bad.append(f"pos{pos}={tok}")
    row("format", not bad, "template", "; ".join(bad), "" if not bad else "the record template")

    def known(field):
        return rec.get(field) in FIELD_DOMAINS[field]

    if known("country") and known("currency"):
        want = COUNTRIES[rec["country"]][0]
        row("currency", rec["currency"] == want, "currency", rec["currency"], want)
    if known("country") and known("tax"):
        want = COUNTRIES[rec["country"]][1]
        row("tax", rec["tax"] == want, "tax", rec["tax"], want)
    if known("item") and known("category"):
        want = ITEMS[rec["item"]][0]
        row("category", rec["category"] == want, "category", rec["category"], want)
    if known("item") and known("price"):
        want = str(ITEMS[rec["item"]][1])
        row("price", rec["price"] == want, "price", rec["price"], want)
    if known("price") and known("qty") and known("total"):
        want = str(int(rec["price"]) * int(rec["qty"]))
        row("total", rec["total"] == want, "total", rec["total"], want)
    if known("order_day") and known("ship_day"):
        o, s = _as_int(rec["order_day"]), _as_int(rec["ship_day"])
        row("dates", 1 <= s - o <= MAX_SHIP_DELAY, "ship_day", rec["ship_day"],
            f"{_day(o + 1)}..{_day(o + MAX_SHIP_DELAY)}")
    return rows


def check_records(text: str) -> pd.DataFrame:
    """Per-record detail, one row per (record, rule): record, rule, ok, field, value, expected.

    A rule whose fields do not parse (a field outside its vocabulary) is not evaluated for that
    record and has no row; the ``format`` rule reports the unparseable field instead. A sequence
    with the wrong number of tokens fails ``format`` in every record it touches.
    """
    recs = parse(text)
    rows = [row for r, rec in enumerate(recs) for row in _record_rows(r, rec)]
    if len(text.split()) != SEQ_LEN:
        for row in rows:
            if row["rule"] == "format" and row["ok"]:
                row.update(ok=False, value=f"sequence of {len(text.split())} tokens",
                           expected=f"{SEQ_LEN} tokens")
    return pd.DataFrame(rows, columns=["record", "rule", "ok", "field", "value", "expected"])


def check(text: str) -> dict[str, bool]:
    """``{rule: True if every record of ``text`` keeps it}``."""
    df = check_records(text)
    return {rule: bool(df.loc[df.rule == rule, "ok"].all()) for rule in RULES}


def record_validity(text: str) -> list[bool]:
    """One bool per record: does it keep every rule?"""
    df = check_records(text)
    return [bool(g["ok"].all()) and "format" in set(g["rule"]) for _, g in df.groupby("record")]


def record_valid(rec: dict) -> bool:
    """Does one parsed record (an item of :func:`parse`) keep every rule? Unlike
    :func:`record_validity` it does not look at the sequence's length."""
    rows = _record_rows(0, rec)
    return all(r["ok"] for r in rows) and any(r["rule"] == "format" for r in rows)


def is_valid(text: str) -> bool:
    return all(check(text).values())


def validity_table(texts: list[str]) -> pd.DataFrame:
    """Long form over many sequences: sample, record, rule, ok (one row per record and rule)."""
    frames = []
    for i, text in enumerate(texts):
        df = check_records(text)
        df.insert(0, "sample", i)
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


# ---------------------------------------------------------------------------------------------
# Measuring a sampler: validity of the records a model generates
# ---------------------------------------------------------------------------------------------

def record_table(texts: Sequence[str]) -> pd.DataFrame:
    """One row per record of every text: sample, record, one bool column per rule of ``RULES``
    (True = kept), then ``valid`` (every rule kept).

    A rule that cannot be evaluated because one of its fields does not parse counts as kept: the
    ``format`` column carries that failure, so such a record is never valid.
    """
    rows = []
    for i, text in enumerate(texts):
        df = check_records(text)
        for r, g in df.groupby("record"):
            kept = dict(zip(g.rule, g.ok))
            row = {"sample": i, "record": int(r)}
            row.update({rule: bool(kept.get(rule, True)) for rule in RULES})
            row["valid"] = all(row[rule] for rule in RULES)
            rows.append(row)
    return pd.DataFrame(rows, columns=["sample", "record", *RULES, "valid"])


def sampler_validity(model, sampler, steps: int, num_samples: int, seed: int = 0,
                     batch_size: int | None = None, repairs: bool = False,
                     causes: bool = False) -> pd.DataFrame:
    """Generate ``num_samples`` sequences and check every record: :func:`record_table` of them,
    with ``model_calls`` and ``seconds`` in ``attrs``. Diagnostics (they record the run):
    ``repairs=True`` adds the :func:`summarise_repairs` of its :func:`repair_ledger` as
    ``attrs["repairs"]``; ``causes=True`` adds ``attrs["causes"]``: how many rules the final records
    break and how many of those had fields unmasked in the same step (:func:`error_causes`)."""
    from explorer.engine import generate

    # a model that does not declare its fixed tokens gets the anchor as a prompt (same law)
    prompt = None if getattr(model, "fixed_tokens", None) else dict(FIXED_TOKENS)
    trace = generate(model, sampler, steps, num_samples=num_samples, seed=seed,
                     record=repairs or causes, progress=False, batch_size=batch_size, prompt=prompt)
    out = record_table([decode(ids) for ids in trace.final])
    out.attrs.update(model_calls=trace.model_calls, seconds=trace.meta.get("wall_seconds"))
    if repairs:
        out.attrs["repairs"] = summarise_repairs(repair_ledger(trace))
    if causes:
        c = error_causes(trace)
        out.attrs["causes"] = {"broken_rules": len(c), "decoded_together": int(c["together"].sum()),
                               "together_share": float(c["together"].mean()) if len(c) else float("nan")}
    return out


def summarise_validity(records: pd.DataFrame) -> dict:
    """Fraction of valid records with a standard error that treats each sequence as a cluster
    (its records share one generation; ``explorer.metrics.validity.cluster_stderr``), plus the
    violation rate of each rule."""
    from explorer.metrics.validity import cluster_stderr

    by_seq = records.groupby("sample")["valid"]
    out = {
        "sequences": by_seq.ngroups,
        "records": len(records),
        "valid": float(records["valid"].mean()),
        "valid_se": cluster_stderr(by_seq.sum().to_numpy(), by_seq.size().to_numpy()),
        "sequence_valid": float(records.groupby("sample")["valid"].all().mean()),
    }
    for rule in RULES:
        out[f"broken_{rule}"] = float(1 - records[rule].mean())
    return out


# The fields each rule couples (``format`` couples none).
RULE_FIELDS: dict[str, tuple[str, ...]] = {
    "currency": ("country", "currency"),
    "tax": ("country", "tax"),
    "category": ("item", "category"),
    "price": ("item", "price"),
    "total": ("price", "qty", "total"),
    "dates": ("order_day", "ship_day"),
}


def error_causes(trace) -> pd.DataFrame:
    """Why each broken rule in a recorded trace's final records broke: one row per (sample,
    record, rule) that the final record breaks, with ``steps`` (the step at which each of the
    rule's fields was last unmasked, in ``RULE_FIELDS`` order) and ``together``: True when two of
    those fields were unmasked **in the same step**. Such fields are drawn independently from
    their marginals (reference §1.2, the factorised reverse step), so a clash between them is a
    property of the schedule, not of the model; ``together=False`` means the model broke the
    rule while seeing the other field (a model error, or a remask that changed one side).
    """
    ev = trace.events
    ev = ev[ev["kind"] == "unmask"]
    last = ev.groupby(["sample", "position"])["step"].max()
    rows = []
    for i, ids in enumerate(trace.final):
        for _, bad in check_records(decode(ids)).query("not ok").iterrows():
            rule, r = bad["rule"], int(bad["record"])
            if rule not in RULE_FIELDS:
                continue
            steps = [int(last.get((i, r * RECORD_LEN + FIELD_POS[f]), -1)) for f in RULE_FIELDS[rule]]
            known = [s for s in steps if s >= 0]
            rows.append({"sample": i, "record": r, "rule": rule, "steps": steps,
                         "together": len(known) != len(set(known))})
    return pd.DataFrame(rows, columns=["sample", "record", "rule", "steps", "together"])


def repair_ledger(trace) -> pd.DataFrame:
    """What remasking did to each record, read off a recorded trace (``record=True``).

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


def parse_sampler_spec(spec: str):
    """``"remdm-cap:eta=0.02"`` -> ``ReMDMCap(eta=0.02)``; ``"mdlm"`` -> ``MDLM()``. Settings are
    separated by ``:`` as in ``explorer sweep`` (``,`` is accepted too, since this CLI takes one
    spec per argument): ``"remdm-loop:eta=0.02:nucleus_p=0.9"``."""
    from explorer.sweep import parse_sampler

    return parse_sampler(spec.replace(",", ":"))


def evaluate(argv: list[str] | None = None) -> pd.DataFrame:
    """CLI: validity of generated records for a grid of samplers x steps, as a tidy CSV."""
    import argparse
    import json
    import time

    p = argparse.ArgumentParser(prog="python -m explorer.tasks.orders evaluate")
    p.add_argument("--model", default="orders", help="a shipped name or a model directory")
    p.add_argument("--samplers", nargs="+", default=["mdlm"], help='e.g. mdlm "remdm-cap:eta=0.02"')
    p.add_argument("--steps", nargs="+", type=int, default=[SEQ_LEN // 4, 4 * SEQ_LEN])
    p.add_argument("--samples", type=int, default=128, help=f"sequences per cell ({RECORDS_PER_SEQ} records each)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default=None, help="CSV to write (rows are appended as cells finish)")
    p.add_argument("--repairs", action="store_true",
                   help="record each run and add what remasking did to the records (repair_ledger): "
                        "episodes, fixed, broken, remask hazard of valid vs invalid records")
    p.add_argument("--causes", action="store_true",
                   help="record each run and count the broken rules whose fields were unmasked in the "
                        "same step (error_causes): clashes of the schedule, not of the model")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from explorer.models.loading import load_model

    model = load_model(args.model)
    rows = []
    for spec in args.samplers:
        sampler = parse_sampler_spec(spec)
        for steps in args.steps:
            t0 = time.time()
            recs = sampler_validity(model, sampler, steps, args.samples, seed=args.seed,
                                    repairs=args.repairs, causes=args.causes)
            row = {"sampler": sampler.name, "spec": spec, "settings": json.dumps(sampler.config),
                   "steps": steps, "steps_over_L": steps / SEQ_LEN, **summarise_validity(recs),
                   "model_calls": recs.attrs.get("model_calls"), "seconds": time.time() - t0,
                   "seed": args.seed, **recs.attrs.get("repairs", {}), **recs.attrs.get("causes", {})}
            rows.append(row)
            print(f"{spec:28s} T={steps:4d}  valid {row['valid']:.4f} +- {row['valid_se']:.4f} "
                  f"({row['records']} records, {row['seconds']:.0f}s)", flush=True)
            if args.out:
                from explorer.io import atomic_write
                atomic_write(args.out, lambda tmp: pd.DataFrame(rows).to_csv(tmp, index=False))
    return pd.DataFrame(rows)


def data_entropy_per_token() -> float:
    """Exact entropy of the generator, nats per token: the floor of any model's NELBO."""
    import math
    per_record = (math.log(len(COUNTRIES)) + math.log(len(ITEMS)) + math.log(QTY_MAX)
                  + math.log(LAST_ORDER_DAY) + math.log(MAX_SHIP_DELAY))
    return per_record / RECORD_LEN


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] == ["evaluate"]:
        evaluate(sys.argv[2:])
    else:
        print("usage: python -m explorer.tasks.orders evaluate [--model orders] [--samplers ...] "
              "[--steps ...] [--samples N] [--out file.csv]")
