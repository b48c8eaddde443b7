"""Shared bits of the benchmark scripts: machine description, Surprise wrapper, Markdown."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from typing import Any

import numpy as np
import pandas as pd

from deeprec.data.table import to_ratings_table


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _memory_gib() -> float | None:
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=os.path.dirname(os.path.abspath(__file__)),
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def machine_facts() -> dict[str, Any]:
    """What ran a benchmark, read from the machine itself (never fixed text): CPU model,
    cores, memory, AVX-512/AMX flags, interpreter, torch, threads, commit, load."""
    import torch

    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "avx512": "avx512f" in flags,
        "avx512_bf16": "avx512_bf16" in flags,
        "amx": "amx_tile" in flags,
        "python": platform.python_version(),
        "executable": sys.executable,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "commit": _commit(),
        "load_average": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }


def machine() -> str:
    """machine_facts() as one line for a Markdown report."""
    f = machine_facts()
    memory = f"{f['memory_gib']} GiB" if f["memory_gib"] is not None else "unknown memory"
    amx = "AMX" if f["amx"] else "no AMX"
    avx = "AVX-512" if f["avx512"] else "no AVX-512"
    return (
        f"{f['cores']}-core {f['cpu']} ({avx}, {amx}), {memory}, torch {f['torch']} "
        f"({f['threads']} threads), Python {f['python']}, commit {f['commit']}; "
        f"load average {f['load_average']} at start"
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
