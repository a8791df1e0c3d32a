"""The orders task: seeded generator, exact validator (each rule alone), word-level tokenizer; and
the studies run on it (explorer.studies.orders: sampler validity; explorer.studies.ledger: the
repair ledger and error causes, imported by studies.orders under the same names)."""
from __future__ import annotations

import pytest
import torch
from tokenizers import Tokenizer

from explorer.studies import orders as studies
from explorer.tasks import get_task, orders

# Four hand-written valid records of 16 tokens, repeated to fill one sequence of 16 records.
FOUR = (
    "order france eur 20% chair furniture 120 x 3 = 360 ordered 04 shipped 09 ; "
    "order japan jpy 10% novel books 35 x 1 = 35 ordered 21 shipped 28 ; "
    "order canada cad 5% laptop electronics 900 x 5 = 4500 ordered 01 shipped 02 ; "
    "order uk gbp 20% pan kitchen 48 x 2 = 96 ordered 10 shipped 17 ;"
)
VALID = " ".join([FOUR] * (orders.RECORDS_PER_SEQ // 4))


def edit(text: str, record: int, pos: int, token: str) -> str:
    words = text.split()
    words[record * orders.RECORD_LEN + pos] = token
    return " ".join(words)


def field_pos(name: str) -> int:
    return orders.TEMPLATE.index(f"<{name}>")


def broken_rules(text: str) -> set[str]:
    return {rule for rule, ok in orders.check(text).items() if not ok}


def test_shape_and_interface():
    assert orders.SEQ_LEN == 256 == orders.RECORD_LEN * orders.RECORDS_PER_SEQ
    assert get_task("orders") is orders
    batch = next(orders.batches("train", 5, seed=0))
    assert batch.shape == (5, 256) and batch.dtype == torch.long
    assert int(batch.max()) < orders.MASK_ID  # data never holds the mask
    for pos, tok in orders.FIXED_TOKENS.items():  # the anchor the sampler pins is always there
        assert (batch[:, pos] == tok).all()


def test_generator_is_deterministic_per_seed():
    assert orders.generate(6, seed=3) == orders.generate(6, seed=3)
    assert orders.generate(6, seed=3) != orders.generate(6, seed=4)
    a, b = orders.batches("train", 4, seed=1), orders.batches("train", 4, seed=1)
    for _ in range(3):
        assert torch.equal(next(a), next(b))
    assert torch.equal(orders.eval_tensor(8, seed=0), orders.eval_tensor(8, seed=0))
    assert not torch.equal(orders.eval_tensor(8, seed=0), next(orders.batches("train", 8, seed=0)))


def test_generated_records_are_valid_and_varied():
    texts = orders.generate(200, seed=0)
    assert all(orders.is_valid(t) for t in texts)
    recs = [r for t in texts for r in orders.parse(t)]
    assert len(recs) == 200 * orders.RECORDS_PER_SEQ
    for field in ("country", "item", "qty", "order_day"):
        assert {r[field] for r in recs} == set(orders.FIELD_DOMAINS[field])


def test_crafted_valid_sequence():
    assert orders.is_valid(VALID)
    assert orders.record_validity(VALID) == [True] * orders.RECORDS_PER_SEQ
    df = orders.check_records(VALID)
    assert set(df.columns) >= {"record", "rule", "ok", "field", "value"}
    assert len(df) == orders.RECORDS_PER_SEQ * len(orders.RULES) and df.ok.all()


@pytest.mark.parametrize("rule, field, token", [
    ("currency", "currency", "gbp"),      # france pays in eur
    ("tax", "tax", "19%"),                # france's rate is 20%
    ("category", "category", "kitchen"),  # a chair is furniture
    ("total", "total", "240"),            # 120 x 3 = 360
    ("dates", "ship_day", "04"),          # ships the day it is ordered
    ("dates", "ship_day", "12"),          # 8 days after the order: later than a week
    ("format", "qty", "6"),               # not a quantity of this language
    ("format", "country", "laptop"),      # an item where the country goes
    ("format", None, "y"),                # a keyword replaced
])
def test_each_rule_broken_alone(rule, field, token):
    pos = field_pos(field) if field else orders.TEMPLATE.index("x")
    text = edit(VALID, 1 if field != "ship_day" else 0, pos, token)
    assert broken_rules(text) == {rule}
    assert not orders.is_valid(text)
    validity = orders.record_validity(text)
    assert validity.count(False) == 1
    df = orders.check_records(text)
    bad = df[~df.ok]
    assert list(bad.rule) == [rule] and bad.record.nunique() == 1


def test_price_broken_alone():
    # Write the chair at the knife's price with a total that matches that price: only "price" breaks.
    text = edit(edit(VALID, 0, field_pos("price"), "60"), 0, field_pos("total"), "180")
    assert broken_rules(text) == {"price"}
    row = orders.check_records(text).query("not ok").iloc[0]
    assert (row.record, row.value, row.expected) == (0, "60", "120")


def test_wrong_length_is_a_format_error():
    words = VALID.split()
    assert broken_rules(" ".join(words[:-1])) == {"format"}
    assert broken_rules(" ".join(words + ["order"])) == {"format"}
    assert broken_rules("") == {"format"}


def test_validity_table_long_form():
    bad = edit(VALID, 2, field_pos("currency"), "eur")
    df = orders.validity_table([VALID, bad])
    assert set(df["sample"]) == {0, 1}
    assert df.groupby("sample").ok.all().tolist() == [True, False]


def test_tokenizer_round_trip_and_mask_id(tmp_path):
    tok = orders.build_tokenizer()
    assert isinstance(tok, Tokenizer)
    assert tok.get_vocab_size() == orders.VOCAB_SIZE
    assert tok.token_to_id("[MASK]") == orders.VOCAB_SIZE - 1 == orders.MASK_ID
    assert tok.token_to_id("[UNK]") is not None
    for text in [VALID, *orders.generate(20, seed=5)]:
        ids = tok.encode(text).ids
        assert len(ids) == orders.SEQ_LEN
        assert tok.decode(ids) == text
    # ids of the tokenizer are the ids of the generator
    batch = next(orders.batches("valid", 3, seed=0))
    for row in batch:
        assert tok.encode(orders.decode(row)).ids == row.tolist()
    # saved as a tokenizer.json and reloaded unchanged
    tok.save(str(tmp_path / "tokenizer.json"))
    again = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    assert again.encode(VALID).ids == tok.encode(VALID).ids
    assert again.token_to_id("[MASK]") == orders.MASK_ID
    assert tok.encode("order atlantis").ids[1] == tok.token_to_id("[UNK]")


def test_sampler_validity_on_stub_models():
    from explorer.protocol import StubDenoiser
    from explorer.samplers import MDLM

    ids = torch.tensor(orders.build_tokenizer().encode(VALID).ids)
    certain = torch.zeros(orders.SEQ_LEN, orders.VOCAB_SIZE)
    certain[torch.arange(orders.SEQ_LEN), ids] = 1.0
    recs = studies.sampler_validity(StubDenoiser(certain), MDLM(), steps=4, num_samples=2, seed=0)
    n_rec = 2 * orders.RECORDS_PER_SEQ
    assert len(recs) == n_rec and recs["valid"].all()
    summary = studies.summarise_validity(recs)
    assert summary["valid"] == 1.0 and summary["records"] == n_rec and summary["broken_total"] == 0.0

    # a context-free model that knows each field's vocabulary but no rule: most records break one
    recs = studies.sampler_validity(blind_stub(), MDLM(), steps=4, num_samples=8, seed=0)
    s = studies.summarise_validity(recs)
    assert s["valid"] < 0.2 and s["broken_format"] == 0.0 and s["broken_currency"] > 0.3
    # evaluate-orders reads its sampler specs with the one spec parser (explorer.samplers.spec)
    from explorer.samplers.spec import parse_sampler
    assert parse_sampler("remdm-cap:eta=0.02").config["eta"] == 0.02
    both = parse_sampler("remdm-loop:eta=0.05,nucleus_p=0.9").config
    assert both["eta"] == 0.05 and both["nucleus_p"] == 0.9
    assert parse_sampler("remdm-loop:eta=0.05:nucleus_p=0.9").config == both
    with pytest.raises(ValueError, match="key=value"):
        parse_sampler("remdm-cap:0.02")


class StatesTrace:
    """Just what repair_ledger needs: a list of states (step 0 .. last_step)."""

    mask_id = orders.MASK_ID

    def __init__(self, texts_or_ids):
        self.states = [torch.as_tensor(s).reshape(1, -1) for s in texts_or_ids]
        self.last_step = len(self.states) - 1

    def state_at(self, k):
        return self.states[k].clone()


def ids_of(text: str) -> list[int]:
    return [orders.TOKEN_ID[w] for w in text.split()]


def test_repair_ledger_counts_fixes_breaks_and_hazards():
    M = orders.MASK_ID
    valid = ids_of(VALID)
    wrong_currency = ids_of(edit(VALID, 0, field_pos("currency"), "gbp"))
    opened0 = list(wrong_currency)
    opened0[field_pos("currency")] = M
    opened1 = list(valid)
    opened1[orders.RECORD_LEN + field_pos("ship_day")] = M
    late_ship = ids_of(edit(VALID, 1, field_pos("ship_day"), "28"))  # ordered 21 -> 28 is fine
    too_late = list(valid)
    too_late[orders.RECORD_LEN + field_pos("order_day")] = orders.TOKEN_ID["05"]  # 05 -> 28: 23 days
    states = [[M] * orders.SEQ_LEN, wrong_currency, opened0, valid, opened1, too_late]
    assert late_ship == valid  # record 1 already ships on 28
    ledger = studies.repair_ledger(StatesTrace(states))
    assert ledger[["sample", "record", "opened", "closed", "before_valid", "after_valid",
                   "tokens_changed"]].values.tolist() == [
        [0, 0, 2, 3, False, True, 1],   # the remask at step 2 let step 3 fix the currency
        [0, 1, 4, 5, True, False, 1],   # the remask at step 4 ended in a broken date
    ]
    # complete records exposed to a remask in the next step: step 1 (1 invalid, 15 valid),
    # step 2 (15 valid), step 3 (16 valid), step 4 (15 valid); the last step is not exposed
    assert ledger.attrs["exposure"] == {"valid": 61, "invalid": 1}
    summary = studies.summarise_repairs(ledger)
    assert summary["fixed"] == 1 and summary["broken"] == 1 and summary["episodes"] == 2
    assert summary["hazard_valid"] == pytest.approx(1 / 61)
    assert summary["hazard_invalid"] == pytest.approx(1.0)


def test_repair_ledger_on_a_real_remasking_run():
    """A stub model that writes VALID except record 0's currency, a coin flip between the right
    ``eur`` and a wrong ``gbp``: on a recorded ReMDM-loop run the ledger has episodes, each one's
    before/after validity matches the validator on the states it names, and the coin flips both
    ways happen. MDLM (no remasking) has no episodes at all."""
    from explorer import generate
    from explorer.protocol import StubDenoiser
    from explorer.samplers import MDLM, ReMDMLoop

    probs = torch.zeros(orders.SEQ_LEN, orders.VOCAB_SIZE, dtype=torch.float64)
    probs[torch.arange(orders.SEQ_LEN), torch.tensor(ids_of(VALID))] = 1.0
    cur = field_pos("currency")
    probs[cur] = 0.0
    probs[cur, orders.TOKEN_ID["eur"]] = probs[cur, orders.TOKEN_ID["gbp"]] = 0.5
    model = StubDenoiser(probs, mask_id=orders.MASK_ID)
    trace = generate(model, ReMDMLoop(eta=0.1), 128, num_samples=16, seed=0, progress=False,
                     prompt=dict(orders.FIXED_TOKENS))
    ledger = studies.repair_ledger(trace)
    assert len(ledger) > 0

    def ok(sample, record, step):
        return orders.record_validity(orders.decode(trace.state_at(step)[sample]))[record]

    for row in ledger[ledger.closed >= 0].itertuples():
        assert ok(row.sample, row.record, row.opened - 1) == row.before_valid
        assert ok(row.sample, row.record, row.closed) == row.after_valid
    summary = studies.summarise_repairs(ledger)
    assert summary["fixed"] > 0 and summary["broken"] > 0
    # records 1-3 are always valid, so every invalid exposure belongs to record 0
    assert set(ledger.loc[~ledger.before_valid.astype(bool), "record"]) <= {0}
    mdlm = generate(model, MDLM(), 64, num_samples=3, seed=0, progress=False,
                    prompt=dict(orders.FIXED_TOKENS))
    assert len(studies.repair_ledger(mdlm)) == 0


def blind_stub():
    """Context-free: the template's keywords for sure, each field uniform over its vocabulary."""
    from explorer.protocol import StubDenoiser

    probs = torch.zeros(orders.SEQ_LEN, orders.VOCAB_SIZE)
    probs[torch.arange(orders.SEQ_LEN), torch.tensor(ids_of(VALID))] = 1.0
    for pos, slot in enumerate(orders.TEMPLATE):
        if slot.startswith("<"):
            for r in range(orders.RECORDS_PER_SEQ):
                row = probs[r * orders.RECORD_LEN + pos]
                row.zero_()
                row[[orders.TOKEN_ID[w] for w in orders.FIELD_DOMAINS[slot[1:-1]]]] = 1.0
    return StubDenoiser(probs, mask_id=orders.MASK_ID)


def test_error_causes_one_step_means_every_clash_is_decoded_together():
    from explorer import generate
    from explorer.samplers import MDLM

    trace = generate(blind_stub(), MDLM(), 1, num_samples=4, seed=0, progress=False,
                     prompt=dict(orders.FIXED_TOKENS))
    causes = studies.error_causes(trace)
    assert len(causes) > 10 and causes["together"].all()
    assert all(steps == [1] * len(steps) for steps in causes["steps"])
    assert set(causes["rule"]) <= set(orders.RULE_FIELDS)


def test_error_causes_remasked_names_the_rules_with_a_field_taken_back_during_the_run():
    """``remasked`` is True exactly when one of the rule's field positions has a remask event; an
    MDLM run never remasks, a ReMDM-loop run of the blind model does."""
    from explorer import generate
    from explorer.samplers import MDLM, ReMDMLoop

    prompt = dict(orders.FIXED_TOKENS)
    assert not studies.error_causes(generate(blind_stub(), MDLM(), 8, num_samples=4, seed=0, progress=False,
                                             prompt=prompt))["remasked"].any()
    trace = generate(blind_stub(), ReMDMLoop(eta=0.1), 32, num_samples=4, seed=0, progress=False, prompt=prompt)
    causes = studies.error_causes(trace)
    rem = trace.events.query("kind == 'remask'")
    taken = set(zip(rem["sample"], rem["position"]))
    col = {f: orders.TEMPLATE.index(f"<{f}>") for f in orders.FIELDS}
    expect = [any((row.sample, row.record * orders.RECORD_LEN + col[f]) in taken for f in orders.RULE_FIELDS[row.rule])
              for row in causes.itertuples()]
    assert causes["remasked"].tolist() == expect and 0 < sum(expect) < len(expect)


def test_error_causes_together_rate_is_the_collision_rate_of_the_schedule():
    """MDLM's linear schedule unmasks each token at a uniform step of T, so two coupled fields share
    a step with probability 1/T. A blind model breaks rules whatever the timing, so among its
    broken two-field rules the fraction decoded together is 1/T = 1/16 (seed 0; ~1000 broken
    rules, so the count's SD is ~7.7 of ~64 expected; tolerance 4 SD). The three-field total rule
    clashes with probability 1 - (15/16)(14/16) = 0.18 and is checked separately."""
    from explorer import generate
    from explorer.samplers import MDLM

    trace = generate(blind_stub(), MDLM(), 16, num_samples=64, seed=0, progress=False,
                     prompt=dict(orders.FIXED_TOKENS))
    causes = studies.error_causes(trace)
    pairs = causes[causes.rule != "total"]
    n = len(pairs)
    assert n > 700
    sd = (n * (1 / 16) * (15 / 16)) ** 0.5
    assert abs(pairs["together"].sum() - n / 16) < 4 * sd
    # every recorded step agrees with the trace: the field really was unmasked then
    ev = trace.events.query("kind == 'unmask'")
    col = {f: orders.TEMPLATE.index(f"<{f}>") for f in orders.FIELDS}
    for row in causes.head(50).itertuples():
        for field, step in zip(orders.RULE_FIELDS[row.rule], row.steps):
            pos = row.record * orders.RECORD_LEN + col[field]
            assert step == ev[(ev["sample"] == row.sample) & (ev["position"] == pos)]["step"].max()
    triples = causes[causes.rule == "total"]
    p3 = 1 - (15 / 16) * (14 / 16)
    sd3 = (len(triples) * p3 * (1 - p3)) ** 0.5
    assert abs(triples["together"].sum() - len(triples) * p3) < 4 * sd3
