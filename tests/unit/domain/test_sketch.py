"""QuantileSketch and ExactSum: the error bound, exact merges, exact and compact state.

The sketch's contract (streams/domain/sketch.py): the lower-rank ``q``-quantile is within
``relative_accuracy`` of ``sorted(values)[floor(q * (n - 1))]`` for any distribution, and
merging only adds bucket counts, so any grouping/order of merges equals one sketch fed
everything. ExactSum's: ``value == math.fsum(values)`` for any order and grouping.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Sequence
from fractions import Fraction

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.domain.sketch import MIN_VALUE, ExactSum, QuantileSketch

QS = (0.0, 0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0)
SIZES = (1, 2, 100, 100_000)
# Float rounding in log()/pow() may move a value sitting exactly on a bucket boundary; the
# error is then a * (1 + ~1e-15). Allow 1e-9 relative slack on the bound, nothing more.
SLACK = 1 + 1e-9

PROPS = settings(max_examples=150, deadline=None, derandomize=True)

values_st = st.lists(
    st.floats(min_value=0.0, max_value=1e12, allow_nan=False, allow_infinity=False),
    min_size=1,
    max_size=200,
)
finite_st = st.floats(
    min_value=-1e12, max_value=1e12, allow_nan=False, allow_infinity=False, allow_subnormal=True
)


def exact_lower(sorted_values: Sequence[float], q: float) -> float:
    """The exact lower-rank quantile the sketch approximates."""
    return sorted_values[int(q * (len(sorted_values) - 1))]


def sketch_of(values: Sequence[float], accuracy: float = 0.005) -> QuantileSketch:
    sk = QuantileSketch(accuracy)
    for v in values:
        sk.add(v)
    return sk


def assert_within(sk: QuantileSketch, values: Sequence[float], qs: Sequence[float]) -> None:
    ordered = sorted(values)
    a = sk.relative_accuracy
    for q in qs:
        exact = exact_lower(ordered, q)
        got = sk.quantile(q)
        if exact <= MIN_VALUE:
            assert got == 0.0, (q, exact, got)
        else:
            assert abs(got - exact) <= a * exact * SLACK, (q, exact, got, abs(got - exact) / exact)


def _constant(rng: random.Random, n: int) -> list[float]:
    return [42.0] * n


def _bimodal_even(rng: random.Random, n: int) -> list[float]:
    return [1.0 if rng.random() < 0.5 else 10_000.0 for _ in range(n)]


def _bimodal_99_1(rng: random.Random, n: int) -> list[float]:
    return [1.0 if rng.random() < 0.99 else 10_000.0 for _ in range(n)]


def _pareto(rng: random.Random, n: int) -> list[float]:
    return [rng.paretovariate(1.1) for _ in range(n)]


def _uniform(rng: random.Random, n: int) -> list[float]:
    return [rng.uniform(0.0, 5_000.0) for _ in range(n)]


def _lognormal(rng: random.Random, n: int) -> list[float]:
    return [rng.lognormvariate(5.0, 1.5) for _ in range(n)]


def _tiny(rng: random.Random, n: int) -> list[float]:
    return [rng.uniform(0.5e-6, 2e-6) for _ in range(n)]


def _with_zeros(rng: random.Random, n: int) -> list[float]:
    return [0.0 if rng.random() < 0.3 else rng.lognormvariate(3.0, 2.0) for _ in range(n)]


def _integers(rng: random.Random, n: int) -> list[float]:
    return [float(rng.randint(0, 3)) for _ in range(n)]


DISTRIBUTIONS: dict[str, Callable[[random.Random, int], list[float]]] = {
    "constant": _constant,
    "bimodal_50_50": _bimodal_even,
    "bimodal_99_1": _bimodal_99_1,
    "pareto_1.1": _pareto,
    "uniform": _uniform,
    "lognormal": _lognormal,
    "tiny_1e-6": _tiny,
    "with_zeros": _with_zeros,
    "small_integers_with_zeros": _integers,
}


# -- error bound --------------------------------------------------------------------------


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("name", sorted(DISTRIBUTIONS))
def test_quantiles_within_relative_accuracy(name: str, n: int) -> None:
    rng = random.Random(f"{name}/{n}")
    values = DISTRIBUTIONS[name](rng, n)
    sk = sketch_of(values)
    assert sk.count == n
    assert_within(sk, values, QS)
    assert sk.quantiles(QS) == [sk.quantile(q) for q in QS]


@pytest.mark.parametrize("accuracy", [0.001, 0.01, 0.05])
@pytest.mark.parametrize("name", ["pareto_1.1", "lognormal", "with_zeros"])
def test_bound_follows_the_configured_accuracy(name: str, accuracy: float) -> None:
    values = DISTRIBUTIONS[name](random.Random(7), 20_000)
    assert_within(sketch_of(values, accuracy), values, QS)


@PROPS
@given(values_st, st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=1, max_size=5))
def test_bound_holds_for_arbitrary_values(values: list[float], qs: list[float]) -> None:
    assert_within(sketch_of(values), values, qs)


def test_bucket_index_and_representative() -> None:
    a = 0.005
    gamma = (1 + a) / (1 - a)
    for x in (1e-6, 0.37, 1.0, 42.0, 12_345.678):
        sk = sketch_of([x], a)
        i = math.ceil(math.log(x) / math.log(gamma))
        assert sk.bins() == {i: 1}
        assert sk.quantile(0.5) == pytest.approx(2 * gamma**i / (gamma + 1), rel=1e-12)


def test_zero_bucket() -> None:
    sk = sketch_of([0.0, MIN_VALUE, 0.0, 5.0])
    assert sk.zero_count == 3
    assert sk.count == 4
    assert sk.quantile(0.0) == 0.0
    assert sk.quantile(0.5) == 0.0
    assert sk.quantile(1.0) == pytest.approx(5.0, rel=0.005)


@pytest.mark.parametrize("bad", [-1.0, -1e-12, math.nan, math.inf, -math.inf])
def test_invalid_values_raise_and_count_nothing(bad: float) -> None:
    sk = sketch_of([1.0, 2.0])
    before = sk.to_state()
    with pytest.raises(ValueError):
        sk.add(bad)
    assert sk.to_state() == before
    assert sk.count == 2


def test_empty_and_out_of_range_q_raise() -> None:
    with pytest.raises(ValueError):
        QuantileSketch().quantile(0.5)
    sk = sketch_of([1.0])
    for q in (-0.01, 1.01, math.nan):
        with pytest.raises(ValueError):
            sk.quantile(q)
    for accuracy in (0.0, 1.0, -0.1):
        with pytest.raises(ValueError):
            QuantileSketch(accuracy)


# -- merges -------------------------------------------------------------------------------


def merged(*sketches: QuantileSketch) -> QuantileSketch:
    out = sketches[0].copy()
    for sk in sketches[1:]:
        out.merge(sk)
    return out


@PROPS
@given(values_st, values_st, values_st)
def test_merge_is_associative_and_commutative(
    xs: list[float], ys: list[float], zs: list[float]
) -> None:
    a, b, c = sketch_of(xs), sketch_of(ys), sketch_of(zs)
    left = merged(merged(a, b), c)
    right = merged(a, merged(b, c))
    backwards = merged(c, b, a)
    direct = sketch_of(xs + ys + zs)
    for sk in (left, right, backwards):
        assert sk == direct
        assert sk.bins() == direct.bins()
        assert sk.zero_count == direct.zero_count
        assert sk.count == direct.count
        assert sk.to_state() == direct.to_state()
        assert sk.quantiles(QS) == direct.quantiles(QS)
    # the inputs were not touched
    assert a == sketch_of(xs) and b == sketch_of(ys) and c == sketch_of(zs)


def test_merge_order_of_values_does_not_matter() -> None:
    values = _lognormal(random.Random(3), 5_000) + [0.0] * 17
    shuffled = list(values)
    random.Random(4).shuffle(shuffled)
    assert sketch_of(values).to_state() == sketch_of(shuffled).to_state()


def test_merge_into_itself_doubles() -> None:
    sk = sketch_of([1.0, 2.0, 0.0])
    sk.merge(sk)
    assert sk == sketch_of([1.0, 2.0, 0.0] * 2)


def test_merge_requires_the_same_accuracy() -> None:
    with pytest.raises(ValueError):
        QuantileSketch(0.005).merge(QuantileSketch(0.01))


def test_sixty_second_windows_merged_equal_the_300_second_window() -> None:
    rng = random.Random(60)
    start = 1_670_000_100.0  # a 300 s boundary
    stream = [(start + rng.uniform(0, 300), rng.lognormvariate(5.0, 1.0)) for _ in range(20_000)]
    stream += [(start + 17.0, 0.0), (start + 299.999, 1e-7)]
    minute: dict[int, QuantileSketch] = {}
    for ts, latency in stream:
        minute.setdefault(int((ts - start) // 60), QuantileSketch()).add(latency)
    assert sorted(minute) == [0, 1, 2, 3, 4]

    direct = sketch_of([latency for _, latency in stream])
    for order in ([0, 1, 2, 3, 4], [4, 2, 0, 3, 1]):
        view = QuantileSketch()
        for k in order:
            view.merge(minute[k])
        assert view.to_state() == direct.to_state()
        assert view.quantiles(QS) == direct.quantiles(QS)


# -- state --------------------------------------------------------------------------------


def roundtrip(sk: QuantileSketch) -> QuantileSketch:
    return QuantileSketch.from_state(orjson.loads(orjson.dumps(sk.to_state())))


@PROPS
@given(st.lists(st.floats(min_value=0.0, max_value=1e12), max_size=200))
def test_state_roundtrip_is_exact(values: list[float]) -> None:
    sk = sketch_of(values)
    back = roundtrip(sk)
    assert back == sk
    assert back.count == sk.count
    assert back.to_state() == sk.to_state()
    if values:
        assert back.quantiles(QS) == sk.quantiles(QS)


def both_forms(sk: QuantileSketch) -> tuple[dict[str, object], dict[str, object]]:
    """The dense and the sparse encoding of ``sk``'s buckets, built independently."""
    bins = sk.bins()
    idx = sorted(bins)
    base = {"a": sk.relative_accuracy, "z": sk.zero_count, "o": idx[0]}
    dense = {**base, "c": [bins.get(i, 0) for i in range(idx[0], idx[-1] + 1)]}
    flat = [bins[idx[0]]]
    for prev, cur in itertools.pairwise(idx):
        flat += [cur - prev, bins[cur]]
    return dense, {**base, "s": flat}


@pytest.mark.parametrize(
    ("values", "form"),
    [
        (_lognormal(random.Random(1), 10_000), "c"),
        (_lognormal(random.Random(1), 300), "s"),
        ([1.0, 1e6, 1e6, 1e12, 0.0], "s"),
        ([1.0, 1.01, 1.02], "c"),
    ],
)
def test_state_picks_the_smaller_of_dense_and_sparse(values: list[float], form: str) -> None:
    sk = sketch_of(values)
    state = sk.to_state()
    assert form in state
    dense, sparse = both_forms(sk)
    assert state in (dense, sparse)
    size = len(orjson.dumps(state))
    assert size == min(len(orjson.dumps(dense)), len(orjson.dumps(sparse)))
    assert QuantileSketch.from_state(dense) == QuantileSketch.from_state(sparse) == sk
    assert roundtrip(sk) == sk
    assert roundtrip(sk).to_state() == state


def test_state_of_empty_and_zero_only_sketches() -> None:
    for sk in (QuantileSketch(), sketch_of([0.0]), QuantileSketch(0.01)):
        assert roundtrip(sk) == sk
        assert roundtrip(sk).to_state() == sk.to_state()
    # a dense form whose counts are all zero is still valid
    assert QuantileSketch.from_state({"a": 0.005, "z": 1, "o": 3, "c": [0] * 50}).count == 1


def test_compact_state_of_ten_thousand_latencies() -> None:
    rng = random.Random(10_000)
    sk = sketch_of([rng.lognormvariate(5.0, 1.0) for _ in range(10_000)])
    assert len(orjson.dumps(sk.to_state())) < 4000
    heavy = sketch_of(_pareto(rng, 10_000))
    assert len(orjson.dumps(heavy.to_state())) < 4000


@pytest.mark.parametrize(
    "state",
    [
        {"a": 0.005, "z": -1},
        {"a": 0.005, "z": 0, "o": 1, "c": [1, -2]},
        {"a": 0.005, "z": 0, "o": 1, "s": [1, 2]},
        {"a": 0.005, "z": 0, "o": 1, "s": [1, 0, 3]},
        {"a": 0.005, "z": 0, "o": 1.5, "c": [1]},
        {"a": 2.0, "z": 0},
    ],
)
def test_malformed_state_is_rejected(state: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        QuantileSketch.from_state(state)


# -- ExactSum -----------------------------------------------------------------------------


def exact_sum_of(values: Sequence[float]) -> ExactSum:
    s = ExactSum()
    for v in values:
        s.add(v)
    return s


@PROPS
@given(st.lists(finite_st, max_size=60), st.randoms(use_true_random=False))
def test_exact_sum_equals_fsum_for_any_order_and_grouping(
    values: list[float], rnd: random.Random
) -> None:
    expected = math.fsum(values)
    shuffled = list(values)
    rnd.shuffle(shuffled)
    assert exact_sum_of(shuffled).value == expected

    groups: list[ExactSum] = []
    rest = list(shuffled)
    while rest:
        k = rnd.randint(1, len(rest))
        groups.append(exact_sum_of(rest[:k]))
        rest = rest[k:]
    rnd.shuffle(groups)
    total = ExactSum()
    for g in groups:
        total.merge(g)
    assert total.value == expected
    assert total == exact_sum_of(values)
    assert total.to_state() == exact_sum_of(values).to_state()  # canonical state

    back = ExactSum.from_state(orjson.loads(orjson.dumps(total.to_state())))
    assert back.value == expected
    assert back == total
    assert back.to_state() == total.to_state()


def test_exact_sum_beats_naive_summation() -> None:
    values = [1e16, 1.0, -1e16, 1e-3, 0.1] * 1000
    s = exact_sum_of(values)
    assert s.value == math.fsum(values)
    assert s.value != sum(values)
    assert s.to_state()[0] == s.value
    assert ExactSum().value == 0.0
    assert ExactSum().to_state() == []
    assert ExactSum([0.1, 0.2]) != ExactSum([0.3])
    assert ExactSum([0.1, 0.2]) == ExactSum([0.2, 0.1])


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_exact_sum_rejects_non_finite(bad: float) -> None:
    s = ExactSum([1.0])
    with pytest.raises(ValueError):
        s.add(bad)
    assert s.value == 1.0


# -- ExactSum: buffered values, folded when read ------------------------------------------


def reference_state(values: Sequence[float]) -> list[float]:
    """The canonical state, from its definition: each float is the correctly rounded
    (Fraction -> float) remainder of the exact sum after the floats before it."""
    remainder = sum(map(Fraction, values), Fraction(0))
    out: list[float] = []
    while remainder:
        h = float(remainder)
        out.append(h)
        remainder -= Fraction(h)
    return out


def _alternating_powers() -> list[float]:
    # Every other power of two from the smallest subnormal up: a canonical state of ~40 floats.
    return [(-1.0) ** k * 2.0**e for k, e in enumerate(range(-1074, 1000, 7))]


ADVERSARIAL: dict[str, list[float]] = {
    "cancelling_1e16": [1e16, 1.0, -1e16] * 300,
    "subnormals": [5e-324] * 700 + [-5e-324] * 699,
    "wide_magnitudes": [1e300, 1e-300, -1e300, 3.14, -1e-300, 2.5e-308] * 120,
    "alternating_powers": _alternating_powers(),
    "cancel_to_zero": [0.1 * k for k in range(400)] + [-0.1 * k for k in range(400)],
    "ints_and_floats": [1, 2**52 + 1, 0.5, -(2**52), 3, 1e-20] * 100,
    "signed_zeros": [-0.0, 0.0, -0.0] * 200,
}


@pytest.mark.parametrize("name", sorted(ADVERSARIAL))
def test_exact_sum_buffered_equals_fsum_on_adversarial_inputs(name: str) -> None:
    values = ADVERSARIAL[name]
    for order in (values, values[::-1], random.Random(name).sample(values, len(values))):
        s = ExactSum()
        for k, v in enumerate(order, 1):
            s.add(v)
            if k % 97 == 0 or k == len(order):  # reads on the way must not change anything
                assert s.value == math.fsum(order[:k])
        assert s.to_state() == reference_state(values)
        assert s.value == math.fsum(values)
        assert s == ExactSum(values)
        back = ExactSum.from_state(orjson.loads(orjson.dumps(s.to_state())))
        assert back.to_state() == s.to_state()
        assert back.value == s.value


@PROPS
@given(
    st.lists(st.lists(finite_st, max_size=400), min_size=1, max_size=6),
    st.randoms(use_true_random=False),
)
def test_exact_sum_merges_of_buffered_instances_are_exact_and_canonical(
    groups: list[list[float]], rnd: random.Random
) -> None:
    everything = [v for g in groups for v in g]
    parts = []
    for g in groups:
        s = ExactSum()
        for v in g:
            s.add(v)
            if rnd.random() < 0.02:  # fold at arbitrary points
                s.to_state()
        parts.append(s)
    rnd.shuffle(parts)
    total = ExactSum()
    for p in parts:
        total.merge(p if rnd.random() < 0.5 else p.copy())
        if rnd.random() < 0.3:
            assert total.value == math.fsum([*total.to_state()])
    assert total.value == math.fsum(everything)
    assert total.to_state() == reference_state(everything)
    assert total == ExactSum(everything)


def test_exact_sum_merge_into_itself_and_copies_are_independent() -> None:
    values = [0.1, 0.2, 1e16, -3.0] * 100
    s = ExactSum(values)
    c = s.copy()
    s.merge(s)
    assert s.to_state() == reference_state(values * 2)
    assert c.to_state() == reference_state(values)
    c.add(1.0)
    assert s.to_state() == reference_state(values * 2)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_exact_sum_bad_value_changes_nothing_whatever_is_buffered(bad: float) -> None:
    values = [0.1 * k - 7.0 for k in range(600)]
    for n in range(0, 600, 7):
        s = ExactSum()
        for v in values[:n]:
            s.add(v)
        with pytest.raises(ValueError):
            s.add(bad)
        assert s.value == math.fsum(values[:n])
        assert s.to_state() == reference_state(values[:n])


def test_exact_sum_loads_existing_states() -> None:
    """States written before values were buffered: the same list format, read as it was."""
    old = [0.30000000000000004, -2.7755575615628914e-17]
    s = ExactSum.from_state(old)
    assert s == ExactSum([0.1, 0.2])
    assert s.value == 0.30000000000000004
    assert s.to_state() == old
    assert ExactSum([0.1, 0.2, 0.3, 1e16, 1.0, -1e16]).to_state() == [1.6, -8.326672684688674e-17]


def test_exact_sum_that_overflows_raises_when_read() -> None:
    s = ExactSum()
    for _ in range(600):  # adding never raises: folds on the way give up quietly
        s.add(1e308)
    with pytest.raises(OverflowError):
        s.value  # noqa: B018
    with pytest.raises(OverflowError):
        s.to_state()
