"""The prepared-dataset contract: indexing, unseen-id rule, atomic and deterministic save."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

from deeprec.data.dataset import PreparedDataset, lookup
from deeprec.errors import DataError


def _frames():
    train = pd.DataFrame(
        {"user": [10, 10, 20, 30], "item": ["a", "b", "a", "c"], "rating": [1.0, 2.0, 3.0, 0.0]}
    )
    test = pd.DataFrame({"user": [10, 99, 20], "item": ["c", "a", "zz"], "rating": [4.0, 5.0, 1.0]})
    return train, test


def test_indices_are_contiguous_and_unseen_rows_dropped():
    train, test = _frames()
    ds = PreparedDataset.from_tables(train, None, test)
    assert list(ds.user_ids) == [10, 20, 30]
    assert list(ds.item_ids) == ["a", "b", "c"]
    assert len(ds.test) == 1 and ds.meta["dropped_unseen"]["test"] == 2
    assert ds.train.ratings.min() == 0.0  # 0 is a rating, kept as such
    back = ds.to_pandas("train")
    pd.testing.assert_frame_equal(back, train.astype({"rating": "float32"}), check_dtype=False)


def test_keep_unseen_extends_maps():
    train, test = _frames()
    ds = PreparedDataset.from_tables(train, None, test, keep_unseen=True)
    assert len(ds.test) == 3 and 99 in ds.user_ids


def test_save_is_deterministic_and_refuses_overwrite(tmp_path):
    train, test = _frames()
    digests = []
    for name in ("one", "two"):
        path = PreparedDataset.from_tables(train, None, test).save(tmp_path / name)
        files = sorted(p for p in path.rglob("*") if p.is_file())
        digests.append(
            [
                (p.relative_to(path).as_posix(), hashlib.sha256(p.read_bytes()).hexdigest())
                for p in files
            ]
        )
    assert digests[0] == digests[1]
    with pytest.raises(FileExistsError):
        PreparedDataset.from_tables(train).save(tmp_path / "one")
    loaded = PreparedDataset.load(tmp_path / "one")
    np.testing.assert_array_equal(loaded.train.ratings, [1.0, 2.0, 3.0, 0.0])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_load_rejects_damaged_directory(tmp_path):
    train, _ = _frames()
    path = PreparedDataset.from_tables(train).save(tmp_path / "ds")
    np.save(path / "train" / "users.npy", np.array([0, 1, 2, 7], dtype=np.int32))
    with pytest.raises(DataError, match="out of range"):
        PreparedDataset.load(path)


def test_lookup_handles_unknown_and_mixed_types():
    ids = np.array([3, 5, 9])
    assert list(lookup(ids, np.array([5, 4, 10, 3]))) == [1, -1, -1, 0]
    assert list(lookup(np.array(["a", "c"]), np.array(["c", "b"]))) == [1, -1]


def test_outputs_get_umask_permissions_not_private_temp_modes(tmp_path):
    import os
    import stat

    from deeprec.atomic import atomic_file

    with atomic_file(tmp_path / "x.txt", "w") as handle:
        handle.write("x")
    train, _ = _frames()
    path = PreparedDataset.from_tables(train).save(tmp_path / "ds")
    mask = os.umask(0o022)
    os.umask(mask)
    assert stat.S_IMODE((tmp_path / "x.txt").stat().st_mode) == 0o666 & ~mask
    assert stat.S_IMODE(path.stat().st_mode) == 0o777 & ~mask
