"""Each recipe runs end to end on a tiny synthetic dataset and writes its outputs."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from deeprec.data.dataset import PreparedDataset
from deeprec.experiments.common import Settings
from deeprec.experiments.recipes import (
    ACTIVATIONS,
    DEPTHS,
    DROPOUTS,
    RECIPES,
    WIDTHS,
    run_recipe,
)

EXPECTED_RUNS = {
    "activations": len(ACTIVATIONS),
    "depth": len(DEPTHS),
    "width": 2 * len(WIDTHS),
    "dropout": len(DROPOUTS),
    "refeed": 4,
}


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("name", list(RECIPES))
def test_recipe_writes_table_csv_and_plots(name: str, tiny_dataset: Path, tmp_path: Path) -> None:
    dataset = PreparedDataset.load(tiny_dataset)
    settings = Settings(dataset=dataset, out=tmp_path / name, epochs=1, seed=7, baseline_epochs=3)
    output = run_recipe(name, settings)
    out = tmp_path / name
    results = (out / "results.md").read_text()
    assert results.startswith("# ") and "|---|" in results
    pngs = sorted(out.glob("*.png"))
    assert pngs, "every recipe draws at least one plot"
    for png in pngs:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    runs = _rows(out / "runs.csv")
    assert len(runs) == len(output.rows)
    if name == "comparison":
        models = [r["model"] for r in runs]
        assert models[0] == "global mean" and models[1].startswith("DeepRec")
        assert "capped at 3" in results
        deeprec = runs[1]
        assert deeprec["seed"] == "7" and float(deeprec["test_rmse"]) > 0
        return
    assert len(runs) == EXPECTED_RUNS[name]
    assert {r["seed"] for r in runs} == {"7"}, "seeds are recorded"
    assert all(r["epochs"] == "1" for r in runs)
    assert all(float(r["best_valid_rmse"]) > 0 for r in runs)
    epochs = _rows(out / "epochs.csv")
    assert len(epochs) == len(runs)  # one epoch each
    assert "seeds: 7" in results and "epochs: 1" in results


def test_activation_recipe_records_every_mini_batch(tiny_dataset: Path, tmp_path: Path) -> None:
    dataset = PreparedDataset.load(tiny_dataset)
    run_recipe("activations", Settings(dataset=dataset, out=tmp_path, epochs=2, seed=1))
    batches = _rows(tmp_path / "batches.csv")
    users = len(set(dataset.train.users.tolist()))
    per_epoch = -(-users // 128)  # every user, last partial batch included
    by_label: dict[str, list[dict[str, str]]] = {}
    for row in batches:
        by_label.setdefault(row["label"], []).append(row)
    assert sorted(by_label) == sorted(ACTIVATIONS)
    for rows in by_label.values():
        assert len(rows) == 2 * per_epoch
        assert [int(r["step"]) for r in rows] == list(range(1, 2 * per_epoch + 1))


def test_recipe_variants_override_the_users_set(tiny_dataset: Path, tmp_path: Path) -> None:
    """--set changes the base procedure, but the recipe's varied key still wins."""
    dataset = PreparedDataset.load(tiny_dataset)
    settings = Settings(
        dataset=dataset,
        out=tmp_path,
        epochs=1,
        overrides=["optimizer=adam", "dropout=0.3"],
    )
    run_recipe("dropout", settings)
    runs = _rows(tmp_path / "runs.csv")
    assert {r["optimizer"] for r in runs} == {"adam"}
    assert [float(r["dropout"]) for r in runs] == list(DROPOUTS)
