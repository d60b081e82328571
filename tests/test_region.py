"""The region expression language of ``fastmc generate --where`` (fastmc.region)."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastmc.errors import ConfigError
from fastmc.evaluate.observables import OBSERVABLES
from fastmc.region import RegionSyntaxError, parse_region

NAMES = [s.name for s in OBSERVABLES]
ENERGY = [s.name for s in OBSERVABLES if s.unit == "GeV"]
OPS = {"<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal,
       "==": np.equal, "!=": np.not_equal}


def _columns(seed: int, n: int = 200) -> dict[str, np.ndarray]:
    """Random observable columns with NaNs (missing objects) and repeated values (ties)."""
    rng = np.random.default_rng(seed)
    cols = {}
    for name in NAMES:
        col = rng.choice([0.0, 1.0, 2.0, 50.0, 500.0, -1.5], n) + rng.integers(0, 2, n) * rng.normal(0, 100, n)
        col[rng.random(n) < 0.2] = np.nan
        cols[name] = col
    return cols


# ---------------------------------------------------------------------------- a reference
# hypothesis builds (text, reference function) pairs; the reference is plain numpy written
# independently of the parser, so a parse or precedence error shows as a mismatch.
numbers = st.sampled_from([0, 1, 2, 50, 500, 1.5, 2.5e2, 0.25])
comparisons = st.builds(
    lambda name, op, num, flip: (
        f"{num} {op} {name}" if flip else f"{name} {op} {num}",
        (lambda c, name=name, op=op, num=num, flip=flip:
         OPS[op](np.full(len(c[name]), float(num)), c[name]) if flip else OPS[op](c[name], float(num))),
    ),
    st.sampled_from(NAMES), st.sampled_from(list(OPS)), numbers, st.booleans(),
)


def _combine(children):
    def not_(pair):
        text, f = pair
        return f"not ({text})", lambda c: ~f(c)

    def binop(pair):
        op, (ta, fa), (tb, fb) = pair
        fn = np.logical_and if op == "and" else np.logical_or
        return f"({ta}) {op} ({tb})", lambda c: fn(fa(c), fb(c))

    return st.one_of(children.map(not_),
                     st.tuples(st.sampled_from(["and", "or"]), children, children).map(binop))


expressions = st.recursive(comparisons, _combine, max_leaves=8)


@settings(max_examples=150, deadline=None)
@given(expressions, st.integers(0, 3))
def test_parsed_expression_matches_a_numpy_reference(expr, seed) -> None:
    text, reference = expr
    cols = _columns(seed)
    got = parse_region(text).evaluate(cols)
    np.testing.assert_array_equal(got, reference(cols))


@settings(max_examples=100, deadline=None)
@given(expressions)
def test_printed_tree_parses_back_to_the_same_region(expr) -> None:
    text, _ = expr
    region = parse_region(text)
    again = parse_region(str(region.tree))
    cols = _columns(5)
    np.testing.assert_array_equal(region.evaluate(cols), again.evaluate(cols))


@settings(max_examples=100, deadline=None)
@given(st.tuples(expressions, expressions))
def test_and_binds_tighter_than_or(pair) -> None:
    (a, fa), (b, fb) = pair
    cols = _columns(1)
    text = f"({a}) or ({b}) and ({a})"
    want = np.logical_or(fa(cols), np.logical_and(fb(cols), fa(cols)))
    np.testing.assert_array_equal(parse_region(text).evaluate(cols), want)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("metn_jsb<>=!()&|- .0159eGVabcdort")), max_size=40))
def test_any_text_parses_or_raises_a_positioned_syntax_error(text) -> None:
    try:
        parse_region(text)
    except RegionSyntaxError as exc:
        assert 0 <= exc.position <= len(text)
        assert "^" in str(exc) and text in str(exc)


# ---------------------------------------------------------------------------- semantics
def test_missing_objects_fail_every_comparison() -> None:
    cols = {n: np.array([np.nan, 100.0]) for n in NAMES}
    assert parse_region("jet2_pt > 50").evaluate(cols).tolist() == [False, True]
    assert parse_region("jet2_pt <= 50").evaluate(cols).tolist() == [False, False]
    assert parse_region("not (jet2_pt > 50)").evaluate(cols).tolist() == [True, False]


def test_units_chains_abs_and_symbols() -> None:
    cols = _columns(2)
    same = [("met > 0.5 TeV", "met > 500"), ("met > 500 GeV", "met > 500"),
            ("met > 500000 MeV", "met > 500"), ("met>500GeV", "met > 500"),
            ("50 < met <= 500", "met > 50 and met <= 500"),
            ("abs(jet1_eta) < 2.5", "jet1_eta < 2.5 and jet1_eta > -2.5"),
            ("met > 5 && !(ht < 3) || n_jets == 2", "(met > 5 and not (ht < 3)) or n_jets == 2"),
            ("MET > 5 AND n_jets >= 1", None)]
    for a, b in same:
        if b is None:
            with pytest.raises(RegionSyntaxError, match="did you mean 'met'"):
                parse_region(a)
            continue
        np.testing.assert_array_equal(parse_region(a).evaluate(cols), parse_region(b).evaluate(cols))
    assert parse_region("met > 500 and n_bjets >= 1 or ht > 1").observables == ("met", "n_bjets", "ht")


def test_region_mask_on_events() -> None:
    from fastmc.evaluate.observables import compute_observables
    from modelhelpers import make_events

    ev = make_events(300, seed=3)
    mask = parse_region("met > 150 and n_bjets >= 1").mask(ev)
    obs = compute_observables(ev)
    assert mask.tolist() == ((obs["met"] > 150) & (obs["n_bjets"] >= 1)).tolist()
    assert 0 < mask.sum() < len(ev)


@pytest.mark.parametrize(
    ("text", "position", "message"),
    [
        ("", 0, "empty expression"),
        ("met >", 5, "expected an observable or a number"),
        ("met > 500 and", 13, "expected an observable or a number"),
        ("mett > 5", 0, "unknown observable 'mett'"),
        ("met > 5 and n_jet >= 1", 12, "unknown observable 'n_jet'"),
        ("n_jets > 5 GeV", 0, "n_jets is not an energy"),
        ("(met > 5", 8, "expected ')'"),
        ("met > 5)", 7, "expected 'and', 'or' or the end"),
        ("met > 5abc", 6, "malformed number"),
        ("met = 5", 4, "unexpected character '='"),
        ("met > 500 $", 10, "unexpected character"),
        ("5 > 3", 0, "needs an observable"),
        ("met", 3, "expected a comparison operator"),
        ("met > 5 5", 8, "expected 'and', 'or' or the end"),
        ("abs met > 5", 4, "expected '(' after abs"),
        ("met > 1e999", 6, "not finite"),
        ("import os", 0, "unknown observable 'import'"),
        ("__import__('os')", 11, "unexpected character"),
    ],
)
def test_bad_expressions_show_the_position(text: str, position: int, message: str) -> None:
    with pytest.raises(RegionSyntaxError, match=re.escape(message)) as info:
        parse_region(text)
    assert info.value.position == position
    shown = str(info.value).splitlines()
    assert shown[1].strip() == text.strip() and shown[2].index("^") - 2 == position


def test_region_syntax_error_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        parse_region("met >> 5")
    with pytest.raises(ConfigError, match="string"):
        parse_region(500)  # type: ignore[arg-type]


@settings(max_examples=150, deadline=None)
@given(expressions, st.sampled_from(["met", "ht", "n_jets"]), st.integers(0, 3))
def test_bounds_are_implied_by_the_region(expr, name, seed) -> None:
    """Every event in the region has the observable within the extracted bounds."""
    text, _ = expr
    region = parse_region(text)
    lo, hi = region.bounds(name)
    cols = _columns(seed)
    inside = region.evaluate(cols)
    values = cols[name][inside]
    values = values[~np.isnan(values)]  # a missing object can be in the region through "not"
    assert ((values >= lo) & (values <= hi)).all()


def test_bounds_of_simple_regions() -> None:
    assert parse_region("met > 500 and n_bjets >= 1").bounds("met") == (500, np.inf)
    assert parse_region("200 < met <= 0.5 TeV").bounds("met") == (200, 500)
    assert parse_region("1 TeV > met and met >= 300 and ht > 5").bounds("met") == (300, 1000)
    assert parse_region("met > 500 or ht > 100").bounds("met") == (-np.inf, np.inf)
    assert parse_region("not (met < 500)").bounds("met") == (-np.inf, np.inf)
    assert parse_region("met > 500").bounds("ht") == (-np.inf, np.inf)
