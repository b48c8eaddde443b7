"""`deeprec tune`: grid or random search over TrainConfig keys, selected on validation RMSE.

The search never sees the test split: every trial trains on a copy of the dataset whose
test split is empty. Only after the search is over is the single best configuration's
model (kept from its trial, not retrained) scored on test, and that number is labelled as
such. The grid file is YAML::

    base:            # optional fixed values for every trial
      epochs: 20
      optimizer: adam
    grid:            # every value is a list of candidates
      hidden: [[128], [256, 256]]
      lr: [0.001, 0.003]
      weight_decay: {log_uniform: [1.0e-6, 1.0e-3]}   # random search only

Without ``--random`` every combination of the grid runs (distributions are not allowed);
with ``--random N``, N distinct trials are drawn (seeded) from the candidates/distributions.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from deeprec.data.dataset import PreparedDataset, Split
from deeprec.errors import ConfigError
from deeprec.experiments.common import TracedRun, train_traced
from deeprec.experiments.report import fmt, markdown_table, write_csv, write_text
from deeprec.train.config import TrainConfig, read_yaml

DISTRIBUTIONS = ("uniform", "log_uniform", "int_uniform")


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    base: dict[str, Any]
    grid: dict[str, Any]  # key -> list of candidates, or {distribution: [low, high]}


def load_space(path: str | Path) -> SearchSpace:
    """Read and check a grid file (unknown keys and bad shapes are ConfigErrors)."""
    from deeprec.presets import require_text

    if Path(path).is_file():
        require_text(path, "--grid")
    raw = read_yaml(path)
    unknown_top = sorted(set(raw) - {"base", "grid"})
    if "grid" in raw:
        if unknown_top:
            raise ConfigError(
                f"{path}: unknown top-level key(s) {unknown_top}; use base: and grid:"
            )
        base, grid = raw.get("base") or {}, raw["grid"] or {}
    else:
        base, grid = {}, raw
    if not isinstance(base, dict) or not isinstance(grid, dict) or not grid:
        raise ConfigError(f"{path}: grid must be a non-empty mapping of option: [candidates]")
    known = set(TrainConfig.option_names())
    for key in [*base, *grid]:
        if key not in known:
            raise ConfigError(
                f"{path}: unknown option {key!r}; known options: {', '.join(sorted(known))}"
            )
    overlap = sorted(set(base) & set(grid))
    if overlap:
        raise ConfigError(f"{path}: option(s) {overlap} are both in base and grid")
    for key, value in grid.items():
        if isinstance(value, dict):
            if len(value) != 1 or next(iter(value)) not in DISTRIBUTIONS:
                raise ConfigError(
                    f"{path}: grid.{key}: expected a list or one of {{{', '.join(DISTRIBUTIONS)}: [low, high]}}"
                )
            bounds = next(iter(value.values()))
            if not (isinstance(bounds, list) and len(bounds) == 2):
                raise ConfigError(f"{path}: grid.{key}: bounds must be [low, high]")
        elif not isinstance(value, list) or not value:
            raise ConfigError(
                f"{path}: grid.{key} must be a non-empty list of candidates, got {value!r}"
            )
    return SearchSpace(base=dict(base), grid=dict(grid))


def trials(space: SearchSpace, random: int | None, seed: int) -> list[dict[str, Any]]:
    """The trial assignments: the full grid, or `random` distinct seeded draws."""
    keys = list(space.grid)
    if random is None:
        dists = [k for k in keys if isinstance(space.grid[k], dict)]
        if dists:
            raise ConfigError(
                f"grid search needs candidate lists; {dists} are distributions (use --random N)"
            )
        return [
            dict(zip(keys, combo, strict=True))
            for combo in itertools.product(*(space.grid[k] for k in keys))
        ]
    if random < 1:
        raise ConfigError(f"--random must be >= 1, got {random}")
    rng = np.random.default_rng(seed)
    drawn: list[dict[str, Any]] = []
    seen: set[str] = set()
    for _ in range(random * 50):
        if len(drawn) == random:
            break
        trial = {k: _draw(space.grid[k], rng) for k in keys}
        key = json.dumps(trial, sort_keys=True)
        if key not in seen:
            seen.add(key)
            drawn.append(trial)
    return drawn


def _draw(spec: Any, rng: np.random.Generator) -> Any:
    if isinstance(spec, list):
        return spec[int(rng.integers(len(spec)))]
    ((kind, (low, high)),) = spec.items()
    if kind == "uniform":
        return float(rng.uniform(low, high))
    if kind == "log_uniform":
        return float(math.exp(rng.uniform(math.log(low), math.log(high))))
    return int(rng.integers(int(low), int(high) + 1))


def without_test(dataset: PreparedDataset) -> PreparedDataset:
    """The dataset with an empty test split (the only view the search gets)."""
    return dataclasses.replace(dataset, test=Split.empty())


@dataclasses.dataclass
class TuneResult:
    rows: list[dict[str, Any]]
    best_index: int
    best_config: TrainConfig
    test: dict[str, Any] | None
    files: list[Path]


def tune(
    dataset: PreparedDataset,
    space: SearchSpace,
    out: Path,
    *,
    random: int | None = None,
    seed: int = 42,
    epochs: int | None = None,
    threads: int = 0,
    data_path: str = "<in memory>",
    progress: bool = False,
) -> TuneResult:
    """Run every trial on train/valid only; write the table and best.yaml; then test once."""
    assignments = trials(space, random, seed)
    search_view = without_test(dataset)
    if len(search_view.valid) == 0:
        raise ConfigError("tuning needs a validation split; the prepared dataset's valid is empty")
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    best: TracedRun | None = None
    best_index = -1
    started = time.perf_counter()
    for index, assignment in enumerate(assignments):
        values = {"seed": seed, **space.base, **assignment}
        if epochs is not None:
            values["epochs"] = epochs
        if threads:
            values["threads"] = threads
        config = TrainConfig.from_dict(values, source=f"trial {index + 1}")
        run = train_traced(search_view, config, f"trial {index + 1}", keep_model=True)
        row = {
            "trial": index + 1,
            **{k: _show(v) for k, v in assignment.items()},
            "best_valid_rmse": run.best_valid_rmse,
            "best_epoch": run.best_epoch,
            "epochs": len(run.history),
            "seconds": round(run.seconds, 2),
            "diverged": run.diverged,
        }
        rows.append(row)
        if progress:
            print(json.dumps(row, default=str), flush=True)
        if run.best_valid_rmse is not None and (
            best is None or run.best_valid_rmse < best.best_valid_rmse  # type: ignore[operator]
        ):
            best, best_index = run, index
        else:
            run.model = None  # keep only the best trial's model in memory
    if best is None:
        raise ConfigError("no trial produced a validation RMSE (all diverged?)")
    for i, row in enumerate(rows):
        row["best"] = "yes" if i == best_index else ""
    columns = [
        "trial",
        *space.grid,
        "best_valid_rmse",
        "best_epoch",
        "epochs",
        "seconds",
        "diverged",
        "best",
    ]
    files = [write_csv(out / "results.csv", rows, columns)]
    files.append(write_text(out / "best.yaml", best.config.to_yaml()))
    search_seconds = time.perf_counter() - started
    # ---- the search is over: the test split is read here, once, for the chosen config only
    test = _score_test(dataset, best)
    if test is not None:
        test["label"] = (
            "test RMSE of the single best-by-validation configuration, measured once after "
            "the search (not used for selection)"
        )
        files.append(write_text(out / "best_test.json", json.dumps(test, indent=2) + "\n"))
    ordered = sorted(
        rows, key=lambda r: (r["best_valid_rmse"] is None, r["best_valid_rmse"] or 0.0)
    )
    text = [
        "# Hyper-parameter search (selected on validation RMSE only)",
        "",
        f"- data: `{data_path}`; {len(assignments)} trials "
        f"({'random ' + str(random) if random else 'full grid'}), seed {seed}",
        f"- fixed: `{json.dumps(space.base, default=str)}`"
        + (f"; epochs forced to {epochs}" if epochs else ""),
        f"- search time: {search_seconds:.1f}s",
        "",
        markdown_table(ordered, [(c, c) for c in columns]),
        f"Best by validation: trial {best_index + 1} "
        f"(valid RMSE {fmt(best.best_valid_rmse)} at epoch {best.best_epoch}); full config in `best.yaml`.",
        "",
    ]
    if test is not None:
        text.append(
            f"**Test RMSE of the chosen configuration (reported once, after the search): "
            f"{fmt(test['rmse'])}** (n = {test['n']})."
        )
    files.append(write_text(out / "results.md", "\n".join(text) + "\n"))
    return TuneResult(
        rows=rows, best_index=best_index, best_config=best.config, test=test, files=files
    )


def _score_test(dataset: PreparedDataset, best: TracedRun) -> dict[str, Any] | None:
    if len(dataset.test) == 0:
        return None
    score = best.model.score(dataset, "test")  # the fitted DeepRec, as `deeprec train` scores
    return {"split": "test", "rmse": score["rmse"], "mae": score["mae"], "n": score["n"]}


def _show(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, (list, dict)) else value
