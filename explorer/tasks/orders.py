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

This module is the task's *definition* and imports nothing else of ``explorer``: everything imports
it. What studies samplers on the task (``sampler_validity``, ``error_causes``, ``repair_ledger``, the
``evaluate`` command) sits on top of the engine in :mod:`explorer.studies.orders`.
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


def writes_records(model) -> bool:
    """Whether ``model`` writes this task's sequences: a canvas of SEQ_LEN tokens over this
    vocabulary (the shipped ``orders`` model and the oracle do). The metrics that read orders
    records, or that read only stories, ask this before a sweep starts."""
    return (getattr(model, "seq_len", None), getattr(model, "vocab_size", None)) == (SEQ_LEN, VOCAB_SIZE)


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
# Records as a table (what explorer.studies.orders measures samplers with)
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


# The fields each rule couples (``format`` couples none).
RULE_FIELDS: dict[str, tuple[str, ...]] = {
    "currency": ("country", "currency"),
    "tax": ("country", "tax"),
    "category": ("item", "category"),
    "price": ("item", "price"),
    "total": ("price", "qty", "total"),
    "dates": ("order_day", "ship_day"),
}


def data_entropy_per_token() -> float:
    """Exact entropy of the generator, nats per token: the floor of any model's NELBO."""
    import math
    per_record = (math.log(len(COUNTRIES)) + math.log(len(ITEMS)) + math.log(QTY_MAX)
                  + math.log(LAST_ORDER_DAY) + math.log(MAX_SHIP_DELAY))
    return per_record / RECORD_LEN

