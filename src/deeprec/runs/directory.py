"""A training run's directory: config, per-epoch metrics, curves, best and last models.

RUN/config.yaml      the full training config (re-usable with --config)
RUN/dataset.json     where the prepared data came from, with its split statistics
RUN/metrics.jsonl    one JSON object per epoch (epoch, train_rmse, valid_rmse, ...)
RUN/curves.png       train/valid RMSE per epoch, redrawn every epoch (viewer-friendly)
RUN/events.out.tfevents.*   the same per-epoch scalars for TensorBoard (`tensorboard --logdir RUN`)
RUN/best/            the model with the best validation RMSE (DeepRec.load-able)
RUN/checkpoints/     training checkpoints for `deeprec train --resume` (train/checkpoint.py)
RUN/.lock            held (fcntl.flock) while a training writes here (train/lock.py)
RUN/summary.json     best epoch, validation and test metrics, timings
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from deeprec.atomic import atomic_file
from deeprec.errors import CheckpointError

BEST, LAST = "best", "last"


class RunDir:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @property
    def best(self) -> Path:
        return self.path / BEST

    @property
    def last(self) -> Path:
        return self.path / LAST

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    def create(self, *, overwrite: bool = False) -> None:
        existing = (
            [p for p in self.path.iterdir() if p.name != ".lock"] if self.path.exists() else []
        )
        if existing and not overwrite:
            raise CheckpointError(
                f"run directory {self.path} is not empty; choose another --out, pass "
                "--overwrite, or continue it with --resume"
            )
        self.path.mkdir(parents=True, exist_ok=True)
        if overwrite:
            self.metrics_path.unlink(missing_ok=True)
            for events in self.path.glob("events.out.tfevents.*"):
                events.unlink(missing_ok=True)
            shutil.rmtree(self.path / "checkpoints", ignore_errors=True)

    def write_json(self, name: str, value: Any) -> None:
        with atomic_file(self.path / name, "w") as handle:
            json.dump(value, handle, indent=2, default=str)
            handle.write("\n")

    def write_text(self, name: str, text: str) -> None:
        with atomic_file(self.path / name, "w") as handle:
            handle.write(text)

    def read_json(self, name: str) -> Any:
        path = self.path / name
        if not path.is_file():
            raise CheckpointError(f"{path} is missing: is {self.path} a deeprec run directory?")
        return json.loads(path.read_text())

    def append_metrics(self, record: dict[str, Any]) -> None:
        """Append one line and fsync, so a crash never loses a finished epoch."""
        with open(self.metrics_path, "a") as handle:
            handle.write(json.dumps(record) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def rewrite_metrics(self, records: list[dict[str, Any]]) -> None:
        """Replace metrics.jsonl atomically (on resume: the checkpoint's epochs only)."""
        with atomic_file(self.metrics_path, "w") as handle:
            for record in records:
                handle.write(json.dumps(record) + "\n")

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics_path.is_file():
            return []
        return [json.loads(line) for line in self.metrics_path.read_text().splitlines() if line]

    def plot_curves(self) -> None:
        """Redraw curves.png from metrics.jsonl (matplotlib, no display needed)."""
        records = self.read_metrics()
        if not records:
            return
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        epochs = [r["epoch"] for r in records]
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(epochs, [r["train_rmse"] for r in records], label="train RMSE")
        valid = [(r["epoch"], r["valid_rmse"]) for r in records if r.get("valid_rmse") is not None]
        if valid:
            ax.plot(*zip(*valid, strict=True), label="validation RMSE")
        ax.set_xlabel("epoch")
        ax.set_ylabel("RMSE")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        with atomic_file(self.path / "curves.png", "wb") as handle:
            fig.savefig(handle, format="png", dpi=100)
        plt.close(fig)


def load_run_model(run: str | Path) -> Any:
    """The run's best model (RUN/best), refusing pickle files given in its place."""
    from deeprec.base import load_model
    from deeprec.safe_files import refuse_pickle

    refuse_pickle(run, what="run directory or model")
    best = RunDir(run).best
    if not best.exists():
        raise CheckpointError(f"{run} has no best/ model: is it a finished deeprec run directory?")
    return load_model(best)


def load_run_dataset(run: str | Path, data: str | Path | None = None) -> tuple[Path, Any]:
    """The prepared dataset a run was trained on (RUN/dataset.json), or `data` when given."""
    from deeprec.data.dataset import PreparedDataset

    data_dir = (
        Path(data) if data is not None else Path(RunDir(run).read_json("dataset.json")["path"])
    )
    return data_dir, PreparedDataset.load(data_dir)


class EventLog:
    """TensorBoard event files in the run directory: per epoch rmse/train, rmse/valid, lr.

    Opened at the first epoch written; a resumed run purges the steps it rewrites (TensorBoard
    then shows each epoch once). Writes nothing where the tensorboard package is missing."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.writer: Any = None
        self.disabled = False

    def add(self, record: dict[str, Any]) -> None:
        if self.disabled:
            return
        epoch = int(record["epoch"])
        if self.writer is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard not installed: curves.png and metrics.jsonl stay
                self.disabled = True
                return
            self.writer = SummaryWriter(str(self.path), purge_step=epoch, flush_secs=30)
        self.writer.add_scalar("rmse/train", record["train_rmse"], epoch)
        if record.get("valid_rmse") is not None:
            self.writer.add_scalar("rmse/valid", record["valid_rmse"], epoch)
        if record.get("lr") is not None:
            self.writer.add_scalar("lr", record["lr"], epoch)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
