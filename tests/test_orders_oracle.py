"""The orders oracle: the exact posterior of the generator, and what it says about MDLM's schedule."""
from __future__ import annotations

import math

import pytest
import torch

from explorer.tasks import orders
from explorer.tasks.orders_oracle import GROUPS, OrdersOracle

M = orders.MASK_ID
COL = orders.FIELD_POS
TID = orders.TOKEN_ID


def masked(records: int = 1) -> torch.Tensor:
    z = torch.full((1, records * orders.RECORD_LEN), M)
    for pos in range(0, z.shape[1], orders.RECORD_LEN):
        z[0, pos] = TID["order"]
    return z


def records(ids) -> list[dict]:
    return orders.parse(orders.decode(ids))


def rule_ok(rec: dict) -> dict[str, bool]:
    """{rule: ok} for one parsed record (every rule evaluates: the oracle never leaves a domain)."""
    return {row["rule"]: row["ok"] for row in orders._record_rows(0, rec)}


def test_prior_marginals_are_the_generators():
    p = OrdersOracle(1).probs(masked())[0]
    assert torch.allclose(p.sum(-1), torch.ones(orders.RECORD_LEN, dtype=torch.float64))
    assert (p[:, M] == 0).all()
    for pos, slot in enumerate(orders.TEMPLATE):  # keywords are certain
        if not slot.startswith("<"):
            assert p[pos, TID[slot]] == 1.0
    assert p[COL["country"], TID["france"]] == pytest.approx(0.1)
    assert p[COL["currency"], TID["eur"]] == pytest.approx(0.4)  # four euro countries of ten
    assert p[COL["tax"], TID["20%"]] == pytest.approx(0.2)  # france and uk
    # 120 = chair x 1 = knife x 2 = cookbook x 3 = comic x 4, of 16 items x 5 quantities
    assert p[COL["total"], TID["120"]] == pytest.approx(4 / 80)
    assert p[COL["ship_day"], TID["28"]] == pytest.approx(1 / 147)  # only 21 + 7


def test_posterior_matches_the_generators_conditional_frequencies():
    """Condition on currency=eur, qty=3, ship_day=10 and compare the oracle's posterior with the
    frequencies among generated records that match (seed 0; within 5 standard errors)."""
    recs = orders.sample_ids(40_000, torch.Generator().manual_seed(0)).reshape(-1, orders.RECORD_LEN)
    keep = ((recs[:, COL["currency"]] == TID["eur"]) & (recs[:, COL["qty"]] == TID["3"])
            & (recs[:, COL["ship_day"]] == TID["10"]))
    sub = recs[keep]
    assert len(sub) > 300
    z = masked()
    z[0, COL["currency"]], z[0, COL["qty"]], z[0, COL["ship_day"]] = TID["eur"], TID["3"], TID["10"]
    p = OrdersOracle(1).probs(z)[0]
    for field in ("country", "tax", "total", "order_day", "item"):
        col = COL[field]
        freq = torch.bincount(sub[:, col], minlength=orders.VOCAB_SIZE).double() / len(sub)
        se = (p[col] * (1 - p[col]) / len(sub)).sqrt()
        assert ((freq - p[col]).abs() <= 5 * se + 1e-12).all(), field
        assert (p[col][freq > 0] > 0).all()  # nothing the generator makes is ruled out
    assert p[COL["tax"], TID["25%"]] == 0  # sweden does not pay in euros


def test_broken_record_falls_back_to_the_prior():
    z = masked()
    z[0, COL["country"]], z[0, COL["currency"]] = TID["japan"], TID["eur"]
    p = OrdersOracle(1).probs(z)[0]
    assert torch.isfinite(p).all()
    assert p[COL["tax"]].sum() == pytest.approx(1.0) and p[COL["tax"], TID["20%"]] == pytest.approx(0.2)


def test_one_token_per_step_with_the_oracle_never_breaks_a_rule():
    from explorer.engine import generate
    from explorer.samplers import ConfidenceOrdered

    oracle = OrdersOracle(2)
    trace = generate(oracle, ConfidenceOrdered(order="random"), oracle.seq_len, num_samples=6,
                     seed=0, record=False, progress=False)
    rules = [rule_ok(rec) for ids in trace.final for rec in records(ids)]
    assert len(rules) == 12 and all(all(r.values()) and len(r) == len(orders.RULES) for r in rules)


def test_mdlm_breaks_dates_exactly_when_the_schedule_clashes():
    """The days group has two fields. Under MDLM they break the rule only when unmasked in the
    same step (probability 1/T) and then drawn independently from their prior marginals, so
    P(dates broken) = (1/T) * P(two independent draws are out of order). Seed 0, 1024 records,
    tolerance 4 standard errors."""
    from explorer.engine import generate
    from explorer.samplers import MDLM

    fields, rows = GROUPS["days"]
    order_day = torch.bincount(rows[:, 0], minlength=orders.VOCAB_SIZE).double() / len(rows)
    ship_day = torch.bincount(rows[:, 1], minlength=orders.VOCAB_SIZE).double() / len(rows)
    ok_pairs = {(int(o), int(s)) for o, s in rows.tolist()}
    q_ok = sum(order_day[o] * ship_day[s] for o, s in ok_pairs)
    T = 8
    expected = (1 - float(q_ok)) / T

    oracle = OrdersOracle(16)
    trace = generate(oracle, MDLM(), T, num_samples=64, seed=0, record=False, progress=False)
    broken = [not rule_ok(rec)["dates"] for ids in trace.final for rec in records(ids)]
    rate = sum(broken) / len(broken)
    se = math.sqrt(expected * (1 - expected) / len(broken))
    assert abs(rate - expected) < 4 * se, (rate, expected, se)


def test_load_model_knows_the_oracle_by_name():
    from explorer import load_model

    oracle = load_model("orders-oracle")
    assert isinstance(oracle, OrdersOracle) and oracle.seq_len == orders.SEQ_LEN
    assert oracle.fixed_tokens == orders.FIXED_TOKENS
    ids = orders.eval_tensor(1)[0]
    assert oracle.tokenizer.decode(ids.tolist()) == orders.decode(ids)
    z = ids.clone().unsqueeze(0)
    assert torch.equal(oracle.logits(z).argmax(-1)[0], ids)  # a valid sequence is its own posterior mode
    with pytest.raises(ValueError, match="must be"):
        oracle.logits(z[:, :16])


def test_the_oracle_is_a_built_in_model_listed_with_the_shipped_ones():
    from explorer.models import BUILTIN_MODELS, known_models, load_model, shipped_models

    assert set(known_models()) == {*shipped_models(), *BUILTIN_MODELS} and "orders-oracle" in known_models()
    assert "orders" in shipped_models() and "orders-oracle" not in shipped_models()  # no folder, no weights
    with pytest.raises(FileNotFoundError, match="orders-oracle") as caught:
        load_model("no-such-model")
    assert all(name in str(caught.value) for name in known_models())   # the error lists every name


def test_ceiling_counts_valid_records_at_any_length():
    from explorer.samplers import MDLM, ConfidenceOrdered
    from explorer.metrics.validity import validity_ceiling

    one_by_one = validity_ceiling(ConfidenceOrdered(order="random"), 32, num_samples=3, records_per_seq=2)
    assert one_by_one["records"] == 6 and one_by_one["valid"] == 1.0
    # one step decodes every field of a record at once, independently from the prior marginals:
    # the country group alone then agrees with probability 0.027, so almost no record survives
    one_step = validity_ceiling(MDLM(), 1, num_samples=8, records_per_seq=4)
    assert one_step["records"] == 32 and one_step["valid"] < 0.2
    assert orders.record_valid(orders.parse(orders.decode(orders.eval_tensor(1)[0]))[3])
