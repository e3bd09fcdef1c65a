"""Mergeable building blocks for window aggregates: a quantile sketch and an exact float sum.

Both follow one small contract — construct empty, ``add`` a value, ``merge`` another instance
of the same kind, read the result, and ``to_state``/``from_state`` for changelog storage — and
both merge *exactly*: combining partial aggregates (e.g. five 60 s windows into a 300 s view)
gives bit-for-bit the same state as aggregating all values at once, in any order or grouping.

Pure Python, no I/O.
"""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["MIN_VALUE", "ExactSum", "QuantileSketch"]

MIN_VALUE = 1e-9
"""Values ``0 <= x <= MIN_VALUE`` are counted in the sketch's zero bucket (reported as 0.0)."""

_INF = math.inf
_FLOAT_MAX = sys.float_info.max
_log = math.log
_ceil = math.ceil
_FOLD_AT = 256  # terms an ExactSum holds before it folds them (a float object is ~32 bytes)
# (gamma, 1 / log(gamma), 2 / (gamma + 1)) by relative accuracy: one per configuration.
_PARAMS: dict[float, tuple[float, float, float]] = {}


def _params(relative_accuracy: float) -> tuple[float, float, float]:
    """Checked and cached ``(gamma, 1 / log(gamma), 2 / (gamma + 1))`` of an accuracy."""
    if not 0.0 < relative_accuracy < 1.0:
        raise ValueError(f"relative_accuracy must be in (0, 1), got {relative_accuracy!r}")
    gamma = (1.0 + relative_accuracy) / (1.0 - relative_accuracy)
    params = (gamma, 1.0 / math.log(gamma), 2.0 / (gamma + 1.0))
    if len(_PARAMS) < 64:  # bounded: accuracies come from configuration and state
        _PARAMS[relative_accuracy] = params
    return params


class QuantileSketch:
    """DDSketch-style quantile sketch with logarithmic buckets; mergeable without loss.

    With ``a = relative_accuracy`` and ``gamma = (1 + a) / (1 - a)``, a value
    ``x > MIN_VALUE`` is counted in bucket ``i = ceil(log(x) / log(gamma))``, i.e. the bucket
    ``(gamma**(i-1), gamma**i]``, represented by ``2 * gamma**i / (gamma + 1)``. Values
    ``0 <= x <= MIN_VALUE`` go to a zero bucket represented by ``0.0``.

    **Guarantee.** ``quantile(q)`` uses the lower-rank convention: for ``n`` added values it
    estimates ``sorted(values)[floor(q * (n - 1))]``, and the estimate has relative error
    ``<= relative_accuracy`` (0.5% by default, within the 1% the window contract requires),
    up to float rounding (~1e-12 relative). Values in the zero bucket are reported as ``0.0``
    (absolute error ``<= MIN_VALUE``; exact for zeros). The bound holds for any distribution
    and survives any number of merges, because a merge only adds bucket counts: merging gives
    exactly the same buckets as adding every value to one sketch, in any order or grouping.

    Negative, NaN and infinite values raise ``ValueError``.
    """

    __slots__ = ("_bins", "_count", "_gamma", "_mult", "_rep", "_zero", "relative_accuracy")

    def __init__(self, relative_accuracy: float = 0.005) -> None:
        """An empty sketch whose quantiles are within ``relative_accuracy`` (0 < a < 1)."""
        params = _PARAMS.get(relative_accuracy)
        if params is None:
            params = _params(relative_accuracy)
        self.relative_accuracy = relative_accuracy
        self._gamma, self._mult, self._rep = params
        self._bins: dict[int, int] = {}
        self._zero = 0
        self._count = 0

    # -- the contract -----------------------------------------------------------------------

    def add(self, x: float) -> None:
        """Count one value ``x >= 0``; raises ``ValueError`` (and counts nothing) otherwise."""
        if MIN_VALUE < x < _INF:
            i = _ceil(_log(x) * self._mult)
            bins = self._bins
            bins[i] = bins.get(i, 0) + 1
        elif 0.0 <= x <= MIN_VALUE:
            self._zero += 1
        elif x == _INF:
            raise ValueError("cannot add an infinite value to a QuantileSketch")
        else:  # negative, -inf or NaN
            raise ValueError(f"QuantileSketch takes values >= 0, got {x!r}")
        self._count += 1

    def merge(self, other: QuantileSketch) -> None:
        """Add ``other``'s counts to this sketch (in place); accuracies must be equal."""
        if other.relative_accuracy != self.relative_accuracy:
            raise ValueError(
                "cannot merge sketches of different relative_accuracy: "
                f"{self.relative_accuracy!r} and {other.relative_accuracy!r}"
            )
        bins = self._bins
        for i, c in list(other._bins.items()):
            bins[i] = bins.get(i, 0) + c
        self._zero += other._zero
        self._count += other._count

    def quantile(self, q: float) -> float:
        """Estimate of the ``q``-quantile (0 <= q <= 1), lower-rank convention; see the class."""
        return self.quantiles((q,))[0]

    def quantiles(self, qs: Sequence[float]) -> list[float]:
        """``[quantile(q) for q in qs]`` in one pass over the buckets."""
        n = self._count
        if n == 0:
            raise ValueError("quantile of an empty QuantileSketch")
        ranks: list[int] = []
        for q in qs:
            if not 0.0 <= q <= 1.0:
                raise ValueError(f"quantile q must be in [0, 1], got {q!r}")
            ranks.append(int(q * (n - 1)))
        m = len(ranks)
        order = sorted(range(m), key=ranks.__getitem__)
        out = [0.0] * m
        k = 0
        cum = self._zero
        while k < m and ranks[order[k]] < cum:  # answered by the zero bucket
            k += 1
        if k < m:
            # Every rank is below n, the final cumulative count: the loop ends in here.
            bins = self._bins
            for i in sorted(bins):
                cum += bins[i]
                if ranks[order[k]] < cum:
                    rep = self._representative(i)
                    while ranks[order[k]] < cum:
                        out[order[k]] = rep
                        k += 1
                        if k == m:
                            return out
        return out

    @property
    def count(self) -> int:
        """Number of values added (including merged ones)."""
        return self._count

    @property
    def zero_count(self) -> int:
        """Number of values ``<= MIN_VALUE``."""
        return self._zero

    def bins(self) -> dict[int, int]:
        """A copy of the non-empty buckets: index -> count."""
        return dict(self._bins)

    def copy(self) -> QuantileSketch:
        """An independent sketch with the same buckets."""
        new = QuantileSketch(self.relative_accuracy)
        new._bins = dict(self._bins)
        new._zero = self._zero
        new._count = self._count
        return new

    def __eq__(self, other: object) -> bool:
        """Same accuracy and exactly the same bucket counts."""
        if not isinstance(other, QuantileSketch):
            return NotImplemented
        return (
            self.relative_accuracy == other.relative_accuracy
            and self._zero == other._zero
            and self._bins == other._bins
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"QuantileSketch(relative_accuracy={self.relative_accuracy!r}, count={self._count}, "
            f"bins={len(self._bins)})"
        )

    # -- state ------------------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """Compact JSON-able state; ``from_state(to_state())`` equals this sketch exactly.

        ``{"a": accuracy, "z": zero_count}`` plus, when there are buckets, ``"o"`` (the lowest
        bucket index) and either ``"c"`` (dense: counts of the contiguous buckets from ``o``,
        zeros included) or ``"s"`` (sparse: ``[count_0, gap_1, count_1, gap_2, ...]`` where
        each gap is the index distance to the previous non-empty bucket), whichever is shorter
        as JSON. Equal sketches give identical states.
        """
        bins = self._bins
        if not bins:
            return {"a": self.relative_accuracy, "z": self._zero}
        idx = sorted(bins)
        lo = idx[0]
        hi = idx[-1]
        gaps = len(idx) - 1
        empties = hi - lo - gaps
        # Dense spends "0," per empty bucket; sparse spends "gap," per non-empty one but the
        # first, at least two characters each: so dense wins outright when gaps >= empties.
        if gaps < empties:
            s = [bins[lo]]
            extra = 0  # sparse's characters for the gaps
            prev = lo
            for i in idx[1:]:
                gap = i - prev
                extra += len(str(gap)) + 1
                s.append(gap)
                s.append(bins[i])
                prev = i
            if extra < 2 * empties:
                return {"a": self.relative_accuracy, "z": self._zero, "o": lo, "s": s}
        get = bins.get
        dense = [get(i, 0) for i in range(lo, hi + 1)] if empties else [bins[i] for i in idx]
        return {"a": self.relative_accuracy, "z": self._zero, "o": lo, "c": dense}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> QuantileSketch:
        """The sketch that ``to_state`` described (dense or sparse form)."""
        sketch = cls(state["a"])
        zero = state.get("z", 0)
        _check_count(zero)
        bins: dict[int, int] = {}
        if "c" in state or "s" in state:
            i = state["o"]
            if not isinstance(i, int) or isinstance(i, bool):
                raise ValueError(f"bad bucket index in sketch state: {i!r}")
            if "c" in state:
                for c in state["c"]:
                    _check_count(c)
                    if c:
                        bins[i] = c
                    i += 1
            else:
                s = state["s"]
                if len(s) % 2 != 1:
                    raise ValueError("sparse sketch state must have an odd length")
                for k, v in enumerate(s):
                    _check_count(v)
                    if k % 2:
                        if v < 1:
                            raise ValueError("sparse sketch state gaps must be >= 1")
                        i += v
                    elif v:
                        bins[i] = v
        sketch._bins = bins
        sketch._zero = zero
        sketch._count = zero + sum(bins.values())
        return sketch

    # -- internals --------------------------------------------------------------------------

    def _representative(self, i: int) -> float:
        try:
            return self._rep * self._gamma**i
        except OverflowError:  # only for values within a factor gamma of the float maximum
            return _FLOAT_MAX


def _check_count(c: Any) -> None:
    if not isinstance(c, int) or isinstance(c, bool) or c < 0:
        raise ValueError(f"bad count in sketch state: {c!r}")


class ExactSum:
    """Order-independent exact sum of floats (Shewchuk's algorithm, as in ``math.fsum``).

    Keeps a list of floats whose exact (infinite-precision) sum is the exact sum of every
    value added: the values themselves as they come, folded now and then (and whenever the
    state is read) into the canonical form — the shortest list of non-overlapping floats,
    largest first, each the correctly rounded remainder of the ones before it. ``value``
    is the correctly rounded exact sum, so it equals ``math.fsum(all values)`` whatever the
    order of ``add`` calls and however the values were split between merged instances.
    ``to_state`` is canonical: equal exact sums give identical states.

    NaN and infinite values raise ``ValueError``. A sum whose exact value (or a running
    total on the way to it) does not fit in a float raises ``OverflowError`` when read.
    """

    __slots__ = ("_canon", "_terms")

    def __init__(self, values: Iterable[float] = ()) -> None:
        """An exact sum of ``values`` (empty by default)."""
        self._terms: list[float] = []
        # len(_terms) right after the last fold: _terms is canonical while it is unchanged.
        self._canon = 0
        for x in values:
            self.add(x)

    def add(self, x: float) -> None:
        """Add ``x`` exactly; raises ``ValueError`` (and adds nothing) for NaN or infinities."""
        if not -_INF < x < _INF:
            raise ValueError(f"ExactSum takes finite values, got {x!r}")
        terms = self._terms
        terms.append(x)
        # Appending is all the hot path does; folding in C (math.fsum) every so often
        # keeps the memory bounded at a fraction of the cost of a Python loop per value.
        if len(terms) > _FOLD_AT:
            self._fold_quietly()

    def merge(self, other: ExactSum) -> None:
        """Add ``other``'s exact sum to this one (in place)."""
        terms = self._terms
        terms.extend(other._terms)  # list.extend copies first when other is self
        if len(terms) > _FOLD_AT:
            self._fold_quietly()

    @property
    def value(self) -> float:
        """The exact sum, correctly rounded to a float (0.0 when empty)."""
        terms = self._terms
        if len(terms) == self._canon:
            return terms[0] if terms else 0.0
        return math.fsum(terms)

    def copy(self) -> ExactSum:
        """An independent copy."""
        new = ExactSum.__new__(ExactSum)
        new._terms = list(self._terms)
        new._canon = self._canon
        return new

    def to_state(self) -> list[float]:
        """Canonical JSON-able state: the exact sum as non-overlapping floats, largest first.

        The first element is ``value``; each next one is the correctly rounded remainder, so
        the list is short (usually 0-2 floats) and depends only on the exact sum.
        """
        return list(self._fold())

    @classmethod
    def from_state(cls, state: Iterable[float]) -> ExactSum:
        """The exact sum that ``to_state`` described."""
        return cls(state)

    def __eq__(self, other: object) -> bool:
        """Equal exact (not rounded) sums."""
        if not isinstance(other, ExactSum):
            return NotImplemented
        # The canonical form is unique to the exact sum.
        return self._fold() == other._fold()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ExactSum({self.value!r})"

    # -- internals --------------------------------------------------------------------------

    def _fold(self) -> list[float]:
        """Replace the terms by the canonical form of their exact sum, and answer it."""
        terms = self._terms
        if len(terms) == self._canon:
            return terms
        # fsum is exact inside and correctly rounded: each pass takes the next float of
        # the canonical form off the remainder, until the remainder is exactly zero.
        h = math.fsum(terms)  # the only pass that can overflow: nothing changed if it does
        out: list[float] = []
        while h:
            out.append(h)
            terms.append(-h)
            h = math.fsum(terms)
        # In place: a new list per fold would be a new long-lived object for the garbage
        # collector to promote, and full collections would come more often.
        terms[:] = out
        self._canon = len(out)
        return terms

    def _fold_quietly(self) -> None:
        # From add/merge: an overflowing sum stays unfolded and raises when it is read.
        with contextlib.suppress(OverflowError):
            self._fold()
