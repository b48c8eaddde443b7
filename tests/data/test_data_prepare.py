"""The prepared directory: meta.json contents, byte-identical re-runs, atomic output."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from deeprec.data.dataset import PreparedDataset
from deeprec.data.prepare import prepare_dataset
from deeprec.data.synth import synthesize
from deeprec.errors import DataError

from .datahelpers import tree_digest


def test_prepare_twice_is_byte_identical_and_meta_complete(tmp_path):
    raw = tmp_path / "raw"
    synthesize(raw, preset="tiny", fmt="netflix-combined", seed=4)
    first = tmp_path / "a"
    ds = prepare_dataset([raw], "netflix", "netflix-6m", first, seed=9)
    prepare_dataset([raw], "netflix", "netflix-6m", tmp_path / "b", seed=9)
    assert tree_digest(first) == tree_digest(tmp_path / "b")
    meta = json.loads((first / "meta.json").read_text())
    for name in ("train", "valid", "test"):
        assert meta["splits"][name]["ratings"] == len(ds.split(name)) > 0
        assert set(meta["splits"][name]) >= {"users", "items", "ratings", "interval"}
    assert meta["split"]["spec"] == "netflix-6m" and meta["split"]["seed"] == 9
    assert meta["split"]["windows"]["train_start"] == "2005-06-01"
    assert meta["table1"]["train"]["interval"] == "2005-06-01..2005-11-30"
    assert meta["rating_range"] == [1.0, 5.0]
    files = meta["source"]["files"]
    assert len(files) == meta["source"]["n_files"] > 0
    assert files[0]["sha256"] == hashlib.sha256(Path(files[0]["path"]).read_bytes()).hexdigest()
    loaded = PreparedDataset.load(first)
    np.testing.assert_array_equal(loaded.train.users, ds.train.users)
    assert loaded.n_users == ds.n_users and loaded.meta["n_items"] == ds.n_items
    # Raw ids round-trip: every prepared rating is a rating of the raw file.
    frame = loaded.to_pandas("test")
    assert frame["user"].isin(loaded.user_ids).all()
    # Another seed gives another 50/50 cut of the same holdout.
    other = prepare_dataset([raw], "netflix", "netflix-6m", seed=10)
    assert len(other.valid) + len(other.test) == len(ds.valid) + len(ds.test)
    assert not np.array_equal(other.valid.users, ds.valid.users)


def test_failed_prepare_leaves_previous_output(tmp_path):
    raw = tmp_path / "raw"
    synthesize(raw, preset="tiny", fmt="csv", seed=1)
    out = tmp_path / "out"
    prepare_dataset([raw / "ratings.csv"], "csv", "random:0.9,0.05,0.05", out)
    before = tree_digest(out)
    (tmp_path / "bad.csv").write_text("user,item,rating\n1,2,3\n1,3,bad\n")
    with pytest.raises(DataError, match=r"bad\.csv:3"):
        prepare_dataset([tmp_path / "bad.csv"], "csv", "random:0.9,0.05,0.05", out, overwrite=True)
    assert tree_digest(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv", "out", "raw"]
