"""The run arithmetic of the SQLite store's ``deliveries`` rows
(``_store_rows``) against the plain model: a row is the deliveries it
stands for, key by key.
"""

from __future__ import annotations

from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from mqttproto._store_rows import _coalesce, _cut_rows, _runs, _shift_runs

#: key -> (message id, state)
Deliveries = dict[int, tuple[int, int]]


def _expand(rows: list[tuple[int, int, int, int]]) -> Deliveries:
    out: Deliveries = {}
    for first, last, message, state in rows:
        assert first <= last
        for key in range(first, last + 1):
            assert key not in out
            step = key - first
            out[key] = (message + step, state + step if state else 0)
            # A row never mixes queued and in flight, nor the two signs.
            assert (out[key][1] > 0) == (state > 0) and (out[key][1] < 0) == (state < 0)
    return out


states = st.one_of(st.just(0), st.integers(1, 6), st.integers(-6, -1))
deliveries = st.dictionaries(st.integers(1, 30), st.tuples(st.integers(1, 12), states), max_size=20)


@given(deliveries)
def test_coalesce_keeps_every_delivery_in_maximal_runs(given_: Deliveries) -> None:
    rows = _coalesce((key, message, state) for key, (message, state) in sorted(given_.items()))
    assert _expand(rows) == given_
    # Two rows one after the other could not have been one.
    for (start, last, message, state), (first, _, next_message, next_state) in pairwise(rows):
        step = first - start
        joinable = (
            first == last + 1
            and next_message == message + step
            and (
                (state == 0 and next_state == 0)
                or (state != 0 and next_state == state + step and next_state != 0)
            )
        )
        assert not joinable


@given(st.dictionaries(st.integers(1, 40), st.integers(-20, 20).filter(bool), min_size=1))
def test_shift_runs_cover_the_keys_by_runs_of_one_shift(changed: dict[int, int]) -> None:
    runs = _shift_runs(changed)
    covered = {}
    for first, last, shift in runs:
        for key in range(first, last + 1):
            covered[key] = key + shift
    assert covered == changed
    for (_, last, shift), (first, _, next_shift) in pairwise(runs):
        assert first > last + 1 or next_shift != shift  # maximal


@given(st.sets(st.integers(1, 60)))
def test_runs_of_keys(keys: set[int]) -> None:
    runs = _runs(list(keys))
    assert {k for first, last in runs for k in range(first, last + 1)} == keys
    assert all(b[0] > a[1] + 1 for a, b in pairwise(runs))


@st.composite
def cut_cases(
    draw: st.DrawFn,
) -> tuple[Deliveries, list[tuple[int, int, int, int]], list[tuple[int, int, int | None]]]:
    given_ = draw(deliveries)
    rows = _coalesce((key, message, state) for key, (message, state) in sorted(given_.items()))
    keys = sorted(given_)
    touched: list[tuple[int, int, int | None]] = []
    i = 0
    while i < len(keys):
        if draw(st.booleans()):
            j = i
            while j + 1 < len(keys) and keys[j + 1] == keys[j] + 1 and draw(st.booleans()):
                j += 1
            shift = draw(st.one_of(st.none(), st.integers(1, 9), st.integers(-200, -100)))
            touched.append((keys[i], keys[j], shift))
            i = j + 1
        else:
            i += 1
    return given_, rows, touched


@given(cut_cases())
def test_cut_rows_are_replaced_by_their_parts(
    case: tuple[Deliveries, list[tuple[int, int, int, int]], list[tuple[int, int, int | None]]],
) -> None:
    given_, rows, touched = case
    pictured = {first: (last, message, state) for first, last, message, state in rows}
    firsts = sorted(pictured)
    cut, new = _cut_rows(pictured, firsts, touched)
    # What the file holds after: the rows not cut, and the new ones.
    after = [(f, *pictured[f]) for f in firsts if f not in cut] + new
    expected = dict(given_)
    for first, last, shift in touched:
        for key in range(first, last + 1):
            if shift is None:
                del expected[key]
            else:
                expected[key] = (expected[key][0], key + shift)
    assert _expand(after) == expected
    # Only rows that held a touched key are cut.
    for first in cut:
        last = pictured[first][0]
        assert any(a <= last and b >= first for a, b, _ in touched)
