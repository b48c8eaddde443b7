"""Shared bits of the benchmark scripts: machine description, Surprise wrapper, Markdown."""

from __future__ import annotations

import os
import platform
import time
from typing import Any

import numpy as np
import pandas as pd

from deeprec.data.table import to_ratings_table


def machine() -> str:
    import torch

    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{os.cpu_count()}-core {cpu}, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), Python {platform.python_version()}; "
        f"load average {load:.1f} at start (machine shared with other work)"
    )


class SurpriseModel:
    """scikit-surprise algorithm behind fit(train, valid) / score(test).

    Surprise cannot use a validation set, so it trains on train + valid: every model sees
    every rating outside test. Predictions are clipped to the training rating scale, as ours.
    """

    def __init__(self, name: str, make_algo: Any) -> None:
        self.name = name
        self.make_algo = make_algo

    def fit(self, train: pd.DataFrame, valid: pd.DataFrame | None = None) -> SurpriseModel:
        from surprise import Dataset, Reader

        frame = train if valid is None else pd.concat([train, valid], ignore_index=True)
        frame = to_ratings_table(frame).to_pandas()[["user", "item", "rating"]]
        self.range_ = (float(frame["rating"].min()), float(frame["rating"].max()))
        data = Dataset.load_from_df(frame, Reader(rating_scale=self.range_))
        self.algo_ = self.make_algo()
        self.algo_.fit(data.build_full_trainset())
        return self

    def score(self, test: pd.DataFrame) -> dict[str, float | int]:
        table = to_ratings_table(test).to_pandas()
        truth = table["rating"].to_numpy(np.float64)
        raw = np.array(
            [
                self.algo_.predict(u, i, clip=False).est
                for u, i in zip(table["user"].tolist(), table["item"].tolist(), strict=True)
            ]
        )
        clipped = np.clip(raw, *self.range_)
        return {
            "rmse": float(np.sqrt(np.mean((clipped - truth) ** 2))),
            "mae": float(np.mean(np.abs(clipped - truth))),
            "rmse_unclipped": float(np.sqrt(np.mean((raw - truth) ** 2))),
            "mae_unclipped": float(np.mean(np.abs(raw - truth))),
            "n": int(truth.shape[0]),
        }


def markdown_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(str(row.get(c, "")) for c in columns) + " |")
    return "\n".join(lines)


class Timer:
    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start
