"""`deeprec tune`: selection on validation only, test read once at the end."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import pytest
import yaml

import deeprec.experiments.tune as tune_module
from deeprec.data.dataset import PreparedDataset, Split
from deeprec.errors import ConfigError
from deeprec.experiments.tune import SearchSpace, load_space, trials, tune

GUARDED = ("users", "items", "ratings", "timestamps")


class GuardedSplit(Split):
    """A test split that fails the test if anything reads it while `locked`."""

    locked = True

    def __getattribute__(self, name: str):
        if name in GUARDED and type(self).locked:
            raise AssertionError(f"the test split was read during the search ({name})")
        return object.__getattribute__(self, name)


def _guarded(dataset: PreparedDataset) -> PreparedDataset:
    t = dataset.test
    guarded = GuardedSplit(t.users, t.items, t.ratings, t.timestamps)
    return dataclasses.replace(dataset, test=guarded)


SPACE = SearchSpace(
    base={"epochs": 8, "optimizer": "adam", "hidden": [16], "dropout": 0.0},
    grid={"lr": [1e-7, 0.02, 1e-6]},
)


def test_tune_picks_the_best_validation_rmse_and_reads_test_only_at_the_end(
    tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset = _guarded(PreparedDataset.load(tiny_dataset))
    original = tune_module._score_test
    seen = {}

    def score_after_search(ds, best):
        seen["table_written_first"] = (tmp_path / "results.csv").exists()
        seen["best_yaml_written_first"] = (tmp_path / "best.yaml").exists()
        GuardedSplit.locked = False
        try:
            return original(ds, best)
        finally:
            GuardedSplit.locked = True

    monkeypatch.setattr(tune_module, "_score_test", score_after_search)
    result = tune(dataset, SPACE, tmp_path, seed=5)
    assert seen == {"table_written_first": True, "best_yaml_written_first": True}
    with (tmp_path / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3
    valid = [float(r["best_valid_rmse"]) for r in rows]
    best_row = min(range(3), key=valid.__getitem__)
    # an lr of 1e-7 or 1e-6 barely moves the weights in 8 epochs: 0.02 must win by a margin
    assert float(rows[best_row]["lr"]) == 0.02
    assert min(valid[0], valid[2]) - valid[1] > 0.05
    assert [r["best"] for r in rows] == ["yes" if i == best_row else "" for i in range(3)]
    best = yaml.safe_load((tmp_path / "best.yaml").read_text())
    assert best["lr"] == 0.02 and best["hidden"] == [16] and best["seed"] == 5
    assert result.best_config.lr == 0.02
    test = json.loads((tmp_path / "best_test.json").read_text())
    assert test["n"] == len(PreparedDataset.load(tiny_dataset).test)
    assert "after the search" in test["label"]
    assert "Test RMSE of the chosen configuration" in (tmp_path / "results.md").read_text()


def test_search_never_trains_on_a_dataset_with_test_ratings(
    tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen_tests = []
    real = tune_module.train_traced

    def spy(dataset, config, label, **kwargs):
        seen_tests.append(len(dataset.test))
        return real(dataset, config, label, **kwargs)

    monkeypatch.setattr(tune_module, "train_traced", spy)
    space = SearchSpace(base={"epochs": 1, "hidden": [4]}, grid={"lr": [0.001, 0.01]})
    tune(PreparedDataset.load(tiny_dataset), space, tmp_path)
    assert seen_tests == [0, 0]


def test_grid_file_checks(tmp_path: Path) -> None:
    path = tmp_path / "grid.yaml"
    path.write_text("grid:\n  learning_rate: [0.1]\n")
    with pytest.raises(ConfigError, match="learning_rate"):
        load_space(path)
    path.write_text("grid:\n  lr: 0.1\n")
    with pytest.raises(ConfigError, match="list of candidates"):
        load_space(path)
    path.write_text("grid:\n  lr: {log_uniform: [1.0e-4, 1.0e-2]}\n  hidden: [[8], [16, 16]]\n")
    space = load_space(path)
    with pytest.raises(ConfigError, match="--random"):
        trials(space, None, 0)
    drawn = trials(space, 5, seed=1)
    assert drawn == trials(space, 5, seed=1)
    assert len({json.dumps(d, sort_keys=True) for d in drawn}) == 5
    assert all(1e-4 <= d["lr"] <= 1e-2 and d["hidden"] in ([8], [16, 16]) for d in drawn)


def test_full_grid_is_the_cartesian_product() -> None:
    space = SearchSpace(base={}, grid={"lr": [0.1, 0.2], "hidden": [[4], [8], [8, 8]]})
    combos = trials(space, None, 0)
    assert len(combos) == 6
    assert {"lr": 0.2, "hidden": [8, 8]} in combos


@pytest.mark.parametrize("center", ["none", "bias"])
def test_a_trial_trains_exactly_as_deeprec_train_does(
    tiny_dataset: Path, tmp_path: Path, center: str
) -> None:
    """A trial's valid RMSE is the estimator's for best.yaml (regression: tune dropped
    `center` and reported the uncentred number under a `center: bias` best.yaml)."""
    from deeprec.estimator import DeepRec
    from deeprec.train.config import TrainConfig

    dataset = PreparedDataset.load(tiny_dataset)
    space = SearchSpace(
        base={"epochs": 3, "hidden": [8], "optimizer": "adam", "center": center},
        grid={"lr": [0.01]},
    )
    result = tune(dataset, space, tmp_path, seed=3)
    config = TrainConfig.from_yaml(tmp_path / "best.yaml")
    assert config.center == center
    model = DeepRec.from_config(config).fit(dataset)
    assert result.rows[0]["best_valid_rmse"] == pytest.approx(model.best_valid_rmse_, abs=1e-12)
    test = json.loads((tmp_path / "best_test.json").read_text())
    assert test["rmse"] == pytest.approx(model.score(dataset, "test")["rmse"], abs=1e-12)


def test_centring_changes_a_trials_validation_rmse(tiny_dataset: Path, tmp_path: Path) -> None:
    dataset = PreparedDataset.load(tiny_dataset)
    space = SearchSpace(
        base={"epochs": 2, "hidden": [8], "optimizer": "adam", "lr": 0.01},
        grid={"center": ["none", "bias"]},
    )
    result = tune(dataset, space, tmp_path)
    none, bias = (r["best_valid_rmse"] for r in result.rows)
    assert abs(none - bias) > 1e-4
