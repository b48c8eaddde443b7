"""O(n) id factorisation: dense, sparse, negative and text ids agree with a sort-based map."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from deeprec.data.indexing import factorize, restrict


@pytest.mark.parametrize(
    "values",
    [
        [5, 3, 5, 9, 3, 1],  # small non-negative range: presence table
        [-4, 7, -4, 0],  # negative ids: shifted table
        [10**15, 3, 10**15, 42],  # huge range: sorted unique + searchsorted
    ],
)
def test_factorize_matches_sorting(values):
    ids, codes = factorize(pl.Series(values, dtype=pl.Int64))
    expected = np.unique(values)
    np.testing.assert_array_equal(ids, expected)
    np.testing.assert_array_equal(ids[codes], values)
    assert codes.dtype == np.int32


def test_factorize_text_ids_and_restrict():
    ids, codes = factorize(pl.Series(["b", "a", "c", "a"]))
    assert list(ids) == ["a", "b", "c"] and list(codes) == [1, 0, 2, 0]
    sub, index = restrict(codes, ids, np.array([True, True, False, False]))
    assert list(sub) == ["a", "b"]
    assert list(index) == [1, 0, -1, 0]  # "c" is outside the rows the maps come from
