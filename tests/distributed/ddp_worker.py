"""Run several trainings one after the other inside ONE torchrun job and process group.

Used by test_ddp_torchrun.py to pay torchrun's start-up (three torch imports) once for several
trainings. It does what `deeprec train` does (distributed_session + train_run), with one session
around all runs: re-initialising the default process group inside one torchrun job reuses the
agent store's keys and can hang, so one session per process is the rule.

A spec entry with "kind": "hand_grads" instead takes ONE step the way a step function with
hand-computed gradients does under DDP: gradients on the bare model, then
`DataParallel.before_update` before each optimizer step (sparse pass and re-feed); rank 0 saves
the weights to OUT/weights.safetensors.

Usage: torchrun ... ddp_worker.py DATA_DIR SPEC_JSON   (SPEC: [{"out": ..., "config": {...}}])
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from deeprec.data.batching import epoch_order
from deeprec.data.dataset import PreparedDataset
from deeprec.runs.training import train_run
from deeprec.step.reference import reference_step
from deeprec.train.config import TrainConfig
from deeprec.train.distributed import DataParallel, DistContext, distributed_session
from deeprec.train.optim import build_optimizer
from deeprec.train.trainer import build_model


class _UpdateHook:
    """An optimizer whose step() first runs the data-parallel gradient sum."""

    def __init__(self, optimizer: torch.optim.Optimizer, parallel: DataParallel, params) -> None:
        self.optimizer, self.parallel, self.params = optimizer, parallel, list(params)

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        self.parallel.before_update(self.params)
        self.optimizer.step()


def hand_grads_step(data: Path, out: Path, config: TrainConfig, dist: DistContext) -> None:
    train = PreparedDataset.load(data).csr("train")
    torch.manual_seed(config.seed)
    model = build_model(config, train.shape[1])
    parallel = DataParallel(model, dist, seed=config.seed)
    optimizer = _UpdateHook(
        build_optimizer(model.parameters(), config), parallel, model.parameters()
    )
    order = epoch_order(np.flatnonzero(train.row_lengths() > 0), config.seed, 1)
    batch = next(parallel.batches(train, order, config.batch_size))
    parallel.begin_step(batch)
    reference_step(model, optimizer, batch, refeed_steps=config.refeed_steps)  # bare model
    if dist.is_main:
        out.mkdir(parents=True, exist_ok=True)
        save_file(
            {k: v.contiguous() for k, v in model.state_dict().items()}, out / "weights.safetensors"
        )


def main() -> None:
    data, spec = Path(sys.argv[1]), json.loads(Path(sys.argv[2]).read_text())
    with distributed_session("cpu") as dist:
        assert dist is not None and dist.world_size == 2, "launch with torchrun, 2 ranks"
        for run in spec:
            config = TrainConfig.from_dict(run["config"])
            if run.get("kind") == "hand_grads":
                hand_grads_step(data, Path(run["out"]), config, dist)
                continue
            summary = train_run(data, config, Path(run["out"]), progress=False, echo=print)
            if dist.is_main:
                print(json.dumps(summary, default=str), flush=True)


if __name__ == "__main__":
    main()
