"""Fixtures: a small trained model on synthetic low-rank ratings, its run dir, a live server."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from deeprec import DeepRec
from deeprec.recommend.honesty import low_rank_ratings

SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture(scope="session")
def ratings_frame():
    frame = low_rank_ratings(240, 90, density=0.3, seed=3)
    frame["item"] = frame["item"] * 10  # raw ids differ from indices
    return frame


@pytest.fixture(scope="session")
def fitted(ratings_frame) -> DeepRec:
    torch.manual_seed(0)
    return DeepRec(hidden=[24], epochs=8, dropout=0.2, batch_size=32, lr=0.003, seed=1).fit(
        ratings_frame
    )


@pytest.fixture(scope="session")
def run_dir(fitted, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("run")
    fitted.save(run / "best")
    summary = {
        "best_epoch": 8,
        "best_valid_rmse": None,
        "architecture": fitted.module_.architecture(),
    }
    (run / "summary.json").write_text(json.dumps(summary))
    (run / "dataset.json").write_text(json.dumps({"path": "synthetic", "meta": {"seed": 3}}))
    return run


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(SRC) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@contextmanager
def serve_process(run: Path) -> Iterator[str]:
    """`python -m deeprec serve --run RUN` on a free loopback port; yields its base URL
    once /health answers, and always stops the process."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "deeprec", "serve", "--run", str(run), "--port", str(port)],
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited: {proc.stdout.read().decode()}")
            try:
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start within 60 s")
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def server(run_dir):
    """The real CLI server (`python -m deeprec serve`) on a free loopback port."""
    with serve_process(run_dir) as base, httpx.Client(base_url=base, timeout=10) as client:
        yield client


def rated_items(model: DeepRec, user) -> set:
    u = int(np.searchsorted(model.user_ids_, user))
    row = model.train_.indices[model.train_.indptr[u] : model.train_.indptr[u + 1]]
    return set(model.item_ids_[row].tolist())
