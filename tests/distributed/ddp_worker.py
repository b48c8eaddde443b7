"""Run several trainings one after the other inside ONE torchrun job and process group.

Used by test_ddp_torchrun.py to pay torchrun's start-up (three torch imports) once for several
trainings. It does what `deeprec train` does (distributed_session + train_run), with one session
around all runs: re-initialising the default process group inside one torchrun job reuses the
agent store's keys and can hang, so one session per process is the rule.
Usage: torchrun ... ddp_worker.py DATA_DIR SPEC_JSON   (SPEC: [{"out": ..., "config": {...}}])
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from deeprec.train.config import TrainConfig
from deeprec.train.distributed import distributed_session
from deeprec.train.run import train_run


def main() -> None:
    data, spec = Path(sys.argv[1]), json.loads(Path(sys.argv[2]).read_text())
    with distributed_session("cpu") as dist:
        assert dist is not None and dist.world_size == 2, "launch with torchrun, 2 ranks"
        for run in spec:
            config = TrainConfig.from_dict(run["config"])
            summary = train_run(data, config, Path(run["out"]), progress=False, echo=print)
            if dist.is_main:
                print(json.dumps(summary, default=str), flush=True)


if __name__ == "__main__":
    main()
